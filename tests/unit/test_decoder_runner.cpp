// The per-model runner end to end on the fixture decoders: concurrent submission, seeded
// sampling that does not depend on the batch or on preemption, streaming text, stop rules,
// cancellation, deadlines, bad requests and shutdown. Waits have generous timeouts only as a
// safety net against hangs; nothing here asserts on speed.
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/sched/decoder_runner.h"
#include "engine/tasks/loaded_model.h"
#include "governor/fixed_budget_arbiter.h"
#include "tests/support/loaded_fixture.h"

namespace {

using sparkd::StatusCode;
using sparkd::governor::FixedBudgetArbiter;
using sparkd::sched::DecoderRunner;
using sparkd::sched::GenerateCallbacks;
using sparkd::sched::GenerateDelta;
using sparkd::sched::GenerateRequest;
using sparkd::sched::GenerateResult;
using sparkd::sched::RequestId;
using sparkd::sched::RunnerConfig;

constexpr auto kSafetyTimeout = std::chrono::seconds(300);

using Fixture = sparkd::testing::LoadedFixture;
using sparkd::testing::fixture_model_dir;

// Collects every callback; keyed by the id each callback carries.
struct Collector {
  std::mutex mutex;
  std::condition_variable done_cv;
  std::map<RequestId, GenerateResult> results;
  std::map<RequestId, std::string> delta_text;
  std::map<RequestId, std::vector<int32_t>> delta_tokens;
  std::map<RequestId, int> done_calls;

  GenerateCallbacks callbacks() {
    GenerateCallbacks c;
    c.on_delta = [this](const GenerateDelta& d) {
      std::lock_guard<std::mutex> lock(mutex);
      delta_text[d.id] += d.text;
      delta_tokens[d.id].insert(delta_tokens[d.id].end(), d.token_ids.begin(), d.token_ids.end());
    };
    c.on_done = [this](GenerateResult r) {
      std::lock_guard<std::mutex> lock(mutex);
      ++done_calls[r.id];
      results[r.id] = std::move(r);
      done_cv.notify_all();
    };
    return c;
  }

  bool wait_for(size_t count) {
    std::unique_lock<std::mutex> lock(mutex);
    return done_cv.wait_for(lock, kSafetyTimeout, [&] { return results.size() >= count; });
  }
};

RunnerConfig small_config(int32_t max_blocks, bool caching = true) {
  RunnerConfig config;
  config.scheduler.max_batch_tokens = 64;
  config.scheduler.max_seqs = 16;
  config.block_tokens = 4;
  config.max_blocks = max_blocks;
  config.prefix_caching = caching;
  return config;
}

std::unique_ptr<DecoderRunner> start_runner(const sparkd::tasks::LoadedModel& model,
                                            const RunnerConfig& config,
                                            FixedBudgetArbiter& arbiter) {
  auto runner = DecoderRunner::start(model, config, arbiter);
  REQUIRE(runner.has_value());
  return std::move(runner).value();
}

GenerateResult run_alone(const sparkd::tasks::LoadedModel& model, const GenerateRequest& request) {
  FixedBudgetArbiter arbiter(256);
  Collector collector;
  {
    auto runner = start_runner(model, small_config(512), arbiter);
    runner->submit(request, collector.callbacks());
    REQUIRE(collector.wait_for(1));
  }
  CHECK(arbiter.granted_granules(1) == 0);
  return collector.results.begin()->second;
}

std::vector<GenerateRequest> sampled_requests(int32_t vocab) {
  std::mt19937 rng(17);
  std::uniform_int_distribution<int32_t> token(3, vocab - 1);
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 16; ++i) {
    GenerateRequest r;
    r.prompt_ids.resize(static_cast<size_t>(1 + (i * 7) % 29));
    for (int32_t& t : r.prompt_ids) t = token(rng);
    r.sampling.temperature = 0.8f;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = 1000 + static_cast<uint64_t>(i);
    r.max_tokens = 12;
    requests.push_back(r);
  }
  return requests;
}

// Submits `requests` from 4 threads; returns each request's index -> result.
std::map<size_t, GenerateResult> submit_concurrently(DecoderRunner& runner,
                                                     const std::vector<GenerateRequest>& requests,
                                                     Collector& collector) {
  std::vector<RequestId> ids(requests.size());
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < requests.size(); i += 4)
        ids[i] = runner.submit(requests[i], collector.callbacks());
    });
  }
  for (auto& thread : threads) thread.join();
  REQUIRE(collector.wait_for(requests.size()));
  std::map<size_t, GenerateResult> by_index;
  std::lock_guard<std::mutex> lock(collector.mutex);
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerateResult& r = collector.results.at(ids[i]);
    CHECK(collector.delta_text[ids[i]] == r.text);
    CHECK(collector.delta_tokens[ids[i]] == r.token_ids);
    CHECK(collector.done_calls[ids[i]] == 1);
    by_index[i] = r;
  }
  return by_index;
}

nlohmann::json expected_json(const std::string& name) {
  std::ifstream in(fixture_model_dir(name) + "/expected.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("concurrent seeded requests equal each request alone, greedy matches transformers",
          "[runner]") {
  // Qwen3.5 with recurrent state per sequence (and so no prefix cache).
  for (const char* name : {"qwen2_f32", "llama_f32", "qwen3_5_moe_f32"}) {
    INFO(name);
    Fixture f(name);
    const auto requests = sampled_requests(f.model->spec().vocab_size);
    std::vector<GenerateResult> alone;
    for (const auto& r : requests) alone.push_back(run_alone(*f.model, r));

    FixedBudgetArbiter arbiter(256);
    Collector collector;
    auto runner = start_runner(*f.model, small_config(512), arbiter);
    const auto together = submit_concurrently(*runner, requests, collector);
    for (size_t i = 0; i < requests.size(); ++i) {
      INFO("request " << i);
      const GenerateResult& r = together.at(i);
      CHECK(r.status.is_ok());
      CHECK(r.token_ids == alone[i].token_ids);
      CHECK(r.text == alone[i].text);
      CHECK(r.finish_reason == alone[i].finish_reason);
      CHECK(r.prompt_tokens == static_cast<int32_t>(requests[i].prompt_ids.size()));
      CHECK(!r.token_ids.empty());
    }
    CHECK(runner->stats().preemptions == 0);

    // Greedy, against the fixture's transformers continuations.
    const auto expected = expected_json(name);
    for (const auto& greedy : expected.at("greedy")) {
      GenerateRequest r;
      r.prompt_ids = expected.at("prompts")[greedy.at("prompt").get<size_t>()]
                         .at("ids")
                         .get<std::vector<int32_t>>();
      const auto new_ids = greedy.at("new_ids").get<std::vector<int32_t>>();
      r.sampling.temperature = 0.0f;
      r.max_tokens = static_cast<uint32_t>(new_ids.size());
      r.ignore_eos = true;
      Collector one;
      runner->submit(r, one.callbacks());
      REQUIRE(one.wait_for(1));
      const GenerateResult& result = one.results.begin()->second;
      CHECK(result.token_ids == new_ids);
      CHECK(result.finish_reason == "length");
      CHECK(one.delta_text[result.id] == result.text);
      // The streamed text is what a full decode of the new ids gives.
      const auto decoded = f.model->tokenizer().decode(
          std::vector<uint32_t>(new_ids.begin(), new_ids.end()), /*skip_special_tokens=*/true);
      REQUIRE(decoded.has_value());
      CHECK(result.text == *decoded);
    }
    const auto stats = runner->stats();
    CHECK(stats.recurrent_states_in_use == 0);  // every state came back with its sequence
    CHECK(stats.recurrent_state_bytes == 0);
    if (f.model->decoder()->recurrent_state_bytes() > 0) {
      CHECK(stats.prefix_hit_blocks == 0);
      CHECK(stats.kv_blocks_cached == 0);
    }
  }
}

TEST_CASE("a tight KV budget preempts but every output stays the same", "[runner]") {
  Fixture f(GENERATE("qwen2_f32", "qwen3_5_moe_f32"));
  const auto requests = sampled_requests(f.model->spec().vocab_size);
  std::vector<GenerateResult> alone;
  for (const auto& r : requests) alone.push_back(run_alone(*f.model, r));

  FixedBudgetArbiter arbiter(256);
  Collector collector;
  auto runner = start_runner(*f.model, small_config(24), arbiter);
  const auto together = submit_concurrently(*runner, requests, collector);
  for (size_t i = 0; i < requests.size(); ++i) {
    INFO("request " << i);
    CHECK(together.at(i).token_ids == alone[i].token_ids);
    CHECK(together.at(i).text == alone[i].text);
  }
  CHECK(runner->stats().preemptions > 0);
}

TEST_CASE("cancel and deadlines end requests and return every block", "[runner]") {
  Fixture f("qwen2_f32");
  FixedBudgetArbiter arbiter(256);
  Collector collector;
  auto runner = start_runner(*f.model, small_config(512, /*caching=*/false), arbiter);

  GenerateRequest long_request;
  long_request.prompt_ids = {10, 20, 30, 40, 50, 60, 70};
  long_request.sampling.temperature = 0.0f;
  long_request.max_tokens = 400;
  long_request.ignore_eos = true;

  // Cancelled from its own on_delta after 3 tokens: it leaves before the next step.
  Collector cancelled;
  DecoderRunner* raw = runner.get();
  GenerateCallbacks cb = cancelled.callbacks();
  auto base_delta = cb.on_delta;
  cb.on_delta = [&, base_delta, raw](const GenerateDelta& d) {
    base_delta(d);
    std::lock_guard<std::mutex> lock(cancelled.mutex);
    if (cancelled.delta_tokens[d.id].size() == 3) raw->cancel(d.id);
  };
  const RequestId cancel_id = runner->submit(long_request, cb);

  GenerateRequest late = long_request;
  late.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  Collector expired;
  runner->submit(late, expired.callbacks());

  GenerateRequest normal = long_request;
  normal.max_tokens = 5;
  runner->submit(normal, collector.callbacks());

  REQUIRE(cancelled.wait_for(1));
  REQUIRE(expired.wait_for(1));
  REQUIRE(collector.wait_for(1));
  const GenerateResult& c = cancelled.results.at(cancel_id);
  CHECK(c.finish_reason == "cancelled");
  CHECK(c.status.code() == StatusCode::kCancelled);
  CHECK(c.token_ids.size() == 3);
  const GenerateResult& e = expired.results.begin()->second;
  CHECK(e.finish_reason == "deadline");
  CHECK(e.status.code() == StatusCode::kDeadlineExceeded);
  CHECK(collector.results.begin()->second.finish_reason == "length");
  CHECK(collector.results.begin()->second.token_ids.size() == 5);

  runner->cancel(12345);  // unknown: ignored
  const auto stats = runner->stats();
  CHECK(stats.kv_blocks_in_use == 0);
  CHECK(stats.kv_blocks_committed == 0);
  CHECK(stats.running == 0);
  CHECK(stats.waiting == 0);
  CHECK(arbiter.granted_granules(1) == 0);
}

TEST_CASE("stop strings and stop token ids end generation where they occur", "[runner]") {
  Fixture f("qwen2_f32");
  const auto expected = expected_json("qwen2_f32");
  const auto& greedy = expected.at("greedy")[1];
  GenerateRequest base;
  base.prompt_ids = expected.at("prompts")[greedy.at("prompt").get<size_t>()]
                        .at("ids")
                        .get<std::vector<int32_t>>();
  const auto new_ids = greedy.at("new_ids").get<std::vector<int32_t>>();
  base.sampling.temperature = 0.0f;
  base.max_tokens = static_cast<uint32_t>(new_ids.size());
  base.ignore_eos = true;
  const GenerateResult full = run_alone(*f.model, base);
  REQUIRE(full.token_ids == new_ids);

  // A stop string from the middle of the text, cut on UTF-8 character boundaries.
  const std::string& text = full.text;
  REQUIRE(text.size() >= 8);
  auto is_boundary = [&](size_t i) {
    return i >= text.size() || (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80;
  };
  size_t begin = text.size() / 2;
  while (!is_boundary(begin)) ++begin;
  size_t end = begin + 2;
  while (!is_boundary(end)) ++end;
  REQUIRE(end <= text.size());
  const std::string stop = text.substr(begin, end - begin);
  const size_t first = text.find(stop);
  REQUIRE(first > 0);

  GenerateRequest with_stop = base;
  with_stop.stop = {stop};
  const GenerateResult stopped = run_alone(*f.model, with_stop);
  CHECK(stopped.finish_reason == "stop");
  CHECK(stopped.text == text.substr(0, first));
  CHECK(stopped.status.is_ok());

  GenerateRequest kept = with_stop;
  kept.include_stop_str_in_output = true;
  CHECK(run_alone(*f.model, kept).text == text.substr(0, first + stop.size()));

  GenerateRequest with_token = base;
  const int32_t stop_token = new_ids[5];
  with_token.stop_token_ids = {stop_token};
  const GenerateResult by_token = run_alone(*f.model, with_token);
  const auto at = std::find(new_ids.begin(), new_ids.end(), stop_token);
  CHECK(by_token.finish_reason == "stop");
  CHECK(by_token.token_ids == std::vector<int32_t>(new_ids.begin(), at + 1));
}

TEST_CASE("bad requests are refused and the runner keeps serving", "[runner]") {
  Fixture f("llama_f32");
  FixedBudgetArbiter arbiter(256);
  auto runner = start_runner(*f.model, small_config(64), arbiter);
  const int32_t vocab = f.model->spec().vocab_size;

  GenerateRequest good;
  good.prompt_ids = {5, 6, 7};
  good.max_tokens = 4;
  good.ignore_eos = true;

  std::vector<GenerateRequest> bad(6, good);
  bad[0].sampling.temperature = -1.0f;
  bad[1].prompt_ids.clear();
  bad[2].prompt_ids = {5, vocab};
  bad[3].prompt_ids.assign(static_cast<size_t>(f.model->max_input_tokens()) + 1, 5);
  bad[4].stop = {""};
  bad[5].max_tokens = 0;

  Collector collector;
  std::vector<RequestId> bad_ids;
  for (const auto& r : bad) bad_ids.push_back(runner->submit(r, collector.callbacks()));
  const RequestId good_id = runner->submit(good, collector.callbacks());
  REQUIRE(collector.wait_for(bad.size() + 1));
  for (size_t i = 0; i < bad_ids.size(); ++i) {
    INFO("bad request " << i);
    const GenerateResult& r = collector.results.at(bad_ids[i]);
    CHECK(r.status.code() == StatusCode::kInvalidArgument);
    CHECK(r.finish_reason == "error");
    CHECK(!r.status.message().empty());
  }
  CHECK(collector.results.at(bad_ids[5]).status.message() ==
        "max_tokens must be at least 1, got 0");
  CHECK(collector.results.at(good_id).status.is_ok());
  CHECK(collector.results.at(good_id).token_ids.size() == 4);

  // A prompt that can never fit the pool: RESOURCE_EXHAUSTED naming the numbers.
  GenerateRequest huge = good;
  huge.prompt_ids.assign(64 * 4 + 8, 5);
  Collector too_big;
  runner->submit(huge, too_big.callbacks());
  runner->submit(good, too_big.callbacks());
  REQUIRE(too_big.wait_for(2));
  int exhausted = 0;
  for (const auto& [id, r] : too_big.results) {
    if (r.status.code() == StatusCode::kResourceExhausted) {
      ++exhausted;
      CHECK(r.status.message().find("64") != std::string::npos);
    } else {
      CHECK(r.status.is_ok());
    }
  }
  CHECK(exhausted == 1);
}

TEST_CASE("destroying a busy runner cancels everything and returns its memory", "[runner]") {
  Fixture f("qwen2_f32");
  FixedBudgetArbiter arbiter(256);
  Collector collector;
  {
    auto runner = start_runner(*f.model, small_config(512), arbiter);
    GenerateRequest r;
    r.prompt_ids = {11, 12, 13, 14, 15};
    r.max_tokens = 1500;
    r.ignore_eos = true;
    for (int i = 0; i < 8; ++i) {
      r.prompt_ids[0] = 11 + i;
      runner->submit(r, collector.callbacks());
    }
    // Wait until something is generating, so some requests are mid-flight.
    for (int i = 0; i < 100000 && runner->stats().generated_tokens == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(collector.results.size() == 8);
  for (const auto& [id, r] : collector.results) {
    CHECK(r.finish_reason == "cancelled");
    CHECK(r.status.code() == StatusCode::kCancelled);
    CHECK(collector.done_calls[id] == 1);
  }
  CHECK(arbiter.granted_granules(1) == 0);
}
