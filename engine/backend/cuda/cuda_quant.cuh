// Quantized weights on the GPU: one "chunk" of 32 consecutive values of a row at a time.
// The functions compile for the host too, so that tests check this arithmetic against the
// CPU's without a GPU (cuda_quant_host.h).
//
// Every quantized type's row splits into chunks of 32 values: a 32-value block is one chunk,
// a K-quant super-block of 256 is eight. A chunk is the unit a thread dequantizes into
// registers (GEMV, gathers, dequantization for the GEMM). The arithmetic is that of
// cpu/cpu_dequantize.cpp, the reference, on the layouts of quant_blocks.h.
#pragma once

#include <cstring>
#include <type_traits>

#include "engine/backend/cuda/cuda_common.cuh"
#include "engine/backend/quant_blocks.h"

namespace sparkd::cuda {

constexpr int kChunk = 32;

// Unrolled on the GPU; plain loops where the host compiler builds the same functions.
#if defined(__CUDA_ARCH__)
#define SPARKD_UNROLL _Pragma("unroll")
#else
#define SPARKD_UNROLL
#endif

__host__ __device__ __forceinline__ float half_bits_to_f32(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

// MXFP4's E8M0 exponent as the halved scale its doubled E2M1 codes are multiplied by.
__host__ __device__ __forceinline__ float e8m0_half_scale(uint8_t e) {
  const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

__host__ __device__ __forceinline__ float mxfp4_code(int code) {
  // kMxfp4Values: E2M1 codes doubled to integers.
  constexpr float kValues[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  return kValues[code];
}

// The 32 values of chunk `chunk` of a quantized row (`row`: its first byte).
template <DType kType>
__host__ __device__ __forceinline__ void dequantize_chunk(const uint8_t* row, int64_t chunk,
                                                          float v[kChunk]) {
  using namespace sparkd::quant;
  if constexpr (kType == DType::kQ4_0) {
    const auto& b = reinterpret_cast<const BlockQ4_0*>(row)[chunk];
    const float d = half_bits_to_f32(b.d);
    SPARKD_UNROLL
    for (int i = 0; i < kChunk; ++i) v[i] = d * static_cast<float>(nibble(b.qs, i) - 8);
  } else if constexpr (kType == DType::kQ4_1) {
    const auto& b = reinterpret_cast<const BlockQ4_1*>(row)[chunk];
    const float d = half_bits_to_f32(b.d), m = half_bits_to_f32(b.m);
    SPARKD_UNROLL
    for (int i = 0; i < kChunk; ++i) v[i] = d * static_cast<float>(nibble(b.qs, i)) + m;
  } else if constexpr (kType == DType::kQ5_0) {
    const auto& b = reinterpret_cast<const BlockQ5_0*>(row)[chunk];
    const float d = half_bits_to_f32(b.d);
    SPARKD_UNROLL
    for (int i = 0; i < kChunk; ++i) {
      v[i] = d * static_cast<float>((nibble(b.qs, i) | (fifth_bit(b.qh, i) << 4)) - 16);
    }
  } else if constexpr (kType == DType::kQ5_1) {
    const auto& b = reinterpret_cast<const BlockQ5_1*>(row)[chunk];
    const float d = half_bits_to_f32(b.d), m = half_bits_to_f32(b.m);
    SPARKD_UNROLL
    for (int i = 0; i < kChunk; ++i) {
      v[i] = d * static_cast<float>(nibble(b.qs, i) | (fifth_bit(b.qh, i) << 4)) + m;
    }
  } else if constexpr (kType == DType::kQ8_0) {
    const auto& b = reinterpret_cast<const BlockQ8_0*>(row)[chunk];
    const float d = half_bits_to_f32(b.d);
    SPARKD_UNROLL
    for (int i = 0; i < kChunk; ++i) v[i] = static_cast<float>(b.qs[i]) * d;
  } else if constexpr (kType == DType::kMXFP4) {
    const auto& b = reinterpret_cast<const BlockMXFP4*>(row)[chunk];
    const float d = e8m0_half_scale(b.e);
    SPARKD_UNROLL
    for (int i = 0; i < kChunk; ++i) v[i] = d * mxfp4_code(nibble(b.qs, i));
  } else {
    // K-quants: chunk j of super-block sb holds values 32 j .. 32 j + 31.
    const int64_t sb = chunk / 8;
    const int j = static_cast<int>(chunk % 8);
    if constexpr (kType == DType::kQ2_K) {
      const auto& b = reinterpret_cast<const BlockQ2_K*>(row)[sb];
      const float d = half_bits_to_f32(b.d), dmin = half_bits_to_f32(b.dmin);
      const int half = j / 4, shift = 2 * (j % 4);
      SPARKD_UNROLL
      for (int l = 0; l < kChunk; ++l) {
        const uint8_t scale = b.scales[2 * j + l / 16];
        const float dl = d * static_cast<float>(scale & 0xF);
        const float ml = dmin * static_cast<float>(scale >> 4);
        v[l] = dl * static_cast<float>((b.qs[half * 32 + l] >> shift) & 3) - ml;
      }
    } else if constexpr (kType == DType::kQ3_K) {
      const auto& b = reinterpret_cast<const BlockQ3_K*>(row)[sb];
      const float d = half_bits_to_f32(b.d);
      int scales[16];
      q3_k_scales(b.scales, scales);
      const int half = j / 4, shift = 2 * (j % 4);
      SPARKD_UNROLL
      for (int l = 0; l < kChunk; ++l) {
        const int low = (b.qs[half * 32 + l] >> shift) & 3;
        const int high_clear = ((b.hmask[l] >> j) & 1) ^ 1;  // clear: -4
        const float dl = d * static_cast<float>(scales[2 * j + l / 16]);
        v[l] = dl * static_cast<float>(low - (high_clear << 2));
      }
    } else if constexpr (kType == DType::kQ4_K || kType == DType::kQ5_K) {
      using Block = std::conditional_t<kType == DType::kQ4_K, BlockQ4_K, BlockQ5_K>;
      const Block& b = reinterpret_cast<const Block*>(row)[sb];
      const float d = half_bits_to_f32(b.d), dmin = half_bits_to_f32(b.dmin);
      uint8_t scale, min;
      k_scale_min(b.scales, j, scale, min);
      const float dl = d * static_cast<float>(scale);
      const float ml = dmin * static_cast<float>(min);
      const uint8_t* qs = b.qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      SPARKD_UNROLL
      for (int l = 0; l < kChunk; ++l) {
        int q = (qs[l] >> shift) & 0xF;
        if constexpr (kType == DType::kQ5_K) q |= ((b.qh[l] >> j) & 1) << 4;
        v[l] = dl * static_cast<float>(q) - ml;
      }
    } else if constexpr (kType == DType::kQ6_K) {
      const auto& b = reinterpret_cast<const BlockQ6_K*>(row)[sb];
      const float d = half_bits_to_f32(b.d);
      const int half = j / 4;
      SPARKD_UNROLL
      for (int l = 0; l < kChunk; ++l) {
        const int r = 32 * (j % 4) + l;
        const int low = (b.ql[half * 64 + r % 64] >> (4 * (r / 64))) & 0xF;
        const int high = (b.qh[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
        const float dl = d * static_cast<float>(b.scales[2 * j + l / 16]);
        v[l] = dl * static_cast<float>((low | (high << 4)) - 32);
      }
    }
  }
}

// Calls f(std::integral_constant<DType, type>{}) so that a generic lambda can pass the
// quantized type on as a template argument (decltype(tag)::value): one kernel template serves
// every type. Returns false for a float type.
template <typename F>
bool dispatch_quantized(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kQ4_0:
      f(std::integral_constant<DType, DType::kQ4_0>{});
      return true;
    case DType::kQ4_1:
      f(std::integral_constant<DType, DType::kQ4_1>{});
      return true;
    case DType::kQ5_0:
      f(std::integral_constant<DType, DType::kQ5_0>{});
      return true;
    case DType::kQ5_1:
      f(std::integral_constant<DType, DType::kQ5_1>{});
      return true;
    case DType::kQ8_0:
      f(std::integral_constant<DType, DType::kQ8_0>{});
      return true;
    case DType::kQ2_K:
      f(std::integral_constant<DType, DType::kQ2_K>{});
      return true;
    case DType::kQ3_K:
      f(std::integral_constant<DType, DType::kQ3_K>{});
      return true;
    case DType::kQ4_K:
      f(std::integral_constant<DType, DType::kQ4_K>{});
      return true;
    case DType::kQ5_K:
      f(std::integral_constant<DType, DType::kQ5_K>{});
      return true;
    case DType::kQ6_K:
      f(std::integral_constant<DType, DType::kQ6_K>{});
      return true;
    case DType::kMXFP4:
      f(std::integral_constant<DType, DType::kMXFP4>{});
      return true;
    default:
      return false;
  }
}

}  // namespace sparkd::cuda
