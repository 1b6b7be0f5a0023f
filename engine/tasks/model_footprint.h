// What a model will hold in memory, from its file headers and config.json or GGUF metadata alone
// (no weights read): the governor reserves it before a load starts, and `sparkd plan` prints it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "engine/backend/tensor.h"
#include "engine/kv/kv_block_pool.h"
#include "engine/model/model_spec.h"

namespace sparkd::tasks {

struct FootprintOptions {
  int32_t max_batch_tokens = 2048;  // tokens one forward computes (the runner's cap)
  int32_t max_seqs = 64;            // rows of logits one decoder step produces at most
  int32_t max_batch_inputs = 64;    // encoders: inputs (pooled rows) in one forward at most
  DType activation_dtype = DType::kF32;
  DType kv_dtype = DType::kF32;  // the backend's kv_dtype() (placement.h: kv_dtype_for)
  // Generating models: the KV pool's block size and the cap its committed bytes stay within.
  int32_t block_tokens = 16;
  uint64_t kv_max_bytes = 0;
  // Float matrices quantized at load (WeightLoadOptions::quantize).
  std::optional<DType> quantize;
};

struct ModelFootprint {
  model::ModelSpec spec;
  uint64_t file_bytes = 0;     // what the load reads
  uint64_t weights_bytes = 0;  // as held: rank-1 tensors become F32 at load
  // One forward's activations and scratch at max_batch_tokens (decoders: plus the logits of
  // max_seqs rows), allocated once at load and reused by every forward.
  uint64_t workspace_bytes = 0;
  // Decoders: KV bytes per token of context, all attention layers, keys and values (0
  // otherwise).
  uint64_t kv_bytes_per_token = 0;
  // Models with linear-attention layers (Qwen3.5): each running sequence's recurrent state,
  // whatever its length (0 otherwise). The runner takes it from the same KV account.
  uint64_t recurrent_state_bytes_per_sequence = 0;
  // Generating models: the pool's shape at the most blocks kv_max buys (max_blocks 0 when it
  // buys none), what it commits when full (kv_max or less: granule rounding included), and
  // the least a pool of this model can commit (one granule per layer sub-range).
  KvBlockPoolGeometry kv_geometry;
  uint64_t kv_cap_bytes = 0;
  uint64_t kv_smallest_pool_bytes = 0;
  // The load's peak above what stays. Zero on the CPU: files are read straight into the
  // final allocation.
  uint64_t transient_bytes = 0;
};

// NOT_FOUND / INVALID_ARGUMENT / DATA_LOSS as loading the model would report them.
// `reference` is what LoadedModel::load takes: a directory, a .gguf file, ollama:, hf:.
Expected<ModelFootprint> estimate_footprint(const std::string& reference,
                                            const FootprintOptions& options);

// Bytes of one forward's activations for `tokens` tokens (and `logit_rows` rows of logits for
// decoders): the size of the model's workspace.
uint64_t workspace_bytes(const model::ModelSpec& spec, int64_t tokens, int64_t logit_rows,
                         DType activation_dtype);

}  // namespace sparkd::tasks
