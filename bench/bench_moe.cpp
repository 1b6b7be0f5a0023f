// bench_moe: a mixture of experts against a dense model with as many active parameters.
//
//   bench_moe [--hidden N] [--layers N] [--experts N] [--top-k N] [--expert-inter N]
//             [--vocab N] [--decode-steps N] [--threads N] [--repeats N] [--quantize TYPE]
//             [--bandwidth-gbs B] [--dir PATH]
//
// Writes two seeded random-weight models (BF16 safetensors and a config.json) to a temporary
// directory: a Qwen3-MoE-shaped one, every layer sparse with --experts experts of which each
// token uses --top-k, and a Qwen3 dense one whose MLP is --top-k x --expert-inter wide, so a
// token meets the same number of parameters in both. Each is loaded on the CPU backend
// (quantized at load with --quantize q8_0|q4_k|...) and decodes --decode-steps steps at batch
// 1 and 16 after a 16-token prompt per sequence. Printed per model and batch: tokens/s, the
// weight bytes a step read (DecoderModel::last_forward_weight_bytes: the routed experts only)
// per step and per token, and the GB/s they imply (with --bandwidth-gbs, the % of that peak).
//
// What to expect: at batch 1 both read about the same bytes per token, so the MoE decodes at
// the dense model's speed while holding experts/top-k times the MLP weights. At batch 16 the
// dense model reads its weights once for 16 tokens; the MoE's 16 tokens route to many distinct
// experts (about experts x (1 - (1 - top_k/experts)^16) of them), each read once, so its bytes
// per token fall much less: the price of its larger total.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/arch/decoder.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/half.h"
#include "engine/model/model_spec.h"
#include "engine/model/weights.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  int hidden = 1024;
  int layers = 8;
  int experts = 64;
  int top_k = 8;
  int expert_inter = 512;
  int vocab = 32000;
  int decode_steps = 16;
  int threads = 0;
  int repeats = 3;
  std::optional<sparkd::DType> quantize;
  double bandwidth_gbs = 0.0;
  std::string dir;
};

constexpr int kPromptTokens = 16;
constexpr int kHeads = 16, kKvHeads = 4, kHeadDim = 64;

// Seeded, fast, and good enough for weights whose values do not matter: xorshift64*.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  // Uniform in [-scale, scale).
  float next(float scale) {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const uint64_t bits = state_ * 0x2545F4914F6CDD1Dull;
    return (static_cast<float>(bits >> 40) / static_cast<float>(1 << 24) * 2.0f - 1.0f) * scale;
  }

 private:
  uint64_t state_;
};

// A safetensors file written tensor by tensor: BF16 random matrices, norms of ones.
class SafetensorsWriter {
 public:
  void matrix(const std::string& name, std::vector<int64_t> shape, Random& random, float scale) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    const size_t begin = data_.size();
    data_.resize(begin + static_cast<size_t>(count) * 2);
    for (int64_t i = 0; i < count; ++i) {
      const uint16_t bits = sparkd::f32_to_bf16(random.next(scale));
      std::memcpy(data_.data() + begin + static_cast<size_t>(i) * 2, &bits, 2);
    }
    header_[name] = {{"dtype", "BF16"}, {"shape", shape}, {"data_offsets", {begin, data_.size()}}};
  }
  void ones(const std::string& name, int64_t size) {
    const size_t begin = data_.size();
    data_.resize(begin + static_cast<size_t>(size) * 2);
    const uint16_t one = sparkd::f32_to_bf16(1.0f);
    for (int64_t i = 0; i < size; ++i) {
      std::memcpy(data_.data() + begin + static_cast<size_t>(i) * 2, &one, 2);
    }
    header_[name] = {{"dtype", "BF16"}, {"shape", {size}}, {"data_offsets", {begin, data_.size()}}};
  }
  void write(const fs::path& path) const {
    const std::string text = header_.dump();
    const uint64_t length = text.size();
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(&length), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.write(data_.data(), static_cast<std::streamsize>(data_.size()));
  }

 private:
  json header_ = json::object();
  std::vector<char> data_;
};

// A Qwen3 (dense) or Qwen3-MoE model directory with seeded random weights.
void write_model(const fs::path& dir, const Options& o, bool moe) {
  fs::create_directories(dir);
  const int dense_inter = o.top_k * o.expert_inter;
  json config = {{"architectures", {moe ? "Qwen3MoeForCausalLM" : "Qwen3ForCausalLM"}},
                 {"model_type", moe ? "qwen3_moe" : "qwen3"},
                 {"hidden_size", o.hidden},
                 {"intermediate_size", dense_inter},
                 {"num_hidden_layers", o.layers},
                 {"num_attention_heads", kHeads},
                 {"num_key_value_heads", kKvHeads},
                 {"head_dim", kHeadDim},
                 {"vocab_size", o.vocab},
                 {"max_position_embeddings", 4096},
                 {"rms_norm_eps", 1e-6},
                 {"rope_theta", 1000000.0},
                 {"tie_word_embeddings", false}};
  if (moe) {
    config["num_experts"] = o.experts;
    config["num_experts_per_tok"] = o.top_k;
    config["moe_intermediate_size"] = o.expert_inter;
    config["norm_topk_prob"] = true;
  }
  std::ofstream(dir / "config.json") << config.dump(2);

  Random random(moe ? 2 : 1);
  SafetensorsWriter st;
  const int64_t h = o.hidden, q = int64_t{kHeads} * kHeadDim, kv = int64_t{kKvHeads} * kHeadDim;
  st.matrix("model.embed_tokens.weight", {o.vocab, h}, random, 0.5f);
  st.matrix("lm_head.weight", {o.vocab, h}, random, 0.05f);
  st.ones("model.norm.weight", h);
  for (int l = 0; l < o.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    st.ones(p + "input_layernorm.weight", h);
    st.ones(p + "post_attention_layernorm.weight", h);
    st.ones(p + "self_attn.q_norm.weight", kHeadDim);
    st.ones(p + "self_attn.k_norm.weight", kHeadDim);
    st.matrix(p + "self_attn.q_proj.weight", {q, h}, random, 0.03f);
    st.matrix(p + "self_attn.k_proj.weight", {kv, h}, random, 0.03f);
    st.matrix(p + "self_attn.v_proj.weight", {kv, h}, random, 0.03f);
    st.matrix(p + "self_attn.o_proj.weight", {h, q}, random, 0.03f);
    if (!moe) {
      st.matrix(p + "mlp.gate_proj.weight", {dense_inter, h}, random, 0.03f);
      st.matrix(p + "mlp.up_proj.weight", {dense_inter, h}, random, 0.03f);
      st.matrix(p + "mlp.down_proj.weight", {h, dense_inter}, random, 0.03f);
      continue;
    }
    st.matrix(p + "mlp.gate.weight", {o.experts, h}, random, 0.1f);
    for (int e = 0; e < o.experts; ++e) {
      const std::string ep = p + "mlp.experts." + std::to_string(e) + ".";
      st.matrix(ep + "gate_proj.weight", {o.expert_inter, h}, random, 0.03f);
      st.matrix(ep + "up_proj.weight", {o.expert_inter, h}, random, 0.03f);
      st.matrix(ep + "down_proj.weight", {h, o.expert_inter}, random, 0.03f);
    }
  }
  st.write(dir / "model.safetensors");
}

struct DecodeResult {
  double tokens_per_second = 0;
  double bytes_per_step = 0;  // weight bytes of the last step
};

// `batch` sequences of kPromptTokens random tokens, then decode_steps steps of one token each
// (the token fed back is random too: routing, not text, is what matters here).
sparkd::Expected<DecodeResult> decode(sparkd::arch::DecoderModel& model, const Options& o,
                                      int batch) {
  const int32_t per_sequence = kPromptTokens + o.decode_steps;
  SPARKD_ASSIGN_OR_RETURN(sparkd::KvCache kv, model.allocate_kv_cache(batch * per_sequence));
  Random random(7);
  const auto token = [&] {
    return static_cast<int32_t>((random.next(0.5f) + 0.5f) * static_cast<float>(o.vocab - 1));
  };
  std::vector<std::vector<int32_t>> tokens(static_cast<size_t>(batch));
  std::vector<sparkd::arch::DecoderStepSequence> step(static_cast<size_t>(batch));
  for (int s = 0; s < batch; ++s) {
    for (int i = 0; i < kPromptTokens; ++i) tokens[s].push_back(token());
    step[s].tokens = tokens[s];
    step[s].kv.kv_slot_begin = s * per_sequence;
  }
  if (auto prefill = model.forward(step, kv); !prefill) return prefill.status();
  std::vector<int32_t> next(static_cast<size_t>(batch));
  const auto start = Clock::now();
  for (int n = 0; n < o.decode_steps; ++n) {
    for (int s = 0; s < batch; ++s) {
      next[s] = token();
      step[s].tokens = std::span<const int32_t>(&next[s], 1);
      step[s].past_tokens = kPromptTokens + n;
    }
    if (auto logits = model.forward(step, kv); !logits) return logits.status();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return DecodeResult{static_cast<double>(batch) * o.decode_steps / seconds,
                      static_cast<double>(model.last_forward_weight_bytes())};
}

bool parse_int(std::string_view text, int* out) {
  try {
    size_t used = 0;
    const int value = std::stoi(std::string(text), &used);
    if (used != text.size() || value < 0) return false;
    *out = value;
    return true;
  } catch (...) {
    return false;
  }
}

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return false;
    const std::string_view value = argv[++i];
    int* target = arg == "--hidden"         ? &o->hidden
                  : arg == "--layers"       ? &o->layers
                  : arg == "--experts"      ? &o->experts
                  : arg == "--top-k"        ? &o->top_k
                  : arg == "--expert-inter" ? &o->expert_inter
                  : arg == "--vocab"        ? &o->vocab
                  : arg == "--decode-steps" ? &o->decode_steps
                  : arg == "--threads"      ? &o->threads
                  : arg == "--repeats"      ? &o->repeats
                                            : nullptr;
    if (target != nullptr) {
      if (!parse_int(value, target)) return false;
    } else if (arg == "--quantize") {
      bool known = false;
      for (int t = 0; t < sparkd::kDTypeCount; ++t) {
        const auto dtype = static_cast<sparkd::DType>(t);
        std::string name = sparkd::dtype_name(dtype);
        std::transform(name.begin(), name.end(), name.begin(), ::tolower);
        if (name == value && sparkd::dtype_is_quantized(dtype)) {
          o->quantize = dtype;
          known = true;
        }
      }
      if (!known) return false;
    } else if (arg == "--bandwidth-gbs") {
      o->bandwidth_gbs = std::atof(std::string(value).c_str());
    } else if (arg == "--dir") {
      o->dir = value;
    } else {
      return false;
    }
  }
  return o->top_k >= 1 && o->top_k <= o->experts && o->layers >= 1 && o->decode_steps >= 1 &&
         o->repeats >= 1 && o->hidden % 256 == 0 && o->expert_inter % 256 == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: bench_moe [--hidden N] [--layers N] [--experts N] [--top-k N] "
                 "[--expert-inter N] [--vocab N] [--decode-steps N] [--threads N] [--repeats N] "
                 "[--quantize q8_0|q4_k|...] [--bandwidth-gbs B] [--dir PATH]\n"
                 "(hidden and expert-inter multiples of 256, so every quantized type fits)\n");
    return 2;
  }
  const fs::path dir =
      o.dir.empty() ? fs::temp_directory_path() / ("sparkd-bench-moe-" + std::to_string(::getpid()))
                    : fs::path(o.dir);
  sparkd::CpuBackendOptions backend_options;
  backend_options.num_threads = o.threads;
  auto backend = sparkd::make_cpu_backend(backend_options);
  std::printf(
      "MoE: %d layers, hidden %d, %d experts of %d, top %d; dense: MLP %d wide; "
      "weights %s; %d decode steps after a %d-token prompt; median of %d\n",
      o.layers, o.hidden, o.experts, o.expert_inter, o.top_k, o.top_k * o.expert_inter,
      o.quantize ? sparkd::dtype_name(*o.quantize) : "BF16", o.decode_steps, kPromptTokens,
      o.repeats);
  std::printf("%-6s %5s %9s %12s %12s %12s %9s\n", "model", "batch", "tok/s", "MB/step", "MB/token",
              "GB/s", "%peak");
  for (const bool moe : {false, true}) {
    const fs::path model_dir = dir / (moe ? "moe" : "dense");
    write_model(model_dir, o, moe);
    auto spec = sparkd::model::load_model_spec(model_dir.string());
    if (!spec) {
      std::fprintf(stderr, "bench_moe: %s\n", spec.status().to_string().c_str());
      return 1;
    }
    sparkd::model::WeightLoadOptions load_options;
    load_options.quantize = o.quantize;
    auto weights = sparkd::model::ModelWeights::load(model_dir.string(), *backend, load_options);
    if (!weights) {
      std::fprintf(stderr, "bench_moe: %s\n", weights.status().to_string().c_str());
      return 1;
    }
    auto model = sparkd::arch::DecoderModel::create(*spec, *weights, *backend);
    if (!model) {
      std::fprintf(stderr, "bench_moe: %s\n", model.status().to_string().c_str());
      return 1;
    }
    for (const int batch : {1, 16}) {
      std::vector<DecodeResult> runs;
      for (int r = 0; r < o.repeats; ++r) {
        auto result = decode(**model, o, batch);
        if (!result) {
          std::fprintf(stderr, "bench_moe: %s\n", result.status().to_string().c_str());
          return 1;
        }
        runs.push_back(*result);
      }
      std::sort(runs.begin(), runs.end(), [](const DecodeResult& a, const DecodeResult& b) {
        return a.tokens_per_second < b.tokens_per_second;
      });
      const DecodeResult& median = runs[runs.size() / 2];
      const double steps_per_second = median.tokens_per_second / batch;
      const double gbs = median.bytes_per_step * steps_per_second / 1e9;
      std::printf(
          "%-6s %5d %9.1f %12.1f %12.1f %12.2f %9s\n", moe ? "moe" : "dense", batch,
          median.tokens_per_second, median.bytes_per_step / 1e6,
          median.bytes_per_step / 1e6 / batch, gbs,
          o.bandwidth_gbs > 0
              ? (std::to_string(static_cast<int>(100 * gbs / o.bandwidth_gbs)) + "%").c_str()
              : "-");
    }
    std::printf("%-6s total weights %.1f MB\n", moe ? "moe" : "dense",
                static_cast<double>(weights->size_bytes()) / 1e6);
    fs::remove_all(model_dir);
  }
  if (o.dir.empty()) fs::remove_all(dir);
  return 0;
}
