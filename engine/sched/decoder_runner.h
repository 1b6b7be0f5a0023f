// The per-model runner: one thread per loaded decoder model that owns the model's scheduler,
// prefix cache and paged KV block pool, and turns submitted requests into streamed tokens
// and text. Other threads only submit, cancel and read stats (thread-safe); everything else,
// including every callback, happens on the runner thread, so the scheduler, the cache and
// the pool need no locks (they are not thread-safe).
//
// One step of the loop: take the new requests (validate them, set up their sampling state,
// detokenizer and stop-string matcher), drop cancelled and expired ones, plan a step, run
// it as one batched forward, sample each sequence that finished its known tokens, and
// deliver the new tokens and the text that became final. A request samples with its own
// admission seed at its own output position, so its output depends neither on what else is
// in the batch nor on preemption and recompute.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "engine/sched/runner_inbox.h"
#include "engine/sched/sampler.h"
#include "engine/sched/scheduler.h"
#include "governor/compute_arbiter.h"
#include "governor/memory_arbiter.h"

namespace sparkd::tasks {
class LoadedModel;
}

namespace sparkd::sched {

struct GenerateRequest {
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;
  // Output tokens at most, 1 or more: the wire's uint32 range, so any value a client can send is
  // taken as it is. Generation also ends at the context, whichever comes first.
  uint32_t max_tokens = 16;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;  // end like EOS; the token is kept, its text is not
  std::vector<std::string> stop;        // stop strings (StopStringMatcher's limits)
  bool include_stop_str_in_output = false;
  int32_t priority = 0;  // lower runs first
  uint64_t cache_salt = 0;
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

// Tokens sampled in one step and the text that became final with them.
struct GenerateDelta {
  RequestId id = 0;
  std::vector<int32_t> token_ids;
  std::string text;
  // Only when sampling.logprobs > 0: one entry per token of token_ids.
  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int32_t, float>>> top_logprobs;
};

struct GenerateResult {
  RequestId id = 0;
  Status status;  // OK for "stop" and "length"
  std::vector<int32_t> token_ids;
  std::string text;           // the concatenation of every delta's text
  std::string finish_reason;  // "stop" | "length" | "cancelled" | "deadline" | "error"
  int32_t prompt_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // served from the prefix cache at first admission
  int32_t preemptions = 0;
  double queue_seconds = 0;  // submitted -> first scheduled
};

struct GenerateCallbacks {
  std::function<void(const GenerateDelta&)> on_delta;  // may be empty
  std::function<void(GenerateResult)> on_done;         // exactly once per request
};

struct RunnerConfig {
  SchedulerConfig scheduler;
  int32_t block_tokens = 16;
  int32_t max_blocks = 1024;  // KV capacity: max_blocks * block_tokens token slots
  bool prefix_caching = true;
  governor::ConsumerId consumer = 1;  // this model's KV account with the arbiter
  // How long a request with no deadline of its own may wait for KV memory the arbiter does
  // not grant, before it fails with RESOURCE_EXHAUSTED (a request's deadline, when it has one,
  // bounds the wait instead).
  std::chrono::milliseconds memory_wait{30000};
  // The daemon's CPU thread budget (nullptr: the backend uses all it was configured with).
  governor::ComputeArbiter* compute = nullptr;
};

struct RunnerStats {
  uint64_t steps = 0;
  uint64_t computed_tokens = 0;   // tokens run through the model (prefill + decode)
  uint64_t generated_tokens = 0;  // tokens sampled
  uint64_t preemptions = 0;
  uint64_t cached_prefix_tokens = 0;  // prompt tokens served from the prefix cache
  uint64_t prefix_lookup_blocks = 0;  // full prompt blocks a hit could have served
  uint64_t prefix_hit_blocks = 0;
  uint64_t prompt_tokens = 0;  // prompt tokens of admitted requests
  uint64_t finished_requests = 0;
  size_t running = 0;
  size_t waiting = 0;
  int32_t kv_blocks_in_use = 0;     // referenced by live sequences
  int32_t kv_blocks_cached = 0;     // unreferenced, kept for prefix hits
  int32_t kv_blocks_committed = 0;  // blocks the pool holds memory for (in use or cached)
  uint64_t kv_rounding_waste_bytes = 0;
  // Models with linear-attention layers: the running sequences' recurrent states (granted on
  // the same account as the KV; each rounded up to whole granules there).
  int32_t recurrent_states_in_use = 0;
  uint64_t recurrent_state_bytes = 0;
  size_t waiting_for_memory = 0;  // requests that cannot start until the arbiter grants KV
};

class DecoderRunner {
 public:
  // Reserves the KV pool (granules are granted as blocks are needed) and starts the thread.
  // `model` and `arbiter` must outlive the runner. Errors: the model has no decoder, or the
  // KV geometry is invalid.
  static Expected<std::unique_ptr<DecoderRunner>> start(const tasks::LoadedModel& model,
                                                        const RunnerConfig& config,
                                                        governor::MemoryArbiter& arbiter);

  DecoderRunner(const DecoderRunner&) = delete;
  DecoderRunner& operator=(const DecoderRunner&) = delete;
  // Stops the thread; unfinished requests get on_done(CANCELLED). Every block and granule
  // is returned.
  ~DecoderRunner();
  // Stops the thread now, answering every unfinished request with `reason` (a model evicted
  // under host pressure says so); the destructor then has nothing left to stop.
  void stop(Status reason);

  // Thread-safe; never waits for the model. Invalid requests are answered with
  // INVALID_ARGUMENT through on_done (from the runner thread).
  RequestId submit(GenerateRequest request, GenerateCallbacks callbacks);
  // Thread-safe. The request leaves before the next step and gets on_done(CANCELLED);
  // unknown or finished ids are ignored.
  void cancel(RequestId id);
  // Thread-safe snapshot, updated after each step and whenever a request finishes (before
  // its on_done runs).
  RunnerStats stats() const;

  struct State;   // the runner thread's world (defined in the .cpp)
  class Reclaim;  // the governor's door into this runner (defined in the .cpp)

 private:
  DecoderRunner() = default;
  void run();

  struct Submitted {
    RequestId id = 0;
    GenerateRequest request;
    GenerateCallbacks callbacks;
    std::chrono::steady_clock::time_point submitted_at;
  };

  std::unique_ptr<State> state_;  // touched only by the runner thread once started
  governor::MemoryArbiter* arbiter_ = nullptr;
  std::unique_ptr<Reclaim> reclaim_;
  // What unfinished requests are told when the runner stops (set before the inbox stops).
  Status stop_reason_ = runner_shutting_down();

  RunnerInbox<Submitted> inbox_;
  mutable std::mutex stats_mutex_;
  RunnerStats stats_;  // guarded by stats_mutex_
  std::thread thread_;
};

}  // namespace sparkd::sched
