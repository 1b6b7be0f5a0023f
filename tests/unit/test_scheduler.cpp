// The continuous-batching scheduler's bookkeeping: token budget and sequence cap, decodes
// before prefill, chunked prefill, priority classes, prefix-cache admission, preemption by
// recompute when blocks run out, and blocks returned when sequences end.
#include <catch2/catch.hpp>
#include <numeric>
#include <vector>

#include "engine/kv/prefix_cache.h"
#include "engine/sched/scheduler.h"
#include "tests/support/lowest_first_block_source.h"

namespace {

using sparkd::sched::RequestId;
using sparkd::sched::Scheduler;
using sparkd::sched::SchedulerConfig;
using sparkd::sched::StepPlan;

constexpr int32_t kBlockTokens = 4;

std::vector<int32_t> prompt_of(int32_t first, int32_t length) {
  std::vector<int32_t> p(static_cast<size_t>(length));
  std::iota(p.begin(), p.end(), first);
  return p;
}

// Runs a plan as a runner would, "sampling" token 1000 + request id for every sampling chunk.
void run(Scheduler& scheduler, const StepPlan& plan) {
  std::vector<int32_t> sampled;
  for (const auto& chunk : plan.chunks) {
    if (chunk.samples) sampled.push_back(1000 + static_cast<int32_t>(chunk.id));
  }
  scheduler.complete(plan, sampled);
}

int32_t tokens_for(const StepPlan& plan, RequestId id) {
  for (const auto& chunk : plan.chunks) {
    if (chunk.id == id) return chunk.count;
  }
  return 0;
}

}  // namespace

TEST_CASE("decodes go first, prefill is chunked to fit the token budget", "[scheduler]") {
  sparkd::testing::LowestFirstSource source(64);
  sparkd::kv::PrefixCache cache(source, kBlockTokens, /*caching_enabled=*/false);
  Scheduler scheduler({/*max_batch_tokens=*/16, /*max_seqs=*/8}, cache);
  scheduler.add(1, prompt_of(0, 10));
  scheduler.add(2, prompt_of(100, 10));
  scheduler.add(3, prompt_of(200, 10));

  StepPlan first = scheduler.schedule();
  CHECK(tokens_for(first, 1) == 10);
  CHECK(tokens_for(first, 2) == 6);  // the rest of the budget: a chunk
  CHECK(tokens_for(first, 3) == 0);
  CHECK(first.total_tokens == 16);
  CHECK(first.chunks[0].samples);
  CHECK_FALSE(first.chunks[1].samples);
  run(scheduler, first);
  CHECK(scheduler.find(1)->tokens.back() == 1001);

  StepPlan second = scheduler.schedule();
  REQUIRE(second.chunks.size() == 3);
  CHECK(second.chunks[0].id == 1);  // decode of request 1
  CHECK(second.chunks[0].count == 1);
  CHECK(second.chunks[0].begin == 10);
  CHECK(second.chunks[1].id == 2);  // the rest of request 2's prompt
  CHECK(second.chunks[1].begin == 6);
  CHECK(second.chunks[1].count == 4);
  CHECK(second.chunks[1].samples);
  CHECK(tokens_for(second, 3) == 10 - 0);  // 16 - 1 - 4 = 11 >= 10
  run(scheduler, second);
  CHECK(scheduler.running() == 3);
}

TEST_CASE("the sequence cap and priority classes decide admission", "[scheduler]") {
  sparkd::testing::LowestFirstSource source(64);
  sparkd::kv::PrefixCache cache(source, kBlockTokens, false);
  Scheduler scheduler({/*max_batch_tokens=*/100, /*max_seqs=*/2}, cache);
  scheduler.add(1, prompt_of(0, 3), /*priority=*/1);
  scheduler.add(2, prompt_of(10, 3), /*priority=*/1);
  scheduler.add(3, prompt_of(20, 3), /*priority=*/0);  // arrives last, runs first
  StepPlan plan = scheduler.schedule();
  REQUIRE(plan.chunks.size() == 2);
  CHECK(plan.chunks[0].id == 3);
  CHECK(plan.chunks[1].id == 1);  // then first come, first served
  CHECK(scheduler.waiting() == 1);
  run(scheduler, plan);
  scheduler.finish(3);
  plan = scheduler.schedule();
  CHECK(tokens_for(plan, 2) == 3);  // the freed seat goes to the next in line
}

TEST_CASE("a request sharing a cached prefix computes only the rest", "[scheduler]") {
  sparkd::testing::LowestFirstSource source(64);
  sparkd::kv::PrefixCache cache(source, kBlockTokens);
  Scheduler scheduler({100, 8}, cache);
  std::vector<int32_t> system = prompt_of(0, 12);  // three full blocks
  std::vector<int32_t> a = system, b = system;
  a.push_back(500);
  b.push_back(600);
  scheduler.add(1, a);
  run(scheduler, scheduler.schedule());
  scheduler.add(2, b);
  StepPlan plan = scheduler.schedule();
  REQUIRE(plan.chunks.size() == 2);
  CHECK(plan.chunks[1].id == 2);
  CHECK(plan.chunks[1].begin == 12);  // 3 blocks from the cache
  CHECK(plan.chunks[1].count == 1);
  CHECK(plan.cached_prefix_tokens == 12);
  CHECK(scheduler.find(2)->block_table[0] == scheduler.find(1)->block_table[0]);
  run(scheduler, plan);
  CHECK(scheduler.stats().cached_prefix_tokens == 12);
}

TEST_CASE("out of blocks, the newest sequence is preempted and later recomputed", "[scheduler]") {
  // 6 blocks of 4 tokens: two sequences of 8-token prompts fit (2 blocks each); as they
  // decode they need more, and the newer one must yield.
  sparkd::testing::LowestFirstSource source(6);
  sparkd::kv::PrefixCache cache(source, kBlockTokens, false);
  Scheduler scheduler({100, 8}, cache);
  scheduler.add(1, prompt_of(0, 8));
  scheduler.add(2, prompt_of(100, 8));
  run(scheduler, scheduler.schedule());  // both prefilled; each sampled one token
  bool preempted = false;
  for (int step = 0; step < 12 && !preempted; ++step) {
    StepPlan plan = scheduler.schedule();
    if (!plan.preempted.empty()) {
      CHECK(plan.preempted == std::vector<RequestId>{2});
      CHECK(tokens_for(plan, 1) == 1);  // the older one keeps decoding
      preempted = true;
    }
    run(scheduler, plan);
  }
  REQUIRE(preempted);
  CHECK(scheduler.stats().preemptions == 1);
  const auto* victim = scheduler.find(2);
  CHECK_FALSE(victim->running);
  CHECK(victim->block_table.empty());
  CHECK(victim->tokens.size() > 8);  // its output so far is kept, to be recomputed
  const size_t victim_tokens = victim->tokens.size();

  scheduler.finish(1);
  StepPlan plan = scheduler.schedule();
  REQUIRE(plan.chunks.size() == 1);
  CHECK(plan.chunks[0].id == 2);
  CHECK(plan.chunks[0].begin == 0);  // recompute prompt + output so far, in one prefill
  CHECK(plan.chunks[0].count == static_cast<int32_t>(victim_tokens));
  CHECK(plan.chunks[0].samples);
  run(scheduler, plan);
  scheduler.finish(2);
  CHECK(source.free_blocks() == 6);
}

TEST_CASE("a sequence that can never fit waits, finishing frees every block", "[scheduler]") {
  sparkd::testing::LowestFirstSource source(2);
  sparkd::kv::PrefixCache cache(source, kBlockTokens, false);
  Scheduler scheduler({100, 8}, cache);
  scheduler.add(7, prompt_of(0, 20));  // needs 5 blocks
  StepPlan plan = scheduler.schedule();
  CHECK(plan.empty());
  CHECK(scheduler.waiting() == 1);
  CHECK(source.free_blocks() == 2);  // nothing held while it waits
  scheduler.finish(7);
  CHECK(scheduler.waiting() == 0);
}

TEST_CASE("a sequence finished while its step ran is skipped when the step completes",
          "[scheduler]") {
  sparkd::testing::LowestFirstSource source(16);
  sparkd::kv::PrefixCache cache(source, kBlockTokens, false);
  Scheduler scheduler({100, 8}, cache);
  scheduler.add(1, prompt_of(0, 5));
  scheduler.add(2, prompt_of(50, 5));
  StepPlan plan = scheduler.schedule();
  scheduler.finish(1);  // cancelled mid-step
  run(scheduler, plan);
  CHECK(scheduler.find(1) == nullptr);
  CHECK(scheduler.find(2)->tokens.back() == 1002);  // its own sample, not request 1's
  scheduler.finish(2);
  CHECK(source.free_blocks() == 16);
}
