// bench_batching: decode throughput against batch size, and prefill throughput, of a
// synthetic Llama-shaped decoder run through the real continuous-batching machinery
// (Scheduler + PrefixCache over a KvBlockPool whose granules a FixedBudgetArbiter grants +
// KvCache over the pool's layer views + sched::run_decoder_step + greedy argmax).
//
//   bench_batching [--hidden N] [--layers N] [--heads N] [--kv-heads N] [--head-dim N]
//                  [--intermediate N] [--vocab N] [--dtype bf16|f16|f32] [--tied 0|1]
//                  [--prompt-tokens N] [--decode-steps N] [--prefill-tokens N]
//                  [--batches 1,2,4,...] [--threads N] [--repeats N] [--bandwidth-gbs B]
//                  [--tokenizer-from DIR] [--quick]
//
// The model is written to a temporary directory (config.json, model.safetensors with seeded
// random weights, the llama_f32 fixture's tokenizer) and loaded with LoadedModel::load, so
// the weights go through the same loader as a real checkpoint. Defaults are a
// Llama-3.2-1B-like shape (hidden 2048, 16 layers, GQA 32/8, intermediate 8192, vocab 32000,
// tied, BF16: ~2 GB); --quick makes a small one (hidden 512, 4 layers) for smoke runs.
//
// Decode: for each batch size B, B sequences of --prompt-tokens random ids are prefilled
// (untimed), one warm-up decode step runs, then --decode-steps steps each decode one token
// for all B sequences (greedy, EOS ignored). Printed per B: the median step time, tok/s =
// B x steps / total time, and the effective GB/s of a step: the weight bytes it streams
// (every weight once; the embedding table only by the B gathered rows unless it doubles as
// the lm_head) plus the KV bytes its attention reads (every cached position of every
// sequence), over the median step time. --bandwidth-gbs adds the % of that roofline.
//
// Prefill: tok/s of one step over one sequence of --prefill-tokens, and over 8 sequences of
// 128 tokens. Median of --repeats.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "bench/sim/cost_model.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/half.h"
#include "engine/kv/kv_block_pool.h"
#include "engine/kv/kv_cache.h"
#include "engine/kv/prefix_cache.h"
#include "engine/sched/decoder_step.h"
#include "engine/sched/scheduler.h"
#include "engine/tasks/loaded_model.h"
#include "governor/fixed_budget_arbiter.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr int32_t kBlockTokens = 16;

// The llama_f32 fixture of this source tree (benches are compiled from absolute paths).
std::string default_tokenizer_dir() {
#ifdef SPARKD_SOURCE_DIR
  const fs::path root = SPARKD_SOURCE_DIR;
#else
  const fs::path root = fs::path(__FILE__).parent_path().parent_path();
#endif
  return (root / "tests/fixtures/models/llama_f32").string();
}

struct Options {
  int hidden = 2048;
  int layers = 16;
  int heads = 32;
  int kv_heads = 8;
  int head_dim = 0;  // 0: hidden / heads
  int intermediate = 8192;
  int vocab = 32000;
  std::string dtype = "bf16";
  bool tied = true;
  int prompt_tokens = 64;
  int decode_steps = 16;
  int prefill_tokens = 512;
  std::vector<int> batches = {1, 2, 4, 8, 16, 32, 64};
  int threads = 0;
  int repeats = 3;
  double bandwidth_gbs = 0.0;
  // A machine profile of the governor's simulator (bench/profiles/*.toml): its roofline cost
  // model's prediction of every measured step is printed next to it, with the error.
  std::string profile;
  // Where tokenizer.json and tokenizer_config.json are copied from (the model's vocab may be
  // larger than this tokenizer's: prompts are random ids, never text).
  std::string tokenizer_dir = default_tokenizer_dir();
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---- the synthetic model directory ----------------------------------------------------

// Removes the temporary model directory however main returns.
struct TempDir {
  fs::path path;
  ~TempDir() {
    if (path.empty()) return;
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool ones = false;  // norm weights
};

std::vector<TensorSpec> llama_tensors(const Options& o) {
  const int64_t hidden = o.hidden, q = int64_t{o.heads} * o.head_dim,
                kv = int64_t{o.kv_heads} * o.head_dim, inter = o.intermediate;
  std::vector<TensorSpec> tensors;
  tensors.push_back({"model.embed_tokens.weight", {o.vocab, hidden}});
  for (int l = 0; l < o.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.push_back({p + "input_layernorm.weight", {hidden}, true});
    tensors.push_back({p + "self_attn.q_proj.weight", {q, hidden}});
    tensors.push_back({p + "self_attn.k_proj.weight", {kv, hidden}});
    tensors.push_back({p + "self_attn.v_proj.weight", {kv, hidden}});
    tensors.push_back({p + "self_attn.o_proj.weight", {hidden, q}});
    tensors.push_back({p + "post_attention_layernorm.weight", {hidden}, true});
    tensors.push_back({p + "mlp.gate_proj.weight", {inter, hidden}});
    tensors.push_back({p + "mlp.up_proj.weight", {inter, hidden}});
    tensors.push_back({p + "mlp.down_proj.weight", {hidden, inter}});
  }
  tensors.push_back({"model.norm.weight", {hidden}, true});
  if (!o.tied) tensors.push_back({"lm_head.weight", {o.vocab, hidden}});
  return tensors;
}

uint64_t element_count(const TensorSpec& t) {
  uint64_t n = 1;
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  return n;
}

// Values of one element in the chosen dtype, little-endian.
class ValueWriter {
 public:
  explicit ValueWriter(std::string_view dtype)
      : bytes_(dtype == "f32" ? 4u : 2u), f16_(dtype == "f16") {}
  size_t bytes() const { return bytes_; }
  void put(float v, uint8_t* out) const {
    if (bytes_ == 4) {
      std::memcpy(out, &v, 4);
      return;
    }
    const uint16_t h = f16_ ? sparkd::f32_to_f16(v) : sparkd::f32_to_bf16(v);
    out[0] = static_cast<uint8_t>(h & 0xffu);
    out[1] = static_cast<uint8_t>(h >> 8);
  }

 private:
  size_t bytes_;
  bool f16_;
};

// model.safetensors: u64 LE header length, JSON header (padded with spaces to 8 bytes),
// data. Weights are approximately normal (sum of four uniform 16-bit draws of one xorshift64
// output), std 0.02; norm weights are 1.
bool write_safetensors(const fs::path& path, const Options& o) {
  const std::vector<TensorSpec> tensors = llama_tensors(o);
  const ValueWriter writer(o.dtype);
  const char* dtype_name = o.dtype == "f32" ? "F32" : o.dtype == "f16" ? "F16" : "BF16";
  std::string header = "{";
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    const uint64_t size = element_count(t) * writer.bytes();
    if (header.size() > 1) header += ",";
    // Appends only: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string at -O3.
    header.append("\"").append(t.name).append("\":{\"dtype\":\"").append(dtype_name);
    header.append("\",\"shape\":[");
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i > 0) header.append(",");
      header.append(std::to_string(t.shape[i]));
    }
    header.append("],\"data_offsets\":[").append(std::to_string(offset)).append(",");
    header.append(std::to_string(offset + size)).append("]}");
    offset += size;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';

  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return false;
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(header.size() >> (8 * i));
  bool ok = std::fwrite(length, 1, 8, file) == 8 &&
            std::fwrite(header.data(), 1, header.size(), file) == header.size();

  uint64_t state = 0x9e3779b97f4a7c15ull;  // xorshift64, fixed seed: runs are comparable
  // Sum of four U(0, 65536) draws: mean 131070, std 65536 / sqrt(3).
  const float scale = 0.02f * std::sqrt(3.0f) / 65536.0f;
  std::vector<uint8_t> chunk(size_t{4} << 20);
  for (const TensorSpec& t : tensors) {
    uint64_t left = element_count(t);
    while (ok && left > 0) {
      const uint64_t n = std::min<uint64_t>(left, chunk.size() / writer.bytes());
      uint8_t* out = chunk.data();
      for (uint64_t i = 0; i < n; ++i, out += writer.bytes()) {
        if (t.ones) {
          writer.put(1.0f, out);
          continue;
        }
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        const uint64_t sum = (state & 0xffffu) + ((state >> 16) & 0xffffu) +
                             ((state >> 32) & 0xffffu) + (state >> 48);
        writer.put((static_cast<float>(sum) - 131070.0f) * scale, out);
      }
      const size_t bytes = static_cast<size_t>(n) * writer.bytes();
      ok = std::fwrite(chunk.data(), 1, bytes, file) == bytes;
      left -= n;
    }
  }
  return std::fclose(file) == 0 && ok;
}

bool write_text(const fs::path& path, const std::string& text) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return false;
  const bool ok = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  return std::fclose(file) == 0 && ok;
}

bool write_model_dir(const fs::path& dir, const Options& o) {
  const char* torch_dtype = o.dtype == "f32"   ? "float32"
                            : o.dtype == "f16" ? "float16"
                                               : "bfloat16";
  const std::string config =
      std::string("{\n  \"architectures\": [\"LlamaForCausalLM\"],\n") +
      "  \"model_type\": \"llama\",\n  \"hidden_act\": \"silu\",\n" +
      "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n" +
      "  \"hidden_size\": " + std::to_string(o.hidden) + ",\n" +
      "  \"num_hidden_layers\": " + std::to_string(o.layers) + ",\n" +
      "  \"num_attention_heads\": " + std::to_string(o.heads) + ",\n" +
      "  \"num_key_value_heads\": " + std::to_string(o.kv_heads) + ",\n" +
      "  \"head_dim\": " + std::to_string(o.head_dim) + ",\n" +
      "  \"intermediate_size\": " + std::to_string(o.intermediate) + ",\n" +
      "  \"vocab_size\": " + std::to_string(o.vocab) + ",\n" +
      "  \"max_position_embeddings\": 4096,\n  \"rope_theta\": 500000.0,\n" +
      "  \"rms_norm_eps\": 1e-05,\n  \"tie_word_embeddings\": " + (o.tied ? "true" : "false") +
      ",\n  \"torch_dtype\": \"" + torch_dtype + "\"\n}\n";
  if (!write_text(dir / "config.json", config)) return false;
  std::error_code error;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(fs::path(o.tokenizer_dir) / name, dir / name, error);
    if (error) {
      std::fprintf(stderr, "bench_batching: %s: %s\n", (fs::path(o.tokenizer_dir) / name).c_str(),
                   error.message().c_str());
      return false;
    }
  }
  return write_safetensors(dir / "model.safetensors", o);
}

// ---- the batching machinery -----------------------------------------------------------

// One run's scheduler over its own paged KV: what the serving path builds per model.
class Engine {
 public:
  Engine(sparkd::arch::DecoderModel& model, int32_t max_blocks,
         const sparkd::sched::SchedulerConfig& config)
      : model_(model), arbiter_(/*budget_granules=*/uint64_t{1} << 32) {
    const sparkd::KvBlockPoolGeometry geometry = model.kv_pool_geometry(kBlockTokens, max_blocks);
    auto pool = sparkd::KvBlockPool::create(geometry, arbiter_, /*consumer=*/1);
    if (!pool) fail(pool.status().to_string());
    pool_.emplace(std::move(*pool));
    kv_.emplace(pool_->cache_view());
    cache_ = std::make_unique<sparkd::kv::PrefixCache>(*pool_, kBlockTokens, /*caching=*/false);
    scheduler_ = std::make_unique<sparkd::sched::Scheduler>(config, *cache_);
  }
  ~Engine() {
    for (sparkd::sched::RequestId id : ids_) scheduler_->finish(id);
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void add(std::vector<int32_t> prompt) {
    ids_.push_back(static_cast<sparkd::sched::RequestId>(ids_.size() + 1));
    scheduler_->add(ids_.back(), std::move(prompt));
  }

  // One scheduled step: forward, greedy argmax, complete. Returns its plan.
  sparkd::sched::StepPlan step() {
    sparkd::sched::StepPlan plan = scheduler_->schedule();
    if (plan.empty()) fail("the scheduler planned an empty step");
    auto logits =
        sparkd::sched::run_decoder_step(model_, *kv_, /*states=*/nullptr, *scheduler_, plan);
    if (!logits) fail(logits.status().to_string());
    const size_t vocab = static_cast<size_t>(model_.spec().vocab_size);
    std::vector<int32_t> sampled;
    for (size_t row = 0; row * vocab < logits->size(); ++row) {
      const auto begin = logits->begin() + static_cast<std::ptrdiff_t>(row * vocab);
      sampled.push_back(static_cast<int32_t>(
          std::max_element(begin, begin + static_cast<std::ptrdiff_t>(vocab)) - begin));
    }
    scheduler_->complete(plan, sampled);
    return plan;
  }

  // True once every sequence has sampled its first token.
  bool all_prefilled() const {
    for (sparkd::sched::RequestId id : ids_) {
      const auto* seq = scheduler_->find(id);
      if (seq == nullptr || static_cast<int32_t>(seq->tokens.size()) <= seq->prompt_tokens)
        return false;
    }
    return true;
  }

  // Thrown, so main still removes the temporary model directory.
  [[noreturn]] static void fail(const std::string& why) { throw std::runtime_error(why); }

 private:
  sparkd::arch::DecoderModel& model_;
  sparkd::governor::FixedBudgetArbiter arbiter_;
  std::optional<sparkd::KvBlockPool> pool_;
  std::optional<sparkd::KvCache> kv_;
  std::unique_ptr<sparkd::kv::PrefixCache> cache_;
  std::unique_ptr<sparkd::sched::Scheduler> scheduler_;
  std::vector<sparkd::sched::RequestId> ids_;
};

int32_t blocks_for(int32_t tokens) {
  return (tokens + kBlockTokens - 1) / kBlockTokens;
}

std::vector<int32_t> random_tokens(int32_t vocab, int count, std::mt19937& rng) {
  // Skip the first ids (specials in most vocabularies) so inputs look like text.
  std::uniform_int_distribution<int32_t> pick(std::min(vocab - 1, 100), vocab - 1);
  std::vector<int32_t> ids(static_cast<size_t>(count));
  for (int32_t& id : ids) id = pick(rng);
  return ids;
}

// Weight bytes a decode step of `batch` tokens streams: every weight once, the embedding
// table by its gathered rows (and whole when it is also the lm_head).
double weight_bytes_per_step(const sparkd::tasks::LoadedModel& model, int batch) {
  double bytes = 0;
  for (const auto& [name, tensor] : model.weights().tensors()) {
    if (name.find("embed_tokens") == std::string::npos) {
      bytes += static_cast<double>(tensor.size_bytes());
      continue;
    }
    const double row =
        static_cast<double>(tensor.size_bytes()) / static_cast<double>(tensor.dim(0));
    bytes +=
        model.spec().tie_word_embeddings ? static_cast<double>(tensor.size_bytes()) : row * batch;
  }
  return bytes;
}

// KV bytes a step's attention reads: every position each chunk attends over, keys and
// values of every layer, in the pool's F32.
double kv_bytes_read(const sparkd::model::ModelSpec& spec, const sparkd::sched::StepPlan& plan) {
  const double per_token = 2.0 * spec.num_layers * spec.num_kv_heads * spec.head_dim * 4.0;
  double bytes = 0;
  for (const auto& chunk : plan.chunks) bytes += per_token * (chunk.begin + chunk.count);
  return bytes;
}

// The model as the simulator's cost model sees it: every weight read once a step (the
// embedding table only when it is also the lm_head), KV in the pool's F32.
sparkd::sim::ModelShape cost_shape(const sparkd::tasks::LoadedModel& model) {
  const auto& spec = model.spec();
  sparkd::sim::ModelShape shape;
  double read = 0;  // parameters a step reads
  double all = 0;
  for (const auto& [name, tensor] : model.weights().tensors()) {
    all += static_cast<double>(tensor.numel());
    if (name.find("embed_tokens") != std::string::npos && !spec.tie_word_embeddings) continue;
    read += static_cast<double>(tensor.numel());
  }
  shape.dense_params = read;
  shape.bytes_per_param = static_cast<double>(model.weights().size_bytes()) / all;
  shape.layers = spec.num_layers;
  shape.q_width = spec.num_heads * spec.head_dim;
  shape.kv_heads = spec.num_kv_heads;
  shape.head_dim = spec.head_dim;
  shape.kv_bytes_per_element = 4;
  return shape;
}

// "  model X ms  +E%" after a measured time, when a profile was given.
void print_prediction(const std::optional<sparkd::sim::CostModel>& cost,
                      const sparkd::sim::ModelShape& shape,
                      const std::vector<sparkd::sim::ChunkShape>& chunks, double measured_s) {
  if (!cost) return;
  const double predicted = cost->decoder_step(shape, chunks).seconds;
  std::printf("  model %8.2f ms %+6.1f%%", predicted * 1e3,
              100.0 * (predicted - measured_s) / measured_s);
}

void bench_decode(const sparkd::tasks::LoadedModel& model, const Options& o,
                  const std::optional<sparkd::sim::CostModel>& cost) {
  auto& decoder = *model.decoder();
  const auto& spec = model.spec();
  std::printf("\ndecode: %d prompt tokens, 1 warm-up + %d timed steps per batch\n", o.prompt_tokens,
              o.decode_steps);
  std::printf("%6s %10s %11s %10s %10s %10s\n", "batch", "step ms", "tok/s", "weights GB", "KV GB",
              "GB/s");
  for (int batch : o.batches) {
    const int32_t per_seq = blocks_for(o.prompt_tokens + o.decode_steps + 2) + 1;
    sparkd::sched::SchedulerConfig config;
    config.max_batch_tokens = batch * o.prompt_tokens + batch;
    config.max_seqs = batch;
    Engine engine(decoder, batch * per_seq, config);
    std::mt19937 rng(static_cast<uint32_t>(batch));
    for (int i = 0; i < batch; ++i)
      engine.add(random_tokens(spec.vocab_size, o.prompt_tokens, rng));
    while (!engine.all_prefilled()) engine.step();
    engine.step();  // warm-up decode step
    std::vector<double> step_seconds;
    double kv_bytes = 0;
    const auto start = Clock::now();
    for (int s = 0; s < o.decode_steps; ++s) {
      const auto step_start = Clock::now();
      const auto plan = engine.step();
      step_seconds.push_back(seconds_since(step_start));
      if (static_cast<int>(plan.chunks.size()) != batch || plan.total_tokens != batch)
        Engine::fail("a decode step did not run every sequence once");
      kv_bytes += kv_bytes_read(spec, plan);
    }
    const double total = seconds_since(start);
    const double step = median(step_seconds);
    const double weights = weight_bytes_per_step(model, batch);
    kv_bytes /= o.decode_steps;
    const double gbs = (weights + kv_bytes) / step / 1e9;
    std::printf("%6d %10.2f %11.1f %10.3f %10.3f %10.2f", batch, step * 1e3,
                batch * o.decode_steps / total, weights / 1e9, kv_bytes / 1e9, gbs);
    if (o.bandwidth_gbs > 0)
      std::printf("  (%.0f%% of %.0f GB/s)", 100 * gbs / o.bandwidth_gbs, o.bandwidth_gbs);
    // The timed steps' average context: prompt, warm-up token, half the timed ones.
    const std::vector<sparkd::sim::ChunkShape> chunks(
        static_cast<size_t>(batch), {o.prompt_tokens + 1 + o.decode_steps / 2, 1});
    print_prediction(cost, cost_shape(model), chunks, step);
    std::printf("\n");
    std::fflush(stdout);
  }
}

void bench_prefill(const sparkd::tasks::LoadedModel& model, const Options& o, int seqs, int tokens,
                   const std::optional<sparkd::sim::CostModel>& cost) {
  std::vector<double> rates;
  for (int r = 0; r < o.repeats; ++r) {
    sparkd::sched::SchedulerConfig config;
    config.max_batch_tokens = seqs * tokens;
    config.max_seqs = seqs;
    Engine engine(*model.decoder(), seqs * (blocks_for(tokens + 1) + 1), config);
    std::mt19937 rng(static_cast<uint32_t>(1000 + r));
    for (int i = 0; i < seqs; ++i) engine.add(random_tokens(model.spec().vocab_size, tokens, rng));
    const auto start = Clock::now();
    const auto plan = engine.step();
    rates.push_back(seqs * tokens / seconds_since(start));
    if (plan.total_tokens != seqs * tokens) Engine::fail("the prefill did not run in one step");
  }
  std::printf("prefill %3d x %4d tokens, one step %10.1f tok/s", seqs, tokens, median(rates));
  const std::vector<sparkd::sim::ChunkShape> chunks(static_cast<size_t>(seqs), {0, tokens});
  print_prediction(cost, cost_shape(model), chunks, seqs * tokens / median(rates));
  std::printf("\n");
  std::fflush(stdout);
}

bool parse_batches(std::string_view text, std::vector<int>* batches) {
  batches->clear();
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string item(text.substr(0, comma));
    const int n = std::atoi(item.c_str());
    if (n <= 0) return false;
    batches->push_back(n);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  return !batches->empty();
}

bool parse(int argc, char** argv, Options* o) {
  bool head_dim_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--quick") {
      o->hidden = 512;
      o->layers = 4;
      o->heads = 8;
      o->kv_heads = 2;
      o->intermediate = 1536;
      o->vocab = 8192;
      continue;
    }
    if (i + 1 >= argc) return false;
    const char* value = argv[++i];
    if (arg == "--bandwidth-gbs") {
      o->bandwidth_gbs = std::atof(value);
      continue;
    }
    if (arg == "--profile") {
      o->profile = value;
      continue;
    }
    if (arg == "--dtype") {
      o->dtype = value;
      if (o->dtype != "bf16" && o->dtype != "f16" && o->dtype != "f32") return false;
      continue;
    }
    if (arg == "--tokenizer-from") {
      o->tokenizer_dir = value;
      continue;
    }
    if (arg == "--batches") {
      if (!parse_batches(value, &o->batches)) return false;
      continue;
    }
    const int n = std::atoi(value);
    if (n < 0 || (n == 0 && arg != "--threads" && arg != "--tied")) return false;
    if (arg == "--hidden") {
      o->hidden = n;
    } else if (arg == "--layers") {
      o->layers = n;
    } else if (arg == "--heads") {
      o->heads = n;
    } else if (arg == "--kv-heads") {
      o->kv_heads = n;
    } else if (arg == "--head-dim") {
      o->head_dim = n;
      head_dim_given = true;
    } else if (arg == "--intermediate") {
      o->intermediate = n;
    } else if (arg == "--vocab") {
      o->vocab = n;
    } else if (arg == "--tied") {
      o->tied = n != 0;
    } else if (arg == "--prompt-tokens") {
      o->prompt_tokens = n;
    } else if (arg == "--decode-steps") {
      o->decode_steps = n;
    } else if (arg == "--prefill-tokens") {
      o->prefill_tokens = n;
    } else if (arg == "--threads") {
      o->threads = n;
    } else if (arg == "--repeats") {
      o->repeats = n;
    } else {
      return false;
    }
  }
  if (!head_dim_given) o->head_dim = o->hidden / o->heads;
  return o->head_dim > 0 && o->heads % o->kv_heads == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: bench_batching [--hidden N] [--layers N] [--heads N] [--kv-heads N] "
                 "[--head-dim N] [--intermediate N] [--vocab N] [--dtype bf16|f16|f32] "
                 "[--tied 0|1] [--prompt-tokens N] [--decode-steps N] [--prefill-tokens N] "
                 "[--batches 1,2,4,...] [--threads N] [--repeats N] [--bandwidth-gbs B] "
                 "[--tokenizer-from DIR] [--profile FILE] [--quick]\n");
    return 2;
  }

  TempDir dir;
  std::string pattern = (fs::temp_directory_path() / "sparkd_bench_batching_XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "bench_batching: cannot create a temporary directory\n");
    return 1;
  }
  dir.path = pattern;
  const auto write_start = Clock::now();
  if (!write_model_dir(dir.path, o)) {
    std::fprintf(stderr, "bench_batching: cannot write the model to %s\n", dir.path.c_str());
    return 1;
  }
  const double write_seconds = seconds_since(write_start);

  sparkd::CpuBackendOptions backend_options;
  backend_options.num_threads = o.threads;
  auto backend = sparkd::make_cpu_backend(backend_options);
  auto model = sparkd::tasks::LoadedModel::load(dir.path.string(), *backend);
  if (!model) {
    std::fprintf(stderr, "bench_batching: %s\n", model.status().to_string().c_str());
    return 1;
  }
  const auto& spec = (*model)->spec();
  std::printf(
      "synthetic %s: hidden %d, %d layers, heads %d/%d x %d, intermediate %d, vocab %d, %s%s\n"
      "%.1f MB weights (written in %.1f s, loaded at %.2f GB/s), KV F32 blocks of %d  (%s)\n",
      spec.architecture.c_str(), spec.hidden_size, spec.num_layers, spec.num_heads,
      spec.num_kv_heads, spec.head_dim, spec.intermediate_size, spec.vocab_size, o.dtype.c_str(),
      spec.tie_word_embeddings ? ", tied" : "",
      static_cast<double>((*model)->weights().size_bytes()) / 1e6, write_seconds,
      (*model)->weights().stats().gigabytes_per_second(), kBlockTokens, backend->name().c_str());
  std::fflush(stdout);

  std::optional<sparkd::sim::CostModel> cost;
  if (!o.profile.empty()) {
    auto profile = sparkd::sim::load_machine_profile(o.profile);
    if (!profile) {
      std::fprintf(stderr, "bench_batching: %s\n", profile.status().to_string().c_str());
      return 2;
    }
    cost.emplace(*profile);
    std::printf("cost model: profile %s (after each measured step: its prediction, error)\n",
                profile->name.c_str());
  }

  try {
    bench_decode(**model, o, cost);
    std::printf("\n");
    bench_prefill(**model, o, 1, o.prefill_tokens, cost);
    bench_prefill(**model, o, 8, 128, cost);
  } catch (const std::runtime_error& error) {
    std::fprintf(stderr, "bench_batching: %s\n", error.what());
    return 1;
  }
  return 0;
}
