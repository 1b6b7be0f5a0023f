// bench_model: how fast one model runs on the CPU backend.
//
//   bench_model MODEL_DIR [--prompt-tokens N] [--decode-tokens N] [--batch N] [--threads N]
//                         [--repeats N] [--bandwidth-gbs B] [--kernels widest|avx2|portable]
//
// Generators: prefill tok/s (one pass over a prompt of --prompt-tokens), decode tok/s (greedy,
// one sequence), and the effective GB/s of decode: the weight bytes a decode step reads
// (DecoderModel::last_forward_weight_bytes: every matrix once, a mixture of experts' routed
// experts only, the embedding table by gathered rows) divided by the time per step. --bandwidth-gbs
// gives the machine's peak so the % of roofline is printed too. Embedding models: embeddings/s for
// batches of --batch inputs of
// --prompt-tokens tokens. Rerankers: pairs/s likewise. Inputs are seeded random token ids,
// so runs are comparable. Median of --repeats runs. --kernels caps the CPU kernels (see
// CpuKernels), e.g. to compare the quantized prefill GEMM with the dot-product path.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "bench/probes.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/tasks/loaded_model.h"

namespace {

using Clock = std::chrono::steady_clock;
using sparkd::tasks::LoadedModel;

struct Options {
  std::string model_dir;
  int prompt_tokens = 128;
  int decode_tokens = 32;
  int batch = 16;
  int threads = 0;
  int repeats = 3;
  double bandwidth_gbs = 0.0;
  sparkd::CpuKernels kernels = sparkd::CpuKernels::kWidest;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<int32_t> random_tokens(const LoadedModel& model, int count, uint32_t seed) {
  std::mt19937 rng(seed);
  // Skip the first ids (specials in most vocabularies) so inputs look like text.
  const int32_t vocab = model.spec().vocab_size;
  std::uniform_int_distribution<int32_t> pick(std::min(vocab - 1, 100), vocab - 1);
  std::vector<int32_t> ids(static_cast<size_t>(count));
  for (int32_t& id : ids) id = pick(rng);
  return ids;
}

int bench_generator(const LoadedModel& model, const Options& options) {
  const std::vector<int32_t> prompt = random_tokens(model, options.prompt_tokens, 1);
  std::vector<double> prefill, decode;
  for (int r = 0; r < options.repeats; ++r) {
    sparkd::tasks::GenerateOptions generate;
    generate.max_new_tokens = options.decode_tokens + 1;
    generate.ignore_eos = true;
    auto generation = sparkd::tasks::generate_greedy(model, prompt, generate);
    if (!generation) {
      std::fprintf(stderr, "bench_model: %s\n", generation.status().to_string().c_str());
      return 1;
    }
    prefill.push_back(static_cast<double>(prompt.size()) / generation->prefill_seconds);
    decode.push_back(static_cast<double>(generation->new_ids.size() - 1) /
                     generation->decode_seconds);
  }
  const double decode_tps = median(decode);
  // The last forward was a decode step: what it read is what each step streams (for a
  // mixture of experts, only the routed experts: k of each sparse layer's).
  const double step_bytes = static_cast<double>(model.decoder()->last_forward_weight_bytes());
  const double gbs = step_bytes * decode_tps / 1e9;
  std::printf("prefill  %6d tokens      %10.1f tok/s\n", options.prompt_tokens, median(prefill));
  std::printf("decode   %6d tokens      %10.1f tok/s   %.2f GB/s effective (%.1f MB/token)",
              options.decode_tokens, decode_tps, gbs, step_bytes / 1e6);
  if (options.bandwidth_gbs > 0)
    std::printf(" (%.0f%% of %.0f GB/s)", 100 * gbs / options.bandwidth_gbs, options.bandwidth_gbs);
  std::printf("\n");
  return 0;
}

int bench_encoder(const LoadedModel& model, const Options& options) {
  const bool rerank = model.spec().task == sparkd::model::ModelTask::kRerank;
  const int tokens = std::min(options.prompt_tokens, model.max_input_tokens());
  std::vector<std::vector<int32_t>> inputs;
  for (int i = 0; i < options.batch; ++i) {
    inputs.push_back(random_tokens(model, tokens, static_cast<uint32_t>(i + 1)));
  }
  std::vector<double> rates;
  for (int r = 0; r < options.repeats; ++r) {
    const auto start = Clock::now();
    if (rerank) {
      std::vector<sparkd::arch::EncoderInput> batch;
      for (const auto& ids : inputs) batch.push_back({ids, {}});
      auto scores = model.encoder()->classify(batch);
      if (!scores) {
        std::fprintf(stderr, "bench_model: %s\n", scores.status().to_string().c_str());
        return 1;
      }
    } else {
      auto embeddings = sparkd::tasks::embed_token_ids(model, inputs);
      if (!embeddings) {
        std::fprintf(stderr, "bench_model: %s\n", embeddings.status().to_string().c_str());
        return 1;
      }
    }
    rates.push_back(static_cast<double>(inputs.size()) / seconds_since(start));
  }
  const double rate = median(rates);
  std::printf("%s batch %d x %d tokens   %10.1f %s/s   %10.1f tok/s\n",
              rerank ? "rerank" : "embed ", options.batch, tokens, rate,
              rerank ? "pairs" : "embeddings", rate * tokens);
  return 0;
}

bool parse(int argc, char** argv, Options* options) {
  if (argc < 2) return false;
  options->model_dir = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return false;
    const char* value = argv[++i];
    if (arg == "--bandwidth-gbs") {
      options->bandwidth_gbs = std::atof(value);
      continue;
    }
    if (arg == "--kernels") {
      const auto kernels = sparkd::bench::cpu_kernels_from_name(value);
      if (!kernels) return false;
      options->kernels = *kernels;
      continue;
    }
    const int n = std::atoi(value);
    if (n < 0 || (n == 0 && arg != "--threads")) return false;
    if (arg == "--prompt-tokens") {
      options->prompt_tokens = n;
    } else if (arg == "--decode-tokens") {
      options->decode_tokens = n;
    } else if (arg == "--batch") {
      options->batch = n;
    } else if (arg == "--threads") {
      options->threads = n;
    } else if (arg == "--repeats") {
      options->repeats = n;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse(argc, argv, &options)) {
    std::fprintf(stderr,
                 "usage: bench_model MODEL_DIR [--prompt-tokens N] [--decode-tokens N] "
                 "[--batch N] [--threads N] [--repeats N] [--bandwidth-gbs B] "
                 "[--kernels widest|avx2|portable]\n");
    return 2;
  }
  sparkd::CpuBackendOptions backend_options;
  backend_options.num_threads = options.threads;
  backend_options.kernels = options.kernels;
  auto backend = sparkd::make_cpu_backend(backend_options);
  auto model = LoadedModel::load(options.model_dir, *backend);
  if (!model) {
    std::fprintf(stderr, "bench_model: %s\n", model.status().to_string().c_str());
    return 1;
  }
  const auto& spec = (*model)->spec();
  const auto& stats = (*model)->weights().stats();
  std::printf("%s  %s  %s  %d layers, hidden %d, %.1f MB weights, loaded at %.2f GB/s  (%s)\n",
              options.model_dir.c_str(), spec.architecture.c_str(),
              sparkd::model::task_name(spec.task), spec.num_layers, spec.hidden_size,
              static_cast<double>((*model)->weights().size_bytes()) / 1e6,
              stats.gigabytes_per_second(), backend->name().c_str());
  return spec.task == sparkd::model::ModelTask::kGenerate ? bench_generator(**model, options)
                                                          : bench_encoder(**model, options);
}
