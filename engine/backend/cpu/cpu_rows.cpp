// Row-wise and elementwise ops: norms, activations, rotary embedding, pooling.
//
// Each op follows the float32 arithmetic of the PyTorch / transformers code it replaces
// (noted per op), so that only summation order separates the results. Reductions run over
// 16 independent lanes folded pairwise: vectorisable, and more accurate than one running sum.
#include <algorithm>
#include <cmath>

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
    for (int64_t i = begin; i < end; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
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
      for (int64_t i = begin; i < end; ++i) {
        const float v = x[i];
        out[i] = v * 0.5f * (1.0f + std::erf(v * kSqrtHalf));
      }
    }
  });
}

void tanh(const KernelConfig& config, const float* x, int64_t count, float* out) {
  for_each_chunk(config, count, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = std::tanh(x[i]);
  });
}

// transformers' apply_rotary_pos_emb: x * cos + rotate_half(x) * sin with cos/sin of the F32
// angle position * inv_freq, i.e. for i < half:
//   out[i]        = x[i] * cos - x[i + half] * sin
//   out[i + half] = x[i + half] * cos + x[i] * sin
void rope(const KernelConfig& config, float* x, int64_t tokens, int64_t heads, int64_t head_dim,
          std::span<const int32_t> positions, const float* inv_freq) {
  const int64_t half = head_dim / 2;
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
