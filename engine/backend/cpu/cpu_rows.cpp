// Row-wise and elementwise ops: norms, activations, rotary embedding, pooling.
//
// Each op follows the float32 arithmetic of the PyTorch / transformers code it replaces
// (noted per op), so that only summation order separates the results. Reductions run over
// 16 independent lanes folded pairwise: vectorisable, and more accurate than one running sum.
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/backend/cpu/cpu_erf.h"
#include "engine/backend/cpu/cpu_kernels.h"

namespace sparkd::cpu {
namespace {

constexpr int64_t kLanes = 16;
// Flat (elementwise) ops are split into chunks of this many elements across threads.
constexpr int64_t kElementsPerChunk = 1 << 14;

inline float fold_lanes(float (&lanes)[kLanes]) {
  for (int64_t width = kLanes / 2; width > 0; width /= 2) {
    for (int64_t l = 0; l < width; ++l) lanes[l] += lanes[l + width];
  }
  return lanes[0];
}

inline float sum(const float* x, int64_t count) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += x[i + l];
  }
  for (int64_t l = 0; i < count; ++i, ++l) lanes[l] += x[i];
  return fold_lanes(lanes);
}

inline float sum_of_squares(const float* x, int64_t count) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += x[i + l] * x[i + l];
  }
  for (int64_t l = 0; i < count; ++i, ++l) lanes[l] += x[i] * x[i];
  return fold_lanes(lanes);
}

inline float sum_of_squared_deviations(const float* x, float mean, int64_t count) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) {
      const float deviation = x[i + l] - mean;
      lanes[l] += deviation * deviation;
    }
  }
  for (int64_t l = 0; i < count; ++i, ++l) {
    const float deviation = x[i] - mean;
    lanes[l] += deviation * deviation;
  }
  return fold_lanes(lanes);
}

#if SPARKD_CPU_X86
// erf in AVX2 registers, for exact GELU: libm's scalar erff cost more than a BERT layer's
// attention. On [0, 4), split into eight intervals of width 1/2, erf(u) = offset + p(t),
// t = u - (interval centre), p of degree 8 (a least-squares fit in double on Chebyshev
// nodes, coefficients rounded to F32: tools/kernels/fit_erf_polynomials.py). Each lane picks its
// interval's coefficients with a permute. The offsets (0, 0.75, then 1) keep p small where erf
// nears 1, so the final add rounds once: the result is within 6.2e-8 of the true erf (an ulp just
// below 1 is 6e-8). From 4 on, erf is 1.0f in F32.
constexpr float kErfOffset[8] = {0.0f, 0.75f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
constexpr int kErfDegree = 8;
constexpr float kErfPoly[kErfDegree + 1][8] = {
    {2.763264e-01f, -3.8844366e-02f, -7.7099875e-02f, -1.3328329e-02f, -1.4627166e-03f,
     -1.00621925e-04f, -4.3027794e-06f, -1.1372726e-07f},
    {1.0600141e+00f, 6.4293104e-01f, 2.3652112e-01f, 5.2774996e-02f, 7.1423193e-03f, 5.862773e-04f,
     2.9189012e-05f, 8.8142883e-07f},
    {-2.6500353e-01f, -4.821983e-01f, -2.956514e-01f, -9.235624e-02f, -1.6070217e-02f,
     -1.6122626e-03f, -9.486433e-05f, -3.3053668e-06f},
    {-3.0917048e-01f, 2.678835e-02f, 1.6753589e-01f, 9.015739e-02f, 2.1724513e-02f, 2.7603803e-03f,
     1.9581262e-04f, 7.970328e-06f},
    {1.2698051e-01f, 1.5068701e-01f, -6.1592543e-03f, -4.8102293e-02f, -1.9083386e-02f,
     -3.2581033e-03f, -2.8656973e-04f, -1.3841739e-05f},
    {8.003627e-02f, -5.321709e-02f, -4.7186553e-02f, 6.618473e-03f, 1.066006e-02f, 2.756291e-03f,
     3.1362884e-04f, 1.833006e-05f},
    {-4.051716e-02f, -2.6873976e-02f, 2.1294555e-02f, 8.966749e-03f, -2.9042328e-03f,
     -1.657796e-03f, -2.6351085e-04f, -1.925038e-05f},
    {-1.580337e-02f, 1.7885495e-02f, 3.7451105e-03f, -5.9330994e-03f, -7.21527e-04f, 6.358154e-04f,
     1.7359649e-04f, 1.714471e-05f},
    {9.410909e-03f, 2.3291754e-03f, -5.574546e-03f, 6.619716e-04f, 9.973412e-04f, -8.043679e-05f,
     -8.198081e-05f, -1.1536358e-05f},
};

// erf of 8 lanes; NaN stays NaN, ±inf gives ±1.
SPARKD_CPU_AVX2 inline __m256 erf8(__m256 v) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  const __m256 u = _mm256_andnot_ps(sign_mask, v);
  // min() returns its second operand for NaN, so the index stays in range.
  const __m256 scaled = _mm256_min_ps(_mm256_mul_ps(u, _mm256_set1_ps(2.0f)), _mm256_set1_ps(7.0f));
  const __m256i index = _mm256_cvttps_epi32(scaled);
  const __m256 centre =
      _mm256_fmadd_ps(_mm256_cvtepi32_ps(index), _mm256_set1_ps(0.5f), _mm256_set1_ps(0.25f));
  const __m256 t = _mm256_sub_ps(u, centre);
  __m256 p = _mm256_permutevar8x32_ps(_mm256_loadu_ps(kErfPoly[kErfDegree]), index);
#pragma GCC unroll 8
  for (int j = kErfDegree - 1; j >= 0; --j) {
    p = _mm256_fmadd_ps(p, t, _mm256_permutevar8x32_ps(_mm256_loadu_ps(kErfPoly[j]), index));
  }
  __m256 result = _mm256_add_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(kErfOffset), index), p);
  result = _mm256_blendv_ps(result, _mm256_set1_ps(1.0f),
                            _mm256_cmp_ps(u, _mm256_set1_ps(4.0f), _CMP_GE_OQ));
  return _mm256_or_ps(result, _mm256_and_ps(v, sign_mask));
}

// 8 lanes of erf(v), or of exact GELU v * 0.5 * (1 + erf(v / sqrt(2))) as PyTorch writes it.
template <bool kGelu>
SPARKD_CPU_AVX2 inline __m256 erf_or_gelu8(__m256 v) {
  if constexpr (kGelu) {
    const __m256 e = erf8(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752440f)));
    return _mm256_mul_ps(_mm256_mul_ps(v, _mm256_set1_ps(0.5f)),
                         _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  } else {
    return erf8(v);
  }
}

template <bool kGelu>
SPARKD_CPU_AVX2 void erf_or_gelu_avx2(const float* x, int64_t count, float* out) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    _mm256_storeu_ps(out + i, erf_or_gelu8<kGelu>(_mm256_loadu_ps(x + i)));
  }
  if (i < count) {
    // The tail through a zero-padded register, so every element takes the same path.
    float tail[8] = {};
    std::copy(x + i, x + count, tail);
    _mm256_storeu_ps(tail, erf_or_gelu8<kGelu>(_mm256_loadu_ps(tail)));
    std::copy_n(tail, count - i, out + i);
  }
}
#endif

#if SPARKD_CPU_X86
// exp in AVX2 registers, for SiLU (libm's scalar expf was 2% of a prefill): Cephes' expf.
// e^x = 2^n · e^r with n = round(x / ln 2) and r = x - n ln 2 (ln 2 in two parts, so r is
// exact), e^r = 1 + r + r² p(r) with Cephes' degree-5 p: within 2 ulp of the true value.
// x is clamped to [-87.3, 88.7] first, where 2^n stays a normal float: below, e^x is under
// 1e-38 and the result is its lower bound (1 + it is 1 either way); above, inf.
SPARKD_CPU_AVX2 inline __m256 exp8(__m256 unclamped) {
  const __m256 overflow = _mm256_cmp_ps(unclamped, _mm256_set1_ps(88.72283f), _CMP_GT_OQ);
  const __m256 x = _mm256_min_ps(_mm256_max_ps(unclamped, _mm256_set1_ps(-87.33654f)),
                                 _mm256_set1_ps(88.72283f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 e_r =
      _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  // 2^n: n + 127 into the exponent field. At n = 128 (x near 88.7) that overflows, so scale
  // by 2^(n - 1) and double.
  const __m256i exponent =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
  const __m256 result =
      _mm256_mul_ps(_mm256_mul_ps(e_r, _mm256_castsi256_ps(exponent)), _mm256_set1_ps(2.0f));
  return _mm256_blendv_ps(result, _mm256_set1_ps(std::numeric_limits<float>::infinity()), overflow);
}

// out = gate / (1 + exp(-gate)) · up, 8 lanes at a time; the tail through zero-padded
// registers, so every element takes the same path.
SPARKD_CPU_AVX2 inline __m256 silu_mul8(__m256 g, __m256 u) {
  const __m256 denominator =
      _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), g)));
  return _mm256_mul_ps(_mm256_div_ps(g, denominator), u);
}

SPARKD_CPU_AVX2 void silu_mul_avx2(const float* gate, const float* up, int64_t count, float* out) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    _mm256_storeu_ps(out + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  }
  if (i < count) {
    float g[8] = {}, u[8] = {};
    std::copy(gate + i, gate + count, g);
    std::copy(up + i, up + count, u);
    _mm256_storeu_ps(g, silu_mul8(_mm256_loadu_ps(g), _mm256_loadu_ps(u)));
    std::copy_n(g, count - i, out + i);
  }
}
#endif

// Runs fn(begin, end) over [0, count) in chunks, in parallel when large.
template <typename Fn>
void for_each_chunk(const KernelConfig& config, int64_t count, Fn&& fn) {
  const int64_t chunks = (count + kElementsPerChunk - 1) / kElementsPerChunk;
  parallel_for(config, chunks, kElementsPerChunk, [&](int64_t chunk) {
    const int64_t begin = chunk * kElementsPerChunk;
    fn(begin, std::min(count, begin + kElementsPerChunk));
  });
}

SPARKD_CPU_CLONES
void add_row(const float* a, const float* b, int64_t cols, float* out) {
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) out[c] = a[c] + b[c];
}

// transformers' LlamaRMSNorm: variance = x.pow(2).mean(-1); x * rsqrt(variance + eps); then
// weight * that.
SPARKD_CPU_CLONES
void rms_norm_row(const float* x, const float* weight, float eps, int64_t cols, float* out) {
  const float variance = sum_of_squares(x, cols) / static_cast<float>(cols);
  const float inv_rms = 1.0f / std::sqrt(variance + eps);
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) out[c] = weight[c] * (x[c] * inv_rms);
}

// torch.nn.LayerNorm: biased variance, (x - mean) * rsqrt(var + eps) * weight + bias.
SPARKD_CPU_CLONES
void layer_norm_row(const float* x, const float* weight, const float* bias, float eps, int64_t cols,
                    float* out) {
  const float mean = sum(x, cols) / static_cast<float>(cols);
  const float variance = sum_of_squared_deviations(x, mean, cols) / static_cast<float>(cols);
  const float inv_std = 1.0f / std::sqrt(variance + eps);
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) out[c] = (x[c] - mean) * inv_std * weight[c] + bias[c];
}

SPARKD_CPU_CLONES
void l2_normalize_row(float* x, int64_t cols) {
  // torch.nn.functional.normalize: x / max(||x||, eps), a division per element.
  const float norm = std::max(std::sqrt(sum_of_squares(x, cols)), 1e-12f);
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) x[c] = x[c] / norm;
}

SPARKD_CPU_CLONES
void accumulate_row(const float* x, int64_t cols, float* acc) {
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) acc[c] += x[c];
}

}  // namespace

void add(const KernelConfig& config, const float* a, const float* b, bool broadcast_b, int64_t rows,
         int64_t cols, float* out) {
  parallel_for(config, rows, cols, [&](int64_t r) {
    add_row(a + r * cols, broadcast_b ? b : b + r * cols, cols, out + r * cols);
  });
}

void rms_norm(const KernelConfig& config, const float* x, const float* weight, float eps,
              int64_t rows, int64_t cols, float* out) {
  parallel_for(config, rows, cols,
               [&](int64_t r) { rms_norm_row(x + r * cols, weight, eps, cols, out + r * cols); });
}

void layer_norm(const KernelConfig& config, const float* x, const float* weight, const float* bias,
                float eps, int64_t rows, int64_t cols, float* out) {
  parallel_for(config, rows, cols, [&](int64_t r) {
    layer_norm_row(x + r * cols, weight, bias, eps, cols, out + r * cols);
  });
}

// torch.nn.functional.silu is x / (1 + exp(-x)).
void silu_mul(const KernelConfig& config, const float* gate, const float* up, int64_t count,
              float* out) {
  for_each_chunk(config, count, [&](int64_t begin, int64_t end) {
#if SPARKD_CPU_X86
    if (config.simd != SimdLevel::kPortable) {
      return silu_mul_avx2(gate + begin, up + begin, end - begin, out + begin);
    }
#endif
    for (int64_t i = begin; i < end; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

// transformers' GptOssExperts._apply_gate, elementwise.
void clamped_swiglu(const KernelConfig& config, const float* gate, const float* up, float alpha,
                    float limit, int64_t count, float* out) {
  for_each_chunk(config, count, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = std::min(gate[i], limit);
      const float u = std::clamp(up[i], -limit, limit);
      out[i] = (u + 1.0f) * (g / (1.0f + std::exp(-alpha * g)));
    }
  });
}

// PyTorch's CPU GELU kernels: exact x * 0.5 * (1 + erf(x / sqrt(2))); tanh form
// 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x³))).
void gelu(const KernelConfig& config, const float* x, bool tanh_approximation, int64_t count,
          float* out) {
  constexpr float kSqrtHalf = 0.70710678118654752440f;
  constexpr float kSqrtTwoOverPi = 0.79788456080286535588f;
  constexpr float kCubicCoefficient = 0.044715f;
  for_each_chunk(config, count, [&](int64_t begin, int64_t end) {
    if (tanh_approximation) {
      for (int64_t i = begin; i < end; ++i) {
        const float v = x[i];
        const float inner = kSqrtTwoOverPi * (v + kCubicCoefficient * v * v * v);
        out[i] = 0.5f * v * (1.0f + std::tanh(inner));
      }
    } else {
#if SPARKD_CPU_X86
      if (config.simd != SimdLevel::kPortable) {
        return erf_or_gelu_avx2<true>(x + begin, end - begin, out + begin);
      }
#endif
      for (int64_t i = begin; i < end; ++i) {
        const float v = x[i];
        out[i] = v * 0.5f * (1.0f + std::erf(v * kSqrtHalf));
      }
    }
  });
}

bool vector_erf(const float* x, int64_t count, float* out) {
#if SPARKD_CPU_X86
  if (detected_simd_level() != SimdLevel::kPortable) {
    erf_or_gelu_avx2<false>(x, count, out);
    return true;
  }
#endif
  static_cast<void>(x);
  static_cast<void>(count);
  static_cast<void>(out);
  return false;
}

void tanh(const KernelConfig& config, const float* x, int64_t count, float* out) {
  for_each_chunk(config, count, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = std::tanh(x[i]);
  });
}

void sigmoid_mul(const KernelConfig& config, const float* gate, const float* x, int64_t count,
                 int64_t values_per_gate, float* out) {
  for_each_chunk(config, count, [&](int64_t begin, int64_t end) {
    if (values_per_gate == 1) {
      for (int64_t i = begin; i < end; ++i) out[i] = x[i] / (1.0f + std::exp(-gate[i]));
      return;
    }
    for (int64_t i = begin; i < end; ++i) {
      out[i] = x[i] / (1.0f + std::exp(-gate[i / values_per_gate]));
    }
  });
}

void split_halves(const KernelConfig& config, const float* x, int64_t rows, int64_t half,
                  float* first, float* second) {
  parallel_for(config, rows, 2 * half, [&](int64_t r) {
    const float* row = x + r * 2 * half;
    std::copy_n(row, half, first + r * half);
    std::copy_n(row + half, half, second + r * half);
  });
}

// transformers' apply_rotary_pos_emb: x * cos + rotate_half(x) * sin with cos/sin of the F32
// angle position * inv_freq, i.e. for i < half:
//   out[i]        = x[i] * cos - x[i + half] * sin
//   out[i + half] = x[i + half] * cos + x[i] * sin
void rope(const KernelConfig& config, float* x, int64_t tokens, int64_t heads, int64_t head_dim,
          int64_t rotary_half, std::span<const int32_t> positions, const float* inv_freq) {
  const int64_t half = rotary_half;
  parallel_for(config, tokens, heads * head_dim, [&](int64_t t) {
    float* cos_sin = thread_scratch(0, static_cast<size_t>(2 * half));
    float* cos_angle = cos_sin;
    float* sin_angle = cos_sin + half;
    const float position = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = position * inv_freq[i];
      cos_angle[i] = std::cos(angle);
      sin_angle[i] = std::sin(angle);
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* first = x + (t * heads + h) * head_dim;
      float* second = first + half;
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const float a = first[i];
        const float b = second[i];
        first[i] = a * cos_angle[i] - b * sin_angle[i];
        second[i] = b * cos_angle[i] + a * sin_angle[i];
      }
    }
  });
}

void mean_rows(const KernelConfig& config, const float* x, int64_t cols,
               std::span<const RowSpan> spans, float* out) {
  parallel_for(config, static_cast<int64_t>(spans.size()), cols, [&](int64_t s) {
    const RowSpan& span = spans[s];
    float* acc = out + s * cols;
    std::fill_n(acc, cols, 0.0f);
    for (int64_t r = span.begin; r < span.begin + span.count; ++r) {
      accumulate_row(x + r * cols, cols, acc);
    }
    const float count = static_cast<float>(span.count);
    for (int64_t c = 0; c < cols; ++c) acc[c] /= count;
  });
}

void l2_normalize_rows(const KernelConfig& config, float* x, int64_t rows, int64_t cols) {
  parallel_for(config, rows, cols, [&](int64_t r) { l2_normalize_row(x + r * cols, cols); });
}

}  // namespace sparkd::cpu
