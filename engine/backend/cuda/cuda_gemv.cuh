// The GEMV building blocks: one warp per output column n reads W's row n once, as stored
// (F32, F16, BF16 or quantized, dequantized in registers 32 values at a time), against up to
// kRows rows of x with F32 accumulation. The dense GEMV (cuda_linear.cu) and the grouped one
// of the MoE experts (cuda_moe.cu) are kernels around these.
#pragma once

#include <cstdint>

#include "engine/backend/cuda/cuda_common.cuh"
#include "engine/backend/cuda/cuda_quant.cuh"

namespace sparkd::cuda {

constexpr int kGemvWarps = 4;  // output columns per block

inline unsigned gemv_blocks(int64_t n) {
  return static_cast<unsigned>((n + kGemvWarps - 1) / kGemvWarps);
}

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// Finishes a GEMV: every lane holds partial sums; lane 0 writes y[r, n] (+ bias).
template <int kRows>
__device__ __forceinline__ void gemv_store(float (&acc)[kRows], int rows, int64_t n, int64_t ldy,
                                           const void* bias, DType bias_type, float* y) {
  const float b = bias != nullptr ? load_f32(bias, bias_type, n) : 0.0f;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float total = warp_sum(acc[r]);
    if (threadIdx.x % kWarp == 0 && r < rows) y[r * ldy + n] = total + b;
  }
}

// This lane's share of W's float row w_row (type T) against rows of x [rows, k] (leading
// dimension k). kVector: k is a multiple of 8 and w_row and x are 16-byte aligned, so each
// lane loads 8 consecutive weights at once.
template <int kRows, typename T, bool kVector>
__device__ __forceinline__ void gemv_float_row(const T* w_row, const float* x, int rows, int64_t k,
                                               float (&acc)[kRows]) {
  const int lane = threadIdx.x % kWarp;
  if constexpr (kVector) {
    constexpr int kLanes = 16 / sizeof(T);  // values per 16-byte load
    for (int64_t base = static_cast<int64_t>(lane) * kLanes; base < k; base += kWarp * kLanes) {
      alignas(16) T values[kLanes];
      *reinterpret_cast<uint4*>(values) = *reinterpret_cast<const uint4*>(w_row + base);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows) {
          const float* x_row = x + r * k + base;
#pragma unroll
          for (int j = 0; j < kLanes; ++j) acc[r] += to_float(values[j]) * x_row[j];
        }
      }
    }
  } else {
    for (int64_t i = lane; i < k; i += kWarp) {
      const float wi = to_float(w_row[i]);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows) acc[r] += wi * x[r * k + i];
      }
    }
  }
}

// The same for a quantized row: each lane dequantizes whole 32-value chunks.
template <int kRows, DType kType>
__device__ __forceinline__ void gemv_quantized_row(const uint8_t* w_row, const float* x, int rows,
                                                   int64_t k, float (&acc)[kRows]) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t chunk = lane; chunk < k / kChunk; chunk += kWarp) {
    float v[kChunk];
    dequantize_chunk<kType>(w_row, chunk, v);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r < rows) {
        const float4* x4 = reinterpret_cast<const float4*>(x + r * k + chunk * kChunk);
#pragma unroll
        for (int j = 0; j < kChunk / 4; ++j) {
          const float4 xv = x4[j];
          acc[r] +=
              v[4 * j] * xv.x + v[4 * j + 1] * xv.y + v[4 * j + 2] * xv.z + v[4 * j + 3] * xv.w;
        }
      }
    }
  }
}

}  // namespace sparkd::cuda
