// The reclaim policy: which memory to take back, from whom, and in what order, when a grant,
// a load or the host needs more than is free. A pure function of the ledger's figures and the
// time, so the trace simulator of bench/ drives exactly the code the daemon runs.
//
// Order (docs/architecture.md, "The memory governor"):
//  1. unreferenced prefix cache of other models: the model idle longest first, its idle time
//     weighted by how much less important it is than the most important one;
//  2. KV above kv_min of models less important than the requester (larger priority value),
//     the least important first, by preempting their newest sequences;
//  3. idle on_demand models (resident, not loading, nothing in flight or queued), as
//     important as the requester or less, the least important first, then by eviction score.
// Under host pressure the requester is the host itself: every model is less important.
// Evictions are planned only when the whole plan covers the shortfall (a model is never
// unloaded for a request that would still not fit), except under host pressure, where every
// byte shed helps; and there, as the last resort before the host runs out of memory:
//  4. busy on_demand models, the least important first, then by eviction score: their
//     requests end with UNAVAILABLE (a wedged host would end them all).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "governor/memory_arbiter.h"

namespace sparkd::governor {

using TimePoint = std::chrono::steady_clock::time_point;

// What the policy knows of one model.
struct AccountView {
  ConsumerId id = 0;
  std::string name;
  int32_t priority = 0;  // lower = more important
  bool pinned = true;
  bool loading = false;
  bool busy = false;  // requests in flight or queued
  uint64_t weights_bytes = 0;
  uint64_t workspace_bytes = 0;
  uint64_t kv_granted_bytes = 0;
  uint64_t kv_min_bytes = 0;
  uint64_t prefix_cached_bytes = 0;  // within kv_granted_bytes
  TimePoint last_used{};
  double reload_seconds = 0;  // what loading it again would cost, measured or estimated

  uint64_t resident_bytes() const { return weights_bytes + workspace_bytes + kv_granted_bytes; }
  bool evictable() const { return !pinned && !loading && !busy; }
};

enum class ReclaimKind { kPrefixCache, kPreempt, kEvict };
const char* reclaim_kind_name(ReclaimKind kind);  // "prefix_cache", "preempt", "evict"

struct ReclaimAction {
  ReclaimKind kind = ReclaimKind::kPrefixCache;
  ConsumerId victim = 0;
  uint64_t bytes = 0;  // what it should free
  // kPreempt: the victim's KV after the action.
  uint64_t shrink_to_bytes = 0;
  // kEvict of a model with requests in flight (host pressure only): they are cancelled.
  bool busy = false;
};

struct Requester {
  std::optional<ConsumerId> id;  // none: the host, or a model not loaded yet
  int32_t priority = 0;
  bool host = false;  // host pressure: every model counts as less important
};

struct ReclaimPlan {
  std::vector<ReclaimAction> actions;
  uint64_t planned_bytes = 0;
  bool covers_shortfall = false;
};

ReclaimPlan plan_reclaim(std::span<const AccountView> accounts, const Requester& requester,
                         uint64_t shortfall_bytes, TimePoint now);

// Among idle on_demand models of the same priority, the one with the highest score goes
// first: score = bytes freed / reload seconds x (1 + idle minutes). Big, cheap to reload and
// long unused goes first; a model just used, or slow to bring back, stays.
double eviction_score(const AccountView& account, TimePoint now);

}  // namespace sparkd::governor
