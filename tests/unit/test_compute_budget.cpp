// ComputeBudget: busy models split the daemon's threads evenly, the remainder to the more
// important ones; a model alone gets them all; an idle model stops counting after the busy
// window. Under an injected clock.

#include <catch2/catch.hpp>
#include <chrono>

#include "governor/compute_budget.h"

namespace {

using sparkd::governor::ComputeBudget;
using sparkd::governor::ComputeStep;
using std::chrono::milliseconds;

struct Clock {
  std::chrono::steady_clock::time_point now =
      std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
};

TEST_CASE("compute budget: busy models share the threads, a lone one gets them all",
          "[governor][compute]") {
  Clock clock;
  ComputeBudget budget(8, milliseconds(50), [&] { return clock.now; });
  budget.add_model(1, /*priority=*/0);
  budget.add_model(2, /*priority=*/1);
  budget.add_model(3, /*priority=*/1);
  CHECK(budget.begin_step(1) == 8);  // alone
  CHECK(budget.begin_step(2) == 4);  // 1 is stepping
  budget.end_step(1);
  budget.end_step(2);
  clock.now += milliseconds(10);
  // All three busy (two ended within the window): 8 = 3 + 3 + 2, the remainder to priority 0
  // first, then to the lower id.
  CHECK(budget.begin_step(3) == 2);
  CHECK(budget.share_of(1) == 3);
  CHECK(budget.share_of(2) == 3);
  budget.end_step(3);
  // Past the window nobody else is busy: the next step gets everything.
  clock.now += milliseconds(100);
  CHECK(budget.begin_step(2) == 8);
  budget.end_step(2);
}

TEST_CASE("compute budget: never fewer than one thread, and steps end on scope exit",
          "[governor][compute]") {
  Clock clock;
  ComputeBudget budget(2, milliseconds(50), [&] { return clock.now; });
  for (sparkd::governor::ConsumerId id = 1; id <= 4; ++id) budget.add_model(id, 0);
  {
    const ComputeStep a(&budget, 1);
    const ComputeStep b(&budget, 2);
    const ComputeStep c(&budget, 3);
    CHECK(a.threads() == 2);
    CHECK(b.threads() == 1);
    CHECK(c.threads() == 1);  // three busy on two threads: each keeps one
  }
  clock.now += milliseconds(60);
  CHECK(budget.share_of(4) == 2);
  const ComputeStep none(nullptr, 1);
  CHECK(none.threads() == 0);  // no budget: the backend keeps its own setting
}

}  // namespace
