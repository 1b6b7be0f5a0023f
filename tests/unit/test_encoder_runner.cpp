// Encoder batching (embed, rerank): the batcher's padded token budget and order, and the
// runner end to end on fixture models: results equal the single-request engine paths
// whatever the batching, per-request normalisation, truncation and its errors, cancellation,
// deadlines and shutdown. Waits have timeouts only as a safety net against hangs.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "engine/sched/encoder_batcher.h"
#include "engine/sched/encoder_runner.h"
#include "tests/support/loaded_fixture.h"

namespace {

using sparkd::StatusCode;
using sparkd::sched::EmbedRequest;
using sparkd::sched::EmbedResult;
using sparkd::sched::EncoderBatch;
using sparkd::sched::EncoderBatcher;
using sparkd::sched::EncoderRunner;
using sparkd::sched::EncoderRunnerConfig;
using sparkd::sched::RerankRequest;
using sparkd::sched::RerankResult;
using sparkd::testing::LoadedFixture;

constexpr auto kSafetyTimeout = std::chrono::seconds(300);

std::vector<std::pair<uint64_t, int32_t>> ids_and_indices(const EncoderBatch& batch) {
  std::vector<std::pair<uint64_t, int32_t>> out;
  for (const auto& item : batch.items) out.emplace_back(item.id, item.index);
  return out;
}

template <typename Result>
Result wait_for(std::future<Result>& future) {
  REQUIRE(future.wait_for(kSafetyTimeout) == std::future_status::ready);
  return future.get();
}

std::unique_ptr<EncoderRunner> start_runner(const LoadedFixture& fixture, int32_t max_tokens,
                                            int32_t max_inputs) {
  EncoderRunnerConfig config;
  config.batcher.max_batch_tokens = max_tokens;
  config.batcher.max_batch_inputs = max_inputs;
  auto runner = EncoderRunner::start(*fixture.model, config);
  REQUIRE(runner.has_value());
  return std::move(runner).value();
}

std::future<EmbedResult> embed(EncoderRunner& runner, EmbedRequest request) {
  auto promise = std::make_shared<std::promise<EmbedResult>>();
  auto future = promise->get_future();
  runner.submit_embed(std::move(request),
                      [promise](EmbedResult result) { promise->set_value(std::move(result)); });
  return future;
}

std::future<RerankResult> rerank(EncoderRunner& runner, RerankRequest request) {
  auto promise = std::make_shared<std::promise<RerankResult>>();
  auto future = promise->get_future();
  runner.submit_rerank(std::move(request),
                       [promise](RerankResult result) { promise->set_value(std::move(result)); });
  return future;
}

std::vector<std::string> sentences(size_t count, size_t seed) {
  const std::vector<std::string> words = {"memory", "bandwidth", "token", "the",   "spark",
                                          "model",  "batch",     "cache", "quick", "unified"};
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) {
    std::string text;
    const size_t length = 1 + (i * 7 + seed * 3) % 23;  // 1..23 words: lengths differ
    for (size_t w = 0; w < length; ++w) {
      if (w) text += ' ';
      text += words[(i + w * 3 + seed) % words.size()];
    }
    out.push_back(text);
  }
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  return worst;
}

}  // namespace

TEST_CASE("Encoder batches count padding against the token budget, first come first served",
          "[encoder_batcher]") {
  EncoderBatcher batcher({.max_batch_tokens = 100, .max_batch_inputs = 64});
  const std::vector<int32_t> lengths = {10, 50, 10, 10};
  batcher.add(1, lengths);
  CHECK(batcher.waiting_inputs() == 4);
  // 1×10, then 2×50 = 100 fits; a third input would make 3×50 = 150.
  EncoderBatch first = batcher.next_batch();
  CHECK(ids_and_indices(first) == std::vector<std::pair<uint64_t, int32_t>>{{1, 0}, {1, 1}});
  CHECK(first.tokens() == 60);
  CHECK(first.padded_tokens() == 100);
  EncoderBatch second = batcher.next_batch();
  CHECK(ids_and_indices(second) == std::vector<std::pair<uint64_t, int32_t>>{{1, 2}, {1, 3}});
  CHECK(batcher.next_batch().empty());
  CHECK(batcher.waiting_inputs() == 0);
  CHECK(batcher.waiting_requests() == 0);
}

TEST_CASE("Encoder batches: input cap, priority classes, oversized inputs, removal",
          "[encoder_batcher]") {
  EncoderBatcher batcher({.max_batch_tokens = 64, .max_batch_inputs = 2});
  const std::vector<int32_t> three = {4, 4, 4};
  const std::vector<int32_t> urgent = {8};
  const std::vector<int32_t> huge = {500};
  batcher.add(1, three, /*priority=*/1);
  batcher.add(2, huge, /*priority=*/1);
  batcher.add(3, urgent, /*priority=*/0);
  // Priority 0 first, then request 1 in order; the cap of 2 inputs splits request 1.
  CHECK(ids_and_indices(batcher.next_batch()) ==
        std::vector<std::pair<uint64_t, int32_t>>{{3, 0}, {1, 0}});
  CHECK(ids_and_indices(batcher.next_batch()) ==
        std::vector<std::pair<uint64_t, int32_t>>{{1, 1}, {1, 2}});
  // An input longer than the whole budget still runs, alone.
  EncoderBatch alone = batcher.next_batch();
  CHECK(ids_and_indices(alone) == std::vector<std::pair<uint64_t, int32_t>>{{2, 0}});

  batcher.add(4, three);
  batcher.add(5, urgent);
  (void)batcher.next_batch();  // takes 4/0 and 4/1
  batcher.remove(4);
  CHECK(batcher.waiting_inputs() == 1);
  CHECK(ids_and_indices(batcher.next_batch()) == std::vector<std::pair<uint64_t, int32_t>>{{5, 0}});
  batcher.remove(99);  // unknown: ignored
  CHECK(batcher.next_batch().empty());
}

TEST_CASE("Encoder runner: concurrent embed requests equal the single-request path",
          "[encoder_runner]") {
  for (const char* name : {"bert_embed", "xlmr_embed", "qwen3_embedding"}) {
    INFO(name);
    LoadedFixture fixture(name);
    // A small budget so requests are split across batches and batches mix requests.
    auto runner = start_runner(fixture, 96, 5);
    std::vector<std::vector<std::string>> requests;
    std::vector<std::future<EmbedResult>> futures;
    for (size_t r = 0; r < 12; ++r) {
      requests.push_back(sentences(1 + r % 6, r));
      EmbedRequest request;
      request.inputs = requests.back();
      futures.push_back(embed(*runner, std::move(request)));
    }
    for (size_t r = 0; r < requests.size(); ++r) {
      EmbedResult result = wait_for(futures[r]);
      INFO(result.status.message());
      REQUIRE(result.status.is_ok());
      auto expected = sparkd::tasks::embed_texts(*fixture.model, requests[r]);
      REQUIRE(expected.has_value());
      CHECK(result.dimensions == expected->dimensions);
      CHECK(result.token_counts == expected->token_counts);
      CHECK(max_abs_diff(result.values, expected->values) < 1e-5);
    }
    const auto stats = runner->stats();
    CHECK(stats.finished_requests == 12);
    CHECK(stats.computed_inputs == 42);  // 1+2+...+6, twice
    CHECK(stats.batches >= 42 / 5);
    CHECK(stats.padded_tokens >= stats.computed_tokens);
    CHECK(stats.waiting_inputs == 0);
  }
}

TEST_CASE("Encoder runner: one request's inputs are batched together under the budget",
          "[encoder_runner]") {
  LoadedFixture fixture("bert_embed");
  auto runner = start_runner(fixture, 1 << 20, 8);
  EmbedRequest request;
  request.inputs = sentences(20, 1);
  EmbedResult result =
      wait_for(*std::make_unique<std::future<EmbedResult>>(embed(*runner, request)));
  REQUIRE(result.status.is_ok());
  CHECK(runner->stats().batches == 3);  // 8 + 8 + 4 inputs
  CHECK(result.values.size() == 20u * static_cast<size_t>(result.dimensions));
}

TEST_CASE("Encoder runner: normalisation per request, truncation and its errors",
          "[encoder_runner]") {
  LoadedFixture fixture("bert_embed");
  REQUIRE(fixture.model->spec().normalize_embeddings);
  auto runner = start_runner(fixture, 4096, 16);
  const std::vector<std::string> texts = sentences(4, 2);

  EmbedRequest raw;
  raw.inputs = texts;
  raw.normalize = false;
  auto raw_future = embed(*runner, raw);
  EmbedResult unnormalized = wait_for(raw_future);
  REQUIRE(unnormalized.status.is_ok());
  auto expected = sparkd::tasks::embed_texts(*fixture.model, texts);
  REQUIRE(expected.has_value());
  const auto dims = static_cast<size_t>(unnormalized.dimensions);
  for (size_t row = 0; row < texts.size(); ++row) {
    double norm = 0;
    for (size_t d = 0; d < dims; ++d) norm += std::pow(unnormalized.values[row * dims + d], 2);
    norm = std::sqrt(norm);
    CHECK(std::abs(norm - 1.0) > 1e-3);  // really not normalised
    for (size_t d = 0; d < dims; ++d) {
      CHECK(unnormalized.values[row * dims + d] / norm ==
            Approx(expected->values[row * dims + d]).margin(1e-5));
    }
  }

  // Longer than the model accepts: refused unless truncate, then equal to the truncating path.
  std::string long_text;
  for (int i = 0; i < fixture.model->max_input_tokens() + 10; ++i) long_text += "memory ";
  EmbedRequest too_long;
  too_long.inputs = {"short", long_text};
  auto refused_future = embed(*runner, too_long);
  EmbedResult refused = wait_for(refused_future);
  CHECK(refused.status.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(refused.status.message(), Catch::Contains("input 1") && Catch::Contains("truncate"));
  too_long.truncate = true;
  auto cut_future = embed(*runner, too_long);
  EmbedResult cut = wait_for(cut_future);
  REQUIRE(cut.status.is_ok());
  CHECK(cut.token_counts[1] == fixture.model->max_input_tokens());
  auto expected_cut = sparkd::tasks::embed_texts(*fixture.model, too_long.inputs);
  REQUIRE(expected_cut.has_value());
  CHECK(max_abs_diff(cut.values, expected_cut->values) < 1e-5);

  EmbedRequest empty;
  auto empty_future = embed(*runner, empty);
  CHECK(wait_for(empty_future).status.code() == StatusCode::kInvalidArgument);
  RerankRequest wrong_task;
  wrong_task.query = "q";
  wrong_task.documents = {"d"};
  auto wrong_future = rerank(*runner, wrong_task);
  CHECK(wait_for(wrong_future).status.code() == StatusCode::kFailedPrecondition);
  // The runner still serves after the errors.
  auto again_future = embed(*runner, raw);
  CHECK(wait_for(again_future).status.is_ok());
}

TEST_CASE("Encoder runner: rerank requests equal the single-request path", "[encoder_runner]") {
  for (const char* name : {"bert_rerank", "xlmr_rerank"}) {
    INFO(name);
    LoadedFixture fixture(name);
    auto runner = start_runner(fixture, 128, 3);
    std::vector<RerankRequest> requests;
    std::vector<std::future<RerankResult>> futures;
    for (size_t r = 0; r < 6; ++r) {
      RerankRequest request;
      request.query = sentences(1, r + 5)[0];
      request.documents = sentences(1 + r, r);
      request.truncate = true;  // some pairs exceed the fixture's 128 tokens
      requests.push_back(request);
      futures.push_back(rerank(*runner, request));
    }
    for (size_t r = 0; r < requests.size(); ++r) {
      RerankResult result = wait_for(futures[r]);
      INFO(result.status.message());
      REQUIRE(result.status.is_ok());
      auto expected =
          sparkd::tasks::rerank(*fixture.model, requests[r].query, requests[r].documents);
      REQUIRE(expected.has_value());
      CHECK(result.token_counts == expected->token_counts);
      CHECK(max_abs_diff(result.logits, expected->logits) < 1e-5);
      CHECK(max_abs_diff(result.probabilities, expected->probabilities) < 1e-6);
    }
  }
}

TEST_CASE("Encoder runner: cancel, deadline and shutdown answer every request",
          "[encoder_runner]") {
  LoadedFixture fixture("bert_embed");
  auto runner = start_runner(fixture, 4096, 16);

  // Callbacks run on the runner thread: holding the first one keeps the runner busy while
  // the second request is submitted and cancelled, so both reach it in one intake.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<EmbedResult> first_done;
  EmbedRequest first;
  first.inputs = {"hold the runner"};
  runner->submit_embed(first, [&](EmbedResult result) {
    released.wait();
    first_done.set_value(std::move(result));
  });
  while (runner->stats().finished_requests == 0 && runner->stats().waiting_inputs == 0 &&
         runner->stats().batches == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EmbedRequest second;
  second.inputs = sentences(8, 3);
  auto second_promise = std::make_shared<std::promise<EmbedResult>>();
  auto second_future = second_promise->get_future();
  const auto second_id = runner->submit_embed(
      second, [second_promise](EmbedResult r) { second_promise->set_value(std::move(r)); });
  runner->cancel(second_id);
  EmbedRequest late = second;
  late.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  auto late_future = embed(*runner, late);
  release.set_value();
  auto first_future = first_done.get_future();
  CHECK(wait_for(first_future).status.is_ok());
  CHECK(wait_for(second_future).status.code() == StatusCode::kCancelled);
  CHECK(wait_for(late_future).status.code() == StatusCode::kDeadlineExceeded);
  CHECK(runner->stats().waiting_inputs == 0);

  // Requests still queued when the runner stops are answered, not dropped.
  std::vector<std::future<EmbedResult>> pending;
  for (int i = 0; i < 20; ++i) pending.push_back(embed(*runner, second));
  runner.reset();
  for (auto& future : pending) {
    const EmbedResult result = wait_for(future);
    CHECK((result.status.is_ok() || result.status.code() == StatusCode::kCancelled));
  }
}
