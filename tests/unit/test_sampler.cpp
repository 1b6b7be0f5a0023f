// The token sampler: vLLM's SamplingParams semantics, checked by hand computations, against
// double-precision references, and statistically with fixed seeds (so never flaky).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/sched/sampler.h"

namespace {

using sparkd::StatusCode;
using sparkd::sched::admission_seed;
using sparkd::sched::apply_logit_adjustments;
using sparkd::sched::SampledToken;
using sparkd::sched::Sampler;
using sparkd::sched::SamplingParams;
using sparkd::sched::SamplingRow;
using sparkd::sched::TokenCounts;
using sparkd::sched::uniform_draw;
using sparkd::sched::validate;

SamplingParams greedy() {
  SamplingParams params;
  params.temperature = 0.0f;
  return params;
}

// Logits whose softmax is exactly `probs` (up to float rounding).
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

std::vector<float> random_logits(size_t vocab, uint32_t seed, float lo = -5.0f, float hi = 5.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = dist(gen);
  return logits;
}

int32_t sample_token(Sampler& sampler, const std::vector<float>& logits,
                     const SamplingParams& params, const TokenCounts& counts = {},
                     uint64_t seed = 1, int64_t position = 0) {
  auto result = sampler.sample(logits, params, counts, seed, position);
  INFO((result ? "" : result.status().to_string()));
  REQUIRE(result.has_value());
  return result->token;
}

std::vector<double> distribution(const std::vector<float>& logits, const SamplingParams& params,
                                 const TokenCounts& counts = {}) {
  Sampler sampler;
  auto probs = sampler.distribution(logits, params, counts);
  INFO((probs ? "" : probs.status().to_string()));
  REQUIRE(probs.has_value());
  return *probs;
}

// Token ids with nonzero probability.
std::vector<int32_t> kept(const std::vector<double>& probs) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] > 0.0) ids.push_back(static_cast<int32_t>(i));
  }
  return ids;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature = 1.0) {
  double max = -std::numeric_limits<double>::infinity();
  for (float x : logits) max = std::max(max, x / temperature);
  std::vector<double> probs;
  double sum = 0.0;
  for (float x : logits) {
    probs.push_back(std::exp(x / temperature - max));
    sum += probs.back();
  }
  for (double& p : probs) p /= sum;
  return probs;
}

std::vector<int32_t> ids(std::initializer_list<int32_t> list) {
  return list;
}

}  // namespace

TEST_CASE("greedy picks the argmax, ties go to the lowest id", "[sampler]") {
  Sampler sampler;
  const std::vector<float> logits = random_logits(1000, 7);
  int32_t expected = 0;
  for (int32_t i = 1; i < 1000; ++i) {
    if (logits[i] > logits[expected]) expected = i;
  }
  CHECK(sample_token(sampler, logits, greedy()) == expected);

  // Equal maxima at 1, 2 and 4: the lowest id, whatever the seed or position.
  const std::vector<float> tied = {1.0f, 3.0f, 3.0f, 2.0f, 3.0f};
  for (uint64_t seed : {1u, 2u, 99u}) {
    CHECK(sample_token(sampler, tied, greedy(), {}, seed, static_cast<int64_t>(seed)) == 1);
  }

  // Greedy ignores the random-sampling filters (as vLLM): top_k = 1 would still say 1.
  SamplingParams filtered = greedy();
  filtered.top_p = 0.1f;
  filtered.min_p = 0.9f;
  CHECK(sample_token(sampler, tied, filtered) == 1);
  CHECK(distribution(tied, greedy()) == std::vector<double>{0, 1, 0, 0, 0});
}

TEST_CASE("repetition penalty divides positive and multiplies negative logits", "[sampler]") {
  Sampler sampler;
  SamplingParams params = greedy();
  params.repetition_penalty = 2.0f;

  // logits {2.0, 1.5, -1.0}; token 0 seen: 2.0 / 2 = 1.0 < 1.5, so the argmax moves to 1.
  const std::vector<float> logits = {2.0f, 1.5f, -1.0f};
  CHECK(sample_token(sampler, logits, params) == 0);
  const std::vector<int32_t> zero = {0};
  CHECK(sample_token(sampler, logits, params, TokenCounts(zero)) == 1);      // in the prompt
  CHECK(sample_token(sampler, logits, params, TokenCounts({}, zero)) == 1);  // in the output

  // logits {-1.0, -1.5}; token 0 seen: -1.0 * 2 = -2.0 < -1.5, so 1 wins. (Dividing would
  // give -0.5 and keep 0.)
  const std::vector<float> negative = {-1.0f, -1.5f};
  CHECK(sample_token(sampler, negative, params, TokenCounts({}, zero)) == 1);

  std::vector<float> adjusted = {2.0f, 1.5f, -1.0f};
  apply_logit_adjustments(adjusted, params, TokenCounts(ids({0, 2})));
  CHECK(adjusted == std::vector<float>{1.0f, 1.5f, -2.0f});
}

TEST_CASE("presence and frequency penalties count output tokens only", "[sampler]") {
  Sampler sampler;
  const std::vector<float> logits = {3.0f, 2.5f, 0.0f};
  const std::vector<int32_t> twice = {0, 0};

  SamplingParams frequency = greedy();
  frequency.frequency_penalty = 0.3f;
  // Output holds token 0 twice: 3.0 - 0.3 * 2 = 2.4 < 2.5, so 1 wins.
  CHECK(sample_token(sampler, logits, frequency, TokenCounts({}, twice)) == 1);
  // The same tokens in the prompt only: no penalty, 0 stays.
  CHECK(sample_token(sampler, logits, frequency, TokenCounts(twice)) == 0);

  SamplingParams presence = greedy();
  presence.presence_penalty = 0.6f;
  // 3.0 - 0.6 = 2.4 < 2.5: 1 wins.
  CHECK(sample_token(sampler, logits, presence, TokenCounts({}, twice)) == 1);
  // 3.0 - 0.4 = 2.6 > 2.5: 0 stays. Presence is not multiplied by the count (0.8 would flip).
  presence.presence_penalty = 0.4f;
  CHECK(sample_token(sampler, logits, presence, TokenCounts({}, twice)) == 0);
  CHECK(sample_token(sampler, logits, presence, TokenCounts(twice)) == 0);

  // Both together on exact values: 3.0 - 0.5 * 2 - 0.25 = 1.75; token 1 was never output.
  SamplingParams both = greedy();
  both.frequency_penalty = 0.5f;
  both.presence_penalty = 0.25f;
  std::vector<float> adjusted = logits;
  apply_logit_adjustments(adjusted, both, TokenCounts(ids({1}), twice));
  CHECK(adjusted == std::vector<float>{1.75f, 2.5f, 0.0f});
}

TEST_CASE("logit bias is added before the penalties, as in vLLM", "[sampler]") {
  SamplingParams params = greedy();
  params.logit_bias = {{0, -2.0f}};
  params.repetition_penalty = 2.0f;
  // Bias first: (1.0 - 2.0) = -1.0, negative, so multiplied: -2.0. (Penalty first would give
  // 1.0 / 2 - 2.0 = -1.5.)
  std::vector<float> adjusted = {1.0f, 0.8f};
  apply_logit_adjustments(adjusted, params, TokenCounts(ids({0})));
  CHECK(adjusted == std::vector<float>{-2.0f, 0.8f});
}

TEST_CASE("top-k keeps exactly the k most likely tokens", "[sampler]") {
  const std::vector<float> logits = random_logits(50, 11);
  SamplingParams params;
  params.top_k = 7;
  const std::vector<double> probs = distribution(logits, params);

  std::vector<int32_t> order(50);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  std::vector<int32_t> best(order.begin(), order.begin() + 7);
  std::sort(best.begin(), best.end());
  CHECK(kept(probs) == best);
  // Renormalised softmax over the survivors.
  double mass = 0.0;
  for (int32_t id : best) mass += std::exp(static_cast<double>(logits[id]));
  for (int32_t id : best) {
    CHECK(probs[id] == Approx(std::exp(static_cast<double>(logits[id])) / mass).epsilon(1e-5));
  }

  // Ties at the boundary go to the lower ids.
  params.top_k = 2;
  CHECK(kept(distribution({1.0f, 2.0f, 2.0f, 2.0f, 0.0f}, params)) == ids({1, 2}));
  // k >= vocab, 0 and -1 are all "off".
  for (int32_t k : {5, 100, 0, -1}) {
    params.top_k = k;
    CHECK(kept(distribution({1.0f, 2.0f, 2.0f, 2.0f, 0.0f}, params)).size() == 5);
  }
}

TEST_CASE("top-p keeps the smallest nucleus whose mass reaches top_p", "[sampler]") {
  // Descending: token 1 (0.5), 3 (0.3), 2 (0.15), 0 (0.05); cumulative 0.5, 0.8, 0.95, 1.
  const std::vector<float> logits = logits_of({0.05, 0.5, 0.15, 0.3});
  SamplingParams params;
  params.top_p = 0.4f;
  CHECK(kept(distribution(logits, params)) == ids({1}));
  params.top_p = 0.75f;
  const std::vector<double> two = distribution(logits, params);
  CHECK(kept(two) == ids({1, 3}));
  CHECK(two[1] == Approx(0.5 / 0.8).epsilon(1e-5));
  CHECK(two[3] == Approx(0.3 / 0.8).epsilon(1e-5));
  params.top_p = 0.85f;
  CHECK(kept(distribution(logits, params)) == ids({1, 2, 3}));
  params.top_p = 0.99f;
  CHECK(kept(distribution(logits, params)) == ids({0, 1, 2, 3}));
}

TEST_CASE("top-p on a 152k vocabulary matches a full sort", "[sampler]") {
  // Nearly flat logits make nuclei of tens of thousands of tokens (the candidate search must
  // grow well past its first guess); a peaked row makes a small one.
  const size_t vocab = 152064;
  for (float spread : {1.0f, 30.0f}) {
    const std::vector<float> logits = random_logits(vocab, 5, 0.0f, spread);
    for (float top_p : {0.05f, 0.5f, 0.9f}) {
      SamplingParams params;
      params.top_p = top_p;
      const std::vector<double> probs = distribution(logits, params);

      // Reference: full sort, same float weights, keep while the mass before is < top_p.
      const float max = *std::max_element(logits.begin(), logits.end());
      double mass = 0.0;
      for (float x : logits) mass += std::exp(x - max);
      std::vector<int32_t> order(vocab);
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
      });
      size_t keep = 0;
      double before = 0.0;
      while (keep < vocab && (keep == 0 || before < static_cast<double>(top_p) * mass)) {
        before += std::exp(logits[order[keep]] - max);
        ++keep;
      }
      std::vector<int32_t> expected(order.begin(), order.begin() + static_cast<ptrdiff_t>(keep));
      std::sort(expected.begin(), expected.end());
      INFO("spread " << spread << " top_p " << top_p << " nucleus " << keep);
      CHECK(kept(probs) == expected);
      CHECK(std::accumulate(probs.begin(), probs.end(), 0.0) == Approx(1.0));
    }
  }
}

TEST_CASE("min-p drops tokens below min_p times the top probability", "[sampler]") {
  const std::vector<float> logits = logits_of({0.5, 0.3, 0.15, 0.05});
  SamplingParams params;
  params.min_p = 0.2f;  // threshold 0.1: 0.05 goes
  CHECK(kept(distribution(logits, params)) == ids({0, 1, 2}));
  params.min_p = 0.5f;  // threshold 0.25: 0.15 goes too
  CHECK(kept(distribution(logits, params)) == ids({0, 1}));
  params.min_p = 1.0f;  // only the maximum
  CHECK(kept(distribution(logits, params)) == ids({0}));
}

TEST_CASE("filters combine in order: temperature, top-k, top-p, min-p", "[sampler]") {
  const std::vector<float> logits = logits_of({0.5, 0.3, 0.15, 0.05});
  SamplingParams params;
  // top-p alone at 0.6: 0.5 < 0.6 so {0, 1}.
  params.top_p = 0.6f;
  CHECK(kept(distribution(logits, params)) == ids({0, 1}));
  // top-k 2 first renormalises to {0.625, 0.375}: 0.625 >= 0.6 already, so {0}.
  params.top_k = 2;
  CHECK(kept(distribution(logits, params)) == ids({0}));

  // Temperature before top-p: at T = 0.5 probabilities go as p^2: {0.25, 0.09, ...} / 0.365
  // = {0.685, 0.247, ...}, so top_p 0.6 keeps {0} where T = 1 keeps {0, 1}.
  params.top_k = 0;
  params.temperature = 0.5f;
  CHECK(kept(distribution(logits, params)) == ids({0}));

  // top-p before min-p: probs {0.4, 0.3, 0.1, 0.1, 0.1}, top_p 0.5 keeps {0, 1} (0.4 < 0.5);
  // min_p 0.5 (threshold 0.2) keeps both. Min-p first would leave {0.57, 0.43} and top-p would
  // then keep only {0} (vLLM V1's order; we follow V0 and Hugging Face).
  const std::vector<float> five = logits_of({0.4, 0.3, 0.1, 0.1, 0.1});
  SamplingParams both;
  both.top_p = 0.5f;
  both.min_p = 0.5f;
  CHECK(kept(distribution(five, both)) == ids({0, 1}));
}

TEST_CASE("temperature rescales the distribution as softmax(logits / T)", "[sampler]") {
  const std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f};
  double previous_max = 0.0;
  for (float temperature : {2.0f, 1.0f, 0.5f}) {
    SamplingParams params;
    params.temperature = temperature;
    const std::vector<double> probs = distribution(logits, params);
    const std::vector<double> expected = softmax(logits, temperature);
    for (size_t i = 0; i < logits.size(); ++i) CHECK(probs[i] == Approx(expected[i]).epsilon(1e-5));
    // Colder is sharper.
    CHECK(probs[4] > previous_max);
    previous_max = probs[4];
  }
  // Positive temperatures below 0.01 are raised to 0.01 (vLLM).
  SamplingParams tiny;
  tiny.temperature = 1e-4f;
  const std::vector<float> close = {1.0f, 0.99f};
  const std::vector<double> probs = distribution(close, tiny);
  CHECK(probs[0] == Approx(softmax(close, 0.01)[0]).epsilon(1e-4));
}

TEST_CASE("a seeded draw depends only on (seed, position), not on the batch", "[sampler]") {
  const int32_t vocab = 50;
  std::vector<std::vector<float>> rows_logits;
  for (uint32_t r = 0; r < 3; ++r)
    rows_logits.push_back(random_logits(vocab, 100 + r, -1.0f, 1.0f));
  std::vector<SamplingParams> params(3);
  params[1].top_k = 10;
  params[2].temperature = 0.7f;
  params[2].presence_penalty = 0.5f;
  std::vector<TokenCounts> counts(3);
  counts[2] = TokenCounts(ids({1, 2, 3}), ids({4, 4}));
  const std::vector<uint64_t> seeds = {42, 43, 44};

  auto batch = [&](const std::vector<size_t>& order, int64_t position) {
    std::vector<float> matrix;
    std::vector<SamplingRow> rows;
    for (size_t r : order) {
      matrix.insert(matrix.end(), rows_logits[r].begin(), rows_logits[r].end());
      rows.push_back({&params[r], &counts[r], seeds[r], position});
    }
    Sampler sampler;
    std::vector<SampledToken> out;
    const auto status = sampler.sample_batch(matrix, vocab, rows, out);
    INFO(status.to_string());
    REQUIRE(status.is_ok());
    std::vector<int32_t> tokens(3, -1);
    for (size_t i = 0; i < order.size(); ++i) tokens[order[i]] = out[i].token;
    return tokens;
  };

  Sampler alone;
  std::vector<int32_t> row0_tokens;
  for (int64_t position = 0; position < 200; ++position) {
    const std::vector<int32_t> abc = batch({0, 1, 2}, position);
    const std::vector<int32_t> ca = batch({2, 0}, position);
    const std::vector<int32_t> b = batch({1}, position);
    CHECK(abc[0] == ca[0]);
    CHECK(abc[2] == ca[2]);
    CHECK(abc[1] == b[1]);
    CHECK(abc[0] == sample_token(alone, rows_logits[0], params[0], counts[0], seeds[0], position));
    row0_tokens.push_back(abc[0]);
  }
  // The draws do move from position to position (so the checks above can fail).
  std::sort(row0_tokens.begin(), row0_tokens.end());
  CHECK(std::unique(row0_tokens.begin(), row0_tokens.end()) - row0_tokens.begin() > 20);
}

TEST_CASE("different seeds draw different tokens, admission fixes a seed", "[sampler]") {
  Sampler sampler;
  const std::vector<float> flat(50, 0.0f);
  int same = 0;
  for (int64_t position = 0; position < 200; ++position) {
    same += sample_token(sampler, flat, {}, {}, 1, position) ==
            sample_token(sampler, flat, {}, {}, 2, position);
  }
  CHECK(same < 20);  // 4 expected by chance

  SamplingParams seeded;
  seeded.seed = 1234;
  CHECK(admission_seed(seeded) == 1234);
  CHECK(admission_seed(SamplingParams{}) != admission_seed(SamplingParams{}));
  for (int64_t position : {0, 1, 1000000}) {
    const double u = uniform_draw(7, position);
    CHECK(u >= 0.0);
    CHECK(u < 1.0);
    CHECK(u == uniform_draw(7, position));
  }
  CHECK(uniform_draw(7, 0) != uniform_draw(8, 0));
  CHECK(uniform_draw(7, 0) != uniform_draw(7, 1));
}

TEST_CASE("20k seeded draws follow the softmax (chi-square)", "[sampler]") {
  const std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f};
  const int n = 20000;
  auto chi_square = [&](const SamplingParams& params, const std::function<uint64_t(int)>& seed,
                        const std::function<int64_t(int)>& position) {
    const std::vector<double> expected = distribution(logits, params);
    Sampler sampler;
    std::vector<int> observed(logits.size(), 0);
    for (int i = 0; i < n; ++i) {
      ++observed[sample_token(sampler, logits, params, {}, seed(i), position(i))];
    }
    double chi2 = 0.0;
    for (size_t t = 0; t < logits.size(); ++t) {
      const double mean = expected[t] * n;
      if (mean == 0.0) {
        CHECK(observed[t] == 0);
        continue;
      }
      const double deviation = observed[t] - mean;
      chi2 += deviation * deviation / mean;
      // Each count within 5 standard errors of its mean.
      CHECK(std::abs(deviation) < 5.0 * std::sqrt(mean * (1.0 - expected[t])));
    }
    return chi2;
  };
  // 4 degrees of freedom: P(chi2 > 25) is about 5e-5; fixed seeds make the outcome fixed.
  const SamplingParams plain;
  const std::vector<double> softmax_probs = softmax(logits);
  const std::vector<double> sampler_probs = distribution(logits, plain);
  for (size_t t = 0; t < logits.size(); ++t) CHECK(sampler_probs[t] == Approx(softmax_probs[t]));
  // One request along its positions; then many requests (seeds) at one position.
  CHECK(chi_square(
            plain, [](int) { return uint64_t{2024}; }, [](int i) { return i; }) < 25.0);
  CHECK(chi_square(
            plain, [](int i) { return static_cast<uint64_t>(i); }, [](int) { return 3; }) < 25.0);
  // Through the filtered path too: top-k 3 at T = 2 (2 degrees of freedom).
  SamplingParams filtered;
  filtered.top_k = 3;
  filtered.temperature = 2.0f;
  CHECK(chi_square(
            filtered, [](int) { return uint64_t{5}; }, [](int i) { return i; }) < 25.0);
}

TEST_CASE("a logit bias of -100 bans a token, a large one forces it", "[sampler]") {
  Sampler sampler;
  const std::vector<float> logits = {0.0f, 0.0f, 10.0f, 0.0f};
  SamplingParams banned;
  banned.logit_bias = {{2, -100.0f}};
  int drawn = 0;
  for (int64_t position = 0; position < 2000; ++position) {
    drawn += sample_token(sampler, logits, banned, {}, 9, position) == 2;
  }
  CHECK(drawn == 0);
  SamplingParams unbiased;
  CHECK(sample_token(sampler, logits, unbiased, {}, 9, 0) == 2);  // it is the likely token
  banned.temperature = 0.0f;
  CHECK(sample_token(sampler, logits, banned) == 0);

  SamplingParams forced = greedy();
  forced.logit_bias = {{3, 20.0f}};
  CHECK(sample_token(sampler, logits, forced) == 3);
}

TEST_CASE("logprobs are the raw log_softmax, top-n sorted", "[sampler]") {
  const std::vector<float> logits = random_logits(1000, 3);
  std::vector<int32_t> order(1000);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });

  double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float x : logits) sum += std::exp(x - max);
  const double log_z = max + std::log(sum);

  // Penalties, bias and temperature change the sampling, not the reported logprobs.
  SamplingParams params;
  params.temperature = 0.7f;
  params.repetition_penalty = 1.3f;
  params.presence_penalty = 0.5f;
  params.logit_bias = {{order[0], -100.0f}};
  params.logprobs = 5;
  const TokenCounts counts(ids({order[1], 17}), ids({order[2]}));
  Sampler sampler;
  for (int64_t position = 0; position < 20; ++position) {
    auto result = sampler.sample(logits, params, counts, 77, position);
    REQUIRE(result.has_value());
    CHECK(result->token != order[0]);
    CHECK(result->logprob == Approx(logits[result->token] - log_z).margin(1e-5));
    REQUIRE(result->top_logprobs.size() == 5);
    for (size_t i = 0; i < 5; ++i) {
      CHECK(result->top_logprobs[i].first == order[i]);  // includes the banned token
      CHECK(result->top_logprobs[i].second == Approx(logits[order[i]] - log_z).margin(1e-5));
      if (i > 0) CHECK(result->top_logprobs[i - 1].second >= result->top_logprobs[i].second);
    }
  }

  // Ties list lower ids first; n larger than the vocabulary returns all of it.
  params = SamplingParams{};
  params.logprobs = 2;
  auto tied = sampler.sample(std::vector<float>{1.0f, 0.0f, 1.0f, 1.0f}, params, {}, 1, 0);
  REQUIRE(tied.has_value());
  REQUIRE(tied->top_logprobs.size() == 2);
  CHECK(tied->top_logprobs[0].first == 0);
  CHECK(tied->top_logprobs[1].first == 2);
  CHECK(tied->top_logprobs[0].second == Approx(std::log(1.0 / (3.0 + std::exp(-1.0)))));
  params.logprobs = 20;
  auto all = sampler.sample(std::vector<float>{1.0f, 0.0f, 1.0f, 1.0f}, params, {}, 1, 0);
  REQUIRE(all.has_value());
  CHECK(all->top_logprobs.size() == 4);

  // Not requested: nothing computed.
  auto none = sampler.sample(logits, SamplingParams{}, {}, 1, 0);
  REQUIRE(none.has_value());
  CHECK(none->top_logprobs.empty());
  CHECK(std::isnan(none->logprob));
}

TEST_CASE("validate names the out-of-range parameter", "[sampler]") {
  CHECK(validate(SamplingParams{}, 100).is_ok());
  SamplingParams edges;
  edges.temperature = 0.0f;
  edges.top_k = -1;
  edges.top_p = 1.0f;
  edges.min_p = 1.0f;
  edges.presence_penalty = -2.0f;
  edges.frequency_penalty = 2.0f;
  edges.logit_bias = {{0, -100.0f}, {99, 100.0f}};
  edges.logprobs = 20;
  CHECK(validate(edges, 100).is_ok());

  struct Case {
    std::function<void(SamplingParams&)> set;
    std::string name;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Case> cases = {
      {[](SamplingParams& p) { p.temperature = -0.5f; }, "temperature"},
      {[&](SamplingParams& p) { p.temperature = nan; }, "temperature"},
      {[&](SamplingParams& p) { p.temperature = inf; }, "temperature"},
      {[](SamplingParams& p) { p.top_k = -2; }, "top_k"},
      {[](SamplingParams& p) { p.top_p = 0.0f; }, "top_p"},
      {[](SamplingParams& p) { p.top_p = 1.5f; }, "top_p"},
      {[&](SamplingParams& p) { p.top_p = nan; }, "top_p"},
      {[](SamplingParams& p) { p.min_p = -0.1f; }, "min_p"},
      {[](SamplingParams& p) { p.min_p = 1.1f; }, "min_p"},
      {[](SamplingParams& p) { p.repetition_penalty = 0.0f; }, "repetition_penalty"},
      {[](SamplingParams& p) { p.repetition_penalty = -1.0f; }, "repetition_penalty"},
      {[](SamplingParams& p) { p.presence_penalty = 2.5f; }, "presence_penalty"},
      {[](SamplingParams& p) { p.frequency_penalty = -3.0f; }, "frequency_penalty"},
      {[](SamplingParams& p) {
         p.logit_bias = {{100, 1.0f}};
       },
       "logit_bias"},
      {[](SamplingParams& p) {
         p.logit_bias = {{-1, 1.0f}};
       },
       "logit_bias"},
      {[&](SamplingParams& p) {
         p.logit_bias = {{5, -inf}};
       },
       "logit_bias"},
      {[](SamplingParams& p) { p.logprobs = 21; }, "logprobs"},
      {[](SamplingParams& p) { p.logprobs = -1; }, "logprobs"},
  };
  for (const Case& c : cases) {
    SamplingParams params;
    c.set(params);
    const sparkd::Status status = validate(params, 100);
    INFO(c.name << ": " << status.to_string());
    CHECK(status.code() == StatusCode::kInvalidArgument);
    CHECK(status.message().find(c.name) != std::string::npos);
  }
  CHECK(validate(SamplingParams{}, 0).message().find("vocab_size") != std::string::npos);
}

TEST_CASE("sample rejects inputs that do not fit the logits row", "[sampler]") {
  Sampler sampler;
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  CHECK(sampler.sample({}, SamplingParams{}, {}, 1, 0).status().code() ==
        StatusCode::kInvalidArgument);
  SamplingParams bias;
  bias.logit_bias = {{3, 1.0f}};
  CHECK(sampler.sample(logits, bias, {}, 1, 0).status().code() == StatusCode::kInvalidArgument);
  CHECK(sampler.sample(logits, SamplingParams{}, TokenCounts(ids({0, 3})), 1, 0).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(
      sampler.sample(logits, SamplingParams{}, TokenCounts({}, ids({-1})), 1, 0).status().code() ==
      StatusCode::kInvalidArgument);

  const SamplingParams params;
  const TokenCounts counts;
  const std::vector<SamplingRow> rows = {{&params, &counts, 1, 0}, {&params, &counts, 2, 0}};
  std::vector<SampledToken> out;
  CHECK(sampler.sample_batch(logits, 3, rows, out).code() == StatusCode::kInvalidArgument);
  const std::vector<float> matrix(6, 0.0f);
  CHECK(sampler.sample_batch(matrix, 3, rows, out).is_ok());
  CHECK(out.size() == 2);
}

TEST_CASE("TokenCounts built incrementally equals TokenCounts built at once", "[sampler]") {
  const std::vector<int32_t> prompt = {5, 7, 5, 9};
  const std::vector<int32_t> output = {7, 3, 3, 3};
  const TokenCounts at_once(prompt, output);
  TokenCounts incremental;
  incremental.add_prompt_tokens(std::span(prompt).first(2));
  incremental.add_prompt_tokens(std::span(prompt).subspan(2));
  for (int32_t token : output) incremental.add_output_token(token);

  for (const TokenCounts* counts : std::vector<const TokenCounts*>{&at_once, &incremental}) {
    CHECK(counts->num_output_tokens() == 4);
    CHECK(counts->entries().size() == 4);  // 5, 7, 9, 3
    CHECK(counts->output_count(3) == 3);
    CHECK(counts->output_count(7) == 1);
    CHECK(counts->output_count(5) == 0);
    CHECK(counts->in_prompt(5));
    CHECK_FALSE(counts->in_prompt(3));
    CHECK(counts->min_token() == 3);
    CHECK(counts->max_token() == 9);
  }
}
