#include "engine/backend/quantize.h"

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "engine/backend/half.h"
#include "engine/backend/quant_blocks.h"

namespace sparkd::quant {

namespace {

constexpr std::pair<const char*, DType> kTargets[] = {
    {"q4_0", DType::kQ4_0}, {"q4_1", DType::kQ4_1}, {"q5_0", DType::kQ5_0}, {"q5_1", DType::kQ5_1},
    {"q8_0", DType::kQ8_0}, {"q4_k", DType::kQ4_K}, {"q5_k", DType::kQ5_K}, {"q6_k", DType::kQ6_K},
};

// ---- ggml's reference quantizers ---------------------------------------------------------

// The value of largest magnitude (the first, on ties) and that magnitude.
void signed_max(const float* x, int n, float& max, float& amax) {
  max = 0.0f;
  amax = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
}

void min_max(const float* x, int n, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
}

void quantize_q4_0(const float* x, int64_t blocks, BlockQ4_0* y) {
  for (int64_t b = 0; b < blocks; ++b, x += kBlockElements) {
    float max, amax;
    signed_max(x, kBlockElements, max, amax);
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < 16; ++j) {
      const int low = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int high = std::min(15, static_cast<int>(static_cast<int8_t>(x[16 + j] * id + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(low | (high << 4));
    }
  }
}

void quantize_q4_1(const float* x, int64_t blocks, BlockQ4_1* y) {
  for (int64_t b = 0; b < blocks; ++b, x += kBlockElements) {
    float min, max;
    min_max(x, kBlockElements, min, max);
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    y[b].m = f32_to_f16(min);
    for (int j = 0; j < 16; ++j) {
      const int low = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f)));
      const int high =
          std::min(15, static_cast<int>(static_cast<int8_t>((x[16 + j] - min) * id + 0.5f)));
      y[b].qs[j] = static_cast<uint8_t>(low | (high << 4));
    }
  }
}

// Q5 codes: low nibbles as Q4's, fifth bits little-endian in qh.
void pack_five_bits(const int* q, uint8_t qs[16], uint8_t qh[4]) {
  uint32_t high = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[16 + j] & 0xF) << 4));
    high |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    high |= static_cast<uint32_t>((q[16 + j] >> 4) & 1) << (j + 16);
  }
  std::memcpy(qh, &high, 4);
}

void quantize_q5_0(const float* x, int64_t blocks, BlockQ5_0* y) {
  for (int64_t b = 0; b < blocks; ++b, x += kBlockElements) {
    float max, amax;
    signed_max(x, kBlockElements, max, amax);
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    int q[32];
    for (int j = 0; j < 32; ++j) {
      q[j] = std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f)));
    }
    pack_five_bits(q, y[b].qs, y[b].qh);
  }
}

void quantize_q5_1(const float* x, int64_t blocks, BlockQ5_1* y) {
  for (int64_t b = 0; b < blocks; ++b, x += kBlockElements) {
    float min, max;
    min_max(x, kBlockElements, min, max);
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    y[b].m = f32_to_f16(min);
    int q[32];
    for (int j = 0; j < 32; ++j) {
      q[j] = std::min(31, static_cast<int>(static_cast<uint8_t>((x[j] - min) * id + 0.5f)));
    }
    pack_five_bits(q, y[b].qs, y[b].qh);
  }
}

void quantize_q8_0(const float* x, int64_t blocks, BlockQ8_0* y) {
  for (int64_t b = 0; b < blocks; ++b, x += kBlockElements) {
    float amax = 0.0f;
    for (int j = 0; j < kBlockElements; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < kBlockElements; ++j) {
      y[b].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    }
  }
}

// ---- K-quants: round to nearest with min-max sub-block scales -----------------------------

int clamp_round(float value, int low, int high) {
  return std::clamp(static_cast<int>(std::lround(value)), low, high);
}

// Q4_K/Q5_K: 8 sub-blocks of 32 values, each value ≈ d·sc·q - dmin·m with 6-bit sc, m and
// q in [0, levels]. Writes the packed scales, d, dmin and the codes in value order.
void quantize_k_with_min(const float* x, int levels, uint8_t scales[12], uint16_t& d_out,
                         uint16_t& dmin_out, int codes[kSuperBlockElements]) {
  float scale[8], offset[8];  // per sub-block: step and -min (>= 0)
  for (int j = 0; j < 8; ++j) {
    float min, max;
    min_max(x + 32 * j, 32, min, max);
    min = std::min(min, 0.0f);  // the min term only subtracts
    scale[j] = (max - min) / static_cast<float>(levels);
    offset[j] = -min;
  }
  const float max_scale = *std::max_element(scale, scale + 8);
  const float max_offset = *std::max_element(offset, offset + 8);
  d_out = f32_to_f16(max_scale / 63);
  dmin_out = f32_to_f16(max_offset / 63);
  const float d = f16_to_f32(d_out), dmin = f16_to_f32(dmin_out);
  int sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = d > 0 ? clamp_round(scale[j] / d, 0, 63) : 0;
    m[j] = dmin > 0 ? clamp_round(offset[j] / dmin, 0, 63) : 0;
    const float step = d * static_cast<float>(sc[j]);
    const float shift = dmin * static_cast<float>(m[j]);
    for (int l = 0; l < 32; ++l) {
      codes[32 * j + l] = step > 0 ? clamp_round((x[32 * j + l] + shift) / step, 0, levels) : 0;
    }
  }
  // The inverse of k_scale_min: sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scales) and
  // 4-7 (mins); 4-7 in the nibbles of bytes 8-11, their top 2 bits in bytes 0-7's top bits.
  for (int j = 0; j < 4; ++j) {
    scales[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    scales[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

void quantize_q4_k(const float* x, int64_t blocks, BlockQ4_K* y) {
  for (int64_t b = 0; b < blocks; ++b, x += kSuperBlockElements) {
    int codes[kSuperBlockElements];
    quantize_k_with_min(x, 15, y[b].scales, y[b].d, y[b].dmin, codes);
    for (int g = 0; g < 4; ++g) {
      for (int l = 0; l < 32; ++l) {
        y[b].qs[32 * g + l] =
            static_cast<uint8_t>(codes[64 * g + l] | (codes[64 * g + 32 + l] << 4));
      }
    }
  }
}

void quantize_q5_k(const float* x, int64_t blocks, BlockQ5_K* y) {
  for (int64_t b = 0; b < blocks; ++b, x += kSuperBlockElements) {
    int codes[kSuperBlockElements];
    quantize_k_with_min(x, 31, y[b].scales, y[b].d, y[b].dmin, codes);
    std::memset(y[b].qh, 0, sizeof y[b].qh);
    for (int g = 0; g < 4; ++g) {
      for (int l = 0; l < 32; ++l) {
        const int low = codes[64 * g + l], high = codes[64 * g + 32 + l];
        y[b].qs[32 * g + l] = static_cast<uint8_t>((low & 0xF) | ((high & 0xF) << 4));
        y[b].qh[l] = static_cast<uint8_t>(y[b].qh[l] | (((low >> 4) & 1) << (2 * g)) |
                                          (((high >> 4) & 1) << (2 * g + 1)));
      }
    }
  }
}

// Q6_K: 16 sub-blocks of 16 values ≈ d·sc·(q - 32), sc a signed byte, q in [0, 63].
void quantize_q6_k(const float* x, int64_t blocks, BlockQ6_K* y) {
  for (int64_t b = 0; b < blocks; ++b, x += kSuperBlockElements) {
    float scale[16];
    for (int j = 0; j < 16; ++j) {
      float amax = 0.0f;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * j + l]));
      scale[j] = amax / 31;
    }
    y[b].d = f32_to_f16(*std::max_element(scale, scale + 16) / 127);
    const float d = f16_to_f32(y[b].d);
    int codes[kSuperBlockElements];
    for (int j = 0; j < 16; ++j) {
      const int sc = d > 0 ? clamp_round(scale[j] / d, -128, 127) : 0;
      y[b].scales[j] = static_cast<int8_t>(sc);
      const float step = d * static_cast<float>(sc);
      for (int l = 0; l < 16; ++l) {
        codes[16 * j + l] = step > 0 ? clamp_round(x[16 * j + l] / step, -32, 31) + 32 : 32;
      }
    }
    // The inverse of dequantize_q6_k's order: per half, ql's low nibbles hold values 0-63,
    // high nibbles 64-127; qh's 2-bit fields at shifts 0, 2, 4, 6 hold 32 values each.
    std::memset(y[b].ql, 0, sizeof y[b].ql);
    std::memset(y[b].qh, 0, sizeof y[b].qh);
    for (int e = 0; e < kSuperBlockElements; ++e) {
      const int half = e / 128, r = e % 128;
      const int q = codes[e];
      y[b].ql[half * 64 + r % 64] =
          static_cast<uint8_t>(y[b].ql[half * 64 + r % 64] | ((q & 0xF) << (4 * (r / 64))));
      y[b].qh[half * 32 + r % 32] =
          static_cast<uint8_t>(y[b].qh[half * 32 + r % 32] | ((q >> 4) << (2 * (r / 32))));
    }
  }
}

}  // namespace

std::optional<DType> quantize_target(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [target, dtype] : kTargets) {
    if (lower == target) return dtype;
  }
  return std::nullopt;
}

std::string quantize_target_names() {
  std::string names;
  for (const auto& [target, dtype] : kTargets) {
    names += (names.empty() ? "" : ", ") + std::string(target);
  }
  return names;
}

void quantize_row(const float* src, int64_t count, DType dtype, void* dst) {
  const int64_t blocks = count / dtype_traits(dtype).block_elements;
  switch (dtype) {
    case DType::kQ4_0:
      return quantize_q4_0(src, blocks, static_cast<BlockQ4_0*>(dst));
    case DType::kQ4_1:
      return quantize_q4_1(src, blocks, static_cast<BlockQ4_1*>(dst));
    case DType::kQ5_0:
      return quantize_q5_0(src, blocks, static_cast<BlockQ5_0*>(dst));
    case DType::kQ5_1:
      return quantize_q5_1(src, blocks, static_cast<BlockQ5_1*>(dst));
    case DType::kQ8_0:
      return quantize_q8_0(src, blocks, static_cast<BlockQ8_0*>(dst));
    case DType::kQ4_K:
      return quantize_q4_k(src, blocks, static_cast<BlockQ4_K*>(dst));
    case DType::kQ5_K:
      return quantize_q5_k(src, blocks, static_cast<BlockQ5_K*>(dst));
    case DType::kQ6_K:
      return quantize_q6_k(src, blocks, static_cast<BlockQ6_K*>(dst));
    default:
      break;
  }
  std::abort();  // quantize_target() never names another type
}

}  // namespace sparkd::quant
