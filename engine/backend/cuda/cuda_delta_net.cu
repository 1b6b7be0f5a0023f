// Gated DeltaNet on the GPU: the causal depthwise convolution and the gated delta rule, in the
// recurrent form cpu_delta_net.cpp runs (token by token within a sequence; sequences, channels
// and heads in parallel).
//
// The delta rule: one block per (sequence, value head); thread j owns column j of the head's
// state S [key_head_dim, value_head_dim], which stays in global memory (each step reads and
// writes it once, coalesced across the threads: the bytes decode must move anyway). The
// normalised q and k of a token are shared through shared memory.
#include <cmath>

#include "engine/backend/cuda/cuda_common.cuh"
#include "engine/backend/cuda/cuda_kernels.h"

namespace sparkd::cuda {
namespace {

constexpr int kDeltaThreads = 128;
constexpr int kMaxKeyHeadDim = 256;

// One thread per (sequence, channel), walking the sequence's tokens in order.
__global__ void causal_conv1d_silu_kernel(const float* x, const void* weight, DType weight_type,
                                          int64_t channels, int64_t kernel,
                                          const RecurrentSequenceArgs* sequences,
                                          int64_t sequence_count, float* out) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= sequence_count * channels) return;
  const RecurrentSequenceArgs seq = sequences[index / channels];
  const int64_t c = index % channels;
  const int64_t history = kernel - 1;
  float* state = seq.conv_state;  // [history, channels], oldest first
  const float* input = x + static_cast<int64_t>(seq.row_begin) * channels;
  float* output = out + static_cast<int64_t>(seq.row_begin) * channels;
  // Input at time `time` relative to the step's first token (negative: the state).
  const auto at = [&](int64_t time) {
    return time < 0 ? state[(history + time) * channels + c] : input[time * channels + c];
  };
  for (int64_t t = 0; t < seq.rows; ++t) {
    float sum = 0.0f;
    for (int64_t j = 0; j < kernel; ++j) {
      sum += load_f32(weight, weight_type, c * kernel + j) * at(t - history + j);
    }
    output[t * channels + c] = sum / (1.0f + expf(-sum));
  }
  // The state becomes the last `history` inputs; ascending order reads at(rows - history + i)
  // before anything it depends on is overwritten.
  for (int64_t i = 0; i < history; ++i) state[i * channels + c] = at(seq.rows - history + i);
}

__device__ __forceinline__ float softplus(float x) {
  return x > 20.0f ? x : log1pf(expf(x));
}

__global__ void gated_delta_net_kernel(const float* qkv, const float* a, const float* b,
                                       const void* a_neg, DType a_neg_type, const void* dt_bias,
                                       DType dt_bias_type, DeltaNetShape shape,
                                       const RecurrentSequenceArgs* sequences, float* out) {
  __shared__ float q[kMaxKeyHeadDim];
  __shared__ float k[kMaxKeyHeadDim];
  __shared__ float scratch[kWarp];
  const RecurrentSequenceArgs seq = sequences[blockIdx.x];
  const int64_t h = blockIdx.y;
  const int64_t hk = shape.key_heads, hv = shape.value_heads;
  const int64_t dk = shape.key_head_dim, dv = shape.value_head_dim;
  const int64_t conv_dim = 2 * hk * dk + hv * dv;
  const int64_t key_head = shape.value_heads_tiled ? h % hk : h / (hv / hk);
  const float q_scale = 1.0f / sqrtf(static_cast<float>(dk));
  float* s = seq.delta_state + h * dk * dv;  // S[i][j]
  const float a_neg_h = load_f32(a_neg, a_neg_type, h);
  const float dt_bias_h = load_f32(dt_bias, dt_bias_type, h);

  for (int64_t r = seq.row_begin; r < seq.row_begin + seq.rows; ++r) {
    const float* row = qkv + r * conv_dim;
    const float* q_in = row + key_head * dk;
    const float* k_in = row + hk * dk + key_head * dk;
    // q and k L2-normalised (x / sqrt(sum x² + 1e-6)), q also scaled by dk^-1/2.
    float q_squares = 0.0f, k_squares = 0.0f;
    for (int64_t i = threadIdx.x; i < dk; i += blockDim.x) {
      q_squares += q_in[i] * q_in[i];
      k_squares += k_in[i] * k_in[i];
    }
    const float q_factor = q_scale / sqrtf(block_sum(q_squares, scratch) + 1e-6f);
    const float k_factor = 1.0f / sqrtf(block_sum(k_squares, scratch) + 1e-6f);
    for (int64_t i = threadIdx.x; i < dk; i += blockDim.x) {
      q[i] = q_in[i] * q_factor;
      k[i] = k_in[i] * k_factor;
    }
    __syncthreads();
    const float decay = expf(a_neg_h * softplus(a[r * hv + h] + dt_bias_h));
    const float beta = 1.0f / (1.0f + expf(-b[r * hv + h]));
    const float* v = row + 2 * hk * dk + h * dv;
    for (int64_t j = threadIdx.x; j < dv; j += blockDim.x) {
      // S = decay S and Sᵀk in one pass down column j, then the update and out = Sᵀq.
      float delta = 0.0f;
      for (int64_t i = 0; i < dk; ++i) {
        const float decayed = s[i * dv + j] * decay;
        s[i * dv + j] = decayed;
        delta += decayed * k[i];
      }
      delta = beta * (v[j] - delta);
      float o = 0.0f;
      for (int64_t i = 0; i < dk; ++i) {
        const float updated = s[i * dv + j] + k[i] * delta;
        s[i * dv + j] = updated;
        o += updated * q[i];
      }
      out[(r * hv + h) * dv + j] = o;
    }
    __syncthreads();  // q and k are rewritten for the next token
  }
}

}  // namespace

void causal_conv1d_silu(const float* x, const void* weight, DType weight_type, int64_t channels,
                        int64_t kernel, const RecurrentSequenceArgs* sequences,
                        int64_t sequence_count, float* out, cudaStream_t stream) {
  const int64_t threads = sequence_count * channels;
  if (threads == 0) return;
  causal_conv1d_silu_kernel<<<static_cast<unsigned>((threads + kElementwiseThreads - 1) /
                                                    kElementwiseThreads),
                              kElementwiseThreads, 0, stream>>>(
      x, weight, weight_type, channels, kernel, sequences, sequence_count, out);
  SPARKD_CUDA_LAUNCHED();
}

void gated_delta_net(const float* qkv, const float* a, const float* b, const void* a_neg,
                     DType a_neg_type, const void* dt_bias, DType dt_bias_type,
                     const DeltaNetShape& shape, const RecurrentSequenceArgs* sequences,
                     int64_t sequence_count, float* out, cudaStream_t stream) {
  if (sequence_count == 0) return;
  if (shape.key_head_dim > kMaxKeyHeadDim) {
    fail_call("gated_delta_net", "key_head_dim above 256 is not supported", __FILE__, __LINE__);
  }
  const dim3 grid(static_cast<unsigned>(sequence_count), static_cast<unsigned>(shape.value_heads));
  gated_delta_net_kernel<<<grid, kDeltaThreads, 0, stream>>>(qkv, a, b, a_neg, a_neg_type, dt_bias,
                                                             dt_bias_type, shape, sequences, out);
  SPARKD_CUDA_LAUNCHED();
}

}  // namespace sparkd::cuda
