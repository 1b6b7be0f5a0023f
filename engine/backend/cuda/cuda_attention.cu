// store_kv and attention over a KV cache whose slots are contiguous or paged.
//
// Attention: one block per (query row, head, key chunk), four warps. The warps split the
// block's visible keys (warp w takes keys w, w + 4, ...); each keeps an online softmax
// (running max, sum and output accumulator, the accumulator spread over its lanes,
// head_dim / 32 values each), and the four are merged at the end of the block.
//
// Tiled (prefill): the per-row kernel reads every visible key from global memory once per
// query row, so a prefill of n tokens reads its keys ~n²/2 times. The tiled kernel takes
// kAttentionTileRows consecutive rows of one sequence per block (four per warp) and walks
// their keys in shared-memory tiles of kKeyTile: each key and value is read from global
// memory once per tile of rows. Within a key tile lane j scores key j against each of the
// warp's rows (K rows padded to head_dim + 1 floats, so the lanes' reads fall in distinct
// banks); then key j's probabilities are broadcast from lane j and each value is read once
// for all of the warp's rows. Tiles of up to 128 dims fit the default 48 KiB of shared
// memory; larger heads use the device's opt-in limit, checked at start-up
// (check_attention_launches), and fall back to the per-row kernel where it is too small.
// cuda_backend.cu's plan_tiles decides which sequences of a call are tiled.
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
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/backend/cuda/cuda_common.cuh"
#include "engine/backend/cuda/cuda_kernels.h"

namespace sparkd::cuda {
namespace {

constexpr int kAttentionWarps = 4;
constexpr int kMaxDimsPerLane = 8;  // head_dim up to 256
constexpr int kKeyTile = kWarp;     // keys per shared-memory tile of the tiled kernel: one a lane
constexpr int kTileRowsPerWarp = kAttentionTileRows / kAttentionWarps;
static_assert(kAttentionTileRows % kAttentionWarps == 0);

// Shared memory of the tiled kernel: the tile's queries, one key tile (rows padded by one
// float) and one value tile, all F32.
size_t tiled_shared_bytes(int64_t head_dim) {
  return (static_cast<size_t>(kAttentionTileRows) * head_dim +
          static_cast<size_t>(kKeyTile) * (head_dim + 1) +
          static_cast<size_t>(kKeyTile) * head_dim) *
         sizeof(float);
}

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

// The cache slot of a sequence's key at `position`.
__device__ __forceinline__ int64_t kv_slot(const AttentionLaunch& p,
                                           const AttentionSequenceArgs& seq, int64_t position) {
  if (p.block_tokens == 0) return seq.kv_slot_begin + position;
  return static_cast<int64_t>(p.block_tables[seq.block_table_offset + position / p.block_tokens]) *
             p.block_tokens +
         position % p.block_tokens;
}

// The keys [first, end) query i of a sequence sees (visible_keys in cpu_attention.cpp).
__device__ __forceinline__ void visible_keys(const AttentionParams& params,
                                             const AttentionSequenceArgs& seq, int64_t i,
                                             int64_t* first, int64_t* end) {
  *first = 0;
  *end = seq.context_tokens;
  if (params.causal) {
    const int64_t position = seq.context_tokens - seq.query_tokens + i;
    *end = position + 1;
    if (params.sliding_window > 0) {
      *first = position - params.sliding_window + 1;
      if (*first < 0) *first = 0;
    }
  }
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

  // The keys this row sees, then this block's chunk of them.
  int64_t first = 0, end = 0;
  visible_keys(p.params, seq, i, &first, &end);
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
    const int64_t offset = (kv_slot(p, seq, position) * p.kv_heads + kv_head) * head_dim;
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

// One block per (tile of query rows, head); warp w owns the tile's rows w, w + 4, w + 8, ...
template <int kDimsPerLane>
__global__ void attention_tiled_kernel(AttentionLaunch p) {
  extern __shared__ float shared[];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const AttentionTile tile = p.tiles[blockIdx.x];
  const int head = static_cast<int>(blockIdx.y);
  const AttentionSequenceArgs seq = p.sequences[tile.sequence];
  const int kv_head = head / (p.heads / p.kv_heads);
  const int head_dim = p.head_dim;
  const int k_stride = head_dim + 1;
  float* q_tile = shared;                                  // [tile rows][head_dim], scaled
  float* k_tile = q_tile + kAttentionTileRows * head_dim;  // [kKeyTile][head_dim + 1]
  float* v_tile = k_tile + kKeyTile * k_stride;            // [kKeyTile][head_dim]

  for (int e = threadIdx.x; e < kAttentionTileRows * head_dim; e += blockDim.x) {
    const int t = e / head_dim, d = e % head_dim;
    q_tile[e] =
        t < tile.rows
            ? p.q[(static_cast<int64_t>(tile.first_row + t) * p.heads + head) * head_dim + d] *
                  p.params.scale
            : 0.0f;
  }

  // The keys each of this warp's rows sees (none for rows past the tile's end), and the keys
  // any row of the tile sees: rows are consecutive, so the first row's first key and the last
  // row's end bound them.
  const int64_t first_index = tile.first_row - seq.query_begin;
  int64_t first[kTileRowsPerWarp], end[kTileRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kTileRowsPerWarp; ++r) {
    const int t = warp + kAttentionWarps * r;
    first[r] = 0;
    end[r] = 0;
    if (t < tile.rows) visible_keys(p.params, seq, first_index + t, &first[r], &end[r]);
  }
  int64_t tile_first = 0, tile_end = 0, unused = 0;
  visible_keys(p.params, seq, first_index, &tile_first, &unused);
  visible_keys(p.params, seq, first_index + tile.rows - 1, &unused, &tile_end);

  float acc[kTileRowsPerWarp][kDimsPerLane];
  float row_max[kTileRowsPerWarp], row_sum[kTileRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kTileRowsPerWarp; ++r) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) acc[r][c] = 0.0f;
  }

  for (int64_t key0 = tile_first; key0 < tile_end; key0 += kKeyTile) {
    __syncthreads();  // the previous key tile is read (and, the first time, q_tile written)
    for (int e = threadIdx.x; e < kKeyTile * head_dim; e += blockDim.x) {
      const int j = e / head_dim, d = e % head_dim;
      const int64_t position = key0 + j;
      float key = 0.0f, value = 0.0f;
      if (position < tile_end) {
        const int64_t at = (kv_slot(p, seq, position) * p.kv_heads + kv_head) * head_dim + d;
        key = load_f32(p.keys, p.kv_type, at);
        value = load_f32(p.values, p.kv_type, at);
      }
      k_tile[j * k_stride + d] = key;
      v_tile[j * head_dim + d] = value;
    }
    __syncthreads();

    // Lane j scores key key0 + j against each of the warp's rows.
    float score[kTileRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kTileRowsPerWarp; ++r) score[r] = 0.0f;
    const float* k_row = k_tile + lane * k_stride;
    for (int d = 0; d < head_dim; ++d) {
      const float key = k_row[d];
#pragma unroll
      for (int r = 0; r < kTileRowsPerWarp; ++r) {
        score[r] += q_tile[(warp + kAttentionWarps * r) * head_dim + d] * key;
      }
    }
    // Per row: the tile's probabilities against the running maximum, the sum and the
    // accumulators rescaled to it. A row that sees none of these keys is left as it was.
    const int64_t position = key0 + lane;
    float probability[kTileRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kTileRowsPerWarp; ++r) {
      const bool visible = position >= first[r] && position < end[r];
      probability[r] = 0.0f;
      const float tile_max = warp_max(visible ? score[r] : -INFINITY);
      if (tile_max == -INFINITY) continue;  // the same in every lane
      const float new_max = fmaxf(row_max[r], tile_max);
      const float correction = expf(row_max[r] - new_max);  // 0 before the first visible key
      probability[r] = visible ? expf(score[r] - new_max) : 0.0f;
      row_sum[r] = row_sum[r] * correction + warp_sum(probability[r]);
#pragma unroll
      for (int c = 0; c < kDimsPerLane; ++c) acc[r][c] *= correction;
      row_max[r] = new_max;
    }
    // acc += p · V: key j's probabilities broadcast from lane j, each value read once for
    // all of the warp's rows. Keys past the tile's end have probability 0 everywhere.
    const int keys = static_cast<int>(tile_end - key0 < kKeyTile ? tile_end - key0 : kKeyTile);
    for (int j = 0; j < keys; ++j) {
      float weight[kTileRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kTileRowsPerWarp; ++r) {
        weight[r] = __shfl_sync(0xffffffffu, probability[r], j);
      }
      const float* v_row = v_tile + j * head_dim;
#pragma unroll
      for (int c = 0; c < kDimsPerLane; ++c) {
        const int d = lane + c * kWarp;
        if (d < head_dim) {
          const float value = v_row[d];
#pragma unroll
          for (int r = 0; r < kTileRowsPerWarp; ++r) acc[r][c] += weight[r] * value;
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kTileRowsPerWarp; ++r) {
    const int t = warp + kAttentionWarps * r;
    if (t >= tile.rows) continue;
    const float inv_sum = softmax_scale(row_max[r], row_sum[r], p.sinks, head);
    float* out_row = p.out + (static_cast<int64_t>(tile.first_row + t) * p.heads + head) * head_dim;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) {
      const int d = lane + c * kWarp;
      if (d < head_dim) out_row[d] = acc[r][c] * inv_sum;
    }
  }
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

Status check_attention_launches(const cudaDeviceProp& prop, AttentionTiling* tiling) {
  const int threads = kAttentionWarps * kWarp;
  const std::string sm = "sm_" + std::to_string(prop.major) + std::to_string(prop.minor);
  struct Kernel {
    const void* function;
    size_t dynamic_shared_bytes;  // at the largest head_dim it takes
  };
  const auto per_row_shared = [](int dims_per_lane) {
    return (static_cast<size_t>(kAttentionWarps) * dims_per_lane * kWarp + 2 * kAttentionWarps) *
           sizeof(float);
  };
  const Kernel kernels[] = {
      {reinterpret_cast<const void*>(attention_kernel<1>), per_row_shared(1)},
      {reinterpret_cast<const void*>(attention_kernel<2>), per_row_shared(2)},
      {reinterpret_cast<const void*>(attention_kernel<4>), per_row_shared(4)},
      {reinterpret_cast<const void*>(attention_kernel<8>), per_row_shared(8)},
      {reinterpret_cast<const void*>(attention_merge_kernel), 0},
  };
  for (const Kernel& kernel : kernels) {
    cudaFuncAttributes attributes{};
    const cudaError_t error = cudaFuncGetAttributes(&attributes, kernel.function);
    if (error != cudaSuccess) {
      cudaGetLastError();
      return Status(StatusCode::kUnavailable, "attention kernels for " + sm + ": " +
                                                  cudaGetErrorString(error) +
                                                  " (this build targets CMAKE_CUDA_ARCHITECTURES)");
    }
    if (attributes.maxThreadsPerBlock < threads ||
        attributes.sharedSizeBytes + kernel.dynamic_shared_bytes > prop.sharedMemPerBlock) {
      return Status(StatusCode::kUnavailable,
                    "attention kernels need " + std::to_string(threads) + " threads and " +
                        std::to_string(attributes.sharedSizeBytes + kernel.dynamic_shared_bytes) +
                        " bytes of shared memory per block; the device allows " +
                        std::to_string(attributes.maxThreadsPerBlock) + " and " +
                        std::to_string(prop.sharedMemPerBlock));
    }
  }

  // The tiled kernels: each head size they take must fit the device's opt-in shared memory;
  // those above the default 48 KiB are allowed it explicitly. The per-row kernel takes what
  // does not fit.
  tiling->max_head_dim = 0;
  const void* tiled[] = {reinterpret_cast<const void*>(attention_tiled_kernel<1>),
                         reinterpret_cast<const void*>(attention_tiled_kernel<2>),
                         reinterpret_cast<const void*>(attention_tiled_kernel<4>),
                         reinterpret_cast<const void*>(attention_tiled_kernel<8>)};
  const int dims_per_lane[] = {1, 2, 4, 8};
  for (int i = 0; i < 4; ++i) {
    cudaFuncAttributes attributes{};
    if (cudaFuncGetAttributes(&attributes, tiled[i]) != cudaSuccess ||
        attributes.maxThreadsPerBlock < threads) {
      cudaGetLastError();
      return Status(StatusCode::kUnavailable, "tiled attention kernels for " + sm +
                                                  " cannot launch " + std::to_string(threads) +
                                                  " threads");
    }
    // Devices without an opt-in figure report 0: their default is the limit.
    const size_t device_limit = std::max(prop.sharedMemPerBlockOptin, prop.sharedMemPerBlock);
    const size_t limit =
        device_limit > attributes.sharedSizeBytes ? device_limit - attributes.sharedSizeBytes : 0;
    int32_t head_dim = dims_per_lane[i] * kWarp;
    while (head_dim > 0 && tiled_shared_bytes(head_dim) > limit) --head_dim;
    if (head_dim <= (i == 0 ? 0 : dims_per_lane[i - 1] * kWarp)) break;  // none of its sizes fit
    const size_t bytes = tiled_shared_bytes(head_dim);
    if (bytes + attributes.sharedSizeBytes > prop.sharedMemPerBlock &&
        cudaFuncSetAttribute(tiled[i], cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bytes)) != cudaSuccess) {
      cudaGetLastError();
      break;
    }
    tiling->max_head_dim = head_dim;
    if (head_dim < dims_per_lane[i] * kWarp) break;  // the larger kernels fit even less
  }
  return Status::ok();
}

Status check_attention_tiling(const AttentionTiling& tiling, cudaStream_t stream) {
  // One chunk of a causal prefill after 13 earlier tokens (three tiles, the last partial),
  // paged in blocks of 16 laid out backwards, GQA 4:2, an F32 cache; one head size for each
  // of the four kernels (256 with the opt-in shared memory), one case with a sliding window.
  struct Case {
    int32_t head_dim, sliding_window;
  };
  for (const Case& c : {Case{32, 0}, Case{64, 0}, Case{128, 9}, Case{256, 0}}) {
    if (c.head_dim > tiling.max_head_dim) continue;
    constexpr int32_t kRows = 35, kContext = 48, kHeads = 4, kKvHeads = 2, kBlockTokens = 16;
    constexpr int32_t kBlocks = kContext / kBlockTokens;
    const int64_t q_floats = int64_t{kRows} * kHeads * c.head_dim;
    const int64_t kv_floats = int64_t{kContext} * kKvHeads * c.head_dim;
    std::vector<float> host(static_cast<size_t>(q_floats + 2 * kv_floats));
    for (size_t i = 0; i < host.size(); ++i) {
      host[i] = static_cast<float>(static_cast<int64_t>((i * 2654435761u) % 1999) - 999) / 999.0f;
    }
    AttentionSequenceArgs sequence{0, kRows, kContext, 0, 0};
    std::vector<int32_t> tables(kBlocks), row_sequence(kRows, 0);
    for (int32_t b = 0; b < kBlocks; ++b) tables[b] = kBlocks - 1 - b;
    std::vector<AttentionTile> tiles;
    for (int32_t row = 0; row < kRows; row += kAttentionTileRows) {
      tiles.push_back({0, row, std::min(kAttentionTileRows, kRows - row)});
    }

    char* memory = nullptr;
    const size_t float_bytes = (host.size() + 2 * q_floats) * sizeof(float);
    const size_t bytes = float_bytes + sizeof(sequence) + (kBlocks + kRows) * sizeof(int32_t) +
                         tiles.size() * sizeof(AttentionTile) + 64;
    if (cudaMalloc(&memory, bytes) != cudaSuccess) {
      cudaGetLastError();
      return Status(StatusCode::kUnavailable, "cannot allocate the attention self-check's buffers");
    }
    size_t used = 0;
    const auto place = [&](const void* data, size_t size) {
      used = (used + 15) / 16 * 16;
      char* at = memory + used;
      if (data != nullptr) {
        SPARKD_CUDA_CHECK(cudaMemcpyAsync(at, data, size, cudaMemcpyHostToDevice, stream));
      }
      used += size;
      return at;
    };
    auto* inputs = reinterpret_cast<float*>(place(host.data(), host.size() * sizeof(float)));
    // Both outputs start as NaN: an element either kernel leaves unwritten fails the check.
    auto* per_row_out = reinterpret_cast<float*>(place(nullptr, q_floats * sizeof(float)));
    auto* tiled_out = reinterpret_cast<float*>(place(nullptr, q_floats * sizeof(float)));
    SPARKD_CUDA_CHECK(cudaMemsetAsync(per_row_out, 0xff, q_floats * sizeof(float), stream));
    SPARKD_CUDA_CHECK(cudaMemsetAsync(tiled_out, 0xff, q_floats * sizeof(float), stream));
    AttentionLaunch launch;
    launch.q = inputs;
    launch.keys = inputs + q_floats;
    launch.values = inputs + q_floats + kv_floats;
    launch.rows = kRows;
    launch.heads = kHeads;
    launch.kv_heads = kKvHeads;
    launch.head_dim = c.head_dim;
    launch.kv_type = DType::kF32;
    launch.block_tokens = kBlockTokens;
    launch.params.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    launch.params.sliding_window = c.sliding_window;
    launch.sequences =
        reinterpret_cast<const AttentionSequenceArgs*>(place(&sequence, sizeof(sequence)));
    launch.block_tables =
        reinterpret_cast<const int32_t*>(place(tables.data(), tables.size() * sizeof(int32_t)));
    launch.row_sequence = reinterpret_cast<const int32_t*>(
        place(row_sequence.data(), row_sequence.size() * sizeof(int32_t)));
    AttentionLaunch tiled = launch;
    launch.out = per_row_out;
    attention(launch, stream);
    tiled.out = tiled_out;
    tiled.tiles = reinterpret_cast<const AttentionTile*>(
        place(tiles.data(), tiles.size() * sizeof(AttentionTile)));
    tiled.tile_count = static_cast<int32_t>(tiles.size());
    attention(tiled, stream);
    std::vector<float> want(static_cast<size_t>(q_floats)), got(static_cast<size_t>(q_floats));
    SPARKD_CUDA_CHECK(cudaMemcpyAsync(want.data(), per_row_out, q_floats * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream));
    SPARKD_CUDA_CHECK(cudaMemcpyAsync(got.data(), tiled_out, q_floats * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream));
    SPARKD_CUDA_CHECK(cudaStreamSynchronize(stream));
    cudaFree(memory);
    for (size_t i = 0; i < got.size(); ++i) {
      if (!(std::fabs(got[i] - want[i]) <= 1e-4f * (1.0f + std::fabs(want[i])))) {
        return Status(StatusCode::kUnavailable,
                      "tiled attention self-check failed (head_dim " + std::to_string(c.head_dim) +
                          "): element " + std::to_string(i) + " is " + std::to_string(got[i]) +
                          ", the per-row kernel gives " + std::to_string(want[i]));
      }
    }
  }
  return Status::ok();
}

size_t attention_partial_floats(int64_t rows, int32_t heads, int32_t head_dim, int32_t chunks) {
  return static_cast<size_t>(rows) * static_cast<size_t>(heads) * static_cast<size_t>(chunks) *
         (static_cast<size_t>(head_dim) + 2);
}

void attention(const AttentionLaunch& launch, cudaStream_t stream) {
  if (launch.rows == 0 && launch.tile_count == 0) return;
  const int dims_per_lane = (launch.head_dim + kWarp - 1) / kWarp;
  if (dims_per_lane > kMaxDimsPerLane) {
    fail_call("attention", "head_dim above 256 is not supported", __FILE__, __LINE__);
  }
  const int threads = kAttentionWarps * kWarp;
  // The instantiation whose accumulators hold head_dim: 1, 2, 4 or 8 values per lane.
  using Kernel = void (*)(AttentionLaunch);
  const auto pick = [&](Kernel one, Kernel two, Kernel four, Kernel eight) {
    return dims_per_lane <= 1 ? one : dims_per_lane <= 2 ? two : dims_per_lane <= 4 ? four : eight;
  };
  if (launch.tile_count > 0) {
    // The caller checked the head size against AttentionTiling::max_head_dim.
    const Kernel kernel = pick(attention_tiled_kernel<1>, attention_tiled_kernel<2>,
                               attention_tiled_kernel<4>, attention_tiled_kernel<8>);
    const dim3 grid(static_cast<unsigned>(launch.tile_count), static_cast<unsigned>(launch.heads));
    kernel<<<grid, threads, tiled_shared_bytes(launch.head_dim), stream>>>(launch);
    SPARKD_CUDA_LAUNCHED();
    return;
  }
  const bool split = launch.split_keys > 0;
  const dim3 grid(static_cast<unsigned>(launch.rows), static_cast<unsigned>(launch.heads),
                  split ? static_cast<unsigned>(launch.chunks) : 1u);
  const size_t shared_bytes =
      (static_cast<size_t>(kAttentionWarps) * launch.head_dim + 2 * kAttentionWarps) *
      sizeof(float);
  const Kernel kernel =
      pick(attention_kernel<1>, attention_kernel<2>, attention_kernel<4>, attention_kernel<8>);
  kernel<<<grid, threads, shared_bytes, stream>>>(launch);
  SPARKD_CUDA_LAUNCHED();
  if (split) {
    const dim3 merge_grid(static_cast<unsigned>(launch.rows), static_cast<unsigned>(launch.heads));
    attention_merge_kernel<<<merge_grid, threads, 0, stream>>>(launch);
    SPARKD_CUDA_LAUNCHED();
  }
}

}  // namespace sparkd::cuda
