// FixedBudgetArbiter: a MemoryArbiter with a fixed budget and no reclaim policy.
//
// It grants all or nothing while the total over all consumers stays within the budget, and
// keeps a count per consumer. It is what tests, benchmarks and a single-model daemon need;
// the full governor (ledger, priorities, reclaim order) stands behind the same interface.
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "governor/memory_arbiter.h"

namespace sparkd::governor {

// Thread-safe: models' KV caches grant and release from their own threads.
class FixedBudgetArbiter : public MemoryArbiter {
 public:
  explicit FixedBudgetArbiter(uint64_t budget_granules) : budget_granules_(budget_granules) {}

  bool grant_granules(ConsumerId consumer, uint64_t granules) override;
  // Releasing more than `consumer` holds is a ledger bug in the caller: it aborts with a
  // message rather than clamping, because a clamped ledger silently drifts from what is
  // really committed and every later budget decision would rest on it.
  void release_granules(ConsumerId consumer, uint64_t granules) override;
  uint64_t granted_granules(ConsumerId consumer) const override;
  uint64_t max_grantable_granules(ConsumerId) const override { return budget_granules_; }

  uint64_t budget_granules() const { return budget_granules_; }
  // Over all consumers; never above budget_granules().
  uint64_t total_granted_granules() const;

 private:
  const uint64_t budget_granules_;
  mutable std::mutex mutex_;
  uint64_t total_granted_granules_ = 0;            // guarded by mutex_
  std::unordered_map<ConsumerId, uint64_t> held_;  // guarded by mutex_; no zero entries
};

}  // namespace sparkd::governor
