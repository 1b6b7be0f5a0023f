#include "bench/sim/cost_model.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>

namespace sparkd::sim {

Expected<MachineProfile> load_machine_profile(const std::string& path) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return Status(StatusCode::kInvalidArgument,
                  "machine profile " + path + ": " + std::string(e.description()));
  }
  MachineProfile profile;
  profile.name = table["name"].value_or(std::string());
  Status problem = Status::ok();
  const auto positive = [&](const char* key, double& out) {
    const std::optional<double> value = table[key].value<double>();
    if (!value || !(*value > 0)) {
      if (problem.is_ok()) {
        problem = Status(StatusCode::kInvalidArgument,
                         "machine profile " + path + ": `" + key + "` must be a positive number");
      }
      return;
    }
    out = *value;
  };
  double memory_gib = 0;
  double os_gib = 0;
  positive("bandwidth_gbs", profile.bandwidth_gbs);
  positive("compute_tflops", profile.compute_tflops);
  positive("load_gbs", profile.load_gbs);
  positive("step_overhead_ms", profile.step_overhead_ms);
  positive("memory_gib", memory_gib);
  positive("os_gib", os_gib);
  profile.overlap = table["overlap"].value_or(true);
  profile.small_step_tokens = table["small_step_tokens"].value_or(0);
  if (profile.small_step_tokens > 0) positive("small_step_tflops", profile.small_step_tflops);
  if (!problem.is_ok()) return problem;
  if (profile.name.empty()) {
    return Status(StatusCode::kInvalidArgument, "machine profile " + path + ": `name` is missing");
  }
  profile.memory_bytes = static_cast<uint64_t>(memory_gib * double(1ull << 30));
  profile.os_bytes = static_cast<uint64_t>(os_gib * double(1ull << 30));
  if (profile.os_bytes >= profile.memory_bytes) {
    return Status(StatusCode::kInvalidArgument,
                  "machine profile " + path + ": `os_gib` must be below `memory_gib`");
  }
  return profile;
}

const char* model_kind_name(ModelKind kind) {
  switch (kind) {
    case ModelKind::kGenerate:
      return "generate";
    case ModelKind::kEmbed:
      return "embed";
    case ModelKind::kRerank:
      return "rerank";
  }
  return "?";
}

uint64_t ModelShape::weight_bytes() const {
  return static_cast<uint64_t>((dense_params + expert_params) * bytes_per_param);
}

uint64_t ModelShape::kv_bytes_per_token() const {
  if (kind != ModelKind::kGenerate) return 0;
  return 2ull * static_cast<uint64_t>(layers) * static_cast<uint64_t>(kv_heads) *
         static_cast<uint64_t>(head_dim) * static_cast<uint64_t>(kv_bytes_per_element);
}

double ModelShape::active_params() const {
  if (experts <= 0) return dense_params + expert_params;
  return dense_params + expert_params * experts_per_token / experts;
}

StepCost CostModel::finish(double bytes, double flops, double tokens) const {
  StepCost cost;
  cost.bytes = bytes;
  cost.flops = flops;
  const double memory_seconds = bytes / (machine_.bandwidth_gbs * 1e9);
  const bool small = tokens <= machine_.small_step_tokens;
  const double tflops = small ? machine_.small_step_tflops : machine_.compute_tflops;
  const double compute_seconds = flops / (tflops * 1e12);
  cost.seconds = (machine_.overlap ? std::max(memory_seconds, compute_seconds)
                                   : memory_seconds + compute_seconds) +
                 machine_.step_overhead_ms * 1e-3;
  return cost;
}

StepCost CostModel::decoder_step(const ModelShape& model,
                                 std::span<const ChunkShape> chunks) const {
  double tokens = 0;
  double kv_positions = 0;     // KV rows attention reads, all chunks
  double attention_pairs = 0;  // (query, key) pairs, all chunks
  for (const ChunkShape& c : chunks) {
    tokens += double(c.count);
    kv_positions += double(c.begin + c.count);
    // Causal: query i of the chunk sees begin + i + 1 keys.
    attention_pairs += double(c.count) * (double(c.begin) + (double(c.count) + 1) / 2);
  }
  // An MoE layer reads each expert that at least one of the step's tokens routes to: with
  // uniform routing, a fraction 1 - (1 - k/E)^tokens of them.
  double expert_fraction = 0;
  if (model.experts > 0) {
    const double miss = 1.0 - double(model.experts_per_token) / double(model.experts);
    expert_fraction = 1.0 - std::pow(miss, tokens);
  }
  const double weight_bytes =
      (model.dense_params + model.expert_params * expert_fraction) * model.bytes_per_param;
  const double kv_bytes = kv_positions * double(model.kv_bytes_per_token());
  const double flops = 2.0 * model.active_params() * tokens +
                       4.0 * model.layers * double(model.q_width) * attention_pairs;
  return finish(weight_bytes + kv_bytes, flops, tokens);
}

StepCost CostModel::encoder_batch(const ModelShape& model, int64_t tokens,
                                  int64_t sequences) const {
  const double length = sequences > 0 ? double(tokens) / double(sequences) : 0;
  const double flops = 2.0 * model.active_params() * double(tokens) +
                       4.0 * model.layers * double(model.q_width) * double(tokens) * length;
  return finish(double(model.weight_bytes()), flops, double(tokens));
}

double CostModel::load_seconds(const ModelShape& model) const {
  return double(model.weight_bytes()) / (machine_.load_gbs * 1e9);
}

}  // namespace sparkd::sim
