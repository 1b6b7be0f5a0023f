#include "engine/sched/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>

namespace sparkd::sched {
namespace {

Status invalid(const std::string& message) {
  return {StatusCode::kInvalidArgument, message};
}

std::string show(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;

// SplitMix64's output function (Steele, Lea, Flood 2014).
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Descending by value, ties to the lower id: the order of top-k, top-p and top-n logprobs.
struct ByValueDesc {
  const float* values;
  bool operator()(int32_t a, int32_t b) const {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  }
};

// Below this many candidates the top-p nucleus is searched among the best `m` tokens, growing
// `m` only when their mass falls short: typical nuclei are small, so no full-vocab sort.
constexpr size_t kNucleusFirstGuess = 256;

}  // namespace

Status validate(const SamplingParams& params, int32_t vocab_size) {
  if (vocab_size <= 0) return invalid("vocab_size must be positive, got " + show(vocab_size));
  // Written as !(in range) so that NaN is rejected too.
  if (!(params.temperature >= 0.0f) || std::isinf(params.temperature)) {
    return invalid("temperature must be a finite value >= 0 (0 = greedy), got " +
                   show(params.temperature));
  }
  if (params.top_k < -1) {
    return invalid("top_k must be 0 or -1 (off) or at least 1, got " + show(params.top_k));
  }
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    return invalid("top_p must be in (0, 1], got " + show(params.top_p));
  }
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f)) {
    return invalid("min_p must be in [0, 1], got " + show(params.min_p));
  }
  if (!(params.repetition_penalty > 0.0f) || std::isinf(params.repetition_penalty)) {
    return invalid("repetition_penalty must be a finite value > 0 (1 = off), got " +
                   show(params.repetition_penalty));
  }
  if (!(params.presence_penalty >= -2.0f && params.presence_penalty <= 2.0f)) {
    return invalid("presence_penalty must be in [-2, 2], got " + show(params.presence_penalty));
  }
  if (!(params.frequency_penalty >= -2.0f && params.frequency_penalty <= 2.0f)) {
    return invalid("frequency_penalty must be in [-2, 2], got " + show(params.frequency_penalty));
  }
  for (const auto& [token, bias] : params.logit_bias) {
    if (token < 0 || token >= vocab_size) {
      return invalid("logit_bias token id " + show(token) + " is outside the vocabulary [0, " +
                     show(vocab_size) + ")");
    }
    if (!std::isfinite(bias)) {
      return invalid("logit_bias for token " + show(token) + " must be finite, got " + show(bias));
    }
  }
  if (params.logprobs < 0 || params.logprobs > kMaxLogprobs) {
    return invalid("logprobs must be in [0, " + show(kMaxLogprobs) + "], got " +
                   show(params.logprobs));
  }
  return Status::ok();
}

uint64_t admission_seed(const SamplingParams& params) {
  if (params.seed) return *params.seed;
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ static_cast<uint64_t>(device());
}

double uniform_draw(uint64_t seed, int64_t output_position) {
  // The stream's state after output_position + 1 steps, hashed: a counter-based generator.
  const uint64_t state =
      mix64(seed + kGoldenGamma) + (static_cast<uint64_t>(output_position) + 1) * kGoldenGamma;
  return static_cast<double>(mix64(state) >> 11) * 0x1.0p-53;  // top 53 bits -> [0, 1)
}

// ---------------------------------------------------------------------------------------
// TokenCounts
// ---------------------------------------------------------------------------------------

TokenCounts::TokenCounts(std::span<const int32_t> prompt_tokens,
                         std::span<const int32_t> output_tokens) {
  add_prompt_tokens(prompt_tokens);
  for (int32_t token : output_tokens) add_output_token(token);
}

TokenCounts::Entry& TokenCounts::entry(int32_t token) {
  auto [it, inserted] = index_.try_emplace(token, static_cast<uint32_t>(entries_.size()));
  if (inserted) {
    entries_.push_back({token, 0, false});
    if (entries_.size() == 1) {
      min_token_ = max_token_ = token;
    } else {
      min_token_ = std::min(min_token_, token);
      max_token_ = std::max(max_token_, token);
    }
  }
  return entries_[it->second];
}

void TokenCounts::add_prompt_tokens(std::span<const int32_t> tokens) {
  for (int32_t token : tokens) entry(token).in_prompt = true;
}

void TokenCounts::add_output_token(int32_t token) {
  ++entry(token).output_count;
  ++num_output_tokens_;
}

int32_t TokenCounts::output_count(int32_t token) const {
  auto it = index_.find(token);
  return it == index_.end() ? 0 : entries_[it->second].output_count;
}

bool TokenCounts::in_prompt(int32_t token) const {
  auto it = index_.find(token);
  return it != index_.end() && entries_[it->second].in_prompt;
}

// ---------------------------------------------------------------------------------------
// Sampler
// ---------------------------------------------------------------------------------------

void apply_logit_adjustments(std::span<float> logits, const SamplingParams& params,
                             const TokenCounts& counts) {
  for (const auto& [token, bias] : params.logit_bias) logits[token] += bias;

  const float repetition = params.repetition_penalty;
  const bool use_repetition = repetition != 1.0f;
  const bool use_output_penalties =
      params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f;
  if (!use_repetition && !use_output_penalties) return;
  for (const TokenCounts::Entry& e : counts.entries()) {
    float& logit = logits[e.token];
    // Every entry was seen in the prompt or the output: the repetition penalty's mask.
    if (use_repetition) logit = logit > 0.0f ? logit / repetition : logit * repetition;
    if (e.output_count > 0) {
      // vLLM subtracts the frequency term, then the presence term.
      logit -= params.frequency_penalty * static_cast<float>(e.output_count);
      logit -= params.presence_penalty;
    }
  }
}

Status Sampler::prepare(std::span<const float> logits, const SamplingParams& params,
                        const TokenCounts& counts) {
  if (logits.empty()) return invalid("sample: the logits row is empty");
  if (logits.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return invalid("sample: the logits row is larger than any vocabulary");
  }
  const auto vocab = static_cast<int32_t>(logits.size());
  for (const auto& [token, bias] : params.logit_bias) {
    if (token < 0 || token >= vocab) {
      return invalid("sample: logit_bias token id " + show(token) + " is outside the " +
                     show(vocab) + "-token logits row");
    }
  }
  if (counts.max_token() >= vocab || counts.min_token() < 0) {
    return invalid("sample: the sequence holds token ids outside [0, " + show(vocab) + "): min " +
                   show(counts.min_token()) + ", max " + show(counts.max_token()));
  }
  work_.assign(logits.begin(), logits.end());
  apply_logit_adjustments(work_, params, counts);
  return Status::ok();
}

int32_t Sampler::argmax() const {
  // max_element returns the first of equal maxima: the lowest id.
  return static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
}

double Sampler::build_weights(const SamplingParams& params) {
  const size_t vocab = work_.size();
  const float temperature = std::max(params.temperature, kMinTemperature);
  if (temperature != 1.0f) {
    for (float& logit : work_) logit /= temperature;
  }
  const float max_logit = *std::max_element(work_.begin(), work_.end());
  if (!std::isfinite(max_logit)) return 0.0;  // every token banned, or an infinite logit
  const float* logits = work_.data();
  const ByValueDesc by_logit{logits};
  auto weight = [&](int32_t token) { return std::exp(logits[token] - max_logit); };

  all_tokens_ = true;
  const size_t top_k = params.top_k > 0 ? static_cast<size_t>(params.top_k) : vocab;
  if (top_k < vocab) {
    candidates_.resize(vocab);
    std::iota(candidates_.begin(), candidates_.end(), 0);
    std::nth_element(candidates_.begin(), candidates_.begin() + static_cast<ptrdiff_t>(top_k - 1),
                     candidates_.end(), by_logit);
    candidates_.resize(top_k);
    all_tokens_ = false;
  }

  if (params.top_p < 1.0f) {
    // Mass of the distribution top-p sees: the top-k survivors, renormalised.
    double mass = 0.0;
    if (all_tokens_) {
      for (size_t i = 0; i < vocab; ++i) mass += std::exp(logits[i] - max_logit);
    } else {
      for (int32_t token : candidates_) mass += weight(token);
    }
    const double nucleus_mass = static_cast<double>(params.top_p) * mass;
    const size_t pool = all_tokens_ ? vocab : candidates_.size();
    // Keep token j (descending order) iff the mass strictly before it is < top_p: the smallest
    // prefix whose mass reaches top_p, never empty.
    for (size_t m = std::min(pool, kNucleusFirstGuess);; m = std::min(pool, m * 8)) {
      if (all_tokens_) {
        candidates_.resize(vocab);
        std::iota(candidates_.begin(), candidates_.end(), 0);
      }
      if (m < pool) {
        std::nth_element(candidates_.begin(), candidates_.begin() + static_cast<ptrdiff_t>(m - 1),
                         candidates_.end(), by_logit);
      }
      std::sort(candidates_.begin(), candidates_.begin() + static_cast<ptrdiff_t>(m), by_logit);
      size_t keep = 0;
      double before = 0.0;
      while (keep < m && (keep == 0 || before < nucleus_mass)) {
        before += weight(candidates_[keep]);
        ++keep;
      }
      const bool complete = keep < m || before >= nucleus_mass || m == pool;
      if (complete) {
        candidates_.resize(keep);
        all_tokens_ = false;
        break;
      }
    }
  }

  // min-p: p_i < min_p * p_max  <=>  exp(logit_i - max) < min_p. Relative to the maximum, so
  // the renormalisation by earlier filters does not change it; the maximum always survives.
  const float min_p = params.min_p;
  double total = 0.0;
  const size_t n = all_tokens_ ? vocab : candidates_.size();
  weights_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const float w = weight(all_tokens_ ? static_cast<int32_t>(i) : candidates_[i]);
    weights_[i] = w < min_p ? 0.0f : w;
    total += weights_[i];
  }
  return total;
}

Expected<SampledToken> Sampler::sample(std::span<const float> logits, const SamplingParams& params,
                                       const TokenCounts& counts, uint64_t seed,
                                       int64_t output_position) {
  SPARKD_RETURN_IF_ERROR(prepare(logits, params, counts));
  SampledToken result;
  double total = 0.0;
  if (params.temperature > 0.0f) total = build_weights(params);
  if (!(total > 0.0)) {
    result.token = argmax();  // greedy, or a degenerate row (all -inf)
  } else {
    const double target = uniform_draw(seed, output_position) * total;
    double cumulative = 0.0;
    size_t chosen = weights_.size();
    for (size_t i = 0; i < weights_.size(); ++i) {
      if (weights_[i] == 0.0f) continue;
      cumulative += weights_[i];
      chosen = i;
      if (cumulative > target) break;
    }
    result.token = all_tokens_ ? static_cast<int32_t>(chosen) : candidates_[chosen];
  }
  if (params.logprobs > 0) {
    fill_logprobs(logits, params.logprobs, result);
  } else {
    result.logprob = std::numeric_limits<float>::quiet_NaN();
  }
  return result;
}

void Sampler::fill_logprobs(std::span<const float> logits, int32_t n, SampledToken& result) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float logit : logits) sum += std::exp(static_cast<double>(logit) - max_logit);
  const double log_normalizer = static_cast<double>(max_logit) + std::log(sum);
  auto logprob = [&](int32_t token) {
    return static_cast<float>(static_cast<double>(logits[token]) - log_normalizer);
  };
  result.logprob = logprob(result.token);

  // One pass keeping the best n in a small sorted array: n <= 20, no sort of the vocabulary.
  const size_t wanted = std::min(static_cast<size_t>(n), logits.size());
  const ByValueDesc by_logit{logits.data()};
  top_.clear();
  for (int32_t token = 0; token < static_cast<int32_t>(logits.size()); ++token) {
    if (top_.size() == wanted) {
      if (!by_logit(token, top_.back())) continue;
      top_.pop_back();
    }
    top_.insert(std::upper_bound(top_.begin(), top_.end(), token, by_logit), token);
  }
  result.top_logprobs.clear();
  result.top_logprobs.reserve(top_.size());
  for (int32_t token : top_) result.top_logprobs.emplace_back(token, logprob(token));
}

Status Sampler::sample_batch(std::span<const float> logits, int32_t vocab_size,
                             std::span<const SamplingRow> rows, std::vector<SampledToken>& out) {
  if (vocab_size <= 0) return invalid("sample_batch: vocab_size must be positive");
  const size_t row_size = static_cast<size_t>(vocab_size);
  if (logits.size() != rows.size() * row_size) {
    return invalid("sample_batch: logits hold " + show(static_cast<double>(logits.size())) +
                   " values, expected " + show(static_cast<double>(rows.size())) + " rows x " +
                   show(vocab_size));
  }
  out.resize(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    const SamplingRow& row = rows[r];
    if (row.params == nullptr || row.counts == nullptr) {
      return invalid("sample_batch: row " + show(static_cast<double>(r)) +
                     " has no params or counts");
    }
    auto token = sample(logits.subspan(r * row_size, row_size), *row.params, *row.counts, row.seed,
                        row.output_position);
    if (!token) return token.status();
    out[r] = std::move(token).value();
  }
  return Status::ok();
}

Expected<std::vector<double>> Sampler::distribution(std::span<const float> logits,
                                                    const SamplingParams& params,
                                                    const TokenCounts& counts) {
  SPARKD_RETURN_IF_ERROR(prepare(logits, params, counts));
  std::vector<double> probs(logits.size(), 0.0);
  double total = 0.0;
  if (params.temperature > 0.0f) total = build_weights(params);
  if (!(total > 0.0)) {
    probs[static_cast<size_t>(argmax())] = 1.0;
    return probs;
  }
  for (size_t i = 0; i < weights_.size(); ++i) {
    const size_t token = all_tokens_ ? i : static_cast<size_t>(candidates_[i]);
    probs[token] = weights_[i] / total;
  }
  return probs;
}

}  // namespace sparkd::sched
