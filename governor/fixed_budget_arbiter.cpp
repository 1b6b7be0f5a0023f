#include "governor/fixed_budget_arbiter.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>

namespace sparkd::governor {

bool FixedBudgetArbiter::grant_granules(ConsumerId consumer, uint64_t granules) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Written as a subtraction so a huge request cannot overflow the sum and slip through.
  if (granules > budget_granules_ - total_granted_granules_) return false;
  if (granules == 0) return true;
  total_granted_granules_ += granules;
  held_[consumer] += granules;
  return true;
}

void FixedBudgetArbiter::release_granules(ConsumerId consumer, uint64_t granules) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (granules == 0) return;
  const auto it = held_.find(consumer);
  const uint64_t held = it == held_.end() ? 0 : it->second;
  if (granules > held) {
    std::fprintf(stderr,
                 "sparkd: FixedBudgetArbiter: consumer %" PRIu32 " released %" PRIu64
                 " granules but holds %" PRIu64 "\n",
                 consumer, granules, held);
    std::abort();
  }
  total_granted_granules_ -= granules;
  if (granules == held) {
    held_.erase(it);
  } else {
    it->second -= granules;
  }
}

uint64_t FixedBudgetArbiter::granted_granules(ConsumerId consumer) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = held_.find(consumer);
  return it == held_.end() ? 0 : it->second;
}

uint64_t FixedBudgetArbiter::total_granted_granules() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return total_granted_granules_;
}

}  // namespace sparkd::governor
