// bench_cpu_ops: the CPU backend's hot ops at model shapes, in GFLOP/s and GB/s.
//
//   bench_cpu_ops [--threads N] [--kernels widest|avx2|portable] [--min-seconds S]
//                 [--only linear|attention] [--dtype NAME]... [--rotate-mib MIB]
//
// First the machine's read bandwidth (a multi-threaded sum over a large buffer): the roofline
// for decode. Then linear at decode shapes (M = 1: every weight byte read once per call, so
// effective GB/s = weight bytes / time), at prefill shapes (M = 128, 512: GFLOP/s), and
// attention for a few context lengths (decode: GB/s of K/V read; prefill: GFLOP/s).
// Decode weights rotate over copies totalling --rotate-mib (default 768) so that they come
// from DRAM, not from a large L3. Each figure is the best time of calls repeated for at
// least --min-seconds (default 0.3): on a shared machine the best is the stable statistic.
// --kernels caps the hand-vectorised kernels (see CpuKernels); --dtype (repeatable) keeps only
// those weight types (Q4_K, MXFP4, ...).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/probes.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/half.h"

namespace {

using sparkd::AttentionParams;
using sparkd::AttentionSequence;
using sparkd::Backend;
using sparkd::Buffer;
using sparkd::DType;
using sparkd::KvLayerView;
using sparkd::Tensor;
using sparkd::bench::Clock;
using sparkd::bench::measure_read_gbs;
using sparkd::bench::Memory;
using sparkd::bench::time_per_call;

struct Options {
  int threads = 0;
  sparkd::CpuKernels kernels = sparkd::CpuKernels::kWidest;
  double min_seconds = 0.3;
  std::string only;
  std::vector<std::string> dtypes;  // empty: every weight type
  int64_t rotate_mib = 768;
};

void bench_linear(Backend& backend, const Options& options) {
  struct Case {
    int64_t m, n, k;
  };
  const std::vector<Case> decode = {{1, 4096, 4096}, {1, 14336, 4096}, {1, 4096, 14336}};
  const std::vector<Case> prefill = {{128, 4096, 4096}, {512, 4096, 4096}, {128, 14336, 4096}};
  std::printf("\nlinear  y[M,N] = x[M,K] W[N,K]^T       %8s %10s %10s\n", "ms", "GFLOP/s",
              "W GB/s");
  for (DType dtype : {DType::kBF16, DType::kF32, DType::kF16, DType::kQ4_K, DType::kQ5_K,
                      DType::kQ6_K, DType::kQ8_0, DType::kQ4_1, DType::kQ4_0, DType::kQ5_0,
                      DType::kQ5_1, DType::kQ2_K, DType::kQ3_K, DType::kMXFP4}) {
    if (!options.dtypes.empty() && std::find(options.dtypes.begin(), options.dtypes.end(),
                                             sparkd::dtype_name(dtype)) == options.dtypes.end()) {
      continue;
    }
    for (bool is_decode : {true, false}) {
      for (const Case& c : is_decode ? decode : prefill) {
        if (!is_decode && dtype == DType::kF16) continue;  // same path as BF16
        Memory memory(backend);
        const int64_t weight_bytes =
            c.n * static_cast<int64_t>(sparkd::dtype_row_bytes(dtype, c.k));
        const int64_t copies =
            is_decode ? std::max<int64_t>(1, options.rotate_mib * (1 << 20) / weight_bytes) : 1;
        std::vector<Tensor> weights = {memory.random(dtype, {c.n, c.k}, 1)};
        for (int64_t i = 1; i < copies; ++i) {
          weights.push_back(memory.make(dtype, {c.n, c.k}));
          std::memcpy(weights.back().data, weights[0].data, weights[0].size_bytes());
        }
        Tensor x = memory.random(DType::kF32, {c.m, c.k}, 99);
        Tensor y = memory.make(DType::kF32, {c.m, c.n});
        const double seconds = time_per_call(options.min_seconds, [&](int call) {
          backend.linear(x, weights[static_cast<size_t>(call) % weights.size()], nullptr, y);
        });
        const double flops = 2.0 * static_cast<double>(c.m * c.n * c.k);
        std::printf("  %-5s M=%-4lld N=%-6lld K=%-6lld %s %8.3f %10.1f %10.1f\n",
                    sparkd::dtype_name(dtype), static_cast<long long>(c.m),
                    static_cast<long long>(c.n), static_cast<long long>(c.k),
                    is_decode ? "decode " : "prefill", seconds * 1e3, flops / seconds / 1e9,
                    static_cast<double>(weight_bytes) / seconds / 1e9);
      }
    }
  }
}

void bench_attention(Backend& backend, const Options& options) {
  // Llama-3-8B's attention: 32 query heads over 8 kv heads of 128.
  const int64_t heads = 32, kv_heads = 8, head_dim = 128;
  std::printf("\nattention  heads %lld / kv %lld x %lld, F32 KV  %8s %10s %10s\n",
              static_cast<long long>(heads), static_cast<long long>(kv_heads),
              static_cast<long long>(head_dim), "ms", "GFLOP/s", "KV GB/s");
  struct Case {
    int32_t query_tokens;
    int32_t context_tokens;
  };
  const std::vector<Case> cases = {{1, 512}, {1, 2048}, {1, 8192}, {512, 512}, {128, 2048}};
  for (const Case& c : cases) {
    Memory memory(backend);
    KvLayerView kv;
    kv.keys = memory.random(DType::kF32, {c.context_tokens, kv_heads, head_dim}, 1);
    kv.values = memory.random(DType::kF32, {c.context_tokens, kv_heads, head_dim}, 2);
    Tensor q = memory.random(DType::kF32, {c.query_tokens, heads, head_dim}, 3);
    Tensor out = memory.make(DType::kF32, {c.query_tokens, heads, head_dim});
    AttentionSequence sequence;
    sequence.query_tokens = c.query_tokens;
    sequence.context_tokens = c.context_tokens;
    AttentionParams params;
    params.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const double seconds = time_per_call(options.min_seconds, [&](int) {
      backend.attention(q, kv, {&sequence, 1}, params, out);
    });
    // Causal: query i sees context - query + i + 1 keys; two products of head_dim each.
    double visible_keys = 0.0;
    for (int32_t i = 0; i < c.query_tokens; ++i) {
      visible_keys += c.context_tokens - c.query_tokens + i + 1;
    }
    const double flops = 4.0 * visible_keys * static_cast<double>(heads * head_dim);
    const double kv_bytes = 2.0 * static_cast<double>(kv.keys.size_bytes());
    std::printf("  query %-4d context %-5d %s               %8.3f %10.1f %10.1f\n", c.query_tokens,
                c.context_tokens, c.query_tokens == 1 ? "decode " : "prefill", seconds * 1e3,
                flops / seconds / 1e9, kv_bytes / seconds / 1e9);
  }
}

int usage() {
  std::fprintf(stderr,
               "usage: bench_cpu_ops [--threads N] [--kernels widest|avx2|portable] "
               "[--min-seconds S] "
               "[--only linear|attention] [--dtype NAME]... [--rotate-mib MIB]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--threads" && has_value) {
      options.threads = std::atoi(argv[++i]);
    } else if (arg == "--kernels" && has_value) {
      const auto kernels = sparkd::bench::cpu_kernels_from_name(argv[++i]);
      if (!kernels) return usage();
      options.kernels = *kernels;
    } else if (arg == "--min-seconds" && has_value) {
      options.min_seconds = std::atof(argv[++i]);
    } else if (arg == "--only" && has_value) {
      options.only = argv[++i];
    } else if (arg == "--dtype" && has_value) {
      options.dtypes.push_back(argv[++i]);
    } else if (arg == "--rotate-mib" && has_value) {
      options.rotate_mib = std::atoll(argv[++i]);
    } else {
      return usage();
    }
  }
  sparkd::CpuBackendOptions backend_options;
  backend_options.num_threads = options.threads;
  backend_options.kernels = options.kernels;
  std::unique_ptr<Backend> backend = sparkd::make_cpu_backend(backend_options);

  const int threads = options.threads > 0
                          ? options.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::printf("bench_cpu_ops: %d threads, %s kernels\n", threads,
              sparkd::bench::cpu_kernels_name(options.kernels));
  if (options.only.empty()) {
    std::printf("read bandwidth (%d threads, 1 GiB): %.1f GB/s\n", threads,
                measure_read_gbs(threads, options.min_seconds));
  }
  if (options.only.empty() || options.only == "linear") bench_linear(*backend, options);
  if (options.only.empty() || options.only == "attention") bench_attention(*backend, options);
  return 0;
}
