#include "daemon/service.h"

#include <unistd.h>

#include <algorithm>
#include <future>
#include <numeric>
#include <set>

#include "api/protocol/request_validation.h"
#include "api/protocol/status_codes.h"
#include "daemon/chat_request.h"
#include "daemon/plan.h"
#include "engine/backend/placement.h"
#include "engine/backend/quantize.h"
#include "engine/kv/kv_block_pool.h"
#include "engine/sched/decoder_runner.h"
#include "engine/sched/encoder_runner.h"
#include "engine/tasks/chat_template.h"
#include "engine/tasks/loaded_model.h"
#include "engine/tasks/model_footprint.h"
#include "governor/system_memory.h"

namespace sparkd::daemon {

using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double ms(double seconds) {
  return seconds * 1000.0;
}

std::optional<Clock::time_point> deadline_of(const api::Call& call, uint32_t deadline_ms) {
  if (deadline_ms == 0) return std::nullopt;
  return call.received_at() + std::chrono::milliseconds(deadline_ms);
}

// Usage and timing of a final embed or rerank response.
void set_encoder_usage(v1::Response& response, uint64_t tokens, const sched::EncoderTiming& t,
                       double total_seconds) {
  response.mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(tokens));
  response.mutable_usage()->set_total_tokens(static_cast<uint32_t>(tokens));
  v1::Timing* timing = response.mutable_timing();
  timing->set_queue_ms(ms(t.queue_seconds));
  timing->set_tokenize_ms(ms(t.tokenize_seconds));
  timing->set_compute_ms(ms(t.compute_seconds));
  timing->set_total_ms(ms(total_seconds));
}

RequestOutcome outcome_of(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return RequestOutcome::kOk;
    case StatusCode::kInvalidArgument:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAlreadyExists:
      return RequestOutcome::kInvalid;
    case StatusCode::kNotFound:
      return RequestOutcome::kNotFound;
    case StatusCode::kCancelled:
      return RequestOutcome::kCancelled;
    case StatusCode::kDeadlineExceeded:
      return RequestOutcome::kDeadline;
    case StatusCode::kResourceExhausted:
      return RequestOutcome::kResourceExhausted;
    case StatusCode::kUnavailable:
      return RequestOutcome::kUnavailable;
    case StatusCode::kPermissionDenied:
      return RequestOutcome::kPermissionDenied;
    default:
      return RequestOutcome::kError;
  }
}

enum class ModelState { kLoading, kReady, kFailed, kUnloading, kUnloaded };

const char* model_source_name(ModelSource source) {
  return source == ModelSource::kConfig ? "config" : "admin";
}

// "an embed model", "a rerank model": the article for a task name.
std::string with_article(const std::string& word) {
  const bool vowel =
      !word.empty() && std::string_view("aeiou").find(word.front()) != std::string_view::npos;
  return (vowel ? "an " : "a ") + word;
}

std::string uid_text(const api::PeerCredentials& peer) {
  return "uid " + std::to_string(peer.uid) + " (pid " + std::to_string(peer.pid) + ")";
}

// ListModels' `state` values.
const char* model_state_name(ModelState state) {
  switch (state) {
    case ModelState::kLoading:
      return "loading";
    case ModelState::kReady:
      return "ready";
    case ModelState::kFailed:
      return "failed";
    case ModelState::kUnloading:
      return "unloading";
    case ModelState::kUnloaded:
      return "unloaded";
  }
  return "unknown";
}

}  // namespace

// One configured model: loaded weights plus the runner that serves them. The runner pointer
// is guarded by runner_mutex so that unloading (which destroys the runner, answering what
// it still holds) never races a submission, and an eviction never takes a model a request
// is using (in_flight, counted under the same mutex).
struct ModelEntry {
  ModelConfig config;  // its definition: the config file's, or the one an admin Load built
  ModelSource source = ModelSource::kConfig;
  Residency residency = Residency::kPinned;  // in effect: the definition's, or a Load's override
  governor::ConsumerId consumer = 0;         // its governor account while loading or loaded
  std::atomic<ModelState> state{ModelState::kLoading};
  std::string error;  // kFailed: why (written before the state is set)
  StatusCode error_code = StatusCode::kOk;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<tasks::LoadedModel> model;
  std::optional<tasks::ChatTemplate> chat_template;
  // From config.json, for a model listed before it is loaded (on_demand).
  std::string planned_task;
  std::mutex runner_mutex;
  std::unique_ptr<sched::DecoderRunner> decoder_runner;  // guarded by runner_mutex
  std::unique_ptr<sched::EncoderRunner> encoder_runner;  // guarded by runner_mutex
  int64_t in_flight = 0;                                 // guarded by runner_mutex
  std::atomic<uint64_t> requests_total{0};
  std::atomic<uint64_t> encoder_prompt_tokens{0};
  // The previous metrics refresh's step count, to turn steps into effective bandwidth.
  std::mutex bandwidth_mutex;
  uint64_t last_steps = 0;                         // guarded by bandwidth_mutex
  Clock::time_point last_steps_at = Clock::now();  // guarded by bandwidth_mutex

  // Effective decode bandwidth since the previous call: every step reads all the weights
  // once (batching amortises that read, which is the point), so bytes/s = steps/s × weight
  // bytes. KV reads are not counted: a lower bound.
  double decode_bytes_per_second(uint64_t steps_now) {
    std::lock_guard<std::mutex> lock(bandwidth_mutex);
    const Clock::time_point now = Clock::now();
    const double seconds = std::chrono::duration<double>(now - last_steps_at).count();
    const uint64_t steps = steps_now >= last_steps ? steps_now - last_steps : 0;
    last_steps = steps_now;
    last_steps_at = now;
    if (seconds <= 0 || !model) return 0;
    return static_cast<double>(steps) * static_cast<double>(model->weights().size_bytes()) /
           seconds;
  }

  std::string task() const {
    if (model) return model::task_name(model->spec().task);
    return planned_task.empty() ? "unknown" : planned_task;
  }

  // Thread-safe; false when the model is unloading.
  template <typename Fn>
  bool with_decoder(Fn&& fn) {
    std::lock_guard<std::mutex> lock(runner_mutex);
    if (!decoder_runner) return false;
    fn(*decoder_runner);
    return true;
  }
  template <typename Fn>
  bool with_encoder(Fn&& fn) {
    std::lock_guard<std::mutex> lock(runner_mutex);
    if (!encoder_runner) return false;
    fn(*encoder_runner);
    return true;
  }
  // Stops the runners (on the calling thread); what they still hold is answered with
  // `reason`.
  void stop(const Status& reason) {
    std::unique_ptr<sched::DecoderRunner> decoder;
    std::unique_ptr<sched::EncoderRunner> encoder;
    {
      std::lock_guard<std::mutex> lock(runner_mutex);
      decoder = std::move(decoder_runner);
      encoder = std::move(encoder_runner);
    }
    if (decoder) decoder->stop(reason);
    if (encoder) encoder->stop(reason);
  }
};

// One request's hold on its model: while any exists the model is busy (the governor never
// evicts it, keep_alive does not count). Taken under the runner mutex, like an eviction.
class ModelUse {
 public:
  // nullptr when the model has no runner (unloading or unloaded).
  static std::shared_ptr<ModelUse> acquire(std::shared_ptr<ModelEntry> entry,
                                           governor::MemoryGovernor& governor) {
    std::lock_guard<std::mutex> lock(entry->runner_mutex);
    // An eviction marks the model unloading under this mutex: from then on it is not taken.
    if (entry->state != ModelState::kReady) return nullptr;
    if (!entry->decoder_runner && !entry->encoder_runner) return nullptr;
    if (entry->in_flight++ == 0) governor.set_busy(entry->consumer, true);
    return std::shared_ptr<ModelUse>(new ModelUse(std::move(entry), governor));
  }
  // The hold a load took before it published the model ready (in_flight counted already):
  // requests queued for an on_demand load run before anything can evict it.
  static std::shared_ptr<ModelUse> adopt(std::shared_ptr<ModelEntry> entry,
                                         governor::MemoryGovernor& governor) {
    return std::shared_ptr<ModelUse>(new ModelUse(std::move(entry), governor));
  }
  ~ModelUse() {
    std::lock_guard<std::mutex> lock(entry_->runner_mutex);
    if (--entry_->in_flight == 0) governor_.set_busy(entry_->consumer, false);
  }
  ModelUse(const ModelUse&) = delete;
  ModelUse& operator=(const ModelUse&) = delete;

 private:
  ModelUse(std::shared_ptr<ModelEntry> entry, governor::MemoryGovernor& governor)
      : entry_(std::move(entry)), governor_(governor) {}
  std::shared_ptr<ModelEntry> entry_;
  governor::MemoryGovernor& governor_;
};

namespace {

governor::GovernorOptions governor_options(const ServiceOptions& options) {
  governor::GovernorOptions g;
  g.budget_bytes = options.config.governor.budget_bytes;
  g.os_reserve_bytes = options.config.governor.os_reserve_bytes;
  g.baseline_bytes = options.baseline_bytes;
  return g;
}

// [engine] threads: the whole daemon's CPU threads (0: every core).
int compute_threads(const EngineConfig& engine) {
  if (engine.threads > 0) return engine.threads;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// The ledger's accounts by id (pointing into `ledger`).
std::map<governor::ConsumerId, const governor::AccountFigures*> by_account(
    const governor::LedgerSnapshot& ledger) {
  std::map<governor::ConsumerId, const governor::AccountFigures*> accounts;
  for (const governor::AccountFigures& a : ledger.accounts) accounts[a.id] = &a;
  return accounts;
}

std::chrono::milliseconds memory_wait(const DaemonConfig& config) {
  return std::chrono::milliseconds(static_cast<int64_t>(config.governor.memory_wait_s * 1000.0));
}

}  // namespace

Service::Service(ServiceOptions options)
    : options_(std::move(options)),
      started_at_(Clock::now()),
      machine_(options_.config.governor.meminfo_path, options_.config.governor.pressure_path),
      governor_(governor_options(options_), machine_),
      compute_(compute_threads(options_.config.engine)),
      tokenize_worker_(std::make_unique<WorkQueue>()),
      admin_worker_(std::make_unique<WorkQueue>()),
      evict_worker_(std::make_unique<WorkQueue>()) {
  governor_.set_evictor(this);
  governor_.set_log([this](const std::string& line) { log("governor: " + line); });
  governor_thread_ = std::thread([this] { governor_loop(); });
}

Service::~Service() {
  stop_models();
}

void Service::stop_models() {
  governor_.set_evictor(nullptr);  // nothing may post an eviction to a worker that is going
  {
    std::lock_guard<std::mutex> lock(governor_loop_mutex_);
    governor_loop_stop_ = true;
  }
  governor_loop_wake_.notify_all();
  if (governor_thread_.joinable()) governor_thread_.join();
  // The workers next: an eviction, a load or a tokenize still queued runs to its end before
  // the runners go. evict() posts no more once its worker is gone.
  std::unique_ptr<WorkQueue> evictions;
  {
    std::lock_guard<std::mutex> lock(evict_mutex_);
    evictions = std::move(evict_worker_);
  }
  evictions.reset();
  admin_worker_.reset();
  tokenize_worker_.reset();
  std::map<std::string, std::shared_ptr<ModelEntry>> models;
  {
    std::unique_lock lock(models_mutex_);
    models.swap(models_);
  }
  for (auto& [name, entry] : models) {
    if (entry->state == ModelState::kReady) release(*entry, sched::runner_shutting_down());
  }
  metrics_ = nullptr;  // the caller may destroy the metrics next
}

// The governor's clock: it re-reads the machine every 250 ms (and sheds, and ends
// keep_alive) on this thread.
void Service::governor_loop() {
  // A PSI trigger wakes the loop the moment tasks stall on memory (100 ms within 2 s, the
  // finest an unprivileged process may ask for); without one, the periodic reading is all.
  std::optional<governor::PressureTrigger> trigger;
  auto armed =
      governor::PressureTrigger::open(options_.config.governor.pressure_path,
                                      std::chrono::milliseconds(100), std::chrono::seconds(2));
  if (armed) {
    trigger.emplace(std::move(armed).value());
    log("memory pressure: PSI trigger armed on " + options_.config.governor.pressure_path);
  } else {
    log("memory pressure: no PSI trigger (" + armed.status().message() +
        "); MemAvailable and PSI are re-read every 250 ms");
  }
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(governor_loop_mutex_);
      if (governor_loop_stop_) return;
    }
    governor_.refresh();  // the machine's figures, pressure, keep_alive
    if (trigger) {
      trigger->wait(std::chrono::milliseconds(250));  // fired: re-read at once
    } else {
      std::unique_lock<std::mutex> lock(governor_loop_mutex_);
      governor_loop_wake_.wait_for(lock, std::chrono::milliseconds(250),
                                   [&] { return governor_loop_stop_; });
    }
  }
}

bool Service::evict(governor::ConsumerId account, const std::string& reason, bool busy) {
  // Held throughout: a shutdown resets the worker under it, so nothing posts to a worker
  // that is gone.
  std::lock_guard<std::mutex> evict_lock(evict_mutex_);
  if (!evict_worker_) return false;
  if (evicting_.count(account) != 0) return true;  // already on its way out
  std::shared_ptr<ModelEntry> entry;
  {
    std::unique_lock lock(models_mutex_);
    for (const auto& [name, e] : models_) {
      // The state first: `consumer` is written before a load publishes kReady.
      if (e->state == ModelState::kReady && e->consumer == account) entry = e;
    }
    if (!entry || entry->residency != Residency::kOnDemand) return false;
    {
      // A request holding the model wins: it is not idle any more (unless the host is about
      // to run out of memory: then the requests end, with the reason).
      std::lock_guard<std::mutex> runner_lock(entry->runner_mutex);
      if (entry->in_flight > 0 && !busy) return false;
      ModelState ready = ModelState::kReady;
      if (!entry->state.compare_exchange_strong(ready, ModelState::kUnloading)) return false;
    }
    // From now on requests find it unloaded (and queue for a load) while the old one goes.
    models_[entry->config.name] = unloaded_copy(*entry);
  }
  evicting_.insert(account);
  // Its own thread: a load waiting for this memory may be holding the admin worker, and a
  // runner that asked for memory must not join another runner's thread.
  evict_worker_->post([this, entry, reason, account, busy] {
    const governor::LedgerSnapshot ledger = governor_.snapshot();
    const auto accounts = by_account(ledger);
    const auto it = accounts.find(account);
    const uint64_t held = it == accounts.end()
                              ? 0
                              : it->second->weights_bytes + it->second->workspace_bytes +
                                    it->second->kv_granted_bytes;
    release(*entry, busy ? Status(StatusCode::kUnavailable,
                                  "model '" + entry->config.name +
                                      "' was unloaded: the host ran short of memory (MemAvailable "
                                      "below the governor's os_reserve); retry later")
                         : sched::runner_shutting_down());
    {
      std::lock_guard<std::mutex> lock(evict_mutex_);
      evicting_.erase(account);
    }
    log("evicted " + entry->config.name + " (" + reason + "): freed " + std::to_string(held >> 20) +
        " MiB; its next request loads it again");
    if (metrics_) metrics_->count_eviction(entry->config.name, reason);
  });
  return true;
}

void Service::set_server_stats_source(std::function<api::ServerStats()> source) {
  server_stats_ = std::move(source);
}

std::shared_ptr<ModelEntry> Service::find(const std::string& name) const {
  std::shared_lock lock(models_mutex_);
  const auto it = models_.find(name);
  return it == models_.end() ? nullptr : it->second;
}

Service::Health Service::health() const {
  Health health;
  if (draining_) {
    health.status = "draining";
    health.reason =
        "sparkd is shutting down: it answers the requests in flight and takes no new ones";
    return health;
  }
  std::vector<std::string> loading, failed;
  {
    std::shared_lock lock(models_mutex_);
    for (const auto& [name, entry] : models_) {
      if (entry->residency != Residency::kPinned) continue;
      const ModelState state = entry->state;
      if (state == ModelState::kFailed) {
        failed.push_back("model '" + name + "' failed to load: " + entry->error);
      } else if (state != ModelState::kReady) {
        loading.push_back(name);
      }
    }
  }
  health.ready = loading.empty() && failed.empty();
  if (!failed.empty()) {
    health.status = "degraded";
    for (const std::string& failure : failed) {
      health.reason += (health.reason.empty() ? "" : "; ") + failure;
    }
  } else if (!loading.empty()) {
    health.status = "loading";
    health.reason = "loading pinned model(s):";
    for (const std::string& name : loading) health.reason += " " + name;
  } else {
    health.status = "serving";
  }
  return health;
}

Status Service::load_model(const ModelConfig& config, ModelSource source, Residency residency,
                           bool keep_failed_entry) {
  auto entry = std::make_shared<ModelEntry>();
  entry->config = config;
  entry->source = source;
  entry->residency = residency;
  std::shared_ptr<ModelEntry> replaced;  // a failed or unloaded entry this load replaces
  {
    std::unique_lock lock(models_mutex_);
    if (const auto it = models_.find(config.name); it != models_.end()) {
      const ModelState state = it->second->state;
      if (state != ModelState::kFailed && state != ModelState::kUnloaded) {
        return Status(StatusCode::kFailedPrecondition,
                      "model '" + config.name + "' is already loaded; unload it first");
      }
      replaced = it->second;
    }
    models_[config.name] = entry;  // visible as loading
  }
  std::shared_ptr<ModelUse> hold;
  Status status = load_into(entry, &hold);
  hold.reset();
  if (!status.is_ok() && !keep_failed_entry) {
    // Nothing of this load stays; an entry it replaced comes back (Health still says which
    // model failed).
    std::unique_lock lock(models_mutex_);
    const auto it = models_.find(config.name);
    if (it != models_.end() && it->second == entry) {
      if (replaced) {
        it->second = replaced;
      } else {
        models_.erase(it);
      }
    }
  }
  return status;
}

Status Service::load_into(const std::shared_ptr<ModelEntry>& loading,
                          std::shared_ptr<ModelUse>* hold) {
  ModelEntry& entry = *loading;
  const ModelConfig& config = entry.config;
  const Clock::time_point start = Clock::now();
  bool admitted = false;
  auto fail = [&](Status status) {
    // What the load built goes, and its reservation or account with it.
    entry.stop(sched::runner_shutting_down());
    entry.model.reset();
    entry.backend.reset();
    if (admitted) {
      compute_.remove_model(entry.consumer);
      governor_.close_account(entry.consumer);
    }
    entry.error = status.message();
    entry.error_code = status.code();
    entry.state = ModelState::kFailed;
    if (metrics_) metrics_->observe_model_load(config.name, seconds_since(start), false);
    return Status(status.code(), "model '" + config.name + "': " + status.message());
  };
  // The reservation comes first, from the file headers: not a byte of weights is read for a
  // model that cannot fit.
  auto footprint = tasks::estimate_footprint(config.path, footprint_options(config));
  if (!footprint) return fail(footprint.status());
  const bool generates = footprint->spec.task == model::ModelTask::kGenerate;
  if (generates && footprint->kv_geometry.max_blocks < 1) {
    return fail(Status(
        StatusCode::kInvalidArgument,
        "kv_max (" + std::to_string(config.kv_max_bytes) +
            " bytes) cannot hold one KV block: this model's KV pool commits at least " +
            std::to_string(footprint->kv_smallest_pool_bytes) +
            " bytes (a 2 MiB granule for the keys and the values of each of its " +
            std::to_string(footprint->spec.kv_layer_count()) + " attention layers); raise kv_max"));
  }
  governor::ModelAccountOptions account;
  account.name = config.name;
  account.priority = config.priority;
  account.pinned = entry.residency == Residency::kPinned;
  if (!account.pinned && config.keep_alive_s >= 0) {
    account.keep_alive =
        std::chrono::milliseconds(static_cast<int64_t>(config.keep_alive_s * 1000));
  }
  account.kv_min_bytes = generates ? config.kv_min_bytes : 0;
  // The pool's real cap: kv_max less what granule rounding cannot use.
  account.kv_max_bytes = generates ? footprint->kv_cap_bytes : 0;
  account.kv_min_bytes = std::min(account.kv_min_bytes, account.kv_max_bytes);
  governor::LoadEstimate estimate;
  estimate.weights_bytes = footprint->weights_bytes;
  estimate.workspace_bytes = footprint->workspace_bytes;
  estimate.transient_bytes = footprint->transient_bytes;
  auto reserved = governor_.begin_load(account, estimate, memory_wait(options_.config));
  if (!reserved) return fail(reserved.status());
  entry.consumer = *reserved;
  admitted = true;
  compute_.add_model(entry.consumer, config.priority);

  CpuBackendOptions backend_options;
  backend_options.num_threads = options_.config.engine.threads;
  auto placement = parse_placement(config.device);
  if (!placement) return fail(placement.status());
  auto backend = make_backend(*placement, backend_options);
  if (!backend) {
    return fail(Status(backend.status().code(), "device \"" + config.device + "\" (" +
                                                    placement->to_string() +
                                                    "): " + backend.status().message()));
  }
  entry.backend = std::move(backend).value();
  model::WeightLoadOptions weight_options;
  if (!config.quantize.empty()) weight_options.quantize = quant::quantize_target(config.quantize);
  auto loaded = tasks::LoadedModel::load(config.path, *entry.backend, weight_options);
  if (!loaded) return fail(loaded.status());
  entry.model = std::move(loaded).value();
  if (Status reserved_workspace = entry.model->reserve_workspace(footprint->workspace_bytes);
      !reserved_workspace.is_ok()) {
    return fail(reserved_workspace);
  }
  const model::ModelSpec& spec = entry.model->spec();
  if (spec.task == model::ModelTask::kGenerate) {
    // The config's choice of a built-in template, else the model's own, else the built-in
    // one for its family.
    if (!config.chat_template.empty()) {
      auto kind = tasks::parse_chat_template_name(config.chat_template);
      if (!kind) return fail(kind.status());
      entry.chat_template = tasks::ChatTemplate::builtin(*kind);
    } else if (const auto& source = entry.model->chat_template_source()) {
      auto own = tasks::ChatTemplate::from_source(*source, entry.model->special_token_texts());
      if (!own) return fail(own.status());
      entry.chat_template = std::move(own).value();
    } else if (auto kind = tasks::chat_template_for(spec)) {
      entry.chat_template = tasks::ChatTemplate::builtin(*kind);
    }
  }
  // The reservation becomes what the load really holds.
  governor_.finish_load(entry.consumer, entry.model->weights().size_bytes(),
                        footprint->workspace_bytes, seconds_since(start));
  if (spec.task == model::ModelTask::kGenerate) {
    sched::RunnerConfig runner_config;
    runner_config.scheduler.max_batch_tokens = config.max_batch_tokens;
    runner_config.scheduler.max_seqs = config.max_seqs;
    runner_config.block_tokens = config.block_tokens;
    runner_config.max_blocks = footprint->kv_geometry.max_blocks;
    runner_config.prefix_caching = config.prefix_caching;
    runner_config.consumer = entry.consumer;
    runner_config.memory_wait = memory_wait(options_.config);
    runner_config.compute = &compute_;
    auto runner = sched::DecoderRunner::start(*entry.model, runner_config, governor_);
    if (!runner) return fail(runner.status());
    std::lock_guard<std::mutex> lock(entry.runner_mutex);
    entry.decoder_runner = std::move(runner).value();
  } else {
    sched::EncoderRunnerConfig runner_config;
    runner_config.batcher.max_batch_tokens = config.max_batch_tokens;
    runner_config.batcher.max_batch_inputs = config.max_batch_inputs;
    runner_config.compute = &compute_;
    runner_config.consumer = entry.consumer;
    auto runner = sched::EncoderRunner::start(*entry.model, runner_config);
    if (!runner) return fail(runner.status());
    std::lock_guard<std::mutex> lock(entry.runner_mutex);
    entry.encoder_runner = std::move(runner).value();
  }
  {
    // Held for the caller before anyone can see it ready, so no eviction can take it before
    // the requests that waited for this load have run.
    std::lock_guard<std::mutex> lock(entry.runner_mutex);
    if (entry.in_flight++ == 0) governor_.set_busy(entry.consumer, true);
  }
  *hold = ModelUse::adopt(loading, governor_);
  entry.state = ModelState::kReady;
  if (metrics_) metrics_->observe_model_load(config.name, seconds_since(start), true);
  return Status::ok();
}

void Service::release(ModelEntry& entry, const Status& reason) {
  entry.stop(reason);  // requests still running are answered with `reason`; KV goes back
  compute_.remove_model(entry.consumer);
  governor_.close_account(entry.consumer);
  entry.state = ModelState::kUnloaded;
  // The weights go with the entry's last reference (a task finishing with it may hold one):
  // they are never freed under a thread still reading them.
}

std::shared_ptr<ModelEntry> Service::unloaded_copy(const ModelEntry& entry) const {
  auto fresh = std::make_shared<ModelEntry>();
  fresh->config = entry.config;
  fresh->source = entry.source;
  fresh->residency = entry.config.residency;  // an admin Load's override ends with the load
  fresh->planned_task = entry.model ? entry.task() : entry.planned_task;
  fresh->state = ModelState::kUnloaded;
  return fresh;
}

Status Service::unload_model(const std::string& name, bool keep_listed) {
  std::shared_ptr<ModelEntry> entry;
  {
    std::unique_lock lock(models_mutex_);
    const auto it = models_.find(name);
    if (it == models_.end()) {
      return Status(StatusCode::kNotFound, "no model named '" + name + "' is loaded");
    }
    entry = it->second;
    if (!keep_listed) models_.erase(it);
  }
  ModelState ready = ModelState::kReady;
  if (entry->state.compare_exchange_strong(ready, ModelState::kUnloading)) {
    release(*entry, sched::runner_shutting_down());
  } else if (keep_listed) {
    return Status(StatusCode::kFailedPrecondition, "model '" + name + "' is not loaded (it is " +
                                                       model_state_name(entry->state.load()) + ")");
  }
  if (keep_listed) {
    std::unique_lock lock(models_mutex_);
    const auto it = models_.find(name);
    if (it != models_.end() && it->second == entry) it->second = unloaded_copy(*entry);
  }
  return Status::ok();
}

bool Service::defer_until_loaded(const std::string& name, const v1::Request& request,
                                 const std::shared_ptr<api::Call>& call) {
  std::shared_ptr<ModelEntry> entry = find(name);
  if (!entry || entry->residency != Residency::kOnDemand || draining_) return false;
  const ModelState state = entry->state;
  bool post = false;
  {
    std::lock_guard<std::mutex> lock(pending_mutex_);
    PendingLoad& pending = pending_loads_[name];
    if (!pending.queued && state == ModelState::kReady) return false;
    // Resumed once, whatever the load did: a failed load answers with its error instead of
    // loading again for the same request.
    pending.waiting.push_back([this, request, call] { dispatch(request, call, false); });
    post = !pending.queued;
    pending.queued = true;
  }
  if (post) admin_worker_->post([this, name] { load_on_demand(name); });
  return true;
}

void Service::defer_or_fail(const std::string& name, const v1::Request& request,
                            const std::shared_ptr<api::Call>& call) {
  // An eviction took it between resolve() and now: an on_demand model loads again.
  if (defer_until_loaded(name, request, call)) return;
  call->fail(Status(StatusCode::kUnavailable, "model '" + name + "' is unloading"));
}

void Service::load_on_demand(const std::string& name) {
  std::shared_ptr<ModelUse> hold;  // keeps the model until the waiting requests hold it
  std::shared_ptr<ModelEntry> entry = find(name);
  if (entry && (entry->state == ModelState::kUnloaded || entry->state == ModelState::kFailed)) {
    // A fresh entry for every load: readers of the old one (its error, its task) never race
    // the load.
    std::shared_ptr<ModelEntry> fresh = unloaded_copy(*entry);
    fresh->state = ModelState::kLoading;
    {
      std::unique_lock lock(models_mutex_);
      const auto it = models_.find(name);
      if (it != models_.end() && it->second == entry) it->second = fresh;
    }
    log("loading " + name + " on demand");
    Status status = load_into(fresh, &hold);
    if (!status.is_ok()) log("on-demand load failed: " + status.message());
  }
  std::vector<std::function<void()>> waiting;
  {
    std::lock_guard<std::mutex> lock(pending_mutex_);
    waiting.swap(pending_loads_[name].waiting);
    pending_loads_.erase(name);
  }
  // Ready: they run. Failed: they get the load's error (and a later request tries again).
  for (auto& resume : waiting) resume();
}

Status Service::add_configured_model(const ModelConfig& model) {
  if (model.residency == Residency::kPinned) {
    return load_model(model, ModelSource::kConfig, model.residency, /*keep_failed_entry=*/true);
  }
  // on_demand: listed as unloaded; its first request loads it. Its headers are read now, so
  // a broken model is reported at once (and retried by its next request).
  auto entry = std::make_shared<ModelEntry>();
  entry->config = model;
  entry->residency = Residency::kOnDemand;
  entry->state = ModelState::kUnloaded;
  auto footprint = tasks::estimate_footprint(model.path, footprint_options(model));
  if (footprint) {
    entry->planned_task = model::task_name(footprint->spec.task);
  } else {
    entry->error = footprint.status().message();
    entry->state = ModelState::kFailed;
    log("load failed: model '" + model.name + "': " + entry->error +
        " (on_demand: sparkd serves without it)");
  }
  std::unique_lock lock(models_mutex_);
  models_[model.name] = entry;
  return Status::ok();
}

Status Service::load_configured_models(const std::function<void(const std::string&)>& progress) {
  const auto& models = options_.config.models;
  size_t pinned = 0;
  for (const ModelConfig& model : models) pinned += model.residency == Residency::kPinned;
  size_t index = 0;
  for (const ModelConfig& model : models) {
    if (progress && model.residency == Residency::kPinned) {
      progress("loading " + model.name + " (" + std::to_string(++index) + "/" +
               std::to_string(pinned) + ")");
    }
    Status status = add_configured_model(model);
    if (status.is_ok()) continue;
    return Status(status.code(), "pinned " + status.message() +
                                     " (a pinned model is required: fix or remove it, or make "
                                     "it residency = \"on_demand\")");
  }
  return Status::ok();
}

std::string Service::ReloadReport::summary() const {
  std::string text;
  for (const std::string& change : changes) text += (text.empty() ? "" : "; ") + change;
  if (text.empty()) text = "no model changed";
  if (!need_restart.empty()) {
    text += "; these changes take effect at the next restart:";
    for (const std::string& key : need_restart) text += " " + key;
  }
  return text;
}

Status Service::ReloadReport::status() const {
  if (failures.empty()) return Status::ok();
  std::string text = "the config was reloaded, but " + std::to_string(failures.size()) +
                     " model(s) failed to load:";
  for (const Status& failure : failures) text += " " + failure.message() + ";";
  text += " applied: " + summary();
  return Status(failures.front().code(), text);
}

Expected<Service::ReloadReport> Service::reload_config() {
  SPARKD_ASSIGN_OR_RETURN(DaemonConfig fresh, load_config(options_.config.source_path));
  std::map<std::string, ModelConfig> wanted;
  for (const ModelConfig& m : fresh.models) wanted[m.name] = m;
  // What the config put there. Models an admin loaded from a path stay, unless the config now
  // defines the same name: then the config's definition takes over.
  std::map<std::string, ModelConfig> running;
  std::set<std::string> failed;  // loaded again, so fixing the files and reloading is a retry
  {
    std::shared_lock lock(models_mutex_);
    for (const auto& [name, entry] : models_) {
      if (entry->source == ModelSource::kAdmin && wanted.count(name) == 0) continue;
      running[name] = entry->config;
      if (entry->state == ModelState::kFailed) failed.insert(name);
    }
  }
  ReloadReport report;
  for (const auto& [name, config] : running) {
    const auto it = wanted.find(name);
    if (it == wanted.end()) {
      unload_model(name);
      report.changes.push_back("unloaded " + name);
    } else if (config != it->second || failed.count(name) != 0) {
      unload_model(name);
      Status status = add_configured_model(it->second);
      report.changes.push_back("reloaded " + name);
      if (!status.is_ok()) report.failures.push_back(status);
    }
  }
  for (const auto& [name, config] : wanted) {
    if (running.count(name) != 0) continue;
    Status status = add_configured_model(config);
    report.changes.push_back((config.residency == Residency::kOnDemand ? "added " : "loaded ") +
                             name);
    if (!status.is_ok()) report.failures.push_back(status);
  }
  // What a reload cannot change in a running process: say so rather than ignore it.
  const DaemonConfig& old = options_.config;
  if (fresh.server.socket_path != old.server.socket_path)
    report.need_restart.push_back("server.socket");
  if (fresh.server.socket_mode != old.server.socket_mode)
    report.need_restart.push_back("server.socket_mode");
  if (fresh.server.socket_group != old.server.socket_group)
    report.need_restart.push_back("server.socket_group");
  if (fresh.server.admin_group != old.server.admin_group)
    report.need_restart.push_back("server.admin_group");
  if (fresh.metrics.enabled != old.metrics.enabled || fresh.metrics.listen != old.metrics.listen)
    report.need_restart.push_back("[metrics]");
  if (!(fresh.http == old.http)) report.need_restart.push_back("[http]");
  if (fresh.engine.threads != old.engine.threads) report.need_restart.push_back("engine.threads");
  if (fresh.governor.budget_bytes != old.governor.budget_bytes ||
      fresh.governor.os_reserve_bytes != old.governor.os_reserve_bytes)
    report.need_restart.push_back("[governor]");
  if (fresh.server.drain_timeout_s != old.server.drain_timeout_s)
    report.need_restart.push_back("server.drain_timeout_s");
  // Only the admin worker (and start-up, before it serves) reads what changes here.
  options_.config.models = fresh.models;
  options_.config.max_inputs_per_request = fresh.max_inputs_per_request;
  options_.config.max_text_bytes = fresh.max_text_bytes;
  options_.config.server.max_frame_bytes = fresh.server.max_frame_bytes;
  options_.config.server.max_connections = fresh.server.max_connections;
  options_.config.server.max_inflight_per_connection = fresh.server.max_inflight_per_connection;
  options_.config.server.max_write_buffer_bytes = fresh.server.max_write_buffer_bytes;
  options_.config.server.frame_timeout_s = fresh.server.frame_timeout_s;
  options_.config.server.idle_timeout_s = fresh.server.idle_timeout_s;
  if (config_observer_) config_observer_(fresh);
  return report;
}

Expected<Service::ReloadReport> Service::reload_from_signal() {
  // The admin worker runs every load, unload and reload, so a SIGHUP never races an admin call.
  // Shared: set_value may still be inside the promise when get() returns here.
  auto done = std::make_shared<std::promise<Expected<ReloadReport>>>();
  std::future<Expected<ReloadReport>> result = done->get_future();
  admin_worker_->post([this, done] {
    log("SIGHUP: reloading " + options_.config.source_path);
    auto report = reload_config();
    log_reload(report);
    done->set_value(std::move(report));
  });
  return result.get();
}

void Service::log_reload(const Expected<ReloadReport>& report) {
  if (!report) {
    log("reload refused, the running config is kept: " + report.status().message());
  } else if (Status status = report->status(); !status.is_ok()) {
    log("reloaded with failures: " + status.message());
  } else {
    log("reloaded: " + report->summary());
  }
}

void Service::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

Expected<std::shared_ptr<ModelEntry>> Service::resolve(const std::string& name,
                                                       const char* task) const {
  std::shared_ptr<ModelEntry> entry = find(name);
  if (!entry) {
    std::string names;
    {
      std::shared_lock lock(models_mutex_);
      for (const auto& [n, e] : models_) names += (names.empty() ? "" : ", ") + n;
    }
    return Status(StatusCode::kNotFound, "no model named '" + name + "' (loaded: " +
                                             (names.empty() ? "none" : names) + ")");
  }
  const ModelState state = entry->state;
  if (state == ModelState::kFailed) {
    // A load refused for memory says so (RESOURCE_EXHAUSTED); any other failure leaves the
    // model unavailable.
    return Status(entry->error_code == StatusCode::kResourceExhausted
                      ? StatusCode::kResourceExhausted
                      : StatusCode::kUnavailable,
                  "model '" + name + "' failed to load: " + entry->error);
  }
  if (state != ModelState::kReady) {
    return Status(StatusCode::kUnavailable,
                  "model '" + name + "' is " + model_state_name(state) + "; retry shortly");
  }
  if (task != nullptr && entry->task() != task) {
    return Status(
        StatusCode::kFailedPrecondition,
        "model '" + name + "' is " + with_article(entry->task()) + " model; it cannot " + task);
  }
  return entry;
}

void Service::answered(const api::AnsweredRequest& request) {
  if (!metrics_) return;
  // Only names of models the daemon has become label values: a client cannot mint series.
  const std::string model(request.model);
  const bool known = !model.empty() && find(model) != nullptr;
  metrics_->count_request(known ? model : "", std::string(request.kind), outcome_of(request.code),
                          std::string(request.api));
}

void Service::observe(const std::string& model, const std::string& task, double queue_s,
                      double e2e_s, std::optional<double> ttft_s, uint64_t prompt_tokens,
                      uint64_t completion_tokens) {
  if (!metrics_) return;
  RequestObservation o;
  o.model = model;
  o.task = task;
  o.queue_s = queue_s;
  o.e2e_s = e2e_s;
  o.ttft_s = ttft_s;
  o.prompt_tokens = prompt_tokens;
  o.completion_tokens = completion_tokens;
  metrics_->observe_request(o);
}

void Service::handle(const v1::Request& request, std::shared_ptr<api::Call> call) {
  dispatch(request, std::move(call), /*may_defer=*/true);
}

void Service::dispatch(const v1::Request& request, std::shared_ptr<api::Call> call,
                       bool may_defer) {
  switch (request.kind_case()) {
    case v1::Request::kEmbed:
    case v1::Request::kRerank:
    case v1::Request::kGenerate:
    case v1::Request::kTokenize:
    case v1::Request::kDetokenize:
      // An on_demand model that is not loaded: the request waits for its load.
      if (may_defer && defer_until_loaded(api::request_model(request), request, call)) return;
      break;
    default:
      break;
  }
  switch (request.kind_case()) {
    case v1::Request::kEmbed:
      return handle_embed(request, std::move(call));
    case v1::Request::kRerank:
      return handle_rerank(request, std::move(call));
    case v1::Request::kGenerate:
      return handle_generate(request, std::move(call));
    case v1::Request::kTokenize:
      return handle_tokenize(request, std::move(call));
    case v1::Request::kDetokenize:
      return handle_detokenize(request, std::move(call));
    case v1::Request::kListModels:
      return call->send(list_models());
    case v1::Request::kStatus:
      return call->send(status());
    case v1::Request::kHealth: {
      const Health now = health();
      v1::Response response;
      response.set_final(true);
      response.mutable_health()->set_ready(now.ready);
      response.mutable_health()->set_status(now.status);
      response.mutable_health()->set_reason(now.reason);
      return call->send(std::move(response));
    }
    case v1::Request::kLoad:
    case v1::Request::kUnload:
    case v1::Request::kReload:
      return handle_admin(request, std::move(call));
    default:
      return call->fail(Status(StatusCode::kUnimplemented, "this request kind is not served"));
  }
}

void Service::set_keep_alive(const ModelEntry& model, double seconds) {
  governor_.set_keep_alive(model.consumer, seconds < 0 ? std::nullopt
                                                       : std::optional<std::chrono::milliseconds>(
                                                             static_cast<int64_t>(seconds * 1000)));
}

void Service::handle_embed(const v1::Request& request, std::shared_ptr<api::Call> call) {
  // The server has checked the fields (counts and sizes against [limits]) already.
  const v1::EmbedRequest& embed = request.embed();
  auto entry = resolve(embed.model(), "embed");
  if (!entry) return call->fail(entry.status());
  sched::EmbedRequest r;
  r.inputs.assign(embed.inputs().begin(), embed.inputs().end());
  if (embed.has_normalize()) r.normalize = embed.normalize();
  r.truncate = embed.truncate();
  r.priority = embed.priority();
  r.deadline = deadline_of(*call, embed.deadline_ms());
  std::shared_ptr<ModelEntry> model = *entry;
  auto use = ModelUse::acquire(model, governor_);
  if (!use) return defer_or_fail(embed.model(), request, call);
  ++model->requests_total;
  if (embed.has_keep_alive_s()) set_keep_alive(*model, embed.keep_alive_s());
  auto on_done = [this, call, model, use](sched::EmbedResult result) {
    const uint64_t tokens =
        std::accumulate(result.token_counts.begin(), result.token_counts.end(), uint64_t{0});
    model->encoder_prompt_tokens += tokens;
    const double total = seconds_since(call->received_at());
    observe(model->config.name, "embed", result.timing.queue_seconds, total, std::nullopt, tokens,
            0);
    if (!result.status.is_ok()) return call->fail(result.status);
    v1::Response response;
    response.set_final(true);
    auto* out = response.mutable_embed();
    out->set_dimensions(static_cast<uint32_t>(result.dimensions));
    const auto dims = static_cast<size_t>(result.dimensions);
    for (size_t row = 0; row * dims < result.values.size(); ++row) {
      auto* values = out->add_embeddings()->mutable_values();
      values->Add(result.values.begin() + static_cast<std::ptrdiff_t>(row * dims),
                  result.values.begin() + static_cast<std::ptrdiff_t>((row + 1) * dims));
    }
    set_encoder_usage(response, tokens, result.timing, total);
    call->send(std::move(response));
  };
  sched::RequestId id = 0;
  if (!model->with_encoder(
          [&](sched::EncoderRunner& runner) { id = runner.submit_embed(std::move(r), on_done); })) {
    return call->fail(
        Status(StatusCode::kUnavailable, "model '" + embed.model() + "' is unloading"));
  }
  call->on_cancel([model, id] { model->with_encoder([id](auto& runner) { runner.cancel(id); }); });
}

void Service::handle_rerank(const v1::Request& request, std::shared_ptr<api::Call> call) {
  const v1::RerankRequest& rerank = request.rerank();
  auto entry = resolve(rerank.model(), "rerank");
  if (!entry) return call->fail(entry.status());
  sched::RerankRequest r;
  r.query = rerank.query();
  r.documents.assign(rerank.documents().begin(), rerank.documents().end());
  r.truncate = rerank.truncate();
  r.priority = rerank.priority();
  r.deadline = deadline_of(*call, rerank.deadline_ms());
  std::shared_ptr<ModelEntry> model = *entry;
  auto use = ModelUse::acquire(model, governor_);
  if (!use) return defer_or_fail(rerank.model(), request, call);
  ++model->requests_total;
  if (rerank.has_keep_alive_s()) set_keep_alive(*model, rerank.keep_alive_s());
  // The documents are echoed only when asked for; keep them only then.
  auto documents = std::make_shared<std::vector<std::string>>();
  if (rerank.return_documents()) *documents = r.documents;
  auto on_done = [this, call, model, use, documents, top_n = rerank.top_n(),
                  raw = rerank.raw_scores()](sched::RerankResult result) {
    const uint64_t tokens =
        std::accumulate(result.token_counts.begin(), result.token_counts.end(), uint64_t{0});
    model->encoder_prompt_tokens += tokens;
    const double total = seconds_since(call->received_at());
    observe(model->config.name, "rerank", result.timing.queue_seconds, total, std::nullopt, tokens,
            0);
    if (!result.status.is_ok()) return call->fail(result.status);
    const std::vector<float>& scores = raw ? result.logits : result.probabilities;
    std::vector<uint32_t> order(scores.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(),
                     [&](uint32_t a, uint32_t b) { return scores[a] > scores[b]; });
    if (top_n > 0 && top_n < order.size()) order.resize(top_n);
    v1::Response response;
    response.set_final(true);
    for (uint32_t index : order) {
      v1::RerankResult* ranked = response.mutable_rerank()->add_results();
      ranked->set_index(index);
      ranked->set_score(scores[index]);
      if (!documents->empty()) ranked->set_document((*documents)[index]);
    }
    response.mutable_rerank();  // present even with no results
    set_encoder_usage(response, tokens, result.timing, total);
    call->send(std::move(response));
  };
  sched::RequestId id = 0;
  if (!model->with_encoder([&](sched::EncoderRunner& runner) {
        id = runner.submit_rerank(std::move(r), on_done);
      })) {
    return call->fail(
        Status(StatusCode::kUnavailable, "model '" + rerank.model() + "' is unloading"));
  }
  call->on_cancel([model, id] { model->with_encoder([id](auto& runner) { runner.cancel(id); }); });
}

namespace {

// What a generate call accumulates between its runner callbacks (all on the runner thread).
struct GenerateProgress {
  bool stream = false;
  std::optional<double> ttft_s;
  Clock::time_point last_token_at;
  double tokenize_s = 0;
  std::string text;  // non-streaming: the whole output
  std::vector<int32_t> token_ids;
  google::protobuf::RepeatedPtrField<v1::TokenLogprob> logprobs;
  // Chat requests: the output's split into answer, reasoning and tool calls.
  std::optional<tasks::ChatOutputFormat> chat_format;
  bool starts_in_reasoning = false;
  std::optional<tasks::ChatOutputStream> chat_stream;  // streaming chat
  bool made_tool_calls = false;
};

// A token's text, decoded alone (as OpenAI's logprobs show each token).
std::string token_text(const tokenizer::Tokenizer& tokenizer, int32_t id) {
  auto text = tokenizer.decode({static_cast<uint32_t>(id)});
  return text ? std::move(text).value() : std::string();
}

void add_logprobs(const sched::GenerateDelta& delta, const tokenizer::Tokenizer& tokenizer,
                  google::protobuf::RepeatedPtrField<v1::TokenLogprob>* out) {
  for (size_t i = 0; i < delta.logprobs.size() && i < delta.token_ids.size(); ++i) {
    v1::TokenLogprob* lp = out->Add();
    lp->set_token_id(delta.token_ids[i]);
    lp->set_logprob(delta.logprobs[i]);
    lp->set_token(token_text(tokenizer, delta.token_ids[i]));
    if (i < delta.top_logprobs.size()) {
      for (const auto& [token, logprob] : delta.top_logprobs[i]) {
        v1::TopLogprob* top = lp->add_top();
        top->set_token_id(token);
        top->set_logprob(logprob);
        top->set_token(token_text(tokenizer, token));
      }
    }
  }
}

}  // namespace

void Service::handle_generate(const v1::Request& request, std::shared_ptr<api::Call> call) {
  auto entry = resolve(request.generate().model(), "generate");
  if (!entry) return call->fail(entry.status());
  std::shared_ptr<ModelEntry> model = *entry;
  auto use = ModelUse::acquire(model, governor_);
  if (!use) return defer_or_fail(request.generate().model(), request, call);
  ++model->requests_total;
  if (request.generate().has_keep_alive_s())
    set_keep_alive(*model, request.generate().keep_alive_s());
  // Rendering and tokenizing a long prompt is real work: off the loop thread.
  tokenize_worker_->post([this, request, call, model, use] {
    const v1::GenerateRequest& g = request.generate();
    const Clock::time_point tokenize_start = Clock::now();
    std::string text;
    bool add_special = true;
    if (g.has_chat()) {
      if (!model->chat_template) {
        return call->fail(Status(StatusCode::kFailedPrecondition,
                                 "model '" + g.model() +
                                     "' has no chat template; send a prompt, or set "
                                     "chat_template for it in the config"));
      }
      auto input = chat_input_from(g.chat());
      if (!input) return call->fail(input.status());
      auto rendered = model->chat_template->render(*input);
      if (!rendered) return call->fail(rendered.status());
      text = std::move(rendered).value();
      add_special = model->chat_template->add_special_tokens();
    } else {
      text = g.prompt();
    }
    auto encoding = model->model->tokenizer().encode(text, add_special);
    if (!encoding) return call->fail(encoding.status());
    sched::GenerateRequest r;
    r.prompt_ids.assign(encoding->ids.begin(), encoding->ids.end());
    const v1::Sampling& s = g.sampling();
    r.sampling.temperature = s.has_temperature() ? s.temperature() : 1.0f;
    r.sampling.top_k = s.top_k();
    r.sampling.top_p = s.has_top_p() ? s.top_p() : 1.0f;
    r.sampling.min_p = s.min_p();
    r.sampling.repetition_penalty = s.has_repetition_penalty() ? s.repetition_penalty() : 1.0f;
    r.sampling.presence_penalty = s.presence_penalty();
    r.sampling.frequency_penalty = s.frequency_penalty();
    for (const v1::LogitBias& b : s.logit_bias())
      r.sampling.logit_bias.emplace_back(b.token_id(), b.bias());
    if (s.has_seed()) r.sampling.seed = s.seed();
    r.sampling.logprobs = static_cast<int32_t>(s.logprobs());
    r.max_tokens = g.max_tokens() > 0 ? g.max_tokens() : model->config.default_max_tokens;
    r.ignore_eos = g.ignore_eos();
    r.stop_token_ids.assign(g.stop_token_ids().begin(), g.stop_token_ids().end());
    r.stop.assign(g.stop().begin(), g.stop().end());
    r.include_stop_str_in_output = g.include_stop_str_in_output();
    r.priority = g.priority();
    r.deadline = deadline_of(*call, g.deadline_ms());

    auto progress = std::make_shared<GenerateProgress>();
    progress->stream = g.stream();
    progress->tokenize_s = seconds_since(tokenize_start);
    if (g.has_chat()) {
      progress->chat_format = model->chat_template->output_format();
      progress->starts_in_reasoning =
          progress->chat_format->think_tags && tasks::prompt_opens_reasoning(text);
      if (progress->stream)
        progress->chat_stream.emplace(*progress->chat_format, progress->starts_in_reasoning);
    }
    sched::GenerateCallbacks callbacks;
    callbacks.on_delta = [this, call, model, progress](const sched::GenerateDelta& delta) {
      const Clock::time_point now = Clock::now();
      if (!progress->ttft_s) {
        progress->ttft_s = std::chrono::duration<double>(now - call->received_at()).count();
      } else if (metrics_) {
        metrics_->observe_inter_token(
            model->config.name,
            std::chrono::duration<double>(now - progress->last_token_at).count() /
                static_cast<double>(std::max<size_t>(1, delta.token_ids.size())));
      }
      progress->last_token_at = now;
      const tokenizer::Tokenizer& tokenizer = model->model->tokenizer();
      if (!progress->stream) {
        progress->text += delta.text;
        progress->token_ids.insert(progress->token_ids.end(), delta.token_ids.begin(),
                                   delta.token_ids.end());
        add_logprobs(delta, tokenizer, &progress->logprobs);
        return;
      }
      v1::Response response;
      auto* chunk = response.mutable_generate();
      if (progress->chat_stream) {
        progress->made_tool_calls |=
            set_chat_output(progress->chat_stream->push(delta.text), *chunk);
      } else {
        chunk->set_text(delta.text);
      }
      chunk->mutable_token_ids()->Add(delta.token_ids.begin(), delta.token_ids.end());
      add_logprobs(delta, tokenizer, chunk->mutable_logprobs());
      call->send(std::move(response));
    };
    callbacks.on_done = [this, call, model, progress, use](sched::GenerateResult result) {
      const double total = seconds_since(call->received_at());
      observe(model->config.name, "generate", result.queue_seconds, total, progress->ttft_s,
              static_cast<uint64_t>(result.prompt_tokens), result.token_ids.size());
      if (!result.status.is_ok()) return call->fail(result.status);
      v1::Response response;
      response.set_final(true);
      auto* chunk = response.mutable_generate();
      if (progress->chat_stream) {
        // What the split held back (a possible tag start) is the output's last word.
        progress->made_tool_calls |= set_chat_output(progress->chat_stream->finish(), *chunk);
      } else if (!progress->stream) {
        if (progress->chat_format) {
          progress->made_tool_calls =
              set_chat_output(tasks::parse_chat_output(progress->text, *progress->chat_format,
                                                       progress->starts_in_reasoning),
                              *chunk);
        } else {
          chunk->set_text(progress->text);
        }
        chunk->mutable_token_ids()->Add(progress->token_ids.begin(), progress->token_ids.end());
        chunk->mutable_logprobs()->Swap(&progress->logprobs);
      }
      // A chat answer that ended by calling tools says so, as OpenAI's does (a cut-off one
      // still says "length").
      chunk->set_finish_reason(progress->made_tool_calls && result.finish_reason == "stop"
                                   ? "tool_calls"
                                   : result.finish_reason);
      auto* usage = response.mutable_usage();
      usage->set_prompt_tokens(static_cast<uint32_t>(result.prompt_tokens));
      usage->set_completion_tokens(static_cast<uint32_t>(result.token_ids.size()));
      usage->set_cached_prompt_tokens(static_cast<uint32_t>(result.cached_prompt_tokens));
      usage->set_total_tokens(
          static_cast<uint32_t>(result.prompt_tokens + result.token_ids.size()));
      auto* timing = response.mutable_timing();
      timing->set_tokenize_ms(ms(progress->tokenize_s));
      timing->set_queue_ms(ms(result.queue_seconds));
      timing->set_total_ms(ms(total));
      if (progress->ttft_s) {
        timing->set_ttft_ms(ms(*progress->ttft_s));
        timing->set_compute_ms(ms(total - progress->tokenize_s));
      }
      call->send(std::move(response));
    };
    sched::RequestId id = 0;
    if (!model->with_decoder([&](sched::DecoderRunner& runner) {
          id = runner.submit(std::move(r), std::move(callbacks));
        })) {
      return call->fail(Status(StatusCode::kUnavailable, "model '" + g.model() + "' is unloading"));
    }
    call->on_cancel(
        [model, id] { model->with_decoder([id](auto& runner) { runner.cancel(id); }); });
  });
}

void Service::handle_tokenize(const v1::Request& request, std::shared_ptr<api::Call> call) {
  auto entry = resolve(request.tokenize().model(), nullptr);  // every task has a tokenizer
  if (!entry) return call->fail(entry.status());
  std::shared_ptr<ModelEntry> model = *entry;
  auto use = ModelUse::acquire(model, governor_);
  if (!use) return defer_or_fail(request.tokenize().model(), request, call);
  if (request.tokenize().has_keep_alive_s())
    set_keep_alive(*model, request.tokenize().keep_alive_s());
  tokenize_worker_->post([request, call, model, use] {
    const v1::TokenizeRequest& t = request.tokenize();
    const Clock::time_point start = Clock::now();
    auto encoding = model->model->tokenizer().encode(
        t.text(), t.has_add_special_tokens() ? t.add_special_tokens() : true);
    if (!encoding) return call->fail(encoding.status());
    v1::Response response;
    response.set_final(true);
    auto* out = response.mutable_tokenize();
    out->mutable_ids()->Add(encoding->ids.begin(), encoding->ids.end());
    if (t.return_tokens()) {
      for (const std::string& token : encoding->tokens) out->add_tokens(token);
    }
    response.mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(encoding->ids.size()));
    response.mutable_usage()->set_total_tokens(static_cast<uint32_t>(encoding->ids.size()));
    response.mutable_timing()->set_tokenize_ms(ms(seconds_since(start)));
    response.mutable_timing()->set_total_ms(ms(seconds_since(call->received_at())));
    call->send(std::move(response));
  });
}

void Service::handle_detokenize(const v1::Request& request, std::shared_ptr<api::Call> call) {
  auto entry = resolve(request.detokenize().model(), nullptr);  // every task has a tokenizer
  if (!entry) return call->fail(entry.status());
  std::shared_ptr<ModelEntry> model = *entry;
  auto use = ModelUse::acquire(model, governor_);
  if (!use) return defer_or_fail(request.detokenize().model(), request, call);
  tokenize_worker_->post([request, call, model, use] {
    const v1::DetokenizeRequest& d = request.detokenize();
    const int32_t vocab = model->model->spec().vocab_size;
    std::vector<uint32_t> ids;
    for (int i = 0; i < d.ids_size(); ++i) {
      if (d.ids(i) < 0 || d.ids(i) >= vocab) {
        return call->fail(
            Status(StatusCode::kInvalidArgument,
                   "detokenize.ids[" + std::to_string(i) + "] = " + std::to_string(d.ids(i)) +
                       " is outside the vocabulary [0, " + std::to_string(vocab) + ")"));
      }
      ids.push_back(static_cast<uint32_t>(d.ids(i)));
    }
    auto text = model->model->tokenizer().decode(ids, d.skip_special_tokens());
    if (!text) return call->fail(text.status());
    v1::Response response;
    response.set_final(true);
    response.mutable_detokenize()->set_text(*text);
    response.mutable_timing()->set_total_ms(ms(seconds_since(call->received_at())));
    call->send(std::move(response));
  });
}

void Service::handle_admin(const v1::Request& request, std::shared_ptr<api::Call> call) {
  const api::PeerCredentials& peer = call->peer();
  const bool admin = peer.uid == 0 || peer.uid == ::geteuid() ||
                     (options_.admin_gid && peer.in_group(*options_.admin_gid));
  if (!admin) {
    log("admin " + std::string(api::request_kind_name(request)) + " refused: " + uid_text(peer) +
        " is not an admin");
    return call->fail(Status(
        StatusCode::kPermissionDenied,
        "load, unload and reload need root, the daemon's own user, or membership in the admin "
        "group '" +
            options_.config.server.admin_group + "' (server.admin_group); peer uid " +
            std::to_string(peer.uid) + " is none of these"));
  }
  admin_worker_->post([this, request, call] {
    const std::string who = uid_text(call->peer());
    Expected<std::string> done = Status::ok();
    if (request.has_load()) {
      done = admin_load(request.load());
      log("admin load " + request.load().name() + " by " + who + ": " +
          (done ? *done : done.status().to_string()));
    } else if (request.has_unload()) {
      done = admin_unload(request.unload().name());
      log("admin unload " + request.unload().name() + " by " + who + ": " +
          (done ? *done : done.status().to_string()));
    } else {
      log("admin reload by " + who + ": reloading " + options_.config.source_path);
      auto report = reload_config();
      log_reload(report);
      if (!report) {
        done = Status(
            StatusCode::kFailedPrecondition,
            "the config was not reloaded, the running one is kept: " + report.status().message());
      } else if (Status status = report->status(); !status.is_ok()) {
        done = status;  // applied, but a model failed: the caller must hear it as a failure
      } else {
        done = report->summary();
      }
    }
    if (!done) return call->fail(done.status());
    v1::Response response;
    response.set_final(true);
    response.mutable_admin()->set_message(*done);
    call->send(std::move(response));
  });
}

Expected<std::string> Service::admin_load(const v1::LoadRequest& load) {
  // Validated already: the name follows the name rule, a path is absolute, the residency is
  // empty, pinned or on_demand.
  ModelConfig config;
  bool configured = false;
  for (const ModelConfig& m : options_.config.models) {
    if (m.name == load.name()) {
      config = m;
      configured = true;
    }
  }
  ModelSource source = ModelSource::kConfig;
  if (!load.path().empty()) {
    config.name = load.name();
    config.path = load.path();
    source = ModelSource::kAdmin;
    if (!configured) config.residency = Residency::kOnDemand;
  } else if (!configured) {
    return Status(StatusCode::kNotFound,
                  "model '" + load.name() + "' is not in the config; give its absolute path");
  }
  // The caller's residency holds for this load; the config's definition stays as it is, so a
  // reload of an unchanged file leaves the model alone.
  Residency residency = config.residency;
  if (load.residency() == "pinned") residency = Residency::kPinned;
  if (load.residency() == "on_demand") residency = Residency::kOnDemand;
  // A failed admin load leaves nothing behind: the caller has the error.
  SPARKD_RETURN_IF_ERROR(load_model(config, source, residency, /*keep_failed_entry=*/false));
  return "loaded " + config.name + " from " + config.path + " (" +
         std::string(residency_name(residency)) + ")";
}

Expected<std::string> Service::admin_unload(const std::string& name) {
  std::shared_ptr<ModelEntry> entry = find(name);
  if (entry && entry->source == ModelSource::kConfig &&
      entry->config.residency == Residency::kPinned) {
    // A pinned model of the config stays resident: the config, not a request, removes it.
    return Status(StatusCode::kFailedPrecondition,
                  "model '" + name +
                      "' is pinned by the config (residency = \"pinned\"); remove it from the "
                      "config or make it on_demand, then reload");
  }
  // An on_demand model of the config stays listed (unloaded): its next request loads it.
  bool keep_listed = false;
  if (entry && entry->source == ModelSource::kConfig) {
    for (const ModelConfig& m : options_.config.models) keep_listed |= m.name == name;
  }
  SPARKD_RETURN_IF_ERROR(unload_model(name, keep_listed));
  return "unloaded " + name;
}

v1::Response Service::list_models() const {
  v1::Response response;
  response.set_final(true);
  auto* out = response.mutable_list_models();
  std::shared_lock lock(models_mutex_);
  for (const auto& [name, entry] : models_) {
    v1::ModelInfo* info = out->add_models();
    // The state first: the loading thread writes `error` and `model` before it publishes a
    // state other than loading, and not after.
    const ModelState state = entry->state;
    info->set_name(name);
    info->set_state(model_state_name(state));
    info->set_path(entry->config.path);
    if (state == ModelState::kFailed) info->set_error(entry->error);
    info->set_residency(std::string(residency_name(entry->residency)));
    info->set_source(model_source_name(entry->source));
    // The loading thread owns `model` until it publishes kReady.
    const std::string task = state == ModelState::kReady ? entry->task() : entry->planned_task;
    if (!task.empty()) info->set_task(task);
    if (state == ModelState::kReady && entry->model) {
      info->set_weights_bytes(entry->model->weights().size_bytes());
      info->set_device(entry->backend->name());
      info->set_kv_bytes(governor_.granted_granules(entry->consumer) * governor::kGranuleBytes);
      info->set_max_input_tokens(static_cast<uint32_t>(entry->model->max_input_tokens()));
      if (entry->model->spec().task == model::ModelTask::kEmbed) {
        info->set_dimensions(static_cast<uint32_t>(entry->model->spec().hidden_size));
      }
    }
  }
  return response;
}

void Service::snapshot(std::vector<ModelSnapshot>& models, SystemSnapshot& system) {
  const governor::LedgerSnapshot ledger = governor_.snapshot();
  const auto accounts = by_account(ledger);
  {
    std::shared_lock lock(models_mutex_);
    for (const auto& [name, entry] : models_) {
      if (entry->state != ModelState::kReady) continue;
      ModelSnapshot m;
      m.model = name;
      m.task = entry->task();
      m.weights_bytes = entry->model->weights().size_bytes();
      if (const auto it = accounts.find(entry->consumer); it != accounts.end()) {
        m.kv_granted_bytes = it->second->kv_granted_bytes;
        m.kv_used_bytes = it->second->kv_used_bytes;
        m.prefix_cached_bytes = it->second->prefix_cached_bytes;
        m.workspace_bytes = it->second->workspace_bytes;
        m.kv_min_bytes = it->second->kv_min_bytes;
        m.kv_max_bytes = it->second->kv_max_bytes;
      }
      entry->with_decoder([&](sched::DecoderRunner& runner) {
        const sched::RunnerStats s = runner.stats();
        m.queue_depth = s.waiting;
        m.running = s.running;
        m.preemptions_total = s.preemptions;
        m.prefix_cache_hit_blocks_total = s.prefix_hit_blocks;
        m.prefix_cache_queried_blocks_total = s.prefix_lookup_blocks;
        m.prompt_tokens_total = s.prompt_tokens;
        m.generated_tokens_total = s.generated_tokens;
        m.decode_bytes_per_second = entry->decode_bytes_per_second(s.steps);
        m.waiting_for_memory = s.waiting_for_memory;
        m.kv_rounding_waste_bytes = s.kv_rounding_waste_bytes;
        m.recurrent_state_bytes = s.recurrent_state_bytes;
      });
      entry->with_encoder([&](sched::EncoderRunner& runner) {
        const sched::EncoderRunnerStats s = runner.stats();
        m.queue_depth = s.waiting_requests;
        m.running = s.running_inputs;
        m.prompt_tokens_total = entry->encoder_prompt_tokens.load();
      });
      models.push_back(std::move(m));
    }
  }
  system.mem_available_bytes = ledger.mem_available_bytes;
  system.mem_total_bytes = ledger.mem_total_bytes;
  system.pressure = ledger.pressure;
  system.governor_budget_bytes = ledger.budget_bytes;
  system.process_resident_bytes = governor::process_resident_bytes();
  GovernorSnapshot& g = system.governor;
  g.ledger_bytes = ledger.reserved_bytes;
  g.held_bytes = ledger.held_bytes;
  g.free_bytes = ledger.free_bytes;
  g.baseline_bytes = ledger.baseline_bytes;
  g.os_reserve_bytes = ledger.os_reserve_bytes;
  g.load_reserved_bytes = ledger.load_reserved_bytes;
  g.reclaim_pending_bytes = ledger.reclaim_pending_bytes;
  g.under_pressure = ledger.under_pressure;
  g.grants_refused_total = ledger.counters.grants_refused;
  g.pressure_episodes_total = ledger.counters.pressure_episodes;
  g.reclaims_total = ledger.counters.reclaims;
  g.reclaimed_bytes_total = ledger.counters.reclaim_bytes;
  g.loads_total = ledger.counters.loads;
  if (server_stats_) {
    const api::ServerStats s = server_stats_();
    system.connections = s.connections;
    system.requests_in_flight = s.requests_in_flight;
    system.connections_closed_total = {{"max_connections", s.refused_connections_total},
                                       {"frame_too_large", s.oversized_frames_total},
                                       {"frame_timeout", s.frame_timeouts_total},
                                       {"idle", s.idle_closes_total},
                                       {"request_timeout", s.request_timeouts_total}};
  }
}

v1::Response Service::status() const {
  v1::Response response;
  response.set_final(true);
  auto* out = response.mutable_status();
  out->set_version(SPARKD_VERSION);
  out->set_uptime_s(seconds_since(started_at_));
  if (server_stats_) {
    const api::ServerStats s = server_stats_();
    out->set_connections(s.connections);
    out->set_requests_in_flight(s.requests_in_flight);
  }
  const governor::LedgerSnapshot ledger = governor_.snapshot();
  out->set_mem_available_bytes(ledger.mem_available_bytes);
  out->set_mem_total_bytes(ledger.mem_total_bytes);
  if (ledger.pressure) {
    out->set_memory_pressure_some_avg10(ledger.pressure->some.avg10);
    out->set_memory_pressure_full_avg10(ledger.pressure->full.avg10);
  }
  out->set_budget_bytes(ledger.budget_bytes);
  out->set_configured_budget_bytes(ledger.configured_budget_bytes);
  out->set_ledger_bytes(ledger.reserved_bytes);
  out->set_held_bytes(ledger.held_bytes);
  out->set_free_bytes(ledger.free_bytes);
  out->set_baseline_bytes(ledger.baseline_bytes);
  out->set_os_reserve_bytes(ledger.os_reserve_bytes);
  out->set_under_pressure(ledger.under_pressure);
  out->set_process_resident_bytes(governor::process_resident_bytes());
  for (const auto& [kind, total] : ledger.counters.reclaims)
    (*out->mutable_reclaims_total())[kind] = total;
  for (const auto& [reason, total] : ledger.counters.evictions) {
    (*out->mutable_evictions_total())[reason] = total;
  }
  for (const auto& [outcome, total] : ledger.counters.loads)
    (*out->mutable_loads_total())[outcome] = total;
  const auto accounts = by_account(ledger);
  std::shared_lock lock(models_mutex_);
  for (const auto& [name, entry] : models_) {
    v1::ModelStatus* m = out->add_models();
    const ModelState state = entry->state;
    m->set_name(name);
    m->set_state(model_state_name(state));
    m->set_requests_total(entry->requests_total.load());
    m->set_priority(entry->config.priority);
    m->set_residency(std::string(residency_name(entry->residency)));
    // The loading thread owns the backend until it publishes kReady.
    if (state == ModelState::kReady && entry->backend) m->set_device(entry->backend->name());
    if (state == ModelState::kReady || state == ModelState::kLoading) {
      if (const auto it = accounts.find(entry->consumer); it != accounts.end()) {
        const governor::AccountFigures& a = *it->second;
        m->set_weights_bytes(a.weights_bytes);
        m->set_workspace_bytes(a.workspace_bytes);
        m->set_kv_bytes_committed(a.kv_granted_bytes);
        m->set_kv_used_bytes(a.kv_used_bytes);
        m->set_prefix_cached_bytes(a.prefix_cached_bytes);
        m->set_kv_min_bytes(a.kv_min_bytes);
        m->set_kv_max_bytes(a.kv_max_bytes);
        m->set_load_reserved_bytes(a.load_reserved_bytes);
      }
    }
    entry->with_decoder([&](sched::DecoderRunner& runner) {
      const sched::RunnerStats s = runner.stats();
      m->set_running(static_cast<uint32_t>(s.running));
      m->set_waiting(static_cast<uint32_t>(s.waiting));
      m->set_kv_blocks_in_use(static_cast<uint64_t>(s.kv_blocks_in_use));
      m->set_kv_blocks_cached(static_cast<uint64_t>(s.kv_blocks_cached));
      m->set_preemptions_total(s.preemptions);
      m->set_prefix_cache_hit_blocks(s.prefix_hit_blocks);
      m->set_generated_tokens_total(s.generated_tokens);
      m->set_waiting_for_memory(static_cast<uint32_t>(s.waiting_for_memory));
      m->set_kv_rounding_waste_bytes(s.kv_rounding_waste_bytes);
    });
    entry->with_encoder([&](sched::EncoderRunner& runner) {
      const sched::EncoderRunnerStats s = runner.stats();
      m->set_running(static_cast<uint32_t>(s.running_inputs));
      m->set_waiting(static_cast<uint32_t>(s.waiting_inputs));
    });
  }
  return response;
}

}  // namespace sparkd::daemon
