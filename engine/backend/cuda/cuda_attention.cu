// store_kv and attention over a KV cache whose slots are contiguous or paged.
//
// Attention: one block per (query row, head, key chunk), four warps. The warps split the
// block's visible keys (warp w takes keys w, w + 4, ...); each keeps an online softmax
// (running max, sum and output accumulator, the accumulator spread over its lanes,
// head_dim / 32 values each), and the four are merged at the end of the block.
//
// Split-KV (flash-decoding): a decode step has few (row, head) pairs but long contexts, too
// few blocks to fill the GPU. The keys are then cut into chunks of `split_keys`, one block
// each, which write their partial (max, sum, accumulator) to scratch; a second kernel merges
// the chunks of each (row, head). Without a split, one chunk covers every key and the block
// writes the output itself.
//
// The semantics are cpu_attention.cpp's: causal or bidirectional, sliding window, GQA, sinks,
// F32/F16/BF16 caches; a row with no visible key (or whose sink takes all the weight) gets
// zeros.
#include <cmath>
#include <string>

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

// The normalised output of a merged softmax: sum(acc_i e^(m_i - M)) / (sum(l_i e^(m_i - M))
// + the sink's term), zeros when nothing was visible.
__device__ __forceinline__ float softmax_scale(float max_all, float sum, const float* sinks,
                                               int head) {
  if (sinks != nullptr) {
    // The sink's logit joins the softmax with a zero value: only the sum grows.
    sum = sum > 0.0f ? sum + expf(sinks[head] - max_all) : 0.0f;
  }
  return sum > 0.0f ? 1.0f / sum : 0.0f;
}

template <int kDimsPerLane>
__global__ void attention_kernel(AttentionLaunch p) {
  extern __shared__ float shared[];  // [warps][head_dim] accumulators, then [warps] max, sum
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t row = p.first_row + blockIdx.x;
  const int head = static_cast<int>(blockIdx.y);
  const int chunk = static_cast<int>(blockIdx.z);
  const AttentionSequenceArgs seq = p.sequences[p.row_sequence[row]];
  const int64_t i = row - seq.query_begin;
  const int kv_head = head / (p.heads / p.kv_heads);
  const int head_dim = p.head_dim;

  // The keys [first, end) this row sees (visible_keys in cpu_attention.cpp), then this
  // block's chunk of them.
  int64_t first = 0, end = seq.context_tokens;
  if (p.params.causal) {
    const int64_t position = seq.context_tokens - seq.query_tokens + i;
    end = position + 1;
    if (p.params.sliding_window > 0) {
      first = position - p.params.sliding_window + 1;
      if (first < 0) first = 0;
    }
  }
  if (p.split_keys > 0) {
    const int64_t chunk_begin = static_cast<int64_t>(chunk) * p.split_keys;
    first = first > chunk_begin ? first : chunk_begin;
    end = end < chunk_begin + p.split_keys ? end : chunk_begin + p.split_keys;
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
  // This block's accumulator, relative to max_all.
  const auto merged = [&](int d) {
    float total = 0.0f;
    if (max_all != -INFINITY) {
      for (int w = 0; w < kAttentionWarps; ++w) {
        total += warp_acc[w * head_dim + d] * expf(warp_max[w] - max_all);
      }
    }
    return total;
  };
  if (p.split_keys > 0) {
    // Partial results, [rows][heads][chunks]: merged by attention_merge_kernel.
    const int64_t part = ((row - p.first_row) * p.heads + head) * p.chunks + chunk;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
      p.partial_acc[part * head_dim + d] = merged(d);
    }
    if (threadIdx.x == 0) {
      p.partial_max[part] = max_all;
      p.partial_sum[part] = sum;
    }
    return;
  }
  const float inv_sum = softmax_scale(max_all, sum, p.sinks, head);
  float* out_row = p.out + (row * p.heads + head) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) out_row[d] = merged(d) * inv_sum;
}

// One block per (row, head): the chunks' partial softmaxes merged into the output.
__global__ void attention_merge_kernel(AttentionLaunch p) {
  const int64_t local_row = blockIdx.x;
  const int head = static_cast<int>(blockIdx.y);
  const int64_t first_part = (local_row * p.heads + head) * p.chunks;
  float max_all = -INFINITY;
  for (int c = 0; c < p.chunks; ++c) max_all = fmaxf(max_all, p.partial_max[first_part + c]);
  float sum = 0.0f;
  if (max_all != -INFINITY) {
    for (int c = 0; c < p.chunks; ++c) {
      sum += p.partial_sum[first_part + c] * expf(p.partial_max[first_part + c] - max_all);
    }
  }
  const float inv_sum = softmax_scale(max_all, sum, p.sinks, head);
  float* out_row = p.out + ((p.first_row + local_row) * p.heads + head) * p.head_dim;
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    float total = 0.0f;
    if (max_all != -INFINITY) {
      for (int c = 0; c < p.chunks; ++c) {
        total += p.partial_acc[(first_part + c) * p.head_dim + d] *
                 expf(p.partial_max[first_part + c] - max_all);
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

Status check_attention_launches(const cudaDeviceProp& prop) {
  const int threads = kAttentionWarps * kWarp;
  const size_t max_shared_bytes =
      (static_cast<size_t>(kAttentionWarps) * kMaxDimsPerLane * kWarp + 2 * kAttentionWarps) *
      sizeof(float);
  const void* kernels[] = {reinterpret_cast<const void*>(attention_kernel<1>),
                           reinterpret_cast<const void*>(attention_kernel<2>),
                           reinterpret_cast<const void*>(attention_kernel<4>),
                           reinterpret_cast<const void*>(attention_kernel<8>),
                           reinterpret_cast<const void*>(attention_merge_kernel)};
  for (const void* kernel : kernels) {
    cudaFuncAttributes attributes{};
    const cudaError_t error = cudaFuncGetAttributes(&attributes, kernel);
    if (error != cudaSuccess) {
      cudaGetLastError();
      return Status(StatusCode::kUnavailable,
                    "attention kernels for sm_" + std::to_string(prop.major) +
                        std::to_string(prop.minor) + ": " + cudaGetErrorString(error) +
                        " (this build targets CMAKE_CUDA_ARCHITECTURES)");
    }
    if (attributes.maxThreadsPerBlock < threads ||
        attributes.sharedSizeBytes + max_shared_bytes > prop.sharedMemPerBlock) {
      return Status(StatusCode::kUnavailable,
                    "attention kernels need " + std::to_string(threads) + " threads and " +
                        std::to_string(attributes.sharedSizeBytes + max_shared_bytes) +
                        " bytes of shared memory per block; the device allows " +
                        std::to_string(attributes.maxThreadsPerBlock) + " and " +
                        std::to_string(prop.sharedMemPerBlock));
    }
  }
  return Status::ok();
}

size_t attention_partial_floats(int64_t rows, int32_t heads, int32_t head_dim, int32_t chunks) {
  return static_cast<size_t>(rows) * static_cast<size_t>(heads) * static_cast<size_t>(chunks) *
         (static_cast<size_t>(head_dim) + 2);
}

void attention(const AttentionLaunch& launch, cudaStream_t stream) {
  if (launch.rows == 0) return;
  const int dims_per_lane = (launch.head_dim + kWarp - 1) / kWarp;
  if (dims_per_lane > kMaxDimsPerLane) {
    fail_call("attention", "head_dim above 256 is not supported", __FILE__, __LINE__);
  }
  const bool split = launch.split_keys > 0;
  const dim3 grid(static_cast<unsigned>(launch.rows), static_cast<unsigned>(launch.heads),
                  split ? static_cast<unsigned>(launch.chunks) : 1u);
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
  if (split) {
    const dim3 merge_grid(static_cast<unsigned>(launch.rows), static_cast<unsigned>(launch.heads));
    attention_merge_kernel<<<merge_grid, threads, 0, stream>>>(launch);
    SPARKD_CUDA_LAUNCHED();
  }
}

}  // namespace sparkd::cuda
