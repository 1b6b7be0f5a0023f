// Quantized blocks -> F32, the reference every quantized kernel is checked against.
//
// Bit-exact with ggml's dequantize_row_* and the gguf package's gguf.quants.dequantize (the
// tests compare against the latter): the same products in the same order, F32 throughout,
// and this file is compiled with -ffp-contract=off so `d * q + m` is never fused.
#include "engine/backend/cpu/cpu_kernels.h"
#include "engine/backend/half.h"
#include "engine/backend/quant_blocks.h"

namespace sparkd::cpu {
namespace {

using namespace sparkd::quant;

void dequantize_q4_0(const BlockQ4_0* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kBlockElements; ++b, y += kBlockElements) {
    const float d = f16_to_f32(blocks[b].d);
    for (int i = 0; i < kBlockElements; ++i) {
      y[i] = d * static_cast<float>(nibble(blocks[b].qs, i) - 8);
    }
  }
}

void dequantize_q4_1(const BlockQ4_1* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kBlockElements; ++b, y += kBlockElements) {
    const float d = f16_to_f32(blocks[b].d);
    const float m = f16_to_f32(blocks[b].m);
    for (int i = 0; i < kBlockElements; ++i) {
      y[i] = d * static_cast<float>(nibble(blocks[b].qs, i)) + m;
    }
  }
}

void dequantize_q5_0(const BlockQ5_0* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kBlockElements; ++b, y += kBlockElements) {
    const float d = f16_to_f32(blocks[b].d);
    for (int i = 0; i < kBlockElements; ++i) {
      const int q = nibble(blocks[b].qs, i) | (fifth_bit(blocks[b].qh, i) << 4);
      y[i] = d * static_cast<float>(q - 16);
    }
  }
}

void dequantize_q5_1(const BlockQ5_1* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kBlockElements; ++b, y += kBlockElements) {
    const float d = f16_to_f32(blocks[b].d);
    const float m = f16_to_f32(blocks[b].m);
    for (int i = 0; i < kBlockElements; ++i) {
      const int q = nibble(blocks[b].qs, i) | (fifth_bit(blocks[b].qh, i) << 4);
      y[i] = d * static_cast<float>(q) + m;
    }
  }
}

void dequantize_q8_0(const BlockQ8_0* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kBlockElements; ++b, y += kBlockElements) {
    const float d = f16_to_f32(blocks[b].d);
    for (int i = 0; i < kBlockElements; ++i) y[i] = static_cast<float>(blocks[b].qs[i]) * d;
  }
}

void dequantize_mxfp4(const BlockMXFP4* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kBlockElements; ++b, y += kBlockElements) {
    const float d = e8m0_to_f32_half(blocks[b].e);
    for (int i = 0; i < kBlockElements; ++i) {
      y[i] = d * static_cast<float>(kMxfp4Values[nibble(blocks[b].qs, i)]);
    }
  }
}

// The K-quants' value order: a super-block of 256 is two halves of 128; within a half, the
// 2-bit types (Q2_K, Q3_K) take 32 bytes of qs and read them four times (shifts 0, 2, 4, 6),
// the 4-bit types take 32 bytes twice (low, then high nibble) per 64 values.

void dequantize_q2_k(const BlockQ2_K* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kSuperBlockElements; ++b) {
    const BlockQ2_K& block = blocks[b];
    const float d = f16_to_f32(block.d);
    const float dmin = f16_to_f32(block.dmin);
    for (int e = 0; e < kSuperBlockElements; ++e) {
      const int half = e / 128, shift = 2 * ((e % 128) / 32), l = e % 32;
      const uint8_t scale = block.scales[e / 16];
      const float dl = d * static_cast<float>(scale & 0xF);
      const float ml = dmin * static_cast<float>(scale >> 4);
      const int q = (block.qs[half * 32 + l] >> shift) & 3;
      *y++ = dl * static_cast<float>(q) - ml;
    }
  }
}

void dequantize_q3_k(const BlockQ3_K* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kSuperBlockElements; ++b) {
    const BlockQ3_K& block = blocks[b];
    const float d = f16_to_f32(block.d);
    int scales[16];
    q3_k_scales(block.scales, scales);
    for (int e = 0; e < kSuperBlockElements; ++e) {
      const int half = e / 128, shift = 2 * ((e % 128) / 32), l = e % 32;
      const int low = (block.qs[half * 32 + l] >> shift) & 3;
      // The high bit set means no offset; clear means -4.
      const int high_clear = ((block.hmask[l] >> (e / 32)) & 1) ^ 1;
      const float dl = d * static_cast<float>(scales[e / 16]);
      *y++ = dl * static_cast<float>(low - (high_clear << 2));
    }
  }
}

void dequantize_q4_k(const BlockQ4_K* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kSuperBlockElements; ++b) {
    const BlockQ4_K& block = blocks[b];
    const float d = f16_to_f32(block.d);
    const float dmin = f16_to_f32(block.dmin);
    for (int j = 0; j < 8; ++j) {  // sub-blocks of 32
      uint8_t scale, min;
      k_scale_min(block.scales, j, scale, min);
      const float dl = d * static_cast<float>(scale);
      const float ml = dmin * static_cast<float>(min);
      const uint8_t* qs = block.qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) *y++ = dl * static_cast<float>((qs[l] >> shift) & 0xF) - ml;
    }
  }
}

void dequantize_q5_k(const BlockQ5_K* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kSuperBlockElements; ++b) {
    const BlockQ5_K& block = blocks[b];
    const float d = f16_to_f32(block.d);
    const float dmin = f16_to_f32(block.dmin);
    for (int j = 0; j < 8; ++j) {
      uint8_t scale, min;
      k_scale_min(block.scales, j, scale, min);
      const float dl = d * static_cast<float>(scale);
      const float ml = dmin * static_cast<float>(min);
      const uint8_t* qs = block.qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        const int q = ((qs[l] >> shift) & 0xF) | (((block.qh[l] >> j) & 1) << 4);
        *y++ = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

void dequantize_q6_k(const BlockQ6_K* blocks, int64_t count, float* y) {
  for (int64_t b = 0; b < count / kSuperBlockElements; ++b) {
    const BlockQ6_K& block = blocks[b];
    const float d = f16_to_f32(block.d);
    for (int e = 0; e < kSuperBlockElements; ++e) {
      const int half = e / 128, r = e % 128;
      const int low = (block.ql[half * 64 + r % 64] >> (4 * (r / 64))) & 0xF;
      const int high = (block.qh[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
      const float dl = d * static_cast<float>(block.scales[e / 16]);
      *y++ = dl * static_cast<float>((low | (high << 4)) - 32);
    }
  }
}

}  // namespace

void dequantize(const void* blocks, DType dtype, int64_t count, float* dst) {
  switch (dtype) {
    case DType::kQ4_0:
      return dequantize_q4_0(static_cast<const BlockQ4_0*>(blocks), count, dst);
    case DType::kQ4_1:
      return dequantize_q4_1(static_cast<const BlockQ4_1*>(blocks), count, dst);
    case DType::kQ5_0:
      return dequantize_q5_0(static_cast<const BlockQ5_0*>(blocks), count, dst);
    case DType::kQ5_1:
      return dequantize_q5_1(static_cast<const BlockQ5_1*>(blocks), count, dst);
    case DType::kQ8_0:
      return dequantize_q8_0(static_cast<const BlockQ8_0*>(blocks), count, dst);
    case DType::kQ2_K:
      return dequantize_q2_k(static_cast<const BlockQ2_K*>(blocks), count, dst);
    case DType::kQ3_K:
      return dequantize_q3_k(static_cast<const BlockQ3_K*>(blocks), count, dst);
    case DType::kQ4_K:
      return dequantize_q4_k(static_cast<const BlockQ4_K*>(blocks), count, dst);
    case DType::kQ5_K:
      return dequantize_q5_k(static_cast<const BlockQ5_K*>(blocks), count, dst);
    case DType::kQ6_K:
      return dequantize_q6_k(static_cast<const BlockQ6_K*>(blocks), count, dst);
    case DType::kMXFP4:
      return dequantize_mxfp4(static_cast<const BlockMXFP4*>(blocks), count, dst);
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      break;
  }
  fail("dequantize", std::string(dtype_name(dtype)) + " is not a quantized type");
}

}  // namespace sparkd::cpu
