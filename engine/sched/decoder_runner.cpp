#include "engine/sched/decoder_runner.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <span>
#include <utility>

#include "engine/kv/kv_block_pool.h"
#include "engine/kv/kv_cache.h"
#include "engine/kv/prefix_cache.h"
#include "engine/sched/decoder_step.h"
#include "engine/sched/detokenizer.h"
#include "engine/sched/kv_reclaim.h"
#include "engine/sched/stop_strings.h"
#include "engine/tasks/loaded_model.h"

namespace sparkd::sched {

// Takes the governor's demands (from other threads, with the arbiter's lock held: it only
// stores and pokes) and hands them to the runner thread between steps.
class DecoderRunner::Reclaim final : public governor::KvReclaimTarget {
 public:
  explicit Reclaim(std::function<void()> poke) : poke_(std::move(poke)) {}

  void reclaim(const governor::ReclaimDemand& demand) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!pending_) {
        pending_ = demand;
      } else {
        pending_->prefix_cache_bytes += demand.prefix_cache_bytes;
        pending_->shrink_kv_to_bytes =
            std::min(pending_->shrink_kv_to_bytes, demand.shrink_kv_to_bytes);
      }
    }
    poke_();
  }
  void memory_available() override { poke_(); }

  std::optional<governor::ReclaimDemand> take() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::exchange(pending_, std::nullopt);
  }

 private:
  std::function<void()> poke_;
  std::mutex mutex_;
  std::optional<governor::ReclaimDemand> pending_;  // guarded by mutex_
};

struct DecoderRunner::State {
  struct Active {
    GenerateRequest request;
    GenerateCallbacks callbacks;
    TokenCounts counts;
    uint64_t seed = 0;
    std::optional<IncrementalDetokenizer> detokenizer;
    std::optional<StopStringMatcher> stops;
    std::vector<int32_t> output;
    std::string text;
    int32_t cached_prompt_tokens = 0;
    bool scheduled_once = false;
    std::chrono::steady_clock::time_point submitted_at;
    double queue_seconds = 0;
    // Since when it has been waiting for KV memory the arbiter would not grant (nothing of
    // this model could run): the wait its deadline, or config.memory_wait, bounds.
    std::optional<std::chrono::steady_clock::time_point> memory_wait_since;
  };

  DecoderRunner* runner = nullptr;
  const tasks::LoadedModel* model = nullptr;
  arch::DecoderModel* decoder = nullptr;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
  RunnerConfig config;
  DetokenizerOptions detokenizer_options;
  int32_t vocab_size = 0;
  int32_t context_tokens = 0;
  std::unique_ptr<KvBlockPool> pool;
  std::unique_ptr<kv::PrefixCache> cache;
  std::unique_ptr<KvCache> kv;
  // Models with linear-attention layers: each running sequence's recurrent state.
  std::unique_ptr<RecurrentStatePool> states;
  std::unique_ptr<Scheduler> scheduler;
  Sampler sampler;
  std::map<RequestId, Active> active;
  governor::MemoryArbiter* arbiter = nullptr;
  uint64_t generated_tokens = 0;
  uint64_t prompt_tokens = 0;
  uint64_t finished_requests = 0;
  // Nothing could run because the arbiter granted no KV: the loop sleeps until memory is
  // released (a poke) or the next wait expires, instead of spinning.
  bool memory_blocked = false;

  ~State() {
    // Sequences first (their blocks go back to the cache), then the cache (cached blocks go
    // back to the pool), then the pool (granules go back to the arbiter).
    scheduler.reset();
    states.reset();
    cache.reset();
    kv.reset();
    pool.reset();
  }

  void publish_stats() {
    RunnerStats s;
    const SchedulerStats& sched = scheduler->stats();
    s.steps = sched.steps;
    s.computed_tokens = sched.computed_tokens;
    s.generated_tokens = generated_tokens;
    s.preemptions = sched.preemptions;
    s.cached_prefix_tokens = sched.cached_prefix_tokens;
    s.prefix_hit_blocks = cache->stats().hit_blocks;
    s.prefix_lookup_blocks = cache->stats().lookup_blocks;
    s.prompt_tokens = prompt_tokens;
    s.finished_requests = finished_requests;
    s.running = scheduler->running();
    s.waiting = scheduler->waiting();
    s.kv_blocks_in_use = static_cast<int32_t>(cache->referenced_blocks());
    s.kv_blocks_cached = static_cast<int32_t>(cache->cached_unreferenced_blocks());
    s.kv_blocks_committed = pool->blocks_in_use();
    s.kv_rounding_waste_bytes = pool->rounding_waste_bytes();
    const uint64_t state_bytes =
        states ? static_cast<uint64_t>(states->states_in_use()) * states->state_bytes() : 0;
    s.recurrent_states_in_use = states ? states->states_in_use() : 0;
    s.recurrent_state_bytes = state_bytes;
    if (memory_blocked) {
      for (const auto& [id, a] : active) s.waiting_for_memory += a.memory_wait_since ? 1 : 0;
    }
    arbiter->report_kv_usage(
        config.consumer,
        static_cast<uint64_t>(s.kv_blocks_in_use) * pool->block_bytes() + state_bytes,
        static_cast<uint64_t>(s.kv_blocks_cached) * pool->block_bytes());
    std::lock_guard<std::mutex> lock(runner->stats_mutex_);
    runner->stats_ = s;
  }

  // The governor's demand, between two steps (kv_reclaim.h).
  void apply_reclaim(const governor::ReclaimDemand& demand) {
    apply_reclaim_demand(demand, *pool, *cache, *scheduler, states.get());
    // The governor plans the next reclaim from these figures: they must be fresh.
    publish_stats();
    arbiter->reclaim_applied(config.consumer);
  }

  static void call_done(GenerateCallbacks& callbacks, GenerateResult result) {
    if (!callbacks.on_done) return;
    try {
      callbacks.on_done(std::move(result));
    } catch (...) {
      // The request is over either way; a throwing callback must not stop the runner.
    }
  }

  // Answers a request that never entered the scheduler.
  void reject(RequestId id, GenerateRequest& request, GenerateCallbacks& callbacks, Status status) {
    GenerateResult result;
    result.id = id;
    result.status = std::move(status);
    result.finish_reason = "error";
    result.prompt_tokens = static_cast<int32_t>(request.prompt_ids.size());
    ++finished_requests;
    call_done(callbacks, std::move(result));
  }

  // Ends an active request: its blocks go back before on_done runs.
  void finish(RequestId id, std::string reason, Status status) {
    const auto it = active.find(id);
    if (it == active.end()) return;
    Active a = std::move(it->second);
    active.erase(it);
    GenerateResult result;
    result.id = id;
    result.status = std::move(status);
    result.finish_reason = std::move(reason);
    result.token_ids = std::move(a.output);
    result.text = std::move(a.text);
    result.prompt_tokens = static_cast<int32_t>(a.request.prompt_ids.size());
    result.cached_prompt_tokens = a.cached_prompt_tokens;
    result.queue_seconds = a.queue_seconds;
    if (const SequenceState* seq = scheduler->find(id)) result.preemptions = seq->preemptions;
    scheduler->finish(id);
    ++finished_requests;
    publish_stats();
    call_done(a.callbacks, std::move(result));
  }

  Status check(const GenerateRequest& r) const {
    SPARKD_RETURN_IF_ERROR(validate(r.sampling, vocab_size));
    if (r.prompt_ids.empty()) return {StatusCode::kInvalidArgument, "the prompt is empty"};
    if (static_cast<int64_t>(r.prompt_ids.size()) > context_tokens) {
      return {StatusCode::kInvalidArgument,
              "the prompt has " + std::to_string(r.prompt_ids.size()) +
                  " tokens; the model's context holds " + std::to_string(context_tokens)};
    }
    for (size_t i = 0; i < r.prompt_ids.size(); ++i) {
      if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= vocab_size) {
        return {StatusCode::kInvalidArgument,
                "prompt token " + std::to_string(i) + " is " + std::to_string(r.prompt_ids[i]) +
                    ", outside the vocabulary [0, " + std::to_string(vocab_size) + ")"};
      }
    }
    for (int32_t id : r.stop_token_ids) {
      if (id < 0 || id >= vocab_size) {
        return {StatusCode::kInvalidArgument, "stop token id " + std::to_string(id) +
                                                  " is outside the vocabulary [0, " +
                                                  std::to_string(vocab_size) + ")"};
      }
    }
    if (r.max_tokens == 0) {
      return {StatusCode::kInvalidArgument,
              "max_tokens must be at least 1, got " + std::to_string(r.max_tokens)};
    }
    return Status::ok();
  }

  void admit(Submitted& s) {
    if (Status status = check(s.request); !status.is_ok()) {
      reject(s.id, s.request, s.callbacks, std::move(status));
      return;
    }
    Active a;
    if (!s.request.stop.empty()) {
      auto stops = StopStringMatcher::create(
          s.request.stop, {.include_stop_str_in_output = s.request.include_stop_str_in_output});
      if (!stops) {
        reject(s.id, s.request, s.callbacks,
               {StatusCode::kInvalidArgument, "stop strings: " + stops.status().message()});
        return;
      }
      a.stops.emplace(std::move(stops).value());
    }
    const std::vector<uint32_t> prompt(s.request.prompt_ids.begin(), s.request.prompt_ids.end());
    auto detokenizer = IncrementalDetokenizer::create(tokenizer, prompt, detokenizer_options);
    if (!detokenizer) {
      reject(s.id, s.request, s.callbacks, detokenizer.status());
      return;
    }
    a.detokenizer.emplace(std::move(detokenizer).value());
    a.counts = TokenCounts(s.request.prompt_ids);
    a.seed = admission_seed(s.request.sampling);
    scheduler->add(s.id, s.request.prompt_ids, s.request.priority, s.request.cache_salt);
    prompt_tokens += s.request.prompt_ids.size();
    a.request = std::move(s.request);
    a.callbacks = std::move(s.callbacks);
    a.submitted_at = s.submitted_at;
    active.emplace(s.id, std::move(a));
  }

  void expire_deadlines() {
    const auto now = std::chrono::steady_clock::now();
    std::vector<RequestId> expired, starved;
    for (const auto& [id, a] : active) {
      if (a.memory_wait_since && memory_wait_end(a) <= now) {
        starved.push_back(id);
      } else if (a.request.deadline && *a.request.deadline <= now) {
        expired.push_back(id);
      }
    }
    for (RequestId id : expired) {
      finish(id, "deadline", {StatusCode::kDeadlineExceeded, "the request's deadline passed"});
    }
    for (RequestId id : starved) {
      const Active& a = active.at(id);
      const SequenceState* seq = scheduler->find(id);
      const int64_t tokens = seq ? static_cast<int64_t>(seq->tokens.size()) : 0;
      const int64_t blocks = (tokens + config.block_tokens - 1) / config.block_tokens;
      const double waited = std::chrono::duration<double>(now - *a.memory_wait_since).count();
      char waited_text[32];
      std::snprintf(waited_text, sizeof(waited_text), "%.1f", waited);
      finish(id, "error",
             {StatusCode::kResourceExhausted,
              std::string("waited ") + waited_text + " s for KV memory (" +
                  (a.request.deadline ? "until its deadline" : "the model's memory_wait") + "): " +
                  arbiter->explain_shortage(config.consumer, granules_for_sequence(blocks))});
    }
  }

  // Granules a sequence of `blocks` blocks needs at least: the blocks, packed from block 0,
  // and its recurrent state when the model has one.
  uint64_t granules_for_sequence(int64_t blocks) const {
    KvBlockPoolGeometry g = pool->geometry();
    g.max_blocks = static_cast<int32_t>(blocks);
    return KvBlockPool::committed_bytes_at_capacity(g) / governor::kGranuleBytes +
           (states ? states->granules_per_state() : 0);
  }

  // Nothing runs and nothing could be admitted. A head request that needs more KV than the
  // pool or the arbiter could ever give fails at once; otherwise every waiting request waits
  // for memory (the governor is reclaiming it, or it comes back as others finish).
  void blocked_on_memory() {
    const RequestId head = scheduler->next_waiting();
    if (head == 0) {
      // Should not happen (an empty plan with nothing waiting); end everything rather than spin.
      fail_all({StatusCode::kInternal, "the scheduler planned nothing while requests were live"});
      return;
    }
    const SequenceState* best = scheduler->find(head);
    const int64_t tokens = static_cast<int64_t>(best->tokens.size());
    const int64_t blocks = (tokens + config.block_tokens - 1) / config.block_tokens;
    if (blocks > config.max_blocks) {
      finish(head, "error",
             {StatusCode::kResourceExhausted,
              "the request needs " + std::to_string(blocks) + " KV blocks of " +
                  std::to_string(config.block_tokens) + " tokens for its " +
                  std::to_string(tokens) + " tokens, but the pool holds " +
                  std::to_string(config.max_blocks) + " blocks (the model's kv_max)"});
      return;
    }
    const uint64_t granules = granules_for_sequence(blocks);
    if (granules > arbiter->max_grantable_granules(config.consumer)) {
      finish(head, "error",
             {StatusCode::kResourceExhausted,
              "the request needs " + std::to_string(blocks) + " KV blocks for its " +
                  std::to_string(tokens) + " tokens, more than this model could ever be granted: " +
                  arbiter->explain_shortage(config.consumer, granules)});
      return;
    }
    memory_blocked = true;
    const auto now = std::chrono::steady_clock::now();
    for (auto& [id, a] : active) {
      const SequenceState* seq = scheduler->find(id);
      if (seq != nullptr && !seq->running && !a.memory_wait_since) a.memory_wait_since = now;
    }
  }

  // When the wait of a request waiting for memory ends: its deadline, or config.memory_wait.
  std::chrono::steady_clock::time_point memory_wait_end(const Active& a) const {
    if (a.request.deadline) return *a.request.deadline;
    return *a.memory_wait_since + config.memory_wait;
  }

  // The next moment the loop must look again while blocked on memory.
  std::chrono::steady_clock::time_point next_memory_check() const {
    auto next = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
    for (const auto& [id, a] : active) {
      if (a.memory_wait_since) next = std::min(next, memory_wait_end(a));
    }
    return next;
  }

  void fail_all(const Status& status) {
    std::vector<RequestId> ids;
    for (const auto& [id, a] : active) ids.push_back(id);
    for (RequestId id : ids) finish(id, "error", status);
  }

  // Delivers a delta; false when on_delta threw (the request is then ended with an error).
  bool deliver(RequestId id, Active& a, GenerateDelta& delta) {
    a.text += delta.text;
    if (!a.callbacks.on_delta) return true;
    try {
      a.callbacks.on_delta(delta);
      return true;
    } catch (const std::exception& e) {
      finish(id, "error", {StatusCode::kInternal, std::string("on_delta threw: ") + e.what()});
    } catch (...) {
      finish(id, "error", {StatusCode::kInternal, "on_delta threw"});
    }
    return false;
  }

  // The token `sampled` was appended to request `id`: count it, stream its text, and end the
  // request when it is done.
  void accept(RequestId id, const SampledToken& sampled) {
    Active& a = active.at(id);
    const int32_t token = sampled.token;
    a.output.push_back(token);
    a.counts.add_output_token(token);
    ++generated_tokens;

    GenerateDelta delta;
    delta.id = id;
    delta.token_ids.push_back(token);
    if (a.request.sampling.logprobs > 0) {
      delta.logprobs.push_back(sampled.logprob);
      delta.top_logprobs.push_back(sampled.top_logprobs);
    }

    const auto& eos = model->spec().eos_token_ids;
    const bool stop_token =
        std::find(a.request.stop_token_ids.begin(), a.request.stop_token_ids.end(), token) !=
            a.request.stop_token_ids.end() ||
        (!a.request.ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end());
    std::optional<std::string> reason;
    if (stop_token) reason = "stop";

    // A stop or EOS token is kept in token_ids, but its text is not part of the output.
    if (!stop_token) {
      auto piece = a.detokenizer->push(static_cast<uint32_t>(token));
      if (!piece) {
        finish(id, "error", piece.status());
        return;
      }
      if (a.stops) {
        StopStringResult released = a.stops->push(*piece);
        delta.text = std::move(released.text);
        if (released.stopped_index) reason = "stop";
      } else {
        delta.text = std::move(*piece);
      }
    }
    if (!reason) {
      const int64_t total = static_cast<int64_t>(a.request.prompt_ids.size() + a.output.size());
      if (a.output.size() >= a.request.max_tokens || total >= context_tokens) reason = "length";
    }
    // At the end, whatever the detokenizer and the matcher still hold is final (unless a
    // stop string fired: the text after it is dropped).
    if (reason && !(a.stops && a.stops->stopped())) {
      auto rest = a.detokenizer->flush();
      if (!rest) {
        finish(id, "error", rest.status());
        return;
      }
      if (a.stops) {
        StopStringResult released = a.stops->push(*rest);
        delta.text += released.text;
        if (released.stopped_index) {
          reason = "stop";
        } else {
          delta.text += a.stops->flush();
        }
      } else {
        delta.text += *rest;
      }
    }
    if (!deliver(id, a, delta)) return;
    if (reason) finish(id, *reason, Status::ok());
  }

  void step() {
    const StepPlan plan = scheduler->schedule();
    for (const ScheduledChunk& chunk : plan.chunks) {
      Active& a = active.at(chunk.id);
      if (!a.scheduled_once) {
        a.scheduled_once = true;
        a.cached_prompt_tokens = chunk.begin;  // the prefix found in the cache at admission
        a.queue_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - a.submitted_at)
                .count();
      }
    }
    if (plan.empty()) {
      if (scheduler->running() == 0 && !active.empty()) blocked_on_memory();
      return;
    }
    if (memory_blocked) {
      // Memory came: whoever still waits now waits for a batch slot, not for memory.
      memory_blocked = false;
      for (auto& [id, a] : active) a.memory_wait_since.reset();
    }
    if (scheduler->waiting() == 0) arbiter->stop_waiting(config.consumer);
    // This step's share of the daemon's cores.
    const governor::ComputeStep compute(config.compute, config.consumer);
    model->backend().set_compute_threads(compute.threads());
    auto logits = run_decoder_step(*decoder, *kv, states.get(), *scheduler, plan);
    if (!logits) {
      // Every sequence in the plan may have half-written KV: end them.
      for (const ScheduledChunk& chunk : plan.chunks) finish(chunk.id, "error", logits.status());
      return;
    }
    std::vector<int32_t> tokens;
    std::vector<std::pair<RequestId, SampledToken>> sampled;
    std::vector<RequestId> failed;
    size_t row = 0;
    const size_t vocab = static_cast<size_t>(vocab_size);
    for (const ScheduledChunk& chunk : plan.chunks) {
      if (!chunk.samples) continue;
      const std::span<const float> logits_row(logits->data() + row * vocab, vocab);
      ++row;
      Active& a = active.at(chunk.id);
      auto token = sampler.sample(logits_row, a.request.sampling, a.counts, a.seed,
                                  static_cast<int64_t>(a.output.size()));
      if (!token) {
        failed.push_back(chunk.id);
        tokens.push_back(0);  // a placeholder: the sequence is finished right after
        sampled.emplace_back(chunk.id, SampledToken{});
        continue;
      }
      tokens.push_back(token->token);
      sampled.emplace_back(chunk.id, std::move(token).value());
    }
    scheduler->complete(plan, tokens);
    for (RequestId id : failed) {
      finish(id, "error", {StatusCode::kInternal, "sampling failed"});
    }
    for (auto& [id, token] : sampled) {
      if (active.count(id) == 0) continue;  // failed above, or ended by a callback
      accept(id, token);
    }
  }
};

Expected<std::unique_ptr<DecoderRunner>> DecoderRunner::start(const tasks::LoadedModel& model,
                                                              const RunnerConfig& config,
                                                              governor::MemoryArbiter& arbiter) {
  if (model.decoder() == nullptr) {
    return Status(StatusCode::kInvalidArgument, model.dir() + " is not a decoder model");
  }
  if (config.block_tokens < 1 || config.max_blocks < 1 || config.scheduler.max_batch_tokens < 1 ||
      config.scheduler.max_seqs < 1) {
    return Status(StatusCode::kInvalidArgument,
                  "runner config: block_tokens, max_blocks, max_batch_tokens and max_seqs must "
                  "be positive");
  }
  const model::ModelSpec& spec = model.spec();
  const KvBlockPoolGeometry geometry =
      model.decoder()->kv_pool_geometry(config.block_tokens, config.max_blocks);
  // Groups go back as they empty, but where that costs driver calls and a stream wait (CUDA
  // VMM) one empty group stays as a spare: a request that ends and the next that starts would
  // otherwise unmap and map the same memory.
  const KvGroupRelease release = model.backend().virtual_commit_is_costly()
                                     ? KvGroupRelease::kKeepSpareGroup
                                     : KvGroupRelease::kOnFree;
  auto pool = KvBlockPool::create(geometry, arbiter, config.consumer, release, KvBacking::kMemory,
                                  &model.backend());
  if (!pool) return pool.status();

  std::unique_ptr<DecoderRunner> runner(new DecoderRunner());
  auto state = std::make_unique<State>();
  state->runner = runner.get();
  state->model = &model;
  state->decoder = model.decoder();
  state->tokenizer = model.tokenizer_ptr();
  state->config = config;
  state->vocab_size = spec.vocab_size;
  state->context_tokens = model.max_input_tokens();
  state->pool = std::make_unique<KvBlockPool>(std::move(pool).value());
  // A recurrent state cannot be restored from cached KV blocks (scheduler.h): a model with one
  // keeps no prefix cache.
  const uint64_t state_bytes = model.decoder()->recurrent_state_bytes();
  state->cache = std::make_unique<kv::PrefixCache>(*state->pool, config.block_tokens,
                                                   config.prefix_caching && state_bytes == 0);
  state->kv = std::make_unique<KvCache>(state->pool->cache_view());
  if (state_bytes > 0) {
    state->states = std::make_unique<RecurrentStatePool>(
        model.backend(), state_bytes, config.scheduler.max_seqs, arbiter, config.consumer);
  }
  state->scheduler =
      std::make_unique<Scheduler>(config.scheduler, *state->cache, state->states.get());
  state->arbiter = &arbiter;
  state->publish_stats();
  runner->state_ = std::move(state);
  runner->arbiter_ = &arbiter;
  runner->reclaim_ = std::make_unique<Reclaim>([r = runner.get()] { r->inbox_.poke(); });
  arbiter.set_reclaim_target(config.consumer, runner->reclaim_.get());
  runner->thread_ = std::thread([r = runner.get()] { r->run(); });
  return runner;
}

void DecoderRunner::stop(Status reason) {
  if (!thread_.joinable()) return;
  stop_reason_ = std::move(reason);
  inbox_.stop();
  thread_.join();
}

DecoderRunner::~DecoderRunner() {
  stop(stop_reason_);
  // Unregistered before anything goes: the arbiter never calls a target after this.
  if (arbiter_ != nullptr && state_) {
    arbiter_->stop_waiting(state_->config.consumer);
    arbiter_->set_reclaim_target(state_->config.consumer, nullptr);
  }
  state_.reset();
}

RequestId DecoderRunner::submit(GenerateRequest request, GenerateCallbacks callbacks) {
  Submitted submitted;
  submitted.request = std::move(request);
  submitted.callbacks = std::move(callbacks);
  return inbox_.post(std::move(submitted));
}

void DecoderRunner::cancel(RequestId id) {
  inbox_.cancel(id);
}

RunnerStats DecoderRunner::stats() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return stats_;
}

void DecoderRunner::run() {
  State& s = *state_;
  for (;;) {
    const bool idle = s.active.empty() || s.memory_blocked;
    std::optional<std::chrono::steady_clock::time_point> until;
    if (!s.active.empty() && s.memory_blocked) until = s.next_memory_check();
    auto [intake, cancels, stopping] = inbox_.take(idle, until);
    try {
      if (stopping) {
        for (Submitted& sub : intake) {
          GenerateResult result;
          result.id = sub.id;
          result.status = stop_reason_;
          result.finish_reason =
              stop_reason_.code() == StatusCode::kCancelled ? "cancelled" : "error";
          result.prompt_tokens = static_cast<int32_t>(sub.request.prompt_ids.size());
          ++s.finished_requests;
          State::call_done(sub.callbacks, std::move(result));
        }
        std::vector<RequestId> ids;
        for (const auto& [id, a] : s.active) ids.push_back(id);
        for (RequestId id : ids) {
          s.finish(id, stop_reason_.code() == StatusCode::kCancelled ? "cancelled" : "error",
                   stop_reason_);
        }
        s.publish_stats();
        return;
      }
      if (auto demand = reclaim_->take()) s.apply_reclaim(*demand);
      for (Submitted& sub : intake) s.admit(sub);
      for (RequestId id : cancels) {
        s.finish(id, "cancelled", {StatusCode::kCancelled, "the request was cancelled"});
      }
      s.expire_deadlines();
      // Blocked on memory or not, try again: memory may have come, or work arrived.
      if (!s.active.empty()) s.step();
      if (s.active.empty()) s.arbiter->stop_waiting(s.config.consumer);
      s.publish_stats();
    } catch (const std::exception& e) {
      s.fail_all({StatusCode::kInternal, std::string("runner step failed: ") + e.what()});
    } catch (...) {
      s.fail_all({StatusCode::kInternal, "runner step failed"});
    }
  }
}

}  // namespace sparkd::sched
