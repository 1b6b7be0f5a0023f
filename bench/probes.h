// Measuring helpers the benchmarks share: best-of timing, seeded tensors in backend memory,
// the machine's read bandwidth (bench_cpu_ops, bench_machine_profile) and the --kernels names.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/half.h"

namespace sparkd::bench {

// --kernels widest|avx2|portable (the CpuKernels cap) and back.
inline std::optional<CpuKernels> cpu_kernels_from_name(std::string_view name) {
  if (name == "widest") return CpuKernels::kWidest;
  if (name == "avx2") return CpuKernels::kAvx2;
  if (name == "portable") return CpuKernels::kPortable;
  return std::nullopt;
}

inline const char* cpu_kernels_name(CpuKernels kernels) {
  switch (kernels) {
    case CpuKernels::kWidest:
      return "widest";
    case CpuKernels::kAvx2:
      return "avx2";
    case CpuKernels::kPortable:
      return "portable";
  }
  return "?";
}

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Best seconds per call of fn(i) (i counts calls), after one warm-up call.
template <typename Fn>
inline double time_per_call(double min_seconds, Fn&& fn) {
  fn(0);
  std::vector<double> times;
  const Clock::time_point begin = Clock::now();
  for (int i = 1; seconds_since(begin) < min_seconds || times.size() < 3; ++i) {
    const Clock::time_point start = Clock::now();
    fn(i);
    times.push_back(seconds_since(start));
  }
  return *std::min_element(times.begin(), times.end());
}

class Memory {
 public:
  explicit Memory(Backend& backend) : backend_(backend) {}
  Tensor make(DType dtype, std::vector<int64_t> shape) {
    Tensor t(dtype, std::move(shape), nullptr);
    auto buffer = backend_.allocate(t.size_bytes());
    if (!buffer) {
      std::fprintf(stderr, "%s\n", buffer.status().to_string().c_str());
      std::exit(1);
    }
    t.data = buffer->data();
    buffers_.push_back(std::move(*buffer));
    return t;
  }
  // Pseudo-random values in [-1, 1) stored as `dtype` (a multiplicative hash: fast enough
  // for gigabytes, and the values don't matter to the timing).
  Tensor random(DType dtype, std::vector<int64_t> shape, uint32_t seed) {
    Tensor t = make(dtype, std::move(shape));
    if (sparkd::dtype_is_quantized(dtype)) {  // random blocks: the timing is the same
      auto* bytes = static_cast<uint8_t*>(t.data);
      for (size_t i = 0; i < t.size_bytes(); ++i) {
        bytes[i] = static_cast<uint8_t>(
            ((static_cast<uint32_t>(i) + seed * 0x9e3779b9u) * 0x85ebca6bu) >> 24);
      }
      return t;
    }
    for (int64_t i = 0; i < t.numel(); ++i) {
      const uint32_t hash = (static_cast<uint32_t>(i) + seed * 0x9e3779b9u) * 0x85ebca6bu;
      const float v = static_cast<float>(hash >> 8) * 0x1p-23f - 1.0f;
      if (dtype == DType::kF32) {
        t.as<float>()[i] = v;
      } else {
        t.as<uint16_t>()[i] =
            dtype == DType::kBF16 ? sparkd::f32_to_bf16(v) : sparkd::f32_to_f16(v);
      }
    }
    return t;
  }

 private:
  Backend& backend_;
  std::vector<Buffer> buffers_;
};

// Read bandwidth: `threads` threads each summing its part of a 1 GiB buffer as 64-bit words
// into eight independent registers (two loads per cycle outrun DRAM on any core).
inline double measure_read_gbs(int threads, double min_seconds) {
  const size_t words = size_t{1} << 27;
  std::vector<uint64_t> data(words, 1);
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  const double seconds = time_per_call(min_seconds, [&](int) {
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const size_t begin = words / threads * t, end = words / threads * (t + 1);
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (size_t i = begin; i < end; i += 8) {
          s0 += data[i];
          s1 += data[i + 1];
          s2 += data[i + 2];
          s3 += data[i + 3];
          s4 += data[i + 4];
          s5 += data[i + 5];
          s6 += data[i + 6];
          s7 += data[i + 7];
        }
        sums[t] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
      });
    }
    for (std::thread& w : workers) w.join();
  });
  return static_cast<double>(words * sizeof(uint64_t)) / seconds / 1e9;
}

}  // namespace sparkd::bench
