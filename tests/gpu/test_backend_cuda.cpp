#include <catch2/catch.hpp>

#include "engine/backend/cuda/cuda_backend.h"
#include "tests/support/test_backend.h"

namespace sparkd::testing {

// F32 GEMMs and KV: the whole-model references are F32 computations, and the tolerances of
// the tests shared with the CPU are F32 ones. (The BF16 defaults are checked op by op.)
std::unique_ptr<Backend> make_test_backend() {
  CudaBackendOptions options;
  options.f32_gemm = true;
  options.f32_kv = true;
  auto backend = make_cuda_backend(options);
  if (!backend) FAIL("CUDA backend: " << backend.status().to_string());
  return std::move(backend).value();
}

std::string test_backend_name() {
  return "cuda";
}

}  // namespace sparkd::testing
