// Prefill on K-quant weights (Q2_K .. Q6_K): an int8 GEMM over tiles, where the dot-product
// path (cpu_quant_linear.cpp) would decode every weight block once per row of x.
//
// Every K-quant value is d * scale_s * (code - bias) - dmin * min_s, with an integer code per
// value and integer scale and min per sub-block s of 16 or 32 values. So:
//   - a tile of 16 weight rows is unpacked once into byte codes plus its integer scales and
//     mins (WeightTile), and reused by every row of x;
//   - x, quantized to Q8_K, is packed in panels of 16 rows with the codes of 4 consecutive k
//     for all 16 rows side by side (64 bytes: one AVX-512 register), plus per-16 sums;
//   - the micro-kernel takes 8 weight rows x 16 rows of x: per 4 k, one load of x and, per
//     weight row, a broadcast of its 4 codes and one u8 x s8 dot (VNNI vpdpbusd) into 16 i32
//     lanes; per sub-block the exact integer sum is multiplied by the integer scale; per
//     256-value block the bias and mins term (Σ offset x sums of x, 16-bit pair products) and
//     the scales d, dmin of both sides are applied in F32, as the dot-product path does. The
//     VNNI kernel runs a panel's blocks in one call, its F32 sums in registers.
// The integer sums are exact, so the result equals the dot-product path's up to the order of
// the F32 additions. On aarch64 the same micro-kernel runs on sdot (Armv8.2 dot product) in
// 128-bit registers, or on smmla (i8mm: 2x8 by 8x2 int8 products) over panels packed 8 k wide. A
// scalar micro-kernel with the same layout serves portable mode (and the tests, which compare
// them).
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "engine/backend/cpu/cpu_kernels.h"
#include "engine/backend/half.h"
#include "engine/backend/quant_blocks.h"

#if SPARKD_CPU_X86
#define SPARKD_CPU_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma")))
#endif

namespace sparkd::cpu {

using namespace sparkd::quant;

namespace {

constexpr int kTileRows = 16;   // weight rows per tile (two 8-row bands)
constexpr int kBandRows = 8;    // weight rows per micro-kernel call
constexpr int kPanelRows = 16;  // rows of x per panel (one 512-bit register of i32 lanes)
constexpr int kBlock = kSuperBlockElements;
constexpr int kGroups = kBlock / 4;  // 4-value groups per block
constexpr int kMaxSubBlocks = 16;

// How one K-quant type's blocks read as codes: value = d * scale * (code - bias) - dmin * min.
struct KQuantLayout {
  int sub_block;  // values per scale: 16 or 32
  int bias;
  bool has_min;
};

KQuantLayout layout_of(DType dtype) {
  switch (dtype) {
    case DType::kQ2_K:
      return {16, 0, true};
    case DType::kQ3_K:
      return {16, 4, false};
    case DType::kQ4_K:
    case DType::kQ5_K:
      return {32, 0, true};
    case DType::kQ6_K:
      return {16, 32, false};
    default:
      fail("quantized gemm", std::string(dtype_name(dtype)) + " is not a K-quant");
  }
}

// One block's codes (value order), sub-block scales and mins, and super-scales.
struct UnpackedBlock {
  uint8_t* codes;  // kBlock
  int32_t* scales;
  int32_t* mins;
  float d = 0, dmin = 0;
};

// The 2-bit fields of Q2_K/Q3_K's qs in value order: per half of 128 values, 32 bytes read at
// shifts 0, 2, 4, 6. Loops of fixed trip counts, for the vectoriser.
SPARKD_CPU_CLONES void unpack_two_bit_fields(const uint8_t* __restrict qs,
                                             uint8_t* __restrict codes) {
  for (int half = 0; half < 2; ++half) {
    for (int shift = 0; shift < 4; ++shift) {
      for (int l = 0; l < 32; ++l) {
        codes[128 * half + 32 * shift + l] =
            static_cast<uint8_t>((qs[32 * half + l] >> (2 * shift)) & 3);
      }
    }
  }
}

// Q4_K/Q5_K's nibbles in value order: per 64 values, 32 bytes' low then high nibbles.
SPARKD_CPU_CLONES void unpack_nibbles(const uint8_t* __restrict qs, uint8_t* __restrict codes) {
  for (int g = 0; g < 4; ++g) {
    for (int l = 0; l < 32; ++l) {
      codes[64 * g + l] = qs[32 * g + l] & 0xF;
      codes[64 * g + 32 + l] = qs[32 * g + l] >> 4;
    }
  }
}

SPARKD_CPU_CLONES void unpack_q6_k_codes(const BlockQ6_K& b, uint8_t* __restrict codes) {
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = b.ql + 64 * half;
    const uint8_t* qh = b.qh + 32 * half;
    uint8_t* out = codes + 128 * half;
    for (int l = 0; l < 32; ++l) {
      out[l] = static_cast<uint8_t>((ql[l] & 0xF) | ((qh[l] & 3) << 4));
      out[32 + l] = static_cast<uint8_t>((ql[32 + l] & 0xF) | (((qh[l] >> 2) & 3) << 4));
      out[64 + l] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      out[96 + l] = static_cast<uint8_t>((ql[32 + l] >> 4) | (((qh[l] >> 6) & 3) << 4));
    }
  }
}

// Q4_K and Q5_K: nibbles, plus for Q5_K each value's fifth bit (bit j of qh[l] for sub-block
// j); 6-bit scales and mins.
template <typename Block>
void unpack_k4_k5(const Block& b, UnpackedBlock& out) {
  unpack_nibbles(b.qs, out.codes);
  for (int j = 0; j < 8; ++j) {
    uint8_t scale, min;
    k_scale_min(b.scales, j, scale, min);
    out.scales[j] = scale;
    out.mins[j] = min;
    if constexpr (std::is_same_v<Block, BlockQ5_K>) {
      for (int l = 0; l < 32; ++l) {
        out.codes[32 * j + l] =
            static_cast<uint8_t>(out.codes[32 * j + l] | (((b.qh[l] >> j) & 1) << 4));
      }
    }
  }
  out.d = f16_to_f32(b.d);
  out.dmin = f16_to_f32(b.dmin);
}

void unpack_block(DType dtype, const void* raw, UnpackedBlock& out) {
  switch (dtype) {
    case DType::kQ2_K: {
      const auto& b = *static_cast<const BlockQ2_K*>(raw);
      unpack_two_bit_fields(b.qs, out.codes);
      for (int s = 0; s < 16; ++s) {
        out.scales[s] = b.scales[s] & 0xF;
        out.mins[s] = b.scales[s] >> 4;
      }
      out.d = f16_to_f32(b.d);
      out.dmin = f16_to_f32(b.dmin);
      return;
    }
    case DType::kQ3_K: {
      const auto& b = *static_cast<const BlockQ3_K*>(raw);
      unpack_two_bit_fields(b.qs, out.codes);
      for (int e = 0; e < kBlock; ++e) {  // the third bit set means no -4 offset
        out.codes[e] =
            static_cast<uint8_t>(out.codes[e] | (((b.hmask[e % 32] >> (e / 32)) & 1) << 2));
      }
      q3_k_scales(b.scales, out.scales);
      out.d = f16_to_f32(b.d);
      return;
    }
    case DType::kQ4_K:
      return unpack_k4_k5(*static_cast<const BlockQ4_K*>(raw), out);
    case DType::kQ5_K:
      return unpack_k4_k5(*static_cast<const BlockQ5_K*>(raw), out);
    case DType::kQ6_K: {
      const auto& b = *static_cast<const BlockQ6_K*>(raw);
      unpack_q6_k_codes(b, out.codes);
      for (int s = 0; s < 16; ++s) out.scales[s] = b.scales[s];
      out.d = f16_to_f32(b.d);
      return;
    }
    default:
      fail("quantized gemm", std::string(dtype_name(dtype)) + " is not a K-quant");
  }
}

// kTileRows weight rows unpacked, block after block.
struct WeightTile {
  int rows = 0;  // valid rows (the rest are zero)
  int64_t blocks = 0;
  std::vector<uint8_t> codes;   // [row][block][kBlock]
  std::vector<int32_t> scales;  // [row][block][kMaxSubBlocks]
  std::vector<int32_t> mins;    // [row][block][kMaxSubBlocks]
  std::vector<float> d, dmin;   // [row][block]
  // The same blocks with the bias folded into the second term, per 16 values:
  //   value = d * scale * code - offset_d * offsets[value / 16]
  // (offset_d = dmin and offsets = the mins where the type has mins; offset_d = d and
  // offsets = scale * bias where it has a bias), so a kernel needs no per-sub-block bias
  // correction and takes the offsets as 16-bit pairs (|offsets| <= 128 * 32).
  std::vector<int16_t> offsets;  // [row][block][16]
  std::vector<float> offset_d;   // [row][block]

  void unpack(DType dtype, const uint8_t* weight, size_t row_bytes, int64_t first_row,
              int valid_rows, int64_t block_count) {
    rows = valid_rows;
    blocks = block_count;
    const size_t cells = static_cast<size_t>(kTileRows * blocks);
    codes.assign(cells * kBlock, 0);
    scales.assign(cells * kMaxSubBlocks, 0);
    mins.assign(cells * kMaxSubBlocks, 0);
    d.assign(cells, 0.0f);
    dmin.assign(cells, 0.0f);
    offsets.assign(cells * 16, 0);
    offset_d.assign(cells, 0.0f);
    const KQuantLayout layout = layout_of(dtype);
    const size_t block_bytes = static_cast<size_t>(dtype_traits(dtype).block_bytes);
    for (int r = 0; r < valid_rows; ++r) {
      const uint8_t* row = weight + static_cast<size_t>(first_row + r) * row_bytes;
      for (int64_t b = 0; b < blocks; ++b) {
        const size_t cell = static_cast<size_t>(r * blocks + b);
        UnpackedBlock out{codes.data() + cell * kBlock, scales.data() + cell * kMaxSubBlocks,
                          mins.data() + cell * kMaxSubBlocks};
        unpack_block(dtype, row + b * block_bytes, out);
        d[cell] = out.d;
        dmin[cell] = out.dmin;
        const int chunks_per_sub = layout.sub_block / 16;
        for (int sub = 0; sub < kBlock / layout.sub_block; ++sub) {
          const int offset = layout.has_min ? out.mins[sub] : out.scales[sub] * layout.bias;
          for (int c = 0; c < chunks_per_sub; ++c) {
            offsets[cell * 16 + sub * chunks_per_sub + c] = static_cast<int16_t>(offset);
          }
        }
        offset_d[cell] = layout.has_min ? out.dmin : out.d;
      }
    }
  }
  size_t cell(int row, int64_t block) const { return static_cast<size_t>(row * blocks + block); }
};

// x's rows quantized (Q8_K) and interleaved for the micro-kernel, per panel and block.
struct PanelBlock {
  // Codes of 4 consecutive k for all rows side by side: codes[k / 4][row][k % 4]. The i8mm
  // kernel takes 8 instead (PanelLayout::kEightWide): the same bytes read as
  // [k / 8][row][k % 8], through eight_wide().
  int8_t codes[kGroups][kPanelRows][4];
  int32_t sums16[16][kPanelRows];  // Σ of each 16 codes, per row
  // The same sums as 16-bit pairs (|Σ| <= 16 * 128), [pair][row][2]: sums16[2p] and [2p + 1].
  int16_t sum_pairs[8][kPanelRows][2];
  float d[kPanelRows];

  const int8_t* eight_wide(int group8, int row) const {
    return &codes[0][0][0] + (group8 * kPanelRows + row) * 8;
  }
};

enum class PanelLayout { kFourWide, kEightWide };

void pack_panels(const KernelConfig& config, PanelLayout layout, const float* x, int64_t m,
                 int64_t k, std::vector<PanelBlock>& panels) {
  const int64_t blocks = k / kBlock;
  const int64_t panel_count = (m + kPanelRows - 1) / kPanelRows;
  const int width = layout == PanelLayout::kEightWide ? 8 : 4;
  panels.resize(static_cast<size_t>(panel_count * blocks));
  parallel_for(config, panel_count, kPanelRows * k, [&](int64_t p) {
    std::vector<BlockQ8_K> row_blocks(static_cast<size_t>(blocks));
    for (int64_t b = 0; b < blocks; ++b) {
      std::memset(&panels[static_cast<size_t>(p * blocks + b)], 0, sizeof(PanelBlock));
    }
    for (int r = 0; r < kPanelRows && p * kPanelRows + r < m; ++r) {
      quantize_row_q8_k(config, x + (p * kPanelRows + r) * k, k, row_blocks.data());
      for (int64_t b = 0; b < blocks; ++b) {
        PanelBlock& out = panels[static_cast<size_t>(p * blocks + b)];
        const BlockQ8_K& q = row_blocks[static_cast<size_t>(b)];
        int8_t* codes = &out.codes[0][0][0];
        for (int g = 0; g < kBlock / width; ++g) {
          std::memcpy(codes + (g * kPanelRows + r) * width, q.qs + width * g,
                      static_cast<size_t>(width));
        }
        for (int s = 0; s < 16; ++s) {
          out.sums16[s][r] = q.bsums[s];
          out.sum_pairs[s / 2][r][s % 2] = q.bsums[s];
        }
        out.d[r] = q.d;
      }
    }
  });
}

// buf[t][j] += Σ over one block of weight row (t0 + t) · panel row j, for t < kBandRows.
template <int kSubBlock>
void band_portable(const WeightTile& w, int t0, int64_t block, const PanelBlock& a,
                   const KQuantLayout& layout, float buf[kBandRows][kPanelRows]) {
  constexpr int kSubBlocks = kBlock / kSubBlock;
  for (int t = 0; t < kBandRows; ++t) {
    const size_t cell = w.cell(t0 + t, block);
    const uint8_t* codes = w.codes.data() + cell * kBlock;
    int32_t s1[kPanelRows] = {}, s2[kPanelRows] = {};
    for (int s = 0; s < kSubBlocks; ++s) {
      int32_t raw[kPanelRows] = {};
      for (int e = s * kSubBlock; e < (s + 1) * kSubBlock; ++e) {
        for (int j = 0; j < kPanelRows; ++j) raw[j] += codes[e] * a.codes[e / 4][j][e % 4];
      }
      for (int j = 0; j < kPanelRows; ++j) {
        int32_t sum = 0;
        for (int u = 0; u < kSubBlock / 16; ++u) sum += a.sums16[s * (kSubBlock / 16) + u][j];
        s1[j] += w.scales[cell * kMaxSubBlocks + s] * (raw[j] - layout.bias * sum);
        s2[j] += w.mins[cell * kMaxSubBlocks + s] * sum;
      }
    }
    for (int j = 0; j < kPanelRows; ++j) {
      buf[t][j] += a.d[j] * (w.d[cell] * static_cast<float>(s1[j]) -
                             w.dmin[cell] * static_cast<float>(s2[j]));
    }
  }
}

#if SPARKD_CPU_X86
// i32 -> F32; the zero-masked form, because GCC 12 warns that the unmasked one's
// _mm512_undefined_ps is used uninitialized.
SPARKD_CPU_VNNI inline __m512 to_float(__m512i v) {
  return _mm512_maskz_cvtepi32_ps(0xFFFF, v);
}

// All blocks of one panel against 8 weight rows, the F32 sums in registers throughout. Per
// sub-block the exact integer dot is scaled (vpmulld); per block the offset term is 8 16-bit
// pair products (vpdpwssd) of the weight rows' offsets with x's sums, and both are applied in
// F32 with the block's scales.
template <int kSubBlock>
SPARKD_CPU_VNNI void band_vnni(const WeightTile& w, int t0, const PanelBlock* panel,
                               const KQuantLayout&, float buf[kBandRows][kPanelRows]) {
  constexpr int kSubBlocks = kBlock / kSubBlock;
  constexpr int kGroupsPerSub = kSubBlock / 4;
  __m512 acc[kBandRows];
  for (int t = 0; t < kBandRows; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t block = 0; block < w.blocks; ++block) {
    const PanelBlock& a = panel[block];
    const uint8_t* codes[kBandRows];
    size_t cells[kBandRows];
    for (int t = 0; t < kBandRows; ++t) {
      cells[t] = w.cell(t0 + t, block);
      codes[t] = w.codes.data() + cells[t] * kBlock;
    }
    __m512i s1[kBandRows];
    for (int t = 0; t < kBandRows; ++t) s1[t] = _mm512_setzero_si512();
    for (int s = 0; s < kSubBlocks; ++s) {
      __m512i raw[kBandRows];
      for (int t = 0; t < kBandRows; ++t) raw[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int g = 0; g < kGroupsPerSub; ++g) {
        const int group = s * kGroupsPerSub + g;
        const __m512i x_codes = _mm512_loadu_si512(a.codes[group]);
#pragma GCC unroll 8
        for (int t = 0; t < kBandRows; ++t) {
          uint32_t four;
          std::memcpy(&four, codes[t] + 4 * group, 4);
          raw[t] = _mm512_dpbusd_epi32(raw[t], _mm512_set1_epi32(static_cast<int>(four)), x_codes);
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < kBandRows; ++t) {
        const __m512i scale = _mm512_set1_epi32(w.scales[cells[t] * kMaxSubBlocks + s]);
        s1[t] = _mm512_add_epi32(s1[t], _mm512_mullo_epi32(raw[t], scale));
      }
    }
    const __m512 x_d = _mm512_loadu_ps(a.d);
#pragma GCC unroll 8
    for (int t = 0; t < kBandRows; ++t) {
      const int16_t* offsets = w.offsets.data() + cells[t] * 16;
      __m512i offset = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int pair = 0; pair < 8; ++pair) {
        uint32_t two;
        std::memcpy(&two, offsets + 2 * pair, 4);
        offset = _mm512_dpwssd_epi32(offset, _mm512_set1_epi32(static_cast<int>(two)),
                                     _mm512_loadu_si512(a.sum_pairs[pair]));
      }
      __m512 result = _mm512_mul_ps(to_float(s1[t]), _mm512_set1_ps(w.d[cells[t]]));
      result = _mm512_fnmadd_ps(_mm512_set1_ps(w.offset_d[cells[t]]), to_float(offset), result);
      acc[t] = _mm512_fmadd_ps(result, x_d, acc[t]);
    }
  }
  for (int t = 0; t < kBandRows; ++t) _mm512_storeu_ps(buf[t], acc[t]);
}
#endif

#if SPARKD_CPU_ARM
// The VNNI kernel's arithmetic in 128-bit registers: 4 weight rows at a time (16 i32
// accumulators, one per weight row and 4 rows of x); per 4 k, x's 16 rows in 4 loads and per
// weight row its 4 codes broadcast into 4 sdots. Codes are at most 63, so signed × signed
// (sdot) is exact.
template <int kSubBlock>
SPARKD_CPU_DOTPROD void band_dotprod(const WeightTile& w, int t0, int64_t block,
                                     const PanelBlock& a, const KQuantLayout& layout,
                                     float buf[kBandRows][kPanelRows]) {
  constexpr int kSubBlocks = kBlock / kSubBlock;
  constexpr int kGroupsPerSub = kSubBlock / 4;
  constexpr int kQuads = kPanelRows / 4;  // 4 rows of x per register
  constexpr int kRows = 4;                // weight rows per pass
  for (int pass = 0; pass < kBandRows; pass += kRows) {
    const uint8_t* codes[kRows];
    size_t cells[kRows];
    for (int t = 0; t < kRows; ++t) {
      cells[t] = w.cell(t0 + pass + t, block);
      codes[t] = w.codes.data() + cells[t] * kBlock;
    }
    int32x4_t s1[kRows][kQuads], s2[kRows][kQuads];
    for (int t = 0; t < kRows; ++t) {
      for (int q = 0; q < kQuads; ++q) s1[t][q] = s2[t][q] = vdupq_n_s32(0);
    }
    for (int s = 0; s < kSubBlocks; ++s) {
      int32x4_t sums[kQuads];
      for (int q = 0; q < kQuads; ++q) {
        sums[q] = vld1q_s32(&a.sums16[s * (kSubBlock / 16)][4 * q]);
        if constexpr (kSubBlock == 32)
          sums[q] = vaddq_s32(sums[q], vld1q_s32(&a.sums16[s * 2 + 1][4 * q]));
      }
      int32x4_t raw[kRows][kQuads];
      for (int t = 0; t < kRows; ++t) {
        for (int q = 0; q < kQuads; ++q) raw[t][q] = vdupq_n_s32(0);
      }
#pragma GCC unroll 8
      for (int g = 0; g < kGroupsPerSub; ++g) {
        const int group = s * kGroupsPerSub + g;
        int8x16_t x_codes[kQuads];
        for (int q = 0; q < kQuads; ++q) x_codes[q] = vld1q_s8(a.codes[group][4 * q]);
        for (int t = 0; t < kRows; ++t) {
          uint32_t four;
          std::memcpy(&four, codes[t] + 4 * group, 4);
          const int8x16_t w_codes = vreinterpretq_s8_u32(vdupq_n_u32(four));
          for (int q = 0; q < kQuads; ++q) raw[t][q] = vdotq_s32(raw[t][q], w_codes, x_codes[q]);
        }
      }
      for (int t = 0; t < kRows; ++t) {
        const int32_t scale = w.scales[cells[t] * kMaxSubBlocks + s];
        const int32_t min = w.mins[cells[t] * kMaxSubBlocks + s];
        for (int q = 0; q < kQuads; ++q) {
          const int32x4_t corrected = vmlsq_n_s32(raw[t][q], sums[q], layout.bias);
          s1[t][q] = vmlaq_n_s32(s1[t][q], corrected, scale);
          if (layout.has_min) s2[t][q] = vmlaq_n_s32(s2[t][q], sums[q], min);
        }
      }
    }
    for (int t = 0; t < kRows; ++t) {
      float* out = buf[pass + t];
      for (int q = 0; q < kQuads; ++q) {
        float32x4_t result = vmulq_n_f32(vcvtq_f32_s32(s1[t][q]), w.d[cells[t]]);
        if (layout.has_min) {
          result = vmlsq_n_f32(result, vcvtq_f32_s32(s2[t][q]), w.dmin[cells[t]]);
        }
        vst1q_f32(out + 4 * q, vmlaq_f32(vld1q_f32(out + 4 * q), result, vld1q_f32(a.d + 4 * q)));
      }
    }
  }
}

// Armv8.6 int8 matrix multiply (smmla: a 2x8 by 8x2 product into a 2x2 block of i32), twice
// the multiplies per instruction of sdot. Panels are packed eight k wide, so one load holds 2
// rows of x by 8 k; the weight operand is 2 weight rows by the same 8 k. Per pass, 4 weight
// rows x 16 rows of x: 16 accumulators of 2x2, lanes [x_r·w_t, x_r·w_t+1, x_r+1·w_t,
// x_r+1·w_t+1].
template <int kSubBlock>
SPARKD_CPU_I8MM void band_i8mm(const WeightTile& w, int t0, int64_t block, const PanelBlock& a,
                               const KQuantLayout& layout, float buf[kBandRows][kPanelRows]) {
  constexpr int kSubBlocks = kBlock / kSubBlock;
  constexpr int kGroups8PerSub = kSubBlock / 8;
  constexpr int kRowPairs = kPanelRows / 2;
  constexpr int kWeightPairs = 2;  // 4 weight rows per pass
  for (int pass = 0; pass < kBandRows; pass += 2 * kWeightPairs) {
    const uint8_t* codes[2 * kWeightPairs];
    size_t cells[2 * kWeightPairs];
    for (int t = 0; t < 2 * kWeightPairs; ++t) {
      cells[t] = w.cell(t0 + pass + t, block);
      codes[t] = w.codes.data() + cells[t] * kBlock;
    }
    // Per weight pair: its two rows' values in the lane order above.
    const auto pair_lanes = [&](int pair, const auto& of_row) {
      const int32x2_t two = {of_row(2 * pair), of_row(2 * pair + 1)};
      return vcombine_s32(two, two);
    };
    int32x4_t s1[kWeightPairs][kRowPairs], s2[kWeightPairs][kRowPairs];
    for (int u = 0; u < kWeightPairs; ++u) {
      for (int p = 0; p < kRowPairs; ++p) s1[u][p] = s2[u][p] = vdupq_n_s32(0);
    }
    for (int s = 0; s < kSubBlocks; ++s) {
      // Each x row's Σ of the sub-block's codes, in the lanes of its row: [r, r, r+1, r+1].
      int32x4_t sums[kRowPairs];
      for (int p = 0; p < kRowPairs; ++p) {
        int32_t sum_r = 0, sum_r1 = 0;
        for (int v = 0; v < kSubBlock / 16; ++v) {
          sum_r += a.sums16[s * (kSubBlock / 16) + v][2 * p];
          sum_r1 += a.sums16[s * (kSubBlock / 16) + v][2 * p + 1];
        }
        sums[p] = int32x4_t{sum_r, sum_r, sum_r1, sum_r1};
      }
      int32x4_t raw[kWeightPairs][kRowPairs];
      for (int u = 0; u < kWeightPairs; ++u) {
        for (int p = 0; p < kRowPairs; ++p) raw[u][p] = vdupq_n_s32(0);
      }
#pragma GCC unroll 4
      for (int g = 0; g < kGroups8PerSub; ++g) {
        const int group8 = s * kGroups8PerSub + g;
        int8x16_t w_codes[kWeightPairs];
        for (int u = 0; u < kWeightPairs; ++u) {
          w_codes[u] = vreinterpretq_s8_u8(vcombine_u8(vld1_u8(codes[2 * u] + 8 * group8),
                                                       vld1_u8(codes[2 * u + 1] + 8 * group8)));
        }
        for (int p = 0; p < kRowPairs; ++p) {
          const int8x16_t x_codes = vld1q_s8(a.eight_wide(group8, 2 * p));
          for (int u = 0; u < kWeightPairs; ++u) {
            raw[u][p] = vmmlaq_s32(raw[u][p], x_codes, w_codes[u]);
          }
        }
      }
      for (int u = 0; u < kWeightPairs; ++u) {
        const int32x4_t scale =
            pair_lanes(u, [&](int t) { return w.scales[cells[t] * kMaxSubBlocks + s]; });
        const int32x4_t min =
            pair_lanes(u, [&](int t) { return w.mins[cells[t] * kMaxSubBlocks + s]; });
        for (int p = 0; p < kRowPairs; ++p) {
          const int32x4_t corrected = vmlsq_n_s32(raw[u][p], sums[p], layout.bias);
          s1[u][p] = vmlaq_s32(s1[u][p], corrected, scale);
          if (layout.has_min) s2[u][p] = vmlaq_s32(s2[u][p], sums[p], min);
        }
      }
    }
    for (int u = 0; u < kWeightPairs; ++u) {
      const int t = pass + 2 * u;
      const float32x4_t d = {w.d[cells[2 * u]], w.d[cells[2 * u + 1]], w.d[cells[2 * u]],
                             w.d[cells[2 * u + 1]]};
      const float32x4_t dmin = {w.dmin[cells[2 * u]], w.dmin[cells[2 * u + 1]],
                                w.dmin[cells[2 * u]], w.dmin[cells[2 * u + 1]]};
      for (int p = 0; p < kRowPairs; ++p) {
        float32x4_t result = vmulq_f32(vcvtq_f32_s32(s1[u][p]), d);
        if (layout.has_min) result = vmlsq_f32(result, vcvtq_f32_s32(s2[u][p]), dmin);
        const float32x4_t x_d = {a.d[2 * p], a.d[2 * p], a.d[2 * p + 1], a.d[2 * p + 1]};
        float lanes[4];
        vst1q_f32(lanes, vmulq_f32(result, x_d));
        buf[t][2 * p] += lanes[0];
        buf[t + 1][2 * p] += lanes[1];
        buf[t][2 * p + 1] += lanes[2];
        buf[t + 1][2 * p + 1] += lanes[3];
      }
    }
  }
}
#endif

// buf[t][j] = Σ over all blocks of weight row (t0 + t) · panel row j, for t < kBandRows;
// `panel` is the panel's first block.
using BandFn = void (*)(const WeightTile&, int, const PanelBlock*, const KQuantLayout&,
                        float[kBandRows][kPanelRows]);

// A kernel of one block at a time as a BandFn.
template <void (*kBlockBand)(const WeightTile&, int, int64_t, const PanelBlock&,
                             const KQuantLayout&, float[kBandRows][kPanelRows])>
void block_by_block(const WeightTile& w, int t0, const PanelBlock* panel,
                    const KQuantLayout& layout, float buf[kBandRows][kPanelRows]) {
  for (int t = 0; t < kBandRows; ++t) std::fill_n(buf[t], kPanelRows, 0.0f);
  for (int64_t block = 0; block < w.blocks; ++block) {
    kBlockBand(w, t0, block, panel[block], layout, buf);
  }
}

BandFn band_for(const KernelConfig& config, int sub_block) {
#if SPARKD_CPU_X86
  if (config.avx512_vnni) return sub_block == 32 ? band_vnni<32> : band_vnni<16>;
#endif
#if SPARKD_CPU_ARM
  if (config.arm_i8mm) {
    return sub_block == 32 ? block_by_block<band_i8mm<32>> : block_by_block<band_i8mm<16>>;
  }
  if (config.arm_dotprod) {
    return sub_block == 32 ? block_by_block<band_dotprod<32>> : block_by_block<band_dotprod<16>>;
  }
#endif
  static_cast<void>(config);
  return sub_block == 32 ? block_by_block<band_portable<32>> : block_by_block<band_portable<16>>;
}

// y[j][t] = buf[t][j] (+ bias[t]) for t < rows, j < panel_rows: a tile's results into its
// column strip of y. With AVX-512 one gather and one (masked) store per row of y: the
// scalar stores, 16 to each line of y, filled the store queue while the lines missed.
#if SPARKD_CPU_X86
SPARKD_CPU_VNNI void store_transposed_avx512(const float buf[kTileRows][kPanelRows], int rows,
                                             int panel_rows, const float* bias, float* y,
                                             int64_t n) {
  static_assert(kTileRows == 16 && kPanelRows == 16);
  const __mmask16 valid = static_cast<__mmask16>((1u << rows) - 1);
  const __m512i column =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(kPanelRows));
  const __m512 bias_row = bias ? _mm512_maskz_loadu_ps(valid, bias) : _mm512_setzero_ps();
  for (int j = 0; j < panel_rows; ++j) {
    const __m512 values =
        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, column, &buf[0][j], 4);
    _mm512_mask_storeu_ps(y + j * n, valid, _mm512_add_ps(values, bias_row));
  }
}
#endif

void store_transposed(const KernelConfig& config, const float buf[kTileRows][kPanelRows], int rows,
                      int panel_rows, const float* bias, float* y, int64_t n) {
#if SPARKD_CPU_X86
  if (config.avx512_vnni) return store_transposed_avx512(buf, rows, panel_rows, bias, y, n);
#endif
  static_cast<void>(config);
  for (int j = 0; j < panel_rows; ++j) {
    for (int t = 0; t < rows; ++t) y[j * n + t] = bias ? buf[t][j] + bias[t] : buf[t][j];
  }
}

}  // namespace

bool quantized_gemm_applies(const KernelConfig& config, DType weight_dtype, int64_t m) {
  const bool k_quant = weight_dtype == DType::kQ2_K || weight_dtype == DType::kQ3_K ||
                       weight_dtype == DType::kQ4_K || weight_dtype == DType::kQ5_K ||
                       weight_dtype == DType::kQ6_K;
  // With VNNI or sdot the tiles win from a single panel on; on x86 without VNNI only the
  // portable kernels use them (AVX2's dot products are faster than the scalar micro-kernel).
  const bool kernel =
      config.avx512_vnni || config.arm_dotprod || config.simd == SimdLevel::kPortable;
  return k_quant && kernel && m >= kQuantizedGemmMinRows;
}

void quantized_gemm(const KernelConfig& config, const float* x, int64_t m, int64_t k,
                    const void* weight, DType weight_dtype, int64_t n, const float* bias,
                    float* y) {
  const KQuantLayout layout = layout_of(weight_dtype);
  const int64_t blocks = k / kBlock;
  std::vector<PanelBlock> panels;
  pack_panels(config, config.arm_i8mm ? PanelLayout::kEightWide : PanelLayout::kFourWide, x, m, k,
              panels);
  const int64_t panel_count = (m + kPanelRows - 1) / kPanelRows;
  const BandFn band = band_for(config, layout.sub_block);
  const size_t row_bytes = dtype_row_bytes(weight_dtype, k);
  const int64_t tiles = (n + kTileRows - 1) / kTileRows;

  parallel_for_dynamic(config, tiles, kTileRows * k * m, [&](int64_t tile_index) {
    thread_local WeightTile tile;
    const int64_t first_row = tile_index * kTileRows;
    const int rows = static_cast<int>(std::min<int64_t>(kTileRows, n - first_row));
    tile.unpack(weight_dtype, static_cast<const uint8_t*>(weight), row_bytes, first_row, rows,
                blocks);
    for (int64_t p = 0; p < panel_count; ++p) {
      // This tile's outputs are a column strip of y: each panel's land in 16 lines a row of y
      // apart, which no hardware prefetcher foresees. Ask for the next panel's lines now, so
      // their stores don't each wait on a miss.
      for (int64_t j = (p + 1) * kPanelRows; j < std::min(m, (p + 2) * kPanelRows); ++j) {
        __builtin_prefetch(y + j * n + first_row, 1);
      }
      alignas(64) float buf[kTileRows][kPanelRows];
      const PanelBlock* panel = &panels[static_cast<size_t>(p * blocks)];
      band(tile, 0, panel, layout, buf);
      if (rows > kBandRows) band(tile, kBandRows, panel, layout, buf + kBandRows);
      const int panel_rows = static_cast<int>(std::min<int64_t>(kPanelRows, m - p * kPanelRows));
      store_transposed(config, buf, rows, panel_rows, bias ? bias + first_row : nullptr,
                       y + p * kPanelRows * n + first_row, n);
    }
  });
}

}  // namespace sparkd::cpu
