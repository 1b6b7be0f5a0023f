// The CPU backend: exact (F32 accumulation everywhere), readable, OpenMP-parallel. It is the
// reference the CUDA backend is checked against op by op, and the backend CI runs.
#pragma once

#include <memory>
#include <string>

#include "engine/backend/backend.h"

namespace sparkd {

struct CpuBackendOptions {
  int num_threads = 0;  // 0: OpenMP's default (all cores, or OMP_NUM_THREADS)
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options = {});

}  // namespace sparkd
