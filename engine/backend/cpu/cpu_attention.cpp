// store_kv and attention over a KV cache whose slots are contiguous or paged.
//
// Attention is split into work items of (sequence, kv head, block of query rows). An item
// holds the queries of every head that shares its kv head (GQA), so each key and value row
// is read once for all of them. Keys are visited in tiles with an online softmax: per query a
// running max and sum, the accumulators rescaled by exp(old max - new max) when the max
// grows. Everything is F32, exp() only ever sees scores minus their max (no overflow), and
// memory stays bounded whatever the context length.
//
// Both products vectorise over head_dim: scores are dot products of a query with key rows as
// stored, and acc += p · v runs along value rows. An item reads only the keys its rows may
// see (causal limit, sliding window); inside a tile, keys invisible to one row are masked to
// -inf, i.e. probability 0. The tiling depends on positions only, so contiguous and paged
// layouts give bit-identical results.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/backend/cpu/cpu_kernels.h"

namespace sparkd::cpu {
namespace {

// Query rows of one sequence per work item (decode steps have one).
constexpr int64_t kQueryRowsPerItem = 16;
// Keys per tile: the tile's key and value rows stay in L1/L2 while every query of the item
// uses them.
constexpr int64_t kKeysPerTile = 16;

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

// Asks for the cache lines of a row that will be read soon: a kv head's rows are strided by
// kv_heads * head_dim, one per page for large caches, which the hardware prefetchers don't
// follow.
inline void prefetch_row(const void* row, int64_t bytes) {
  const char* p = static_cast<const char*>(row);
  for (int64_t line = 0; line < bytes; line += 64) __builtin_prefetch(p + line);
}

// The two products of a tile, per query vector:
//   scores:      score[j] = q · key_rows[j] for j < keys
//   accumulate:  acc[d] += Σ_j p[j] · value_rows[j][d]
// A portable version and an AVX2/FMA one (the compiler cannot be made to keep the partial
// sums in registers across keys on its own).
using TileScoresFn = void (*)(const float* query, const float* const* key_rows, int64_t keys,
                              int64_t head_dim, float* score);
using TileAccumulateFn = void (*)(const float* p, const float* const* value_rows, int64_t keys,
                                  int64_t head_dim, float* acc);
struct TileKernels {
  TileScoresFn scores;
  TileAccumulateFn accumulate;
};

SPARKD_CPU_CLONES
void tile_scores_portable(const float* query, const float* const* key_rows, int64_t keys,
                          int64_t head_dim, float* score) {
  for (int64_t j = 0; j < keys; ++j) score[j] = dot_f32<16>(query, key_rows[j], head_dim);
}

SPARKD_CPU_CLONES
void tile_accumulate_portable(const float* p, const float* const* value_rows, int64_t keys,
                              int64_t head_dim, float* acc) {
  for (int64_t j = 0; j < keys; ++j) {
    const float p_j = p[j];
    const float* value = value_rows[j];
#pragma omp simd
    for (int64_t d = 0; d < head_dim; ++d) acc[d] += p_j * value[d];
  }
}

#if SPARKD_CPU_X86
// Four keys at a time: each query chunk is loaded once for four independent FMA chains.
SPARKD_CPU_AVX2 void tile_scores_avx2(const float* query, const float* const* key_rows,
                                      int64_t keys, int64_t head_dim, float* score) {
  const int64_t vector_end = head_dim / 8 * 8;
  int64_t j = 0;
  for (; j + 4 <= keys; j += 4) {
    const float* k0 = key_rows[j];
    const float* k1 = key_rows[j + 1];
    const float* k2 = key_rows[j + 2];
    const float* k3 = key_rows[j + 3];
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    for (int64_t d = 0; d < vector_end; d += 8) {
      const __m256 q = _mm256_loadu_ps(query + d);
      acc0 = _mm256_fmadd_ps(q, _mm256_loadu_ps(k0 + d), acc0);
      acc1 = _mm256_fmadd_ps(q, _mm256_loadu_ps(k1 + d), acc1);
      acc2 = _mm256_fmadd_ps(q, _mm256_loadu_ps(k2 + d), acc2);
      acc3 = _mm256_fmadd_ps(q, _mm256_loadu_ps(k3 + d), acc3);
    }
    float s0 = horizontal_sum(acc0), s1 = horizontal_sum(acc1);
    float s2 = horizontal_sum(acc2), s3 = horizontal_sum(acc3);
    for (int64_t d = vector_end; d < head_dim; ++d) {
      s0 += query[d] * k0[d];
      s1 += query[d] * k1[d];
      s2 += query[d] * k2[d];
      s3 += query[d] * k3[d];
    }
    score[j] = s0;
    score[j + 1] = s1;
    score[j + 2] = s2;
    score[j + 3] = s3;
  }
  for (; j < keys; ++j) {
    const float* key = key_rows[j];
    __m256 acc = _mm256_setzero_ps();
    for (int64_t d = 0; d < vector_end; d += 8) {
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(query + d), _mm256_loadu_ps(key + d), acc);
    }
    float sum = horizontal_sum(acc);
    for (int64_t d = vector_end; d < head_dim; ++d) sum += query[d] * key[d];
    score[j] = sum;
  }
}

// 32 columns of acc in four registers across all keys, then 8, then one at a time.
SPARKD_CPU_AVX2 void tile_accumulate_avx2(const float* p, const float* const* value_rows,
                                          int64_t keys, int64_t head_dim, float* acc) {
  int64_t d0 = 0;
  for (; d0 + 32 <= head_dim; d0 += 32) {
    __m256 a0 = _mm256_loadu_ps(acc + d0), a1 = _mm256_loadu_ps(acc + d0 + 8);
    __m256 a2 = _mm256_loadu_ps(acc + d0 + 16), a3 = _mm256_loadu_ps(acc + d0 + 24);
    for (int64_t j = 0; j < keys; ++j) {
      const __m256 p_j = _mm256_broadcast_ss(p + j);
      const float* value = value_rows[j] + d0;
      a0 = _mm256_fmadd_ps(p_j, _mm256_loadu_ps(value), a0);
      a1 = _mm256_fmadd_ps(p_j, _mm256_loadu_ps(value + 8), a1);
      a2 = _mm256_fmadd_ps(p_j, _mm256_loadu_ps(value + 16), a2);
      a3 = _mm256_fmadd_ps(p_j, _mm256_loadu_ps(value + 24), a3);
    }
    _mm256_storeu_ps(acc + d0, a0);
    _mm256_storeu_ps(acc + d0 + 8, a1);
    _mm256_storeu_ps(acc + d0 + 16, a2);
    _mm256_storeu_ps(acc + d0 + 24, a3);
  }
  for (; d0 + 8 <= head_dim; d0 += 8) {
    __m256 a = _mm256_loadu_ps(acc + d0);
    for (int64_t j = 0; j < keys; ++j) {
      a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), _mm256_loadu_ps(value_rows[j] + d0), a);
    }
    _mm256_storeu_ps(acc + d0, a);
  }
  for (; d0 < head_dim; ++d0) {
    float sum = acc[d0];
    for (int64_t j = 0; j < keys; ++j) sum += p[j] * value_rows[j][d0];
    acc[d0] = sum;
  }
}
#endif

TileKernels tile_kernels_for(SimdLevel level) {
#if SPARKD_CPU_X86
  if (level != SimdLevel::kPortable) return {tile_scores_avx2, tile_accumulate_avx2};
#endif
  static_cast<void>(level);
  return {tile_scores_portable, tile_accumulate_portable};
}

struct AttentionJob {
  const float* q;
  float* out;
  int64_t heads;
  int64_t kv_heads;
  int64_t head_dim;
  int64_t group;  // query heads per kv head
  const KvLayerView* kv;
  AttentionParams params;
  std::span<const AttentionSequence> sequences;
  TileKernels tile_kernels;
  const float* sinks = nullptr;  // [heads] or none
};

struct WorkItem {
  int64_t sequence;
  int64_t kv_head;
  int64_t first_row;  // within the sequence's query rows
  int64_t rows;
};

// The keys [first, end) that query row `i` of `sequence` attends to.
struct KeyRange {
  int64_t first;
  int64_t end;
};
KeyRange visible_keys(const AttentionSequence& sequence, const AttentionParams& params, int64_t i) {
  if (!params.causal) return {0, sequence.context_tokens};
  const int64_t position = sequence.context_tokens - sequence.query_tokens + i;
  const int64_t first =
      params.sliding_window > 0 ? std::max<int64_t>(0, position - params.sliding_window + 1) : 0;
  return {first, position + 1};
}

SPARKD_CPU_CLONES
void attend(const AttentionJob& job, const WorkItem& item) {
  const AttentionSequence& sequence = job.sequences[item.sequence];
  const KvLayerView& kv = *job.kv;
  const int64_t head_dim = job.head_dim;
  const int64_t queries = item.rows * job.group;  // query vectors, row-major over (row, head)
  const bool f32_cache = kv.keys.dtype == DType::kF32;

  // Scratch: queries and accumulators [queries][head_dim], scores [queries][tile], running
  // max and sum [queries], key and value tiles [tile][head_dim] for 16-bit caches.
  const size_t scratch_floats = static_cast<size_t>(
      2 * queries * head_dim + queries * kKeysPerTile + 2 * queries + 2 * kKeysPerTile * head_dim);
  float* query = thread_scratch(0, scratch_floats);
  float* acc = query + queries * head_dim;
  float* scores = acc + queries * head_dim;
  float* running_max = scores + queries * kKeysPerTile;
  float* running_sum = running_max + queries;
  float* key_tile = running_sum + queries;
  float* value_tile = key_tile + kKeysPerTile * head_dim;

  // Copied first: out may be the same memory as q.
  for (int64_t r = 0; r < item.rows; ++r) {
    const int64_t token = sequence.query_begin + item.first_row + r;
    const float* src = job.q + (token * job.heads + item.kv_head * job.group) * head_dim;
    std::copy_n(src, job.group * head_dim, query + r * job.group * head_dim);
  }
  std::fill_n(acc, queries * head_dim, 0.0f);
  std::fill_n(running_max, queries, kNegativeInfinity);
  std::fill_n(running_sum, queries, 0.0f);

  KeyRange row_keys[kQueryRowsPerItem];
  for (int64_t r = 0; r < item.rows; ++r) {
    row_keys[r] = visible_keys(sequence, job.params, item.first_row + r);
  }
  const KeyRange item_keys = {row_keys[0].first, row_keys[item.rows - 1].end};
  const int64_t row_bytes = head_dim * static_cast<int64_t>(dtype_size_bytes(kv.keys.dtype));
  const auto row_offset = [&](int64_t position) {
    return (kv_slot(kv, sequence, position) * job.kv_heads + item.kv_head) * head_dim;
  };
  const char* keys_bytes = static_cast<const char*>(kv.keys.data);
  const char* values_bytes = static_cast<const char*>(kv.values.data);
  const int64_t element_bytes = static_cast<int64_t>(dtype_size_bytes(kv.keys.dtype));

  const float* key_rows[kKeysPerTile];
  const float* value_rows[kKeysPerTile];
  for (int64_t tile_begin = item_keys.first; tile_begin < item_keys.end;
       tile_begin += kKeysPerTile) {
    const int64_t tile_keys = std::min(kKeysPerTile, item_keys.end - tile_begin);
    const int64_t next_tile_end = std::min(item_keys.end, tile_begin + 2 * kKeysPerTile);
    for (int64_t position = tile_begin + kKeysPerTile; position < next_tile_end; ++position) {
      const int64_t offset_bytes = row_offset(position) * element_bytes;
      prefetch_row(keys_bytes + offset_bytes, row_bytes);
      prefetch_row(values_bytes + offset_bytes, row_bytes);
    }
    for (int64_t j = 0; j < tile_keys; ++j) {
      const int64_t offset = row_offset(tile_begin + j);
      if (f32_cache) {
        key_rows[j] = kv.keys.as<const float>() + offset;
        value_rows[j] = kv.values.as<const float>() + offset;
      } else {
        convert_to_f32(kv.keys.data, kv.keys.dtype, offset, head_dim, key_tile + j * head_dim);
        convert_to_f32(kv.values.data, kv.values.dtype, offset, head_dim,
                       value_tile + j * head_dim);
        key_rows[j] = key_tile + j * head_dim;
        value_rows[j] = value_tile + j * head_dim;
      }
    }

    // Scores, then the online-softmax update; scores become probabilities in place.
    for (int64_t qi = 0; qi < queries; ++qi) {
      float* score = scores + qi * kKeysPerTile;
      const float* query_vector = query + qi * head_dim;
      const KeyRange visible = row_keys[qi / job.group];
      float tile_max = kNegativeInfinity;
      job.tile_kernels.scores(query_vector, key_rows, tile_keys, head_dim, score);
      for (int64_t j = 0; j < tile_keys; ++j) {
        const int64_t key = tile_begin + j;
        score[j] = key >= visible.first && key < visible.end ? score[j] * job.params.scale
                                                             : kNegativeInfinity;
        tile_max = std::max(tile_max, score[j]);
      }
      if (tile_max == kNegativeInfinity) {  // nothing visible in this tile
        std::fill_n(score, tile_keys, 0.0f);
        continue;
      }
      float* acc_row = acc + qi * head_dim;
      const float new_max = std::max(running_max[qi], tile_max);
      if (new_max > running_max[qi]) {
        // exp(-inf) = 0 on the first visible tile, where acc and sum are still zero.
        const float correction = std::exp(running_max[qi] - new_max);
        running_sum[qi] *= correction;
#pragma omp simd
        for (int64_t d = 0; d < head_dim; ++d) acc_row[d] *= correction;
        running_max[qi] = new_max;
      }
      float tile_sum = 0.0f;
      for (int64_t j = 0; j < tile_keys; ++j) {
        score[j] = std::exp(score[j] - new_max);  // masked keys: exp(-inf) = 0
        tile_sum += score[j];
      }
      running_sum[qi] += tile_sum;
      job.tile_kernels.accumulate(score, value_rows, tile_keys, head_dim, acc_row);
    }
  }

  for (int64_t r = 0; r < item.rows; ++r) {
    const int64_t token = sequence.query_begin + item.first_row + r;
    for (int64_t g = 0; g < job.group; ++g) {
      const int64_t qi = r * job.group + g;
      float* dst = job.out + (token * job.heads + item.kv_head * job.group + g) * head_dim;
      const float* acc_row = acc + qi * head_dim;
      float sum = running_sum[qi];
      if (job.sinks != nullptr) {
        // The sink's logit joins the softmax with a zero value: only the sum grows. Past
        // exp's range the sink takes all the weight (inf sum, zero output), as it should.
        const float sink = job.sinks[item.kv_head * job.group + g];
        sum = sum > 0.0f ? sum + std::exp(sink - running_max[qi]) : 0.0f;
      }
      const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma omp simd
      for (int64_t d = 0; d < head_dim; ++d) dst[d] = acc_row[d] * inv_sum;
    }
  }
}

}  // namespace

void store_kv(const KernelConfig& config, const float* k, const float* v,
              std::span<const int32_t> slots, const KvLayerView& kv) {
  const int64_t row_elements = kv.keys.dim(1) * kv.keys.dim(2);
  parallel_for(config, static_cast<int64_t>(slots.size()), 2 * row_elements, [&](int64_t t) {
    const int64_t offset = static_cast<int64_t>(slots[t]) * row_elements;
    convert_from_f32(k + t * row_elements, row_elements, kv.keys.dtype, kv.keys.data, offset);
    convert_from_f32(v + t * row_elements, row_elements, kv.values.dtype, kv.values.data, offset);
  });
}

void attention(const KernelConfig& config, const float* q, int64_t heads, const KvLayerView& kv,
               std::span<const AttentionSequence> sequences, const AttentionParams& params,
               float* out) {
  AttentionJob job;
  job.q = q;
  job.out = out;
  job.heads = heads;
  job.kv_heads = kv.keys.dim(1);
  job.head_dim = kv.keys.dim(2);
  job.group = heads / job.kv_heads;
  job.kv = &kv;
  job.params = params;
  job.sequences = sequences;
  job.tile_kernels = tile_kernels_for(config.simd);
  job.sinks = params.sinks != nullptr ? params.sinks->as<const float>() : nullptr;

  std::vector<WorkItem> items;
  int64_t total_work = 0;
  for (size_t s = 0; s < sequences.size(); ++s) {
    const AttentionSequence& sequence = sequences[s];
    total_work += int64_t{sequence.query_tokens} * sequence.context_tokens * heads * job.head_dim;
    for (int64_t kv_head = 0; kv_head < job.kv_heads; ++kv_head) {
      for (int64_t row = 0; row < sequence.query_tokens; row += kQueryRowsPerItem) {
        items.push_back({static_cast<int64_t>(s), kv_head, row,
                         std::min<int64_t>(kQueryRowsPerItem, sequence.query_tokens - row)});
      }
    }
  }
  const int64_t item_count = static_cast<int64_t>(items.size());
  [[maybe_unused]] const bool parallel =
      config.num_threads > 1 && item_count > 1 && total_work >= kMinParallelWork;
#pragma omp parallel for schedule(dynamic) num_threads(config.num_threads) if (parallel)
  for (int64_t i = 0; i < item_count; ++i) attend(job, items[i]);
}

}  // namespace sparkd::cpu
