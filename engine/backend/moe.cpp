#include "engine/backend/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/backend/op_checks.h"

namespace sparkd {

std::vector<ExpertAssignment> route_tokens(std::span<const float> router_logits, int64_t tokens,
                                           int32_t num_experts, int32_t top_k,
                                           bool normalize_top_k) {
  std::vector<ExpertAssignment> experts(static_cast<size_t>(num_experts));
  std::vector<float> probabilities(static_cast<size_t>(num_experts));
  std::vector<int32_t> order(static_cast<size_t>(num_experts));
  for (int64_t t = 0; t < tokens; ++t) {
    const float* logits = router_logits.data() + t * num_experts;
    const float max = *std::max_element(logits, logits + num_experts);
    float sum = 0.0f;
    for (int32_t e = 0; e < num_experts; ++e) {
      probabilities[e] = std::exp(logits[e] - max);
      sum += probabilities[e];
    }
    for (float& p : probabilities) p /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
      return probabilities[a] > probabilities[b] || (probabilities[a] == probabilities[b] && a < b);
    });
    float chosen = 0.0f;
    for (int32_t i = 0; i < top_k; ++i) chosen += probabilities[order[i]];
    for (int32_t i = 0; i < top_k; ++i) {
      const int32_t e = order[i];
      experts[e].tokens.push_back(static_cast<int32_t>(t));
      experts[e].weights.push_back(normalize_top_k ? probabilities[e] / chosen : probabilities[e]);
    }
  }
  return experts;
}

void route_on_host(Backend& backend, const Tensor& logits, int32_t top_k, bool normalize,
                   Tensor& expert_ids, Tensor& expert_weights) {
  const int64_t tokens = logits.rows();
  const int32_t experts = static_cast<int32_t>(logits.cols());
  std::vector<float> host(static_cast<size_t>(logits.numel()));
  backend.download_f32(logits, host);
  const std::vector<ExpertAssignment> routed =
      route_tokens(host, tokens, experts, top_k, normalize);
  // Per token, its experts in ascending order: experts are visited in order.
  std::vector<float> ids(static_cast<size_t>(tokens * top_k)), weights(ids.size());
  std::vector<int32_t> filled(static_cast<size_t>(tokens), 0);
  for (int32_t e = 0; e < experts; ++e) {
    const ExpertAssignment& assigned = routed[static_cast<size_t>(e)];
    for (size_t i = 0; i < assigned.tokens.size(); ++i) {
      const int32_t t = assigned.tokens[i];
      const size_t at = static_cast<size_t>(t) * top_k + filled[static_cast<size_t>(t)]++;
      ids[at] = static_cast<float>(e);
      weights[at] = assigned.weights[i];
    }
  }
  backend.upload(expert_ids.data, ids.data(), ids.size() * sizeof(float));
  backend.upload(expert_weights.data, weights.data(), weights.size() * sizeof(float));
}

int64_t run_experts_by_expert(Backend& backend, const Tensor& x, const Tensor& expert_ids,
                              const Tensor& expert_weights, const MoeExperts& experts,
                              const MoeScratch& scratch, Tensor& residual) {
  const int64_t tokens = x.rows();
  const int64_t top_k = expert_ids.cols();
  std::vector<float> ids(static_cast<size_t>(expert_ids.numel()));
  std::vector<float> weights(ids.size());
  backend.download_f32(expert_ids, ids);
  backend.download_f32(expert_weights, weights);
  std::vector<ExpertAssignment> routed(experts.gate.size());
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < top_k; ++j) {
      const size_t at = static_cast<size_t>(t * top_k + j);
      const auto e = static_cast<size_t>(ids[at]);
      if (e >= routed.size()) {
        OpChecks(backend.name())
            .fail("moe_experts", "token " + std::to_string(t) + " is routed to expert " +
                                     std::to_string(ids[at]) + " of " +
                                     std::to_string(routed.size()));
      }
      routed[e].tokens.push_back(static_cast<int32_t>(t));
      routed[e].weights.push_back(weights[at]);
    }
  }
  const auto bias = [](std::span<const Tensor> biases, size_t e) {
    return biases.empty() ? nullptr : &biases[e];
  };
  int64_t used = 0;
  for (size_t e = 0; e < routed.size(); ++e) {
    const ExpertAssignment& assigned = routed[e];
    if (assigned.tokens.empty()) continue;
    ++used;
    const int64_t m = static_cast<int64_t>(assigned.tokens.size());
    Tensor input = scratch.input.row_range(0, m);
    Tensor gate = scratch.gate.row_range(0, m);
    Tensor up = scratch.up.row_range(0, m);
    Tensor output = scratch.output.row_range(0, m);
    backend.gather_rows(x, assigned.tokens, input);
    backend.linear(input, experts.gate[e], bias(experts.gate_bias, e), gate);
    backend.linear(input, experts.up[e], bias(experts.up_bias, e), up);
    if (experts.clamped_swiglu) {
      backend.clamped_swiglu(gate, up, experts.swiglu_alpha, experts.swiglu_limit, gate);
    } else {
      backend.silu_mul(gate, up, gate);
    }
    backend.linear(gate, experts.down[e], bias(experts.down_bias, e), output);
    backend.scatter_add_rows(output, assigned.tokens, assigned.weights, residual);
  }
  return used;
}

void Backend::moe_route(const Tensor& logits, int32_t top_k, bool normalize, Tensor& expert_ids,
                        Tensor& expert_weights) {
  OpChecks(name()).moe_route(logits, top_k, expert_ids, expert_weights);
  route_on_host(*this, logits, top_k, normalize, expert_ids, expert_weights);
}

int64_t Backend::moe_experts(const Tensor& x, const Tensor& expert_ids,
                             const Tensor& expert_weights, const MoeExperts& experts,
                             const MoeScratch& scratch, Tensor& residual) {
  OpChecks(name()).moe_experts(x, expert_ids, expert_weights, experts, scratch, residual);
  return run_experts_by_expert(*this, x, expert_ids, expert_weights, experts, scratch, residual);
}

}  // namespace sparkd
