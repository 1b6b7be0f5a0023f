// The per-model runner for encoder tasks (embed, rerank): one thread per loaded embedding or
// reranking model that tokenizes submitted requests, batches their inputs with
// EncoderBatcher (TEI-style: a token budget that counts padding) and runs one forward pass
// per batch. A request's inputs may be spread over several batches, and one batch may hold
// inputs of several requests; each request is answered once, when its last input is done.
//
// Threading is DecoderRunner's: submit/cancel/stats are thread-safe and never wait for the
// model; tokenization, batching and every callback happen on the runner thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "common/status.h"
#include "engine/sched/encoder_batcher.h"
#include "engine/sched/runner_inbox.h"
#include "governor/compute_arbiter.h"

namespace sparkd::tasks {
class LoadedModel;
}

namespace sparkd::sched {

// Time a request spent in each phase, in seconds.
struct EncoderTiming {
  double queue_seconds = 0;     // submitted -> its first input starts computing
  double tokenize_seconds = 0;  // tokenizing all its inputs
  double compute_seconds = 0;   // first input starts -> last input done
};

struct EmbedRequest {
  std::vector<std::string> inputs;
  std::optional<bool> normalize;  // unset: the model's own (sentence-transformers Normalize)
  bool truncate = false;          // cut over-long inputs instead of failing the request
  int32_t priority = 0;           // lower runs first
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

struct EmbedResult {
  RequestId id = 0;
  Status status;
  int32_t dimensions = 0;
  std::vector<float> values;          // [inputs, dimensions], row-major
  std::vector<int32_t> token_counts;  // per input, after truncation
  EncoderTiming timing;
};

struct RerankRequest {
  std::string query;
  std::vector<std::string> documents;
  bool truncate = false;
  int32_t priority = 0;
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

struct RerankResult {
  RequestId id = 0;
  Status status;
  std::vector<float> logits;         // per document, in request order
  std::vector<float> probabilities;  // sigmoid(logit)
  std::vector<int32_t> token_counts;
  EncoderTiming timing;
};

struct EncoderRunnerConfig {
  EncoderBatcherConfig batcher;
  // The daemon's CPU thread budget (nullptr: the backend uses all it was configured with),
  // and this model's id with it.
  governor::ComputeArbiter* compute = nullptr;
  governor::ConsumerId consumer = 0;
};

struct EncoderRunnerStats {
  uint64_t batches = 0;
  uint64_t computed_inputs = 0;
  uint64_t computed_tokens = 0;  // real tokens run through the model
  uint64_t padded_tokens = 0;    // what the batches counted against the budget
  uint64_t finished_requests = 0;
  size_t waiting_inputs = 0;
  size_t waiting_requests = 0;
  size_t running_inputs = 0;  // in the batch being computed
};

class EncoderRunner {
 public:
  // `model` must outlive the runner. Errors: the model is not an embedder or reranker, or
  // the config is not positive.
  static Expected<std::unique_ptr<EncoderRunner>> start(const tasks::LoadedModel& model,
                                                        const EncoderRunnerConfig& config);

  EncoderRunner(const EncoderRunner&) = delete;
  EncoderRunner& operator=(const EncoderRunner&) = delete;
  // Stops the thread; unfinished requests are answered with CANCELLED.
  ~EncoderRunner();
  // Stops the thread now, answering every unfinished request with `reason`.
  void stop(Status reason);

  // Thread-safe; never waits for the model. Invalid requests (wrong task for this model,
  // no inputs, an over-long input without truncate) are answered through on_done with
  // INVALID_ARGUMENT / FAILED_PRECONDITION, from the runner thread.
  RequestId submit_embed(EmbedRequest request, std::function<void(EmbedResult)> on_done);
  RequestId submit_rerank(RerankRequest request, std::function<void(RerankResult)> on_done);
  // Thread-safe: the request's waiting inputs are dropped and it is answered with CANCELLED
  // (an input already in the running batch finishes, its result is discarded).
  void cancel(RequestId id);
  EncoderRunnerStats stats() const;

  struct State;  // the runner thread's world (defined in the .cpp)

 private:
  struct Submitted {
    RequestId id = 0;
    std::chrono::steady_clock::time_point submitted_at;
    std::variant<EmbedRequest, RerankRequest> request;
    std::function<void(EmbedResult)> on_embed_done;
    std::function<void(RerankResult)> on_rerank_done;
  };

  EncoderRunner() = default;
  void run();

  std::unique_ptr<State> state_;

  RunnerInbox<Submitted> inbox_;
  mutable std::mutex stats_mutex_;
  EncoderRunnerStats stats_;  // guarded by stats_mutex_
  // What unfinished requests are told when the runner stops (set before the inbox stops).
  Status stop_reason_ = runner_shutting_down();
  std::thread thread_;
};

}  // namespace sparkd::sched
