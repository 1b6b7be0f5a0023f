#include "bench/sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <queue>

#include "engine/kv/kv_block_pool.h"
#include "engine/kv/prefix_cache.h"
#include "engine/sched/kv_reclaim.h"
#include "engine/sched/scheduler.h"
#include "governor/fixed_budget_arbiter.h"
#include "governor/memory_governor.h"

namespace sparkd::sim {

const char* policy_name(Policy policy) {
  switch (policy) {
    case Policy::kSparkd:
      return "sparkd";
    case Policy::kStatic:
      return "static";
    case Policy::kCountLru:
      return "count-lru";
    case Policy::kNoGovernor:
      return "no-governor";
  }
  return "?";
}

std::vector<Policy> all_policies() {
  return {Policy::kSparkd, Policy::kStatic, Policy::kCountLru, Policy::kNoGovernor};
}

namespace {

using governor::ConsumerId;
using governor::kGranuleBytes;
using governor::MemoryGovernor;
using governor::MemoryPressure;
using governor::SystemMemory;

constexpr double kNever = std::numeric_limits<double>::infinity();
// An encoder batch (embed, rerank) takes queued requests up to this many tokens.
constexpr int64_t kEncoderBatchTokens = 16384;

enum class EventKind { kArrival, kWake, kStepDone, kLoadDone, kUnload, kTick };

struct Event {
  double t = 0;
  uint64_t seq = 0;  // ties go in the order events were posted: the simulation is deterministic
  EventKind kind = EventKind::kTick;
  int64_t arg = 0;
  bool operator>(const Event& other) const { return t != other.t ? t > other.t : seq > other.seq; }
};

struct LiveRequest {
  const TraceRequest* spec = nullptr;
  uint64_t index = 0;
  double arrival = 0;
  double deadline = kNever;
  double first_token = -1;
  double last_token = -1;
  int32_t generated = 0;
  bool arrived = false;
  bool finished = false;
  bool oom = false;     // in flight while the machine was out of memory
  std::string failure;  // when finished: empty, or why it did not complete
};

enum class Residency { kUnloaded, kLoading, kLoaded, kFailed };

class Simulation;

// One model, as its runner sees it: residency, and while loaded the scheduler, prefix cache
// and KV pool (generators) or the batch queue (encoders).
struct SimModel final : governor::KvReclaimTarget {
  Simulation* sim = nullptr;
  int32_t index = 0;
  const TraceModel* config = nullptr;
  Residency residency = Residency::kUnloaded;
  bool queued_for_load = false;
  bool unload_pending = false;
  ConsumerId account = 0;  // the governor's account, or the pool's consumer id
  // Committed outside the KV pool while loading or loaded (for policies that commit their KV
  // up front, the whole KV too).
  uint64_t fixed_bytes = 0;
  int32_t max_blocks = 0;
  int32_t max_seqs = 0;
  std::unique_ptr<KvBlockPool> pool;
  std::unique_ptr<kv::PrefixCache> cache;
  std::unique_ptr<sched::Scheduler> scheduler;
  std::deque<LiveRequest*> waiting_load;            // arrived while not loaded
  std::deque<LiveRequest*> encoder_queue;           // embed/rerank requests not yet in a batch
  std::map<sched::RequestId, LiveRequest*> active;  // in the scheduler
  bool step_in_flight = false;
  sched::StepPlan plan;
  std::vector<LiveRequest*> batch;  // the encoder batch in flight
  bool blocked = false;             // nothing could run for want of KV memory
  bool busy_reported = false;
  std::optional<governor::ReclaimDemand> demand;
  double last_used = 0;
  uint64_t preemptions_before = 0;  // of schedulers already gone
  // Bumped at every unload: a step completion from before it is stale.
  int64_t epoch = 0;

  bool generator() const { return config->shape.kind == ModelKind::kGenerate; }
  bool idle() const {
    return waiting_load.empty() && encoder_queue.empty() && active.empty() && !step_in_flight;
  }

  // KvReclaimTarget: called synchronously by the governor from inside another model's grant
  // (or a refresh); the demand is applied by this model's next wake, between its steps.
  void reclaim(const governor::ReclaimDemand& d) override;
  void memory_available() override;
};

class SimMachine final : public governor::MachineMemorySource {
 public:
  SimMachine(std::function<SystemMemory()> read, std::function<uint64_t()> resident)
      : read_(std::move(read)), resident_(std::move(resident)) {}
  Expected<SystemMemory> memory() override { return read_(); }
  // The simulated host has no PSI: the governor works from MemAvailable alone.
  std::optional<MemoryPressure> pressure() override { return std::nullopt; }
  std::optional<uint64_t> process_resident() override { return resident_(); }

 private:
  std::function<SystemMemory()> read_;
  std::function<uint64_t()> resident_;
};

class Simulation final : public governor::ModelEvictor {
 public:
  Simulation(const Trace& trace, const CostModel& cost, Policy policy, const SimOptions& options)
      : trace_(trace),
        cost_(cost),
        machine_profile_(cost.machine()),
        policy_(policy),
        options_(options),
        machine_([this] { return machine_figures(); }, [this] { return committed(); }) {}

  SimResult run();

  void post(double t, EventKind kind, int64_t arg) {
    events_.push({.t = t, .seq = next_seq_++, .kind = kind, .arg = arg});
  }
  void post_wake(int32_t model) { post(now_, EventKind::kWake, model); }
  // A step completion's event argument: the model, and its epoch (stale after an unload).
  static int64_t step_arg(const SimModel& m) { return (m.epoch << 16) | m.index; }

  // ModelEvictor: the governor unloads an idle on_demand model (the daemon's evict worker:
  // the unload happens as the next event).
  bool evict(ConsumerId account, const std::string& reason, bool busy) override;

 private:
  // ---- memory ----
  uint64_t committed() const;
  uint64_t host_bytes_at(double t) const;
  SystemMemory machine_figures() const;
  void check_oom();

  // ---- residency ----
  void start();
  void enqueue_load(SimModel& m);
  void pump_loads();
  bool admit_load(SimModel& m);
  void load_done(SimModel& m);
  void unload(SimModel& m);
  Expected<int32_t> pool_capacity(const SimModel& m) const;
  KvBlockPoolGeometry geometry(const SimModel& m, int32_t max_blocks) const;
  governor::MemoryArbiter& arbiter_for(const SimModel& m);

  // ---- requests ----
  void arrive(LiveRequest& r);
  void admit(SimModel& m, LiveRequest& r);
  void finish(SimModel& m, LiveRequest& r, const std::string& failure);
  void fail_waiting(SimModel& m, const std::string& failure);
  void expire(SimModel& m);
  void update_busy(SimModel& m);
  void report_usage(SimModel& m);

  // ---- steps ----
  void wake(SimModel& m);
  void blocked_on_memory(SimModel& m);
  void step_done(SimModel& m);
  double run_on_device(double seconds);

  void tick();
  void check_invariants();
  bool work_left() const { return next_arrival_ < requests_.size() || live_ > 0; }
  SimResult results();

  const Trace& trace_;
  const CostModel& cost_;
  const MachineProfile& machine_profile_;
  Policy policy_;
  SimOptions options_;
  SimMachine machine_;
  std::unique_ptr<MemoryGovernor> governor_;
  std::unique_ptr<governor::FixedBudgetArbiter> shared_arbiter_;             // no-governor
  std::vector<std::unique_ptr<governor::FixedBudgetArbiter>> own_arbiters_;  // static, count-lru

  double now_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  uint64_t next_seq_ = 0;
  double device_free_at_ = 0;
  double device_busy_s_ = 0;
  std::vector<std::unique_ptr<SimModel>> models_;
  std::vector<LiveRequest> requests_;
  size_t next_arrival_ = 0;
  size_t live_ = 0;  // arrived, not finished
  std::deque<int32_t> load_queue_;
  int32_t loading_ = -1;  // the model whose file is being read

  bool in_oom_ = false;
  uint64_t oom_events_ = 0;
  uint64_t peak_committed_ = 0;
  uint64_t loads_ = 0;
  uint64_t evictions_ = 0;
  uint64_t events_run_ = 0;
  uint64_t invariant_checks_ = 0;
  std::vector<std::string> violations_;
  std::vector<double> itl_;
  std::vector<MemorySample> memory_;
  double next_sample_ = 0;
};

void SimModel::reclaim(const governor::ReclaimDemand& d) {
  if (!demand) {
    demand = d;
  } else {
    demand->prefix_cache_bytes += d.prefix_cache_bytes;
    demand->shrink_kv_to_bytes = std::min(demand->shrink_kv_to_bytes, d.shrink_kv_to_bytes);
  }
  sim->post_wake(index);
}

void SimModel::memory_available() {
  if (blocked) sim->post_wake(index);
}

// ---------------------------------------------------------------------------------------
// Memory

uint64_t Simulation::committed() const {
  const bool kv_up_front = policy_ == Policy::kStatic || policy_ == Policy::kCountLru;
  uint64_t total = 0;
  for (const auto& m : models_) {
    if (m->residency != Residency::kLoading && m->residency != Residency::kLoaded) continue;
    total += m->fixed_bytes;
    if (!kv_up_front && m->pool) total += m->pool->committed_bytes();
  }
  return total;
}

uint64_t Simulation::host_bytes_at(double t) const {
  double bytes = double(machine_profile_.os_bytes);
  for (const HostBurst& b : trace_.host) {
    const double ramp = std::max(b.ramp_s, 1e-9);
    const double up = (t - b.at_s) / ramp;
    const double down = (b.at_s + ramp + b.hold_s + ramp - t) / ramp;
    bytes += double(b.bytes) * std::clamp(std::min(up, down), 0.0, 1.0);
  }
  return static_cast<uint64_t>(bytes);
}

SystemMemory Simulation::machine_figures() const {
  const uint64_t used = host_bytes_at(now_) + committed();
  SystemMemory figures;
  figures.total_bytes = machine_profile_.memory_bytes;
  figures.available_bytes =
      used >= machine_profile_.memory_bytes ? 0 : machine_profile_.memory_bytes - used;
  return figures;
}

void Simulation::check_oom() {
  const uint64_t ours = committed();
  peak_committed_ = std::max(peak_committed_, ours);
  const bool over = ours + host_bytes_at(now_) > machine_profile_.memory_bytes;
  if (over && !in_oom_) {
    // Everything in flight now fails (arrivals while it lasts are marked as they come).
    ++oom_events_;
    for (LiveRequest& r : requests_) {
      if (r.arrived && !r.finished) r.oom = true;
    }
  }
  in_oom_ = over;
}

// ---------------------------------------------------------------------------------------
// Residency

KvBlockPoolGeometry Simulation::geometry(const SimModel& m, int32_t max_blocks) const {
  const ModelShape& s = m.config->shape;
  return {.num_layers = s.layers,
          .kv_heads = s.kv_heads,
          .head_dim = s.head_dim,
          .block_tokens = options_.block_tokens,
          .max_blocks = max_blocks,
          .dtype = s.kv_bytes_per_element == 4 ? DType::kF32 : DType::kBF16};
}

// How many KV blocks the model's pool holds under this policy; an error when its weights do
// not even fit (static partitioning: the process cannot start).
Expected<int32_t> Simulation::pool_capacity(const SimModel& m) const {
  const TraceModel& c = *m.config;
  const uint64_t resident = c.shape.weight_bytes() + c.shape.workspace_bytes;
  switch (policy_) {
    case Policy::kSparkd:
    case Policy::kNoGovernor:
      return KvBlockPool::max_blocks_within(geometry(m, 0), c.kv_max_bytes);
    case Policy::kStatic: {
      const auto share =
          static_cast<uint64_t>(c.static_fraction * double(machine_profile_.memory_bytes));
      if (share <= resident) {
        return Status(StatusCode::kResourceExhausted,
                      c.name + ": its share of memory does not hold its weights");
      }
      const int32_t blocks = KvBlockPool::max_blocks_within(geometry(m, 0), share - resident);
      if (blocks <= 0) {
        return Status(StatusCode::kResourceExhausted, c.name + ": no memory left for its KV");
      }
      return blocks;
    }
    case Policy::kCountLru: {
      const int64_t tokens =
          int64_t{trace_.baselines.lru_parallel} * int64_t{trace_.baselines.lru_context};
      return static_cast<int32_t>((tokens + options_.block_tokens - 1) / options_.block_tokens);
    }
  }
  return 0;
}

governor::MemoryArbiter& Simulation::arbiter_for(const SimModel& m) {
  switch (policy_) {
    case Policy::kSparkd:
      return *governor_;
    case Policy::kNoGovernor:
      return *shared_arbiter_;
    case Policy::kStatic:
    case Policy::kCountLru:
      break;
  }
  return *own_arbiters_.at(static_cast<size_t>(m.index));
}

void Simulation::start() {
  for (size_t i = 0; i < trace_.models.size(); ++i) {
    auto m = std::make_unique<SimModel>();
    m->sim = this;
    m->index = static_cast<int32_t>(i);
    m->config = &trace_.models[i];
    m->account = static_cast<ConsumerId>(i + 1);
    m->max_seqs =
        policy_ == Policy::kCountLru ? trace_.baselines.lru_parallel : m->config->max_seqs;
    models_.push_back(std::move(m));
    // Every policy but sparkd's bounds a model's KV by its own arbiter or pool; the pool's
    // capacity is the real bound, so the arbiter never refuses below it.
    own_arbiters_.push_back(
        std::make_unique<governor::FixedBudgetArbiter>(std::numeric_limits<uint64_t>::max()));
  }
  if (policy_ == Policy::kSparkd) {
    governor::GovernorOptions options;
    options.os_reserve_bytes = options_.os_reserve_bytes;
    governor_ = std::make_unique<MemoryGovernor>(options, machine_, [this] {
      return governor::TimePoint{} + std::chrono::duration_cast<governor::TimePoint::duration>(
                                         std::chrono::duration<double>(now_));
    });
    governor_->set_evictor(this);
    if (options_.governor_log) {
      governor_->set_log([this](const std::string& line) { options_.governor_log(now_, line); });
    }
  }
  if (policy_ == Policy::kNoGovernor) {
    shared_arbiter_ = std::make_unique<governor::FixedBudgetArbiter>(
        trace_.baselines.fixed_kv_bytes / kGranuleBytes);
  }
  // Pinned models load at the start (every model, for the policies that pin them all);
  // on_demand and count-lru ones on first use.
  for (auto& m : models_) {
    const bool at_start = policy_ == Policy::kStatic || policy_ == Policy::kNoGovernor ||
                          (policy_ == Policy::kSparkd && m->config->pinned);
    if (at_start) enqueue_load(*m);
  }
  pump_loads();
}

void Simulation::enqueue_load(SimModel& m) {
  if (m.queued_for_load || m.residency != Residency::kUnloaded) return;
  m.queued_for_load = true;
  load_queue_.push_back(m.index);
}

// Starts the next load when the disk is free and the policy admits it (loads are serialized,
// as the daemon's are).
void Simulation::pump_loads() {
  while (loading_ < 0 && !load_queue_.empty()) {
    SimModel& m = *models_[static_cast<size_t>(load_queue_.front())];
    if (m.residency == Residency::kFailed) {
      m.queued_for_load = false;
      load_queue_.pop_front();
      continue;
    }
    if (!admit_load(m)) return;  // retried at the next tick or release
    load_queue_.pop_front();
    m.queued_for_load = false;
    if (m.residency == Residency::kFailed) continue;
    m.residency = Residency::kLoading;
    loading_ = m.index;
    post(now_ + cost_.load_seconds(m.config->shape), EventKind::kLoadDone, m.index);
    check_oom();
  }
}

// The policy's say on a load: true to start it now (fixed_bytes set), false to wait; a model
// that can never load is marked kFailed and its requests fail.
bool Simulation::admit_load(SimModel& m) {
  const TraceModel& c = *m.config;
  const uint64_t resident = c.shape.weight_bytes() + c.shape.workspace_bytes;
  const Expected<int32_t> capacity = c.shape.kind == ModelKind::kGenerate ? pool_capacity(m) : 0;
  if (!capacity) {
    m.residency = Residency::kFailed;
    fail_waiting(m, "not_started");
    return true;
  }
  m.max_blocks = *capacity;
  switch (policy_) {
    case Policy::kSparkd: {
      governor::ModelAccountOptions account;
      account.name = c.name;
      account.priority = c.priority;
      account.pinned = c.pinned;
      account.kv_min_bytes = c.kv_min_bytes;
      account.kv_max_bytes =
          m.generator() ? KvBlockPool::committed_bytes_at_capacity(geometry(m, m.max_blocks)) : 0;
      if (c.keep_alive_s) {
        account.keep_alive =
            std::chrono::milliseconds(static_cast<int64_t>(*c.keep_alive_s * 1000));
      }
      const auto decision = governor_->try_begin_load(
          account,
          {.weights_bytes = c.shape.weight_bytes(), .workspace_bytes = c.shape.workspace_bytes});
      if (decision.admission == MemoryGovernor::Admission::kWait) return false;
      if (decision.admission == MemoryGovernor::Admission::kNeverFits) {
        m.residency = Residency::kFailed;
        fail_waiting(m, "never_fits");
        return true;
      }
      m.account = decision.account;
      m.fixed_bytes = resident;
      return true;
    }
    case Policy::kStatic:
      m.fixed_bytes =
          static_cast<uint64_t>(c.static_fraction * double(machine_profile_.memory_bytes));
      return true;
    case Policy::kNoGovernor:
      m.fixed_bytes = resident;
      return true;
    case Policy::kCountLru: {
      int32_t resident_models = 0;
      SimModel* victim = nullptr;
      for (auto& other : models_) {
        if (other->residency != Residency::kLoaded && other->residency != Residency::kLoading) {
          continue;
        }
        ++resident_models;
        if (other->residency == Residency::kLoaded && other->idle() &&
            (victim == nullptr || other->last_used < victim->last_used)) {
          victim = other.get();
        }
      }
      if (resident_models >= trace_.baselines.lru_max_loaded) {
        if (victim == nullptr) return false;  // every loaded model is busy: wait
        unload(*victim);
      }
      // The whole KV of parallel x context tokens is allocated with the model.
      m.fixed_bytes =
          resident +
          (m.generator() ? KvBlockPool::committed_bytes_at_capacity(geometry(m, m.max_blocks)) : 0);
      return true;
    }
  }
  return false;
}

void Simulation::load_done(SimModel& m) {
  loading_ = -1;
  ++loads_;
  m.residency = Residency::kLoaded;
  m.last_used = now_;
  const double seconds = cost_.load_seconds(m.config->shape);
  if (policy_ == Policy::kSparkd) {
    governor_->finish_load(m.account, m.config->shape.weight_bytes(),
                           m.config->shape.workspace_bytes, seconds);
  }
  if (m.generator()) {
    auto pool = KvBlockPool::create(geometry(m, m.max_blocks), arbiter_for(m), m.account,
                                    KvGroupRelease::kOnFree, KvBacking::kLedgerOnly);
    if (!pool) {
      violations_.push_back(m.config->name + ": " + pool.status().to_string());
      m.residency = Residency::kFailed;
      fail_waiting(m, "not_started");
      return;
    }
    m.pool = std::make_unique<KvBlockPool>(std::move(pool).value());
    m.cache = std::make_unique<kv::PrefixCache>(*m.pool, options_.block_tokens);
    m.scheduler = std::make_unique<sched::Scheduler>(
        sched::SchedulerConfig{.max_batch_tokens = m.config->max_batch_tokens,
                               .max_seqs = m.max_seqs},
        *m.cache);
    if (policy_ == Policy::kSparkd) governor_->set_reclaim_target(m.account, &m);
  }
  std::deque<LiveRequest*> waiting;
  waiting.swap(m.waiting_load);
  for (LiveRequest* r : waiting) admit(m, *r);
  update_busy(m);
  post_wake(m.index);
  pump_loads();
}

void Simulation::unload(SimModel& m) {
  // A model evicted busy (host pressure): what it runs ends, as the daemon's runner answers
  // UNAVAILABLE; a step in flight is dropped (its completion is ignored).
  std::vector<LiveRequest*> running = m.batch;
  running.insert(running.end(), m.encoder_queue.begin(), m.encoder_queue.end());
  for (auto& [id, r] : m.active) running.push_back(r);
  m.batch.clear();
  m.encoder_queue.clear();
  for (LiveRequest* r : running) finish(m, *r, "evicted");
  m.step_in_flight = false;
  ++m.epoch;
  if (m.scheduler) m.preemptions_before += m.scheduler->stats().preemptions;
  if (policy_ == Policy::kSparkd && m.generator()) {
    governor_->stop_waiting(m.account);
    governor_->set_reclaim_target(m.account, nullptr);
  }
  // Sequences first, then the cache, then the pool: every granule goes back.
  m.scheduler.reset();
  m.cache.reset();
  m.pool.reset();
  if (policy_ == Policy::kSparkd) governor_->close_account(m.account);
  m.residency = Residency::kUnloaded;
  m.unload_pending = false;
  m.busy_reported = false;
  m.demand.reset();
  m.blocked = false;
  ++evictions_;
  if (!m.waiting_load.empty()) enqueue_load(m);
}

bool Simulation::evict(ConsumerId account, const std::string& /*reason*/, bool busy) {
  for (auto& m : models_) {
    if (m->account != account || m->residency != Residency::kLoaded) continue;
    if (m->unload_pending) return true;
    if (!m->idle() && !busy) return false;
    m->unload_pending = true;
    post(now_, EventKind::kUnload, m->index);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// Requests

void Simulation::arrive(LiveRequest& r) {
  r.arrived = true;
  ++live_;
  if (in_oom_) r.oom = true;
  SimModel& m = *models_[static_cast<size_t>(r.spec->model)];
  m.last_used = now_;
  if (m.residency == Residency::kFailed) {
    finish(m, r, "not_started");
    return;
  }
  if (policy_ == Policy::kCountLru && m.generator() &&
      r.spec->prompt_tokens() + r.spec->output_tokens > trace_.baselines.lru_context) {
    finish(m, r, "context");  // llama.cpp refuses it; Ollama would truncate the prompt
    return;
  }
  if (m.residency == Residency::kLoaded && !m.unload_pending) {
    admit(m, r);
    update_busy(m);
    post_wake(m.index);
    return;
  }
  m.waiting_load.push_back(&r);
  enqueue_load(m);
  pump_loads();
}

void Simulation::admit(SimModel& m, LiveRequest& r) {
  if (!m.generator()) {
    m.encoder_queue.push_back(&r);
    return;
  }
  const auto id = static_cast<sched::RequestId>(r.index + 1);
  m.scheduler->add(id, prompt_token_ids(*r.spec, r.index), r.spec->priority);
  m.active.emplace(id, &r);
}

void Simulation::finish(SimModel& m, LiveRequest& r, const std::string& failure) {
  if (r.finished) return;
  r.finished = true;
  --live_;
  m.last_used = now_;
  const auto id = static_cast<sched::RequestId>(r.index + 1);
  if (m.active.erase(id) > 0) m.scheduler->finish(id);
  r.failure = failure;
  update_busy(m);
}

void Simulation::fail_waiting(SimModel& m, const std::string& failure) {
  std::deque<LiveRequest*> waiting;
  waiting.swap(m.waiting_load);
  for (LiveRequest* r : waiting) finish(m, *r, failure);
}

// Requests past their deadline leave; the scheduler's only between steps (as in the runner).
void Simulation::expire(SimModel& m) {
  std::vector<LiveRequest*> late;
  for (auto& [id, r] : m.active) {
    if (!m.step_in_flight && now_ >= r->deadline) late.push_back(r);
  }
  for (LiveRequest* r : m.encoder_queue) {
    if (now_ >= r->deadline) late.push_back(r);
  }
  std::erase_if(m.encoder_queue, [&](LiveRequest* r) { return now_ >= r->deadline; });
  for (LiveRequest* r : m.waiting_load) {
    if (now_ >= r->deadline) late.push_back(r);
  }
  std::erase_if(m.waiting_load, [&](LiveRequest* r) { return now_ >= r->deadline; });
  for (LiveRequest* r : late) finish(m, *r, "deadline");
}

void Simulation::update_busy(SimModel& m) {
  if (policy_ != Policy::kSparkd || m.residency != Residency::kLoaded) return;
  const bool busy = !m.idle();
  if (busy == m.busy_reported) return;
  m.busy_reported = busy;
  governor_->set_busy(m.account, busy);
}

void Simulation::report_usage(SimModel& m) {
  if (policy_ != Policy::kSparkd || !m.pool) return;
  governor_->report_kv_usage(m.account, m.cache->referenced_blocks() * m.pool->block_bytes(),
                             m.cache->cached_unreferenced_blocks() * m.pool->block_bytes());
}

// ---------------------------------------------------------------------------------------
// Steps

// Steps run one at a time on the one device, in the order they are planned.
double Simulation::run_on_device(double seconds) {
  device_busy_s_ += seconds;
  const double start = std::max(now_, device_free_at_);
  device_free_at_ = start + seconds;
  return device_free_at_;
}

// The runner's loop body: apply the governor's demand, drop expired requests, plan a step.
void Simulation::wake(SimModel& m) {
  if (m.residency != Residency::kLoaded || m.step_in_flight || m.unload_pending) return;
  if (m.demand && m.pool) {
    sched::apply_reclaim_demand(*m.demand, *m.pool, *m.cache, *m.scheduler);
    m.demand.reset();
    report_usage(m);
    governor_->reclaim_applied(m.account);
  }
  expire(m);
  if (!m.generator()) {
    if (m.encoder_queue.empty()) return;
    int64_t tokens = 0;
    int64_t texts = 0;
    while (!m.encoder_queue.empty()) {
      LiveRequest* r = m.encoder_queue.front();
      const int64_t n = r->spec->prompt_tokens();
      if (!m.batch.empty() && tokens + n > kEncoderBatchTokens) break;
      m.batch.push_back(r);
      m.encoder_queue.pop_front();
      tokens += n;
      texts += r->spec->output_tokens;
    }
    m.step_in_flight = true;
    post(run_on_device(cost_.encoder_batch(m.config->shape, tokens, texts).seconds),
         EventKind::kStepDone, step_arg(m));
    return;
  }
  m.plan = m.scheduler->schedule();
  if (m.plan.empty()) {
    if (m.scheduler->running() == 0 && m.scheduler->waiting() > 0) blocked_on_memory(m);
    if (policy_ == Policy::kSparkd && m.scheduler->waiting() == 0) {
      governor_->stop_waiting(m.account);
    }
    report_usage(m);
    return;
  }
  m.blocked = false;
  if (policy_ == Policy::kSparkd && m.scheduler->waiting() == 0) governor_->stop_waiting(m.account);
  report_usage(m);
  std::vector<ChunkShape> chunks;
  chunks.reserve(m.plan.chunks.size());
  for (const sched::ScheduledChunk& c : m.plan.chunks) chunks.push_back({c.begin, c.count});
  m.step_in_flight = true;
  post(run_on_device(cost_.decoder_step(m.config->shape, chunks).seconds), EventKind::kStepDone,
       step_arg(m));
}

// Nothing runs and nothing could be admitted (the runner's blocked_on_memory): a head request
// that could never get its KV fails, the rest wait for memory.
void Simulation::blocked_on_memory(SimModel& m) {
  const sched::RequestId head = m.scheduler->next_waiting();
  const sched::SequenceState* seq = m.scheduler->find(head);
  const int64_t tokens = static_cast<int64_t>(seq->tokens.size());
  const int64_t blocks = (tokens + options_.block_tokens - 1) / options_.block_tokens;
  const uint64_t granules =
      blocks > m.max_blocks
          ? std::numeric_limits<uint64_t>::max()
          : KvBlockPool::committed_bytes_at_capacity(geometry(m, static_cast<int32_t>(blocks))) /
                kGranuleBytes;
  if (granules > arbiter_for(m).max_grantable_granules(m.account)) {
    finish(m, *m.active.at(head), "never_fits");
    post_wake(m.index);
    return;
  }
  m.blocked = true;
}

void Simulation::step_done(SimModel& m) {
  m.step_in_flight = false;
  if (!m.generator()) {
    for (LiveRequest* r : m.batch) {
      r->first_token = now_;
      r->last_token = now_;
      r->generated = 1;
      finish(m, *r, "");
    }
    m.batch.clear();
    wake(m);
    return;
  }
  std::vector<int32_t> sampled;
  std::vector<LiveRequest*> sampling;
  for (const sched::ScheduledChunk& c : m.plan.chunks) {
    if (!c.samples) continue;
    LiveRequest* r = m.active.at(c.id);
    // Any token but EOS will do: the trace says how many the request generates.
    sampled.push_back(200000 +
                      static_cast<int32_t>((r->index * 7919 + uint64_t(c.begin)) % 100000));
    sampling.push_back(r);
  }
  m.scheduler->complete(m.plan, sampled);
  m.plan = {};
  for (LiveRequest* r : sampling) {
    if (r->generated == 0) {
      r->first_token = now_;
    } else {
      itl_.push_back(now_ - r->last_token);
    }
    r->last_token = now_;
    ++r->generated;
    if (r->generated >= r->spec->output_tokens) finish(m, *r, "");
  }
  report_usage(m);
  wake(m);
}

// The daemon's 250 ms housekeeping: the governor re-reads the machine (and sheds under
// pressure, evicts past keep_alive), waiting loads and runners blocked on memory try again.
void Simulation::tick() {
  if (governor_) governor_->refresh();
  pump_loads();
  for (auto& m : models_) {
    expire(*m);
    if (m->blocked) post_wake(m->index);
  }
  while (now_ >= next_sample_) {
    memory_.push_back(
        {.t_s = now_, .committed_bytes = committed(), .host_bytes = host_bytes_at(now_)});
    next_sample_ += options_.timeline_step_s;
  }
  // Requests still live long after the trace ends (none should: all have deadlines) end
  // the run as "unfinished" rather than keep it going for ever.
  const double horizon = trace_.duration_s * 2 + 3600;
  if ((work_left() || now_ < trace_.duration_s) && now_ < horizon) {
    post(now_ + options_.tick_s, EventKind::kTick, 0);
  }
}

void Simulation::check_invariants() {
  ++invariant_checks_;
  std::vector<std::string> broken;
  if (governor_) broken = governor_->check_invariants();
  for (const auto& m : models_) {
    if (!m->pool) continue;
    const uint64_t granted = arbiter_for(*m).granted_granules(m->account) * kGranuleBytes;
    if (granted != m->pool->committed_bytes()) {
      broken.push_back(m->config->name + ": the pool commits " +
                       std::to_string(m->pool->committed_bytes()) + " bytes, the arbiter granted " +
                       std::to_string(granted));
    }
    if (m->cache->referenced_blocks() + m->cache->cached_unreferenced_blocks() !=
        static_cast<size_t>(m->pool->blocks_in_use())) {
      broken.push_back(m->config->name + ": the cache and the pool disagree on blocks in use");
    }
  }
  for (std::string& b : broken) {
    if (violations_.size() < 20) violations_.push_back("t=" + std::to_string(now_) + "s: " + b);
  }
}

SimResult Simulation::run() {
  requests_.reserve(trace_.requests.size());
  for (size_t i = 0; i < trace_.requests.size(); ++i) {
    const TraceRequest& spec = trace_.requests[i];
    LiveRequest r;
    r.spec = &spec;
    r.index = i;
    r.arrival = spec.arrival_s;
    if (spec.deadline_s > 0) r.deadline = spec.arrival_s + spec.deadline_s;
    requests_.push_back(r);
  }
  start();
  if (!requests_.empty()) post(requests_.front().arrival, EventKind::kArrival, 0);
  post(0, EventKind::kTick, 0);
  while (!events_.empty()) {
    const Event e = events_.top();
    events_.pop();
    now_ = e.t;
    ++events_run_;
    switch (e.kind) {
      case EventKind::kArrival: {
        LiveRequest& r = requests_[next_arrival_++];
        if (next_arrival_ < requests_.size()) {
          post(requests_[next_arrival_].arrival, EventKind::kArrival, 0);
        }
        arrive(r);
        break;
      }
      case EventKind::kWake:
        wake(*models_[static_cast<size_t>(e.arg)]);
        break;
      case EventKind::kStepDone: {
        SimModel& m = *models_[static_cast<size_t>(e.arg & 0xffff)];
        if ((e.arg >> 16) == m.epoch) step_done(m);
        break;
      }
      case EventKind::kLoadDone:
        load_done(*models_[static_cast<size_t>(e.arg)]);
        break;
      case EventKind::kUnload: {
        SimModel& m = *models_[static_cast<size_t>(e.arg)];
        if (m.unload_pending) {
          unload(m);
          pump_loads();
        }
        break;
      }
      case EventKind::kTick:
        tick();
        break;
    }
    check_oom();
    if (options_.check_invariants) check_invariants();
  }
  for (auto& m : models_) {
    std::vector<LiveRequest*> left = {m->waiting_load.begin(), m->waiting_load.end()};
    left.insert(left.end(), m->encoder_queue.begin(), m->encoder_queue.end());
    for (auto& [id, r] : m->active) left.push_back(r);
    m->waiting_load.clear();
    m->encoder_queue.clear();
    for (LiveRequest* r : left) finish(*m, *r, "unfinished");
  }
  // What is still loaded goes, so every ledger closes (and a leak would abort here).
  for (auto& m : models_) {
    if (m->residency == Residency::kLoaded) {
      unload(*m);
      --evictions_;  // the end of the run is not an eviction
    }
  }
  return results();
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = p * double(values.size() - 1);
  const auto low = static_cast<size_t>(std::floor(rank));
  const size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (values[high] - values[low]) * (rank - double(low));
}

SimResult Simulation::results() {
  SimResult out;
  out.trace = trace_.name;
  out.policy = policy_name(policy_);
  out.requests = requests_.size();
  std::vector<double> ttft;
  double last_finish = trace_.duration_s;
  uint64_t tokens = 0;
  for (const LiveRequest& r : requests_) {
    RequestOutcome o;
    o.output_tokens = r.generated;
    o.failure = r.oom ? "oom" : r.failure;
    o.completed = o.failure.empty();
    if (r.first_token >= 0) o.ttft_s = r.first_token - r.arrival;
    if (r.generated > 1) o.tpot_s = (r.last_token - r.first_token) / double(r.generated - 1);
    if (o.completed) {
      ++out.completed;
      ttft.push_back(o.ttft_s);
      tokens += static_cast<uint64_t>(r.generated);
      last_finish = std::max(last_finish, r.last_token);
      o.met_slo = o.ttft_s <= r.spec->ttft_slo_s &&
                  (r.spec->tpot_slo_s <= 0 || o.tpot_s <= r.spec->tpot_slo_s);
      if (o.met_slo) ++out.met_slo;
    } else {
      ++out.failures[o.failure];
    }
    out.outcomes.push_back(std::move(o));
  }
  out.makespan_s = last_finish;
  out.goodput_rps = double(out.met_slo) / trace_.duration_s;
  out.slo_attainment = out.requests == 0 ? 0 : double(out.met_slo) / double(out.requests);
  out.ttft_p50_s = percentile(ttft, 0.5);
  out.ttft_p99_s = percentile(ttft, 0.99);
  out.itl_p50_s = percentile(itl_, 0.5);
  out.itl_p99_s = percentile(itl_, 0.99);
  out.throughput_tok_s = double(tokens) / last_finish;
  // Steps of requests that failed still ran: the device's time counts until its last step.
  out.device_utilization = device_busy_s_ / std::max(last_finish, device_free_at_);
  out.loads = loads_;
  out.evictions = evictions_;
  for (const auto& m : models_) out.preemptions += m->preemptions_before;
  out.peak_committed_bytes = peak_committed_;
  out.oom_events = oom_events_;
  out.events = events_run_;
  out.invariant_checks = invariant_checks_;
  out.invariant_violations = violations_;
  out.memory = std::move(memory_);
  return out;
}

}  // namespace

SimResult simulate(const Trace& trace, const CostModel& cost, Policy policy,
                   const SimOptions& options) {
  Simulation simulation(trace, cost, policy, options);
  return simulation.run();
}

}  // namespace sparkd::sim
