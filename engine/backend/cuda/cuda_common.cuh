// What the CUDA backend's files share: error checks, element loads and stores by dtype, warp
// and block reductions, launch shapes. Device code only sees raw pointers; cuda_backend.cu
// checks shapes (op_checks.h) before any launch.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/backend/tensor.h"

namespace sparkd::cuda {

// A failed launch or runtime call inside an op is a bug or a lost device, never bad input
// (shapes are checked before): report where, and abort rather than compute on garbage.
[[noreturn]] inline void fail_call(const char* what, const char* error, const char* file,
                                   int line) {
  std::fprintf(stderr, "sparkd cuda backend: %s failed: %s (%s:%d)\n", what, error, file, line);
  std::fflush(stderr);
  std::abort();
}

#define SPARKD_CUDA_CHECK(call)                                                                    \
  do {                                                                                             \
    const cudaError_t sparkd_cuda_error = (call);                                                  \
    if (sparkd_cuda_error != cudaSuccess) {                                                        \
      ::sparkd::cuda::fail_call(#call, cudaGetErrorString(sparkd_cuda_error), __FILE__, __LINE__); \
    }                                                                                              \
  } while (0)

#define SPARKD_CUBLAS_CHECK(call)                                                              \
  do {                                                                                         \
    const cublasStatus_t sparkd_cublas_status = (call);                                        \
    if (sparkd_cublas_status != CUBLAS_STATUS_SUCCESS) {                                       \
      ::sparkd::cuda::fail_call(                                                               \
          #call,                                                                               \
          ("cuBLAS status " + std::to_string(static_cast<int>(sparkd_cublas_status))).c_str(), \
          __FILE__, __LINE__);                                                                 \
    }                                                                                          \
  } while (0)

// After every launch: a bad configuration (too many threads, too much shared memory) shows
// here, not as silently missing output.
#define SPARKD_CUDA_LAUNCHED() SPARKD_CUDA_CHECK(cudaGetLastError())

// ---- launch shapes ----------------------------------------------------------------------
constexpr int kWarp = 32;
constexpr int kElementwiseThreads = 256;

// Blocks for a grid-stride loop over n elements: enough to fill any GPU we target, few
// enough that each thread does several elements.
inline unsigned elementwise_blocks(int64_t n) {
  const int64_t blocks = (n + kElementwiseThreads - 1) / kElementwiseThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}

// ---- element access by dtype --------------------------------------------------------------
// Float tensors (F32, F16, BF16) read as F32 and written from F32 with round-to-nearest-even,
// as engine/backend/half.h does on the CPU.
__device__ __forceinline__ float load_f32(const void* data, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF16:
      return __half2float(static_cast<const __half*>(data)[i]);
    case DType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[i]);
    default:
      return static_cast<const float*>(data)[i];
  }
}

__device__ __forceinline__ void store_f32(void* data, DType dtype, int64_t i, float value) {
  switch (dtype) {
    case DType::kF16:
      static_cast<__half*>(data)[i] = __float2half_rn(value);
      return;
    case DType::kBF16:
      static_cast<__nv_bfloat16*>(data)[i] = __float2bfloat16_rn(value);
      return;
    default:
      static_cast<float*>(data)[i] = value;
  }
}

// ---- reductions -------------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// `scratch` holds 32 floats of shared memory; the call ends with the block synchronised.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = lane < warps ? scratch[lane] : 0.0f;
  total = warp_sum(total);
  return total;
}

}  // namespace sparkd::cuda
