#include "engine/arch/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace sparkd::arch {

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

}  // namespace sparkd::arch
