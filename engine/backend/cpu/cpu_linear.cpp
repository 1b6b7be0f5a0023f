// y = x·Wᵀ + b: the op that dominates every model's time.
//
// Decode (a few rows of x) is memory-bound: each thread streams a contiguous range of W's
// rows exactly once and dots each row with every row of x while it is in registers (AVX2:
// 16-bit weights are widened to F32 right after the load) or in L1 (portable: the row is
// converted into a scratch row first).
//
// Prefill (many rows) is compute-bound: a GEMM in the BLIS style. W is packed once per call
// (converted to F32 and transposed) into [kc x cols] micro-panels and x into [kc x rows]
// ones; per task (a block of W's rows times a block of x's rows) and depth slice, a
// register-blocked micro-kernel computes [rows x cols] tiles of y. Each packed element is
// reused by every tile of the other operand, so packing and 16-bit conversion cost 1/m or
// 1/n of the arithmetic.
//
// All sums are F32; the bias is added once at the end, as PyTorch's addmm does in effect.
#include <algorithm>
#include <cstring>

#include "engine/backend/cpu/cpu_kernels.h"
#include "engine/backend/half.h"

namespace sparkd::cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t round_up(int64_t a, int64_t multiple) {
  return ceil_div(a, multiple) * multiple;
}

// ---- decode: streaming GEMV -------------------------------------------------------------

// Up to this many rows of x, W is streamed row by row (GEMV); above, the GEMM packs it.
constexpr int64_t kGemvMaxRows = 8;
// Up to this many rows, W is streamed once per kGemvMaxRows rows instead of packed for the
// GEMM: re-reading it twice costs less than converting and transposing it (decode batch 16
// of a 1024-wide BF16 model: 121 ms per step with the GEMM, see the commit for the new figure).
constexpr int64_t kGemvPassMaxRows = 2 * kGemvMaxRows;
// W rows per scheduling unit: large enough that each thread reads long contiguous runs.
constexpr int64_t kGemvRowsPerChunk = 16;

// y[:, rows [row_begin, row_end)] for all m rows of x: the portable kernel.
SPARKD_CPU_CLONES
void gemv_rows_portable(const float* x, int64_t m, int64_t k, const void* weight,
                        DType weight_dtype, int64_t n, const float* bias, int64_t row_begin,
                        int64_t row_end, float* y) {
  float* row_f32 = thread_scratch(0, static_cast<size_t>(k));
  for (int64_t j = row_begin; j < row_end; ++j) {
    const float* weight_row;
    if (weight_dtype == DType::kF32) {
      weight_row = static_cast<const float*>(weight) + j * k;
    } else {
      convert_to_f32(weight, weight_dtype, j * k, k, row_f32);
      weight_row = row_f32;
    }
    for (int64_t i = 0; i < m; ++i) {
      const float sum = dot_f32<32>(x + i * k, weight_row, k);
      y[i * n + j] = bias ? sum + bias[j] : sum;
    }
  }
}

#if SPARKD_CPU_X86
// Weights [index, index + 8) as F32, converted in registers.
template <DType kDtype>
SPARKD_CPU_AVX2 inline __m256 load_weights8(const void* weight, int64_t index) {
  if constexpr (kDtype == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(weight) + index);
  } else {
    const __m128i halves = _mm_loadu_si128(
        reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(weight) + index));
    if constexpr (kDtype == DType::kF16) return _mm256_cvtph_ps(halves);
    // bf16 is the top half of an f32.
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16));
  }
}

template <DType kDtype>
inline float load_weight(const void* weight, int64_t index) {
  if constexpr (kDtype == DType::kF32) return static_cast<const float*>(weight)[index];
  const uint16_t bits = static_cast<const uint16_t*>(weight)[index];
  return kDtype == DType::kF16 ? f16_to_f32_branchless(bits) : bf16_to_f32(bits);
}

// AVX2: each weight row is loaded and converted once, in registers, and multiplied into all
// kRows rows of x; kUnroll independent accumulators per row hide the FMA latency.
template <DType kDtype, int kRows>
SPARKD_CPU_AVX2 void gemv_rows_avx2(const float* x, int64_t k, const void* weight, int64_t n,
                                    const float* bias, int64_t row_begin, int64_t row_end,
                                    float* y) {
  constexpr int kUnroll = kRows <= 2 ? 4 : (kRows <= 4 ? 2 : 1);
  constexpr int64_t kStep = 8 * kUnroll;
  for (int64_t j = row_begin; j < row_end; ++j) {
    const int64_t row_offset = j * k;
    __m256 acc[kRows][kUnroll];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 8
      for (int u = 0; u < kUnroll; ++u) acc[r][u] = _mm256_setzero_ps();
    }
    int64_t c = 0;
    for (; c + kStep <= k; c += kStep) {
#pragma GCC unroll 8
      for (int u = 0; u < kUnroll; ++u) {
        const __m256 w = load_weights8<kDtype>(weight, row_offset + c + 8 * u);
#pragma GCC unroll 8
        for (int r = 0; r < kRows; ++r) {
          acc[r][u] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + r * k + c + 8 * u), acc[r][u]);
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      __m256 total = acc[r][0];
#pragma GCC unroll 8
      for (int u = 1; u < kUnroll; ++u) total = _mm256_add_ps(total, acc[r][u]);
      float sum = horizontal_sum(total);
      for (int64_t tail = c; tail < k; ++tail) {
        sum += load_weight<kDtype>(weight, row_offset + tail) * x[r * k + tail];
      }
      y[r * n + j] = bias ? sum + bias[j] : sum;
    }
  }
}

template <DType kDtype>
void gemv_rows_avx2_dispatch(const float* x, int64_t m, int64_t k, const void* weight, int64_t n,
                             const float* bias, int64_t row_begin, int64_t row_end, float* y) {
  switch (m) {
    case 1:
      return gemv_rows_avx2<kDtype, 1>(x, k, weight, n, bias, row_begin, row_end, y);
    case 2:
      return gemv_rows_avx2<kDtype, 2>(x, k, weight, n, bias, row_begin, row_end, y);
    case 3:
      return gemv_rows_avx2<kDtype, 3>(x, k, weight, n, bias, row_begin, row_end, y);
    case 4:
      return gemv_rows_avx2<kDtype, 4>(x, k, weight, n, bias, row_begin, row_end, y);
    case 5:
      return gemv_rows_avx2<kDtype, 5>(x, k, weight, n, bias, row_begin, row_end, y);
    case 6:
      return gemv_rows_avx2<kDtype, 6>(x, k, weight, n, bias, row_begin, row_end, y);
    case 7:
      return gemv_rows_avx2<kDtype, 7>(x, k, weight, n, bias, row_begin, row_end, y);
    default:
      return gemv_rows_avx2<kDtype, 8>(x, k, weight, n, bias, row_begin, row_end, y);
  }
}
#endif

void gemv_rows(SimdLevel simd, const float* x, int64_t m, int64_t k, const void* weight,
               DType weight_dtype, int64_t n, const float* bias, int64_t row_begin, int64_t row_end,
               float* y) {
#if SPARKD_CPU_X86
  if (simd != SimdLevel::kPortable) {
    switch (weight_dtype) {
      case DType::kF32:
        return gemv_rows_avx2_dispatch<DType::kF32>(x, m, k, weight, n, bias, row_begin, row_end,
                                                    y);
      case DType::kF16:
        return gemv_rows_avx2_dispatch<DType::kF16>(x, m, k, weight, n, bias, row_begin, row_end,
                                                    y);
      case DType::kBF16:
        return gemv_rows_avx2_dispatch<DType::kBF16>(x, m, k, weight, n, bias, row_begin, row_end,
                                                     y);
      default:
        break;
    }
  }
#endif
  static_cast<void>(simd);
  gemv_rows_portable(x, m, k, weight, weight_dtype, n, bias, row_begin, row_end, y);
}

void gemv(const KernelConfig& config, const float* x, int64_t m, int64_t k, const void* weight,
          DType weight_dtype, int64_t n, const float* bias, float* y) {
  const int64_t chunks = ceil_div(n, kGemvRowsPerChunk);
  [[maybe_unused]] const bool parallel = config.num_threads > 1 && n * k >= kMinParallelWork;
  // Static schedule: thread t reads one contiguous range of W, which the prefetchers like.
#pragma omp parallel for schedule(static) num_threads(config.num_threads) if (parallel)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t row_begin = chunk * kGemvRowsPerChunk;
    gemv_rows(config.simd, x, m, k, weight, weight_dtype, n, bias, row_begin,
              std::min(n, row_begin + kGemvRowsPerChunk), y);
  }
}

// ---- prefill: packed GEMM ---------------------------------------------------------------

// c[rows, cols] (row stride ldc) = a_packed[kc][rows] · b_packed[kc][cols] (+ c when
// `accumulate`; otherwise c is only written).
using MicroKernelFn = void (*)(int64_t kc, const float* a_packed, const float* b_packed, float* c,
                               int64_t ldc, bool accumulate);
struct MicroKernel {
  int64_t rows;
  int64_t cols;
  MicroKernelFn run;
};

// Portable: a 4 x 8 tile in eight 4-float vector registers (GCC/Clang vector extensions:
// SSE2 on baseline x86-64, NEON on aarch64), few enough for either register file.
using Float4 = float __attribute__((vector_size(16)));
constexpr int64_t kPortableRows = 4;
constexpr int64_t kPortableCols = 8;
void micro_kernel_portable(int64_t kc, const float* a_packed, const float* b_packed, float* c,
                           int64_t ldc, bool accumulate) {
  Float4 acc[kPortableRows][2] = {};
  if (accumulate) {
#pragma GCC unroll 4
    for (int64_t r = 0; r < kPortableRows; ++r) {
      std::memcpy(&acc[r][0], c + r * ldc, sizeof(Float4));
      std::memcpy(&acc[r][1], c + r * ldc + 4, sizeof(Float4));
    }
  }
  for (int64_t p = 0; p < kc; ++p) {
    Float4 b0, b1;
    std::memcpy(&b0, b_packed + p * kPortableCols, sizeof b0);
    std::memcpy(&b1, b_packed + p * kPortableCols + 4, sizeof b1);
#pragma GCC unroll 4
    for (int64_t r = 0; r < kPortableRows; ++r) {
      const float a = a_packed[p * kPortableRows + r];
      acc[r][0] += a * b0;
      acc[r][1] += a * b1;
    }
  }
#pragma GCC unroll 4
  for (int64_t r = 0; r < kPortableRows; ++r) {
    std::memcpy(c + r * ldc, &acc[r][0], sizeof(Float4));
    std::memcpy(c + r * ldc + 4, &acc[r][1], sizeof(Float4));
  }
}

#if SPARKD_CPU_X86
// AVX2 + FMA: a 6 x 16 tile of y in 12 ymm accumulators; per depth step two loads of W and
// six broadcasts of x feed twelve FMAs.
SPARKD_CPU_AVX2 void micro_kernel_avx2(int64_t kc, const float* a_packed, const float* b_packed,
                                       float* c, int64_t ldc, bool accumulate) {
  constexpr int kRows = 6;
  __m256 acc[kRows][2];
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) {
    acc[r][0] = accumulate ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
    acc[r][1] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b_packed + p * 16);
    const __m256 b1 = _mm256_loadu_ps(b_packed + p * 16 + 8);
#pragma GCC unroll 6
    for (int r = 0; r < kRows; ++r) {
      const __m256 a = _mm256_broadcast_ss(a_packed + p * kRows + r);
      acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) {
    _mm256_storeu_ps(c + r * ldc, acc[r][0]);
    _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
  }
}

// AVX-512: a 12 x 32 tile in 24 zmm accumulators.
__attribute__((target("avx512f"))) void micro_kernel_avx512(int64_t kc, const float* a_packed,
                                                            const float* b_packed, float* c,
                                                            int64_t ldc, bool accumulate) {
  constexpr int kRows = 12;
  __m512 acc[kRows][2];
#pragma GCC unroll 12
  for (int r = 0; r < kRows; ++r) {
    acc[r][0] = accumulate ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
    acc[r][1] = accumulate ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b_packed + p * 32);
    const __m512 b1 = _mm512_loadu_ps(b_packed + p * 32 + 16);
#pragma GCC unroll 12
    for (int r = 0; r < kRows; ++r) {
      const __m512 a = _mm512_set1_ps(a_packed[p * kRows + r]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < kRows; ++r) {
    _mm512_storeu_ps(c + r * ldc, acc[r][0]);
    _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);
  }
}
#endif

MicroKernel micro_kernel_for(SimdLevel level) {
#if SPARKD_CPU_X86
  if (level == SimdLevel::kAvx512) return {12, 32, micro_kernel_avx512};
  if (level == SimdLevel::kAvx2) return {6, 16, micro_kernel_avx2};
#endif
  static_cast<void>(level);
  return {kPortableRows, kPortableCols, micro_kernel_portable};
}

// Depth of a packed slice: a micro-panel of W (kc x cols floats) stays in L1.
constexpr int64_t kGemmDepth = 256;
// Rows of x per task: the packed x block (kGemmRows x kc) and the y tile stay in L2.
constexpr int64_t kGemmRows = 192;
// Upper bound on W rows per task (its packed panel is kc x this).
constexpr int64_t kGemmCols = 256;

// The depth loop is outermost (BLIS order): for each slice of depth kGemmDepth, both
// operands' slices are packed once, shared by the team, and then every tile of y takes that
// slice's contribution. Packing is therefore O(mk + nk) against the GEMM's O(mnk) (packing
// per task instead repacked x once per column block and W once per row block: a third of
// the arithmetic at BERT's sizes), and the packed buffers stay (m + n) x kGemmDepth floats
// whatever K is, so a large model's prefill doesn't hold a whole F32 copy of W.

// Rows [row, row + tile) of depth slice [depth_begin, depth_begin + depth) of a row-major
// [rows, k] matrix of `dtype`, as `depth` groups of `tile` consecutive floats at
// packed + (row - row_origin) * depth, zero-padded past `rows`. `row_f32` holds tile * depth floats
// for 16-bit conversion.
SPARKD_CPU_CLONES
void pack_tile(const void* src, DType dtype, int64_t rows, int64_t k, int64_t row, int64_t tile,
               int64_t depth_begin, int64_t depth, float* row_f32, float* packed,
               int64_t row_origin = 0) {
  const int64_t valid = std::min(tile, rows - row);
  float* dst = packed + (row - row_origin) * depth;
  const float* base;
  int64_t stride;
  if (dtype == DType::kF32) {
    base = static_cast<const float*>(src) + row * k + depth_begin;
    stride = k;
  } else {
    for (int64_t l = 0; l < valid; ++l) {
      convert_to_f32(src, dtype, (row + l) * k + depth_begin, depth, row_f32 + l * depth);
    }
    base = row_f32;
    stride = depth;
  }
  // Writes stream through dst in order; the `valid` source rows are each read in order.
  for (int64_t p = 0; p < depth; ++p) {
    for (int64_t l = 0; l < valid; ++l) dst[p * tile + l] = base[l * stride + p];
    for (int64_t l = valid; l < tile; ++l) dst[p * tile + l] = 0.0f;
  }
}

// One depth slice of a whole [rows, k] matrix packed as above, the tiles shared out over
// the team.
void pack_slice(const KernelConfig& config, const void* src, DType dtype, int64_t rows, int64_t k,
                int64_t tile, int64_t depth_begin, int64_t depth, float* packed) {
  parallel_for(config, ceil_div(rows, tile), tile * depth, [&](int64_t t) {
    float* row_f32 =
        dtype == DType::kF32 ? nullptr : thread_scratch(2, static_cast<size_t>(tile * depth));
    pack_tile(src, dtype, rows, k, t * tile, tile, depth_begin, depth, row_f32, packed);
  });
}

void gemm(const KernelConfig& config, const float* x, int64_t m, int64_t k, const void* weight,
          DType weight_dtype, int64_t n, const float* bias, float* y) {
  const MicroKernel kernel = micro_kernel_for(config.simd);
  const int64_t padded_m = round_up(m, kernel.rows);
  const int64_t padded_n = round_up(n, kernel.cols);
  // The calling thread's slots 4 and 5; the team's kernels below use only slots 0 to 3.
  float* packed_x = thread_scratch(4, static_cast<size_t>(padded_m * kGemmDepth));

  const int64_t max_rows = round_up(kGemmRows, kernel.rows);
  // Enough column blocks that each thread gets a few (load balance), none wider than
  // kGemmCols.
  const int64_t max_cols =
      std::clamp(round_up(ceil_div(n, int64_t{4} * config.num_threads), kernel.cols), kernel.cols,
                 round_up(kGemmCols, kernel.cols));
  const int64_t col_blocks = ceil_div(n, max_cols);
  const int64_t row_blocks = ceil_div(m, max_rows);
  float* packed_w =
      row_blocks > 1 ? thread_scratch(5, static_cast<size_t>(padded_n * kGemmDepth)) : nullptr;
  [[maybe_unused]] const bool parallel =
      config.num_threads > 1 && col_blocks * row_blocks > 1 && m * n * k >= kMinParallelWork * 64;

  for (int64_t depth_begin = 0; depth_begin < k; depth_begin += kGemmDepth) {
    const int64_t depth = std::min(kGemmDepth, k - depth_begin);
    pack_slice(config, x, DType::kF32, m, k, kernel.rows, depth_begin, depth, packed_x);
    // With one block of x rows (decode batches, short prompts) every W panel is used by one
    // task only: that task packs it into its own cache-resident scratch, instead of the whole
    // slice making a round trip through memory (which cost more than the arithmetic at M=8).
    const bool shared_weight_panels = row_blocks > 1;
    if (shared_weight_panels) {
      pack_slice(config, weight, weight_dtype, n, k, kernel.cols, depth_begin, depth, packed_w);
    }
    // The first slice overwrites y's tiles, so y needs no zeroing.
    const bool accumulate = depth_begin > 0;

#pragma omp parallel for collapse(2) schedule(dynamic) num_threads(config.num_threads) if (parallel)
    for (int64_t col_block = 0; col_block < col_blocks; ++col_block) {
      for (int64_t row_block = 0; row_block < row_blocks; ++row_block) {
        const int64_t col_begin = col_block * max_cols;
        const int64_t cols = std::min(max_cols, n - col_begin);
        const int64_t row_begin = row_block * max_rows;
        const int64_t rows = std::min(max_rows, m - row_begin);
        float* edge_tile = thread_scratch(3, static_cast<size_t>(kernel.rows * kernel.cols));
        const float* block = packed_x + row_begin * depth;
        const float* panel = nullptr;
        if (shared_weight_panels) {
          panel = packed_w + col_begin * depth;
        } else {
          float* own_panel =
              thread_scratch(0, static_cast<size_t>(round_up(cols, kernel.cols) * depth));
          float* row_f32 = weight_dtype == DType::kF32
                               ? nullptr
                               : thread_scratch(2, static_cast<size_t>(kernel.cols * depth));
          for (int64_t tile_col = 0; tile_col < cols; tile_col += kernel.cols) {
            pack_tile(weight, weight_dtype, n, k, col_begin + tile_col, kernel.cols, depth_begin,
                      depth, row_f32, own_panel, col_begin);
          }
          panel = own_panel;
        }
        for (int64_t tile_col = 0; tile_col < cols; tile_col += kernel.cols) {
          for (int64_t tile_row = 0; tile_row < rows; tile_row += kernel.rows) {
            const float* a_packed = block + tile_row * depth;
            const float* b_packed = panel + tile_col * depth;
            float* c = y + (row_begin + tile_row) * n + col_begin + tile_col;
            const int64_t valid_rows = std::min(kernel.rows, rows - tile_row);
            const int64_t valid_cols = std::min(kernel.cols, cols - tile_col);
            if (valid_rows == kernel.rows && valid_cols == kernel.cols) {
              kernel.run(depth, a_packed, b_packed, c, n, accumulate);
              continue;
            }
            // A partial tile at the edge of y: compute the full tile into scratch.
            if (accumulate) {
              for (int64_t r = 0; r < valid_rows; ++r) {
                std::copy_n(c + r * n, valid_cols, edge_tile + r * kernel.cols);
              }
            }
            kernel.run(depth, a_packed, b_packed, edge_tile, kernel.cols, accumulate);
            for (int64_t r = 0; r < valid_rows; ++r) {
              std::copy_n(edge_tile + r * kernel.cols, valid_cols, c + r * n);
            }
          }
        }
      }
    }
  }
  if (bias) {
    parallel_for(config, m, n, [&](int64_t i) {
      float* y_row = y + i * n;
      for (int64_t j = 0; j < n; ++j) y_row[j] += bias[j];
    });
  }
}

}  // namespace

void linear(const KernelConfig& config, const float* x, int64_t m, int64_t k, const void* weight,
            DType weight_dtype, int64_t n, const float* bias, float* y) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) y[i * n + j] = bias ? bias[j] : 0.0f;
    }
    return;
  }
  if (dtype_is_quantized(weight_dtype)) {
    return quantized_linear(config, x, m, k, weight, weight_dtype, n, bias, y);
  }
  if (m <= kGemvPassMaxRows) {
    // Small decode batches: stream W once per kGemvMaxRows rows of x.
    for (int64_t first = 0; first < m; first += kGemvMaxRows) {
      gemv(config, x + first * k, std::min(kGemvMaxRows, m - first), k, weight, weight_dtype, n,
           bias, y + first * n);
    }
  } else {
    gemm(config, x, m, k, weight, weight_dtype, n, bias, y);
  }
}

}  // namespace sparkd::cpu
