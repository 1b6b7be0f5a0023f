// Mixture-of-experts routing (engine/backend/moe.*): the experts and weights each token
// gets, as transformers' Qwen3MoeSparseMoeBlock computes them.
#include <catch2/catch.hpp>
#include <cmath>
#include <span>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/moe.h"
#include "tests/support/check_aborts.h"
#include "tests/support/loaded_fixture.h"

using sparkd::ExpertAssignment;
using sparkd::route_tokens;

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

TEST_CASE("a decode step reads only the routed experts' weights", "[moe]") {
  for (const char* name : {"qwen3_f32", "qwen3_moe_f32"}) {
    INFO(name);
    sparkd::testing::LoadedFixture f(name);
    const sparkd::model::ModelSpec& spec = f.model->spec();
    uint64_t all = 0, embedding = 0, one_expert = 0;
    for (const auto& [tensor_name, tensor] : f.model->weights().tensors()) {
      all += tensor.size_bytes();
      if (tensor_name.find("embed_tokens") != std::string::npos) embedding = tensor.size_bytes();
      if (tensor_name.find("layers.0.mlp.experts.0.") != std::string::npos) {
        one_expert += tensor.size_bytes();
      }
    }
    int sparse_layers = 0;
    for (int32_t l = 0; l < spec.num_layers; ++l) sparse_layers += spec.is_sparse_layer(l);
    const uint64_t unread_experts =
        static_cast<uint64_t>(sparse_layers) * (spec.moe.num_experts - spec.moe.experts_per_token);

    auto kv = f.model->decoder()->allocate_kv_cache(4);
    REQUIRE(kv.has_value());
    const std::vector<int32_t> token = {7};
    sparkd::arch::DecoderStepSequence step;
    step.tokens = token;
    REQUIRE(f.model->decoder()->forward({&step, 1}, *kv).has_value());
    // Everything once but the embedding table (one row) and the experts no token chose.
    CHECK(f.model->decoder()->last_forward_weight_bytes() ==
          all - embedding + embedding / spec.vocab_size - unread_experts * one_expert);
    if (spec.moe.num_experts > 0) CHECK(unread_experts == 12);  // 2 sparse layers x (8 - 2)
  }
}

TEST_CASE("moe_route lists each token's experts in ascending order, with route_tokens' weights",
          "[moe]") {
  auto backend = sparkd::make_cpu_backend();
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f,  0.0f,  //
                                     0.5f, 0.5f, -1.0f, 4.0f};
  std::vector<sparkd::Buffer> buffers;
  const auto tensor = [&](std::vector<int64_t> shape, const std::vector<float>& values) {
    sparkd::Tensor t(sparkd::DType::kF32, std::move(shape), nullptr);
    auto buffer = backend->allocate(t.size_bytes());
    REQUIRE(buffer.has_value());
    t.data = buffer->data();
    backend->upload(t.data, values.data(), t.size_bytes());
    buffers.push_back(std::move(*buffer));
    return t;
  };
  sparkd::Tensor ids = tensor({2, 2}, std::vector<float>(4, -1.0f));
  sparkd::Tensor weights = tensor({2, 2}, std::vector<float>(4, -1.0f));
  backend->moe_route(tensor({2, 4}, logits), 2, true, ids, weights);
  std::vector<float> got_ids(4), got_weights(4);
  backend->download_f32(ids, got_ids);
  backend->download_f32(weights, got_weights);
  // Token 0: experts 1 (rank 1) and 2; token 1: experts 0 and 3 (rank 1), ascending.
  CHECK(got_ids == std::vector<float>{1.0f, 2.0f, 0.0f, 3.0f});
  const auto routed = route_tokens(logits, 2, 4, 2, true);
  CHECK(got_weights[0] == routed[1].weights[0]);
  CHECK(got_weights[1] == routed[2].weights[0]);
  CHECK(got_weights[2] == routed[0].weights[0]);
  CHECK(got_weights[3] == routed[3].weights[0]);

  // An id past the experts (a bug in whoever wrote the routing) stops the op.
  // Two experts: token 0's second expert (2) is not one of them.
  const sparkd::Tensor gate = tensor({4, 8}, std::vector<float>(32, 0.0f));
  const sparkd::Tensor down = tensor({8, 4}, std::vector<float>(32, 0.0f));
  const std::vector<sparkd::Tensor> gates = {gate, gate}, downs = {down, down};
  sparkd::MoeExperts experts;
  experts.gate = gates;
  experts.up = gates;
  experts.down = downs;
  const int64_t rows = sparkd::moe_scratch_rows(2, 2);
  const sparkd::MoeScratch scratch{tensor({rows, 8}, std::vector<float>(rows * 8, 0.0f)),
                                   tensor({rows, 4}, std::vector<float>(rows * 4, 0.0f)),
                                   tensor({rows, 4}, std::vector<float>(rows * 4, 0.0f)),
                                   tensor({rows, 8}, std::vector<float>(rows * 8, 0.0f))};
  const sparkd::Tensor x = tensor({2, 8}, std::vector<float>(16, 1.0f));
  sparkd::Tensor residual = tensor({2, 8}, std::vector<float>(16, 0.0f));
  sparkd::testing::check_aborts(
      [&] { backend->moe_experts(x, ids, weights, experts, scratch, residual); },
      "moe_experts: token 0 is routed to expert 2.000000 of 2");
}
