#include "engine/model/gguf_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <regex>

namespace sparkd::model {

namespace {

struct GgufArchitecture {
  const char* name;     // general.architecture
  const char* hf_name;  // the transformers class it corresponds to
  ModelFamily family;
  bool permuted_qk;  // the converter permuted q/k rows for interleaved RoPE
};

constexpr GgufArchitecture kArchitectures[] = {
    {"llama", "LlamaForCausalLM", ModelFamily::kLlama, true},
    {"qwen2", "Qwen2ForCausalLM", ModelFamily::kQwen2, false},
    {"qwen3", "Qwen3ForCausalLM", ModelFamily::kQwen3, false},
    {"qwen3moe", "Qwen3MoeForCausalLM", ModelFamily::kQwen3, false},
    {"gpt-oss", "GptOssForCausalLM", ModelFamily::kGptOss, false},
    {"qwen35moe", "Qwen3_5MoeForCausalLM", ModelFamily::kQwen3_5, false},
    {"bert", "BertModel", ModelFamily::kBert, false},
};

// GGUF tensor name suffixes (after "blk.N.") and their transformers names.
constexpr std::pair<const char*, const char*> kLayerTensorNames[] = {
    {"attn_norm", "input_layernorm"},
    {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},
    {"attn_q_norm", "self_attn.q_norm"},
    {"attn_k_norm", "self_attn.k_norm"},
    {"ffn_gate", "mlp.gate_proj"},
    {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
    // Mixtures of experts: the router, and each projection of all experts stacked in one 3-D
    // tensor [experts, rows, cols] (the decoder takes each expert's slice).
    {"ffn_gate_inp", "mlp.gate"},
    {"ffn_gate_exps", "mlp.experts.gate_proj"},
    {"ffn_up_exps", "mlp.experts.up_proj"},
    {"ffn_down_exps", "mlp.experts.down_proj"},
};

// gpt-oss's own names (before the shared ones): its post-attention norm, per-head sinks
// (transformers' parameter has no ".weight") and router.
constexpr std::pair<const char*, const char*> kGptOssLayerTensorNames[] = {
    {"post_attention_norm", "post_attention_layernorm"},
    {"attn_sinks", "self_attn.sinks"},
    {"ffn_gate_inp", "mlp.router"},
};

// Qwen3.5's (qwen35moe): the post-attention norm, the linear-attention layers' tensors, the
// shared expert and its gate.
constexpr std::pair<const char*, const char*> kQwen3_5LayerTensorNames[] = {
    {"post_attention_norm", "post_attention_layernorm"},
    {"attn_qkv", "linear_attn.in_proj_qkv"},
    {"attn_gate", "linear_attn.in_proj_z"},
    {"ssm_beta", "linear_attn.in_proj_b"},
    {"ssm_alpha", "linear_attn.in_proj_a"},
    {"ssm_conv1d", "linear_attn.conv1d"},
    {"ssm_norm", "linear_attn.norm"},
    {"ssm_out", "linear_attn.out_proj"},
    {"ffn_gate_inp_shexp", "mlp.shared_expert_gate"},
    {"ffn_gate_shexp", "mlp.shared_expert.gate_proj"},
    {"ffn_up_shexp", "mlp.shared_expert.up_proj"},
    {"ffn_down_shexp", "mlp.shared_expert.down_proj"},
};

constexpr std::pair<const char*, const char*> kModelTensorNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

// The same for `bert` (BertModel's names, which sparkd's encoder binds), without the
// ".weight"/".bias" suffix.
constexpr std::pair<const char*, const char*> kBertLayerTensorNames[] = {
    {"attn_q", "attention.self.query"},
    {"attn_k", "attention.self.key"},
    {"attn_v", "attention.self.value"},
    {"attn_output", "attention.output.dense"},
    {"attn_output_norm", "attention.output.LayerNorm"},
    {"ffn_up", "intermediate.dense"},
    {"ffn_down", "output.dense"},
    {"layer_output_norm", "output.LayerNorm"},
};

constexpr std::pair<const char*, const char*> kBertModelTensorNames[] = {
    {"token_embd", "embeddings.word_embeddings"},
    {"position_embd", "embeddings.position_embeddings"},
    {"token_types", "embeddings.token_type_embeddings"},
    {"token_embd_norm", "embeddings.LayerNorm"},
};

Status invalid(const std::string& source, const std::string& message) {
  return Status(StatusCode::kInvalidArgument, source + ": " + message);
}

// A required or defaulted integer key within [low, high].
Expected<int32_t> bounded(const GgufMetadata& metadata, const std::string& key, int64_t low,
                          int64_t high, std::optional<int64_t> fallback = std::nullopt) {
  SPARKD_ASSIGN_OR_RETURN(auto value, metadata.optional_integer(key));
  if (!value) {
    if (fallback) return static_cast<int32_t>(*fallback);
    return Status(StatusCode::kInvalidArgument,
                  metadata.source() + ": metadata key '" + key + "' is missing");
  }
  if (*value < low || *value > high) {
    return invalid(metadata.source(), key + " is " + std::to_string(*value) + " (allowed " +
                                          std::to_string(low) + " to " + std::to_string(high) +
                                          ")");
  }
  return static_cast<int32_t>(*value);
}

// A per-layer array key (some converters write head counts per layer): all layers must
// agree, since sparkd's decoder has one shape for every layer.
Expected<std::optional<int64_t>> uniform_integer(const GgufMetadata& metadata,
                                                 const std::string& key) {
  const GgufValue* value = metadata.find(key);
  if (value && value->type == GgufValueType::kArray) {
    SPARKD_ASSIGN_OR_RETURN(auto values, metadata.integer_array(key));
    if (values->empty()) return std::optional<int64_t>();
    if (std::adjacent_find(values->begin(), values->end(), std::not_equal_to<>()) !=
        values->end()) {
      return Status(StatusCode::kUnimplemented,
                    metadata.source() + ": " + key +
                        " differs between layers; sparkd runs models whose layers all have one "
                        "shape");
    }
    return std::optional<int64_t>(values->front());
  }
  return metadata.optional_integer(key);
}

const GgufTensorInfo* find_tensor(const std::map<std::string, const GgufTensorInfo*>& tensors,
                                  const std::string& name) {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : it->second;
}

std::optional<int32_t> optional_id(const GgufMetadata& metadata, const std::string& key) {
  auto value = metadata.optional_integer(key);
  if (!value || !*value || **value < 0 || **value > std::numeric_limits<int32_t>::max()) {
    return std::nullopt;
  }
  return static_cast<int32_t>(**value);
}

// `bert` (BertModel embedders, as llama.cpp's converter writes them): post-LayerNorm encoder
// layers with biases and GELU, learned positions and token types; pooling from
// bert.pooling_type. Embeddings are L2-normalised, as llama.cpp, Ollama and TEI return them.
Expected<ModelSpec> bert_model_spec(const GgufModel& model, const GgufArchitecture& arch) {
  const GgufMetadata& metadata = model.metadata();
  const std::string& source = metadata.source();
  const std::string key = std::string(arch.name) + ".";
  ModelSpec spec;
  spec.architecture = arch.hf_name;
  spec.family = arch.family;
  spec.task = ModelTask::kEmbed;
  spec.is_decoder = false;
  spec.activation = Activation::kGelu;
  spec.normalize_embeddings = true;
  SPARKD_ASSIGN_OR_RETURN(spec.hidden_size,
                          bounded(metadata, key + "embedding_length", 1, kMaxDim));
  SPARKD_ASSIGN_OR_RETURN(spec.num_layers, bounded(metadata, key + "block_count", 1, kMaxLayers));
  SPARKD_ASSIGN_OR_RETURN(spec.intermediate_size,
                          bounded(metadata, key + "feed_forward_length", 1, kMaxDim));
  SPARKD_ASSIGN_OR_RETURN(spec.num_heads,
                          bounded(metadata, key + "attention.head_count", 1, kMaxDim));
  if (spec.hidden_size % spec.num_heads != 0) {
    return invalid(source, "embedding_length " + std::to_string(spec.hidden_size) +
                               " is not a multiple of attention.head_count " +
                               std::to_string(spec.num_heads));
  }
  spec.num_kv_heads = spec.num_heads;
  spec.head_dim = spec.hidden_size / spec.num_heads;
  SPARKD_ASSIGN_OR_RETURN(auto eps, metadata.optional_number(key + "attention.layer_norm_epsilon"));
  spec.norm_eps = static_cast<float>(eps.value_or(1e-12));
  if (!(spec.norm_eps > 0 && spec.norm_eps < 1)) {
    return invalid(source, "attention.layer_norm_epsilon is " + std::to_string(spec.norm_eps));
  }
  SPARKD_ASSIGN_OR_RETURN(int32_t pooling, bounded(metadata, key + "pooling_type", 0, 4, 1));
  switch (pooling) {
    case 1:
      spec.pooling = Pooling::kMean;
      break;
    case 2:
      spec.pooling = Pooling::kCls;
      break;
    case 3:
      spec.pooling = Pooling::kLastToken;
      break;
    default:
      return Status(
          StatusCode::kUnimplemented,
          source + ": " + key + "pooling_type " + std::to_string(pooling) +
              (pooling == 4 ? " (rank: a reranker)" : " (none)") +
              "; sparkd serves GGUF bert models as embedders (mean, cls or last pooling)");
  }
  // The table sizes are the tensors' rows.
  const auto tensors = model.tensors();
  const auto rows = [&](const char* name) -> Expected<int32_t> {
    const GgufTensorInfo* tensor = find_tensor(tensors, name);
    if (!tensor || tensor->shape.size() != 2 || tensor->shape[0] > kMaxPositions) {
      return Status(StatusCode::kDataLoss,
                    source + ": tensor '" + name + "' [rows, hidden] is missing");
    }
    return static_cast<int32_t>(tensor->shape[0]);
  };
  SPARKD_ASSIGN_OR_RETURN(spec.vocab_size, rows("token_embd.weight"));
  SPARKD_ASSIGN_OR_RETURN(spec.max_position_embeddings, rows("position_embd.weight"));
  SPARKD_ASSIGN_OR_RETURN(spec.type_vocab_size, rows("token_types.weight"));
  spec.pad_token_id = optional_id(metadata, "tokenizer.ggml.padding_token_id").value_or(0);
  spec.bos_token_id = optional_id(metadata, "tokenizer.ggml.bos_token_id").value_or(-1);
  return spec;
}

// YaRN as llama.cpp computes it: the ramp between the correction dimensions rounded outwards
// (transformers' truncate), beta_fast / beta_slow 32 / 1 unless given, and the attention factor
// 0.1·ln(factor) + 1 (over the same with yarn_log_multiplier as mscale_all_dim, when given)
// times rope.scaling.attn_factor.
Status read_yarn(const GgufMetadata& metadata, const std::string& key, ModelSpec& spec) {
  RopeSpec& rope = spec.rope;
  rope.scaling = RopeSpec::Scaling::kYarn;
  rope.truncate = true;
  SPARKD_ASSIGN_OR_RETURN(rope.original_max_position_embeddings,
                          bounded(metadata, key + "rope.scaling.original_context_length", 1,
                                  kMaxPositions, spec.max_position_embeddings));
  const auto number = [&](const char* name, double fallback) -> Expected<float> {
    SPARKD_ASSIGN_OR_RETURN(auto value, metadata.optional_number(key + name));
    const double got = value.value_or(fallback);
    if (!std::isfinite(got) || got < 0 || got > 1e6) {
      return invalid(metadata.source(), key + name + " is " + std::to_string(got));
    }
    return static_cast<float>(got);
  };
  SPARKD_ASSIGN_OR_RETURN(rope.beta_fast, number("rope.scaling.yarn_beta_fast", 32.0));
  SPARKD_ASSIGN_OR_RETURN(rope.beta_slow, number("rope.scaling.yarn_beta_slow", 1.0));
  SPARKD_ASSIGN_OR_RETURN(const float ext_factor, number("rope.scaling.yarn_ext_factor", 1.0));
  if (ext_factor != 1.0f) {
    return Status(StatusCode::kUnimplemented,
                  metadata.source() + ": rope.scaling.yarn_ext_factor " +
                      std::to_string(ext_factor) + " (sparkd runs YaRN's full ramp, 1)");
  }
  SPARKD_ASSIGN_OR_RETURN(const float log_multiplier,
                          number("rope.scaling.yarn_log_multiplier", 0.0));
  SPARKD_ASSIGN_OR_RETURN(const float attn_factor, number("rope.scaling.attn_factor", 1.0));
  const auto mscale = [&](double m) {
    return rope.factor <= 1 ? 1.0 : 0.1 * m * std::log(rope.factor) + 1.0;
  };
  rope.attention_factor = static_cast<float>(
      (log_multiplier != 0.0f ? mscale(1.0) / mscale(log_multiplier) : mscale(1.0)) * attn_factor);
  return Status::ok();
}

// Which layers slide (llama.cpp's load_swa_pattern for gpt-oss): the key
// attention.sliding_window_pattern as one flag per layer, or as a period n whose last layer
// is full (default 2: even layers slide).
Status read_swa_pattern(const GgufMetadata& metadata, const std::string& key, ModelSpec& spec) {
  const std::string pattern_key = key + "attention.sliding_window_pattern";
  std::vector<bool> sliding(static_cast<size_t>(spec.num_layers));
  const GgufValue* value = metadata.find(pattern_key);
  if (value != nullptr && value->type == GgufValueType::kArray) {
    SPARKD_ASSIGN_OR_RETURN(auto flags, metadata.integer_array(pattern_key));
    if (flags->size() != sliding.size()) {
      return invalid(metadata.source(), pattern_key + " has " + std::to_string(flags->size()) +
                                            " entries for " + std::to_string(sliding.size()) +
                                            " layers");
    }
    for (size_t l = 0; l < sliding.size(); ++l) sliding[l] = (*flags)[l] != 0;
  } else {
    SPARKD_ASSIGN_OR_RETURN(int32_t period, bounded(metadata, pattern_key, 0, kMaxLayers, 2));
    for (int32_t l = 0; l < spec.num_layers; ++l) {
      sliding[static_cast<size_t>(l)] = period == 0 || l % period < period - 1;
    }
  }
  for (int32_t l = 0; l < spec.num_layers; ++l) {
    if (!sliding[static_cast<size_t>(l)]) spec.full_attention_layers.push_back(l);
  }
  return Status::ok();
}

// qwen35moe (llama.cpp's Qwen3.5-MoE): which layers are Gated DeltaNet
// (attention.recurrent_layers, else every full_attention_interval-th layer is attention), their
// dimensions (ssm.*: state_size is the key and the value head size, group_count the key heads,
// time_step_rank the value heads, tiled over the key heads), the shared expert, the gated
// attention. Its norms are stored with the 1 of zero-centred RMSNorm added.
Status read_qwen3_5_layers(const GgufMetadata& metadata, const std::string& key, ModelSpec& spec) {
  LinearAttentionSpec& linear = spec.linear_attention;
  const std::string layers_key = key + "attention.recurrent_layers";
  if (metadata.find(layers_key) != nullptr) {
    SPARKD_ASSIGN_OR_RETURN(auto flags, metadata.integer_array(layers_key));
    if (!flags || flags->size() < static_cast<size_t>(spec.num_layers)) {
      return invalid(metadata.source(), layers_key + " must flag each of the " +
                                            std::to_string(spec.num_layers) + " layers");
    }
    for (int32_t l = 0; l < spec.num_layers; ++l) {
      if ((*flags)[static_cast<size_t>(l)] != 0) linear.layers.push_back(l);
    }
  } else {
    SPARKD_ASSIGN_OR_RETURN(int32_t interval,
                            bounded(metadata, key + "full_attention_interval", 1, kMaxLayers, 4));
    linear.layers = linear_layers_between_full(spec.num_layers, interval);
  }
  SPARKD_ASSIGN_OR_RETURN(linear.conv_kernel, bounded(metadata, key + "ssm.conv_kernel", 1, 64));
  SPARKD_ASSIGN_OR_RETURN(linear.key_head_dim,
                          bounded(metadata, key + "ssm.state_size", 1, kMaxDim));
  SPARKD_ASSIGN_OR_RETURN(linear.key_heads, bounded(metadata, key + "ssm.group_count", 1, kMaxDim));
  SPARKD_ASSIGN_OR_RETURN(linear.value_heads,
                          bounded(metadata, key + "ssm.time_step_rank", 1, kMaxDim));
  SPARKD_ASSIGN_OR_RETURN(int32_t inner, bounded(metadata, key + "ssm.inner_size", 1, kMaxDim));
  if (linear.value_heads % linear.key_heads != 0 || inner % linear.value_heads != 0) {
    return invalid(metadata.source(), "ssm.time_step_rank " + std::to_string(linear.value_heads) +
                                          " must be a multiple of ssm.group_count " +
                                          std::to_string(linear.key_heads) +
                                          " and divide ssm.inner_size " + std::to_string(inner));
  }
  linear.value_head_dim = inner / linear.value_heads;
  linear.value_heads_tiled = true;
  spec.attention_output_gate = true;
  spec.moe.shared_expert_intermediate_size = spec.intermediate_size;
  return Status::ok();
}

}  // namespace

std::vector<std::string> supported_gguf_architectures() {
  std::vector<std::string> names;
  for (const GgufArchitecture& arch : kArchitectures) names.emplace_back(arch.name);
  return names;
}

std::string hf_tensor_name(ModelFamily family, const std::string& gguf_name) {
  static const std::regex layer(R"(^blk\.([0-9]+)\.([a-z0-9_]+)\.(weight|bias)$)");
  static const std::regex model_tensor(R"(^([a-z_]+)\.(weight|bias)$)");
  // qwen35moe's decay rate has no suffix (transformers' A_log has none either, but it is
  // stored as -exp(A_log): named a_neg, as the decoder uses it).
  static const std::regex bare_layer(R"(^blk\.([0-9]+)\.ssm_a$)");
  std::smatch match;
  if (family == ModelFamily::kBert) {
    if (std::regex_match(gguf_name, match, model_tensor)) {
      for (const auto& [gguf, hf] : kBertModelTensorNames) {
        if (match[1].str() == gguf) return std::string(hf) + "." + match[2].str();
      }
    } else if (std::regex_match(gguf_name, match, layer)) {
      for (const auto& [gguf, hf] : kBertLayerTensorNames) {
        if (match[2].str() == gguf) {
          return "encoder.layer." + match[1].str() + "." + hf + "." + match[3].str();
        }
      }
    }
    return gguf_name;
  }
  for (const auto& [gguf, hf] : kModelTensorNames) {
    if (gguf_name == gguf) return hf;
  }
  if (std::regex_match(gguf_name, match, layer)) {
    const std::string prefix = "model.layers." + match[1].str() + ".";
    if (family == ModelFamily::kQwen3_5) {
      if (match[2].str() == "ssm_dt" && match[3].str() == "bias") {
        return prefix + "linear_attn.dt_bias";
      }
      for (const auto& [gguf, hf] : kQwen3_5LayerTensorNames) {
        if (match[2].str() == gguf) return prefix + hf + "." + match[3].str();
      }
    }
    if (family == ModelFamily::kGptOss) {
      if (match[2].str() == "attn_sinks") return prefix + "self_attn.sinks";
      for (const auto& [gguf, hf] : kGptOssLayerTensorNames) {
        if (match[2].str() == gguf) return prefix + hf + "." + match[3].str();
      }
    }
    for (const auto& [gguf, hf] : kLayerTensorNames) {
      if (match[2].str() == gguf) {
        return "model.layers." + match[1].str() + "." + hf + "." + match[3].str();
      }
    }
  }
  if (family == ModelFamily::kQwen3_5 && std::regex_match(gguf_name, match, bare_layer)) {
    return "model.layers." + match[1].str() + ".linear_attn.a_neg";
  }
  return gguf_name;
}

std::vector<int64_t> llama_row_permutation(const ModelSpec& spec, const std::string& hf_name,
                                           int64_t rows) {
  if (spec.family != ModelFamily::kLlama && spec.family != ModelFamily::kMistral) return {};
  const bool q_or_k = hf_name.find(".self_attn.q_proj.") != std::string::npos ||
                      hf_name.find(".self_attn.k_proj.") != std::string::npos;
  if (!q_or_k || spec.head_dim <= 0 || rows % spec.head_dim != 0) return {};
  // The converter's permute(): per head, rows [half, i] were stored at [i, half].
  const int64_t head_dim = spec.head_dim, half = head_dim / 2;
  std::vector<int64_t> permutation(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t head = r / head_dim, within = r % head_dim;
    permutation[static_cast<size_t>(r)] = head * head_dim + 2 * (within % half) + within / half;
  }
  return permutation;
}

Expected<ModelSpec> gguf_model_spec(const GgufModel& model) {
  const GgufMetadata& metadata = model.metadata();
  const std::string& source = metadata.source();
  SPARKD_ASSIGN_OR_RETURN(std::string arch_name, metadata.string("general.architecture"));
  const GgufArchitecture* arch = nullptr;
  for (const GgufArchitecture& candidate : kArchitectures) {
    if (arch_name == candidate.name) arch = &candidate;
  }
  if (!arch) {
    std::string known;
    for (const std::string& name : supported_gguf_architectures()) {
      known += (known.empty() ? "" : ", ") + name;
    }
    return Status(StatusCode::kUnimplemented, source + ": general.architecture '" + arch_name +
                                                  "' is not one sparkd runs (supported: " + known +
                                                  ")");
  }
  if (arch->family == ModelFamily::kBert) return bert_model_spec(model, *arch);
  const std::string key = arch_name + ".";
  ModelSpec spec;
  spec.architecture = arch->hf_name;
  spec.family = arch->family;
  spec.task = ModelTask::kGenerate;
  spec.is_decoder = true;
  spec.activation = Activation::kSilu;
  spec.pooling = Pooling::kLastToken;

  SPARKD_ASSIGN_OR_RETURN(spec.hidden_size,
                          bounded(metadata, key + "embedding_length", 1, kMaxDim));
  SPARKD_ASSIGN_OR_RETURN(spec.num_layers, bounded(metadata, key + "block_count", 1, kMaxLayers));
  // Multi-token-prediction layers (qwen35moe's converter may append them) are a draft model's,
  // not the decoder's.
  SPARKD_ASSIGN_OR_RETURN(int32_t prediction_layers, bounded(metadata, key + "nextn_predict_layers",
                                                             0, spec.num_layers - 1, 0));
  spec.num_layers -= prediction_layers;
  const bool qwen3_5 = spec.family == ModelFamily::kQwen3_5;
  SPARKD_ASSIGN_OR_RETURN(
      auto feed_forward,
      uniform_integer(
          metadata, key + (qwen3_5 ? "expert_shared_feed_forward_length" : "feed_forward_length")));
  SPARKD_ASSIGN_OR_RETURN(auto heads, uniform_integer(metadata, key + "attention.head_count"));
  SPARKD_ASSIGN_OR_RETURN(auto kv_heads,
                          uniform_integer(metadata, key + "attention.head_count_kv"));
  if (!feed_forward || !heads) {
    return invalid(source,
                   "metadata keys " + key +
                       (qwen3_5 ? "expert_shared_feed_forward_length" : "feed_forward_length") +
                       " and " + key + "attention.head_count are required");
  }
  auto in_range = [&](int64_t value, const std::string& what, int64_t high) -> Status {
    if (value < 1 || value > high) {
      return invalid(source, what + " is " + std::to_string(value));
    }
    return Status::ok();
  };
  SPARKD_RETURN_IF_ERROR(in_range(*feed_forward, key + "feed_forward_length", kMaxDim));
  SPARKD_RETURN_IF_ERROR(in_range(*heads, key + "attention.head_count", kMaxDim));
  spec.intermediate_size = static_cast<int32_t>(*feed_forward);
  spec.num_heads = static_cast<int32_t>(*heads);
  spec.num_kv_heads = static_cast<int32_t>(kv_heads.value_or(*heads));
  SPARKD_RETURN_IF_ERROR(in_range(spec.num_kv_heads, key + "attention.head_count_kv", kMaxDim));
  if (spec.num_heads % spec.num_kv_heads != 0) {
    return invalid(source, "attention.head_count (" + std::to_string(spec.num_heads) +
                               ") is not a multiple of attention.head_count_kv (" +
                               std::to_string(spec.num_kv_heads) + ")");
  }
  std::optional<int64_t> default_head_dim;
  if (spec.hidden_size % spec.num_heads == 0) default_head_dim = spec.hidden_size / spec.num_heads;
  SPARKD_ASSIGN_OR_RETURN(
      spec.head_dim, bounded(metadata, key + "attention.key_length", 2, kMaxDim, default_head_dim));
  SPARKD_ASSIGN_OR_RETURN(int32_t value_length, bounded(metadata, key + "attention.value_length", 2,
                                                        kMaxDim, spec.head_dim));
  if (value_length != spec.head_dim || spec.head_dim % 2 != 0) {
    return Status(StatusCode::kUnimplemented,
                  source + ": key_length " + std::to_string(spec.head_dim) + " and value_length " +
                      std::to_string(value_length) +
                      ": sparkd runs equal, even key and value head sizes");
  }
  SPARKD_ASSIGN_OR_RETURN(spec.max_position_embeddings,
                          bounded(metadata, key + "context_length", 1, kMaxPositions, 2048));
  SPARKD_ASSIGN_OR_RETURN(auto eps,
                          metadata.optional_number(key + "attention.layer_norm_rms_epsilon"));
  spec.norm_eps = static_cast<float>(eps.value_or(1e-6));
  if (!(spec.norm_eps > 0 && spec.norm_eps < 1)) {
    return invalid(source, "attention.layer_norm_rms_epsilon is " + std::to_string(spec.norm_eps));
  }
  SPARKD_ASSIGN_OR_RETURN(auto theta, metadata.optional_number(key + "rope.freq_base"));
  spec.rope.theta = static_cast<float>(theta.value_or(10000.0));
  if (!(spec.rope.theta > 0) || !std::isfinite(spec.rope.theta)) {
    return invalid(source, "rope.freq_base is " + std::to_string(spec.rope.theta));
  }
  SPARKD_ASSIGN_OR_RETURN(auto rope_dims, metadata.optional_integer(key + "rope.dimension_count"));
  if (qwen3_5 && rope_dims) {
    // Partial rotary. Its IMROPE sections give text tokens the same position in every
    // section: plain rotary over the first dimension_count dimensions.
    if (*rope_dims < 2 || *rope_dims > spec.head_dim || *rope_dims % 2 != 0) {
      return invalid(source, "rope.dimension_count is " + std::to_string(*rope_dims) +
                                 " for heads of " + std::to_string(spec.head_dim));
    }
    spec.rotary_dim = static_cast<int32_t>(*rope_dims);
  } else if (rope_dims && *rope_dims != spec.head_dim) {
    return Status(StatusCode::kUnimplemented,
                  source + ": rope.dimension_count " + std::to_string(*rope_dims) +
                      " rotates part of each head of " + std::to_string(spec.head_dim) +
                      "; sparkd rotates whole heads");
  }
  SPARKD_ASSIGN_OR_RETURN(auto scaling, metadata.optional_string(key + "rope.scaling.type"));
  if (scaling && (*scaling == "linear" || *scaling == "yarn")) {
    SPARKD_ASSIGN_OR_RETURN(auto factor, metadata.optional_number(key + "rope.scaling.factor"));
    spec.rope.factor = static_cast<float>(factor.value_or(1.0));
    if (!(spec.rope.factor > 0) || !std::isfinite(spec.rope.factor)) {
      return invalid(source, "rope.scaling.factor is " + std::to_string(spec.rope.factor));
    }
    spec.rope.scaling = RopeSpec::Scaling::kLinear;
    if (*scaling == "yarn") SPARKD_RETURN_IF_ERROR(read_yarn(metadata, key, spec));
  } else if (scaling && *scaling != "none") {
    return Status(StatusCode::kUnimplemented, source + ": RoPE scaling '" + *scaling +
                                                  "' (sparkd runs none, linear, yarn, llama3)");
  }
  if (arch_name == "qwen3moe" || arch_name == "gpt-oss" || qwen3_5) {
    // llama.cpp's qwen3moe and gpt-oss: every layer sparse, the top k renormalised (gpt-oss
    // softmaxes the top k logits: the same).
    MoeSpec& moe = spec.moe;
    SPARKD_ASSIGN_OR_RETURN(moe.num_experts, bounded(metadata, key + "expert_count", 1, 1 << 16));
    SPARKD_ASSIGN_OR_RETURN(moe.experts_per_token,
                            bounded(metadata, key + "expert_used_count", 1, moe.num_experts));
    SPARKD_ASSIGN_OR_RETURN(moe.expert_intermediate_size,
                            bounded(metadata, key + "expert_feed_forward_length", 1, kMaxDim));
    moe.normalize_top_k = true;
  }
  if (qwen3_5) SPARKD_RETURN_IF_ERROR(read_qwen3_5_layers(metadata, key, spec));
  if (arch_name == "gpt-oss") {
    // llama.cpp's gpt-oss graph: biased router and experts, the clamped SwiGLU with its
    // constants (alpha 1.702, limit 7, which llama.cpp hard-codes), sinks on every layer.
    spec.moe.router_bias = spec.moe.expert_bias = true;
    spec.moe.activation = ExpertActivation::kClampedSwiglu;
    spec.attention_sinks = true;
  }
  SPARKD_ASSIGN_OR_RETURN(auto window, metadata.optional_integer(key + "attention.sliding_window"));
  if (window && *window > 0 && *window < spec.max_position_embeddings) {
    spec.sliding_window = static_cast<int32_t>(*window);
    if (arch_name == "gpt-oss") SPARKD_RETURN_IF_ERROR(read_swa_pattern(metadata, key, spec));
  }

  // What the tensors say: the vocabulary is the embedding's rows, an absent output.weight
  // means tied embeddings, biases and q/k norms exist or not.
  const auto tensors = model.tensors();
  const GgufTensorInfo* embedding = find_tensor(tensors, "token_embd.weight");
  if (!embedding || embedding->shape.size() != 2) {
    return Status(StatusCode::kDataLoss,
                  source + ": tensor 'token_embd.weight' [vocab, hidden] is missing");
  }
  if (embedding->shape[0] > kMaxVocab) {
    return invalid(source, "a vocabulary of " + std::to_string(embedding->shape[0]) + " tokens");
  }
  spec.vocab_size = static_cast<int32_t>(embedding->shape[0]);
  spec.tie_word_embeddings = find_tensor(tensors, "output.weight") == nullptr;
  spec.attention_qkv_bias = find_tensor(tensors, "blk.0.attn_q.bias") != nullptr;
  spec.attention_out_bias = find_tensor(tensors, "blk.0.attn_output.bias") != nullptr;
  spec.mlp_bias = find_tensor(tensors, "blk.0.ffn_up.bias") != nullptr;
  // qwen35moe's first layers are linear attention: its q/k norms are a given (llama.cpp's
  // graph requires them; the decoder's binding names any missing one).
  spec.qk_norm = qwen3_5 || find_tensor(tensors, "blk.0.attn_q_norm.weight") != nullptr;
  spec.rope_freq_factors = find_tensor(tensors, "rope_freqs.weight") != nullptr;
  if (spec.qk_norm != (spec.family == ModelFamily::kQwen3 || qwen3_5)) {
    return invalid(source, std::string(arch->name) + (spec.qk_norm ? " with" : " without") +
                               " q/k norm tensors");
  }

  spec.bos_token_id = optional_id(metadata, "tokenizer.ggml.bos_token_id").value_or(-1);
  for (const char* eos_key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                              "tokenizer.ggml.eom_token_id"}) {
    if (auto id = optional_id(metadata, eos_key)) {
      if (std::find(spec.eos_token_ids.begin(), spec.eos_token_ids.end(), *id) ==
          spec.eos_token_ids.end()) {
        spec.eos_token_ids.push_back(*id);
      }
    }
  }
  return spec;
}

Expected<tokenizer::GgmlVocabulary> gguf_vocabulary(const GgufModel& model) {
  const GgufMetadata& metadata = model.metadata();
  tokenizer::GgmlVocabulary vocabulary;
  SPARKD_ASSIGN_OR_RETURN(vocabulary.model, metadata.string("tokenizer.ggml.model"));
  SPARKD_ASSIGN_OR_RETURN(auto pre, metadata.optional_string("tokenizer.ggml.pre"));
  vocabulary.pre = pre.value_or("");
  SPARKD_ASSIGN_OR_RETURN(auto tokens, metadata.string_array("tokenizer.ggml.tokens"));
  if (!tokens) {
    return Status(StatusCode::kDataLoss,
                  metadata.source() + ": metadata key 'tokenizer.ggml.tokens' is missing");
  }
  vocabulary.tokens = *tokens;
  SPARKD_ASSIGN_OR_RETURN(auto scores, metadata.number_array("tokenizer.ggml.scores"));
  if (scores) vocabulary.scores.assign(scores->begin(), scores->end());
  SPARKD_ASSIGN_OR_RETURN(auto types, metadata.integer_array("tokenizer.ggml.token_type"));
  if (types) {
    for (int64_t type : *types) {
      if (type < 0 || type > static_cast<int64_t>(tokenizer::GgmlTokenType::kByte)) {
        return invalid(metadata.source(), "tokenizer.ggml.token_type holds " +
                                              std::to_string(type) + ", not a token type (0 to 6)");
      }
      vocabulary.token_types.push_back(static_cast<int32_t>(type));
    }
  }
  SPARKD_ASSIGN_OR_RETURN(auto merges, metadata.string_array("tokenizer.ggml.merges"));
  if (merges) vocabulary.merges = *merges;
  vocabulary.bos_id = optional_id(metadata, "tokenizer.ggml.bos_token_id");
  vocabulary.eos_id = optional_id(metadata, "tokenizer.ggml.eos_token_id");
  vocabulary.unknown_id = optional_id(metadata, "tokenizer.ggml.unknown_token_id");
  vocabulary.separator_id = optional_id(metadata, "tokenizer.ggml.seperator_token_id");
  vocabulary.padding_id = optional_id(metadata, "tokenizer.ggml.padding_token_id");
  vocabulary.mask_id = optional_id(metadata, "tokenizer.ggml.mask_token_id");
  SPARKD_ASSIGN_OR_RETURN(vocabulary.add_bos,
                          metadata.optional_bool("tokenizer.ggml.add_bos_token"));
  SPARKD_ASSIGN_OR_RETURN(vocabulary.add_eos,
                          metadata.optional_bool("tokenizer.ggml.add_eos_token"));
  SPARKD_ASSIGN_OR_RETURN(vocabulary.add_space_prefix,
                          metadata.optional_bool("tokenizer.ggml.add_space_prefix"));
  SPARKD_ASSIGN_OR_RETURN(vocabulary.lowercase,
                          metadata.optional_bool("tokenizer.ggml.normalizer.lowercase"));
  SPARKD_ASSIGN_OR_RETURN(vocabulary.strip_accents,
                          metadata.optional_bool("tokenizer.ggml.normalizer.strip_accents"));
  return vocabulary;
}

Expected<std::optional<std::string>> gguf_chat_template(const GgufModel& model) {
  return model.metadata().optional_string("tokenizer.chat_template");
}

}  // namespace sparkd::model
