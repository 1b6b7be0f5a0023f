// Mixture-of-experts on the host: routing (which experts each token goes to, with what
// weight, from the router's logits) and the experts run one at a time over their tokens, each
// expert's weights read once per call whatever the batch. These are the Backend's default
// moe_route and moe_experts (the CPU backend's, and a GPU backend's for many tokens); they
// reach memory only through the backend's own ops.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend/backend.h"

namespace sparkd {

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

// Backend::moe_route through `backend`: the logits downloaded, routed by route_tokens, and
// the ids and weights uploaded.
void route_on_host(Backend& backend, const Tensor& logits, int32_t top_k, bool normalize,
                   Tensor& expert_ids, Tensor& expert_weights);

// Backend::moe_experts through `backend`'s gather_rows, linear, activation and
// scatter_add_rows: each routed expert once over all of its tokens, experts in ascending
// order (so each token's terms are added in the order the routing lists them). Uses the
// first `tokens` rows of each scratch tensor. Returns the experts that had tokens.
int64_t run_experts_by_expert(Backend& backend, const Tensor& x, const Tensor& expert_ids,
                              const Tensor& expert_weights, const MoeExperts& experts,
                              const MoeScratch& scratch, Tensor& residual);

}  // namespace sparkd
