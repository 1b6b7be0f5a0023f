// The CPU backend: exact (F32 accumulation everywhere), readable, OpenMP-parallel. It is the
// reference the CUDA backend is checked against op by op, and the backend CI runs.
#pragma once

#include <memory>
#include <string>

#include "engine/backend/backend.h"

namespace sparkd {

// Which hand-vectorised kernels may run. kWidest takes the best this CPU has (AVX-512, AVX2,
// or portable C++ off x86); the others cap it, so tests and benchmarks can run every code
// path on one machine.
enum class CpuKernels { kWidest, kAvx2, kPortable };

struct CpuBackendOptions {
  int num_threads = 0;  // 0: OpenMP's default (all cores, or OMP_NUM_THREADS)
  CpuKernels kernels = CpuKernels::kWidest;
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options = {});

}  // namespace sparkd
