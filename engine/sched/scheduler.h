// The per-model continuous-batching scheduler: pure bookkeeping. Each step it decides which
// sequences run and how many tokens each computes, under a token budget and a sequence
// cap, and returns that as a StepPlan; the runner executes the plan on the model and reports
// back. No tensors here, and no model calls (vLLM v1's split between scheduler and runner).
//
// Policy, in order:
//  1. Running sequences first, in admission order: a decode step (one token) or the next
//     chunk of an unfinished prefill. KV blocks for the new tokens are taken from the prefix
//     cache; when none are left, the running sequence that was admitted last (lowest
//     priority first) is preempted: its blocks are released and it goes back to the front
//     of its waiting class, to be recomputed from its tokens (prompt + output so far), so
//     its output is the same as if it had never been preempted.
//  2. Then waiting sequences, by priority class (lower value first), first come first
//     served within a class, while budget, sequence cap and blocks allow: each first takes
//     the longest cached prefix of its tokens, then a prefill chunk of what remains.
//
// Models with linear-attention layers (Qwen3.5) also give each running sequence a recurrent
// state from a RecurrentStateSource: taken at admission (no state, no admission), released
// with the sequence's blocks. Such a state is built token by token from the first, so a
// cached prefix of KV cannot restore it: these sequences always compute from their first
// token (the prefix cache is not offered; a preempted one recomputes from a zeroed state).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "engine/kv/prefix_cache.h"
#include "engine/kv/recurrent_state_pool.h"

namespace sparkd::sched {

struct SchedulerConfig {
  int32_t max_batch_tokens = 2048;  // tokens computed per step, all sequences together
  int32_t max_seqs = 64;            // sequences per step
};

using RequestId = uint64_t;

struct SequenceState {
  RequestId id = 0;
  int32_t priority = 0;  // lower runs first
  uint64_t arrival = 0;  // admission order within the scheduler
  uint64_t cache_salt = 0;
  std::vector<int32_t> tokens;  // prompt, then every sampled token
  int32_t prompt_tokens = 0;
  int32_t computed_tokens = 0;  // tokens whose KV is in this sequence's blocks
  std::vector<int32_t> block_table;
  int32_t state_slot = -1;  // its recurrent state while running (-1: none)
  // Keys of the full blocks registered so far (the chain continues from the last one).
  std::vector<kv::BlockKey> block_keys;
  int32_t preemptions = 0;
  bool running = false;
};

// One sequence's work in a step: compute tokens [begin, begin + count) of its token list.
// When `samples`, that finishes its known tokens and the runner samples the next one.
struct ScheduledChunk {
  RequestId id = 0;
  int32_t begin = 0;
  int32_t count = 0;
  bool samples = false;
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;  // running sequences first
  std::vector<RequestId> preempted;    // sent back to waiting during this plan
  int32_t total_tokens = 0;
  int32_t cached_prefix_tokens = 0;  // prompt tokens admitted from the prefix cache
  bool empty() const { return chunks.empty(); }
};

struct SchedulerStats {
  uint64_t steps = 0;
  uint64_t preemptions = 0;
  uint64_t computed_tokens = 0;
  uint64_t cached_prefix_tokens = 0;
};

class Scheduler {
 public:
  // `states`: where running sequences' recurrent states come from (nullptr: the model has
  // none).
  Scheduler(const SchedulerConfig& config, kv::PrefixCache& cache,
            RecurrentStateSource* states = nullptr);

  // A new sequence (its prompt must be non-empty), waiting to be admitted.
  void add(RequestId id, std::vector<int32_t> prompt, int32_t priority = 0,
           uint64_t cache_salt = 0);
  // The next step. Empty when nothing can run (nothing waiting, or no blocks for anyone).
  StepPlan schedule();
  // The runner ran `plan`; `sampled[i]` is the token sampled for the i-th chunk that had
  // samples = true, in order. Marks the KV as computed and caches newly full blocks.
  void complete(const StepPlan& plan, std::span<const int32_t> sampled);
  // Outside a step: preempts the running sequence that should yield first (the least
  // important, then the newest); its blocks are released and it waits to be recomputed.
  // Returns its id, or 0 when nothing runs. The governor's reclaim calls it.
  RequestId preempt_newest();
  // Ends a sequence (finished, cancelled or expired): its blocks are released. Unknown ids
  // are ignored.
  void finish(RequestId id);

  const SequenceState* find(RequestId id) const;
  size_t waiting() const;
  // The waiting sequence the next step admits first (the most important class, a preempted
  // one before new ones, then first come first served); 0 when none waits.
  RequestId next_waiting() const;
  size_t running() const { return running_.size(); }
  const SchedulerStats& stats() const { return stats_; }

 private:
  // Makes sure `seq` has blocks for its first `tokens` tokens; false if the cache has none.
  bool grow_blocks(SequenceState& seq, int32_t tokens);
  void release(SequenceState& seq);
  // Preempts the running sequence that should yield first (lowest priority, newest),
  // unless it is `keep`; returns false when only `keep` is left.
  bool preempt_one(RequestId keep, StepPlan& plan);
  void enqueue_waiting(SequenceState& seq, bool front);

  SchedulerConfig config_;
  kv::PrefixCache& cache_;
  RecurrentStateSource* states_;
  std::map<RequestId, std::unique_ptr<SequenceState>> sequences_;
  std::map<int32_t, std::deque<RequestId>> waiting_;  // by priority
  std::vector<RequestId> running_;                    // admission order
  uint64_t next_arrival_ = 0;
  SchedulerStats stats_;
};

}  // namespace sparkd::sched
