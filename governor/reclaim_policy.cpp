#include "governor/reclaim_policy.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

namespace sparkd::governor {

namespace {

double idle_seconds(const AccountView& a, TimePoint now) {
  return std::max(0.0, std::chrono::duration<double>(now - a.last_used).count());
}

bool is_requester(const AccountView& a, const Requester& r) {
  return r.id && *r.id == a.id;
}

bool less_important(const AccountView& a, const Requester& r) {
  return r.host || a.priority > r.priority;
}

}  // namespace

const char* reclaim_kind_name(ReclaimKind kind) {
  switch (kind) {
    case ReclaimKind::kPrefixCache:
      return "prefix_cache";
    case ReclaimKind::kPreempt:
      return "preempt";
    case ReclaimKind::kEvict:
      return "evict";
  }
  return "unknown";
}

double eviction_score(const AccountView& account, TimePoint now) {
  const double reload = std::max(account.reload_seconds, 0.01);
  return static_cast<double>(account.resident_bytes()) / reload *
         (1.0 + idle_seconds(account, now) / 60.0);
}

ReclaimPlan plan_reclaim(std::span<const AccountView> accounts, const Requester& requester,
                         uint64_t shortfall_bytes, TimePoint now) {
  ReclaimPlan plan;
  if (shortfall_bytes == 0) {
    plan.covers_shortfall = true;
    return plan;
  }
  int32_t top_priority = std::numeric_limits<int32_t>::max();
  for (const AccountView& a : accounts) top_priority = std::min(top_priority, a.priority);
  auto add = [&](ReclaimKind kind, const AccountView& a, uint64_t bytes, uint64_t shrink_to) {
    plan.actions.push_back({kind, a.id, bytes, shrink_to});
    plan.planned_bytes += bytes;
  };
  std::function<bool()> covered = [&] { return plan.planned_bytes >= shortfall_bytes; };

  // 1. Prefix cache: idle time weighted by priority (each step less important doubles it,
  // capped so a huge priority value cannot overflow the weight).
  std::vector<const AccountView*> caches;
  for (const AccountView& a : accounts) {
    if (!is_requester(a, requester) && !a.loading && a.prefix_cached_bytes > 0) {
      caches.push_back(&a);
    }
  }
  auto weighted_idle = [&](const AccountView* a) {
    const double steps = std::min<double>(static_cast<double>(a->priority) - top_priority, 30.0);
    return (1.0 + idle_seconds(*a, now)) * std::pow(2.0, steps);
  };
  std::stable_sort(caches.begin(), caches.end(), [&](const AccountView* x, const AccountView* y) {
    return weighted_idle(x) > weighted_idle(y);
  });
  for (const AccountView* a : caches) {
    if (covered()) break;
    add(ReclaimKind::kPrefixCache, *a,
        std::min(a->prefix_cached_bytes, shortfall_bytes - plan.planned_bytes), 0);
  }

  // The requester's own cache: a refused grant makes its prefix cache reuse its least
  // recently used blocks, so that much needs no one else's running sequences or residency.
  uint64_t own_cache = 0;
  for (const AccountView& a : accounts) {
    if (is_requester(a, requester)) own_cache = a.prefix_cached_bytes;
  }
  const uint64_t beyond_own = shortfall_bytes > own_cache ? shortfall_bytes - own_cache : 0;
  covered = [&] { return plan.planned_bytes >= beyond_own; };

  // 2. KV above kv_min of less important models: the least important first, then the one
  // holding most above its minimum. Their cache was counted in step 1 already.
  std::vector<const AccountView*> preemptible;
  for (const AccountView& a : accounts) {
    if (is_requester(a, requester) || a.loading || !less_important(a, requester)) continue;
    if (a.kv_granted_bytes > a.kv_min_bytes + a.prefix_cached_bytes) preemptible.push_back(&a);
  }
  std::stable_sort(
      preemptible.begin(), preemptible.end(), [](const AccountView* x, const AccountView* y) {
        if (x->priority != y->priority) return x->priority > y->priority;
        return x->kv_granted_bytes - x->kv_min_bytes > y->kv_granted_bytes - y->kv_min_bytes;
      });
  for (const AccountView* a : preemptible) {
    if (covered()) break;
    const uint64_t above = a->kv_granted_bytes - a->kv_min_bytes - a->prefix_cached_bytes;
    const uint64_t take = std::min(above, beyond_own - plan.planned_bytes);
    add(ReclaimKind::kPreempt, *a, take, a->kv_granted_bytes - a->prefix_cached_bytes - take);
  }

  // 3. Idle on_demand models. An eviction frees everything the model holds, so whatever
  // steps 1 and 2 planned for it is replaced by the eviction.
  std::vector<const AccountView*> idle;
  for (const AccountView& a : accounts) {
    if (is_requester(a, requester) || !a.evictable()) continue;
    if (!requester.host && a.priority < requester.priority) continue;
    idle.push_back(&a);
  }
  std::stable_sort(idle.begin(), idle.end(), [&](const AccountView* x, const AccountView* y) {
    if (x->priority != y->priority) return x->priority > y->priority;
    return eviction_score(*x, now) > eviction_score(*y, now);
  });
  const uint64_t before_evictions = plan.planned_bytes;
  std::vector<ReclaimAction> evictions;
  for (const AccountView* a : idle) {
    if (covered()) break;
    uint64_t already = 0;  // planned for it in steps 1 and 2
    for (const ReclaimAction& action : plan.actions) {
      if (action.victim == a->id) already += action.bytes;
    }
    plan.planned_bytes += a->resident_bytes() - already;
    evictions.push_back({ReclaimKind::kEvict, a->id, a->resident_bytes(), 0});
  }
  // 4. Host pressure only, when nothing idle is left: busy on_demand models.
  if (!covered() && requester.host) {
    std::vector<const AccountView*> busy;
    for (const AccountView& a : accounts) {
      if (!a.pinned && !a.loading && a.busy) busy.push_back(&a);
    }
    std::stable_sort(busy.begin(), busy.end(), [&](const AccountView* x, const AccountView* y) {
      if (x->priority != y->priority) return x->priority > y->priority;
      return eviction_score(*x, now) > eviction_score(*y, now);
    });
    for (const AccountView* a : busy) {
      if (covered()) break;
      uint64_t already = 0;
      for (const ReclaimAction& action : plan.actions) {
        if (action.victim == a->id) already += action.bytes;
      }
      plan.planned_bytes += a->resident_bytes() - std::min(already, a->resident_bytes());
      evictions.push_back({ReclaimKind::kEvict, a->id, a->resident_bytes(), 0, /*busy=*/true});
    }
  }
  plan.covers_shortfall = covered();
  if (!plan.covers_shortfall && !requester.host) {
    // Unloading models would not make it fit: keep them. (Under host pressure every byte
    // shed helps: they go.)
    plan.planned_bytes = before_evictions;
    return plan;
  }
  for (const ReclaimAction& e : evictions) {
    std::erase_if(plan.actions, [&](const ReclaimAction& a) { return a.victim == e.victim; });
    plan.actions.push_back(e);
  }
  return plan;
}

}  // namespace sparkd::governor
