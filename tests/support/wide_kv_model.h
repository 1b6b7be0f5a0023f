// A Qwen3 decoder written at test time, with random weights and wide KV heads (8 x 256 per
// layer): a 2 MiB granule then holds the keys (or values) of only 256 tokens of a layer, so a
// few hundred tokens fill a KV block group (8 MiB over 2 layers), and tests of the governor
// can fill, cache, preempt and reclaim whole groups with short prompts. The tokenizer is the
// qwen3_f32 fixture's (" a", " b", ... are one token each).
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/loaded_fixture.h"
#include "tests/support/safetensors_writer.h"

namespace sparkd::testing {

struct WideKvModel {
  int32_t hidden = 256;
  int32_t intermediate = 1024;
  int32_t layers = 2;
  int32_t heads = 8;
  int32_t kv_heads = 8;
  int32_t head_dim = 256;
  int32_t vocab = 500;
  // KV of one token over all layers, keys and values, F32.
  uint64_t kv_bytes_per_token() const {
    return 2ull * static_cast<uint64_t>(layers) * kv_heads * head_dim * 4;
  }
};

inline void write_wide_kv_model(const std::filesystem::path& dir, const WideKvModel& m = {}) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  const fs::path source = fixture_model_dir("qwen3_f32");
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    fs::copy_file(source / file, dir / file, fs::copy_options::overwrite_existing);
  }
  nlohmann::json config = nlohmann::json::parse(std::ifstream(source / "config.json"));
  config["hidden_size"] = m.hidden;
  config["intermediate_size"] = m.intermediate;
  config["num_hidden_layers"] = m.layers;
  config["num_attention_heads"] = m.heads;
  config["num_key_value_heads"] = m.kv_heads;
  config["head_dim"] = m.head_dim;
  config["layer_types"] = std::vector<std::string>(static_cast<size_t>(m.layers), "full_attention");
  std::ofstream(dir / "config.json") << config.dump(2);

  uint64_t state = 0x2545F4914F6CDD1Dull;  // a fixed LCG: the same model every time
  auto tensor = [&](const std::string& name, std::vector<int64_t> shape, bool norm) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    std::string data(static_cast<size_t>(count) * 4, '\0');
    for (int64_t i = 0; i < count; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const float random = static_cast<float>(static_cast<int64_t>(state >> 40) % 2001 - 1000);
      const float value = norm ? 1.0f : random * 5e-5f;
      std::memcpy(&data[static_cast<size_t>(i) * 4], &value, 4);
    }
    return TensorBytes{name, "F32", std::move(shape), std::move(data)};
  };
  const int64_t q = int64_t{m.heads} * m.head_dim, kv = int64_t{m.kv_heads} * m.head_dim;
  std::vector<TensorBytes> tensors;
  tensors.push_back(tensor("model.embed_tokens.weight", {m.vocab, m.hidden}, false));
  for (int32_t l = 0; l < m.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.push_back(tensor(p + "input_layernorm.weight", {m.hidden}, true));
    tensors.push_back(tensor(p + "self_attn.q_proj.weight", {q, m.hidden}, false));
    tensors.push_back(tensor(p + "self_attn.k_proj.weight", {kv, m.hidden}, false));
    tensors.push_back(tensor(p + "self_attn.v_proj.weight", {kv, m.hidden}, false));
    tensors.push_back(tensor(p + "self_attn.o_proj.weight", {m.hidden, q}, false));
    tensors.push_back(tensor(p + "self_attn.q_norm.weight", {m.head_dim}, true));
    tensors.push_back(tensor(p + "self_attn.k_norm.weight", {m.head_dim}, true));
    tensors.push_back(tensor(p + "post_attention_layernorm.weight", {m.hidden}, true));
    tensors.push_back(tensor(p + "mlp.gate_proj.weight", {m.intermediate, m.hidden}, false));
    tensors.push_back(tensor(p + "mlp.up_proj.weight", {m.intermediate, m.hidden}, false));
    tensors.push_back(tensor(p + "mlp.down_proj.weight", {m.hidden, m.intermediate}, false));
  }
  tensors.push_back(tensor("model.norm.weight", {m.hidden}, true));
  tensors.push_back(tensor("lm_head.weight", {m.vocab, m.hidden}, false));
  std::ofstream(dir / "model.safetensors", std::ios::binary) << safetensors_file(tensors);
}

}  // namespace sparkd::testing
