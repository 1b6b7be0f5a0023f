#include "governor/memory_governor.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>

namespace sparkd::governor {

namespace {

std::string mib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

uint64_t saturating_sub(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}

[[noreturn]] void ledger_bug(const std::string& what) {
  std::fprintf(stderr, "sparkd: memory governor: %s\n", what.c_str());
  std::abort();
}

}  // namespace

std::optional<uint64_t> ProcMemorySource::process_resident() {
  if (meminfo_path_ != "/proc/meminfo") return std::nullopt;
  const uint64_t resident = process_resident_bytes();
  if (resident == 0) return std::nullopt;
  return resident;
}

std::optional<MemoryPressure> ProcMemorySource::pressure() {
  auto pressure = read_memory_pressure(pressure_path_);
  if (!pressure) return std::nullopt;
  return *pressure;
}

struct MemoryGovernor::Account {
  ModelAccountOptions options;
  bool loading = true;
  bool busy = false;
  uint64_t load_reserved_bytes = 0;
  uint64_t weights_bytes = 0;
  uint64_t workspace_bytes = 0;
  uint64_t kv_granted_granules = 0;
  uint64_t kv_used_bytes = 0;
  uint64_t prefix_cached_bytes = 0;
  double load_seconds = 0;
  TimePoint last_used{};
  KvReclaimTarget* target = nullptr;

  uint64_t kv_granted_bytes() const { return kv_granted_granules * kGranuleBytes; }
  uint64_t held() const {
    return loading ? 0 : weights_bytes + workspace_bytes + kv_granted_bytes();
  }
  uint64_t reserved() const {
    if (loading) return load_reserved_bytes;
    return weights_bytes + workspace_bytes + std::max(kv_granted_bytes(), options.kv_min_bytes);
  }
};

MemoryGovernor::MemoryGovernor(GovernorOptions options, MachineMemorySource& machine, Clock clock)
    : options_(options), machine_(machine), clock_(std::move(clock)) {
  Deferred ignored;
  std::lock_guard<std::mutex> lock(mutex_);
  read_machine_locked(ignored);
}

MemoryGovernor::~MemoryGovernor() = default;

void MemoryGovernor::set_evictor(ModelEvictor* evictor) {
  std::lock_guard<std::mutex> lock(mutex_);
  evictor_ = evictor;
}

void MemoryGovernor::set_log(std::function<void(const std::string&)> log) {
  std::lock_guard<std::mutex> lock(mutex_);
  log_ = std::move(log);
}

MemoryGovernor::Account* MemoryGovernor::find(ConsumerId id) {
  const auto it = accounts_.find(id);
  return it == accounts_.end() ? nullptr : it->second.get();
}

const MemoryGovernor::Account* MemoryGovernor::find(ConsumerId id) const {
  const auto it = accounts_.find(id);
  return it == accounts_.end() ? nullptr : it->second.get();
}

MemoryGovernor::Account& MemoryGovernor::account(ConsumerId id) {
  Account* a = find(id);
  if (a == nullptr) ledger_bug("unknown account " + std::to_string(id));
  return *a;
}

uint64_t MemoryGovernor::held_locked() const {
  uint64_t total = options_.baseline_bytes;
  for (const auto& [id, a] : accounts_) total += a->held();
  return total;
}

uint64_t MemoryGovernor::reserved_locked() const {
  uint64_t total = options_.baseline_bytes;
  for (const auto& [id, a] : accounts_) total += a->reserved();
  return total;
}

uint64_t MemoryGovernor::budget_locked() const {
  if (options_.budget_bytes == 0) return machine_budget_;
  return std::min(options_.budget_bytes, machine_budget_);
}

uint64_t MemoryGovernor::ceiling_locked() const {
  // What the machine could give if every other program left: MemTotal - os_reserve. Host
  // pressure is transient; "can never fit" is decided against this, not the budget now.
  const uint64_t machine =
      mem_total_ > 0 ? saturating_sub(mem_total_, options_.os_reserve_bytes) : machine_budget_;
  if (options_.budget_bytes == 0) return machine;
  return std::min(options_.budget_bytes, machine);
}

uint64_t MemoryGovernor::free_locked() const {
  return saturating_sub(budget_locked(), reserved_locked());
}

uint64_t MemoryGovernor::pending_demands_locked() const {
  uint64_t total = 0;
  for (const auto& [id, d] : demands_) total += d.bytes;
  return total;
}

uint64_t MemoryGovernor::free_for_locked(ConsumerId consumer, int32_t priority) const {
  const auto own = waiters_.find(consumer);
  uint64_t owed = 0;
  for (const auto& [id, w] : waiters_) {
    if (id == consumer) continue;
    const bool ahead =
        w.priority < priority ||
        (w.priority == priority && (own == waiters_.end() || w.since < own->second.since));
    if (ahead) owed += w.bytes;
  }
  return saturating_sub(free_locked(), owed);
}

uint64_t MemoryGovernor::unmovable_locked(std::optional<ConsumerId> except) const {
  uint64_t total = options_.baseline_bytes;
  for (const auto& [id, a] : accounts_) {
    if (except && id == *except) continue;
    if (a->loading) {
      total += a->load_reserved_bytes;  // another load in flight (loads are serialized)
    } else if (a->options.pinned) {
      total += a->weights_bytes + a->workspace_bytes + a->options.kv_min_bytes;
    }
  }
  return total;
}

std::vector<AccountView> MemoryGovernor::views_locked() const {
  std::vector<AccountView> views;
  for (const auto& [id, a] : accounts_) {
    AccountView v;
    v.id = id;
    v.name = a->options.name;
    v.priority = a->options.priority;
    v.pinned = a->options.pinned;
    v.loading = a->loading;
    // A victim already asked to give back memory is not asked again for the same bytes.
    v.busy = a->busy || demands_.count(id) != 0;
    v.weights_bytes = a->weights_bytes;
    v.workspace_bytes = a->workspace_bytes;
    v.kv_granted_bytes = a->kv_granted_bytes();
    v.kv_min_bytes = a->options.kv_min_bytes;
    v.prefix_cached_bytes = std::min(a->prefix_cached_bytes, a->kv_granted_bytes());
    v.last_used = a->last_used;
    v.reload_seconds = a->load_seconds;
    if (const auto d = demands_.find(id); d != demands_.end()) {
      // What it was asked for is already on its way: plan only beyond it.
      const uint64_t asked = d->second.bytes;
      const uint64_t from_cache = std::min(asked, v.prefix_cached_bytes);
      v.prefix_cached_bytes -= from_cache;
      v.kv_granted_bytes -= std::min(v.kv_granted_bytes, asked);
    }
    views.push_back(std::move(v));
  }
  return views;
}

void MemoryGovernor::reclaim_locked(const Requester& requester, uint64_t shortfall,
                                    const std::string& why, Deferred& deferred) {
  const uint64_t pending = pending_demands_locked();
  if (pending >= shortfall) return;  // enough is already on its way
  const TimePoint now = clock_();
  const ReclaimPlan plan = plan_reclaim(views_locked(), requester, shortfall - pending, now);
  // A plan that cannot make room would only churn (drop caches, preempt) for a request that
  // still waits; memory comes back as sequences finish, and each release re-plans. The host
  // is different: under pressure every byte shed helps.
  if (!plan.covers_shortfall && !requester.host) return;
  for (const ReclaimAction& action : plan.actions) {
    Account& victim = account(action.victim);
    const std::string kind = reclaim_kind_name(action.kind);
    ++counters_.reclaims[kind];
    counters_.reclaim_bytes[kind] += action.bytes;
    deferred.log.push_back("reclaim " + kind + (action.busy ? " (busy: its requests end)" : "") +
                           " from " + victim.options.name + ": " + mib(action.bytes) + " for " +
                           why);
    if (action.kind == ReclaimKind::kEvict) {
      demands_[action.victim] = {action.bytes, now, /*eviction=*/true};
      deferred.evictions.push_back(
          {action.victim, requester.host ? "pressure" : "memory", action.busy});
      continue;
    }
    Demand& demand = demands_[action.victim];
    if (demand.bytes == 0) demand.first_issued = now;
    demand.bytes += action.bytes;
    demand.issued = now;
    if (victim.target == nullptr) continue;
    // One demand per victim: its cache share and its preemption target together.
    auto it = std::find_if(deferred.reclaims.begin(), deferred.reclaims.end(),
                           [&](const Deferred::Reclaim& r) { return r.account == action.victim; });
    if (it == deferred.reclaims.end()) {
      deferred.reclaims.push_back({action.victim, victim.target, ReclaimDemand{}});
      it = deferred.reclaims.end() - 1;
    }
    ReclaimDemand& d = it->demand;
    if (action.kind == ReclaimKind::kPrefixCache) {
      d.prefix_cache_bytes += action.bytes;
    } else {
      // The runner preempts, and drops the cache its preempted sequences leave, until it
      // holds no more than this.
      d.shrink_kv_to_bytes = std::max(action.shrink_to_bytes, victim.options.kv_min_bytes);
    }
  }
}

void MemoryGovernor::wake_waiters_locked(Deferred& deferred, std::optional<ConsumerId> releaser) {
  for (const auto& [id, w] : waiters_) {
    // A waiter's own release cannot serve it: it planned with that memory a moment ago
    // (waking it would loop: plan, be refused, roll back, release, wake).
    if (id == releaser) continue;
    if (const Account* a = find(id); a != nullptr && a->target != nullptr) {
      deferred.wakes.emplace_back(id, a->target);
    }
  }
  changed_.notify_all();
}

void MemoryGovernor::read_machine_locked(Deferred& deferred) {
  auto memory = machine_.memory();
  pressure_ = machine_.pressure();
  uint64_t ours = held_locked();
  if (const std::optional<uint64_t> resident = machine_.process_resident()) {
    ours = std::max(ours, *resident);
  }
  if (memory) {
    mem_available_ = memory->available_bytes;
    mem_total_ = memory->total_bytes;
    machine_budget_ = saturating_sub(ours + mem_available_, options_.os_reserve_bytes);
    const uint64_t others = saturating_sub(mem_total_, mem_available_ + ours);
    const TimePoint now = clock_();
    if (!others_sample_) {
      others_sample_ = {now, others};
    } else if (const double seconds =
                   std::chrono::duration<double>(now - others_sample_->first).count();
               seconds >= 1.0) {
      others_growth_ =
          others > others_sample_->second ? double(others - others_sample_->second) / seconds : 0.0;
      others_sample_ = {now, others};
    }
  } else if (machine_budget_ == 0) {
    // No reading at all (no /proc): only a configured budget can say anything.
    machine_budget_ = options_.budget_bytes > 0 ? options_.budget_bytes
                                                : std::numeric_limits<uint64_t>::max() / 2;
  }
  const bool psi_high =
      pressure_ && pressure_->full.avg10 >= options_.psi_full_limit && options_.psi_full_limit > 0;
  const bool short_now = memory && mem_available_ < options_.os_reserve_bytes;
  if (!under_pressure_ && (short_now || psi_high)) {
    under_pressure_ = true;
    ++counters_.pressure_episodes;
    deferred.log.push_back(
        "host memory pressure: MemAvailable " + mib(mem_available_) + ", os_reserve " +
        mib(options_.os_reserve_bytes) +
        (pressure_ ? ", PSI full avg10 " + std::to_string(pressure_->full.avg10) : std::string()) +
        ": KV growth held, shedding");
  } else if (under_pressure_ && !psi_high &&
             (!memory || mem_available_ >= options_.os_reserve_bytes + options_.hysteresis_bytes)) {
    under_pressure_ = false;
    deferred.log.push_back("host memory pressure over: MemAvailable " + mib(mem_available_) +
                           "; budget " + mib(budget_locked()));
    wake_waiters_locked(deferred);
  }
}

void MemoryGovernor::refresh() {
  Deferred deferred;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t old_free = free_locked();
    read_machine_locked(deferred);
    const TimePoint now = clock_();
    std::erase_if(demands_, [&](const auto& entry) {
      return !entry.second.eviction && now - entry.second.issued > options_.demand_ttl;
    });
    std::erase_if(waiters_, [&](const auto& entry) {
      return now - entry.second.last_asked > options_.waiter_ttl;
    });
    const uint64_t reserved = reserved_locked();
    const uint64_t budget = budget_locked();
    // The host's growth moves the machine's budget, not a configured one below it: only
    // what it would take past the configured budget counts.
    const auto lead = saturating_sub(
        static_cast<uint64_t>(
            others_growth_ *
            (std::chrono::duration<double>(options_.pressure_lead).count() + demand_latency_s_)),
        saturating_sub(machine_budget_, budget));
    if (reserved + lead > budget) {
      // Shed below the budget by the hysteresis margin, so the next reading does not
      // start over at once, and by the host's growth over the lead, so what is asked now
      // is back before the host gets there.
      Requester host;
      host.host = true;
      reclaim_locked(host, reserved + lead - budget + options_.hysteresis_bytes,
                     "host memory (budget " + mib(budget) + ", ledger " + mib(reserved) +
                         (lead > 0 ? ", host growing " + mib(lead) + " over the lead" : "") + ")",
                     deferred);
    }
    // keep_alive: idle on_demand models whose time is up go, as an eviction would take them.
    for (const auto& [id, a] : accounts_) {
      if (a->options.pinned || a->loading || a->busy || !a->options.keep_alive) continue;
      if (demands_.count(id) != 0 || now - a->last_used < *a->options.keep_alive) continue;
      demands_[id] = {a->held(), now, /*eviction=*/true};
      deferred.evictions.push_back({id, "keep_alive", false});
      deferred.log.push_back(a->options.name + " idle past its keep_alive: unloading");
    }
    if (free_locked() > old_free) wake_waiters_locked(deferred);
    changed_.notify_all();
  }
  run(deferred);
}

void MemoryGovernor::run(Deferred& deferred) {
  std::function<void(const std::string&)> log;
  ModelEvictor* evictor = nullptr;
  {
    // Targets are called under the lock, and only while still registered: a runner that
    // unregisters (under the lock) is never called after. Targets only post and wake, so
    // this cannot deadlock (memory_arbiter.h).
    std::lock_guard<std::mutex> lock(mutex_);
    log = log_;
    evictor = evictor_;
    // By account and pointer: a runner that went (and a new one at the same address) is
    // never handed another's demand.
    auto registered = [&](ConsumerId id, KvReclaimTarget* target) {
      const Account* a = find(id);
      return a != nullptr && a->target == target;
    };
    for (const Deferred::Reclaim& r : deferred.reclaims) {
      if (registered(r.account, r.target)) r.target->reclaim(r.demand);
    }
    for (const auto& [id, target] : deferred.wakes) {
      if (registered(id, target)) target->memory_available();
    }
  }
  if (log) {
    for (const std::string& line : deferred.log) log(line);
  }
  for (const Deferred::Eviction& e : deferred.evictions) {
    const bool evicted = evictor != nullptr && evictor->evict(e.account, e.reason, e.busy);
    std::lock_guard<std::mutex> lock(mutex_);
    if (evicted) {
      ++counters_.evictions[e.reason];
    } else {
      demands_.erase(e.account);  // not idle any more: plan without it next time
    }
  }
}

MemoryGovernor::LoadDecision MemoryGovernor::try_begin_load(const ModelAccountOptions& options,
                                                            const LoadEstimate& estimate) {
  LoadDecision decision;
  Deferred deferred;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t need = estimate.total() + options.kv_min_bytes;
    const uint64_t budget = ceiling_locked();
    const uint64_t unmovable = unmovable_locked(std::nullopt);
    if (need > saturating_sub(budget, unmovable)) {
      waiters_.erase(kLoadWaiter);
      ++counters_.loads["never_fits"];
      decision.admission = Admission::kNeverFits;
      decision.status = Status(
          StatusCode::kResourceExhausted,
          "model '" + options.name + "' needs " + mib(need) + " (weights " +
              mib(estimate.weights_bytes) + ", workspace " + mib(estimate.workspace_bytes) +
              ", load peak " + mib(estimate.transient_bytes) + ", kv_min " +
              mib(options.kv_min_bytes) + ") but the budget can never exceed " + mib(budget) +
              " (governor.budget, or MemTotal - os_reserve) and " + mib(unmovable) +
              " of it cannot be reclaimed (baseline, pinned models and their kv_min): it can "
              "never fit; " +
              ledger_text_locked());
      return decision;
    }
    const uint64_t free = free_for_locked(kLoadWaiter, options.priority);
    if (need <= free && !under_pressure_) {
      waiters_.erase(kLoadWaiter);
      auto a = std::make_unique<Account>();
      a->options = options;
      a->loading = true;
      a->load_reserved_bytes = need;
      a->last_used = clock_();
      const auto known = load_seconds_by_name_.find(options.name);
      if (known != load_seconds_by_name_.end()) a->load_seconds = known->second;
      decision.account = next_account_++;
      accounts_.emplace(decision.account, std::move(a));
      decision.admission = Admission::kAdmitted;
      check_hard_invariants_locked();
      return decision;
    }
    decision.admission = Admission::kWait;
    decision.status =
        Status(StatusCode::kResourceExhausted,
               "model '" + options.name + "' needs " + mib(need) + ", " + mib(free) + " free" +
                   (under_pressure_ ? " (the host is short of memory)" : "") + "; " +
                   ledger_text_locked());
    // Memory freed for the load is kept for it, not granted back to the models it came from.
    const TimePoint now = clock_();
    Waiter& w = waiters_[kLoadWaiter];
    if (w.bytes == 0) w.since = now;
    w.bytes = need;
    w.priority = options.priority;
    w.last_asked = now;
    Requester requester;
    requester.priority = options.priority;
    if (!under_pressure_) {
      reclaim_locked(requester, need - std::min(need, free), "loading " + options.name, deferred);
    }
  }
  run(deferred);
  return decision;
}

Expected<ConsumerId> MemoryGovernor::begin_load(const ModelAccountOptions& options,
                                                const LoadEstimate& estimate,
                                                std::chrono::milliseconds wait) {
  const auto give_up = std::chrono::steady_clock::now() + wait;
  for (;;) {
    LoadDecision decision = try_begin_load(options, estimate);
    if (decision.admission == Admission::kAdmitted) return decision.account;
    if (decision.admission == Admission::kNeverFits) return decision.status;
    std::unique_lock<std::mutex> lock(mutex_);
    if (std::chrono::steady_clock::now() >= give_up) {
      waiters_.erase(kLoadWaiter);
      ++counters_.loads["timeout"];
      return Status(decision.status.code(), decision.status.message() + " (waited " +
                                                std::to_string(wait.count()) + " ms)");
    }
    // Woken by any release; the timeout re-plans in case a victim did not answer.
    changed_.wait_for(lock, std::chrono::milliseconds(50));
  }
}

void MemoryGovernor::finish_load(ConsumerId id, uint64_t weights_bytes, uint64_t workspace_bytes,
                                 double load_seconds) {
  Deferred deferred;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Account& a = account(id);
    if (!a.loading) ledger_bug("finish_load of " + a.options.name + ", which is not loading");
    a.loading = false;
    a.load_reserved_bytes = 0;
    a.weights_bytes = weights_bytes;
    a.workspace_bytes = workspace_bytes;
    a.load_seconds = load_seconds;
    a.last_used = clock_();
    load_seconds_by_name_[a.options.name] = load_seconds;
    ++counters_.loads["ok"];
    // The reservation held the transient peak too: what it no longer needs is free again.
    wake_waiters_locked(deferred);
    check_hard_invariants_locked();
  }
  run(deferred);
}

void MemoryGovernor::close_account(ConsumerId id) {
  Deferred deferred;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Account& a = account(id);
    if (a.kv_granted_granules != 0) {
      ledger_bug(a.options.name + " closed holding " + std::to_string(a.kv_granted_granules) +
                 " KV granules: every granted byte must come back before its owner goes");
    }
    if (a.loading) ++counters_.loads["failed"];
    accounts_.erase(id);
    waiters_.erase(id);
    demands_.erase(id);
    wake_waiters_locked(deferred);
    check_hard_invariants_locked();
  }
  run(deferred);
}

void MemoryGovernor::set_busy(ConsumerId id, bool busy) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (Account* a = find(id)) {
    a->busy = busy;
    a->last_used = clock_();
  }
}

void MemoryGovernor::set_keep_alive(ConsumerId id,
                                    std::optional<std::chrono::milliseconds> keep_alive) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (Account* a = find(id); a != nullptr && !a->options.pinned) a->options.keep_alive = keep_alive;
}

bool MemoryGovernor::grant_granules(ConsumerId consumer, uint64_t granules) {
  if (granules == 0) return true;
  Deferred deferred;
  bool granted = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Account& a = account(consumer);
    if (granules > a.options.kv_max_bytes / kGranuleBytes) return false;
    const uint64_t bytes = granules * kGranuleBytes;
    if (bytes > a.options.kv_max_bytes - std::min(a.options.kv_max_bytes, a.kv_granted_bytes())) {
      return false;  // its own cap: nothing to reclaim from others
    }
    const uint64_t before = std::max(a.kv_granted_bytes(), a.options.kv_min_bytes);
    const uint64_t after = std::max(a.kv_granted_bytes() + bytes, a.options.kv_min_bytes);
    const uint64_t extra = after - before;  // beyond what is reserved for it already
    const TimePoint now = clock_();
    if (extra == 0 ||
        (!under_pressure_ && extra <= free_for_locked(consumer, a.options.priority))) {
      a.kv_granted_granules += granules;
      a.last_used = now;
      waiters_.erase(consumer);
      granted = true;
      check_hard_invariants_locked();
    } else {
      ++counters_.grants_refused;
      Waiter& w = waiters_[consumer];
      if (w.bytes == 0) w.since = now;
      w.bytes = extra;
      w.priority = a.options.priority;
      w.last_asked = now;
      if (!under_pressure_) {
        Requester requester;
        requester.id = consumer;
        requester.priority = a.options.priority;
        const uint64_t free = free_for_locked(consumer, a.options.priority);
        reclaim_locked(requester, extra - std::min(extra, free),
                       a.options.name + "'s KV (" + mib(extra) + ")", deferred);
      }
    }
  }
  run(deferred);
  return granted;
}

void MemoryGovernor::release_granules(ConsumerId consumer, uint64_t granules) {
  if (granules == 0) return;
  Deferred deferred;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Account& a = account(consumer);
    if (granules > a.kv_granted_granules) {
      ledger_bug(a.options.name + " released " + std::to_string(granules) + " granules but holds " +
                 std::to_string(a.kv_granted_granules));
    }
    a.kv_granted_granules -= granules;
    // Until the model reports again: what it holds bounds what it can have cached.
    a.prefix_cached_bytes = std::min(a.prefix_cached_bytes, a.kv_granted_bytes());
    if (auto d = demands_.find(consumer); d != demands_.end()) {
      const uint64_t bytes = granules * kGranuleBytes;
      d->second.bytes -= std::min(d->second.bytes, bytes);
      if (d->second.bytes == 0) {
        observe_demand_latency_locked(d->second);
        demands_.erase(d);
      }
    }
    wake_waiters_locked(deferred, consumer);
    check_hard_invariants_locked();
  }
  run(deferred);
}

uint64_t MemoryGovernor::granted_granules(ConsumerId consumer) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const Account* a = find(consumer);
  return a == nullptr ? 0 : a->kv_granted_granules;
}

void MemoryGovernor::report_kv_usage(ConsumerId consumer, uint64_t used_bytes,
                                     uint64_t cached_bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (Account* a = find(consumer)) {
    a->kv_used_bytes = used_bytes;
    a->prefix_cached_bytes = cached_bytes;
  }
}

void MemoryGovernor::set_reclaim_target(ConsumerId consumer, KvReclaimTarget* target) {
  std::lock_guard<std::mutex> lock(mutex_);
  account(consumer).target = target;
}

void MemoryGovernor::observe_demand_latency_locked(const Demand& demand) {
  if (demand.eviction) return;
  const double seconds = std::chrono::duration<double>(clock_() - demand.first_issued).count();
  // A moving average over the last few demands: victims slow now (long steps) raise it soon,
  // and one slow demand does not hold it up for long.
  demand_latency_s_ = demand_latency_s_ == 0 ? seconds : 0.7 * demand_latency_s_ + 0.3 * seconds;
}

void MemoryGovernor::reclaim_applied(ConsumerId consumer) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = demands_.find(consumer);
  if (it != demands_.end() && !it->second.eviction) {
    observe_demand_latency_locked(it->second);
    demands_.erase(it);
  }
  changed_.notify_all();
}

void MemoryGovernor::stop_waiting(ConsumerId consumer) {
  std::lock_guard<std::mutex> lock(mutex_);
  waiters_.erase(consumer);
}

std::string MemoryGovernor::ledger_text_locked() const {
  std::string text = "budget " + mib(budget_locked()) + ", ledger " + mib(reserved_locked()) +
                     " (baseline " + mib(options_.baseline_bytes);
  for (const auto& [id, a] : accounts_) {
    text += "; " + a->options.name + ": ";
    if (a->loading) {
      text += "loading, " + mib(a->load_reserved_bytes) + " reserved";
      continue;
    }
    text += "weights " + mib(a->weights_bytes) + ", workspace " + mib(a->workspace_bytes) +
            ", KV " + mib(a->kv_granted_bytes()) + " (" + mib(a->prefix_cached_bytes) +
            " cached, kv_min " + mib(a->options.kv_min_bytes) + ")";
  }
  text +=
      "), MemAvailable " + mib(mem_available_) + ", os_reserve " + mib(options_.os_reserve_bytes);
  return text;
}

std::string MemoryGovernor::explain_shortage(ConsumerId consumer, uint64_t granules) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const Account* a = find(consumer);
  const std::string name = a ? a->options.name : "consumer " + std::to_string(consumer);
  return name + " needs " + mib(granules * kGranuleBytes) + " more KV; " +
         mib(a ? free_for_locked(consumer, a->options.priority) : free_locked()) +
         " is free for it" + (under_pressure_ ? " (the host is short of memory)" : "") + "; " +
         ledger_text_locked();
}

uint64_t MemoryGovernor::max_grantable_granules(ConsumerId consumer) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const Account* a = find(consumer);
  if (a == nullptr) return 0;
  const uint64_t room = saturating_sub(
      ceiling_locked(), unmovable_locked(consumer) + a->weights_bytes + a->workspace_bytes);
  return std::min(room, a->options.kv_max_bytes) / kGranuleBytes;
}

LedgerSnapshot MemoryGovernor::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  LedgerSnapshot s;
  s.budget_bytes = budget_locked();
  s.configured_budget_bytes = options_.budget_bytes;
  s.machine_budget_bytes = machine_budget_;
  s.os_reserve_bytes = options_.os_reserve_bytes;
  s.mem_available_bytes = mem_available_;
  s.mem_total_bytes = mem_total_;
  s.pressure = pressure_;
  s.under_pressure = under_pressure_;
  s.baseline_bytes = options_.baseline_bytes;
  s.held_bytes = held_locked();
  s.reserved_bytes = reserved_locked();
  s.free_bytes = free_locked();
  s.reclaim_pending_bytes = pending_demands_locked();
  for (const auto& [id, a] : accounts_) {
    AccountFigures f;
    f.id = id;
    f.name = a->options.name;
    f.priority = a->options.priority;
    f.pinned = a->options.pinned;
    f.loading = a->loading;
    f.busy = a->busy;
    f.waiting = waiters_.count(id) != 0;
    f.load_reserved_bytes = a->load_reserved_bytes;
    f.weights_bytes = a->weights_bytes;
    f.workspace_bytes = a->workspace_bytes;
    f.kv_granted_bytes = a->kv_granted_bytes();
    f.kv_used_bytes = a->kv_used_bytes;
    f.prefix_cached_bytes = a->prefix_cached_bytes;
    f.kv_min_bytes = a->options.kv_min_bytes;
    f.kv_max_bytes = a->options.kv_max_bytes;
    f.load_seconds = a->load_seconds;
    s.load_reserved_bytes += a->load_reserved_bytes;
    s.accounts.push_back(std::move(f));
  }
  s.counters = counters_;
  return s;
}

std::vector<std::string> MemoryGovernor::check_invariants() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> broken;
  const uint64_t reserved = reserved_locked();
  const uint64_t budget = budget_locked();
  const bool reclaiming = !demands_.empty() || under_pressure_;
  if (reserved > budget && !reclaiming) {
    broken.push_back("ledger " + mib(reserved) + " above budget " + mib(budget) +
                     " with no reclaim under way");
  }
  for (const auto& [id, a] : accounts_) {
    if (a->kv_granted_bytes() > a->options.kv_max_bytes) {
      broken.push_back(a->options.name + " holds " + mib(a->kv_granted_bytes()) +
                       " of KV, above its kv_max " + mib(a->options.kv_max_bytes));
    }
    if (a->loading && a->kv_granted_granules != 0) {
      broken.push_back(a->options.name + " holds KV while loading");
    }
  }
  return broken;
}

void MemoryGovernor::check_hard_invariants_locked() const {
#ifndef NDEBUG
  // The invariants no interleaving may break, at every change (debug builds): the soft one,
  // ledger <= budget, may lag while a reclaim is under way (check_invariants).
  for (const auto& [id, a] : accounts_) {
    if (a->kv_granted_bytes() > a->options.kv_max_bytes) {
      ledger_bug(a->options.name + " holds more KV than its kv_max");
    }
    if (a->loading && a->kv_granted_granules != 0) {
      ledger_bug(a->options.name + " holds KV while it loads");
    }
    if (a->options.kv_min_bytes > a->options.kv_max_bytes) {
      ledger_bug(a->options.name + " reserves a kv_min above its kv_max");
    }
  }
#endif
}

}  // namespace sparkd::governor
