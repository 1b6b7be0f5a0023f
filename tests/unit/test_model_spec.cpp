// config.json -> ModelSpec: every supported architecture, both rope layouts (transformers
// < 5 "rope_scaling" + "rope_theta", and 5.x "rope_parameters"), the sentence-transformers
// files, and an error naming the file and the field for every bad value.
//
// tests/fixtures/model_files/transformers5_*.json were written by transformers 5.23's
// save_pretrained (e.g. LlamaConfig(hidden_size=64, ..., rope_parameters={"rope_type":
// "llama3", ...}, architectures=["LlamaForCausalLM"]).save_pretrained(dir)).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model/model_spec.h"
#include "engine/model/qwen3_next_projections.h"

namespace {

using nlohmann::json;
using sparkd::StatusCode;
using sparkd::model::Activation;
using sparkd::model::ExpertActivation;
using sparkd::model::load_model_spec;
using sparkd::model::ModelFamily;
using sparkd::model::ModelSpec;
using sparkd::model::ModelTask;
using sparkd::model::parse_model_config;
using sparkd::model::Pooling;
using sparkd::model::RopeSpec;

const std::filesystem::path kFixtures =
    std::filesystem::path(SPARKD_SOURCE_DIR) / "tests/fixtures/model_files";

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("sparkd-model-spec-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::string& name, const std::string& content) const {
    std::filesystem::create_directories((path / name).parent_path());
    std::ofstream(path / name, std::ios::binary) << content;
  }
};

std::string read(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

json llama() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"vocab_size", 1000},
          {"hidden_size", 64},
          {"intermediate_size", 128},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"max_position_embeddings", 4096},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 500000.0},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

json bert() {
  return {{"architectures", {"BertModel"}},
          {"vocab_size", 1000},
          {"hidden_size", 64},
          {"intermediate_size", 128},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"max_position_embeddings", 512},
          {"type_vocab_size", 2},
          {"layer_norm_eps", 1e-12},
          {"hidden_act", "gelu"}};
}

ModelSpec parse_ok(const json& config) {
  auto spec = parse_model_config(config.dump(), "config.json");
  INFO((spec.has_value() ? std::string("ok") : spec.status().to_string()));
  REQUIRE(spec.has_value());
  return *spec;
}

// The error must have `code` and contain "config.json" and every one of `needles`.
void check_error(const json& config, StatusCode code, const std::vector<std::string>& needles) {
  auto spec = parse_model_config(config.dump(), "config.json");
  REQUIRE_FALSE(spec.has_value());
  INFO(spec.status().to_string());
  CHECK(spec.status().code() == code);
  CHECK(contains(spec.status().message(), "config.json: "));
  for (const std::string& needle : needles) CHECK(contains(spec.status().message(), needle));
}

}  // namespace

TEST_CASE("model spec: a Llama config", "[model][spec]") {
  const ModelSpec spec = parse_ok(llama());
  CHECK(spec.architecture == "LlamaForCausalLM");
  CHECK(spec.family == ModelFamily::kLlama);
  CHECK(spec.task == ModelTask::kGenerate);
  CHECK(spec.is_decoder);
  CHECK(spec.vocab_size == 1000);
  CHECK(spec.hidden_size == 64);
  CHECK(spec.intermediate_size == 128);
  CHECK(spec.num_layers == 2);
  CHECK(spec.num_heads == 4);
  CHECK(spec.num_kv_heads == 2);
  CHECK(spec.head_dim == 16);
  CHECK(spec.max_position_embeddings == 4096);
  CHECK(spec.norm_eps == Approx(1e-5f));
  CHECK(spec.activation == Activation::kSilu);
  CHECK(spec.rope.theta == 500000.0f);
  CHECK(spec.rope.scaling == RopeSpec::Scaling::kNone);
  CHECK_FALSE(spec.tie_word_embeddings);
  CHECK_FALSE(spec.qk_norm);
  CHECK_FALSE(spec.attention_qkv_bias);
  CHECK_FALSE(spec.attention_out_bias);
  CHECK_FALSE(spec.mlp_bias);
  CHECK(spec.sliding_window == 0);
  CHECK(spec.bos_token_id == 1);
  CHECK(spec.eos_token_ids == std::vector<int32_t>{2});
  CHECK(spec.pooling == Pooling::kLastToken);

  json biased = llama();
  biased["attention_bias"] = true;
  biased["mlp_bias"] = true;
  biased["tie_word_embeddings"] = true;
  biased["num_key_value_heads"] = nullptr;  // null: the default (= heads)
  biased["eos_token_id"] = {128001, nullptr, 3};
  biased["vocab_size"] = 128256;
  const ModelSpec b = parse_ok(biased);
  CHECK(b.attention_qkv_bias);
  CHECK(b.attention_out_bias);
  CHECK(b.mlp_bias);
  CHECK(b.tie_word_embeddings);
  CHECK(b.num_kv_heads == 4);
  CHECK(b.eos_token_ids == std::vector<int32_t>{128001, 3});
}

TEST_CASE("model spec: defaults for fields a config leaves out", "[model][spec]") {
  json config = llama();
  for (const char* key : {"num_key_value_heads", "max_position_embeddings", "rms_norm_eps",
                          "rope_theta", "bos_token_id", "eos_token_id"}) {
    config.erase(key);
  }
  const ModelSpec spec = parse_ok(config);
  CHECK(spec.num_kv_heads == 4);
  CHECK(spec.max_position_embeddings == 2048);  // LlamaConfig's default
  CHECK(spec.norm_eps == Approx(1e-6f));
  CHECK(spec.rope.theta == 10000.0f);
  CHECK(spec.bos_token_id == -1);
  CHECK(spec.eos_token_ids.empty());
}

TEST_CASE("model spec: Mistral, Qwen2 and Qwen3", "[model][spec]") {
  json mistral = llama();
  mistral["architectures"] = {"MistralForCausalLM"};
  mistral["sliding_window"] = 4096;
  mistral["attention_bias"] = true;  // MistralAttention has no biases whatever the config says
  ModelSpec spec = parse_ok(mistral);
  CHECK(spec.family == ModelFamily::kMistral);
  CHECK(spec.sliding_window == 4096);
  CHECK_FALSE(spec.attention_qkv_bias);
  mistral["sliding_window"] = nullptr;
  CHECK(parse_ok(mistral).sliding_window == 0);

  json qwen2 = llama();
  qwen2["architectures"] = {"Qwen2ForCausalLM"};
  qwen2["tie_word_embeddings"] = true;
  qwen2["sliding_window"] = 32768;  // ignored: use_sliding_window is false
  qwen2["use_sliding_window"] = false;
  spec = parse_ok(qwen2);
  CHECK(spec.family == ModelFamily::kQwen2);
  CHECK(spec.attention_qkv_bias);
  CHECK_FALSE(spec.attention_out_bias);
  CHECK_FALSE(spec.qk_norm);
  CHECK(spec.tie_word_embeddings);
  CHECK(spec.sliding_window == 0);

  json qwen3 = llama();
  qwen3["architectures"] = {"Qwen3ForCausalLM"};
  qwen3["head_dim"] = 32;  // not hidden_size / heads (16)
  spec = parse_ok(qwen3);
  CHECK(spec.family == ModelFamily::kQwen3);
  CHECK(spec.qk_norm);
  CHECK(spec.head_dim == 32);
  CHECK_FALSE(spec.attention_qkv_bias);
  CHECK_FALSE(spec.attention_out_bias);
}

TEST_CASE("model spec: Qwen sliding windows", "[model][spec]") {
  json qwen2 = llama();
  qwen2["architectures"] = {"Qwen2ForCausalLM"};
  qwen2["use_sliding_window"] = true;
  qwen2["sliding_window"] = 1024;
  qwen2["max_window_layers"] = 0;  // every layer slides
  CHECK(parse_ok(qwen2).sliding_window == 1024);
  qwen2["max_window_layers"] = 2;  // no layer slides
  CHECK(parse_ok(qwen2).sliding_window == 0);
  qwen2["max_window_layers"] = 1;  // the layers from 1 on do
  ModelSpec mixed = parse_ok(qwen2);
  CHECK(mixed.sliding_window == 1024);
  CHECK(mixed.full_attention_layers == std::vector<int32_t>{0});
  CHECK(mixed.layer_sliding_window(0) == 0);
  CHECK(mixed.layer_sliding_window(1) == 1024);

  qwen2.erase("max_window_layers");
  qwen2["layer_types"] = {"full_attention", "full_attention"};
  CHECK(parse_ok(qwen2).sliding_window == 0);
  qwen2["layer_types"] = {"sliding_attention", "sliding_attention"};
  CHECK(parse_ok(qwen2).sliding_window == 1024);
  qwen2["layer_types"] = {"sliding_attention", "full_attention"};
  mixed = parse_ok(qwen2);
  CHECK(mixed.layer_sliding_window(0) == 1024);
  CHECK(mixed.layer_sliding_window(1) == 0);
  qwen2["layer_types"] = {"full_attention"};
  check_error(qwen2, StatusCode::kInvalidArgument, {"layer_types", "one entry per layer (2)"});
  qwen2["layer_types"] = {"full_attention", "chunked_attention"};
  check_error(qwen2, StatusCode::kUnimplemented, {"layer_types", "chunked_attention"});
  qwen2["layer_types"] = {"sliding_attention", "sliding_attention"};
  qwen2.erase("sliding_window");
  check_error(qwen2, StatusCode::kInvalidArgument, {"missing sliding_window"});
}

// openai/gpt-oss-20b's config.json, shrunk to two layers.
json gpt_oss() {
  return json::parse(R"({
    "architectures": ["GptOssForCausalLM"], "attention_bias": true, "attention_dropout": 0.0,
    "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 2880, "initial_context_length": 4096, "initializer_range": 0.02,
    "intermediate_size": 2880, "layer_types": ["sliding_attention", "full_attention"],
    "max_position_embeddings": 131072, "model_type": "gpt_oss", "num_attention_heads": 64,
    "num_experts_per_tok": 4, "num_hidden_layers": 2, "num_key_value_heads": 8,
    "num_local_experts": 32, "output_router_logits": false, "pad_token_id": 199999,
    "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn",
      "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
      "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": false},
    "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128,
    "swiglu_limit": 7.0, "tie_word_embeddings": false, "use_cache": true, "vocab_size": 201088})");
}

TEST_CASE("model spec: gpt-oss as released", "[model][spec][moe]") {
  const ModelSpec spec = parse_ok(gpt_oss());
  CHECK(spec.family == ModelFamily::kGptOss);
  CHECK(spec.attention_qkv_bias);
  CHECK(spec.attention_out_bias);
  CHECK(spec.attention_sinks);
  CHECK_FALSE(spec.qk_norm);
  CHECK(spec.layer_sliding_window(0) == 128);
  CHECK(spec.layer_sliding_window(1) == 0);
  CHECK(spec.rope.scaling == RopeSpec::Scaling::kYarn);
  CHECK(spec.rope.theta == 150000.0f);
  CHECK_FALSE(spec.rope.truncate);
  CHECK(spec.rope.original_max_position_embeddings == 4096);
  CHECK(spec.moe.num_experts == 32);
  CHECK(spec.moe.experts_per_token == 4);
  CHECK(spec.moe.expert_intermediate_size == 2880);
  CHECK(spec.moe.normalize_top_k);  // softmax over the top k logits
  CHECK(spec.moe.router_bias);
  CHECK(spec.moe.expert_bias);
  CHECK(spec.moe.activation == ExpertActivation::kClampedSwiglu);
  CHECK(spec.moe.swiglu_alpha == Approx(1.702f));
  CHECK(spec.moe.swiglu_limit == 7.0f);
  CHECK(spec.is_sparse_layer(0));
  CHECK(spec.is_sparse_layer(1));

  // transformers' defaults: the window on even layers, theta 150000.
  json defaults = gpt_oss();
  defaults.erase("layer_types");
  defaults.erase("rope_theta");
  defaults.erase("rope_scaling");
  defaults["num_hidden_layers"] = 4;
  const ModelSpec alternating = parse_ok(defaults);
  CHECK(alternating.full_attention_layers == std::vector<int32_t>{1, 3});
  CHECK(alternating.rope.theta == 150000.0f);

  // Only gpt-oss's own MXFP4 is accepted as a quantization_config.
  json other = gpt_oss();
  other["quantization_config"]["quant_method"] = "bitsandbytes";
  check_error(other, StatusCode::kUnimplemented, {"quantization_config", "bitsandbytes"});
  json llama_mxfp4 = llama();
  llama_mxfp4["quantization_config"] = {{"quant_method", "mxfp4"}};
  check_error(llama_mxfp4, StatusCode::kUnimplemented, {"quantization_config", "mxfp4"});
}

// Qwen3.5-35B-A3B's config.json as released: the text model under text_config, beside a
// vision tower sparkd does not load.
json qwen3_5_released() {
  return json::parse(R"({
    "architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "qwen3_5_moe",
    "image_token_id": 248056, "video_token_id": 248057, "tie_word_embeddings": false,
    "vision_config": {"depth": 27, "hidden_size": 1152, "model_type": "qwen3_5_moe"},
    "text_config": {
      "model_type": "qwen3_5_moe_text", "attn_output_gate": true, "dtype": "bfloat16",
      "eos_token_id": 248044, "full_attention_interval": 4, "head_dim": 256,
      "hidden_act": "silu", "hidden_size": 2048, "linear_conv_kernel_dim": 4,
      "linear_key_head_dim": 128, "linear_num_key_heads": 16, "linear_num_value_heads": 32,
      "linear_value_head_dim": 128, "max_position_embeddings": 262144,
      "moe_intermediate_size": 512, "mtp_num_hidden_layers": 1, "num_attention_heads": 16,
      "num_experts": 256, "num_experts_per_tok": 8, "num_hidden_layers": 40,
      "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "shared_expert_intermediate_size": 512,
      "vocab_size": 248320,
      "rope_parameters": {"mrope_interleaved": true, "mrope_section": [11, 11, 10],
        "rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.25}}})");
}

TEST_CASE("model spec: Qwen3.5-MoE as released", "[model][spec][moe]") {
  const ModelSpec spec = parse_ok(qwen3_5_released());
  CHECK(spec.family == ModelFamily::kQwen3_5);
  CHECK(spec.architecture == "Qwen3_5MoeForConditionalGeneration");
  CHECK(spec.hidden_size == 2048);
  CHECK(spec.num_layers == 40);
  CHECK(spec.head_dim == 256);
  CHECK(spec.rope_dim() == 64);  // partial_rotary_factor 0.25
  CHECK(spec.rope.theta == 10000000.0f);
  CHECK(spec.qk_norm);
  CHECK(spec.attention_output_gate);
  CHECK(spec.zero_centred_norms);
  CHECK_FALSE(spec.attention_qkv_bias);
  CHECK(spec.eos_token_ids == std::vector<int32_t>{248044});
  // Three Gated DeltaNet layers, then attention, ten times.
  CHECK(spec.linear_attention.layers.size() == 30);
  CHECK(spec.is_linear_attention_layer(0));
  CHECK_FALSE(spec.is_linear_attention_layer(3));
  CHECK_FALSE(spec.is_linear_attention_layer(39));
  CHECK(spec.kv_layer_count() == 10);
  CHECK(spec.linear_attention.conv_dim() == 2 * 16 * 128 + 32 * 128);
  // Per layer 3 x 8192 conv inputs and 32 matrices of 128 x 128, F32: about 63 MiB a sequence.
  CHECK(spec.linear_attention.state_bytes_per_sequence() ==
        30ull * (3 * 8192 + 32 * 128 * 128) * 4);
  CHECK(spec.moe.num_experts == 256);
  CHECK(spec.moe.experts_per_token == 8);
  CHECK(spec.moe.expert_intermediate_size == 512);
  CHECK(spec.moe.normalize_top_k);
  CHECK(spec.moe.shared_expert_intermediate_size == 512);
  CHECK(spec.is_sparse_layer(0));
  CHECK(spec.is_sparse_layer(3));

  // The flat form save_pretrained writes for the text model, with explicit layer_types.
  json flat = qwen3_5_released()["text_config"];
  flat["architectures"] = {"Qwen3_5MoeForCausalLM"};
  flat["num_hidden_layers"] = 4;
  flat["layer_types"] = {"linear_attention", "full_attention", "linear_attention",
                         "full_attention"};
  const ModelSpec text = parse_ok(flat);
  CHECK(text.linear_attention.layers == std::vector<int32_t>{0, 2});
  CHECK(text.kv_layer_count() == 2);

  json other = flat;
  other["layer_types"][1] = "mamba";
  check_error(other, StatusCode::kUnimplemented, {"layer_types", "mamba"});
  other = flat;
  other["layer_types"] = {"linear_attention"};
  check_error(other, StatusCode::kInvalidArgument, {"layer_types", "one entry per layer"});
  other = flat;
  other["linear_num_value_heads"] = 24;
  other["linear_num_key_heads"] = 16;
  check_error(other, StatusCode::kInvalidArgument,
              {"linear_num_value_heads (24)", "linear_num_key_heads (16)"});
  other = flat;
  other["rope_parameters"]["partial_rotary_factor"] = 0.001;
  check_error(other, StatusCode::kInvalidArgument, {"partial_rotary_factor", "even"});
}

TEST_CASE("model spec: Qwen3-Next and its fused projections' row order", "[model][spec][moe]") {
  json config = qwen3_5_released()["text_config"];
  config["architectures"] = {"Qwen3NextForCausalLM"};
  config["model_type"] = "qwen3_next";
  config["intermediate_size"] = 5120;
  config["num_hidden_layers"] = 4;
  config["mlp_only_layers"] = {1};
  config["norm_topk_prob"] = false;
  const ModelSpec spec = parse_ok(config);
  CHECK(spec.family == ModelFamily::kQwen3_5);
  CHECK(spec.intermediate_size == 5120);  // the dense layers' MLP
  CHECK(spec.moe.shared_expert_intermediate_size == 512);
  CHECK_FALSE(spec.moe.normalize_top_k);
  CHECK(spec.is_sparse_layer(0));
  CHECK_FALSE(spec.is_sparse_layer(1));
  CHECK(spec.linear_attention.fused_projections);
  CHECK(spec.linear_attention.layers == std::vector<int32_t>{0, 1, 2});

  // 2 key heads of 1, 4 value heads of 1: each key head's group is q, k, v v, z z (6 rows)
  // and b b, a a (4 rows); regrouped, all q, all k, all v, all z / all b, all a.
  ModelSpec small = spec;
  small.linear_attention.key_heads = 2;
  small.linear_attention.value_heads = 4;
  small.linear_attention.key_head_dim = 1;
  small.linear_attention.value_head_dim = 1;
  const std::string layer = "model.layers.0.linear_attn.";
  CHECK(sparkd::model::qwen3_next_row_order(small, layer + "in_proj_qkvz.weight", 12) ==
        std::vector<int64_t>{0, 6, 1, 7, 2, 3, 8, 9, 4, 5, 10, 11});
  CHECK(sparkd::model::qwen3_next_row_order(small, layer + "in_proj_ba.weight", 8) ==
        std::vector<int64_t>{0, 1, 4, 5, 2, 3, 6, 7});
  // Anything else, or a size that does not fit, is left as stored (the decoder names it).
  CHECK(sparkd::model::qwen3_next_row_order(small, layer + "out_proj.weight", 12).empty());
  CHECK(sparkd::model::qwen3_next_row_order(small, layer + "in_proj_qkvz.weight", 13).empty());
  // Qwen3.5 stores them split: nothing to regroup.
  CHECK(sparkd::model::qwen3_next_row_order(parse_ok(qwen3_5_released()),
                                            layer + "in_proj_qkvz.weight", 12)
            .empty());
}

TEST_CASE("model spec: decoders used as embedders", "[model][spec]") {
  for (const char* architecture : {"Qwen3Model", "Qwen2Model", "LlamaModel", "MistralModel"}) {
    INFO(architecture);
    json config = llama();
    config["architectures"] = {architecture};
    const ModelSpec spec = parse_ok(config);
    CHECK(spec.task == ModelTask::kEmbed);
    CHECK(spec.is_decoder);
    CHECK(spec.pooling == Pooling::kLastToken);
  }
}

TEST_CASE("model spec: BERT, XLM-R and RoBERTa encoders", "[model][spec]") {
  ModelSpec spec = parse_ok(bert());
  CHECK(spec.family == ModelFamily::kBert);
  CHECK(spec.task == ModelTask::kEmbed);
  CHECK_FALSE(spec.is_decoder);
  CHECK(spec.num_kv_heads == 4);
  CHECK(spec.head_dim == 16);
  CHECK(spec.norm_eps == Approx(1e-12f));
  CHECK(spec.activation == Activation::kGelu);
  CHECK(spec.type_vocab_size == 2);
  CHECK(spec.pad_token_id == 0);
  CHECK(spec.position_offset == 0);
  CHECK(spec.pooling == Pooling::kMean);  // sentence-transformers' default

  json xlmr = bert();
  xlmr["architectures"] = {"XLMRobertaModel"};
  xlmr["max_position_embeddings"] = 514;
  xlmr["type_vocab_size"] = 1;
  xlmr["pad_token_id"] = 1;
  xlmr["hidden_act"] = "gelu_new";
  spec = parse_ok(xlmr);
  CHECK(spec.family == ModelFamily::kXlmRoberta);
  CHECK(spec.position_offset == 2);
  CHECK(spec.type_vocab_size == 1);
  CHECK(spec.activation == Activation::kGeluTanh);
  xlmr.erase("pad_token_id");  // XLMRobertaConfig's default pad is 1
  CHECK(parse_ok(xlmr).position_offset == 2);
  xlmr["architectures"] = {"RobertaModel"};
  CHECK(parse_ok(xlmr).family == ModelFamily::kXlmRoberta);

  xlmr["pad_token_id"] = 600;
  xlmr["max_position_embeddings"] = 514;
  check_error(xlmr, StatusCode::kInvalidArgument,
              {"max_position_embeddings (514)", "pad_token_id + 1 (601)"});

  json relative = bert();
  relative["position_embedding_type"] = "relative_key";
  check_error(relative, StatusCode::kUnimplemented, {"position_embedding_type", "relative_key"});
}

TEST_CASE("model spec: rerankers read their labels", "[model][spec]") {
  json config = bert();
  config["architectures"] = {"BertForSequenceClassification"};
  ModelSpec spec = parse_ok(config);
  CHECK(spec.task == ModelTask::kRerank);
  CHECK(spec.num_labels == 2);  // PretrainedConfig's default
  CHECK(spec.labels == std::vector<std::string>{"LABEL_0", "LABEL_1"});
  CHECK(spec.pooling == Pooling::kCls);

  config["num_labels"] = 1;
  CHECK(parse_ok(config).num_labels == 1);

  config["architectures"] = {"XLMRobertaForSequenceClassification"};
  config["id2label"] = {{"1", "relevant"}, {"0", "irrelevant"}};  // id2label wins
  spec = parse_ok(config);
  CHECK(spec.family == ModelFamily::kXlmRoberta);
  CHECK(spec.num_labels == 2);
  CHECK(spec.labels == std::vector<std::string>{"irrelevant", "relevant"});

  config["id2label"] = {{"0", "a"}, {"2", "b"}};
  check_error(config, StatusCode::kInvalidArgument, {"id2label", "0..1", "\"2\""});
  config["id2label"] = {{"0", 5}};
  check_error(config, StatusCode::kInvalidArgument, {"id2label"});
}

TEST_CASE("model spec: transformers 5.x configs as save_pretrained writes them", "[model][spec]") {
  auto load = [](const char* name) {
    auto spec = parse_model_config(read(kFixtures / name), name);
    INFO(name << ": " << (spec.has_value() ? "ok" : spec.status().to_string()));
    REQUIRE(spec.has_value());
    return *spec;
  };
  ModelSpec spec = load("transformers5_llama3.json");
  CHECK(spec.rope.scaling == RopeSpec::Scaling::kLlama3);
  CHECK(spec.rope.theta == 500000.0f);
  CHECK(spec.rope.factor == 8.0f);
  CHECK(spec.rope.low_freq_factor == 1.0f);
  CHECK(spec.rope.high_freq_factor == 4.0f);
  CHECK(spec.rope.original_max_position_embeddings == 8192);
  CHECK(spec.head_dim == 16);

  spec = load("transformers5_llama_linear.json");
  CHECK(spec.rope.scaling == RopeSpec::Scaling::kLinear);
  CHECK(spec.rope.factor == 2.0f);
  CHECK(spec.rope.theta == 10000.0f);

  spec = load("transformers5_qwen2.json");  // spells out layer_types
  CHECK(spec.family == ModelFamily::kQwen2);
  CHECK(spec.tie_word_embeddings);
  CHECK(spec.sliding_window == 0);
  CHECK(spec.rope.scaling == RopeSpec::Scaling::kNone);

  spec = load("transformers5_qwen3.json");
  CHECK(spec.qk_norm);
  CHECK(spec.head_dim == 32);

  spec = load("transformers5_mistral.json");
  CHECK(spec.sliding_window == 4096);
  CHECK(spec.num_kv_heads == 2);

  spec = load("transformers5_bert.json");
  CHECK(spec.family == ModelFamily::kBert);

  spec = load("transformers5_xlmr_reranker.json");
  CHECK(spec.task == ModelTask::kRerank);
  CHECK(spec.num_labels == 1);
  CHECK(spec.position_offset == 2);
}

TEST_CASE("model spec: rope scaling in the pre-5.x layout", "[model][spec]") {
  json config = llama();
  config["rope_scaling"] = {{"rope_type", "llama3"},
                            {"factor", 32.0},
                            {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 8192}};
  ModelSpec spec = parse_ok(config);
  CHECK(spec.rope.scaling == RopeSpec::Scaling::kLlama3);
  CHECK(spec.rope.factor == 32.0f);
  CHECK(spec.rope.theta == 500000.0f);  // top-level rope_theta

  config["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};  // the oldest spelling
  spec = parse_ok(config);
  CHECK(spec.rope.scaling == RopeSpec::Scaling::kLinear);
  CHECK(spec.rope.factor == 4.0f);

  config["rope_scaling"] = nullptr;
  CHECK(parse_ok(config).rope.scaling == RopeSpec::Scaling::kNone);
  config["rope_scaling"] = {{"rope_type", "default"}};
  CHECK(parse_ok(config).rope.scaling == RopeSpec::Scaling::kNone);
}

TEST_CASE("model spec: unsupported and malformed rope scaling", "[model][spec]") {
  for (const char* type : {"dynamic", "longrope"}) {
    json config = llama();
    config["rope_parameters"] = {{"rope_type", type}, {"factor", 4.0}, {"rope_theta", 1e6}};
    check_error(config, StatusCode::kUnimplemented,
                {"rope_parameters.rope_type", std::string("'") + type + "'",
                 "supported: default, linear, llama3, yarn"});
  }
  json config = llama();
  config["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  check_error(config, StatusCode::kUnimplemented, {"rope_scaling.type", "'dynamic'"});

  config["rope_scaling"] = {{"rope_type", "linear"}};
  check_error(config, StatusCode::kInvalidArgument, {"missing rope_scaling.factor"});
  config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", -2.0}};
  check_error(config, StatusCode::kInvalidArgument, {"rope_scaling.factor", "-2"});
  config["rope_scaling"] = {{"rope_type", "llama3"},
                            {"factor", 8.0},
                            {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}};
  check_error(config, StatusCode::kInvalidArgument,
              {"missing rope_scaling.original_max_position_embeddings"});
  config["rope_scaling"] = {{"rope_type", "llama3"},
                            {"factor", 8.0},
                            {"low_freq_factor", 4.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 8192}};
  check_error(config, StatusCode::kInvalidArgument,
              {"rope_scaling.high_freq_factor", "larger than low_freq_factor"});
  config["rope_scaling"] = "linear";
  check_error(config, StatusCode::kInvalidArgument, {"rope_scaling must be an object"});
  config.erase("rope_scaling");
  config["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}}},
                               {"sliding_attention", {{"rope_type", "default"}}}};
  check_error(config, StatusCode::kUnimplemented, {"rope_parameters", "per layer type"});
  config["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 0}};
  check_error(config, StatusCode::kInvalidArgument, {"rope_parameters.rope_theta"});
}

TEST_CASE("model spec: unsupported architectures list the supported ones", "[model][spec]") {
  json config = llama();
  config["architectures"] = {"GPT2LMHeadModel"};
  check_error(config, StatusCode::kUnimplemented,
              {"unsupported architecture \"GPT2LMHeadModel\"", "LlamaForCausalLM",
               "Qwen3ForCausalLM", "XLMRobertaForSequenceClassification", "BertModel"});
  const auto supported = sparkd::model::supported_architectures();
  CHECK(std::find(supported.begin(), supported.end(), "Qwen2Model") != supported.end());

  // No "architectures": model_type picks AutoModel's class.
  config.erase("architectures");
  config["model_type"] = "qwen2";
  CHECK(parse_ok(config).family == ModelFamily::kQwen2);
  config["model_type"] = "gpt2";
  check_error(config, StatusCode::kUnimplemented, {"model_type 'gpt2'", "LlamaForCausalLM"});
  config["architectures"] = json::array();
  check_error(config, StatusCode::kInvalidArgument, {"architectures"});
}

TEST_CASE("model spec: every bad value names its field", "[model][spec]") {
  struct Case {
    const char* field;
    json value;
    StatusCode code;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"hidden_size", -64, StatusCode::kInvalidArgument, {"hidden_size must be an integer", "-64"}},
      {"hidden_size", "64", StatusCode::kInvalidArgument, {"hidden_size", "\"64\""}},
      {"hidden_size", 64.5, StatusCode::kInvalidArgument, {"hidden_size", "64.5"}},
      {"hidden_size", 1 << 21, StatusCode::kInvalidArgument, {"hidden_size", "1048576"}},
      {"vocab_size", 0, StatusCode::kInvalidArgument, {"vocab_size must be an integer in [1, "}},
      {"intermediate_size", 1e30, StatusCode::kInvalidArgument, {"intermediate_size"}},
      {"num_hidden_layers", 5000, StatusCode::kInvalidArgument, {"num_hidden_layers", "1024"}},
      {"num_attention_heads", 0, StatusCode::kInvalidArgument, {"num_attention_heads"}},
      {"num_key_value_heads",
       3,
       StatusCode::kInvalidArgument,
       {"num_attention_heads (4) is not a multiple of num_key_value_heads (3)"}},
      {"max_position_embeddings", -1, StatusCode::kInvalidArgument, {"max_position_embeddings"}},
      {"rms_norm_eps", 0, StatusCode::kInvalidArgument, {"rms_norm_eps must be a number in"}},
      {"rms_norm_eps", "1e-5", StatusCode::kInvalidArgument, {"rms_norm_eps"}},
      // Positive as a double, 0 as a float (a fuzz_model_files finding): refused, not 0.
      {"rms_norm_eps", 1e-86, StatusCode::kInvalidArgument, {"rms_norm_eps", "32-bit float"}},
      {"rope_theta", -1.0, StatusCode::kInvalidArgument, {"rope_theta"}},
      {"rope_theta", 1e300, StatusCode::kInvalidArgument, {"rope_theta"}},
      {"hidden_act",
       "relu",
       StatusCode::kUnimplemented,
       {"hidden_act 'relu' is not supported", "silu, gelu, gelu_new, gelu_pytorch_tanh"}},
      {"hidden_act", 3, StatusCode::kInvalidArgument, {"hidden_act must be a string"}},
      {"tie_word_embeddings",
       "yes",
       StatusCode::kInvalidArgument,
       {"tie_word_embeddings must be true or false"}},
      {"head_dim", 15, StatusCode::kInvalidArgument, {"head_dim (15) must be even"}},
      {"head_dim",
       1 << 19,
       StatusCode::kInvalidArgument,
       {"num_attention_heads * head_dim (4 * 524288)"}},
      {"eos_token_id", 5000, StatusCode::kInvalidArgument, {"eos_token_id", "5000", "[0, 999]"}},
      {"eos_token_id", json::array({1, "x"}), StatusCode::kInvalidArgument, {"eos_token_id"}},
      {"bos_token_id",
       json::array({1, 2}),
       StatusCode::kInvalidArgument,
       {"bos_token_id must be a single id"}},
      {"quantization_config",
       {{"quant_method", "awq"}},
       StatusCode::kUnimplemented,
       {"quantization_config", "\"awq\"", "quantized checkpoints are not supported"}},
  };
  for (const Case& c : cases) {
    INFO(c.field << " = " << c.value.dump());
    json config = llama();
    config[c.field] = c.value;
    check_error(config, c.code, c.needles);
  }

  json config = llama();
  config.erase("hidden_size");
  check_error(config, StatusCode::kInvalidArgument, {"missing hidden_size"});
  config = llama();
  config["hidden_size"] = 66;  // 66 / 4 heads, no head_dim
  check_error(config, StatusCode::kInvalidArgument,
              {"hidden_size (66) is not a multiple of num_attention_heads (4)"});
  config = bert();
  config["num_attention_heads"] = 5;
  check_error(config, StatusCode::kInvalidArgument,
              {"hidden_size (64) is not a multiple of num_attention_heads (5)"});
  config = bert();
  config["layer_norm_eps"] = 2.0;
  check_error(config, StatusCode::kInvalidArgument, {"layer_norm_eps"});

  check_error(json::array({1}), StatusCode::kInvalidArgument, {"must be a JSON object"});
  auto garbage = parse_model_config("{\"vocab_size\": ", "config.json");
  REQUIRE_FALSE(garbage.has_value());
  CHECK(garbage.status().code() == StatusCode::kInvalidArgument);
  CHECK(contains(garbage.status().message(), "config.json: not valid JSON"));
}

TEST_CASE("load_model_spec reads config.json and generation_config.json", "[model][spec]") {
  TempDir dir;
  auto missing = load_model_spec(dir.path.string());
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK(contains(missing.status().message(), (dir.path / "config.json").string()));

  auto no_dir = load_model_spec((dir.path / "nowhere").string());
  REQUIRE_FALSE(no_dir.has_value());
  CHECK(no_dir.status().code() == StatusCode::kNotFound);

  dir.write("config.json", llama().dump());
  auto spec = load_model_spec(dir.path.string());
  REQUIRE(spec.has_value());
  CHECK(spec->eos_token_ids == std::vector<int32_t>{2});

  dir.write("generation_config.json",
            json{{"bos_token_id", 7}, {"eos_token_id", {2, 9}}, {"temperature", 0.6}}.dump());
  spec = load_model_spec(dir.path.string());
  REQUIRE(spec.has_value());
  CHECK(spec->bos_token_id == 7);
  CHECK(spec->eos_token_ids == std::vector<int32_t>{2, 9});

  dir.write("generation_config.json", json{{"eos_token_id", 99999}}.dump());
  spec = load_model_spec(dir.path.string());
  REQUIRE_FALSE(spec.has_value());
  CHECK(contains(spec.status().message(), "generation_config.json: eos_token_id"));

  // Errors in config.json name its full path.
  dir.write("config.json", "{");
  spec = load_model_spec(dir.path.string());
  REQUIRE_FALSE(spec.has_value());
  CHECK(contains(spec.status().message(), (dir.path / "config.json").string() + ": not valid"));
}

TEST_CASE("load_model_spec: sentence-transformers pooling and normalization", "[model][spec]") {
  const json modules = json::array({
      {{"idx", 0},
       {"name", "0"},
       {"path", ""},
       {"type", "sentence_transformers.models.Transformer"}},
      {{"idx", 1},
       {"name", "1"},
       {"path", "1_Pooling"},
       {"type", "sentence_transformers.models.Pooling"}},
      {{"idx", 2},
       {"name", "2"},
       {"path", "2_Normalize"},
       {"type", "sentence_transformers.models.Normalize"}},
  });
  auto legacy_pooling = [](bool cls, bool mean, bool last) {
    return json{{"word_embedding_dimension", 64},
                {"pooling_mode_cls_token", cls},
                {"pooling_mode_mean_tokens", mean},
                {"pooling_mode_max_tokens", false},
                {"pooling_mode_mean_sqrt_len_tokens", false},
                {"pooling_mode_weightedmean_tokens", false},
                {"pooling_mode_lasttoken", last},
                {"include_prompt", true}}
        .dump();
  };

  TempDir dir;
  // Qwen3-Embedding ships as Qwen3ForCausalLM plus sentence-transformers files.
  json qwen3 = llama();
  qwen3["architectures"] = {"Qwen3ForCausalLM"};
  dir.write("config.json", qwen3.dump());
  dir.write("modules.json", modules.dump());
  dir.write("1_Pooling/config.json", legacy_pooling(false, false, true));
  auto spec = load_model_spec(dir.path.string());
  REQUIRE(spec.has_value());
  CHECK(spec->task == ModelTask::kEmbed);
  CHECK(spec->pooling == Pooling::kLastToken);
  CHECK(spec->normalize_embeddings);

  dir.write("config.json", bert().dump());
  dir.write("1_Pooling/config.json", legacy_pooling(true, false, false));
  spec = load_model_spec(dir.path.string());
  REQUIRE(spec.has_value());
  CHECK(spec->pooling == Pooling::kCls);

  dir.write("1_Pooling/config.json", legacy_pooling(false, false, false));  // default: mean
  CHECK(load_model_spec(dir.path.string())->pooling == Pooling::kMean);

  // sentence-transformers >= 6 writes one "pooling_mode" key.
  dir.write("1_Pooling/config.json", json{{"pooling_mode", "lasttoken"}}.dump());
  CHECK(load_model_spec(dir.path.string())->pooling == Pooling::kLastToken);
  dir.write("1_Pooling/config.json", json{{"pooling_mode", {"cls"}}}.dump());
  CHECK(load_model_spec(dir.path.string())->pooling == Pooling::kCls);

  auto expect_error = [&](StatusCode code, const std::vector<std::string>& needles) {
    auto result = load_model_spec(dir.path.string());
    REQUIRE_FALSE(result.has_value());
    INFO(result.status().to_string());
    CHECK(result.status().code() == code);
    for (const std::string& needle : needles) CHECK(contains(result.status().message(), needle));
  };
  dir.write("1_Pooling/config.json", json{{"pooling_mode", "max"}}.dump());
  expect_error(StatusCode::kUnimplemented,
               {"1_Pooling/config.json", "pooling mode 'max' is not supported"});
  json weighted = json::parse(legacy_pooling(false, false, false));
  weighted["pooling_mode_weightedmean_tokens"] = true;
  dir.write("1_Pooling/config.json", weighted.dump());
  expect_error(StatusCode::kUnimplemented, {"pooling mode 'weightedmean'"});
  dir.write("1_Pooling/config.json", legacy_pooling(true, true, false));
  expect_error(StatusCode::kUnimplemented, {"combines several modes (cls + mean)"});
  std::filesystem::remove(dir.path / "1_Pooling/config.json");
  expect_error(StatusCode::kNotFound, {"1_Pooling/config.json"});

  // Modules that change the embedding are refused, not skipped.
  json with_dense = modules;
  with_dense.push_back(
      {{"idx", 3}, {"path", "3_Dense"}, {"type", "sentence_transformers.models.Dense"}});
  dir.write("1_Pooling/config.json", legacy_pooling(false, true, false));
  dir.write("modules.json", with_dense.dump());
  expect_error(
      StatusCode::kUnimplemented,
      {"modules.json", "module 3 ('sentence_transformers.models.Dense') is not supported"});
  json escaping = modules;
  escaping[1]["path"] = "../elsewhere";
  dir.write("modules.json", escaping.dump());
  expect_error(StatusCode::kInvalidArgument, {"modules.json", "module 1 path"});

  // Without a Normalize module embeddings are not normalized.
  json no_normalize = modules;
  no_normalize.erase(2);
  dir.write("modules.json", no_normalize.dump());
  spec = load_model_spec(dir.path.string());
  REQUIRE(spec.has_value());
  CHECK_FALSE(spec->normalize_embeddings);
  CHECK(spec->pooling == Pooling::kMean);
}

TEST_CASE("model spec: mixture-of-experts fields, and their damage named", "[model][spec]") {
  json config = llama();
  config["architectures"] = {"Qwen3MoeForCausalLM"};
  config["num_experts"] = 128;
  config["num_experts_per_tok"] = 8;
  config["moe_intermediate_size"] = 768;
  config["norm_topk_prob"] = true;
  config["mlp_only_layers"] = {0};
  config["decoder_sparse_step"] = 1;
  auto spec = sparkd::model::parse_model_config(config.dump(), "config.json");
  REQUIRE(spec.has_value());
  CHECK(spec->moe.num_experts == 128);
  CHECK(spec->moe.experts_per_token == 8);
  CHECK(spec->moe.expert_intermediate_size == 768);
  CHECK(spec->moe.normalize_top_k);
  CHECK_FALSE(spec->is_sparse_layer(0));
  CHECK(spec->is_sparse_layer(1));
  config["num_local_experts"] = config["num_experts"];  // transformers 5 writes this name
  config.erase("num_experts");
  REQUIRE(sparkd::model::parse_model_config(config.dump(), "config.json").has_value());

  json damaged = config;
  damaged["num_experts_per_tok"] = 129;
  check_error(damaged, StatusCode::kInvalidArgument, {"num_experts_per_tok", "[1, 128]"});
  damaged = config;
  damaged["mlp_only_layers"] = {99};
  check_error(damaged, StatusCode::kInvalidArgument, {"mlp_only_layers"});
  damaged = config;
  damaged.erase("moe_intermediate_size");
  check_error(damaged, StatusCode::kInvalidArgument, {"missing moe_intermediate_size"});

  // A dense model has no sparse layer.
  auto dense = sparkd::model::parse_model_config(llama().dump(), "config.json");
  REQUIRE(dense.has_value());
  CHECK_FALSE(dense->is_sparse_layer(0));
}

TEST_CASE("model spec: YaRN rope parameters as transformers reads them", "[model][spec]") {
  json config = llama();
  config["max_position_embeddings"] = 131072;
  config["rope_scaling"] = {
      {"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}};
  auto spec = sparkd::model::parse_model_config(config.dump(), "config.json");
  REQUIRE(spec.has_value());
  CHECK(spec->rope.scaling == sparkd::model::RopeSpec::Scaling::kYarn);
  CHECK(spec->rope.factor == 4.0f);
  CHECK(spec->rope.original_max_position_embeddings == 32768);
  CHECK(spec->rope.beta_fast == 32.0f);
  CHECK(spec->rope.beta_slow == 1.0f);
  CHECK(spec->rope.attention_factor == Approx(0.1 * std::log(4.0) + 1.0));
  // mscale / mscale_all_dim (DeepSeek's form), and factor from the context ratio.
  config["rope_scaling"] = {{"rope_type", "yarn"},
                            {"original_max_position_embeddings", 4096},
                            {"mscale", 0.707},
                            {"mscale_all_dim", 0.707},
                            {"beta_fast", 0}};
  spec = sparkd::model::parse_model_config(config.dump(), "config.json");
  REQUIRE(spec.has_value());
  CHECK(spec->rope.factor == 32.0f);
  CHECK(spec->rope.attention_factor == Approx(1.0));
  CHECK(spec->rope.beta_fast == 32.0f);  // 0 reads as the default, as transformers' `or`
  config["rope_scaling"]["attention_factor"] = 1.5;
  spec = sparkd::model::parse_model_config(config.dump(), "config.json");
  REQUIRE(spec.has_value());
  CHECK(spec->rope.attention_factor == 1.5f);
}
