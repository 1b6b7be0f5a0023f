// store_kv and attention over a KV cache whose slots are contiguous or paged.
//
// Attention: one block per (query row, head), four warps. The warps split the row's visible
// keys (warp w takes keys w, w + 4, ...); each keeps an online softmax (running max, sum and
// output accumulator, the accumulator spread over its lanes, head_dim / 32 values each) and
// the four are merged at the end. The semantics are cpu_attention.cpp's: causal or
// bidirectional, sliding window, GQA, sinks, F32/F16/BF16 caches; a row with no visible key
// (or whose sink takes all the weight) gets zeros.
#include <cmath>

#include "engine/backend/cuda/cuda_common.cuh"
#include "engine/backend/cuda/cuda_kernels.h"

namespace sparkd::cuda {
namespace {

constexpr int kAttentionWarps = 4;
constexpr int kMaxDimsPerLane = 8;  // head_dim up to 256

__global__ void store_kv_kernel(const float* k, const float* v, const int32_t* slots,
                                int64_t tokens, int64_t row_elements, void* keys, void* values,
                                DType kv_type) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < tokens * row_elements; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / row_elements, e = i % row_elements;
    const int64_t at = static_cast<int64_t>(slots[t]) * row_elements + e;
    store_f32(keys, kv_type, at, k[i]);
    store_f32(values, kv_type, at, v[i]);
  }
}

template <int kDimsPerLane>
__global__ void attention_kernel(AttentionLaunch p) {
  extern __shared__ float shared[];  // [warps][head_dim] accumulators, then [warps] max, sum
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t row = p.first_row + blockIdx.x;
  const int head = static_cast<int>(blockIdx.y);
  const AttentionSequenceArgs seq = p.sequences[p.row_sequence[row]];
  const int64_t i = row - seq.query_begin;
  const int kv_head = head / (p.heads / p.kv_heads);
  const int head_dim = p.head_dim;

  // The keys [first, end) this row sees (visible_keys in cpu_attention.cpp).
  int64_t first = 0, end = seq.context_tokens;
  if (p.params.causal) {
    const int64_t position = seq.context_tokens - seq.query_tokens + i;
    end = position + 1;
    if (p.params.sliding_window > 0) {
      first = position - p.params.sliding_window + 1;
      if (first < 0) first = 0;
    }
  }

  float q[kDimsPerLane], acc[kDimsPerLane];
  const float* q_row = p.q + (row * p.heads + head) * head_dim;
#pragma unroll
  for (int r = 0; r < kDimsPerLane; ++r) {
    const int d = lane + r * kWarp;
    q[r] = d < head_dim ? q_row[d] : 0.0f;
    acc[r] = 0.0f;
  }
  float running_max = -INFINITY, running_sum = 0.0f;
  for (int64_t position = first + warp; position < end; position += kAttentionWarps) {
    const int64_t slot =
        p.block_tokens == 0
            ? seq.kv_slot_begin + position
            : static_cast<int64_t>(
                  p.block_tables[seq.block_table_offset + position / p.block_tokens]) *
                      p.block_tokens +
                  position % p.block_tokens;
    const int64_t offset = (slot * p.kv_heads + kv_head) * head_dim;
    float partial = 0.0f;
#pragma unroll
    for (int r = 0; r < kDimsPerLane; ++r) {
      const int d = lane + r * kWarp;
      if (d < head_dim) partial += q[r] * load_f32(p.keys, p.kv_type, offset + d);
    }
    const float score = warp_sum(partial) * p.params.scale;
    const float new_max = fmaxf(running_max, score);
    const float correction = expf(running_max - new_max);  // 0 on the first key
    const float probability = expf(score - new_max);
    running_sum = running_sum * correction + probability;
#pragma unroll
    for (int r = 0; r < kDimsPerLane; ++r) {
      const int d = lane + r * kWarp;
      const float value = d < head_dim ? load_f32(p.values, p.kv_type, offset + d) : 0.0f;
      acc[r] = acc[r] * correction + probability * value;
    }
    running_max = new_max;
  }

  float* warp_acc = shared;
  float* warp_max = shared + kAttentionWarps * head_dim;
  float* warp_sum_of = warp_max + kAttentionWarps;
#pragma unroll
  for (int r = 0; r < kDimsPerLane; ++r) {
    const int d = lane + r * kWarp;
    if (d < head_dim) warp_acc[warp * head_dim + d] = acc[r];
  }
  if (lane == 0) {
    warp_max[warp] = running_max;
    warp_sum_of[warp] = running_sum;
  }
  __syncthreads();  // also: every warp has read its q before out (maybe q) is written

  float max_all = -INFINITY;
  for (int w = 0; w < kAttentionWarps; ++w) max_all = fmaxf(max_all, warp_max[w]);
  float sum = 0.0f;
  if (max_all != -INFINITY) {
    for (int w = 0; w < kAttentionWarps; ++w) sum += warp_sum_of[w] * expf(warp_max[w] - max_all);
  }
  if (p.sinks != nullptr) {
    // The sink's logit joins the softmax with a zero value: only the sum grows.
    sum = sum > 0.0f ? sum + expf(p.sinks[head] - max_all) : 0.0f;
  }
  const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
  float* out_row = p.out + (row * p.heads + head) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float total = 0.0f;
    if (max_all != -INFINITY) {
      for (int w = 0; w < kAttentionWarps; ++w) {
        total += warp_acc[w * head_dim + d] * expf(warp_max[w] - max_all);
      }
    }
    out_row[d] = total * inv_sum;
  }
}

}  // namespace

void store_kv(const float* k, const float* v, const int32_t* slots, int64_t tokens,
              int64_t row_elements, void* keys, void* values, DType kv_type, cudaStream_t stream) {
  if (tokens == 0) return;
  store_kv_kernel<<<elementwise_blocks(tokens * row_elements), kElementwiseThreads, 0, stream>>>(
      k, v, slots, tokens, row_elements, keys, values, kv_type);
  SPARKD_CUDA_LAUNCHED();
}

void attention(const AttentionLaunch& launch, cudaStream_t stream) {
  if (launch.rows == 0) return;
  const int dims_per_lane = (launch.head_dim + kWarp - 1) / kWarp;
  if (dims_per_lane > kMaxDimsPerLane) {
    fail_call("attention", "head_dim above 256 is not supported", __FILE__, __LINE__);
  }
  const dim3 grid(static_cast<unsigned>(launch.rows), static_cast<unsigned>(launch.heads));
  const size_t shared_bytes =
      (static_cast<size_t>(kAttentionWarps) * launch.head_dim + 2 * kAttentionWarps) *
      sizeof(float);
  const int threads = kAttentionWarps * kWarp;
  if (dims_per_lane <= 1) {
    attention_kernel<1><<<grid, threads, shared_bytes, stream>>>(launch);
  } else if (dims_per_lane <= 2) {
    attention_kernel<2><<<grid, threads, shared_bytes, stream>>>(launch);
  } else if (dims_per_lane <= 4) {
    attention_kernel<4><<<grid, threads, shared_bytes, stream>>>(launch);
  } else {
    attention_kernel<8><<<grid, threads, shared_bytes, stream>>>(launch);
  }
  SPARKD_CUDA_LAUNCHED();
}

}  // namespace sparkd::cuda
