// MemoryGovernor: the one ledger of every byte the daemon holds, and the authority that grants
// it. It implements MemoryArbiter for the models' KV caches, admits model loads against the
// same budget, reclaims by the policy of reclaim_policy.h when something does not fit, and
// sheds memory when the host runs short.
//
// The ledger, per model: weights, workspace (activations and scratch, allocated once at load),
// KV granted (and, as the model reports it, in use and prefix-cached), kv_min (reserved at
// load whether committed or not), or, while it loads, its load reservation. Plus the process
// baseline (what the daemon held before any model) and the OS reserve.
//
//   held      = baseline + weights + workspace + KV granted   (what is really committed)
//   reserved  = baseline + weights + workspace + max(KV granted, kv_min) + load reservations
//   ours      = max(held, the process's RSS): a load's bytes are resident before they are held
//   budget    = min(governor.budget, ours + MemAvailable - os_reserve), re-read every refresh
//   free      = budget - reserved
//
// A KV grant within the model's kv_min always succeeds (it was reserved at load); above it,
// only from free memory that no more important waiter is owed, and never while the host is
// under pressure. A refused grant plans a reclaim and posts it to the victims' runners, which
// apply it between steps and release granules; every release wakes the waiters.
//
// Deterministic: time comes from the injected clock and the machine's figures from the
// injected source; reclaim targets and the evictor are called synchronously, without the
// lock held, from the thread whose call needed the memory. The trace simulator of bench/
// drives this very class.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "governor/memory_arbiter.h"
#include "governor/reclaim_policy.h"
#include "governor/system_memory.h"

namespace sparkd::governor {

struct GovernorOptions {
  uint64_t budget_bytes = 0;  // 0: no cap of its own, what the machine can give
  uint64_t os_reserve_bytes = 8ull << 30;
  uint64_t baseline_bytes = 0;  // the process's memory outside every account
  // Below os_reserve, growth stops until MemAvailable is back above os_reserve + this much,
  // and shedding aims this far below the budget: no grant/shed flapping at the threshold.
  uint64_t hysteresis_bytes = 64ull << 20;
  // Full-stall memory pressure (PSI "full" avg10, percent) at which growth stops too.
  double psi_full_limit = 10.0;
  // Shed ahead of a host that is growing: what the rest of the machine took over the last
  // second, extrapolated this far ahead plus as long as victims have recently taken to apply
  // a demand, counts as taken already. Demands are applied between steps, so memory comes
  // back a step or more after it is asked for; a host taking gigabytes a second would
  // otherwise cross the OS reserve first.
  std::chrono::milliseconds pressure_lead{2000};
  // A reclaim demand the victim has neither applied nor released within this long no longer
  // counts as memory on its way (a safety net: runners apply demands between steps).
  std::chrono::milliseconds demand_ttl{10000};
  // A waiter that has not asked again within this long is forgotten.
  std::chrono::milliseconds waiter_ttl{2000};
};

// Where the machine's figures come from. Tests and the simulator inject their own.
class MachineMemorySource {
 public:
  virtual ~MachineMemorySource() = default;
  virtual Expected<SystemMemory> memory() = 0;
  // nullopt when the kernel has no PSI.
  virtual std::optional<MemoryPressure> pressure() = 0;
  // This process's own resident memory, when memory() describes the machine it runs on. The
  // bytes a load has read so far are in it but not yet in the ledger's `held`; without it
  // they would count as another process's and shrink the budget by as much. nullopt:
  // unknown, the ledger's `held` stands in.
  virtual std::optional<uint64_t> process_resident() { return std::nullopt; }
};

// /proc/meminfo and /proc/pressure/memory, or files standing in for them.
class ProcMemorySource final : public MachineMemorySource {
 public:
  explicit ProcMemorySource(std::string meminfo_path = "/proc/meminfo",
                            std::string pressure_path = "/proc/pressure/memory")
      : meminfo_path_(std::move(meminfo_path)), pressure_path_(std::move(pressure_path)) {}
  Expected<SystemMemory> memory() override { return read_system_memory(meminfo_path_); }
  std::optional<MemoryPressure> pressure() override;
  // /proc/self/statm, but only against the real /proc/meminfo: a stand-in file describes an
  // imaginary machine that this process's real RSS is no part of.
  std::optional<uint64_t> process_resident() override;

 private:
  std::string meminfo_path_;
  std::string pressure_path_;
};

// The daemon side of step 3 of the policy: unloading an idle on_demand model.
class ModelEvictor {
 public:
  virtual ~ModelEvictor() = default;
  // Unloads the model of `account`, or arranges for it to be unloaded soon. False when it is
  // not idle any more (a request came in): the governor then plans without it. `busy`: the
  // host is about to run out of memory and the model goes even with requests in flight,
  // which end with UNAVAILABLE saying why.
  virtual bool evict(ConsumerId account, const std::string& reason, bool busy) = 0;
};

struct ModelAccountOptions {
  std::string name;
  int32_t priority = 0;
  bool pinned = true;
  uint64_t kv_min_bytes = 0;
  uint64_t kv_max_bytes = 0;
  // on_demand models: evicted (reason "keep_alive") after this long idle; none: they stay
  // until their memory is needed.
  std::optional<std::chrono::milliseconds> keep_alive;
};

// What a load will hold, from the model's file headers, before a byte of it is read.
struct LoadEstimate {
  uint64_t weights_bytes = 0;
  uint64_t workspace_bytes = 0;
  uint64_t transient_bytes = 0;  // the load's peak above what stays (staging buffers)
  uint64_t total() const { return weights_bytes + workspace_bytes + transient_bytes; }
};

struct AccountFigures {
  ConsumerId id = 0;
  std::string name;
  int32_t priority = 0;
  bool pinned = true;
  bool loading = false;
  bool busy = false;
  bool waiting = false;  // has a refused grant it still wants
  uint64_t load_reserved_bytes = 0;
  uint64_t weights_bytes = 0;
  uint64_t workspace_bytes = 0;
  uint64_t kv_granted_bytes = 0;
  uint64_t kv_used_bytes = 0;
  uint64_t prefix_cached_bytes = 0;
  uint64_t kv_min_bytes = 0;
  uint64_t kv_max_bytes = 0;
  double load_seconds = 0;
};

struct GovernorCounters {
  std::map<std::string, uint64_t> reclaims;       // by kind: actions issued
  std::map<std::string, uint64_t> reclaim_bytes;  // by kind: bytes asked for
  std::map<std::string, uint64_t> evictions;      // by reason: "memory", "pressure", "keep_alive"
  std::map<std::string, uint64_t> loads;          // by outcome: "ok", "never_fits", "timeout", ...
  uint64_t grants_refused = 0;
  uint64_t pressure_episodes = 0;
};

struct LedgerSnapshot {
  uint64_t budget_bytes = 0;             // in effect
  uint64_t configured_budget_bytes = 0;  // 0: none
  uint64_t machine_budget_bytes = 0;     // held + MemAvailable - os_reserve at the last read
  uint64_t os_reserve_bytes = 0;
  uint64_t mem_available_bytes = 0;
  uint64_t mem_total_bytes = 0;
  std::optional<MemoryPressure> pressure;
  bool under_pressure = false;  // growth held until the host recovers
  uint64_t baseline_bytes = 0;
  uint64_t held_bytes = 0;
  uint64_t reserved_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t load_reserved_bytes = 0;
  uint64_t reclaim_pending_bytes = 0;  // asked of victims, not yet released
  std::vector<AccountFigures> accounts;
  GovernorCounters counters;
};

class MemoryGovernor final : public MemoryArbiter {
 public:
  using Clock = std::function<TimePoint()>;

  MemoryGovernor(
      GovernorOptions options, MachineMemorySource& machine,
      Clock clock = [] { return std::chrono::steady_clock::now(); });
  ~MemoryGovernor() override;

  void set_evictor(ModelEvictor* evictor);
  // One line per action the governor takes (reclaims, evictions, pressure), with its numbers.
  void set_log(std::function<void(const std::string&)> log);

  // ---- loads (serialized by the caller) ----
  enum class Admission { kAdmitted, kWait, kNeverFits };
  struct LoadDecision {
    Admission admission = Admission::kWait;
    ConsumerId account = 0;  // kAdmitted: the new account, holding the load's reservation
    Status status;           // kNeverFits / kWait: why, with the numbers
  };
  // Reserves the load's estimate plus kv_min, or plans a reclaim and says wait, or says it can
  // never fit (more than the budget minus what cannot be reclaimed).
  LoadDecision try_begin_load(const ModelAccountOptions& options, const LoadEstimate& estimate);
  // try_begin_load until admitted, never-fits (RESOURCE_EXHAUSTED at once) or `wait` passes
  // (RESOURCE_EXHAUSTED with the numbers). Blocks the calling thread.
  Expected<ConsumerId> begin_load(const ModelAccountOptions& options, const LoadEstimate& estimate,
                                  std::chrono::milliseconds wait);
  // The load is done: the reservation becomes the account's weights and workspace.
  void finish_load(ConsumerId account, uint64_t weights_bytes, uint64_t workspace_bytes,
                   double load_seconds);
  // The model is gone (unloaded, evicted, or its load failed). Every granule must have been
  // released: a leak aborts.
  void close_account(ConsumerId account);

  // ---- activity (for the eviction rules) ----
  void set_busy(ConsumerId account, bool busy);
  // An on_demand model's keep_alive from now on (a request may set it, as Ollama's keep_alive
  // does): none = until evicted for memory; 0 = unloaded as soon as it is idle. Pinned models
  // keep theirs (none).
  void set_keep_alive(ConsumerId account, std::optional<std::chrono::milliseconds> keep_alive);

  // ---- MemoryArbiter ----
  bool grant_granules(ConsumerId consumer, uint64_t granules) override;
  void release_granules(ConsumerId consumer, uint64_t granules) override;
  uint64_t granted_granules(ConsumerId consumer) const override;
  void report_kv_usage(ConsumerId consumer, uint64_t used_bytes, uint64_t cached_bytes) override;
  void set_reclaim_target(ConsumerId consumer, KvReclaimTarget* target) override;
  void reclaim_applied(ConsumerId consumer) override;
  void stop_waiting(ConsumerId consumer) override;
  std::string explain_shortage(ConsumerId consumer, uint64_t granules) const override;
  uint64_t max_grantable_granules(ConsumerId consumer) const override;

  // Re-reads the machine's figures; under pressure sheds memory; evicts on_demand models idle
  // past their keep_alive; forgets stale waiters and demands. Call at least every 250 ms (the
  // daemon has a thread for it).
  void refresh();

  LedgerSnapshot snapshot() const;
  // Every broken invariant, one line each (empty: all hold). Tests call it; debug builds
  // check the hard ones at every change.
  std::vector<std::string> check_invariants() const;

 private:
  struct Account;
  struct Waiter {
    uint64_t bytes = 0;
    int32_t priority = 0;
    TimePoint since{};
    TimePoint last_asked{};
  };
  struct Demand {
    uint64_t bytes = 0;
    TimePoint issued{};
    // An eviction under way: it lasts until the account closes (no time limit).
    bool eviction = false;
    TimePoint first_issued{};  // when the victim was first asked (issued moves on a merge)
  };
  // Actions decided under the lock, carried out after it is released.
  struct Deferred {
    struct Reclaim {
      ConsumerId account = 0;
      KvReclaimTarget* target = nullptr;
      ReclaimDemand demand;
    };
    std::vector<Reclaim> reclaims;
    struct Eviction {
      ConsumerId account = 0;
      std::string reason;
      bool busy = false;
    };
    std::vector<Eviction> evictions;
    std::vector<std::pair<ConsumerId, KvReclaimTarget*>> wakes;
    std::vector<std::string> log;
  };
  // The waiter entry of a load that waits for memory (loads are serialized: one at most).
  static constexpr ConsumerId kLoadWaiter = std::numeric_limits<ConsumerId>::max();

  Account* find(ConsumerId id);
  const Account* find(ConsumerId id) const;
  Account& account(ConsumerId id);  // aborts on an unknown id: a caller bug
  uint64_t held_locked() const;
  uint64_t reserved_locked() const;
  uint64_t budget_locked() const;
  // The most the budget could ever be: min(governor.budget, MemTotal - os_reserve).
  uint64_t ceiling_locked() const;
  uint64_t free_locked() const;
  uint64_t pending_demands_locked() const;
  // Free memory `consumer` may take: what more important (or earlier, equally important)
  // waiters are owed is kept for them.
  uint64_t free_for_locked(ConsumerId consumer, int32_t priority) const;
  // What can never be reclaimed for a requester of `priority`: the baseline, pinned models'
  // weights, workspace and kv_min, and (`except`) nothing of the requester itself.
  uint64_t unmovable_locked(std::optional<ConsumerId> except) const;
  std::vector<AccountView> views_locked() const;
  // Plans and records a reclaim of `shortfall` for `requester`; fills `deferred`.
  void reclaim_locked(const Requester& requester, uint64_t shortfall, const std::string& why,
                      Deferred& deferred);
  // Wakes every waiter but `releaser` (whose release made the memory free).
  void wake_waiters_locked(Deferred& deferred, std::optional<ConsumerId> releaser = std::nullopt);
  void observe_demand_latency_locked(const Demand& demand);
  void read_machine_locked(Deferred& deferred);
  void check_hard_invariants_locked() const;
  void run(Deferred& deferred);
  std::string ledger_text_locked() const;

  GovernorOptions options_;
  MachineMemorySource& machine_;
  Clock clock_;
  ModelEvictor* evictor_ = nullptr;
  std::function<void(const std::string&)> log_;

  mutable std::mutex mutex_;
  std::map<ConsumerId, std::unique_ptr<Account>> accounts_;
  ConsumerId next_account_ = 1;
  std::map<ConsumerId, Waiter> waiters_;
  std::map<ConsumerId, Demand> demands_;  // reclaim asked of a victim, not yet released
  std::map<std::string, double> load_seconds_by_name_;  // reload cost of models seen before
  uint64_t machine_budget_ = 0;
  uint64_t mem_available_ = 0;
  uint64_t mem_total_ = 0;
  // What the rest of the machine holds (MemTotal - MemAvailable - ours): a reading at least
  // a second old, and how fast it grew since (bytes a second; 0 when it shrank).
  std::optional<std::pair<TimePoint, uint64_t>> others_sample_;
  double others_growth_ = 0;
  double demand_latency_s_ = 0;  // how long victims take to apply a demand (moving average)
  std::optional<MemoryPressure> pressure_;
  bool under_pressure_ = false;
  GovernorCounters counters_;
  std::condition_variable changed_;  // a release, a close or a refresh: loads re-check
};

}  // namespace sparkd::governor
