// Mixture-of-experts routing: which experts each token goes to, and with what weight, from the
// router's logits. The layer then runs each expert once over all of its tokens (its weights
// are read once per step, whatever the batch) and adds the weighted outputs back per token.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace sparkd::arch {

// The tokens routed to one expert (ascending) and each one's weight.
struct ExpertAssignment {
  std::vector<int32_t> tokens;
  std::vector<float> weights;
};

// As transformers' Qwen3MoeSparseMoeBlock (and Mixtral's) routes: per token, softmax over all
// experts' logits in F32, the top_k largest probabilities (equal ones in expert order), and,
// when normalize_top_k, those k divided by their sum. `router_logits` is [tokens,
// num_experts], row-major. Returns num_experts assignments (an unused expert's is empty).
std::vector<ExpertAssignment> route_tokens(std::span<const float> router_logits, int64_t tokens,
                                           int32_t num_experts, int32_t top_k,
                                           bool normalize_top_k);

}  // namespace sparkd::arch
