#include "engine/sched/encoder_runner.h"

#include <cmath>
#include <exception>
#include <map>
#include <span>

#include "engine/tasks/loaded_model.h"

namespace sparkd::sched {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// Scales each row of [rows, dimensions] to unit length (a zero row stays zero), as
// sentence-transformers' Normalize does.
void l2_normalize_rows(std::span<float> values, int32_t dimensions) {
  for (size_t begin = 0; begin + static_cast<size_t>(dimensions) <= values.size();
       begin += static_cast<size_t>(dimensions)) {
    double sum = 0;
    for (int32_t d = 0; d < dimensions; ++d) sum += double(values[begin + d]) * values[begin + d];
    const double norm = std::max(std::sqrt(sum), 1e-12);
    for (int32_t d = 0; d < dimensions; ++d) {
      values[begin + d] = static_cast<float>(values[begin + d] / norm);
    }
  }
}

template <typename Result, typename Callback>
void call_done(Callback& callback, Result result) {
  if (!callback) return;
  try {
    callback(std::move(result));
  } catch (...) {
    // The request is over either way; a throwing callback must not stop the runner.
  }
}

}  // namespace

struct EncoderRunner::State {
  // A request whose inputs are tokenized and queued or computing.
  struct Active {
    Submitted submitted;
    bool is_rerank = false;
    bool normalize = false;
    std::vector<std::vector<int32_t>> embed_inputs;
    std::vector<tasks::PairEncoding> pairs;
    std::vector<int32_t> token_counts;
    std::vector<float> outputs;  // embed: [inputs, dimensions]; rerank: one logit each
    size_t remaining = 0;
    EncoderTiming timing;
    std::optional<Clock::time_point> started_at;
  };

  EncoderRunner* runner = nullptr;
  const tasks::LoadedModel* model = nullptr;
  model::ModelTask task = model::ModelTask::kEmbed;
  int32_t dimensions = 0;
  std::unique_ptr<EncoderBatcher> batcher;
  EncoderRunnerConfig config;
  std::map<RequestId, Active> active;
  EncoderRunnerStats stats;

  void publish_stats() {
    stats.waiting_inputs = batcher->waiting_inputs();
    stats.waiting_requests = batcher->waiting_requests();
    std::lock_guard<std::mutex> lock(runner->stats_mutex_);
    runner->stats_ = stats;
  }

  // Answers request `s` with `status` (OK: `a` holds the finished outputs).
  void answer(Submitted& s, Status status, Active* a) {
    ++stats.finished_requests;
    if (std::holds_alternative<EmbedRequest>(s.request)) {
      EmbedResult result;
      result.id = s.id;
      result.status = std::move(status);
      result.dimensions = dimensions;
      if (a != nullptr) {
        if (result.status.is_ok()) result.values = std::move(a->outputs);
        result.token_counts = std::move(a->token_counts);
        result.timing = a->timing;
      }
      call_done(s.on_embed_done, std::move(result));
    } else {
      RerankResult result;
      result.id = s.id;
      result.status = std::move(status);
      if (a != nullptr) {
        if (result.status.is_ok()) {
          result.logits = std::move(a->outputs);
          for (float logit : result.logits) result.probabilities.push_back(tasks::sigmoid(logit));
        }
        result.token_counts = std::move(a->token_counts);
        result.timing = a->timing;
      }
      call_done(s.on_rerank_done, std::move(result));
    }
  }

  void finish(RequestId id, Status status) {
    const auto it = active.find(id);
    if (it == active.end()) return;
    Active a = std::move(it->second);
    active.erase(it);
    batcher->remove(id);
    if (a.started_at) a.timing.compute_seconds = seconds_between(*a.started_at, Clock::now());
    publish_stats();
    answer(a.submitted, std::move(status), &a);
  }

  // Tokenizes a new request and queues its inputs, or answers it with an error.
  void admit(Submitted& s) {
    const Clock::time_point start = Clock::now();
    Active a;
    Status status = Status::ok();
    int32_t priority = 0;
    if (const auto* embed = std::get_if<EmbedRequest>(&s.request)) {
      priority = embed->priority;
      if (task != model::ModelTask::kEmbed) {
        status = {StatusCode::kFailedPrecondition,
                  "this is a " + std::string(model::task_name(task)) + " model; it cannot embed"};
      } else if (embed->inputs.empty()) {
        status = {StatusCode::kInvalidArgument, "the request has no inputs"};
      }
      a.normalize = embed->normalize.value_or(model->spec().normalize_embeddings);
      for (size_t i = 0; status.is_ok() && i < embed->inputs.size(); ++i) {
        auto ids = tasks::encode_embed_input(*model, embed->inputs[i], embed->truncate);
        if (!ids) {
          status = {ids.status().code(),
                    "input " + std::to_string(i) + ": " + ids.status().message()};
          break;
        }
        a.token_counts.push_back(static_cast<int32_t>(ids->size()));
        a.embed_inputs.push_back(std::move(ids).value());
      }
    } else {
      const auto& rerank = std::get<RerankRequest>(s.request);
      a.is_rerank = true;
      priority = rerank.priority;
      if (task != model::ModelTask::kRerank) {
        status = {StatusCode::kFailedPrecondition,
                  "this is a " + std::string(model::task_name(task)) + " model; it cannot rerank"};
      } else if (rerank.documents.empty()) {
        status = {StatusCode::kInvalidArgument, "the request has no documents"};
      }
      for (size_t i = 0; status.is_ok() && i < rerank.documents.size(); ++i) {
        auto pair =
            tasks::encode_rerank_pair(*model, rerank.query, rerank.documents[i], rerank.truncate);
        if (!pair) {
          status = {pair.status().code(),
                    "document " + std::to_string(i) + ": " + pair.status().message()};
          break;
        }
        a.token_counts.push_back(static_cast<int32_t>(pair->ids.size()));
        a.pairs.push_back(std::move(pair).value());
      }
    }
    a.timing.tokenize_seconds = seconds_between(start, Clock::now());
    if (!status.is_ok()) {
      answer(s, std::move(status), &a);
      return;
    }
    a.remaining = a.token_counts.size();
    a.outputs.resize(a.remaining * static_cast<size_t>(a.is_rerank ? 1 : dimensions));
    batcher->add(s.id, a.token_counts, priority);
    const RequestId id = s.id;
    a.submitted = std::move(s);
    active.emplace(id, std::move(a));
  }

  void expire_deadlines() {
    const Clock::time_point now = Clock::now();
    std::vector<RequestId> expired;
    for (const auto& [id, a] : active) {
      const auto& deadline =
          std::visit([](const auto& r) { return r.deadline; }, a.submitted.request);
      if (deadline && *deadline <= now) expired.push_back(id);
    }
    for (RequestId id : expired) {
      finish(id, {StatusCode::kDeadlineExceeded, "the request's deadline passed"});
    }
  }

  // Runs one batch and hands each input's output to its request.
  void run_batch(const EncoderBatch& batch) {
    const Clock::time_point start = Clock::now();
    for (const EncoderBatchItem& item : batch.items) {
      Active& a = active.at(item.id);
      if (!a.started_at) {
        a.started_at = start;
        a.timing.queue_seconds = seconds_between(a.submitted.submitted_at, start);
      }
    }
    {
      std::lock_guard<std::mutex> lock(runner->stats_mutex_);
      runner->stats_.running_inputs = batch.items.size();
      runner->stats_.waiting_inputs = batcher->waiting_inputs();
    }
    Expected<std::vector<float>> outputs = Status::ok();
    // This batch's share of the daemon's cores.
    const governor::ComputeStep compute(config.compute, config.consumer);
    model->backend().set_compute_threads(compute.threads());
    if (task == model::ModelTask::kRerank) {
      std::vector<tasks::PairEncoding> pairs;
      for (const EncoderBatchItem& item : batch.items)
        pairs.push_back(active.at(item.id).pairs[item.index]);
      outputs = tasks::classify_batch(*model, pairs);
    } else {
      std::vector<std::vector<int32_t>> inputs;
      for (const EncoderBatchItem& item : batch.items) {
        inputs.push_back(active.at(item.id).embed_inputs[item.index]);
      }
      // Pooled without normalisation: each request decides for itself.
      outputs = tasks::embed_batch(*model, inputs, false);
    }
    ++stats.batches;
    stats.computed_inputs += batch.items.size();
    stats.computed_tokens += static_cast<uint64_t>(batch.tokens());
    stats.padded_tokens += static_cast<uint64_t>(batch.padded_tokens());
    if (!outputs) {
      for (const EncoderBatchItem& item : batch.items) finish(item.id, outputs.status());
      return;
    }
    const size_t width = task == model::ModelTask::kRerank ? 1 : static_cast<size_t>(dimensions);
    std::vector<RequestId> done;
    for (size_t i = 0; i < batch.items.size(); ++i) {
      const EncoderBatchItem& item = batch.items[i];
      const auto it = active.find(item.id);
      if (it == active.end()) continue;
      Active& a = it->second;
      std::copy_n(outputs->begin() + static_cast<std::ptrdiff_t>(i * width), width,
                  a.outputs.begin() + static_cast<std::ptrdiff_t>(item.index * width));
      if (--a.remaining == 0) done.push_back(item.id);
    }
    for (RequestId id : done) {
      Active& a = active.at(id);
      if (!a.is_rerank && a.normalize) l2_normalize_rows(a.outputs, dimensions);
      finish(id, Status::ok());
    }
  }

  void fail_all(const Status& status) {
    std::vector<RequestId> ids;
    for (const auto& [id, a] : active) ids.push_back(id);
    for (RequestId id : ids) finish(id, status);
  }
};

Expected<std::unique_ptr<EncoderRunner>> EncoderRunner::start(const tasks::LoadedModel& model,
                                                              const EncoderRunnerConfig& config) {
  const model::ModelTask task = model.spec().task;
  if (task != model::ModelTask::kEmbed && task != model::ModelTask::kRerank) {
    return Status(StatusCode::kInvalidArgument,
                  model.dir() + " is a " + model::task_name(task) +
                      " model; the encoder runner serves embedding and reranking models");
  }
  if (config.batcher.max_batch_tokens < 1 || config.batcher.max_batch_inputs < 1) {
    return Status(StatusCode::kInvalidArgument,
                  "encoder runner config: max_batch_tokens and max_batch_inputs must be positive");
  }
  std::unique_ptr<EncoderRunner> runner(new EncoderRunner());
  auto state = std::make_unique<State>();
  state->runner = runner.get();
  state->model = &model;
  state->task = task;
  state->dimensions = model.spec().hidden_size;
  state->batcher = std::make_unique<EncoderBatcher>(config.batcher);
  state->config = config;
  state->publish_stats();
  runner->state_ = std::move(state);
  runner->thread_ = std::thread([r = runner.get()] { r->run(); });
  return runner;
}

void EncoderRunner::stop(Status reason) {
  if (!thread_.joinable()) return;
  stop_reason_ = std::move(reason);
  inbox_.stop();
  thread_.join();
}

EncoderRunner::~EncoderRunner() {
  stop(stop_reason_);
}

RequestId EncoderRunner::submit_embed(EmbedRequest request,
                                      std::function<void(EmbedResult)> on_done) {
  Submitted s;
  s.request = std::move(request);
  s.on_embed_done = std::move(on_done);
  return inbox_.post(std::move(s));
}

RequestId EncoderRunner::submit_rerank(RerankRequest request,
                                       std::function<void(RerankResult)> on_done) {
  Submitted s;
  s.request = std::move(request);
  s.on_rerank_done = std::move(on_done);
  return inbox_.post(std::move(s));
}

void EncoderRunner::cancel(RequestId id) {
  inbox_.cancel(id);
}

EncoderRunnerStats EncoderRunner::stats() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return stats_;
}

void EncoderRunner::run() {
  State& s = *state_;
  for (;;) {
    auto [intake, cancels, stopping] = inbox_.take(s.active.empty());
    try {
      if (stopping) {
        for (Submitted& sub : intake) s.answer(sub, stop_reason_, nullptr);
        s.fail_all(stop_reason_);
        s.publish_stats();
        return;
      }
      for (Submitted& sub : intake) s.admit(sub);
      for (RequestId id : cancels) {
        s.finish(id, {StatusCode::kCancelled, "the request was cancelled"});
      }
      s.expire_deadlines();
      const EncoderBatch batch = s.batcher->next_batch();
      if (!batch.empty()) s.run_batch(batch);
      s.publish_stats();
    } catch (const std::exception& e) {
      s.fail_all({StatusCode::kInternal, std::string("encoder step failed: ") + e.what()});
    } catch (...) {
      s.fail_all({StatusCode::kInternal, "encoder step failed"});
    }
  }
}

}  // namespace sparkd::sched
