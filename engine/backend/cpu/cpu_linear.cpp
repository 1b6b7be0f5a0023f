// y = x·Wᵀ + b: the op that dominates every model's time.
//
// Decode (a few rows of x) is memory-bound: each thread streams a contiguous range of W's
// rows exactly once and dots each row with every row of x while it is in registers (AVX2:
// 16-bit weights are widened to F32 right after the load) or in L1 (portable: the row is
// converted into a scratch row first).
//
// Prefill (many rows) is compute-bound: a GEMM in the BLIS style. Per task (a block of W's
// rows times a block of x's rows) and per depth slice, W is packed (converted to F32 and
// transposed) into a [kc x nc] panel in per-thread memory and x into a [mc x kc] block; a
// register-blocked micro-kernel then computes [rows x cols] tiles of y. A packed panel is
// reused by all mc rows of x, so 16-bit conversion costs 1/mc of the arithmetic.
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
constexpr int64_t kGemvMaxRows = 4;
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
  constexpr int kUnroll = kRows <= 2 ? 4 : 2;
  constexpr int64_t kStep = 8 * kUnroll;
  for (int64_t j = row_begin; j < row_end; ++j) {
    const int64_t row_offset = j * k;
    __m256 acc[kRows][kUnroll];
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
      for (int u = 0; u < kUnroll; ++u) acc[r][u] = _mm256_setzero_ps();
    }
    int64_t c = 0;
    for (; c + kStep <= k; c += kStep) {
#pragma GCC unroll 4
      for (int u = 0; u < kUnroll; ++u) {
        const __m256 w = load_weights8<kDtype>(weight, row_offset + c + 8 * u);
#pragma GCC unroll 4
        for (int r = 0; r < kRows; ++r) {
          acc[r][u] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + r * k + c + 8 * u), acc[r][u]);
        }
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) {
      __m256 total = acc[r][0];
#pragma GCC unroll 4
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
    default:
      return gemv_rows_avx2<kDtype, 4>(x, k, weight, n, bias, row_begin, row_end, y);
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

// c[rows, cols] (row stride ldc) += a_packed[kc][rows] · b_packed[kc][cols].
using MicroKernelFn = void (*)(int64_t kc, const float* a_packed, const float* b_packed, float* c,
                               int64_t ldc);
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
                           int64_t ldc) {
  Float4 acc[kPortableRows][2];
#pragma GCC unroll 4
  for (int64_t r = 0; r < kPortableRows; ++r) {
    std::memcpy(&acc[r][0], c + r * ldc, sizeof(Float4));
    std::memcpy(&acc[r][1], c + r * ldc + 4, sizeof(Float4));
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
                                       float* c, int64_t ldc) {
  constexpr int kRows = 6;
  __m256 acc[kRows][2];
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) {
    acc[r][0] = _mm256_loadu_ps(c + r * ldc);
    acc[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
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
                                                            int64_t ldc) {
  constexpr int kRows = 12;
  __m512 acc[kRows][2];
#pragma GCC unroll 12
  for (int r = 0; r < kRows; ++r) {
    acc[r][0] = _mm512_loadu_ps(c + r * ldc);
    acc[r][1] = _mm512_loadu_ps(c + r * ldc + 16);
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
// Upper bound on W rows per task (the packed panel is kc x this).
constexpr int64_t kGemmCols = 256;

// W rows [col_begin, col_begin + cols) and depth [depth_begin, depth_begin + depth) as F32
// micro-panels [depth][tile_cols], zero-padded past W's last row.
SPARKD_CPU_CLONES
void pack_weight_panel(const void* weight, DType weight_dtype, int64_t k, int64_t n,
                       int64_t col_begin, int64_t cols, int64_t depth_begin, int64_t depth,
                       int64_t tile_cols, float* row_f32, float* panel) {
  for (int64_t tile = 0; tile < cols; tile += tile_cols) {
    float* micro_panel = panel + tile * depth;
    for (int64_t l = 0; l < tile_cols; ++l) {
      const int64_t row = col_begin + tile + l;
      if (row >= n) {
        for (int64_t p = 0; p < depth; ++p) micro_panel[p * tile_cols + l] = 0.0f;
        continue;
      }
      const float* src;
      if (weight_dtype == DType::kF32) {
        src = static_cast<const float*>(weight) + row * k + depth_begin;
      } else {
        convert_to_f32(weight, weight_dtype, row * k + depth_begin, depth, row_f32);
        src = row_f32;
      }
      for (int64_t p = 0; p < depth; ++p) micro_panel[p * tile_cols + l] = src[p];
    }
  }
}

// x rows [row_begin, row_begin + rows) and depth slice as micro-panels [depth][tile_rows],
// zero-padded past x's last row.
void pack_input_block(const float* x, int64_t m, int64_t k, int64_t row_begin, int64_t rows,
                      int64_t depth_begin, int64_t depth, int64_t tile_rows, float* block) {
  for (int64_t tile = 0; tile < rows; tile += tile_rows) {
    float* micro_panel = block + tile * depth;
    for (int64_t r = 0; r < tile_rows; ++r) {
      const int64_t row = row_begin + tile + r;
      if (row >= m) {
        for (int64_t p = 0; p < depth; ++p) micro_panel[p * tile_rows + r] = 0.0f;
        continue;
      }
      const float* src = x + row * k + depth_begin;
      for (int64_t p = 0; p < depth; ++p) micro_panel[p * tile_rows + r] = src[p];
    }
  }
}

void gemm(const KernelConfig& config, const float* x, int64_t m, int64_t k, const void* weight,
          DType weight_dtype, int64_t n, const float* bias, float* y) {
  const MicroKernel kernel = micro_kernel_for(config.simd);
  const int64_t max_rows = round_up(kGemmRows, kernel.rows);
  // Enough column blocks that each thread gets a few (load balance), none wider than
  // kGemmCols.
  const int64_t max_cols =
      std::clamp(round_up(ceil_div(n, int64_t{4} * config.num_threads), kernel.cols), kernel.cols,
                 round_up(kGemmCols, kernel.cols));
  const int64_t col_blocks = ceil_div(n, max_cols);
  const int64_t row_blocks = ceil_div(m, max_rows);
  [[maybe_unused]] const bool parallel =
      config.num_threads > 1 && col_blocks * row_blocks > 1 && m * n * k >= kMinParallelWork * 64;

#pragma omp parallel for collapse(2) schedule(dynamic) num_threads(config.num_threads) if (parallel)
  for (int64_t col_block = 0; col_block < col_blocks; ++col_block) {
    for (int64_t row_block = 0; row_block < row_blocks; ++row_block) {
      const int64_t col_begin = col_block * max_cols;
      const int64_t cols = std::min(max_cols, n - col_begin);
      const int64_t row_begin = row_block * max_rows;
      const int64_t rows = std::min(max_rows, m - row_begin);
      const int64_t padded_cols = round_up(cols, kernel.cols);
      const int64_t padded_rows = round_up(rows, kernel.rows);
      float* panel = thread_scratch(0, static_cast<size_t>(padded_cols * kGemmDepth));
      float* block = thread_scratch(1, static_cast<size_t>(padded_rows * kGemmDepth));
      float* row_f32 = thread_scratch(2, kGemmDepth);
      float* edge_tile = thread_scratch(3, static_cast<size_t>(kernel.rows * kernel.cols));

      for (int64_t i = 0; i < rows; ++i) {
        std::fill_n(y + (row_begin + i) * n + col_begin, cols, 0.0f);
      }
      for (int64_t depth_begin = 0; depth_begin < k; depth_begin += kGemmDepth) {
        const int64_t depth = std::min(kGemmDepth, k - depth_begin);
        pack_weight_panel(weight, weight_dtype, k, n, col_begin, cols, depth_begin, depth,
                          kernel.cols, row_f32, panel);
        pack_input_block(x, m, k, row_begin, rows, depth_begin, depth, kernel.rows, block);
        for (int64_t tile_col = 0; tile_col < cols; tile_col += kernel.cols) {
          for (int64_t tile_row = 0; tile_row < rows; tile_row += kernel.rows) {
            const float* a_packed = block + tile_row * depth;
            const float* b_packed = panel + tile_col * depth;
            float* c = y + (row_begin + tile_row) * n + col_begin + tile_col;
            const int64_t valid_rows = std::min(kernel.rows, rows - tile_row);
            const int64_t valid_cols = std::min(kernel.cols, cols - tile_col);
            if (valid_rows == kernel.rows && valid_cols == kernel.cols) {
              kernel.run(depth, a_packed, b_packed, c, n);
              continue;
            }
            // A partial tile at the edge of y: compute the full tile into scratch.
            std::fill_n(edge_tile, kernel.rows * kernel.cols, 0.0f);
            for (int64_t r = 0; r < valid_rows; ++r) {
              std::copy_n(c + r * n, valid_cols, edge_tile + r * kernel.cols);
            }
            kernel.run(depth, a_packed, b_packed, edge_tile, kernel.cols);
            for (int64_t r = 0; r < valid_rows; ++r) {
              std::copy_n(edge_tile + r * kernel.cols, valid_cols, c + r * n);
            }
          }
        }
      }
      if (bias) {
        for (int64_t i = 0; i < rows; ++i) {
          float* y_row = y + (row_begin + i) * n + col_begin;
          for (int64_t j = 0; j < cols; ++j) y_row[j] += bias[col_begin + j];
        }
      }
    }
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
  if (m <= kGemvMaxRows) {
    gemv(config, x, m, k, weight, weight_dtype, n, bias, y);
  } else {
    gemm(config, x, m, k, weight, weight_dtype, n, bias, y);
  }
}

}  // namespace sparkd::cpu
