// config.json (plus generation_config.json and the sentence-transformers files) -> ModelSpec.
//
// Defaults are the transformers 5.x config classes' defaults for a missing or null field, so
// a config that loads in transformers means the same thing here. Every value that sizes
// something is bounded, because config.json is untrusted input (the fuzz target feeds it
// arbitrary bytes) and architecture code allocates from these numbers.

#include "engine/model/model_spec.h"

#include <algorithm>
#include <initializer_list>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <utility>

#include "engine/model/untrusted_json.h"

namespace sparkd::model {

namespace {

using nlohmann::json;

// Far above any real model, far below what would overflow the products that size buffers.
constexpr int64_t kMaxLabels = int64_t{1} << 16;
constexpr size_t kMaxTokenIds = 1024;
// Config files are a few KiB; anything this large is not one.
constexpr uintmax_t kMaxConfigFileBytes = 16u << 20;

// Thrown inside this file only, caught at the two entry points: the field readers below can
// then simply return values.
struct SpecError {
  Status status;
};

[[noreturn]] void fail(StatusCode code, std::string_view source, const std::string& message) {
  throw SpecError{Status(code, std::string(source) + ": " + message)};
}

json parse_json_object(std::string_view text, std::string_view source) {
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::exception& error) {
    fail(StatusCode::kInvalidArgument, source, "not valid JSON (" + json_error_text(error) + ")");
  }
  if (!root.is_object()) {
    fail(StatusCode::kInvalidArgument, source,
         "must be a JSON object, got " + describe_untrusted_json(root));
  }
  return root;
}

// The fields of one JSON object. `prefix` names a nested object in errors
// ("rope_parameters.factor").
class Fields {
 public:
  Fields(const json& object, std::string_view source, std::string prefix = "")
      : object_(object), source_(source), prefix_(std::move(prefix)) {}

  std::string_view source() const { return source_; }
  std::string label(std::string_view field) const { return prefix_ + std::string(field); }
  [[noreturn]] void fail_field(StatusCode code, std::string_view field,
                               const std::string& message) const {
    fail(code, source_, label(field) + " " + message);
  }

  // nullptr when absent or null: transformers reads both as "use the default".
  const json* find(std::string_view field) const {
    auto it = object_.find(field);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool has(std::string_view field) const { return find(field) != nullptr; }

  int32_t get_int(std::string_view field, int64_t min, int64_t max) const {
    const json* value = find(field);
    if (value == nullptr) fail(StatusCode::kInvalidArgument, source_, "missing " + label(field));
    return as_int(*value, field, min, max);
  }
  int32_t get_int_or(std::string_view field, int64_t min, int64_t max, int32_t fallback) const {
    const json* value = find(field);
    return value == nullptr ? fallback : as_int(*value, field, min, max);
  }
  int32_t as_int(const json& value, std::string_view field, int64_t min, int64_t max) const {
    bool ok = false;
    int64_t result = 0;
    if (value.is_number_unsigned()) {
      const uint64_t raw = value.get<uint64_t>();
      ok = raw <= static_cast<uint64_t>(max);
      result = ok ? static_cast<int64_t>(raw) : 0;
    } else if (value.is_number_integer()) {
      result = value.get<int64_t>();
      ok = true;
    }
    if (!ok || result < min || result > max) {
      fail_field(StatusCode::kInvalidArgument, field,
                 "must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                     "], got " + describe_untrusted_json(value));
    }
    return static_cast<int32_t>(result);
  }

  // A finite number in (min_exclusive, max_inclusive].
  float get_float(std::string_view field, double min_exclusive, double max_inclusive) const {
    const json* value = find(field);
    if (value == nullptr) fail(StatusCode::kInvalidArgument, source_, "missing " + label(field));
    return as_float(*value, field, min_exclusive, max_inclusive);
  }
  float get_float_or(std::string_view field, double min_exclusive, double max_inclusive,
                     float fallback) const {
    const json* value = find(field);
    return value == nullptr ? fallback : as_float(*value, field, min_exclusive, max_inclusive);
  }
  float as_float(const json& value, std::string_view field, double min_exclusive,
                 double max_inclusive) const {
    // Range-checked as a double before narrowing (an out-of-range double -> float is UB),
    // and again after it: a tiny positive double such as 1e-86 rounds to 0.0f, which would
    // pass as "> 0" here and divide by zero later.
    const double number = value.is_number() ? value.get<double>() : std::nan("");
    const bool in_range = number > min_exclusive && number <= max_inclusive;
    const float narrowed = in_range ? static_cast<float>(number) : 0.0f;
    if (!in_range || !(narrowed > min_exclusive && narrowed <= max_inclusive)) {
      std::ostringstream range;
      range << "(" << min_exclusive << ", " << max_inclusive << "]";
      fail_field(StatusCode::kInvalidArgument, field,
                 "must be a number in " + range.str() + " as a 32-bit float, got " +
                     describe_untrusted_json(value));
    }
    return narrowed;
  }

  bool get_bool_or(std::string_view field, bool fallback) const {
    const json* value = find(field);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) {
      fail_field(StatusCode::kInvalidArgument, field,
                 "must be true or false, got " + describe_untrusted_json(*value));
    }
    return value->get<bool>();
  }

  std::string get_string_or(std::string_view field, std::string fallback) const {
    const json* value = find(field);
    if (value == nullptr) return fallback;
    if (!value->is_string()) {
      fail_field(StatusCode::kInvalidArgument, field,
                 "must be a string, got " + describe_untrusted_json(*value));
    }
    return value->get<std::string>();
  }

 private:
  const json& object_;
  std::string_view source_;
  std::string prefix_;
};

struct ArchitectureInfo {
  const char* name;
  ModelFamily family;
  ModelTask task;
};

// What each supported config.json "architectures" entry means. The *Model classes of the
// decoder families are the bare transformer (no LM head): embedders such as Qwen3-Embedding.
constexpr ArchitectureInfo kArchitectures[] = {
    {"LlamaForCausalLM", ModelFamily::kLlama, ModelTask::kGenerate},
    {"MistralForCausalLM", ModelFamily::kMistral, ModelTask::kGenerate},
    {"Qwen2ForCausalLM", ModelFamily::kQwen2, ModelTask::kGenerate},
    {"Qwen3ForCausalLM", ModelFamily::kQwen3, ModelTask::kGenerate},
    {"Qwen3MoeForCausalLM", ModelFamily::kQwen3, ModelTask::kGenerate},
    {"MixtralForCausalLM", ModelFamily::kMistral, ModelTask::kGenerate},
    {"GptOssForCausalLM", ModelFamily::kGptOss, ModelTask::kGenerate},
    {"Qwen3_5MoeForCausalLM", ModelFamily::kQwen3_5, ModelTask::kGenerate},
    // The released checkpoints: the text model under "text_config" beside a vision tower,
    // which sparkd does not load.
    {"Qwen3_5MoeForConditionalGeneration", ModelFamily::kQwen3_5, ModelTask::kGenerate},
    // Qwen3.5's predecessor with the same hybrid layers (fused input projections, dense
    // mlp_only_layers, norm_topk_prob).
    {"Qwen3NextForCausalLM", ModelFamily::kQwen3_5, ModelTask::kGenerate},
    {"LlamaModel", ModelFamily::kLlama, ModelTask::kEmbed},
    {"MistralModel", ModelFamily::kMistral, ModelTask::kEmbed},
    {"Qwen2Model", ModelFamily::kQwen2, ModelTask::kEmbed},
    {"Qwen3Model", ModelFamily::kQwen3, ModelTask::kEmbed},
    {"BertModel", ModelFamily::kBert, ModelTask::kEmbed},
    {"XLMRobertaModel", ModelFamily::kXlmRoberta, ModelTask::kEmbed},
    // RoBERTa is XLM-R's architecture (transformers' XLM-R classes are copies of it).
    {"RobertaModel", ModelFamily::kXlmRoberta, ModelTask::kEmbed},
    {"BertForSequenceClassification", ModelFamily::kBert, ModelTask::kRerank},
    {"XLMRobertaForSequenceClassification", ModelFamily::kXlmRoberta, ModelTask::kRerank},
};

// Old configs without "architectures": the class AutoModel would pick from model_type.
constexpr std::pair<const char*, const char*> kModelTypeArchitectures[] = {
    {"llama", "LlamaForCausalLM"},
    {"mistral", "MistralForCausalLM"},
    {"qwen2", "Qwen2ForCausalLM"},
    {"qwen3", "Qwen3ForCausalLM"},
    {"qwen3_moe", "Qwen3MoeForCausalLM"},
    {"mixtral", "MixtralForCausalLM"},
    {"gpt_oss", "GptOssForCausalLM"},
    {"qwen3_5_moe_text", "Qwen3_5MoeForCausalLM"},
    {"qwen3_5_moe", "Qwen3_5MoeForConditionalGeneration"},
    {"qwen3_next", "Qwen3NextForCausalLM"},
    {"bert", "BertModel"},
    {"xlm-roberta", "XLMRobertaModel"},
    {"roberta", "RobertaModel"},
};

const ArchitectureInfo* find_architecture(std::string_view name) {
  for (const ArchitectureInfo& info : kArchitectures) {
    if (name == info.name) return &info;
  }
  return nullptr;
}

std::string supported_list() {
  std::string out;
  for (const std::string& name : supported_architectures()) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

const ArchitectureInfo& read_architecture(const Fields& config) {
  const json* list = config.find("architectures");
  if (list != nullptr) {
    if (!list->is_array() || list->empty()) {
      config.fail_field(
          StatusCode::kInvalidArgument, "architectures",
          "must be a non-empty list of class names, got " + describe_untrusted_json(*list));
    }
    for (const json& name : *list) {
      if (!name.is_string()) {
        config.fail_field(StatusCode::kInvalidArgument, "architectures",
                          "must list class names (strings), got " + describe_untrusted_json(name));
      }
      if (const ArchitectureInfo* info = find_architecture(name.get_ref<const std::string&>())) {
        return *info;
      }
    }
    fail(StatusCode::kUnimplemented, config.source(),
         "unsupported architecture " + describe_untrusted_json(list->front()) +
             " (supported: " + supported_list() + ")");
  }
  const std::string model_type = config.get_string_or("model_type", "");
  for (const auto& [type, architecture] : kModelTypeArchitectures) {
    if (model_type == type) return *find_architecture(architecture);
  }
  fail(StatusCode::kUnimplemented, config.source(),
       "no \"architectures\" entry" +
           (model_type.empty() ? std::string()
                               : " and unsupported model_type '" + model_type + "'") +
           " (supported architectures: " + supported_list() + ")");
}

Activation read_activation(const Fields& config, const char* fallback) {
  const std::string name = config.get_string_or("hidden_act", fallback);
  if (name == "silu" || name == "swish") return Activation::kSilu;
  if (name == "gelu") return Activation::kGelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Activation::kGeluTanh;
  config.fail_field(
      StatusCode::kUnimplemented, "hidden_act",
      "'" + name + "' is not supported (supported: silu, gelu, gelu_new, " + "gelu_pytorch_tanh)");
}

// transformers 5.x writes "rope_parameters": {rope_theta, rope_type, factor, ...}; older
// configs have "rope_scaling": {type | rope_type, factor, ...} beside a top-level rope_theta.
// YaRN (transformers' _compute_yarn_parameters): the factor (or max_position_embeddings over
// the original length, as DeepSeek-V3's configs give it), the ramp's betas, and the attention
// factor, given or derived from mscale / mscale_all_dim.
void read_yarn(const Fields& config, const Fields& p, RopeSpec& rope) {
  rope.scaling = RopeSpec::Scaling::kYarn;
  const int32_t max_positions =
      config.get_int_or("max_position_embeddings", 1, kMaxPositions, 2048);
  rope.original_max_position_embeddings = p.get_int_or(
      "original_max_position_embeddings", 1, kMaxPositions,
      config.get_int_or("original_max_position_embeddings", 1, kMaxPositions, max_positions));
  rope.factor = p.has("factor") ? p.get_float("factor", 0.0, 1e6)
                                : static_cast<float>(max_positions) /
                                      static_cast<float>(rope.original_max_position_embeddings);
  // transformers reads these with `or`: 0 means the default too.
  const float beta_fast = p.get_float_or("beta_fast", -1.0, 1e6, 0.0f);
  const float beta_slow = p.get_float_or("beta_slow", -1.0, 1e6, 0.0f);
  rope.beta_fast = beta_fast != 0.0f ? beta_fast : 32.0f;
  rope.beta_slow = beta_slow != 0.0f ? beta_slow : 1.0f;
  rope.truncate = p.get_bool_or("truncate", true);
  const auto mscale = [](double scale, double m) {
    return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
  };
  if (p.has("attention_factor")) {
    rope.attention_factor = p.get_float("attention_factor", 0.0, 1e6);
  } else {
    const float m = p.get_float_or("mscale", -1e6, 1e6, 0.0f);
    const float m_all = p.get_float_or("mscale_all_dim", -1e6, 1e6, 0.0f);
    rope.attention_factor = static_cast<float>(
        m != 0.0f && m_all != 0.0f ? mscale(rope.factor, m) / mscale(rope.factor, m_all)
                                   : mscale(rope.factor, 1.0));
  }
}

RopeSpec read_rope(const Fields& config, float default_theta) {
  RopeSpec rope;
  std::string key = "rope_parameters";
  const json* params = config.find(key);
  if (params == nullptr) {
    key = "rope_scaling";
    params = config.find(key);
  }
  rope.theta = config.get_float_or("rope_theta", 0.0, 1e12, default_theta);
  if (params == nullptr) return rope;
  if (!params->is_object()) {
    config.fail_field(StatusCode::kInvalidArgument, key,
                      "must be an object, got " + describe_untrusted_json(*params));
  }
  const Fields p(*params, config.source(), key + ".");
  if (!p.has("rope_type") && !p.has("type") && !p.has("rope_theta") && !params->empty() &&
      std::all_of(params->begin(), params->end(), [](const json& v) { return v.is_object(); })) {
    config.fail_field(StatusCode::kUnimplemented, key,
                      "gives rope parameters per layer type; sparkd supports one set for all "
                      "layers");
  }
  rope.theta = p.get_float_or("rope_theta", 0.0, 1e12, rope.theta);
  const std::string type = p.get_string_or("rope_type", p.get_string_or("type", "default"));
  if (type == "default") return rope;
  if (type == "linear") {
    rope.scaling = RopeSpec::Scaling::kLinear;
    rope.factor = p.get_float("factor", 0.0, 1e6);
    return rope;
  }
  if (type == "llama3") {
    rope.scaling = RopeSpec::Scaling::kLlama3;
    rope.factor = p.get_float("factor", 0.0, 1e6);
    rope.low_freq_factor = p.get_float("low_freq_factor", 0.0, 1e6);
    rope.high_freq_factor = p.get_float("high_freq_factor", 0.0, 1e6);
    rope.original_max_position_embeddings =
        p.get_int("original_max_position_embeddings", 1, kMaxPositions);
    if (!(rope.high_freq_factor > rope.low_freq_factor)) {
      p.fail_field(StatusCode::kInvalidArgument, "high_freq_factor",
                   "(" + describe_untrusted_json(*p.find("high_freq_factor")) +
                       ") must be larger than low_freq_factor (" +
                       describe_untrusted_json(*p.find("low_freq_factor")) + ")");
    }
    return rope;
  }
  if (type == "yarn") {
    read_yarn(config, p, rope);
    return rope;
  }
  p.fail_field(StatusCode::kUnimplemented, p.has("rope_type") ? "rope_type" : "type",
               "'" + type + "' is not supported (supported: default, linear, llama3, yarn)");
}

// transformers 5's "layer_types": each layer's kind, one of `supported` (the family's); nullopt
// when the config does not list them.
std::optional<std::vector<std::string>> read_layer_types(
    const Fields& config, int32_t num_layers, std::initializer_list<std::string_view> supported) {
  const json* types = config.find("layer_types");
  if (types == nullptr) return std::nullopt;
  if (!types->is_array() || types->size() != static_cast<size_t>(num_layers)) {
    config.fail_field(StatusCode::kInvalidArgument, "layer_types",
                      "must list one entry per layer (" + std::to_string(num_layers) + "), got " +
                          describe_untrusted_json(*types));
  }
  std::vector<std::string> kinds;
  for (const json& type : *types) {
    if (!type.is_string() ||
        std::find(supported.begin(), supported.end(), type.get<std::string>()) == supported.end()) {
      std::string list;
      for (std::string_view kind : supported)
        list += (list.empty() ? "" : ", ") + std::string(kind);
      config.fail_field(
          StatusCode::kUnimplemented, "layer_types",
          "entry " + describe_untrusted_json(type) + " is not supported (supported: " + list + ")");
    }
    kinds.push_back(type.get<std::string>());
  }
  return kinds;
}

// For each layer whether it is "sliding_attention" (else "full_attention"); nullopt when the
// config does not list them.
std::optional<std::vector<bool>> read_sliding_layers(const Fields& config, int32_t num_layers) {
  const auto kinds = read_layer_types(config, num_layers, {"full_attention", "sliding_attention"});
  if (!kinds) return std::nullopt;
  std::vector<bool> sliding;
  for (const std::string& kind : *kinds) sliding.push_back(kind == "sliding_attention");
  return sliding;
}

// The window and the layers exempt from it, given which layers slide.
void set_sliding_layers(const Fields& config, const std::vector<bool>& sliding,
                        int32_t default_window, ModelSpec& spec) {
  if (std::find(sliding.begin(), sliding.end(), true) == sliding.end()) return;
  spec.sliding_window =
      default_window > 0 ? config.get_int_or("sliding_window", 1,
                                             std::numeric_limits<int32_t>::max(), default_window)
                         : config.get_int("sliding_window", 1, std::numeric_limits<int32_t>::max());
  for (int32_t layer = 0; layer < static_cast<int32_t>(sliding.size()); ++layer) {
    if (!sliding[layer]) spec.full_attention_layers.push_back(layer);
  }
}

// Qwen2/Qwen3: a window only when use_sliding_window, and then only on the layers from
// max_window_layers on (transformers 5.x spells the result out as "layer_types").
void read_qwen_sliding_window(const Fields& config, ModelSpec& spec) {
  std::optional<std::vector<bool>> sliding = read_sliding_layers(config, spec.num_layers);
  if (!sliding) {
    sliding.emplace(spec.num_layers, false);
    if (config.get_bool_or("use_sliding_window", false)) {
      const int32_t full_layers = config.get_int_or("max_window_layers", 0, kMaxLayers, 28);
      for (int32_t layer = full_layers; layer < spec.num_layers; ++layer) (*sliding)[layer] = true;
    }
  }
  set_sliding_layers(config, *sliding, 0, spec);
}

// GptOssConfig: a window of 128 on every other layer (the even ones) unless layer_types says
// otherwise.
void read_gpt_oss_sliding_window(const Fields& config, ModelSpec& spec) {
  std::optional<std::vector<bool>> sliding = read_sliding_layers(config, spec.num_layers);
  if (!sliding) {
    sliding.emplace(spec.num_layers, false);
    for (int32_t layer = 0; layer < spec.num_layers; layer += 2) (*sliding)[layer] = true;
  }
  set_sliding_layers(config, *sliding, 128, spec);
}

std::vector<int32_t> read_token_ids(const Fields& config, std::string_view field,
                                    int32_t vocab_size) {
  std::vector<int32_t> ids;
  const json* value = config.find(field);
  if (value == nullptr) return ids;
  if (value->is_array()) {
    if (value->size() > kMaxTokenIds) {
      config.fail_field(StatusCode::kInvalidArgument, field,
                        "lists " + std::to_string(value->size()) + " ids; at most " +
                            std::to_string(kMaxTokenIds) + " are supported");
    }
    for (const json& id : *value) {
      if (!id.is_null()) ids.push_back(config.as_int(id, field, 0, vocab_size - 1));
    }
  } else {
    ids.push_back(config.as_int(*value, field, 0, vocab_size - 1));
  }
  return ids;
}

void read_labels(const Fields& config, ModelSpec& spec) {
  const json* id2label = config.find("id2label");
  if (id2label == nullptr) {
    // PretrainedConfig's default is two labels.
    spec.num_labels = config.get_int_or("num_labels", 1, kMaxLabels, 2);
    for (int32_t i = 0; i < spec.num_labels; ++i)
      spec.labels.push_back("LABEL_" + std::to_string(i));
    return;
  }
  if (!id2label->is_object() || id2label->empty() ||
      id2label->size() > static_cast<size_t>(kMaxLabels)) {
    config.fail_field(StatusCode::kInvalidArgument, "id2label",
                      "must be a non-empty object {\"0\": label, ...} of at most " +
                          std::to_string(kMaxLabels) + " labels, got " +
                          describe_untrusted_json(*id2label));
  }
  // id2label wins over num_labels, as in transformers.
  std::vector<std::optional<std::string>> labels(id2label->size());
  for (auto it = id2label->begin(); it != id2label->end(); ++it) {
    const std::string& key = it.key();
    size_t id = 0;
    bool ok = !key.empty() && key.size() <= 6 &&
              std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (ok) {
      id = static_cast<size_t>(std::stoul(key));
      ok = id < labels.size() && !labels[id].has_value() && it->is_string();
    }
    if (!ok) {
      config.fail_field(StatusCode::kInvalidArgument, "id2label",
                        "must map the ids 0.." + std::to_string(labels.size() - 1) +
                            " to label strings, got key " + describe_untrusted_json(json(key)) +
                            " -> " + describe_untrusted_json(*it));
    }
    labels[id] = it->get<std::string>();
  }
  spec.num_labels = static_cast<int32_t>(labels.size());
  for (auto& label : labels) spec.labels.push_back(std::move(*label));
}

// "mlp_only_layers": the layers that keep a dense MLP in a mixture of experts.
void read_dense_layers(const Fields& config, ModelSpec& spec) {
  const json* dense = config.find("mlp_only_layers");
  if (dense == nullptr) return;
  if (!dense->is_array()) {
    config.fail_field(StatusCode::kInvalidArgument, "mlp_only_layers",
                      "must be a list of layer indexes, got " + describe_untrusted_json(*dense));
  }
  for (const json& layer : *dense) {
    spec.moe.dense_layers.push_back(
        config.as_int(layer, "mlp_only_layers", 0, spec.num_layers - 1));
  }
}

// Qwen3MoeConfig's fields (the released checkpoints name the expert count "num_experts";
// transformers 5 writes "num_local_experts"), with its defaults.
void read_moe(const Fields& config, ModelSpec& spec) {
  MoeSpec& moe = spec.moe;
  const char* count = config.has("num_experts") ? "num_experts" : "num_local_experts";
  moe.num_experts = config.get_int(count, 1, 1 << 16);
  moe.experts_per_token = config.get_int("num_experts_per_tok", 1, moe.num_experts);
  moe.expert_intermediate_size = config.get_int("moe_intermediate_size", 1, kMaxDim);
  moe.normalize_top_k = config.get_bool_or("norm_topk_prob", false);
  moe.sparse_step = config.get_int_or("decoder_sparse_step", 1, kMaxLayers, 1);
  read_dense_layers(config, spec);
}

// MixtralConfig's: every layer sparse, experts as wide as intermediate_size, the top k always
// renormalised.
void read_mixtral_moe(const Fields& config, ModelSpec& spec) {
  MoeSpec& moe = spec.moe;
  moe.num_experts = config.get_int_or("num_local_experts", 1, 1 << 16, 8);
  moe.experts_per_token = config.get_int_or("num_experts_per_tok", 1, moe.num_experts, 2);
  moe.expert_intermediate_size = spec.intermediate_size;
  moe.normalize_top_k = true;
}

// GptOssConfig's: every layer sparse, experts as wide as intermediate_size, a router with a
// bias whose top k logits are softmaxed (the same as softmax over all, then renormalising the
// top k), experts with biases and the clamped SwiGLU. The released configs say
// "experts_per_token" beside "num_experts_per_tok".
void read_gpt_oss_moe(const Fields& config, ModelSpec& spec) {
  MoeSpec& moe = spec.moe;
  moe.num_experts = config.get_int_or("num_local_experts", 1, 1 << 16, 128);
  moe.experts_per_token = config.get_int_or(
      "num_experts_per_tok", 1, moe.num_experts,
      config.get_int_or("experts_per_token", 1, moe.num_experts, std::min(4, moe.num_experts)));
  moe.expert_intermediate_size = spec.intermediate_size;
  moe.normalize_top_k = true;
  moe.router_bias = true;
  moe.expert_bias = true;
  moe.activation = ExpertActivation::kClampedSwiglu;
  moe.swiglu_alpha = config.get_float_or("swiglu_alpha", 0.0, 1e3, 1.702f);
  moe.swiglu_limit = config.get_float_or("swiglu_limit", 0.0, 1e6, 7.0f);
}

// Qwen3_5MoeTextConfig: which layers are Gated DeltaNet ("layer_types", else every
// full_attention_interval-th layer is attention), their dimensions, partial rotary, and the
// mixture of experts: every layer sparse, the top k always renormalised, plus a shared expert.
void read_qwen3_5(const Fields& config, ModelSpec& spec) {
  LinearAttentionSpec& linear = spec.linear_attention;
  if (const auto kinds =
          read_layer_types(config, spec.num_layers, {"full_attention", "linear_attention"})) {
    for (int32_t layer = 0; layer < spec.num_layers; ++layer) {
      if ((*kinds)[static_cast<size_t>(layer)] == "linear_attention")
        linear.layers.push_back(layer);
    }
  } else {
    linear.layers = linear_layers_between_full(
        spec.num_layers, config.get_int_or("full_attention_interval", 1, kMaxLayers, 4));
  }
  linear.key_heads = config.get_int_or("linear_num_key_heads", 1, kMaxDim, 16);
  linear.value_heads = config.get_int_or("linear_num_value_heads", 1, kMaxDim, 32);
  linear.key_head_dim = config.get_int_or("linear_key_head_dim", 1, kMaxDim, 128);
  linear.value_head_dim = config.get_int_or("linear_value_head_dim", 1, kMaxDim, 128);
  linear.conv_kernel = config.get_int_or("linear_conv_kernel_dim", 1, 64, 4);
  if (linear.value_heads % linear.key_heads != 0) {
    fail(StatusCode::kInvalidArgument, config.source(),
         "linear_num_value_heads (" + std::to_string(linear.value_heads) +
             ") is not a multiple of linear_num_key_heads (" + std::to_string(linear.key_heads) +
             ")");
  }
  if (linear.conv_dim() > kMaxDim ||
      int64_t{linear.value_heads} * linear.key_head_dim * linear.value_head_dim > kMaxDim * 64) {
    fail(StatusCode::kInvalidArgument, config.source(),
         "the linear-attention dimensions (linear_num_*_heads x linear_*_head_dim) are too large");
  }

  // partial_rotary_factor sits in rope_parameters (transformers 5) or beside it.
  float partial = config.get_float_or("partial_rotary_factor", 0.0, 1.0, 0.25f);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const json* params = config.find(key);
    if (params != nullptr && params->is_object()) {
      partial = Fields(*params, config.source(), std::string(key) + ".")
                    .get_float_or("partial_rotary_factor", 0.0, 1.0, partial);
      break;
    }
  }
  spec.rotary_dim = static_cast<int32_t>(static_cast<float>(spec.head_dim) * partial);
  if (spec.rotary_dim < 2 || spec.rotary_dim % 2 != 0) {
    fail(StatusCode::kInvalidArgument, config.source(),
         "partial_rotary_factor " + std::to_string(partial) + " of head_dim " +
             std::to_string(spec.head_dim) + " rotates " + std::to_string(spec.rotary_dim) +
             " dimensions; rotary embedding needs an even number, at least 2");
  }

  MoeSpec& moe = spec.moe;
  const bool next = spec.architecture == "Qwen3NextForCausalLM";
  moe.num_experts = config.get_int_or("num_experts", 1, 1 << 16, next ? 512 : 256);
  moe.experts_per_token = config.get_int_or("num_experts_per_tok", 1, moe.num_experts,
                                            std::min(next ? 10 : 8, moe.num_experts));
  moe.expert_intermediate_size = config.get_int_or("moe_intermediate_size", 1, kMaxDim, 512);
  moe.shared_expert_intermediate_size =
      config.get_int_or("shared_expert_intermediate_size", 1, kMaxDim, 512);
  if (!next) {
    moe.normalize_top_k = true;  // Qwen3.5 always renormalises; every layer is sparse
    return;
  }
  // Qwen3-Next: Qwen3-MoE's sparsity rules and norm_topk_prob, and fused projections.
  moe.normalize_top_k = config.get_bool_or("norm_topk_prob", true);
  moe.sparse_step = config.get_int_or("decoder_sparse_step", 1, kMaxLayers, 1);
  read_dense_layers(config, spec);
  linear.fused_projections = true;
}

void read_decoder(const Fields& config, ModelSpec& spec) {
  spec.is_decoder = true;
  spec.vocab_size = config.get_int("vocab_size", 1, kMaxVocab);
  spec.hidden_size = config.get_int("hidden_size", 1, kMaxDim);
  // Qwen3.5 has no dense MLP; its shared expert is one, run on every token. (Qwen3-Next's
  // mlp_only_layers have one.)
  const bool qwen3_5 = spec.architecture == "Qwen3_5MoeForCausalLM" ||
                       spec.architecture == "Qwen3_5MoeForConditionalGeneration";
  spec.intermediate_size =
      qwen3_5 ? config.get_int_or("shared_expert_intermediate_size", 1, kMaxDim, 512)
              : config.get_int("intermediate_size", 1, kMaxDim);
  spec.num_layers = config.get_int("num_hidden_layers", 1, kMaxLayers);
  spec.num_heads = config.get_int("num_attention_heads", 1, kMaxDim);
  spec.num_kv_heads = config.get_int_or("num_key_value_heads", 1, kMaxDim, spec.num_heads);
  if (spec.num_heads % spec.num_kv_heads != 0) {
    fail(StatusCode::kInvalidArgument, config.source(),
         "num_attention_heads (" + std::to_string(spec.num_heads) +
             ") is not a multiple of num_key_value_heads (" + std::to_string(spec.num_kv_heads) +
             ")");
  }
  if (config.has("head_dim")) {
    spec.head_dim = config.get_int("head_dim", 1, kMaxDim);
  } else {
    if (spec.hidden_size % spec.num_heads != 0) {
      fail(StatusCode::kInvalidArgument, config.source(),
           "hidden_size (" + std::to_string(spec.hidden_size) +
               ") is not a multiple of num_attention_heads (" + std::to_string(spec.num_heads) +
               ") and no head_dim is given");
    }
    spec.head_dim = spec.hidden_size / spec.num_heads;
  }
  if (int64_t{spec.num_heads} * spec.head_dim > kMaxDim) {
    fail(StatusCode::kInvalidArgument, config.source(),
         "num_attention_heads * head_dim (" + std::to_string(spec.num_heads) + " * " +
             std::to_string(spec.head_dim) + ") exceeds " + std::to_string(kMaxDim));
  }
  if (spec.head_dim % 2 != 0) {
    fail(StatusCode::kInvalidArgument, config.source(),
         "head_dim (" + std::to_string(spec.head_dim) +
             ") must be even: rotary embeddings rotate pairs of dimensions");
  }
  int32_t default_positions = 2048;  // LlamaConfig
  if (spec.family == ModelFamily::kMistral || spec.family == ModelFamily::kGptOss) {
    default_positions = 131072;
  }
  if (spec.family == ModelFamily::kQwen2 || spec.family == ModelFamily::kQwen3 ||
      spec.family == ModelFamily::kQwen3_5) {
    default_positions = 32768;
  }
  spec.max_position_embeddings =
      config.get_int_or("max_position_embeddings", 1, kMaxPositions, default_positions);
  spec.norm_eps = config.get_float_or("rms_norm_eps", 0.0, 1.0, 1e-6f);
  spec.activation = read_activation(config, "silu");
  // GptOssConfig's default_theta; every other family's is RoPE's original 10000.
  spec.rope = read_rope(config, spec.family == ModelFamily::kGptOss ? 150000.0f : 10000.0f);
  spec.tie_word_embeddings = config.get_bool_or("tie_word_embeddings", false);
  spec.pad_token_id = 0;  // decoders never read it; configs often say null or -1

  // Which projections have biases, per transformers' modeling code for each family.
  switch (spec.family) {
    case ModelFamily::kLlama:
      spec.attention_qkv_bias = spec.attention_out_bias =
          config.get_bool_or("attention_bias", false);
      spec.mlp_bias = config.get_bool_or("mlp_bias", false);
      break;
    case ModelFamily::kQwen3:
      spec.attention_qkv_bias = spec.attention_out_bias =
          config.get_bool_or("attention_bias", false);
      spec.qk_norm = true;
      break;
    case ModelFamily::kQwen2:
      spec.attention_qkv_bias = true;  // hard-coded in Qwen2Attention; o_proj has none
      break;
    case ModelFamily::kQwen3_5:
      spec.attention_qkv_bias = spec.attention_out_bias =
          config.get_bool_or("attention_bias", false);
      spec.qk_norm = true;
      spec.attention_output_gate = true;
      spec.zero_centred_norms = true;
      break;
    case ModelFamily::kGptOss:
      spec.attention_qkv_bias = spec.attention_out_bias =
          config.get_bool_or("attention_bias", true);
      break;
    case ModelFamily::kMistral:  // MistralAttention has no biases, whatever the config says
    case ModelFamily::kBert:
    case ModelFamily::kXlmRoberta:
      break;
  }
  if (spec.family == ModelFamily::kMistral) {
    spec.sliding_window =
        config.get_int_or("sliding_window", 1, std::numeric_limits<int32_t>::max(), 0);
  } else if (spec.family == ModelFamily::kQwen2 || spec.family == ModelFamily::kQwen3) {
    read_qwen_sliding_window(config, spec);
  } else if (spec.family == ModelFamily::kGptOss) {
    read_gpt_oss_sliding_window(config, spec);
    spec.attention_sinks = true;
  }
  if (spec.architecture == "Qwen3MoeForCausalLM") read_moe(config, spec);
  if (spec.architecture == "MixtralForCausalLM") read_mixtral_moe(config, spec);
  if (spec.architecture == "GptOssForCausalLM") read_gpt_oss_moe(config, spec);
  if (spec.family == ModelFamily::kQwen3_5) read_qwen3_5(config, spec);
  spec.pooling = Pooling::kLastToken;
}

void read_encoder(const Fields& config, ModelSpec& spec) {
  spec.is_decoder = false;
  spec.vocab_size = config.get_int("vocab_size", 1, kMaxVocab);
  spec.hidden_size = config.get_int("hidden_size", 1, kMaxDim);
  spec.intermediate_size = config.get_int("intermediate_size", 1, kMaxDim);
  spec.num_layers = config.get_int("num_hidden_layers", 1, kMaxLayers);
  spec.num_heads = config.get_int("num_attention_heads", 1, kMaxDim);
  if (spec.hidden_size % spec.num_heads != 0) {
    fail(StatusCode::kInvalidArgument, config.source(),
         "hidden_size (" + std::to_string(spec.hidden_size) +
             ") is not a multiple of num_attention_heads (" + std::to_string(spec.num_heads) + ")");
  }
  spec.num_kv_heads = spec.num_heads;
  spec.head_dim = spec.hidden_size / spec.num_heads;
  spec.max_position_embeddings =
      config.get_int_or("max_position_embeddings", 1, kMaxPositions, 512);
  spec.norm_eps = config.get_float_or("layer_norm_eps", 0.0, 1.0, 1e-12f);
  spec.activation = read_activation(config, "gelu");
  const std::string positions = config.get_string_or("position_embedding_type", "absolute");
  if (positions != "absolute") {
    config.fail_field(StatusCode::kUnimplemented, "position_embedding_type",
                      "'" + positions + "' is not supported (supported: absolute)");
  }
  spec.type_vocab_size = config.get_int_or("type_vocab_size", 1, kMaxDim, 2);
  const bool roberta = spec.family == ModelFamily::kXlmRoberta;
  spec.pad_token_id = config.get_int_or("pad_token_id", 0, spec.vocab_size - 1, roberta ? 1 : 0);
  // RoBERTa numbers positions after the padding index (create_position_ids_from_input_ids).
  spec.position_offset = roberta ? spec.pad_token_id + 1 : 0;
  if (spec.position_offset >= spec.max_position_embeddings) {
    fail(StatusCode::kInvalidArgument, config.source(),
         "max_position_embeddings (" + std::to_string(spec.max_position_embeddings) +
             ") leaves no positions after the offset pad_token_id + 1 (" +
             std::to_string(spec.position_offset) + ")");
  }
  // sentence-transformers' Pooling default for encoders is mean; a reranker's classifier
  // reads the first ([CLS]) token.
  spec.pooling = spec.task == ModelTask::kRerank ? Pooling::kCls : Pooling::kMean;
}

ModelSpec parse_config(std::string_view config_json, std::string_view source) {
  json root = parse_json_object(config_json, source);
  const ArchitectureInfo& info = read_architecture(Fields(root, source));
  // Qwen3.5's released checkpoints describe the text model in "text_config"; its fields win
  // over the outer ones (llama.cpp's converter merges them the same way).
  if (info.family == ModelFamily::kQwen3_5) {
    const auto text = root.find("text_config");
    if (text != root.end() && text->is_object()) {
      json text_config = *text;
      for (auto& [key, value] : text_config.items()) root[key] = value;
    }
  }
  const Fields config(root, source);
  if (const json* quantization = config.find("quantization_config")) {
    std::string method = "unknown";
    if (quantization->is_object()) {
      auto it = quantization->find("quant_method");
      if (it != quantization->end()) method = describe_untrusted_json(*it);
    }
    // gpt-oss is released with MXFP4 experts (blocks + scales), which the loader reads as
    // they are; every other tensor of it is a float type.
    const bool gpt_oss_mxfp4 = info.family == ModelFamily::kGptOss && method == "\"mxfp4\"";
    if (!gpt_oss_mxfp4) {
      config.fail_field(StatusCode::kUnimplemented, "quantization_config",
                        "(quant_method " + method +
                            "): quantized checkpoints are not supported (but gpt-oss's mxfp4); "
                            "use an F32, F16 or BF16 checkpoint, or a GGUF file");
    }
  }
  ModelSpec spec;
  spec.architecture = info.name;
  spec.family = info.family;
  spec.task = info.task;
  if (info.family == ModelFamily::kBert || info.family == ModelFamily::kXlmRoberta) {
    read_encoder(config, spec);
  } else {
    read_decoder(config, spec);
  }
  if (spec.task == ModelTask::kRerank) read_labels(config, spec);
  const std::vector<int32_t> bos = read_token_ids(config, "bos_token_id", spec.vocab_size);
  if (bos.size() > 1) {
    config.fail_field(StatusCode::kInvalidArgument, "bos_token_id", "must be a single id");
  }
  spec.bos_token_id = bos.empty() ? -1 : bos.front();
  spec.eos_token_ids = read_token_ids(config, "eos_token_id", spec.vocab_size);
  return spec;
}

// ---- model directories --------------------------------------------------------------------

std::string read_text_file(const std::filesystem::path& path) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(path, error);
  if (error) {
    fail(StatusCode::kNotFound, path.string(), "cannot read: " + error.message());
  }
  if (size > kMaxConfigFileBytes) {
    fail(StatusCode::kInvalidArgument, path.string(),
         "is " + std::to_string(size) + " bytes; a config file is at most " +
             std::to_string(kMaxConfigFileBytes));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) fail(StatusCode::kUnavailable, path.string(), "read failed");
  return text.str();
}

// generation_config.json's special tokens override config.json's (generate() uses them).
void read_generation_config(const std::filesystem::path& path, ModelSpec& spec) {
  const std::string text = read_text_file(path);
  const std::string source = path.string();
  const json root = parse_json_object(text, source);
  const Fields config(root, source);
  const std::vector<int32_t> eos = read_token_ids(config, "eos_token_id", spec.vocab_size);
  if (config.has("eos_token_id")) spec.eos_token_ids = eos;
  const std::vector<int32_t> bos = read_token_ids(config, "bos_token_id", spec.vocab_size);
  if (bos.size() > 1) {
    config.fail_field(StatusCode::kInvalidArgument, "bos_token_id", "must be a single id");
  }
  if (!bos.empty()) spec.bos_token_id = bos.front();
}

// The pooling a sentence-transformers Pooling config asks for: "pooling_mode" (a name or a
// list, sentence-transformers >= 6) or the legacy pooling_mode_* booleans.
Pooling read_pooling_config(const std::filesystem::path& path) {
  const std::string text = read_text_file(path);
  const std::string source = path.string();
  const json root = parse_json_object(text, source);
  const Fields config(root, source);
  std::vector<std::string> modes;
  if (const json* mode = config.find("pooling_mode")) {
    if (mode->is_string()) {
      modes.push_back(mode->get<std::string>());
    } else if (mode->is_array() && !mode->empty() && mode->size() <= 8 &&
               std::all_of(mode->begin(), mode->end(),
                           [](const json& m) { return m.is_string(); })) {
      for (const json& m : *mode) modes.push_back(m.get<std::string>());
    } else {
      config.fail_field(
          StatusCode::kInvalidArgument, "pooling_mode",
          "must be a mode name or a list of them, got " + describe_untrusted_json(*mode));
    }
  } else {
    constexpr std::pair<const char*, const char*> kLegacy[] = {
        {"pooling_mode_cls_token", "cls"},
        {"pooling_mode_max_tokens", "max"},
        {"pooling_mode_mean_tokens", "mean"},
        {"pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"},
        {"pooling_mode_weightedmean_tokens", "weightedmean"},
        {"pooling_mode_lasttoken", "lasttoken"},
    };
    for (const auto& [key, legacy_mode] : kLegacy) {
      if (config.get_bool_or(key, false)) modes.push_back(legacy_mode);
    }
    if (modes.empty()) modes.push_back("mean");  // sentence-transformers' default
  }
  if (modes.size() > 1) {
    std::string joined;
    for (const std::string& mode : modes) joined += (joined.empty() ? "" : " + ") + mode;
    fail(StatusCode::kUnimplemented, source,
         "pooling combines several modes (" + joined +
             "); sparkd supports one of cls, mean, lasttoken");
  }
  if (modes[0] == "cls") return Pooling::kCls;
  if (modes[0] == "mean") return Pooling::kMean;
  if (modes[0] == "lasttoken") return Pooling::kLastToken;
  fail(StatusCode::kUnimplemented, source,
       "pooling mode '" + modes[0] + "' is not supported (supported: cls, mean, lasttoken)");
}

// modules.json: the sentence-transformers pipeline. Transformer, Pooling and Normalize are
// what sparkd runs; any other module (Dense, LayerNorm, ...) would change the embedding, so
// it is refused rather than skipped.
void read_sentence_transformers(const std::filesystem::path& dir, ModelSpec& spec) {
  const std::filesystem::path modules_path = dir / "modules.json";
  const std::string source = modules_path.string();
  json modules;
  try {
    modules = json::parse(read_text_file(modules_path));
  } catch (const json::exception& error) {
    fail(StatusCode::kInvalidArgument, source, "not valid JSON (" + json_error_text(error) + ")");
  }
  if (!modules.is_array()) {
    fail(StatusCode::kInvalidArgument, source,
         "must be a list of modules, got " + describe_untrusted_json(modules));
  }
  for (size_t i = 0; i < modules.size(); ++i) {
    const json& module = modules[i];
    if (!module.is_object()) {
      fail(StatusCode::kInvalidArgument, source,
           "module " + std::to_string(i) + " must be an object, got " +
               describe_untrusted_json(module));
    }
    const Fields fields(module, source, "module " + std::to_string(i) + " ");
    const std::string type = fields.get_string_or("type", "");
    const std::string module_path = fields.get_string_or("path", "");
    // "sentence_transformers.models.Pooling" and the newer module paths end alike.
    const size_t dot = type.rfind('.');
    const std::string kind = dot == std::string::npos ? type : type.substr(dot + 1);
    if (kind == "Transformer") continue;
    if (kind == "Normalize") {
      spec.normalize_embeddings = true;
      continue;
    }
    if (kind == "Pooling") {
      const std::filesystem::path relative(module_path);
      if (module_path.empty() || relative.is_absolute() ||
          std::any_of(relative.begin(), relative.end(),
                      [](const std::filesystem::path& part) { return part == ".."; })) {
        fields.fail_field(StatusCode::kInvalidArgument, "path",
                          "must name the Pooling module's folder in the model directory, got '" +
                              module_path + "'");
      }
      spec.pooling = read_pooling_config(dir / relative / "config.json");
      continue;
    }
    fail(StatusCode::kUnimplemented, source,
         "module " + std::to_string(i) + " ('" + type +
             "') is not supported: sparkd runs Transformer, Pooling and Normalize modules");
  }
}

}  // namespace

const char* family_name(ModelFamily family) {
  switch (family) {
    case ModelFamily::kLlama:
      return "llama";
    case ModelFamily::kMistral:
      return "mistral";
    case ModelFamily::kQwen2:
      return "qwen2";
    case ModelFamily::kQwen3:
      return "qwen3";
    case ModelFamily::kQwen3_5:
      return "qwen3.5";
    case ModelFamily::kGptOss:
      return "gpt-oss";
    case ModelFamily::kBert:
      return "bert";
    case ModelFamily::kXlmRoberta:
      return "xlm-roberta";
  }
  return "?";
}

const char* task_name(ModelTask task) {
  switch (task) {
    case ModelTask::kGenerate:
      return "generate";
    case ModelTask::kEmbed:
      return "embed";
    case ModelTask::kRerank:
      return "rerank";
  }
  return "?";
}

std::vector<std::string> supported_architectures() {
  std::vector<std::string> names;
  for (const ArchitectureInfo& info : kArchitectures) names.emplace_back(info.name);
  return names;
}

Expected<ModelSpec> parse_model_config(std::string_view config_json, std::string_view source) {
  try {
    return parse_config(config_json, source);
  } catch (const SpecError& error) {
    return error.status;
  }
}

Expected<ModelSpec> load_model_spec(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return Status(StatusCode::kNotFound,
                  model_dir + ": model directory does not exist or is not a directory");
  }
  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path, error)) {
    return Status(StatusCode::kNotFound,
                  config_path.string() + ": not found (a model directory needs config.json)");
  }
  try {
    ModelSpec spec = parse_config(read_text_file(config_path), config_path.string());
    if (fs::exists(dir / "generation_config.json", error)) {
      read_generation_config(dir / "generation_config.json", spec);
    }
    // A reranker's classifier decides its output; sentence-transformers files (if any)
    // describe embedding pipelines, so they only apply to the other tasks.
    if (spec.task != ModelTask::kRerank && fs::exists(dir / "modules.json", error)) {
      spec.task = ModelTask::kEmbed;  // e.g. Qwen3-Embedding ships as Qwen3ForCausalLM
      read_sentence_transformers(dir, spec);
    }
    return spec;
  } catch (const SpecError& spec_error) {
    return spec_error.status;
  }
}

bool ModelSpec::is_sparse_layer(int32_t layer) const {
  if (moe.num_experts == 0) return false;
  for (int32_t dense : moe.dense_layers) {
    if (dense == layer) return false;
  }
  return (layer + 1) % moe.sparse_step == 0;
}

std::vector<int32_t> linear_layers_between_full(int32_t num_layers,
                                                int32_t full_attention_interval) {
  std::vector<int32_t> layers;
  for (int32_t layer = 0; layer < num_layers; ++layer) {
    if ((layer + 1) % full_attention_interval != 0) layers.push_back(layer);
  }
  return layers;
}

bool ModelSpec::is_linear_attention_layer(int32_t layer) const {
  return std::binary_search(linear_attention.layers.begin(), linear_attention.layers.end(), layer);
}

int32_t ModelSpec::kv_layer_count() const {
  return num_layers - static_cast<int32_t>(linear_attention.layers.size());
}

int32_t ModelSpec::layer_sliding_window(int32_t layer) const {
  for (int32_t full : full_attention_layers) {
    if (full == layer) return 0;
  }
  return sliding_window;
}

}  // namespace sparkd::model
