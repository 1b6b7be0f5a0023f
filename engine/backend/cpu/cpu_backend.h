// The CPU backend: exact (F32 accumulation everywhere), readable, OpenMP-parallel. It is the
// reference the CUDA backend is checked against op by op, and the backend CI runs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/backend/backend.h"

namespace sparkd {

// Which hand-vectorised kernels may run. kWidest takes the best this CPU has (AVX-512, AVX2;
// on aarch64 the int8 matrix-multiply and dot-product kernels; portable C++ elsewhere); the
// others cap it, so tests and benchmarks can run every code path on one machine. kAvx2 is
// the middle level: AVX2 on x86, dot products without matrix multiplies on aarch64.
enum class CpuKernels { kWidest, kAvx2, kPortable };

struct CpuBackendOptions {
  int num_threads = 0;  // 0: OpenMP's default (all cores, or OMP_NUM_THREADS)
  CpuKernels kernels = CpuKernels::kWidest;
  // The KV cache's dtype: F32, or F16/BF16 for half the memory (attention converts per tile).
  DType kv_dtype = DType::kF32;
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options = {});

// The hand-written kernel families this CPU can run, widest first: "avx512", "avx512_vnni",
// "avx2" on x86, "arm_i8mm", "arm_dotprod" on aarch64; empty where only the portable kernels
// run.
std::vector<std::string> detected_cpu_kernel_features();

}  // namespace sparkd
