// The CPU backend's kernels, on raw pointers: cpu_backend.cpp checks shapes and dtypes, then
// calls these. Activations are always F32 here; weights and KV caches may be 16-bit.
//
// Files, read in this order:
//   cpu_kernels.h     this header: checks, threading, dtype conversions, kernel entry points
//   cpu_common.cpp    checks, CPU feature detection, scratch memory, dtype conversions
//   cpu_dequantize.cpp quantized blocks -> F32 (the reference for the quantized kernels)
//   cpu_linear.cpp    y = x·Wᵀ + b: streaming GEMV for decode, packed GEMM for prefill
//   cpu_quant_linear.cpp  the same for quantized W: integer dot products per block
//   cpu_quant_gemm.cpp    prefill on K-quant W: an int8 GEMM over unpacked tiles (VNNI)
//   cpu_attention.cpp store_kv and attention (contiguous or paged KV, GQA, online softmax)
//   cpu_rows.cpp      norms, activations, rope, pooling: one row at a time
//   cpu_backend.cpp   the Backend: memory, shape checks, dispatch to the kernels
//
// Vector code: the build targets baseline x86-64 (SSE2), so
//   - row functions carry SPARKD_CPU_CLONES (GCC/Clang target_clones: an AVX2 copy picked at
//     load time) and loops written for the vectoriser (`#pragma omp simd`, fixed-width lanes);
//   - the innermost loops of linear and attention, where the compiler would not keep partial
//     sums in registers, have AVX2/FMA (and, for the GEMM, AVX-512) intrinsics versions,
//     chosen at run time from KernelConfig::simd, next to portable C++ versions that every
//     other CPU (aarch64 included) runs and that the tests check on x86 too.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "engine/backend/backend.h"
#include "engine/backend/op_checks.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SPARKD_CPU_X86 1
#define SPARKD_CPU_CLONES __attribute__((target_clones("avx2", "default")))
// Functions written with AVX2 intrinsics; called only when detected_simd_level() allows.
#define SPARKD_CPU_AVX2 __attribute__((target("avx2,fma,f16c")))
#include <immintrin.h>
#else
#define SPARKD_CPU_X86 0
#define SPARKD_CPU_CLONES
#endif

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define SPARKD_CPU_ARM 1
// Functions written with the Armv8.2 dot-product intrinsics (sdot); called only when
// detected_arm_dotprod() says so. The rest of the binary stays baseline Armv8-A.
#define SPARKD_CPU_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
// And the int8 matrix multiply (smmla), where detected_arm_i8mm() says so.
#define SPARKD_CPU_I8MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#include <arm_neon.h>
#else
#define SPARKD_CPU_ARM 0
#endif

namespace sparkd::cpu {

// ---- checks -----------------------------------------------------------------------------
// A kernel called with inconsistent shapes is a bug in the caller: print what was wrong and
// abort rather than read or write out of bounds.
[[noreturn]] void fail(const char* op, const std::string& message);

// The message expression is only evaluated when the check fails.
#define SPARKD_CPU_CHECK(condition, op, message)            \
  do {                                                      \
    if (!(condition)) ::sparkd::cpu::fail((op), (message)); \
  } while (0)

// ---- configuration ----------------------------------------------------------------------
// Ordered: each level includes the ones before it.
enum class SimdLevel { kPortable, kAvx2, kAvx512 };

// The widest level this CPU runs (kPortable off x86).
SimdLevel detected_simd_level();

struct KernelConfig {
  int num_threads = 1;
  SimdLevel simd = SimdLevel::kPortable;
  // AVX-512 VNNI (vpdpbusd) for the int8 GEMM of quantized prefill; only with kAvx512.
  bool avx512_vnni = false;
  // aarch64's int8 dot products (sdot) for quantized linear; false in portable mode.
  bool arm_dotprod = false;
  // aarch64's int8 matrix multiply (smmla) for the quantized prefill GEMM; only with
  // arm_dotprod, and off in CpuKernels::kAvx2 mode (so tests run the sdot GEMM too).
  bool arm_i8mm = false;
};

// Whether this CPU has AVX-512 VNNI (with AVX-512 BW and VL).
bool detected_avx512_vnni();
// Whether this CPU is aarch64 with the dot-product extension (Armv8.2 "asimddp").
bool detected_arm_dotprod();
// Whether this CPU is aarch64 with the int8 matrix multiply extension ("i8mm").
bool detected_arm_i8mm();

// Below this much work (elements touched, roughly) an op runs on the calling thread: waking
// the OpenMP team costs a few microseconds.
constexpr int64_t kMinParallelWork = int64_t{1} << 15;

// fn(i) for i in [0, count), split statically over the team when there is enough work.
template <typename Fn>
void parallel_for(const KernelConfig& config, int64_t count, int64_t work_per_item, Fn&& fn) {
  [[maybe_unused]] const bool parallel =
      config.num_threads > 1 && count > 1 && count * work_per_item >= kMinParallelWork;
#pragma omp parallel for num_threads(config.num_threads) schedule(static) if (parallel)
  for (int64_t i = 0; i < count; ++i) fn(i);
}

// The same, handed out in contiguous chunks (a quarter of a thread's share each) to whichever
// thread is free: for the long weight-streaming loops of quantized linear, where a static
// split leaves one core waiting at the barrier whenever the other runs slower (on a shared
// machine, often). Contiguous, so each thread still streams its rows in order.
template <typename Fn>
void parallel_for_dynamic(const KernelConfig& config, int64_t count, int64_t work_per_item,
                          Fn&& fn) {
  [[maybe_unused]] const bool parallel =
      config.num_threads > 1 && count > 1 && count * work_per_item >= kMinParallelWork;
  const int64_t chunk = std::max<int64_t>(1, count / (config.num_threads * 4));
#pragma omp parallel for num_threads(config.num_threads) schedule(dynamic, chunk) if (parallel)
  for (int64_t i = 0; i < count; ++i) fn(i);
}

// Per-thread scratch memory, grown on demand and kept, so hot ops don't allocate per call.
// Slots 0 to 6; distinct `slot`s are distinct buffers; a pointer stays valid until the next call
// with the same slot on the same thread.
float* thread_scratch(int slot, size_t floats);

// ---- dtype conversions ------------------------------------------------------------------
// f16 -> f32 without branches (vectorisable), bit-identical to half.h's f16_to_f32.
inline float f16_to_f32_branchless(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t magnitude = h & 0x7fffu;
  const uint32_t normal_bits = (magnitude << 13) + ((127u - 15u) << 23);
  const uint32_t inf_nan_bits = 0x7f800000u | ((magnitude & 0x3ffu) << 13);
  // Zero and subnormals: magnitude * 2^-24 is exact in F32.
  const float subnormal = static_cast<float>(static_cast<int32_t>(magnitude)) * 0x1p-24f;
  uint32_t subnormal_bits;
  std::memcpy(&subnormal_bits, &subnormal, sizeof subnormal_bits);
  const uint32_t is_inf_nan = 0u - static_cast<uint32_t>(magnitude >= 0x7c00u);
  const uint32_t is_subnormal = 0u - static_cast<uint32_t>(magnitude < 0x400u);
  const uint32_t bits = sign | (inf_nan_bits & is_inf_nan) | (subnormal_bits & is_subnormal) |
                        (normal_bits & ~(is_inf_nan | is_subnormal));
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Σ a[i]·b[i] in F32 over kLanes independent lanes folded pairwise: the loop vectorises
// (one or a few registers of lanes), the adds pipeline, and the summation order is fixed
// whatever the vector width.
template <int64_t kLanes>
inline float dot_f32(const float* a, const float* b, int64_t count) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += a[i + l] * b[i + l];
  }
  for (int64_t l = 0; i < count; ++i, ++l) lanes[l] += a[i] * b[i];
  for (int64_t width = kLanes / 2; width > 0; width /= 2) {
#pragma omp simd
    for (int64_t l = 0; l < width; ++l) lanes[l] += lanes[l + width];
  }
  return lanes[0];
}

#if SPARKD_CPU_X86
SPARKD_CPU_AVX2 inline float horizontal_sum(__m256 v) {
  const __m128 pairs = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 quads = _mm_add_ps(pairs, _mm_movehl_ps(pairs, pairs));
  return _mm_cvtss_f32(_mm_add_ss(quads, _mm_shuffle_ps(quads, quads, 1)));
}
#endif

// src[offset .. offset + count) (elements of `dtype`) -> dst as F32. For quantized types,
// offset and count are whole blocks.
void convert_to_f32(const void* src, DType dtype, int64_t offset, int64_t count, float* dst);
// `count` values (whole blocks) of a quantized type starting at `blocks` -> dst as F32
// (cpu_dequantize.cpp; bit-exact with ggml's dequantize_row_*).
void dequantize(const void* blocks, DType dtype, int64_t count, float* dst);
// src F32 -> dst[offset .. offset + count) as `dtype`, rounding to nearest even.
void convert_from_f32(const float* src, int64_t count, DType dtype, void* dst, int64_t offset);

// ---- linear -----------------------------------------------------------------------------
// y[m, n] = x[m, k] · weight[n, k]ᵀ (+ bias[n]); bias may be null. y must not overlap x.
void linear(const KernelConfig& config, const float* x, int64_t m, int64_t k, const void* weight,
            DType weight_dtype, int64_t n, const float* bias, float* y);

// The same for a block-quantized weight (cpu_quant_linear.cpp): x is quantized per block
// and multiplied in integers, as ggml's vec_dot does.
void quantized_linear(const KernelConfig& config, const float* x, int64_t m, int64_t k,
                      const void* weight, DType weight_dtype, int64_t n, const float* bias,
                      float* y);
// x's rows quantized to Q8_K (ggml's quantize_row_q8_K, to the bit): k / 256 BlockQ8_K at
// `blocks`.
void quantize_row_q8_k(const KernelConfig& config, const float* x, int64_t k, void* blocks);
// Prefill on K-quant weights as an int8 GEMM over unpacked tiles (cpu_quant_gemm.cpp), used
// by quantized_linear when quantized_gemm_applies.
inline constexpr int64_t kQuantizedGemmMinRows = 9;
bool quantized_gemm_applies(const KernelConfig& config, DType weight_dtype, int64_t m);
void quantized_gemm(const KernelConfig& config, const float* x, int64_t m, int64_t k,
                    const void* weight, DType weight_dtype, int64_t n, const float* bias, float* y);

// ---- attention --------------------------------------------------------------------------
// The slot holding position `pos` of a sequence.
inline int64_t kv_slot(const KvLayerView& kv, const AttentionSequence& sequence, int64_t pos) {
  if (kv.block_tokens == 0) return sequence.kv_slot_begin + pos;
  return static_cast<int64_t>(sequence.block_table[pos / kv.block_tokens]) * kv.block_tokens +
         pos % kv.block_tokens;
}

// k, v: [tokens, kv_heads * head_dim] F32; row t goes to slot slots[t] of kv.
void store_kv(const KernelConfig& config, const float* k, const float* v,
              std::span<const int32_t> slots, const KvLayerView& kv);
// q, out: [tokens, heads, head_dim] F32 (out may be q). Shapes are already checked.
void attention(const KernelConfig& config, const float* q, int64_t heads, const KvLayerView& kv,
               std::span<const AttentionSequence> sequences, const AttentionParams& params,
               float* out);

// ---- row ops (cpu_rows.cpp); `out` may alias the input -----------------------------------
void add(const KernelConfig& config, const float* a, const float* b, bool broadcast_b, int64_t rows,
         int64_t cols, float* out);
// weight/bias: F32 [cols].
void rms_norm(const KernelConfig& config, const float* x, const float* weight, float eps,
              int64_t rows, int64_t cols, float* out);
void layer_norm(const KernelConfig& config, const float* x, const float* weight, const float* bias,
                float eps, int64_t rows, int64_t cols, float* out);
void silu_mul(const KernelConfig& config, const float* gate, const float* up, int64_t count,
              float* out);
void clamped_swiglu(const KernelConfig& config, const float* gate, const float* up, float alpha,
                    float limit, int64_t count, float* out);
void gelu(const KernelConfig& config, const float* x, bool tanh_approximation, int64_t count,
          float* out);
void tanh(const KernelConfig& config, const float* x, int64_t count, float* out);
// out[i] = x[i] * sigmoid(gate[i / values_per_gate]): 1 elementwise, a row's width per row.
void sigmoid_mul(const KernelConfig& config, const float* gate, const float* x, int64_t count,
                 int64_t values_per_gate, float* out);
// x: [rows, 2 * half] -> first, second: [rows, half] (rows = tokens x heads).
void split_halves(const KernelConfig& config, const float* x, int64_t rows, int64_t half,
                  float* first, float* second);
// x: [tokens, heads, head_dim] in place; inv_freq: F32 [rotary_half], rotating dimensions
// [0, 2 * rotary_half) of each head.
void rope(const KernelConfig& config, float* x, int64_t tokens, int64_t heads, int64_t head_dim,
          int64_t rotary_half, std::span<const int32_t> positions, const float* inv_freq);
void mean_rows(const KernelConfig& config, const float* x, int64_t cols,
               std::span<const RowSpan> spans, float* out);
void l2_normalize_rows(const KernelConfig& config, float* x, int64_t rows, int64_t cols);

// ---- Gated DeltaNet (cpu_delta_net.cpp): shapes already checked --------------------------
// x, out: [tokens, channels]; weight: F32 [channels, kernel]; each sequence's conv_state F32
// [kernel - 1, channels].
void causal_conv1d_silu(const KernelConfig& config, const float* x, const float* weight,
                        int64_t channels, int64_t kernel,
                        std::span<const RecurrentSequence> sequences, float* out);
// qkv: [tokens, 2 * key_heads * key_head_dim + value_heads * value_head_dim]; a, b: [tokens,
// value_heads]; a_neg, dt_bias: [value_heads]; out: [tokens, value_heads, value_head_dim].
void gated_delta_net(const KernelConfig& config, const float* qkv, const float* a, const float* b,
                     const float* a_neg, const float* dt_bias, const DeltaNetShape& shape,
                     std::span<const RecurrentSequence> sequences, float* out);

}  // namespace sparkd::cpu
