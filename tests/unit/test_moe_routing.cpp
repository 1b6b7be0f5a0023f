// Mixture-of-experts routing (engine/arch/moe_routing.*): the experts and weights each token
// gets, as transformers' Qwen3MoeSparseMoeBlock computes them.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "engine/arch/moe_routing.h"

using sparkd::arch::ExpertAssignment;
using sparkd::arch::route_tokens;

TEST_CASE("moe routing: softmax over all experts, the top k, optionally renormalised", "[moe]") {
  // Two tokens, four experts.
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f,  0.0f,  //
                                     0.5f, 0.5f, -1.0f, 4.0f};
  const double z0 = std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + std::exp(0.0);
  const std::vector<ExpertAssignment> raw = route_tokens(logits, 2, 4, 2, false);
  REQUIRE(raw.size() == 4);
  // Token 0 goes to experts 1 and 2; token 1 to 3 and, of the two equal 0.5s, expert 0.
  CHECK(raw[0].tokens == std::vector<int32_t>{1});
  CHECK(raw[1].tokens == std::vector<int32_t>{0});
  CHECK(raw[2].tokens == std::vector<int32_t>{0});
  CHECK(raw[3].tokens == std::vector<int32_t>{1});
  CHECK(raw[1].weights[0] == Approx(std::exp(3.0) / z0));
  CHECK(raw[2].weights[0] == Approx(std::exp(2.0) / z0));

  const std::vector<ExpertAssignment> normalized = route_tokens(logits, 2, 4, 2, true);
  CHECK(normalized[1].weights[0] + normalized[2].weights[0] == Approx(1.0));
  CHECK(normalized[1].weights[0] == Approx(std::exp(3.0) / (std::exp(3.0) + std::exp(2.0))));
  CHECK(normalized[3].weights[0] + normalized[0].weights[0] == Approx(1.0));
}

TEST_CASE("moe routing: an expert's tokens come in order, unused experts are empty", "[moe]") {
  // Every token prefers expert 2, then expert 0.
  std::vector<float> logits;
  for (int t = 0; t < 5; ++t) logits.insert(logits.end(), {2.0f, -3.0f, 5.0f});
  const auto routed = route_tokens(logits, 5, 3, 2, true);
  CHECK(routed[2].tokens == std::vector<int32_t>{0, 1, 2, 3, 4});
  CHECK(routed[0].tokens == std::vector<int32_t>{0, 1, 2, 3, 4});
  CHECK(routed[1].tokens.empty());
  CHECK(routed[1].weights.empty());
}
