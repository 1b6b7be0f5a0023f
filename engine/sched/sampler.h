// Token sampling for the scheduler: vLLM's SamplingParams semantics on host F32 logits.
//
// Pipeline for one sequence (vLLM order; bias is a logits processor that runs before the
// sampler's penalties, as in vLLM):
//   1. logit_bias added;
//   2. repetition_penalty on tokens seen in the prompt OR the output (logit > 0 divided,
//      otherwise multiplied); then frequency_penalty * count and presence_penalty * (count > 0)
//      subtracted, counting OUTPUT tokens only;
//   3. temperature == 0: greedy, argmax of the adjusted logits (lowest id among equal maxima);
//      top_k/top_p/min_p are ignored, as in vLLM;
//   4. otherwise logits /= temperature (values in (0, 0.01) are raised to 0.01, as vLLM does,
//      so that exp() does not overflow into noise); then top-k, then top-p on the distribution
//      renormalised over the top-k survivors, then min-p (vLLM V0 / Hugging Face order; vLLM V1
//      applies min-p before top-k/top-p, which differs only when both min_p and top_p are set);
//   5. one uniform draw u in [0,1) from a counter-based generator keyed by (seed, output
//      position) picks a token by inverse CDF over the survivors. Nothing is shared between
//      sequences, so a row's token does not depend on the other rows of the batch.
//
// Logprobs are those of the RAW model distribution (log_softmax of the logits as given, before
// bias, penalties and temperature): vLLM's default "raw_logprobs" mode.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"

namespace sparkd::sched {

// The most top-n logprobs a request may ask for (vLLM's default max_logprobs).
inline constexpr int32_t kMaxLogprobs = 20;
// Positive temperatures below this are raised to it (vLLM's _MAX_TEMP clamp).
inline constexpr float kMinTemperature = 0.01f;

struct SamplingParams {
  float temperature = 1.0f;                           // 0 = greedy
  int32_t top_k = 0;                                  // 0 or -1 = off
  float top_p = 1.0f;                                 // in (0, 1]; 1 = off
  float min_p = 0.0f;                                 // in [0, 1]; 0 = off
  float repetition_penalty = 1.0f;                    // > 0; 1 = off; prompt and output tokens
  float presence_penalty = 0.0f;                      // in [-2, 2]; output tokens only
  float frequency_penalty = 0.0f;                     // in [-2, 2]; output tokens only
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token id, added to its logit)
  std::optional<uint64_t> seed;  // unset: admission_seed() draws one from std::random_device
  int32_t logprobs = 0;          // top-n raw logprobs to return per token; 0 = none
};

// INVALID_ARGUMENT naming the first out-of-range parameter, or OK.
Status validate(const SamplingParams& params, int32_t vocab_size);

// The seed a request samples with for its whole life: params.seed, or one drawn now. Call once
// at admission and keep it with the request (preemption and recompute must reuse it).
uint64_t admission_seed(const SamplingParams& params);

// The uniform draw in [0, 1) for output position `output_position` of a request seeded with
// `seed`: output number `output_position` of a SplitMix64 stream whose state is the hashed
// seed. A pure function of its arguments; no generator state exists anywhere.
double uniform_draw(uint64_t seed, int64_t output_position);

// Per-sequence token statistics for the penalties, kept by the scheduler and updated as tokens
// arrive (no recounting per step). Penalties cost O(distinct tokens), not O(sequence length).
class TokenCounts {
 public:
  struct Entry {
    int32_t token = 0;
    int32_t output_count = 0;  // occurrences among the generated tokens
    bool in_prompt = false;
  };

  TokenCounts() = default;
  explicit TokenCounts(std::span<const int32_t> prompt_tokens,
                       std::span<const int32_t> output_tokens = {});

  void add_prompt_tokens(std::span<const int32_t> tokens);
  void add_output_token(int32_t token);

  // Every distinct token of the prompt or the output, in first-seen order.
  std::span<const Entry> entries() const { return entries_; }
  int32_t output_count(int32_t token) const;
  bool in_prompt(int32_t token) const;
  int64_t num_output_tokens() const { return num_output_tokens_; }
  // Smallest and largest token id recorded (0 and -1 when empty), so that sample() can check
  // the ids against the vocabulary in O(1).
  int32_t min_token() const { return min_token_; }
  int32_t max_token() const { return max_token_; }

 private:
  Entry& entry(int32_t token);

  std::vector<Entry> entries_;
  std::unordered_map<int32_t, uint32_t> index_;  // token -> position in entries_
  int64_t num_output_tokens_ = 0;
  int32_t min_token_ = 0;
  int32_t max_token_ = -1;
};

struct SampledToken {
  int32_t token = -1;
  // Raw log-probability of `token`; NaN when params.logprobs == 0 (not computed).
  float logprob = 0.0f;
  // The params.logprobs most likely tokens of the raw distribution, most likely first (equal
  // logprobs: lower id first).
  std::vector<std::pair<int32_t, float>> top_logprobs;
};

// Applies steps 1-2 of the pipeline in place: logit_bias, then the repetition, frequency and
// presence penalties. Ids are assumed in range (sample() checks them).
void apply_logit_adjustments(std::span<float> logits, const SamplingParams& params,
                             const TokenCounts& counts);

// One row of a batch: the sequence's parameters, counts, admission seed and output position.
struct SamplingRow {
  const SamplingParams* params = nullptr;
  const TokenCounts* counts = nullptr;
  uint64_t seed = 0;
  int64_t output_position = 0;
};

// Samples next tokens. Holds scratch buffers reused across calls: one Sampler per runner
// thread; not thread-safe.
class Sampler {
 public:
  // `logits`: one vocab-sized row of host F32 logits. `params` should have passed validate();
  // token ids in the bias and the counts are checked against logits.size().
  Expected<SampledToken> sample(std::span<const float> logits, const SamplingParams& params,
                                const TokenCounts& counts, uint64_t seed, int64_t output_position);

  // Row r of the row-major [rows.size() x vocab_size] matrix `logits` is sampled with rows[r];
  // each result equals sample() of that row alone. `out` is resized to rows.size().
  Status sample_batch(std::span<const float> logits, int32_t vocab_size,
                      std::span<const SamplingRow> rows, std::vector<SampledToken>& out);

  // The exact distribution sample() draws from (after adjustments, temperature and filters),
  // one probability per vocabulary id, 0 for filtered tokens; one-hot for greedy. For tests
  // and debugging.
  Expected<std::vector<double>> distribution(std::span<const float> logits,
                                             const SamplingParams& params,
                                             const TokenCounts& counts);

 private:
  Status prepare(std::span<const float> logits, const SamplingParams& params,
                 const TokenCounts& counts);
  // Random path: fills weights_ (and candidates_ unless all_tokens_) with the unnormalised
  // probabilities of the surviving tokens; returns their sum (0 when degenerate).
  double build_weights(const SamplingParams& params);
  int32_t argmax() const;
  void fill_logprobs(std::span<const float> logits, int32_t n, SampledToken& result);

  std::vector<float> work_;          // adjusted, then temperature-scaled, logits
  std::vector<int32_t> candidates_;  // surviving token ids when !all_tokens_
  std::vector<float> weights_;       // exp(logit - max) per candidate, 0 if cut by min-p
  std::vector<int32_t> top_;         // top-n logprob ids
  bool all_tokens_ = true;
};

}  // namespace sparkd::sched
