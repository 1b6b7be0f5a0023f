// MemoryGovernor and its reclaim policy, under an injected clock, an injected machine and
// scripted models: the ledger, grants above and within kv_min, the reclaim order (prefix
// cache, then preemption of less important models, then idle on_demand models), load
// admission, host pressure with hysteresis, and the invariants under a randomized workload.

#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "governor/memory_governor.h"
#include "governor/reclaim_policy.h"

namespace {

using namespace sparkd::governor;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t G = kGranuleBytes;

// A machine whose MemAvailable and PSI the test sets.
struct FakeMachine : MachineMemorySource {
  uint64_t total = 64ull << 30;
  uint64_t available = 32ull << 30;
  std::optional<MemoryPressure> psi;
  sparkd::Expected<SystemMemory> memory() override {
    SystemMemory m;
    m.total_bytes = total;
    m.available_bytes = available;
    return m;
  }
  std::optional<MemoryPressure> pressure() override { return psi; }
  std::optional<uint64_t> resident;  // the process's RSS, when the test plays it
  std::optional<uint64_t> process_resident() override { return resident; }
};

struct FakeClock {
  TimePoint now{};
  void advance(std::chrono::milliseconds d) { now += d; }
};

// A model's runner as the governor sees it: records demands and wakes; `apply()` gives the
// memory back the way a runner would between two steps.
struct ScriptedModel : KvReclaimTarget {
  MemoryGovernor* governor = nullptr;
  ConsumerId id = 0;
  uint64_t cached_granules = 0;  // unreferenced prefix cache, within what it holds
  uint64_t kv_min_granules = 0;
  std::vector<ReclaimDemand> demands;
  int wakes = 0;

  void reclaim(const ReclaimDemand& demand) override { demands.push_back(demand); }
  bool acknowledge = true;  // report reclaim_applied after apply(), as runners do
  void memory_available() override { ++wakes; }

  bool grow(uint64_t granules) { return governor->grant_granules(id, granules); }
  void cache(uint64_t granules) {
    cached_granules = granules;
    report();
  }
  void report() {
    governor->report_kv_usage(id, (held() - cached_granules) * G, cached_granules * G);
  }
  uint64_t held() const { return governor->granted_granules(id); }
  // Applies every demand received: cache first, then preemption down to the target.
  void apply() {
    for (const ReclaimDemand& d : demands) {
      const uint64_t from_cache = std::min(cached_granules, d.prefix_cache_bytes / G);
      cached_granules -= from_cache;
      governor->release_granules(id, from_cache);
      if (d.shrink_kv_to_bytes != ReclaimDemand::kNoShrink) {
        const uint64_t target = std::max(d.shrink_kv_to_bytes / G, kv_min_granules);
        if (held() > target) governor->release_granules(id, held() - target);
        cached_granules = std::min(cached_granules, held());
      }
    }
    demands.clear();
    report();
    if (acknowledge) governor->reclaim_applied(id);
  }
};

struct Evictor : ModelEvictor {
  MemoryGovernor* governor = nullptr;
  std::map<ConsumerId, ScriptedModel*> models;
  std::vector<ConsumerId> evicted;
  bool refuse = false;
  bool evict(ConsumerId id, const std::string&, bool) override {
    if (refuse) return false;
    evicted.push_back(id);
    if (auto it = models.find(id); it != models.end()) {
      ScriptedModel& m = *it->second;
      if (m.held() > 0) governor->release_granules(id, m.held());
      governor->set_reclaim_target(id, nullptr);
    }
    governor->close_account(id);
    return true;
  }
};

struct Fixture {
  FakeMachine machine;
  FakeClock clock;
  MemoryGovernor governor;
  Evictor evictor;
  std::vector<std::unique_ptr<ScriptedModel>> models;

  explicit Fixture(uint64_t budget, uint64_t baseline = 0, uint64_t os_reserve = 1ull << 30)
      : governor(
            [&] {
              GovernorOptions o;
              o.budget_bytes = budget;
              o.baseline_bytes = baseline;
              o.os_reserve_bytes = os_reserve;
              return o;
            }(),
            machine, [this] { return clock.now; }) {
    evictor.governor = &governor;
    governor.set_evictor(&evictor);
  }

  ScriptedModel& load(const std::string& name, uint64_t weights, int32_t priority = 0,
                      bool pinned = true, uint64_t kv_min = 0, uint64_t kv_max = 1ull << 30) {
    ModelAccountOptions o;
    o.name = name;
    o.priority = priority;
    o.pinned = pinned;
    o.kv_min_bytes = kv_min;
    o.kv_max_bytes = kv_max;
    LoadEstimate e;
    e.weights_bytes = weights;
    auto decision = governor.try_begin_load(o, e);
    REQUIRE(decision.admission == MemoryGovernor::Admission::kAdmitted);
    governor.finish_load(decision.account, weights, 0, 1.0);
    auto m = std::make_unique<ScriptedModel>();
    m->governor = &governor;
    m->id = decision.account;
    m->kv_min_granules = kv_min / G;
    governor.set_reclaim_target(m->id, m.get());
    evictor.models[m->id] = m.get();
    models.push_back(std::move(m));
    return *models.back();
  }
  void invariants() {
    const auto broken = governor.check_invariants();
    for (const std::string& line : broken) INFO(line);
    CHECK(broken.empty());
  }
};

TEST_CASE("governor: grants KV from free memory and refuses beyond, all or nothing", "[governor]") {
  Fixture f(100 * kMiB, 10 * kMiB);
  ScriptedModel& a = f.load("a", 40 * kMiB);
  auto s = f.governor.snapshot();
  CHECK(s.budget_bytes == 100 * kMiB);
  CHECK(s.reserved_bytes == 50 * kMiB);
  CHECK(s.free_bytes == 50 * kMiB);
  CHECK(a.grow(20));        // 40 MiB
  CHECK_FALSE(a.grow(10));  // 20 MiB more: only 10 free
  CHECK(a.held() == 20);
  CHECK(a.grow(5));
  s = f.governor.snapshot();
  CHECK(s.free_bytes == 0);
  CHECK(s.held_bytes == 100 * kMiB);
  CHECK(s.counters.grants_refused == 1);
  f.invariants();
  f.governor.release_granules(a.id, 25);
  CHECK(f.governor.snapshot().free_bytes == 50 * kMiB);
}

TEST_CASE("governor: kv_min is reserved at load and always grantable, kv_max is a hard cap",
          "[governor]") {
  Fixture f(100 * kMiB);
  ScriptedModel& a = f.load("a", 10 * kMiB, 0, true, /*kv_min=*/20 * kMiB, /*kv_max=*/30 * kMiB);
  // The reservation counts before a byte is committed.
  CHECK(f.governor.snapshot().reserved_bytes == 30 * kMiB);
  ScriptedModel& b = f.load("b", 10 * kMiB);
  CHECK(b.grow(30));  // 60 MiB: everything that is free
  CHECK(f.governor.snapshot().free_bytes == 0);
  // a's kv_min is still there for it.
  CHECK(a.grow(10));
  // Beyond kv_min nothing is free; beyond kv_max never.
  CHECK_FALSE(a.grow(1));
  f.governor.release_granules(b.id, 30);
  CHECK(a.grow(5));
  CHECK_FALSE(a.grow(1));  // 30 MiB = kv_max
  CHECK(a.held() == 15);
  f.invariants();
}

TEST_CASE("governor: a refused grant reclaims other models' prefix cache first", "[governor]") {
  Fixture f(100 * kMiB);
  ScriptedModel& a = f.load("a", 10 * kMiB, /*priority=*/0);
  ScriptedModel& b = f.load("b", 10 * kMiB, /*priority=*/0);
  REQUIRE(a.grow(40));  // 80 MiB: the budget is full
  a.cache(30);          // 60 MiB of it is unreferenced prefix cache
  CHECK_FALSE(b.grow(10));
  REQUIRE(a.demands.size() == 1);
  CHECK(a.demands[0].prefix_cache_bytes == 20 * kMiB);
  CHECK(a.demands[0].shrink_kv_to_bytes == ReclaimDemand::kNoShrink);  // same priority
  a.apply();
  CHECK(b.wakes > 0);  // the release woke the waiter
  CHECK(b.grow(10));
  auto s = f.governor.snapshot();
  CHECK(s.counters.reclaims["prefix_cache"] == 1);
  CHECK(s.counters.reclaims.count("preempt") == 0);
  f.invariants();
}

TEST_CASE("governor: then preempts less important models above kv_min, never more important",
          "[governor]") {
  Fixture f(100 * kMiB);
  ScriptedModel& low = f.load("low", 10 * kMiB, /*priority=*/5, true, /*kv_min=*/10 * kMiB);
  ScriptedModel& high = f.load("high", 10 * kMiB, /*priority=*/0);
  REQUIRE(low.grow(35));  // 70 MiB: 60 above its kv_min
  low.cache(5);           // 10 MiB of it is cache
  // high needs 30 MiB, 10 are free: 10 from low's cache, 10 by preempting low (down to 50
  // MiB held).
  CHECK_FALSE(high.grow(15));
  REQUIRE(low.demands.size() == 1);
  CHECK(low.demands[0].prefix_cache_bytes == 10 * kMiB);
  CHECK(low.demands[0].shrink_kv_to_bytes == 50 * kMiB);
  // While high waits, low cannot take back what it gives up.
  low.apply();
  CHECK(low.held() == 25);
  CHECK_FALSE(low.grow(1));
  CHECK(high.grow(15));
  auto s = f.governor.snapshot();
  CHECK(s.counters.reclaims["prefix_cache"] == 1);
  CHECK(s.counters.reclaims["preempt"] == 1);

  // The other way round: low asks, high gives nothing but cache, and never goes below.
  high.cache(0);
  const uint64_t high_before = high.held();
  CHECK_FALSE(low.grow(20));
  CHECK(high.demands.empty());
  CHECK(high.held() == high_before);
  // low still gets what its kv_min reserves... it already holds more than kv_min, so no.
  f.invariants();
}

TEST_CASE("governor: kv_min of a preempted model stays with it", "[governor]") {
  Fixture f(64 * kMiB);
  ScriptedModel& low = f.load("low", 0, 9, true, /*kv_min=*/16 * kMiB);
  ScriptedModel& high = f.load("high", 0, 0);
  REQUIRE(low.grow(32));  // all 64 MiB
  // Everything: more than all that is above low's kv_min, so nothing is reclaimed for it.
  CHECK_FALSE(high.grow(32));
  CHECK(low.demands.empty());
  // 48 MiB: all that is above kv_min goes.
  CHECK_FALSE(high.grow(24));
  REQUIRE(low.demands.size() == 1);
  CHECK(low.demands[0].shrink_kv_to_bytes == 16 * kMiB);
  low.apply();
  CHECK(low.held() == 8);
  CHECK_FALSE(high.grow(25));
  CHECK(high.grow(24));
  // low keeps its kv_min: it can always grow back to it.
  f.governor.release_granules(low.id, 8);
  CHECK(low.grow(8));
  f.invariants();
}

TEST_CASE("governor: idle on_demand models are evicted last, by priority then score",
          "[governor]") {
  Fixture f(100 * kMiB);
  ScriptedModel& pinned = f.load("pinned", 20 * kMiB, 9, /*pinned=*/true);
  ScriptedModel& busy = f.load("busy", 20 * kMiB, 9, /*pinned=*/false);
  ScriptedModel& idle = f.load("idle", 20 * kMiB, 9, /*pinned=*/false);
  f.governor.set_busy(busy.id, true);
  ScriptedModel& want = f.load("want", 10 * kMiB, 0);
  // 30 MiB free; want asks 40: only the idle on_demand one may go.
  CHECK_FALSE(want.grow(20));
  REQUIRE(f.evictor.evicted.size() == 1);
  CHECK(f.evictor.evicted[0] == idle.id);
  CHECK(want.grow(20));
  auto s = f.governor.snapshot();
  CHECK(s.counters.evictions["memory"] == 1);
  CHECK(s.accounts.size() == 3);
  (void)pinned;
  f.invariants();
}

TEST_CASE("governor: memory reclaimed for a load is kept for it", "[governor]") {
  Fixture f(100 * kMiB);
  ScriptedModel& low = f.load("low", 10 * kMiB, /*priority=*/5);
  REQUIRE(low.grow(40));  // 80 MiB: 10 free
  low.cache(40);
  ModelAccountOptions o;
  o.name = "new";
  o.priority = 0;
  o.kv_max_bytes = 0;
  LoadEstimate e;
  e.weights_bytes = 30 * kMiB;
  CHECK(f.governor.try_begin_load(o, e).admission == MemoryGovernor::Admission::kWait);
  low.apply();  // gives back 20 MiB of cache
  // low cannot take it back while the load waits for it.
  CHECK_FALSE(low.grow(1));
  CHECK(f.governor.try_begin_load(o, e).admission == MemoryGovernor::Admission::kAdmitted);
  f.invariants();
}

TEST_CASE("governor: no model is evicted for a grant it would not satisfy", "[governor]") {
  Fixture f(100 * kMiB);
  f.load("idle", 20 * kMiB, 9, /*pinned=*/false);
  ScriptedModel& want = f.load("want", 10 * kMiB, 0);
  CHECK_FALSE(want.grow(50));  // 100 MiB: more than everything together
  CHECK(f.evictor.evicted.empty());
}

TEST_CASE("governor: loads reserve first, evict idle models, and fail at once if they never fit",
          "[governor]") {
  Fixture f(100 * kMiB, 10 * kMiB);
  ScriptedModel& pinned = f.load("pinned", 30 * kMiB, 0, true, /*kv_min=*/10 * kMiB);
  f.load("idle", 30 * kMiB, 0, /*pinned=*/false);
  ModelAccountOptions o;
  o.name = "big";
  o.kv_max_bytes = 64 * kMiB;
  LoadEstimate e;
  // Never: 10 baseline + 40 pinned leave 50.
  e.weights_bytes = 51 * kMiB;
  auto never = f.governor.try_begin_load(o, e);
  CHECK(never.admission == MemoryGovernor::Admission::kNeverFits);
  CHECK(never.status.code() == sparkd::StatusCode::kResourceExhausted);
  CHECK_THAT(never.status.message(), Catch::Contains("never fit"));
  CHECK_THAT(never.status.message(), Catch::Contains("pinned"));
  CHECK(f.evictor.evicted.empty());  // no evict/reload loop for a hopeless load
  // Fits after evicting the idle model: the decision is wait, and the eviction happened.
  e.weights_bytes = 40 * kMiB;
  auto wait = f.governor.try_begin_load(o, e);
  CHECK(wait.admission == MemoryGovernor::Admission::kWait);
  CHECK(f.evictor.evicted.size() == 1);
  auto admitted = f.governor.try_begin_load(o, e);
  REQUIRE(admitted.admission == MemoryGovernor::Admission::kAdmitted);
  // While it loads its reservation counts; a second load must wait behind it.
  CHECK(f.governor.snapshot().load_reserved_bytes == 40 * kMiB);
  f.governor.finish_load(admitted.account, 38 * kMiB, 1 * kMiB, 2.0);
  auto s = f.governor.snapshot();
  CHECK(s.load_reserved_bytes == 0);
  CHECK(s.reserved_bytes == 10 * kMiB + 40 * kMiB + 39 * kMiB);
  (void)pinned;
  f.invariants();
}

TEST_CASE("governor: the budget follows MemAvailable, and host pressure sheds and holds growth",
          "[governor]") {
  Fixture f(/*budget=*/0, 0, /*os_reserve=*/1ull << 30);
  f.machine.available = 1ull << 30;
  f.machine.available += 200 * kMiB;
  f.governor.refresh();
  ScriptedModel& a = f.load("a", 50 * kMiB, 0);
  // The machine budget is held + MemAvailable - os_reserve, read at refresh.
  CHECK(f.governor.snapshot().budget_bytes == 200 * kMiB);
  REQUIRE(a.grow(50));  // 100 MiB
  a.cache(40);
  // Another process takes memory: MemAvailable falls below the reserve.
  f.machine.available = (1ull << 30) - 40 * kMiB;
  f.governor.refresh();
  auto s = f.governor.snapshot();
  CHECK(s.under_pressure);
  CHECK(s.counters.pressure_episodes == 1);
  // Shedding asked for the cache first.
  REQUIRE_FALSE(a.demands.empty());
  CHECK(a.demands[0].prefix_cache_bytes > 0);
  // Growth above kv_min is refused while the host is short.
  CHECK_FALSE(a.grow(1));
  a.apply();
  CHECK(a.held() < 50);
  // Recovery needs the reserve plus the hysteresis margin.
  f.machine.available = (1ull << 30) + 10 * kMiB;
  f.governor.refresh();
  CHECK(f.governor.snapshot().under_pressure);
  f.machine.available = (1ull << 30) + 500 * kMiB;
  f.governor.refresh();
  CHECK_FALSE(f.governor.snapshot().under_pressure);
  CHECK(a.grow(1));
  f.invariants();
}

TEST_CASE("governor: what a load has read so far is ours, not another process's", "[governor]") {
  // Found by the trace simulator: the ledger holds a load's reservation from the start, and
  // the bytes it reads also leave MemAvailable; counting them as someone else's shrank the
  // budget by the whole model at the end of every load (and reclaimed that much for nothing).
  Fixture f(/*budget=*/0, 0, /*os_reserve=*/1ull << 30);
  f.machine.available = (1ull << 30) + (3ull << 30);
  f.machine.resident = 0;
  f.governor.refresh();
  ScriptedModel& a = f.load("a", 0, 0);
  REQUIRE(a.grow(256));  // 512 MiB
  f.machine.available -= 512 * kMiB;
  f.machine.resident = 512 * kMiB;
  f.governor.refresh();
  CHECK(f.governor.snapshot().budget_bytes == 3ull << 30);

  ModelAccountOptions o;
  o.name = "b";
  LoadEstimate e;
  e.weights_bytes = 2ull << 30;
  const auto decision = f.governor.try_begin_load(o, e);
  REQUIRE(decision.admission == MemoryGovernor::Admission::kAdmitted);
  // The load reads its 2 GiB: MemAvailable falls by as much, and the process's RSS grows.
  f.machine.available -= 2ull << 30;
  *f.machine.resident += 2ull << 30;
  f.governor.refresh();
  const auto s = f.governor.snapshot();
  CHECK(s.budget_bytes == 3ull << 30);
  CHECK(s.free_bytes == 512 * kMiB);
  CHECK_FALSE(s.under_pressure);
  CHECK(a.demands.empty());
  f.invariants();
  f.governor.finish_load(decision.account, 2ull << 30, 0, 1.0);
  f.governor.refresh();
  CHECK(f.governor.snapshot().budget_bytes == 3ull << 30);
  // Without an RSS figure (a stand-in meminfo) the ledger's `held` is all it knows.
  f.machine.resident.reset();
  f.governor.refresh();
  CHECK(f.governor.snapshot().budget_bytes == 3ull << 30);
}

TEST_CASE("governor: a waiter is not woken by its own release", "[governor]") {
  // Found by the trace simulator: a model refused growth under host pressure gave back what
  // its own scheduler rolled back, was woken by that release, planned, was refused and rolled
  // back again: a loop that never let time move. Its own release cannot help it (it has just
  // planned with that memory); another model's can.
  Fixture f(/*budget=*/64 * kMiB);
  ScriptedModel& a = f.load("a", 0, 0);
  ScriptedModel& b = f.load("b", 0, 0);
  REQUIRE(b.grow(16));       // 32 MiB
  REQUIRE(a.grow(16));       // the other 32 MiB
  REQUIRE_FALSE(a.grow(4));  // a waits for 8 MiB more
  const int woken = a.wakes;
  f.governor.release_granules(a.id, 2);
  CHECK(a.wakes == woken);
  f.governor.release_granules(b.id, 2);
  CHECK(a.wakes == woken + 1);
  f.invariants();
}

TEST_CASE("governor: a host growing fast is shed ahead of, by its growth over the lead",
          "[governor]") {
  // Found by the trace simulator: with another process taking 2 GiB a second, shedding only
  // the shortfall at each reading fell behind (demands are applied between steps) and the host
  // crossed the OS reserve. Growth over pressure_lead (2 s) now counts as taken already.
  Fixture f(/*budget=*/0, 0, /*os_reserve=*/1ull << 30);
  // 64 GiB, 32 GiB available (the fixture's machine), and a model caching 4 GiB of KV.
  f.machine.resident = 0;
  ScriptedModel& a = f.load("a", 0, 0, true, 0, 8ull << 30);
  REQUIRE(a.grow(2048));
  f.machine.available -= 4ull << 30;
  *f.machine.resident += 4ull << 30;
  a.cache(2048);
  f.clock.advance(std::chrono::milliseconds(1000));
  f.governor.refresh();
  CHECK(a.demands.empty());
  // The host takes 1 GiB in a second: 26 GiB free above the reserve, 2 GiB over the lead.
  f.machine.available -= 1ull << 30;
  f.clock.advance(std::chrono::milliseconds(1000));
  f.governor.refresh();
  CHECK(a.demands.empty());
  // Then 14 GiB in a second: 12 GiB is still free, but the next 2 s at that rate take 28.
  f.machine.available -= 14ull << 30;
  f.clock.advance(std::chrono::milliseconds(1000));
  f.governor.refresh();
  CHECK_FALSE(f.governor.snapshot().under_pressure);
  REQUIRE_FALSE(a.demands.empty());
  CHECK(a.demands[0].prefix_cache_bytes == 4ull << 30);
  a.apply();
  *f.machine.resident = a.held() * G;
  f.machine.available = (64ull << 30) - (47ull << 30) - *f.machine.resident;
  // The host stops growing: no more shedding.
  f.clock.advance(std::chrono::milliseconds(1000));
  f.governor.refresh();
  CHECK(a.demands.empty());
  f.invariants();
}

TEST_CASE("governor: keep_alive evicts an idle on_demand model, never a busy one", "[governor]") {
  Fixture f(100 * kMiB);
  ModelAccountOptions o;
  o.name = "brief";
  o.pinned = false;
  o.keep_alive = std::chrono::seconds(5);
  LoadEstimate e;
  e.weights_bytes = 10 * kMiB;
  auto d = f.governor.try_begin_load(o, e);
  REQUIRE(d.admission == MemoryGovernor::Admission::kAdmitted);
  f.governor.finish_load(d.account, e.weights_bytes, 0, 0.1);
  f.governor.set_busy(d.account, true);
  f.clock.advance(seconds(10));
  f.governor.refresh();
  CHECK(f.evictor.evicted.empty());       // busy
  f.governor.set_busy(d.account, false);  // idle from now
  f.clock.advance(seconds(4));
  f.governor.refresh();
  CHECK(f.evictor.evicted.empty());
  f.clock.advance(seconds(2));
  f.governor.refresh();
  REQUIRE(f.evictor.evicted.size() == 1);
  CHECK(f.governor.snapshot().counters.evictions["keep_alive"] == 1);
  CHECK(f.governor.snapshot().accounts.empty());
}

TEST_CASE("governor: PSI full stalls hold growth", "[governor]") {
  Fixture f(100 * kMiB);
  ScriptedModel& a = f.load("a", 0);
  MemoryPressure p;
  p.full.avg10 = 25.0;
  f.machine.psi = p;
  f.governor.refresh();
  CHECK(f.governor.snapshot().under_pressure);
  CHECK_FALSE(a.grow(1));
  f.machine.psi->full.avg10 = 0.5;
  f.governor.refresh();
  CHECK(a.grow(1));
}

TEST_CASE("governor: an applied demand ends at once, even if it freed less than asked",
          "[governor]") {
  Fixture f(40 * kMiB);
  ScriptedModel& a = f.load("a", 0, /*priority=*/5);
  ScriptedModel& b = f.load("b", 0, /*priority=*/0);
  REQUIRE(a.grow(20));
  a.cache(4);             // the governor hears of 8 MiB of cache...
  a.cached_granules = 1;  // ...but fragmentation lets only one granule go
  CHECK_FALSE(b.grow(4));
  REQUIRE(a.demands.size() == 1);
  CHECK(a.demands[0].shrink_kv_to_bytes == ReclaimDemand::kNoShrink);
  a.apply();  // frees 2 MiB, reports, acknowledges
  // Planned again at once (no waiting for the demand to expire): now preemption.
  CHECK_FALSE(b.grow(4));
  REQUIRE(a.demands.size() == 1);
  CHECK(a.demands[0].shrink_kv_to_bytes != ReclaimDemand::kNoShrink);
}

TEST_CASE("governor: an unanswered demand expires and is planned again", "[governor]") {
  Fixture f(40 * kMiB);
  ScriptedModel& a = f.load("a", 0);
  ScriptedModel& b = f.load("b", 0);
  REQUIRE(a.grow(20));
  a.cache(20);
  CHECK_FALSE(b.grow(5));
  CHECK(a.demands.size() == 1);
  CHECK_FALSE(b.grow(5));  // asked again at once: the first demand is still on its way
  CHECK(a.demands.size() == 1);
  f.clock.advance(seconds(11));
  f.governor.refresh();
  CHECK_FALSE(b.grow(5));
  CHECK(a.demands.size() == 2);
}

TEST_CASE("governor: every granted byte must return before its owner goes", "[governor]") {
  Fixture f(100 * kMiB);
  ScriptedModel& a = f.load("a", 0);
  REQUIRE(a.grow(3));
  f.governor.release_granules(a.id, 3);
  f.governor.set_reclaim_target(a.id, nullptr);
  f.governor.close_account(a.id);
  CHECK(f.governor.snapshot().accounts.empty());
  CHECK(f.governor.snapshot().reserved_bytes == 0);
}

TEST_CASE("governor: randomized grants, releases, loads and pressure keep the invariants",
          "[governor]") {
  std::mt19937 rng(20261202);
  Fixture f(/*budget=*/512 * kMiB, 16 * kMiB, /*os_reserve=*/1ull << 30);
  f.machine.available = 2ull << 30;
  f.governor.refresh();
  std::vector<ScriptedModel*> live;
  std::map<ConsumerId, bool> pinned;
  for (int round = 0; round < 4000; ++round) {
    const int op = static_cast<int>(rng() % 10);
    if (op == 0 && live.size() < 6) {
      ModelAccountOptions o;
      o.name = "m" + std::to_string(round);
      o.priority = static_cast<int32_t>(rng() % 3);
      o.pinned = rng() % 3 == 0;
      o.kv_min_bytes = (rng() % 8) * G;
      o.kv_max_bytes = o.kv_min_bytes + (rng() % 64 + 1) * G;
      LoadEstimate e;
      e.weights_bytes = (rng() % 64) * kMiB;
      auto d = f.governor.try_begin_load(o, e);
      if (d.admission == MemoryGovernor::Admission::kAdmitted) {
        f.governor.finish_load(d.account, e.weights_bytes, 0, 0.5);
        auto m = std::make_unique<ScriptedModel>();
        m->governor = &f.governor;
        m->id = d.account;
        m->kv_min_granules = o.kv_min_bytes / G;
        f.governor.set_reclaim_target(m->id, m.get());
        f.evictor.models[m->id] = m.get();
        pinned[m->id] = o.pinned;
        live.push_back(m.get());
        f.models.push_back(std::move(m));
      }
    } else if (op <= 4 && !live.empty()) {
      ScriptedModel& m = *live[rng() % live.size()];
      m.grow(rng() % 8 + 1);
      m.cache(m.held() / 2);
    } else if (op == 5 && !live.empty()) {
      ScriptedModel& m = *live[rng() % live.size()];
      const uint64_t n = m.held() == 0 ? 0 : rng() % (m.held() + 1);
      f.governor.release_granules(m.id, n);
      m.cached_granules = std::min(m.cached_granules, m.held());
      m.report();
    } else if (op == 6) {
      for (ScriptedModel* m : live) m->apply();
    } else if (op == 7) {
      f.machine.available = (rng() % 3 + 1) * (600 * kMiB);
      f.clock.advance(milliseconds(250));
      f.governor.refresh();
    } else if (op == 8 && !live.empty()) {
      const size_t i = rng() % live.size();
      f.governor.set_busy(live[i]->id, rng() % 2 == 0);
    } else if (op == 9 && !live.empty()) {
      const size_t i = rng() % live.size();
      ScriptedModel& m = *live[i];
      if (!pinned[m.id]) {
        f.governor.release_granules(m.id, m.held());
        f.governor.set_reclaim_target(m.id, nullptr);
        f.evictor.models.erase(m.id);
        f.governor.close_account(m.id);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    // Drop models the evictor unloaded.
    std::erase_if(live, [&](ScriptedModel* m) {
      for (ConsumerId e : f.evictor.evicted) {
        if (e == m->id) return true;
      }
      return false;
    });
    for (ConsumerId e : f.evictor.evicted) {
      INFO("round " << round);
      CHECK_FALSE(pinned[e]);  // a pinned model is never evicted
      f.evictor.models.erase(e);
    }
    f.evictor.evicted.clear();
    const LedgerSnapshot s = f.governor.snapshot();
    for (const AccountFigures& a : s.accounts) {
      INFO("round " << round << " " << a.name);
      REQUIRE(a.kv_granted_bytes <= a.kv_max_bytes);
    }
    if (s.reclaim_pending_bytes == 0 && !s.under_pressure) {
      INFO("round " << round);
      REQUIRE(s.reserved_bytes <= s.budget_bytes);
    }
  }
  // Everyone leaves: the ledger is back to the baseline.
  for (ScriptedModel* m : live) {
    f.governor.release_granules(m->id, m->held());
    f.governor.set_reclaim_target(m->id, nullptr);
    f.governor.close_account(m->id);
  }
  const LedgerSnapshot s = f.governor.snapshot();
  CHECK(s.accounts.empty());
  CHECK(s.held_bytes == 16 * kMiB);
}

TEST_CASE("reclaim policy: cache by weighted idle time, then preemption, then eviction",
          "[governor]") {
  const TimePoint now = TimePoint{} + std::chrono::hours(1);
  std::vector<AccountView> views(3);
  views[0].id = 1;
  views[0].priority = 0;
  views[0].prefix_cached_bytes = 10 * kMiB;
  views[0].kv_granted_bytes = 10 * kMiB;
  views[0].last_used = now - seconds(100);
  views[1].id = 2;
  views[1].priority = 2;  // less important: its cache goes first though used more recently
  views[1].prefix_cached_bytes = 10 * kMiB;
  views[1].kv_granted_bytes = 50 * kMiB;
  views[1].kv_min_bytes = 20 * kMiB;
  views[1].last_used = now - seconds(30);
  views[2].id = 3;
  views[2].priority = 2;
  views[2].pinned = false;
  views[2].weights_bytes = 100 * kMiB;
  views[2].last_used = now - seconds(600);
  Requester r;
  r.priority = 1;
  ReclaimPlan plan = plan_reclaim(views, r, 15 * kMiB, now);
  REQUIRE(plan.actions.size() == 2);
  CHECK(plan.actions[0].victim == 2);
  CHECK(plan.actions[0].kind == ReclaimKind::kPrefixCache);
  CHECK(plan.actions[1].victim == 1);
  CHECK(plan.covers_shortfall);
  plan = plan_reclaim(views, r, 35 * kMiB, now);
  REQUIRE(plan.actions.size() == 3);
  CHECK(plan.actions[2].kind == ReclaimKind::kPreempt);
  CHECK(plan.actions[2].victim == 2);
  CHECK(plan.actions[2].shrink_to_bytes == 25 * kMiB);  // 50 - 10 cache - 15 preempted
  plan = plan_reclaim(views, r, 80 * kMiB, now);
  CHECK(plan.covers_shortfall);
  CHECK(plan.actions.back().kind == ReclaimKind::kEvict);
  CHECK(plan.actions.back().victim == 3);
  plan = plan_reclaim(views, r, 500 * kMiB, now);
  CHECK_FALSE(plan.covers_shortfall);
  for (const ReclaimAction& a : plan.actions) CHECK(a.kind != ReclaimKind::kEvict);
}

TEST_CASE("reclaim policy: a requester with cache of its own reuses it before anyone is preempted",
          "[governor]") {
  // Found by the trace simulator (rag-office: 339 preemptions where the baselines had 15): a
  // model whose grant was refused reuses its own least recently used cache blocks, yet the
  // plan also preempted less important models' running sequences for the same bytes.
  const TimePoint now = TimePoint{} + std::chrono::hours(1);
  std::vector<AccountView> views(3);
  views[0].id = 1;  // the requester, 30 MiB of its KV unreferenced cache
  views[0].prefix_cached_bytes = 30 * kMiB;
  views[0].kv_granted_bytes = 60 * kMiB;
  views[0].last_used = now;
  views[1].id = 2;  // less important, 5 MiB cache, 40 MiB above kv_min
  views[1].priority = 1;
  views[1].prefix_cached_bytes = 5 * kMiB;
  views[1].kv_granted_bytes = 45 * kMiB;
  views[1].last_used = now - seconds(10);
  views[2].id = 3;  // an idle on_demand model
  views[2].priority = 1;
  views[2].pinned = false;
  views[2].weights_bytes = 100 * kMiB;
  views[2].last_used = now - seconds(600);
  Requester r;
  r.id = 1;
  ReclaimPlan plan = plan_reclaim(views, r, 20 * kMiB, now);
  // The other's cache (idle longer) still goes first; then the requester's own covers it.
  REQUIRE(plan.actions.size() == 1);
  CHECK(plan.actions[0].kind == ReclaimKind::kPrefixCache);
  CHECK(plan.actions[0].victim == 2);
  CHECK(plan.covers_shortfall);
  // Beyond its own cache, preemption and eviction are planned as before.
  plan = plan_reclaim(views, r, 80 * kMiB, now);
  bool preempts = false;
  for (const ReclaimAction& a : plan.actions) preempts |= a.kind == ReclaimKind::kPreempt;
  CHECK(preempts);
  // The host is not a model: nothing of its own to reuse.
  Requester host;
  host.host = true;
  plan = plan_reclaim(views, host, 20 * kMiB, now);
  CHECK(plan.planned_bytes >= 20 * kMiB);
}

TEST_CASE("reclaim policy: under host pressure, busy on_demand models go last, never for a model",
          "[governor]") {
  // Found by the trace simulator (pressure-mix, seeds 2 and 5): with every on_demand model
  // busy and all KV above kv_min shed, the host crossed MemTotal. A wedged host ends every
  // request; evicting a busy on_demand model ends its own.
  const TimePoint now = TimePoint{} + std::chrono::hours(1);
  std::vector<AccountView> views(3);
  views[0].id = 1;  // pinned, busy
  views[0].weights_bytes = 500 * kMiB;
  views[0].busy = true;
  views[1].id = 2;  // on_demand, busy, less important
  views[1].pinned = false;
  views[1].busy = true;
  views[1].priority = 2;
  views[1].weights_bytes = 300 * kMiB;
  views[1].kv_granted_bytes = 20 * kMiB;
  views[1].last_used = now;
  views[2].id = 3;  // on_demand, busy, more important
  views[2].pinned = false;
  views[2].busy = true;
  views[2].priority = 1;
  views[2].weights_bytes = 300 * kMiB;
  views[2].last_used = now;
  Requester host;
  host.host = true;
  ReclaimPlan plan = plan_reclaim(views, host, 100 * kMiB, now);
  // Its KV first (preemption), then the least important busy model: one is enough.
  REQUIRE_FALSE(plan.actions.empty());
  const ReclaimAction& last = plan.actions.back();
  CHECK(last.kind == ReclaimKind::kEvict);
  CHECK(last.victim == 2);
  CHECK(last.busy);
  CHECK(plan.covers_shortfall);
  size_t evictions = 0;
  for (const ReclaimAction& a : plan.actions) evictions += a.kind == ReclaimKind::kEvict;
  CHECK(evictions == 1);
  // A model's request never evicts a busy model.
  Requester model;
  model.id = 1;
  plan = plan_reclaim(views, model, 100 * kMiB, now);
  for (const ReclaimAction& a : plan.actions) CHECK(a.kind != ReclaimKind::kEvict);
  // An idle on_demand model would have gone first, not busy.
  views[2].busy = false;
  plan = plan_reclaim(views, host, 100 * kMiB, now);
  CHECK(plan.actions.back().victim == 3);
  CHECK_FALSE(plan.actions.back().busy);
}

TEST_CASE("reclaim policy: the eviction score prefers big, cheap to reload, long idle",
          "[governor]") {
  const TimePoint now = TimePoint{} + std::chrono::hours(1);
  AccountView a;
  a.weights_bytes = 1000 * kMiB;
  a.reload_seconds = 1;
  a.last_used = now;
  AccountView slow = a;
  slow.reload_seconds = 10;
  AccountView stale = a;
  stale.last_used = now - std::chrono::minutes(10);
  CHECK(eviction_score(a, now) > eviction_score(slow, now));
  CHECK(eviction_score(stale, now) > eviction_score(a, now));
}

}  // namespace
