// Gated DeltaNet (Qwen3.5's linear attention) on the CPU: the causal depthwise convolution
// and the gated delta rule, both run token by token within a sequence because each token's
// result depends on the state the previous one left. transformers runs prefill through an
// equivalent chunked form (a WY transform over chunks of 64 tokens); this is the recurrent
// form it uses for decode, exact up to float summation order, and the one llama.cpp's CPU
// kernel runs too.
#include <cmath>
#include <vector>

#include "engine/backend/cpu/cpu_kernels.h"

namespace sparkd::cpu {

namespace {

// Channels per parallel work item of the convolution: enough to keep a thread busy, few
// enough that a 2-thread machine splits even a small model's conv.
constexpr int64_t kConvChannelsPerItem = 64;

// PyTorch's softplus (beta 1, threshold 20: the identity above it).
float softplus(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}

// x scaled to unit L2 norm as transformers' l2norm: x / sqrt(sum x² + 1e-6), times `scale`.
void l2_normalized(const float* x, int64_t n, float scale, float* out) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
  const float factor = scale / std::sqrt(sum + 1e-6f);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * factor;
}

}  // namespace

void causal_conv1d_silu(const KernelConfig& config, const float* x, const float* weight,
                        int64_t channels, int64_t kernel,
                        std::span<const RecurrentSequence> sequences, float* out) {
  const int64_t history = kernel - 1;
  for (const RecurrentSequence& seq : sequences) {
    if (seq.rows == 0) continue;
    float* state = seq.conv_state.as<float>();  // [history, channels], oldest first
    const float* input = x + int64_t{seq.row_begin} * channels;
    float* output = out + int64_t{seq.row_begin} * channels;
    const int64_t rows = seq.rows;
    const int64_t items = (channels + kConvChannelsPerItem - 1) / kConvChannelsPerItem;
    parallel_for(config, items, kConvChannelsPerItem * rows * kernel, [&](int64_t item) {
      const int64_t c_begin = item * kConvChannelsPerItem;
      const int64_t c_end = std::min(channels, c_begin + kConvChannelsPerItem);
      for (int64_t c = c_begin; c < c_end; ++c) {
        const float* w = weight + c * kernel;
        // Input at time `time` relative to this step's first token (negative: the state).
        const auto at = [&](int64_t time) {
          return time < 0 ? state[(history + time) * channels + c] : input[time * channels + c];
        };
        for (int64_t t = 0; t < rows; ++t) {
          float sum = 0.0f;
          for (int64_t j = 0; j < kernel; ++j) sum += w[j] * at(t - history + j);
          output[t * channels + c] = sum / (1.0f + std::exp(-sum));
        }
        // The state becomes the last `history` inputs (reading older ones before they are
        // overwritten: ascending order reads at(rows - history + i) >= what it replaces).
        for (int64_t i = 0; i < history; ++i) {
          state[i * channels + c] = at(rows - history + i);
        }
      }
    });
  }
}

void gated_delta_net(const KernelConfig& config, const float* qkv, const float* a, const float* b,
                     const float* a_neg, const float* dt_bias, const DeltaNetShape& shape,
                     std::span<const RecurrentSequence> sequences, float* out) {
  const int64_t hk = shape.key_heads, hv = shape.value_heads;
  const int64_t dk = shape.key_head_dim, dv = shape.value_head_dim;
  const int64_t conv_dim = 2 * hk * dk + hv * dv;
  const int64_t heads_per_key = hv / hk;
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
  const int64_t items = static_cast<int64_t>(sequences.size()) * hv;
  parallel_for(config, items, dk * dv * 4, [&](int64_t item) {
    const RecurrentSequence& seq = sequences[static_cast<size_t>(item / hv)];
    const int64_t h = item % hv;
    const int64_t key_head = shape.value_heads_tiled ? h % hk : h / heads_per_key;
    float* s = seq.delta_state.as<float>() + h * dk * dv;  // S[i][j]: [dk, dv]
    float* q = thread_scratch(0, static_cast<size_t>(2 * dk + dv));
    float* k = q + dk;
    float* delta = k + dk;
    for (int64_t r = seq.row_begin; r < seq.row_begin + seq.rows; ++r) {
      const float* row = qkv + r * conv_dim;
      l2_normalized(row + key_head * dk, dk, q_scale, q);
      l2_normalized(row + hk * dk + key_head * dk, dk, 1.0f, k);
      const float* v = row + 2 * hk * dk + h * dv;
      const float decay = std::exp(a_neg[h] * softplus(a[r * hv + h] + dt_bias[h]));
      const float beta = 1.0f / (1.0f + std::exp(-b[r * hv + h]));
      // S = decay S, and Sᵀk of the decayed state, in one pass.
      for (int64_t j = 0; j < dv; ++j) delta[j] = 0.0f;
      for (int64_t i = 0; i < dk; ++i) {
        float* s_row = s + i * dv;
        const float k_i = k[i];
#pragma omp simd
        for (int64_t j = 0; j < dv; ++j) {
          s_row[j] *= decay;
          delta[j] += s_row[j] * k_i;
        }
      }
      for (int64_t j = 0; j < dv; ++j) delta[j] = beta * (v[j] - delta[j]);
      // S += k ⊗ delta, and out = Sᵀq of the updated state.
      float* o = out + (r * hv + h) * dv;
      for (int64_t j = 0; j < dv; ++j) o[j] = 0.0f;
      for (int64_t i = 0; i < dk; ++i) {
        float* s_row = s + i * dv;
        const float k_i = k[i], q_i = q[i];
#pragma omp simd
        for (int64_t j = 0; j < dv; ++j) {
          s_row[j] += k_i * delta[j];
          o[j] += s_row[j] * q_i;
        }
      }
    }
  });
}

}  // namespace sparkd::cpu
