// Batching for encoder models (embed, rerank): pure bookkeeping, like Scheduler is for
// decoders. A request brings several inputs (texts or query/document pairs), already
// tokenized; each batch takes waiting inputs in priority-then-arrival order while its
// padded size (inputs × longest input) stays within max_batch_tokens and its input count
// within max_batch_inputs: TEI's budget, which counts padding so a batch's cost does not
// depend on whether the backend pads. A request's inputs may be spread over several batches.
// No tensors and no model calls here; EncoderRunner executes the batches.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <vector>

#include "engine/sched/scheduler.h"

namespace sparkd::sched {

struct EncoderBatcherConfig {
  int32_t max_batch_tokens = 16384;  // inputs × longest input, per batch
  int32_t max_batch_inputs = 64;
};

// Input `index` of request `id`, with its length in tokens.
struct EncoderBatchItem {
  RequestId id = 0;
  int32_t index = 0;
  int32_t tokens = 0;
};

struct EncoderBatch {
  std::vector<EncoderBatchItem> items;
  int32_t longest_tokens = 0;
  int64_t tokens() const;         // real tokens
  int64_t padded_tokens() const;  // items × longest: what the budget counts
  bool empty() const { return items.empty(); }
};

class EncoderBatcher {
 public:
  explicit EncoderBatcher(const EncoderBatcherConfig& config);

  // Queues the inputs of a request; `input_tokens[i]` is input i's length (≥ 1).
  void add(RequestId id, std::span<const int32_t> input_tokens, int32_t priority = 0);
  // Takes the next batch off the queue: at least one input whenever any waits, even one
  // longer than the budget alone (the runner refuses inputs longer than the model accepts).
  EncoderBatch next_batch();
  // Drops the inputs of `id` still waiting (cancel, deadline). Unknown ids are ignored.
  void remove(RequestId id);

  size_t waiting_inputs() const { return waiting_inputs_; }
  size_t waiting_requests() const;

 private:
  struct Pending {
    RequestId id = 0;
    std::vector<int32_t> input_tokens;
    int32_t next_index = 0;  // inputs before it are batched already
  };

  EncoderBatcherConfig config_;
  std::map<int32_t, std::deque<Pending>> waiting_;  // by priority, lower first
  size_t waiting_inputs_ = 0;
};

}  // namespace sparkd::sched
