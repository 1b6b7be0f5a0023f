// Continuous batching end to end on the fixture decoders: scheduler + prefix cache + paged
// KV block pool (real reserved memory, granules granted by an arbiter) + batched forward
// steps. Greedy outputs of many concurrent requests must be
// exactly what each request produces alone, also when a tight KV budget forces preemption
// and when requests share a cached prompt prefix.
#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/kv/kv_block_pool.h"
#include "engine/kv/kv_cache.h"
#include "engine/kv/prefix_cache.h"
#include "engine/kv/recurrent_state_pool.h"
#include "engine/sched/decoder_step.h"
#include "engine/sched/kv_reclaim.h"
#include "engine/sched/scheduler.h"
#include "engine/tasks/loaded_model.h"
#include "governor/fixed_budget_arbiter.h"

namespace {

using sparkd::sched::RequestId;
using sparkd::sched::Scheduler;
using sparkd::sched::SchedulerConfig;

constexpr int32_t kBlockTokens = 4;
constexpr int32_t kNewTokens = 8;

struct Request {
  RequestId id = 0;
  std::vector<int32_t> prompt;
  int step_added = 0;  // the scheduler step before which it arrives
};

struct RunResult {
  std::map<RequestId, std::vector<int32_t>> outputs;
  sparkd::sched::SchedulerStats stats;
  sparkd::kv::PrefixCacheStats cache_stats;
};

// Greedy generation of kNewTokens for every request through the batching machinery.
RunResult generate_all(sparkd::arch::DecoderModel& model, const std::vector<Request>& requests,
                       const SchedulerConfig& config, int32_t num_blocks, bool caching) {
  // Real KV memory: a block pool whose granules the arbiter grants.
  sparkd::governor::FixedBudgetArbiter arbiter(/*budget_granules=*/64);
  const sparkd::KvBlockPoolGeometry geometry = model.kv_pool_geometry(kBlockTokens, num_blocks);
  auto pool = sparkd::KvBlockPool::create(geometry, arbiter, /*consumer=*/1);
  REQUIRE(pool.has_value());
  const sparkd::KvCache kv = pool->cache_view();
  sparkd::kv::PrefixCache cache(*pool, kBlockTokens, caching);
  // Qwen3.5: each running sequence's recurrent state, granted by the same arbiter.
  std::optional<sparkd::RecurrentStatePool> states;
  if (model.recurrent_state_bytes() > 0) {
    states.emplace(model.backend(), model.recurrent_state_bytes(), config.max_seqs, arbiter, 1);
  }
  Scheduler scheduler(config, cache, states ? &*states : nullptr);
  const size_t vocab = static_cast<size_t>(model.spec().vocab_size);
  RunResult result;
  for (int step = 0; result.outputs.size() < requests.size(); ++step) {
    REQUIRE(step < 10000);
    for (const Request& r : requests) {
      if (r.step_added == step) scheduler.add(r.id, r.prompt);
    }
    const auto plan = scheduler.schedule();
    if (plan.empty()) {
      // Nothing runnable: only acceptable while requests are still to arrive.
      REQUIRE(std::any_of(requests.begin(), requests.end(),
                          [&](const Request& r) { return r.step_added > step; }));
      continue;
    }
    auto logits =
        sparkd::sched::run_decoder_step(model, kv, states ? &*states : nullptr, scheduler, plan);
    REQUIRE(logits.has_value());
    std::vector<int32_t> sampled;
    for (size_t row = 0; row * vocab < logits->size(); ++row) {
      const auto begin = logits->begin() + static_cast<std::ptrdiff_t>(row * vocab);
      sampled.push_back(static_cast<int32_t>(
          std::max_element(begin, begin + static_cast<std::ptrdiff_t>(vocab)) - begin));
    }
    scheduler.complete(plan, sampled);
    for (const auto& chunk : plan.chunks) {
      const auto* seq = scheduler.find(chunk.id);
      if (!chunk.samples || seq == nullptr) continue;
      if (static_cast<int32_t>(seq->tokens.size()) - seq->prompt_tokens == kNewTokens) {
        result.outputs[chunk.id].assign(seq->tokens.begin() + seq->prompt_tokens,
                                        seq->tokens.end());
        scheduler.finish(chunk.id);
      }
    }
  }
  result.stats = scheduler.stats();
  result.cache_stats = cache.stats();
  CHECK(scheduler.running() == 0);
  CHECK(scheduler.waiting() == 0);
  cache.reclaim(static_cast<size_t>(num_blocks));
  CHECK(pool->blocks_in_use() == 0);        // every block came back
  CHECK(arbiter.granted_granules(1) == 0);  // and with it every granule
  return result;
}

std::vector<Request> random_requests(int32_t count, int32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> length(1, 40);
  std::uniform_int_distribution<int32_t> token(3, vocab - 1);
  std::vector<Request> requests;
  for (int32_t i = 0; i < count; ++i) {
    Request r;
    r.id = static_cast<RequestId>(i + 1);
    r.prompt.resize(static_cast<size_t>(length(rng)));
    for (int32_t& t : r.prompt) t = token(rng);
    requests.push_back(r);
  }
  return requests;
}

std::map<RequestId, std::vector<int32_t>> each_alone(sparkd::arch::DecoderModel& model,
                                                     const std::vector<Request>& requests) {
  std::map<RequestId, std::vector<int32_t>> outputs;
  for (Request r : requests) {
    r.step_added = 0;
    auto one = generate_all(model, {r}, {512, 1}, 64, false);
    outputs[r.id] = one.outputs.at(r.id);
  }
  return outputs;
}

}  // namespace

TEST_CASE("32 concurrent greedy requests produce exactly what each produces alone", "[batching]") {
  for (const char* name :
       {"llama_f32", "llama_bf16_sharded", "mistral_f32", "qwen2_f32", "qwen3_f32", "qwen3_f16",
        "qwen3_moe_f32", "qwen3_moe_step2_f32", "mixtral_f32", "gpt_oss_f32", "gpt_oss_mxfp4",
        "qwen3_5_moe_f32", "qwen3_next_f32"}) {
    INFO(name);
    auto backend = sparkd::make_cpu_backend();
    auto model = sparkd::tasks::LoadedModel::load(
        std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/models/" + name, *backend);
    REQUIRE(model.has_value());
    auto& decoder = *(*model)->decoder();
    const auto requests = random_requests(32, (*model)->spec().vocab_size, 7);
    const auto alone = each_alone(decoder, requests);

    // Plenty of KV; a small token budget so prefill chunks and decodes share steps.
    const auto together = generate_all(decoder, requests, {64, 32}, 512, false);
    CHECK(together.outputs == alone);
    CHECK(together.stats.preemptions == 0);

    // KV for about half the load: sequences are preempted and recomputed, with the prefix
    // cache on (preempted sequences find their own blocks again; Qwen3.5's recompute from a
    // zeroed recurrent state).
    const auto tight = generate_all(decoder, requests, {64, 32}, 100, true);
    CHECK(tight.outputs == alone);
    CHECK(tight.stats.preemptions > 0);
  }
}

TEST_CASE("a BF16 KV cache (a backend's kv_dtype) serves batched requests as it serves each alone",
          "[batching]") {
  for (const char* name : {"qwen3_f32", "qwen3_5_moe_f32"}) {
    INFO(name);
    sparkd::CpuBackendOptions options;
    options.kv_dtype = sparkd::DType::kBF16;
    auto backend = sparkd::make_cpu_backend(options);
    auto model = sparkd::tasks::LoadedModel::load(
        std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/models/" + name, *backend);
    REQUIRE(model.has_value());
    auto& decoder = *(*model)->decoder();
    const sparkd::KvBlockPoolGeometry geometry = decoder.kv_pool_geometry(kBlockTokens, 8);
    CHECK(geometry.dtype == sparkd::DType::kBF16);
    auto kv = decoder.allocate_kv_cache(kBlockTokens);
    REQUIRE(kv.has_value());
    CHECK(kv->layer(0).keys.dtype == sparkd::DType::kBF16);
    const auto requests = random_requests(12, (*model)->spec().vocab_size, 9);
    const auto alone = each_alone(decoder, requests);
    const auto together = generate_all(decoder, requests, {64, 16}, 512, false);
    CHECK(together.outputs == alone);
  }
}

TEST_CASE("requests sharing a system prompt hit the prefix cache and compute less", "[batching]") {
  // A dense model, the mixtures of experts, and gpt-oss's sinks and sliding windows.
  const char* name =
      GENERATE("qwen3_f32", "qwen3_moe_f32", "mixtral_f32", "gpt_oss_f32", "gpt_oss_mxfp4");
  INFO(name);
  auto backend = sparkd::make_cpu_backend();
  auto model = sparkd::tasks::LoadedModel::load(
      std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/models/" + name, *backend);
  REQUIRE(model.has_value());
  auto& decoder = *(*model)->decoder();
  std::vector<Request> requests = random_requests(8, (*model)->spec().vocab_size, 11);
  const std::vector<int32_t> system = random_requests(1, (*model)->spec().vocab_size, 99)[0].prompt;
  std::vector<int32_t> long_system;
  while (long_system.size() < 32)
    long_system.insert(long_system.end(), system.begin(), system.end());
  long_system.resize(32);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].prompt.insert(requests[i].prompt.begin(), long_system.begin(), long_system.end());
    requests[i].step_added = i == 0 ? 0 : 1;  // the first one fills the cache
  }
  const auto alone = each_alone(decoder, requests);
  const auto uncached = generate_all(decoder, requests, {256, 16}, 512, false);
  const auto cached = generate_all(decoder, requests, {256, 16}, 512, true);
  CHECK(cached.outputs == alone);
  CHECK(uncached.outputs == alone);
  // 7 later requests x 8 system blocks found in the cache.
  CHECK(cached.cache_stats.hit_blocks >= 7 * 8);
  CHECK(cached.stats.cached_prefix_tokens >= 7 * 32);
  CHECK(cached.stats.computed_tokens + cached.stats.cached_prefix_tokens ==
        uncached.stats.computed_tokens);
}

TEST_CASE("prompts longer than the step budget are prefilled in chunks with the same result",
          "[batching]") {
  auto backend = sparkd::make_cpu_backend();
  auto model = sparkd::tasks::LoadedModel::load(
      std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/models/llama_f32", *backend);
  REQUIRE(model.has_value());
  auto& decoder = *(*model)->decoder();
  std::vector<Request> requests = random_requests(3, (*model)->spec().vocab_size, 5);
  requests[0].prompt.assign(19, 3);
  requests[1].prompt.assign(30, 17);
  requests[2].prompt.assign(23, 42);
  // 8 tokens a step: every prompt takes several steps, and the first steps carry only chunks
  // that sample nothing (a forward with no logits at all).
  const auto chunked = generate_all(decoder, requests, {8, 4}, 64, false);
  CHECK(chunked.outputs == each_alone(decoder, requests));
}

TEST_CASE("a hybrid model's recurrent states are granted per running sequence and released",
          "[batching][ledger]") {
  auto backend = sparkd::make_cpu_backend();
  auto model = sparkd::tasks::LoadedModel::load(
      std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/models/qwen3_5_moe_f32", *backend);
  REQUIRE(model.has_value());
  auto& decoder = *(*model)->decoder();
  // 3 linear-attention layers x (3 x 128 conv inputs + 4 x 16 x 16 delta-rule values), F32.
  REQUIRE(decoder.recurrent_state_bytes() == 3 * (3 * 128 + 4 * 16 * 16) * 4);
  // Only the one attention layer has KV.
  CHECK(decoder.kv_pool_geometry(kBlockTokens, 8).num_layers == 1);

  sparkd::governor::FixedBudgetArbiter arbiter(/*budget_granules=*/64);
  auto pool = sparkd::KvBlockPool::create(decoder.kv_pool_geometry(kBlockTokens, 64), arbiter, 1);
  REQUIRE(pool.has_value());
  const sparkd::KvCache kv = pool->cache_view();
  // As the runner builds it for a model with recurrent state: no prefix cache.
  sparkd::kv::PrefixCache cache(*pool, kBlockTokens, /*caching_enabled=*/false);
  sparkd::RecurrentStatePool states(decoder.backend(), decoder.recurrent_state_bytes(),
                                    /*max_states=*/4, arbiter, 1);
  REQUIRE(states.granules_per_state() == 1);
  Scheduler scheduler({512, 4}, cache, &states);
  const auto requests = random_requests(6, (*model)->spec().vocab_size, 3);
  for (const Request& r : requests) scheduler.add(r.id, r.prompt);
  auto kv_granules = [&] { return pool->committed_bytes() / sparkd::governor::kGranuleBytes; };

  // Four run (max_seqs), each holding a state the arbiter granted beside the KV.
  const auto plan = scheduler.schedule();
  CHECK(scheduler.running() == 4);
  CHECK(states.states_in_use() == 4);
  CHECK(arbiter.granted_granules(1) == kv_granules() + 4);
  auto logits = sparkd::sched::run_decoder_step(decoder, kv, &states, scheduler, plan);
  REQUIRE(logits.has_value());
  scheduler.complete(plan, std::vector<int32_t>(plan.chunks.size(), 5));

  // Preemption gives the state back; finishing gives back the rest.
  const RequestId preempted = scheduler.preempt_newest();
  CHECK(preempted != 0);
  CHECK(scheduler.find(preempted)->state_slot == -1);
  CHECK(states.states_in_use() == 3);
  CHECK(arbiter.granted_granules(1) == kv_granules() + 3);

  // The governor's shrink target is on everything the model holds, states included: asked to
  // keep no more than its KV pool alone commits now, it preempts until its states are back.
  sparkd::governor::ReclaimDemand demand;
  demand.shrink_kv_to_bytes = pool->committed_bytes();
  sparkd::sched::apply_reclaim_demand(demand, *pool, cache, scheduler, &states);
  CHECK(states.states_in_use() == 0);
  CHECK(arbiter.granted_granules(1) * sparkd::governor::kGranuleBytes <= demand.shrink_kv_to_bytes);
  for (const Request& r : requests) scheduler.finish(r.id);
  CHECK(states.states_in_use() == 0);
  CHECK(arbiter.granted_granules(1) == 0);

  // No memory for a state: nothing is admitted (and nothing leaks).
  sparkd::governor::FixedBudgetArbiter tight(/*budget_granules=*/2);
  auto small_pool =
      sparkd::KvBlockPool::create(decoder.kv_pool_geometry(kBlockTokens, 64), tight, 1);
  REQUIRE(small_pool.has_value());
  sparkd::kv::PrefixCache small_cache(*small_pool, kBlockTokens, false);
  sparkd::RecurrentStatePool small_states(decoder.backend(), decoder.recurrent_state_bytes(), 4,
                                          tight, 1);
  Scheduler starved({64, 4}, small_cache, &small_states);
  starved.add(1, requests[0].prompt);
  CHECK(starved.schedule().empty());
  CHECK(starved.waiting() == 1);
  CHECK(small_states.states_in_use() == 0);
  CHECK(tight.granted_granules(1) == 0);
}

TEST_CASE("a hybrid model is never served from the prefix cache and computes every prompt",
          "[batching]") {
  auto backend = sparkd::make_cpu_backend();
  auto model = sparkd::tasks::LoadedModel::load(
      std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/models/qwen3_5_moe_f32", *backend);
  REQUIRE(model.has_value());
  auto& decoder = *(*model)->decoder();
  std::vector<Request> requests = random_requests(4, (*model)->spec().vocab_size, 11);
  const std::vector<int32_t> system(32, 42);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].prompt.insert(requests[i].prompt.begin(), system.begin(), system.end());
    requests[i].step_added = i == 0 ? 0 : 1;
  }
  // Cached KV blocks alone cannot restore the recurrent state the system prompt left.
  const auto cached = generate_all(decoder, requests, {256, 16}, 512, true);
  CHECK(cached.outputs == each_alone(decoder, requests));
  CHECK(cached.cache_stats.hit_blocks == 0);
  CHECK(cached.stats.cached_prefix_tokens == 0);
}
