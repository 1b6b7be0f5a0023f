// y = x·Wᵀ + b for block-quantized W, without dequantizing W.
//
// As ggml does: each row of x is quantized per block to 8-bit integers with a scale (Q8_0,
// Q8_1 or Q8_K: the weight type's "vec_dot type"), and each output is a sum over blocks of
// integer dot products times the two scales. A weight byte is read once per step and turned
// into integers in registers; the arithmetic is 8-bit multiplies into 16- and 32-bit sums.
//
// Work is split over W's rows. Each task takes kRowsPerTask rows of W (a few KiB: they stay
// in L1) and dots them with every quantized row of x (m rows: L2-resident for prefill), so
// decode streams W once and prefill reuses each W tile across all of x.
//
// Every type has a portable vec_dot (the reference) and AVX2 and aarch64 dot-product (sdot)
// ones, checked against the dequantized product (on aarch64 under qemu:
// tools/check_aarch64.sh).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "engine/backend/cpu/cpu_kernels.h"
#include "engine/backend/half.h"
#include "engine/backend/quant_blocks.h"

namespace sparkd::cpu {

using namespace sparkd::quant;

namespace {

constexpr int64_t kRowsPerTask = 16;

// ---- activation quantizers (ggml's quantize_row_q8_0 / q8_1 / q8_K) ---------------------

void quantize_q8_0(const float* x, int64_t k, BlockQ8_0* y) {
  for (int64_t b = 0; b < k / kBlockElements; ++b, x += kBlockElements) {
    float amax = 0.0f;
    for (int i = 0; i < kBlockElements; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int i = 0; i < kBlockElements; ++i) {
      y[b].qs[i] = static_cast<int8_t>(std::nearbyint(x[i] * id));
    }
  }
}

void quantize_q8_1(const float* x, int64_t k, BlockQ8_1* y) {
  for (int64_t b = 0; b < k / kBlockElements; ++b, x += kBlockElements) {
    float amax = 0.0f;
    for (int i = 0; i < kBlockElements; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int i = 0; i < kBlockElements; ++i) {
      y[b].qs[i] = static_cast<int8_t>(std::nearbyint(x[i] * id));
      sum += y[b].qs[i];
    }
    y[b].d = f32_to_f16(d);
    y[b].s = f32_to_f16(d * static_cast<float>(sum));
  }
}

// ggml's nearest_int: round half to even through the float's mantissa.
inline int nearest_int(float value) {
  const float shifted = value + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

}  // namespace

namespace {

// ggml's quantize_row_q8_K: the scale from the first x[i] of the largest |x[i]|, so the
// block's extreme value quantizes to exactly -127.
void quantize_q8_k(const float* x, int64_t k, BlockQ8_K* y) {
  for (int64_t b = 0; b < k / kSuperBlockElements; ++b, x += kSuperBlockElements) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < kSuperBlockElements; ++i) {
      if (std::fabs(x[i]) > amax) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    }
    BlockQ8_K& out = y[b];
    if (amax == 0.0f) {
      std::memset(&out, 0, sizeof out);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int i = 0; i < kSuperBlockElements; ++i) {
      out.qs[i] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[i])));
    }
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += out.qs[16 * j + i];
      out.bsums[j] = static_cast<int16_t>(sum);
    }
    out.d = 1.0f / iscale;
  }
}

}  // namespace

namespace {

// ---- portable dot products: one weight row with one quantized activation row -----------

float dot_q4_0(const BlockQ4_0* w, const BlockQ8_0* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int sumi = 0;
    for (int i = 0; i < 32; ++i) sumi += (nibble(w[b].qs, i) - 8) * a[b].qs[i];
    sum += static_cast<float>(sumi) * f16_to_f32(w[b].d) * f16_to_f32(a[b].d);
  }
  return sum;
}

float dot_q4_1(const BlockQ4_1* w, const BlockQ8_1* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int sumi = 0;
    for (int i = 0; i < 32; ++i) sumi += nibble(w[b].qs, i) * a[b].qs[i];
    sum += f16_to_f32(w[b].d) * f16_to_f32(a[b].d) * static_cast<float>(sumi) +
           f16_to_f32(w[b].m) * f16_to_f32(a[b].s);
  }
  return sum;
}

float dot_q5_0(const BlockQ5_0* w, const BlockQ8_0* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int sumi = 0;
    for (int i = 0; i < 32; ++i) {
      sumi += ((nibble(w[b].qs, i) | (fifth_bit(w[b].qh, i) << 4)) - 16) * a[b].qs[i];
    }
    sum += static_cast<float>(sumi) * f16_to_f32(w[b].d) * f16_to_f32(a[b].d);
  }
  return sum;
}

float dot_q5_1(const BlockQ5_1* w, const BlockQ8_1* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int sumi = 0;
    for (int i = 0; i < 32; ++i) {
      sumi += (nibble(w[b].qs, i) | (fifth_bit(w[b].qh, i) << 4)) * a[b].qs[i];
    }
    sum += f16_to_f32(w[b].d) * f16_to_f32(a[b].d) * static_cast<float>(sumi) +
           f16_to_f32(w[b].m) * f16_to_f32(a[b].s);
  }
  return sum;
}

float dot_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int sumi = 0;
    for (int i = 0; i < 32; ++i) sumi += w[b].qs[i] * a[b].qs[i];
    sum += static_cast<float>(sumi) * f16_to_f32(w[b].d) * f16_to_f32(a[b].d);
  }
  return sum;
}

float dot_mxfp4(const BlockMXFP4* w, const BlockQ8_0* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int sumi = 0;
    for (int i = 0; i < 32; ++i) sumi += kMxfp4Values[nibble(w[b].qs, i)] * a[b].qs[i];
    sum += e8m0_to_f32_half(w[b].e) * f16_to_f32(a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

float dot_q2_k(const BlockQ2_K* w, const BlockQ8_K* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int sumi = 0, mins = 0;
    for (int j = 0; j < 16; ++j) mins += (w[b].scales[j] >> 4) * a[b].bsums[j];
    for (int e = 0; e < kSuperBlockElements; ++e) {
      const int q = (w[b].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
      sumi += (w[b].scales[e / 16] & 0xF) * q * a[b].qs[e];
    }
    sum += a[b].d * (f16_to_f32(w[b].d) * static_cast<float>(sumi) -
                     f16_to_f32(w[b].dmin) * static_cast<float>(mins));
  }
  return sum;
}

float dot_q3_k(const BlockQ3_K* w, const BlockQ8_K* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    const BlockQ3_K& block = w[b];
    int scales[16];
    q3_k_scales(block.scales, scales);
    int sumi = 0;
    for (int e = 0; e < kSuperBlockElements; ++e) {
      const int l = e % 32;
      const int low = (block.qs[(e / 128) * 32 + l] >> (2 * ((e % 128) / 32))) & 3;
      const int high_clear = ((block.hmask[l] >> (e / 32)) & 1) ^ 1;
      sumi += scales[e / 16] * (low - (high_clear << 2)) * a[b].qs[e];
    }
    sum += a[b].d * f16_to_f32(block.d) * static_cast<float>(sumi);
  }
  return sum;
}

// Q4_K and Q5_K (whose values also take a fifth bit: bit j of qh[l] for sub-block j).
template <typename Block>
float dot_k4_k5(const Block* w, const BlockQ8_K* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int sumi = 0, mins = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t scale, min;
      k_scale_min(w[b].scales, j, scale, min);
      mins += min * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
      const uint8_t* qs = w[b].qs + 32 * (j / 2);
      int part = 0;
      for (int l = 0; l < 32; ++l) {
        int q = (qs[l] >> (4 * (j % 2))) & 0xF;
        if constexpr (std::is_same_v<Block, BlockQ5_K>) q |= ((w[b].qh[l] >> j) & 1) << 4;
        part += q * a[b].qs[32 * j + l];
      }
      sumi += scale * part;
    }
    sum += a[b].d * (f16_to_f32(w[b].d) * static_cast<float>(sumi) -
                     f16_to_f32(w[b].dmin) * static_cast<float>(mins));
  }
  return sum;
}

float dot_q4_k(const BlockQ4_K* w, const BlockQ8_K* a, int64_t blocks) {
  return dot_k4_k5(w, a, blocks);
}

float dot_q5_k(const BlockQ5_K* w, const BlockQ8_K* a, int64_t blocks) {
  return dot_k4_k5(w, a, blocks);
}

float dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    const BlockQ6_K& block = w[b];
    int sumi = 0;
    for (int e = 0; e < kSuperBlockElements; ++e) {
      const int half = e / 128, r = e % 128;
      const int low = (block.ql[half * 64 + r % 64] >> (4 * (r / 64))) & 0xF;
      const int high = (block.qh[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
      sumi += block.scales[e / 16] * ((low | (high << 4)) - 32) * a[b].qs[e];
    }
    sum += a[b].d * f16_to_f32(block.d) * static_cast<float>(sumi);
  }
  return sum;
}

// ---- what the SIMD dot products share -------------------------------------------------
// Q4_K/Q5_K's 12 packed bytes as four u32: bytes 0-7 the 8 sub-block scales, bytes 8-15 the
// 8 mins (ggml's kmask shuffle: no per-sub-block branching).
inline void k_scales_mins(const uint8_t packed[12], uint32_t out[4]) {
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  std::memcpy(out, packed, 12);
  out[3] = ((out[2] >> 4) & kLow4) | (((out[1] >> 6) & kLow2) << 4);
  const uint32_t mins_low = out[1] & kLow6;
  out[1] = (out[2] & kLow4) | (((out[0] >> 6) & kLow2) << 4);
  out[2] = mins_low;
  out[0] &= kLow6;
}

#if SPARKD_CPU_X86
// ---- x86 AVX2 dot products (namespace simd: one name per kernel on either CPU) ----------
namespace simd {

// F16 -> F32 in one instruction (F16C): the scalar conversion's branches cost more than a
// block's whole integer dot product.
SPARKD_CPU_AVX2 inline float f16c(uint16_t h) {
  return _cvtsh_ss(h);
}

// 16 bytes of packed nibbles -> 32 bytes: the 16 low nibbles, then the 16 high ones (the
// 32-value blocks' value order).
SPARKD_CPU_AVX2 inline __m256i nibbles_32(const uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Σ over pairs of u8 x i8 products into 8 i32 sums (each pair sum fits in i16: |q| <= 63).
SPARKD_CPU_AVX2 inline __m256i dot_u8_i8(__m256i unsigned_bytes, __m256i signed_bytes) {
  const __m256i pairs = _mm256_maddubs_epi16(unsigned_bytes, signed_bytes);
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

// The same for two signed vectors: |a| times b with a's sign moved onto b.
SPARKD_CPU_AVX2 inline __m256i dot_i8_i8(__m256i a, __m256i b) {
  return dot_u8_i8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

// The 32-value types against Q8_0 activations: Σ over blocks of scale · Σ code · a, codes
// signed bytes from kCodes, the block's scale from kScale.
template <typename Block, __m256i (*kCodes)(const Block&), float (*kScale)(const Block&)>
SPARKD_CPU_AVX2 float dot_signed_32(const Block* w, const BlockQ8_0* a, int64_t blocks) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const __m256i q8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const __m256 d = _mm256_set1_ps(kScale(w[b]) * f16c(a[b].d));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_i8(kCodes(w[b]), q8)), acc);
  }
  return horizontal_sum(acc);
}

// Q4_1 and Q5_1 against Q8_1 activations: unsigned codes from kCodes, plus the block's min
// times the activations' sum.
template <typename Block, __m256i (*kCodes)(const Block&)>
SPARKD_CPU_AVX2 float dot_offset_32(const Block* w, const BlockQ8_1* a, int64_t blocks) {
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    const __m256i q8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const __m256 d = _mm256_set1_ps(f16c(w[b].d) * f16c(a[b].d));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8_i8(kCodes(w[b]), q8)), acc);
    mins += f16c(w[b].m) * f16c(a[b].s);
  }
  return horizontal_sum(acc) + mins;
}

template <typename Block>
SPARKD_CPU_AVX2 float f16_scale(const Block& block) {
  return f16c(block.d);
}

// The 32 bits of a block's qh as 32 bytes: 0xFF where the bit is set (value i's bit i).
SPARKD_CPU_AVX2 inline __m256i bits_to_bytes(const uint8_t qh[4]) {
  uint32_t bits;
  std::memcpy(&bits, qh, sizeof bits);
  // Byte i takes qh's byte i / 8, then every bit but bit i % 8 is set: all ones iff it was.
  const __m256i spread =
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                          _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                             0x0202020202020202, 0x0303030303030303));
  const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  return _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1));
}

SPARKD_CPU_AVX2 __m256i q4_0_codes(const BlockQ4_0& block) {
  return _mm256_sub_epi8(nibbles_32(block.qs), _mm256_set1_epi8(8));
}

SPARKD_CPU_AVX2 __m256i q5_0_codes(const BlockQ5_0& block) {
  // code - 16: the nibble, with 0xF0 above it where the fifth bit is clear.
  return _mm256_or_si256(
      nibbles_32(block.qs),
      _mm256_andnot_si256(bits_to_bytes(block.qh), _mm256_set1_epi8(static_cast<char>(0xF0))));
}

SPARKD_CPU_AVX2 __m256i q8_0_codes(const BlockQ8_0& block) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qs));
}

SPARKD_CPU_AVX2 __m256i mxfp4_codes(const BlockMXFP4& block) {
  // E2M1 codes to their doubled values (kMxfp4Values), a byte table lookup per nibble.
  const __m256i table =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kMxfp4Values)));
  return _mm256_shuffle_epi8(table, nibbles_32(block.qs));
}

SPARKD_CPU_AVX2 float mxfp4_scale(const BlockMXFP4& block) {
  return e8m0_to_f32_half(block.e);
}

SPARKD_CPU_AVX2 __m256i q4_1_codes(const BlockQ4_1& block) {
  return nibbles_32(block.qs);
}

SPARKD_CPU_AVX2 __m256i q5_1_codes(const BlockQ5_1& block) {
  return _mm256_or_si256(nibbles_32(block.qs),
                         _mm256_and_si256(bits_to_bytes(block.qh), _mm256_set1_epi8(0x10)));
}

// The 16 bsums of a Q8_K block summed in pairs: 8 sums of 32 activations, as i16.
SPARKD_CPU_AVX2 inline __m128i bsums_by_32(const BlockQ8_K& a) {
  const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums));
  return _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
}

// Q4_K and Q5_K (kFifthBit: each value's fifth bit is bit j of qh[l] for sub-block j).
template <typename Block, bool kFifthBit>
SPARKD_CPU_AVX2 float dot_k4_k5(const Block* w, const BlockQ8_K* a, int64_t blocks) {
  __m256 acc = _mm256_setzero_ps();
  __m128 acc_mins = _mm_setzero_ps();
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const __m256i one = _mm256_set1_epi8(1);
  // Byte pairs that spread i16 lane j of a 128-bit lane across it: a sub-block's scale for
  // all 16 products of a maddubs.
  alignas(32) static constexpr uint8_t kSpreadScale[8][32] = {
#define SPARKD_SPREAD(j)                                                   \
  {2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, \
   2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, \
   2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, \
   2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1}
      SPARKD_SPREAD(0), SPARKD_SPREAD(1), SPARKD_SPREAD(2), SPARKD_SPREAD(3),
      SPARKD_SPREAD(4), SPARKD_SPREAD(5), SPARKD_SPREAD(6), SPARKD_SPREAD(7),
#undef SPARKD_SPREAD
  };
  for (int64_t b = 0; b < blocks; ++b) {
    uint32_t packed[4];
    k_scales_mins(w[b].scales, packed);
    // The 8 scales (low half) and 8 mins (high half) as i16.
    const __m256i scales_mins =
        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed)));
    const __m128i scales128 = _mm256_castsi256_si128(scales_mins);
    const __m256i scales = _mm256_set_m128i(scales128, scales128);
    // Σ_j min_j · Σ(activations of sub-block j), from the bsums.
    const __m128i min_products =
        _mm_madd_epi16(_mm256_extracti128_si256(scales_mins, 1), bsums_by_32(a[b]));
    acc_mins = _mm_fmadd_ps(_mm_set1_ps(a[b].d * f16c(w[b].dmin)), _mm_cvtepi32_ps(min_products),
                            acc_mins);
    __m256i high_bits = _mm256_setzero_si256();
    if constexpr (kFifthBit) {
      high_bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qh));
    }
    __m256i sumi = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {  // 64 values: sub-blocks 2g (low nibbles) and 2g + 1
      const __m256i packed_q =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * g));
      __m256i q_low = _mm256_and_si256(packed_q, low_mask);
      __m256i q_high = _mm256_and_si256(_mm256_srli_epi16(packed_q, 4), low_mask);
      if constexpr (kFifthBit) {
        q_low = _mm256_or_si256(
            q_low,
            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high_bits, 2 * g), one), 4));
        q_high = _mm256_or_si256(
            q_high,
            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high_bits, 2 * g + 1), one), 4));
      }
      const __m256i a_low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * g));
      const __m256i a_high =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * g + 32));
      const __m256i scale_low = _mm256_shuffle_epi8(
          scales, _mm256_load_si256(reinterpret_cast<const __m256i*>(kSpreadScale[2 * g])));
      const __m256i scale_high = _mm256_shuffle_epi8(
          scales, _mm256_load_si256(reinterpret_cast<const __m256i*>(kSpreadScale[2 * g + 1])));
      const __m256i p_low = _mm256_madd_epi16(_mm256_maddubs_epi16(q_low, a_low), scale_low);
      const __m256i p_high = _mm256_madd_epi16(_mm256_maddubs_epi16(q_high, a_high), scale_high);
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_low, p_high));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * f16c(w[b].d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  const __m128 mins4 = _mm_add_ps(acc_mins, _mm_movehl_ps(acc_mins, acc_mins));
  const float mins_total = _mm_cvtss_f32(_mm_add_ss(mins4, _mm_shuffle_ps(mins4, mins4, 1)));
  return horizontal_sum(acc) - mins_total;
}

SPARKD_CPU_AVX2 float dot_q4_k(const BlockQ4_K* w, const BlockQ8_K* a, int64_t blocks) {
  return dot_k4_k5<BlockQ4_K, false>(w, a, blocks);
}

SPARKD_CPU_AVX2 float dot_q5_k(const BlockQ5_K* w, const BlockQ8_K* a, int64_t blocks) {
  return dot_k4_k5<BlockQ5_K, true>(w, a, blocks);
}

// Σ over 32 values of code · activation, weighted by the scales of their two 16-value
// sub-blocks: codes unsigned (at most 63), scales16 the block's 16 scales as i16, first the
// value index of the 32 (a multiple of 32). 8 i32 partial sums.
SPARKD_CPU_AVX2 inline __m256i scaled_sum_32(__m256i codes, const int8_t* activations,
                                             __m256i scales16, int first) {
  const __m256i spread_scale_pair =
      _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
                       2, 3, 2, 3, 2, 3);
  const __m256i act = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(activations + first));
  // Scales first/16 (values 0-15: the low 128-bit lane) and first/16 + 1 (the high lane): the
  // i32 holding both, broadcast, then each lane's half spread.
  const __m256i both = _mm256_permutevar8x32_epi32(scales16, _mm256_set1_epi32(first / 32));
  const __m256i scale = _mm256_shuffle_epi8(both, spread_scale_pair);
  return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, act), scale);
}

SPARKD_CPU_AVX2 inline int32_t horizontal_sum_i32(__m256i v) {
  __m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  x = _mm_add_epi32(x, _mm_unpackhi_epi64(x, x));
  x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 1));
  return _mm_cvtsi128_si32(x);
}

// Σ_j scale_j · bsum_j over a block's 16 sub-blocks, as 8 i32 partial sums.
SPARKD_CPU_AVX2 inline __m256i scaled_bsums(__m256i scales16, const BlockQ8_K& a) {
  return _mm256_madd_epi16(scales16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums)));
}

SPARKD_CPU_AVX2 float dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* a, int64_t blocks) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const __m256i two_bits = _mm256_set1_epi8(0x03);
  for (int64_t b = 0; b < blocks; ++b) {
    const BlockQ6_K& block = w[b];
    // Σ (q - 32) · a = Σ q · a - 32 Σ_j scale_j · bsum_j.
    const __m256i scales16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block.scales)));
    __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(),
                                    _mm256_slli_epi32(scaled_bsums(scales16, a[b]), 5));
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = block.ql + 64 * half;
      const __m256i q4a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i q4b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qh + 32 * half));
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(q4a, low_mask),
                          _mm256_slli_epi16(_mm256_and_si256(qh, two_bits), 4)),
          _mm256_or_si256(
              _mm256_and_si256(q4b, low_mask),
              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), two_bits), 4)),
          _mm256_or_si256(
              _mm256_and_si256(_mm256_srli_epi16(q4a, 4), low_mask),
              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), two_bits), 4)),
          _mm256_or_si256(
              _mm256_and_si256(_mm256_srli_epi16(q4b, 4), low_mask),
              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), two_bits), 4)),
      };
      for (int s = 0; s < 4; ++s) {
        sumi = _mm256_add_epi32(sumi, scaled_sum_32(q[s], a[b].qs, scales16, 128 * half + 32 * s));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * f16c(block.d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return horizontal_sum(acc);
}

// Q2_K and Q3_K share a layout of 2-bit fields: value 128h + 32s + l is bits 2s, 2s + 1 of
// qs[32h + l]; Q3_K adds a third bit, bit 4h + s of hmask[l].
SPARKD_CPU_AVX2 inline __m256i two_bit_field(__m256i qs, int shift) {
  return _mm256_and_si256(_mm256_srlv_epi32(qs, _mm256_set1_epi32(2 * shift)),
                          _mm256_set1_epi8(0x03));
}

SPARKD_CPU_AVX2 float dot_q2_k(const BlockQ2_K* w, const BlockQ8_K* a, int64_t blocks) {
  __m256 acc = _mm256_setzero_ps();
  float mins_total = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    const BlockQ2_K& block = w[b];
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block.scales));
    const __m256i scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0F)));
    const __m256i mins16 =
        _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
    __m256i sumi = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qs + 32 * half));
      for (int s = 0; s < 4; ++s) {
        sumi = _mm256_add_epi32(
            sumi, scaled_sum_32(two_bit_field(qs, s), a[b].qs, scales16, 128 * half + 32 * s));
      }
    }
    const __m256i mins = scaled_bsums(mins16, a[b]);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * f16c(block.d)), _mm256_cvtepi32_ps(sumi), acc);
    mins_total += a[b].d * f16c(block.dmin) * static_cast<float>(horizontal_sum_i32(mins));
  }
  return horizontal_sum(acc) - mins_total;
}

SPARKD_CPU_AVX2 float dot_q3_k(const BlockQ3_K* w, const BlockQ8_K* a, int64_t blocks) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const BlockQ3_K& block = w[b];
    int scales[16];
    q3_k_scales(block.scales, scales);
    alignas(16) int8_t scales8[16];
    for (int j = 0; j < 16; ++j) scales8[j] = static_cast<int8_t>(scales[j]);
    const __m256i scales16 =
        _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(scales8)));
    // Codes low | third << 2 in 0..7 stand for code - 4: Σ (q - 4) · a = Σ q · a - 4 Σ scale ·
    // bsum.
    __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(),
                                    _mm256_slli_epi32(scaled_bsums(scales16, a[b]), 2));
    const __m256i hmask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.hmask));
    for (int half = 0; half < 2; ++half) {
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qs + 32 * half));
      for (int s = 0; s < 4; ++s) {
        const __m256i third = _mm256_and_si256(
            _mm256_srlv_epi32(hmask, _mm256_set1_epi32(4 * half + s)), _mm256_set1_epi8(0x01));
        const __m256i codes = _mm256_or_si256(two_bit_field(qs, s), _mm256_slli_epi16(third, 2));
        sumi = _mm256_add_epi32(sumi, scaled_sum_32(codes, a[b].qs, scales16, 128 * half + 32 * s));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * f16c(block.d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return horizontal_sum(acc);
}

// quantize_q8_k to the bit: |x| compared as bit patterns (ordered like the values, for
// non-negative floats), the first index of the largest found by a mask scan, round half to
// even by cvtps (as nearest_int's mantissa trick, for |v| <= 127).
SPARKD_CPU_AVX2 void quantize_q8_k(const float* x, int64_t k, BlockQ8_K* y) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  for (int64_t b = 0; b < k / kSuperBlockElements; ++b, x += kSuperBlockElements) {
    __m256i amax = _mm256_setzero_si256();
    for (int i = 0; i < kSuperBlockElements; i += 8) {
      const __m256i bits = _mm256_castps_si256(_mm256_loadu_ps(x + i));
      amax = _mm256_max_epu32(amax, _mm256_and_si256(bits, abs_mask));
    }
    __m128i folded = _mm_max_epu32(_mm256_castsi256_si128(amax), _mm256_extracti128_si256(amax, 1));
    folded = _mm_max_epu32(folded, _mm_shuffle_epi32(folded, 0x4E));
    folded = _mm_max_epu32(folded, _mm_shuffle_epi32(folded, 0xB1));
    const uint32_t amax_bits = static_cast<uint32_t>(_mm_cvtsi128_si32(folded));
    BlockQ8_K& out = y[b];
    if (amax_bits == 0) {
      std::memset(&out, 0, sizeof out);
      continue;
    }
    const __m256i target = _mm256_set1_epi32(static_cast<int>(amax_bits));
    int first = 0;
    for (int i = 0; i < kSuperBlockElements; i += 8) {
      const __m256i bits = _mm256_and_si256(_mm256_castps_si256(_mm256_loadu_ps(x + i)), abs_mask);
      const int hits = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, target)));
      if (hits != 0) {
        first = i + __builtin_ctz(static_cast<unsigned>(hits));
        break;
      }
    }
    const float iscale = -127.0f / x[first];
    const __m256 scale = _mm256_set1_ps(iscale);
    const __m256i limit = _mm256_set1_epi32(127);
    // Per 32 values: four i32 vectors packed to bytes (packs interleave 128-bit lanes; the
    // permute restores value order) and two 16-value sums.
    for (int i = 0; i < kSuperBlockElements; i += 32) {
      __m256i q[4];
      for (int v = 0; v < 4; ++v) {
        q[v] = _mm256_min_epi32(
            _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * v), scale)), limit);
      }
      const __m256i sums =
          _mm256_hadd_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
      const __m256i halves = _mm256_hadd_epi32(sums, sums);
      // lanes: [s01 s01' s23 s23' | ...]: Σ of q0+q1 in lanes 0 and 4, of q2+q3 in 1 and 5.
      out.bsums[i / 16] =
          static_cast<int16_t>(_mm256_extract_epi32(halves, 0) + _mm256_extract_epi32(halves, 4));
      out.bsums[i / 16 + 1] =
          static_cast<int16_t>(_mm256_extract_epi32(halves, 1) + _mm256_extract_epi32(halves, 5));
      const __m256i words = _mm256_packs_epi32(q[0], q[1]);
      const __m256i words2 = _mm256_packs_epi32(q[2], q[3]);
      const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words, words2),
                                                        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.qs + i), bytes);
    }
    out.d = 1.0f / iscale;
  }
}

}  // namespace simd
#endif  // SPARKD_CPU_X86

#if SPARKD_CPU_ARM
// ---- aarch64 dot products (Armv8.2 sdot: 4 lanes of Σ of 4 i8 × i8 products) ----------
namespace simd {
// Integer sums per block as the portable code forms them; each block's F32 scaling in one of
// 4 lanes (Q4_0/Q4_1/Q8_0) or in the portable order (K-quants).

SPARKD_CPU_DOTPROD inline int32x4_t sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
  return vdotq_s32(acc, a, b);
}

SPARKD_CPU_DOTPROD inline int8x16_t low_nibbles(uint8x16_t packed) {
  return vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0F)));
}

SPARKD_CPU_DOTPROD inline int8x16_t high_nibbles(uint8x16_t packed) {
  return vreinterpretq_s8_u8(vshrq_n_u8(packed, 4));
}

// The 32-value types: each gives its codes as two 16-byte halves (values 0-15, 16-31).
// Against Q8_0 activations, signed codes and the block's scale (kScale):
template <typename Block, void (*kCodes)(const Block&, int8x16_t[2]), float (*kScale)(const Block&)>
SPARKD_CPU_DOTPROD float dot_signed_32(const Block* w, const BlockQ8_0* a, int64_t blocks) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < blocks; ++b) {
    int8x16_t codes[2];
    kCodes(w[b], codes);
    int32x4_t sumi = sdot(vdupq_n_s32(0), codes[0], vld1q_s8(a[b].qs));
    sumi = sdot(sumi, codes[1], vld1q_s8(a[b].qs + 16));
    acc = vmlaq_n_f32(acc, vcvtq_f32_s32(sumi), kScale(w[b]) * f16_to_f32(a[b].d));
  }
  return vaddvq_f32(acc);
}

// Against Q8_1 activations (Q4_1, Q5_1): unsigned codes, plus the min times the activations'
// sum.
template <typename Block, void (*kCodes)(const Block&, int8x16_t[2])>
SPARKD_CPU_DOTPROD float dot_offset_32(const Block* w, const BlockQ8_1* a, int64_t blocks) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  float mins = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int8x16_t codes[2];
    kCodes(w[b], codes);
    int32x4_t sumi = sdot(vdupq_n_s32(0), codes[0], vld1q_s8(a[b].qs));
    sumi = sdot(sumi, codes[1], vld1q_s8(a[b].qs + 16));
    acc = vmlaq_n_f32(acc, vcvtq_f32_s32(sumi), f16_to_f32(w[b].d) * f16_to_f32(a[b].d));
    mins += f16_to_f32(w[b].m) * f16_to_f32(a[b].s);
  }
  return vaddvq_f32(acc) + mins;
}

template <typename Block>
SPARKD_CPU_DOTPROD float f16_scale(const Block& block) {
  return f16_to_f32(block.d);
}

// The 32 bits of a Q5 block's qh as bytes, values 0-15 then 16-31: 0xFF where set.
SPARKD_CPU_DOTPROD inline void bits_to_bytes(const uint8_t qh[4], uint8x16_t out[2]) {
  const uint8x16_t bit = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  out[0] = vtstq_u8(vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1])), bit);
  out[1] = vtstq_u8(vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3])), bit);
}

// Each half's nibbles with `extra` bits or-ed in.
SPARKD_CPU_DOTPROD inline void nibbles_with(const uint8_t qs[16], const uint8x16_t extra[2],
                                            int8x16_t codes[2]) {
  const uint8x16_t q = vld1q_u8(qs);
  codes[0] = vreinterpretq_s8_u8(vorrq_u8(vreinterpretq_u8_s8(low_nibbles(q)), extra[0]));
  codes[1] = vreinterpretq_s8_u8(vorrq_u8(vreinterpretq_u8_s8(high_nibbles(q)), extra[1]));
}

SPARKD_CPU_DOTPROD void q4_0_codes(const BlockQ4_0& block, int8x16_t codes[2]) {
  const uint8x16_t q = vld1q_u8(block.qs);
  codes[0] = vsubq_s8(low_nibbles(q), vdupq_n_s8(8));
  codes[1] = vsubq_s8(high_nibbles(q), vdupq_n_s8(8));
}

SPARKD_CPU_DOTPROD void q5_0_codes(const BlockQ5_0& block, int8x16_t codes[2]) {
  // code - 16: the nibble, with 0xF0 above it where the fifth bit is clear.
  uint8x16_t fifth[2];
  bits_to_bytes(block.qh, fifth);
  const uint8x16_t high_nibble = vdupq_n_u8(0xF0);
  const uint8x16_t extra[2] = {vbicq_u8(high_nibble, fifth[0]), vbicq_u8(high_nibble, fifth[1])};
  nibbles_with(block.qs, extra, codes);
}

SPARKD_CPU_DOTPROD void q8_0_codes(const BlockQ8_0& block, int8x16_t codes[2]) {
  codes[0] = vld1q_s8(block.qs);
  codes[1] = vld1q_s8(block.qs + 16);
}

SPARKD_CPU_DOTPROD void mxfp4_codes(const BlockMXFP4& block, int8x16_t codes[2]) {
  // E2M1 codes to their doubled values (kMxfp4Values): one table lookup per nibble.
  const int8x16_t table = vld1q_s8(kMxfp4Values);
  const uint8x16_t q = vld1q_u8(block.qs);
  codes[0] = vqtbl1q_s8(table, vreinterpretq_u8_s8(low_nibbles(q)));
  codes[1] = vqtbl1q_s8(table, vreinterpretq_u8_s8(high_nibbles(q)));
}

SPARKD_CPU_DOTPROD float mxfp4_scale(const BlockMXFP4& block) {
  return e8m0_to_f32_half(block.e);
}

SPARKD_CPU_DOTPROD void q4_1_codes(const BlockQ4_1& block, int8x16_t codes[2]) {
  const uint8x16_t none[2] = {vdupq_n_u8(0), vdupq_n_u8(0)};
  nibbles_with(block.qs, none, codes);
}

SPARKD_CPU_DOTPROD void q5_1_codes(const BlockQ5_1& block, int8x16_t codes[2]) {
  uint8x16_t fifth[2];
  bits_to_bytes(block.qh, fifth);
  const uint8x16_t sixteen = vdupq_n_u8(0x10);
  const uint8x16_t extra[2] = {vandq_u8(fifth[0], sixteen), vandq_u8(fifth[1], sixteen)};
  nibbles_with(block.qs, extra, codes);
}

// Q4_K and Q5_K (kFifthBit: each value's fifth bit is bit j of qh[l] for sub-block j).
template <typename Block, bool kFifthBit>
SPARKD_CPU_DOTPROD float dot_k4_k5(const Block* w, const BlockQ8_K* a, int64_t blocks) {
  float sum = 0.0f;
  const uint8x16_t sixteen = vdupq_n_u8(16);
  for (int64_t b = 0; b < blocks; ++b) {
    uint32_t packed[4];
    k_scales_mins(w[b].scales, packed);
    const auto* scales = reinterpret_cast<const uint8_t*>(packed);
    // Σ_j min_j · Σ(activations of sub-block j), from the bsums summed in pairs.
    const int16x8_t bsums32 = vpaddq_s16(vld1q_s16(a[b].bsums), vld1q_s16(a[b].bsums + 8));
    const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(scales + 8)));
    const int32x4_t min_products = vmlal_s16(vmull_s16(vget_low_s16(mins), vget_low_s16(bsums32)),
                                             vget_high_s16(mins), vget_high_s16(bsums32));
    int32x4_t sumi = vdupq_n_s32(0);
    for (int g = 0; g < 4; ++g) {  // 64 values: sub-blocks 2g (low nibbles) and 2g + 1
      int32x4_t low = vdupq_n_s32(0), high = vdupq_n_s32(0);
      for (int h = 0; h < 2; ++h) {
        const uint8x16_t q = vld1q_u8(w[b].qs + 32 * g + 16 * h);
        int8x16_t q_low = low_nibbles(q), q_high = high_nibbles(q);
        if constexpr (kFifthBit) {
          const uint8x16_t qh = vld1q_u8(w[b].qh + 16 * h);
          q_low = vreinterpretq_s8_u8(vorrq_u8(
              vreinterpretq_u8_s8(q_low),
              vandq_u8(vtstq_u8(qh, vdupq_n_u8(static_cast<uint8_t>(1u << (2 * g)))), sixteen)));
          q_high = vreinterpretq_s8_u8(vorrq_u8(
              vreinterpretq_u8_s8(q_high),
              vandq_u8(vtstq_u8(qh, vdupq_n_u8(static_cast<uint8_t>(2u << (2 * g)))), sixteen)));
        }
        low = sdot(low, q_low, vld1q_s8(a[b].qs + 64 * g + 16 * h));
        high = sdot(high, q_high, vld1q_s8(a[b].qs + 64 * g + 32 + 16 * h));
      }
      sumi = vmlaq_n_s32(sumi, low, scales[2 * g]);
      sumi = vmlaq_n_s32(sumi, high, scales[2 * g + 1]);
    }
    sum += a[b].d * (f16_to_f32(w[b].d) * static_cast<float>(vaddvq_s32(sumi)) -
                     f16_to_f32(w[b].dmin) * static_cast<float>(vaddvq_s32(min_products)));
  }
  return sum;
}

SPARKD_CPU_DOTPROD float dot_q4_k(const BlockQ4_K* w, const BlockQ8_K* a, int64_t blocks) {
  return dot_k4_k5<BlockQ4_K, false>(w, a, blocks);
}

SPARKD_CPU_DOTPROD float dot_q5_k(const BlockQ5_K* w, const BlockQ8_K* a, int64_t blocks) {
  return dot_k4_k5<BlockQ5_K, true>(w, a, blocks);
}

// Σ_j scales[j] · bsums[j] over a Q8_K block's 16 sub-blocks.
SPARKD_CPU_DOTPROD inline int32_t scaled_bsums(int16x8_t scales_low, int16x8_t scales_high,
                                               const BlockQ8_K& a) {
  int32x4_t sum = vmull_s16(vget_low_s16(scales_low), vld1_s16(a.bsums));
  sum = vmlal_s16(sum, vget_high_s16(scales_low), vld1_s16(a.bsums + 4));
  sum = vmlal_s16(sum, vget_low_s16(scales_high), vld1_s16(a.bsums + 8));
  sum = vmlal_s16(sum, vget_high_s16(scales_high), vld1_s16(a.bsums + 12));
  return vaddvq_s32(sum);
}

SPARKD_CPU_DOTPROD float dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* a, int64_t blocks) {
  float sum = 0.0f;
  const uint8x16_t two_bits = vdupq_n_u8(0x03);
  for (int64_t b = 0; b < blocks; ++b) {
    const BlockQ6_K& block = w[b];
    // Σ (q - 32) · a = Σ q · a - 32 Σ_j scale_j · bsum_j.
    const int32_t bias = 32 * scaled_bsums(vmovl_s8(vld1_s8(block.scales)),
                                           vmovl_s8(vld1_s8(block.scales + 8)), a[b]);
    int32x4_t sumi = vdupq_n_s32(0);
    for (int half = 0; half < 2; ++half) {
      for (int h = 0; h < 2; ++h) {  // values l = 16h .. 16h + 15 of each 32-value group
        const uint8x16_t q4a = vld1q_u8(block.ql + 64 * half + 16 * h);
        const uint8x16_t q4b = vld1q_u8(block.ql + 64 * half + 32 + 16 * h);
        const uint8x16_t qh = vld1q_u8(block.qh + 32 * half + 16 * h);
        const uint8x16_t q[4] = {
            vorrq_u8(vandq_u8(q4a, vdupq_n_u8(0x0F)), vshlq_n_u8(vandq_u8(qh, two_bits), 4)),
            vorrq_u8(vandq_u8(q4b, vdupq_n_u8(0x0F)),
                     vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), two_bits), 4)),
            vorrq_u8(vshrq_n_u8(q4a, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), two_bits), 4)),
            vorrq_u8(vshrq_n_u8(q4b, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4)),
        };
        for (int s = 0; s < 4; ++s) {
          const int first = 128 * half + 32 * s + 16 * h;
          const int32x4_t part =
              sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(q[s]), vld1q_s8(a[b].qs + first));
          sumi = vmlaq_n_s32(sumi, part, block.scales[first / 16]);
        }
      }
    }
    sum += a[b].d * f16_to_f32(block.d) * static_cast<float>(vaddvq_s32(sumi) - bias);
  }
  return sum;
}

// Q2_K and Q3_K: value 128h + 32s + l is bits 2s, 2s + 1 of qs[32h + l] (and, for Q3_K, bit
// 4h + s of hmask[l]); sub-block (value / 16) scales. Σ scale · code · a as i32 lanes.
template <bool kThirdBit>
SPARKD_CPU_DOTPROD inline int32x4_t two_bit_fields_dot(const uint8_t* qs, const uint8_t* hmask,
                                                       const int8_t* activations,
                                                       const int scales[16]) {
  const uint8x16_t two_bits = vdupq_n_u8(0x03);
  int32x4_t sumi = vdupq_n_s32(0);
  for (int half = 0; half < 2; ++half) {
    for (int h = 0; h < 2; ++h) {  // values l = 16h .. 16h + 15 of each 32
      const uint8x16_t packed = vld1q_u8(qs + 32 * half + 16 * h);
      uint8x16_t third_bits = vdupq_n_u8(0);
      if constexpr (kThirdBit) third_bits = vld1q_u8(hmask + 16 * h);
      for (int s = 0; s < 4; ++s) {
        uint8x16_t codes =
            vandq_u8(vshlq_u8(packed, vdupq_n_s8(static_cast<int8_t>(-2 * s))), two_bits);
        if constexpr (kThirdBit) {
          const uint8x16_t third =
              vandq_u8(vshlq_u8(third_bits, vdupq_n_s8(static_cast<int8_t>(-(4 * half + s)))),
                       vdupq_n_u8(1));
          codes = vorrq_u8(codes, vshlq_n_u8(third, 2));
        }
        const int first = 128 * half + 32 * s + 16 * h;
        const int32x4_t part =
            sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(codes), vld1q_s8(activations + first));
        sumi = vmlaq_n_s32(sumi, part, scales[first / 16]);
      }
    }
  }
  return sumi;
}

SPARKD_CPU_DOTPROD float dot_q2_k(const BlockQ2_K* w, const BlockQ8_K* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    const BlockQ2_K& block = w[b];
    int scales[16];
    for (int j = 0; j < 16; ++j) scales[j] = block.scales[j] & 0xF;
    const uint8x16_t mins = vshrq_n_u8(vld1q_u8(block.scales), 4);
    const int32_t min_sum = scaled_bsums(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mins))),
                                         vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(mins))), a[b]);
    const int32x4_t sumi = two_bit_fields_dot<false>(block.qs, nullptr, a[b].qs, scales);
    sum += a[b].d * (f16_to_f32(block.d) * static_cast<float>(vaddvq_s32(sumi)) -
                     f16_to_f32(block.dmin) * static_cast<float>(min_sum));
  }
  return sum;
}

SPARKD_CPU_DOTPROD float dot_q3_k(const BlockQ3_K* w, const BlockQ8_K* a, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    const BlockQ3_K& block = w[b];
    int scales[16];
    q3_k_scales(block.scales, scales);
    // Codes low | third << 2 in 0..7 stand for code - 4: Σ (q - 4) · a = Σ q · a - 4 Σ scale ·
    // bsum.
    int32_t bias = 0;
    for (int j = 0; j < 16; ++j) bias += 4 * scales[j] * a[b].bsums[j];
    const int32x4_t sumi = two_bit_fields_dot<true>(block.qs, block.hmask, a[b].qs, scales);
    sum += a[b].d * f16_to_f32(block.d) * static_cast<float>(vaddvq_s32(sumi) - bias);
  }
  return sum;
}

}  // namespace simd
#endif  // SPARKD_CPU_ARM

// ---- dispatch --------------------------------------------------------------------------

enum class ActivationQuant { kQ8_0, kQ8_1, kQ8_K };

ActivationQuant activation_quant_for(DType weight) {
  switch (weight) {
    case DType::kQ4_1:
    case DType::kQ5_1:
      return ActivationQuant::kQ8_1;
    case DType::kQ2_K:
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return ActivationQuant::kQ8_K;
    default:
      return ActivationQuant::kQ8_0;
  }
}

size_t activation_row_bytes(ActivationQuant quant, int64_t k) {
  switch (quant) {
    case ActivationQuant::kQ8_0:
      return static_cast<size_t>(k / kBlockElements) * sizeof(BlockQ8_0);
    case ActivationQuant::kQ8_1:
      return static_cast<size_t>(k / kBlockElements) * sizeof(BlockQ8_1);
    case ActivationQuant::kQ8_K:
      return static_cast<size_t>(k / kSuperBlockElements) * sizeof(BlockQ8_K);
  }
  return 0;
}

void quantize_activation_row(const KernelConfig& config, ActivationQuant quant, const float* x,
                             int64_t k, void* dst) {
  switch (quant) {
    case ActivationQuant::kQ8_0:
      return quantize_q8_0(x, k, static_cast<BlockQ8_0*>(dst));
    case ActivationQuant::kQ8_1:
      return quantize_q8_1(x, k, static_cast<BlockQ8_1*>(dst));
    case ActivationQuant::kQ8_K:
      return quantize_row_q8_k(config, x, k, dst);
  }
}

using DotFn = float (*)(const void* weight_row, const void* activation_row, int64_t k);

template <typename W, typename A, float (*kDot)(const W*, const A*, int64_t), int kPerBlock>
float dot_adapter(const void* weight_row, const void* activation_row, int64_t k) {
  return kDot(static_cast<const W*>(weight_row), static_cast<const A*>(activation_row),
              k / kPerBlock);
}

DotFn portable_dot(DType weight) {
  switch (weight) {
    case DType::kQ4_0:
      return dot_adapter<BlockQ4_0, BlockQ8_0, dot_q4_0, kBlockElements>;
    case DType::kQ4_1:
      return dot_adapter<BlockQ4_1, BlockQ8_1, dot_q4_1, kBlockElements>;
    case DType::kQ5_0:
      return dot_adapter<BlockQ5_0, BlockQ8_0, dot_q5_0, kBlockElements>;
    case DType::kQ5_1:
      return dot_adapter<BlockQ5_1, BlockQ8_1, dot_q5_1, kBlockElements>;
    case DType::kQ8_0:
      return dot_adapter<BlockQ8_0, BlockQ8_0, dot_q8_0, kBlockElements>;
    case DType::kMXFP4:
      return dot_adapter<BlockMXFP4, BlockQ8_0, dot_mxfp4, kBlockElements>;
    case DType::kQ2_K:
      return dot_adapter<BlockQ2_K, BlockQ8_K, dot_q2_k, kSuperBlockElements>;
    case DType::kQ3_K:
      return dot_adapter<BlockQ3_K, BlockQ8_K, dot_q3_k, kSuperBlockElements>;
    case DType::kQ4_K:
      return dot_adapter<BlockQ4_K, BlockQ8_K, dot_q4_k, kSuperBlockElements>;
    case DType::kQ5_K:
      return dot_adapter<BlockQ5_K, BlockQ8_K, dot_q5_k, kSuperBlockElements>;
    case DType::kQ6_K:
      return dot_adapter<BlockQ6_K, BlockQ8_K, dot_q6_k, kSuperBlockElements>;
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      break;
  }
  fail("quantized linear", std::string(dtype_name(weight)) + " is not a quantized type");
}

DotFn dot_for(const KernelConfig& config, DType weight) {
#if SPARKD_CPU_X86 || SPARKD_CPU_ARM
  // AVX2 on x86 (from kAvx2 up), sdot on aarch64.
  const bool simd_kernels =
      SPARKD_CPU_X86 ? config.simd != SimdLevel::kPortable : config.arm_dotprod;
  if (simd_kernels) {
    switch (weight) {
      case DType::kQ4_0:
        return dot_adapter<
            BlockQ4_0, BlockQ8_0,
            simd::dot_signed_32<BlockQ4_0, simd::q4_0_codes, simd::f16_scale<BlockQ4_0>>,
            kBlockElements>;
      case DType::kQ5_0:
        return dot_adapter<
            BlockQ5_0, BlockQ8_0,
            simd::dot_signed_32<BlockQ5_0, simd::q5_0_codes, simd::f16_scale<BlockQ5_0>>,
            kBlockElements>;
      case DType::kQ8_0:
        return dot_adapter<
            BlockQ8_0, BlockQ8_0,
            simd::dot_signed_32<BlockQ8_0, simd::q8_0_codes, simd::f16_scale<BlockQ8_0>>,
            kBlockElements>;
      case DType::kMXFP4:
        return dot_adapter<BlockMXFP4, BlockQ8_0,
                           simd::dot_signed_32<BlockMXFP4, simd::mxfp4_codes, simd::mxfp4_scale>,
                           kBlockElements>;
      case DType::kQ4_1:
        return dot_adapter<BlockQ4_1, BlockQ8_1, simd::dot_offset_32<BlockQ4_1, simd::q4_1_codes>,
                           kBlockElements>;
      case DType::kQ5_1:
        return dot_adapter<BlockQ5_1, BlockQ8_1, simd::dot_offset_32<BlockQ5_1, simd::q5_1_codes>,
                           kBlockElements>;
      case DType::kQ4_K:
        return dot_adapter<BlockQ4_K, BlockQ8_K, simd::dot_q4_k, kSuperBlockElements>;
      case DType::kQ5_K:
        return dot_adapter<BlockQ5_K, BlockQ8_K, simd::dot_q5_k, kSuperBlockElements>;
      case DType::kQ6_K:
        return dot_adapter<BlockQ6_K, BlockQ8_K, simd::dot_q6_k, kSuperBlockElements>;
      case DType::kQ2_K:
        return dot_adapter<BlockQ2_K, BlockQ8_K, simd::dot_q2_k, kSuperBlockElements>;
      case DType::kQ3_K:
        return dot_adapter<BlockQ3_K, BlockQ8_K, simd::dot_q3_k, kSuperBlockElements>;
      default:
        break;
    }
  }
#endif
  static_cast<void>(config);
  return portable_dot(weight);
}

}  // namespace

void quantized_linear(const KernelConfig& config, const float* x, int64_t m, int64_t k,
                      const void* weight, DType weight_dtype, int64_t n, const float* bias,
                      float* y) {
  if (quantized_gemm_applies(config, weight_dtype, m)) {
    return quantized_gemm(config, x, m, k, weight, weight_dtype, n, bias, y);
  }
  const ActivationQuant quant = activation_quant_for(weight_dtype);
  const size_t activation_bytes = activation_row_bytes(quant, k);
  // On the calling thread's scratch, shared with the team for this call.
  auto* activations = reinterpret_cast<uint8_t*>(thread_scratch(
      6, (static_cast<size_t>(m) * activation_bytes + sizeof(float) - 1) / sizeof(float)));
  parallel_for(config, m, k, [&](int64_t i) {
    quantize_activation_row(config, quant, x + i * k, k, activations + i * activation_bytes);
  });

  const DotFn dot = dot_for(config, weight_dtype);
  const size_t weight_row_bytes = dtype_row_bytes(weight_dtype, k);
  const auto* weight_bytes = static_cast<const uint8_t*>(weight);
  const int64_t tasks = (n + kRowsPerTask - 1) / kRowsPerTask;
  parallel_for_dynamic(
      config, tasks, kRowsPerTask * k * std::max<int64_t>(m, 1), [&](int64_t task) {
        const int64_t row_begin = task * kRowsPerTask;
        const int64_t row_end = std::min(n, row_begin + kRowsPerTask);
        for (int64_t i = 0; i < m; ++i) {
          const uint8_t* activation = activations + i * activation_bytes;
          float* y_row = y + i * n;
          for (int64_t j = row_begin; j < row_end; ++j) {
            const float sum = dot(weight_bytes + j * weight_row_bytes, activation, k);
            y_row[j] = bias ? sum + bias[j] : sum;
          }
        }
      });
}

void quantize_row_q8_k(const KernelConfig& config, const float* x, int64_t k, void* blocks) {
  auto* out = static_cast<BlockQ8_K*>(blocks);
#if SPARKD_CPU_X86
  if (config.simd >= SimdLevel::kAvx2) return simd::quantize_q8_k(x, k, out);
#endif
  static_cast<void>(config);
  quantize_q8_k(x, k, out);
}

}  // namespace sparkd::cpu
