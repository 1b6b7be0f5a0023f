// FixedBudgetArbiter: all-or-nothing grants within a fixed budget, per-consumer counts, and
// the budget invariant under concurrent grant/release.

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "governor/fixed_budget_arbiter.h"
#include "tests/support/check_aborts.h"

namespace {

using sparkd::governor::ConsumerId;
using sparkd::governor::FixedBudgetArbiter;

TEST_CASE("fixed budget arbiter: grants up to the budget and refuses beyond", "[governor]") {
  FixedBudgetArbiter arbiter(10);
  CHECK(arbiter.budget_granules() == 10);
  CHECK(arbiter.grant_granules(1, 4));
  CHECK(arbiter.grant_granules(1, 6));
  CHECK(arbiter.total_granted_granules() == 10);
  // All or nothing: a refused grant changes nothing.
  CHECK_FALSE(arbiter.grant_granules(1, 1));
  CHECK_FALSE(arbiter.grant_granules(2, 1));
  CHECK(arbiter.granted_granules(1) == 10);
  CHECK(arbiter.granted_granules(2) == 0);
  CHECK(arbiter.total_granted_granules() == 10);
  // Zero is always grantable, even when full.
  CHECK(arbiter.grant_granules(2, 0));
  CHECK(arbiter.granted_granules(2) == 0);
}

TEST_CASE("fixed budget arbiter: a request larger than what is left is refused whole",
          "[governor]") {
  FixedBudgetArbiter arbiter(8);
  REQUIRE(arbiter.grant_granules(1, 5));
  CHECK_FALSE(arbiter.grant_granules(2, 4));
  CHECK(arbiter.granted_granules(2) == 0);
  CHECK(arbiter.grant_granules(2, 3));
  // Would overflow a naive `total + granules <= budget`.
  CHECK_FALSE(arbiter.grant_granules(3, UINT64_MAX));
  CHECK(arbiter.total_granted_granules() == 8);
}

TEST_CASE("fixed budget arbiter: release frees room for others", "[governor]") {
  FixedBudgetArbiter arbiter(6);
  REQUIRE(arbiter.grant_granules(1, 6));
  CHECK_FALSE(arbiter.grant_granules(2, 2));
  arbiter.release_granules(1, 2);
  CHECK(arbiter.granted_granules(1) == 4);
  CHECK(arbiter.grant_granules(2, 2));
  arbiter.release_granules(1, 4);
  arbiter.release_granules(2, 2);
  CHECK(arbiter.granted_granules(1) == 0);
  CHECK(arbiter.granted_granules(2) == 0);
  CHECK(arbiter.total_granted_granules() == 0);
}

TEST_CASE("fixed budget arbiter: counts per consumer", "[governor]") {
  FixedBudgetArbiter arbiter(100);
  REQUIRE(arbiter.grant_granules(7, 3));
  REQUIRE(arbiter.grant_granules(9, 5));
  REQUIRE(arbiter.grant_granules(7, 2));
  CHECK(arbiter.granted_granules(7) == 5);
  CHECK(arbiter.granted_granules(9) == 5);
  CHECK(arbiter.granted_granules(8) == 0);
  CHECK(arbiter.total_granted_granules() == 10);
  arbiter.release_granules(9, 5);
  CHECK(arbiter.granted_granules(9) == 0);
  CHECK(arbiter.granted_granules(7) == 5);
  CHECK(arbiter.total_granted_granules() == 5);
}

TEST_CASE("fixed budget arbiter: releasing more than held aborts with a message", "[governor]") {
  FixedBudgetArbiter arbiter(10);
  REQUIRE(arbiter.grant_granules(4, 2));
  sparkd::testing::check_aborts([&] { arbiter.release_granules(4, 3); },
                                "consumer 4 released 3 granules but holds 2");
  // The parent's ledger is untouched.
  CHECK(arbiter.granted_granules(4) == 2);
}

TEST_CASE("fixed budget arbiter: concurrent grant and release never exceed the budget",
          "[governor]") {
  constexpr uint64_t kBudget = 64;
  constexpr int kThreads = 8;
  constexpr int kStepsPerThread = 20000;
  FixedBudgetArbiter arbiter(kBudget);
  std::atomic<bool> over_budget{false};
  std::atomic<bool> ledger_mismatch{false};
  std::atomic<int> running{kThreads};
  std::atomic<uint64_t> grants{0}, refusals{0};

  // Watches the total from outside while the workers run.
  std::thread observer([&] {
    while (running.load() > 0) {
      if (arbiter.total_granted_granules() > kBudget) over_budget = true;
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      const auto consumer = static_cast<ConsumerId>(t + 1);
      std::mt19937 rng(static_cast<uint32_t>(1234 + t));
      uint64_t held = 0;
      for (int step = 0; step < kStepsPerThread; ++step) {
        if (held > 0 && rng() % 2 == 0) {
          const uint64_t give_back = 1 + rng() % held;
          arbiter.release_granules(consumer, give_back);
          held -= give_back;
        } else {
          const uint64_t want = 1 + rng() % 12;
          if (arbiter.grant_granules(consumer, want)) {
            held += want;
            ++grants;
          } else {
            ++refusals;
          }
        }
        if (arbiter.total_granted_granules() > kBudget) over_budget = true;
        // Only this thread changes this consumer's count, so it must match exactly.
        if (arbiter.granted_granules(consumer) != held) ledger_mismatch = true;
      }
      arbiter.release_granules(consumer, held);
      --running;
    });
  }
  for (std::thread& worker : workers) worker.join();
  observer.join();

  CHECK_FALSE(over_budget.load());
  CHECK_FALSE(ledger_mismatch.load());
  // The budget was really contended, or the invariant check proved nothing.
  CHECK(grants.load() > 0);
  CHECK(refusals.load() > 0);
  CHECK(arbiter.total_granted_granules() == 0);
  for (int t = 0; t < kThreads; ++t) {
    CHECK(arbiter.granted_granules(static_cast<ConsumerId>(t + 1)) == 0);
  }
}

}  // namespace
