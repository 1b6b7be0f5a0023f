// The block layouts of ggml's quantized types, byte for byte as GGUF files store them
// (ggml-common.h is the reference). Shared by every backend: the CPU kernels and the CUDA
// kernels (cuda/cuda_quant.cuh) read these structs and unpack them with the helpers below.
//
// A quantized row of K values is K / kBlockElements blocks. Each block holds one or two F16
// scales (or 6-bit sub-block scales under an F16 super-scale for the K-quants, whose blocks
// span 256 values) and the packed integers; a value is scale * q (+ min, or - sub-block
// min). Within the 32-value blocks, byte j's low nibble is value j and its high nibble value
// j + 16; the K-quants' orders are spelled out in cpu_dequantize.cpp.
#pragma once

#include <cstdint>

#include "engine/backend/tensor.h"

// The unpacking helpers compile for the GPU too when nvcc includes this header.
#if defined(__CUDACC__)
#define SPARKD_HOST_DEVICE __host__ __device__
#else
#define SPARKD_HOST_DEVICE
#endif

namespace sparkd::quant {

inline constexpr int kBlockElements = 32;        // Q4_0 .. Q8_0, MXFP4
inline constexpr int kSuperBlockElements = 256;  // the K-quants (QK_K)

struct BlockQ4_0 {
  uint16_t d;  // F16 scale
  uint8_t qs[16];
};
struct BlockQ4_1 {
  uint16_t d;  // F16 scale
  uint16_t m;  // F16 minimum
  uint8_t qs[16];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];  // the fifth bits, little-endian: bit j is value j's
  uint8_t qs[16];
};
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct BlockQ2_K {
  uint8_t scales[16];  // per 16 values: low nibble scale, high nibble min
  uint8_t qs[64];      // 2-bit values
  uint16_t d;          // F16 super-scale of the scales
  uint16_t dmin;       // F16 super-scale of the mins
};
struct BlockQ3_K {
  uint8_t hmask[32];   // the third bits
  uint8_t qs[64];      // the low 2 bits
  uint8_t scales[12];  // 16 6-bit scales, packed
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];  // 8 6-bit scales and 8 6-bit mins, packed
  uint8_t qs[128];
};
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6_K {
  uint8_t ql[128];    // low 4 bits
  uint8_t qh[64];     // high 2 bits
  int8_t scales[16];  // per 16 values
  uint16_t d;
};
struct BlockMXFP4 {
  uint8_t e;       // E8M0 shared exponent
  uint8_t qs[16];  // E2M1 values
};

// Activations, quantized per block for the integer dot products (ggml's vec_dot_type): Q8_0
// for the 32-value types that are symmetric, Q8_1 (which also carries d * sum(qs)) for those
// with a minimum, Q8_K for the K-quants.
struct BlockQ8_1 {
  uint16_t d;  // F16 scale
  uint16_t s;  // F16 d * sum(qs)
  int8_t qs[32];
};
struct BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];  // sums of each 16 qs
};
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ8_K) == 292);

static_assert(sizeof(BlockQ4_0) == dtype_traits(DType::kQ4_0).block_bytes);
static_assert(sizeof(BlockQ4_1) == dtype_traits(DType::kQ4_1).block_bytes);
static_assert(sizeof(BlockQ5_0) == dtype_traits(DType::kQ5_0).block_bytes);
static_assert(sizeof(BlockQ5_1) == dtype_traits(DType::kQ5_1).block_bytes);
static_assert(sizeof(BlockQ8_0) == dtype_traits(DType::kQ8_0).block_bytes);
static_assert(sizeof(BlockQ2_K) == dtype_traits(DType::kQ2_K).block_bytes);
static_assert(sizeof(BlockQ3_K) == dtype_traits(DType::kQ3_K).block_bytes);
static_assert(sizeof(BlockQ4_K) == dtype_traits(DType::kQ4_K).block_bytes);
static_assert(sizeof(BlockQ5_K) == dtype_traits(DType::kQ5_K).block_bytes);
static_assert(sizeof(BlockQ6_K) == dtype_traits(DType::kQ6_K).block_bytes);
static_assert(sizeof(BlockMXFP4) == dtype_traits(DType::kMXFP4).block_bytes);

// MXFP4's 16 E2M1 codes, doubled so they are integers (the E8M0 scale is halved to match).
inline constexpr int8_t kMxfp4Values[16] = {0, 1,  2,  3,  4,  6,  8,  12,
                                            0, -1, -2, -3, -4, -6, -8, -12};

// 32-value blocks: byte i holds value i (low nibble) and value i + 16 (high nibble).
inline SPARKD_HOST_DEVICE int nibble(const uint8_t* qs, int i) {
  return i < 16 ? (qs[i] & 0xF) : (qs[i - 16] >> 4);
}

// Q5_0/Q5_1: value i's fifth bit, from the little-endian qh.
inline SPARKD_HOST_DEVICE int fifth_bit(const uint8_t qh[4], int i) {
  const uint32_t bits = static_cast<uint32_t>(qh[0]) | (static_cast<uint32_t>(qh[1]) << 8) |
                        (static_cast<uint32_t>(qh[2]) << 16) | (static_cast<uint32_t>(qh[3]) << 24);
  return static_cast<int>((bits >> i) & 1u);
}

// Q3_K's 16 signed 6-bit scales: low 4 bits from bytes 0-7 (low nibbles, then high), top 2
// bits from bytes 8-11 (2 bits per scale, 4 scales per byte, in strides of 4), minus 32.
inline SPARKD_HOST_DEVICE void q3_k_scales(const uint8_t packed[12], int scales[16]) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? (packed[j] & 0xF) : (packed[j - 8] >> 4);
    const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    scales[j] = (low | (high << 4)) - 32;
  }
}

// Q4_K/Q5_K: sub-block j's 6-bit scale and min from the 12 packed bytes.
inline SPARKD_HOST_DEVICE void k_scale_min(const uint8_t* scales, int j, uint8_t& scale,
                                           uint8_t& min) {
  if (j < 4) {
    scale = scales[j] & 63;
    min = scales[j + 4] & 63;
  } else {
    scale = static_cast<uint8_t>((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
    min = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// The E8M0 exponent as the halved F32 scale that kMxfp4Values are multiplied by.
inline float e8m0_to_f32_half(uint8_t e) {
  const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace sparkd::quant
