// gpt-oss's fused expert tensors (engine/model/gpt_oss_experts.h): the loader must hold exactly
// the matrices transformers computes with, in the [experts, out, in] layout the decoder binds,
// from the float layout transformers saves and from the MXFP4 blocks/scales OpenAI released.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/half.h"
#include "engine/model/gpt_oss_experts.h"
#include "engine/model/weights.h"
#include "engine/tasks/model_footprint.h"
#include "tests/support/golden_arrays.h"
#include "tests/support/loaded_fixture.h"
#include "tests/support/model_copy.h"

namespace {

using namespace sparkd;
using sparkd::testing::fixture_model_dir;
using sparkd::testing::GoldenArrays;
using sparkd::testing::ModelCopy;

std::vector<float> as_f32(Backend& backend, const Tensor& tensor) {
  std::vector<float> values(static_cast<size_t>(tensor.numel()));
  backend.download_f32(tensor, values);
  return values;
}

// Checks a loaded layer's experts against transformers' fused x @ W tensors: gate_up
// [E, hidden, 2·inter] (gate even columns, up odd), down [E, inter, hidden].
void check_layer(Backend& backend, const model::ModelWeights& weights, int layer,
                 const std::vector<float>& gate_up, const std::vector<float>& down, int64_t experts,
                 int64_t hidden, int64_t inter) {
  const std::string p = "model.layers." + std::to_string(layer) + ".mlp.experts.";
  auto gate = weights.get(p + "gate_proj.weight", {experts, inter, hidden});
  auto up = weights.get(p + "up_proj.weight", {experts, inter, hidden});
  auto down_proj = weights.get(p + "down_proj.weight", {experts, hidden, inter});
  REQUIRE(gate.has_value());
  REQUIRE(up.has_value());
  REQUIRE(down_proj.has_value());
  const std::vector<float> g = as_f32(backend, *gate), u = as_f32(backend, *up),
                           d = as_f32(backend, *down_proj);
  int64_t mismatches = 0;
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t i = 0; i < inter; ++i) {
      for (int64_t h = 0; h < hidden; ++h) {
        const size_t fused = static_cast<size_t>((e * hidden + h) * 2 * inter + 2 * i);
        const size_t split = static_cast<size_t>((e * inter + i) * hidden + h);
        mismatches += g[split] != gate_up[fused];
        mismatches += u[split] != gate_up[fused + 1];
        mismatches += d[static_cast<size_t>((e * hidden + h) * inter + i)] !=
                      down[static_cast<size_t>((e * inter + i) * hidden + h)];
      }
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("gpt-oss MXFP4 experts load as transformers dequantizes them", "[gpt_oss][weights]") {
  auto backend = make_cpu_backend();
  auto weights = model::ModelWeights::load(fixture_model_dir("gpt_oss_mxfp4"), *backend);
  INFO((weights ? "" : weights.status().to_string()));
  REQUIRE(weights.has_value());
  const GoldenArrays golden(std::filesystem::path(fixture_model_dir("gpt_oss_mxfp4")) /
                            "expected.safetensors");
  for (int layer : {0, 3}) {
    INFO("layer " << layer);
    std::vector<int64_t> shape;
    const std::vector<float> gate_up =
        golden.get("experts." + std::to_string(layer) + ".gate_up_proj", &shape);
    REQUIRE(shape.size() == 3);
    const std::vector<float> down = golden.get("experts." + std::to_string(layer) + ".down_proj");
    const std::string p = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    CHECK(weights->tensors().at(p + "gate_proj.weight").dtype == DType::kMXFP4);
    CHECK(weights->tensors().at(p + "down_proj.weight").dtype == DType::kMXFP4);
    check_layer(*backend, *weights, layer, gate_up, down, shape[0], shape[1], shape[2] / 2);
  }
  // No U8 halves are left over as tensors of their own.
  for (const auto& [name, tensor] : weights->tensors()) {
    INFO(name);
    CHECK(name.find("_blocks") == std::string::npos);
    CHECK(name.find("_scales") == std::string::npos);
  }
}

TEST_CASE("gpt-oss float experts are split and transposed", "[gpt_oss][weights]") {
  auto backend = make_cpu_backend();
  auto weights = model::ModelWeights::load(fixture_model_dir("gpt_oss_f32"), *backend);
  REQUIRE(weights.has_value());
  // The stored tensors themselves are the reference.
  const GoldenArrays stored(std::filesystem::path(fixture_model_dir("gpt_oss_f32")) /
                            "model.safetensors");
  const std::string p = "model.layers.1.mlp.experts.";
  std::vector<int64_t> shape;
  const std::vector<float> gate_up = stored.get(p + "gate_up_proj", &shape);
  check_layer(*backend, *weights, 1, gate_up, stored.get(p + "down_proj"), shape[0], shape[1],
              shape[2] / 2);
  const int64_t experts = shape[0], inter = shape[2] / 2;
  const std::vector<float> fused_bias = stored.get(p + "gate_up_proj_bias");
  auto gate_bias = weights->get(p + "gate_proj.bias", {experts, inter});
  auto up_bias = weights->get(p + "up_proj.bias", {experts, inter});
  REQUIRE(gate_bias.has_value());
  REQUIRE(up_bias.has_value());
  const std::vector<float> g = as_f32(*backend, *gate_bias), u = as_f32(*backend, *up_bias);
  for (size_t i = 0; i < g.size(); ++i) {
    CHECK(g[i] == fused_bias[2 * i]);
    CHECK(u[i] == fused_bias[2 * i + 1]);
  }
  CHECK(as_f32(*backend, weights->tensors().at(p + "down_proj.bias")) ==
        stored.get(p + "down_proj_bias"));
}

TEST_CASE("with quantize, gpt-oss's float experts are quantized as they are derived",
          "[gpt_oss][weights][footprint]") {
  auto backend = make_cpu_backend();
  model::WeightLoadOptions options;
  options.quantize = DType::kQ8_0;
  auto weights = model::ModelWeights::load(fixture_model_dir("gpt_oss_f32"), *backend, options);
  REQUIRE(weights.has_value());
  const std::string p = "model.layers.0.mlp.experts.";
  CHECK(weights->tensors().at(p + "gate_proj.weight").dtype == DType::kQ8_0);
  CHECK(weights->tensors().at(p + "down_proj.weight").dtype == DType::kQ8_0);
  CHECK(weights->tensors().at(p + "gate_proj.bias").dtype == DType::kF32);
  // Q8_0 round trip of the stored values: close, not equal.
  const GoldenArrays stored(std::filesystem::path(fixture_model_dir("gpt_oss_f32")) /
                            "model.safetensors");
  std::vector<int64_t> shape;
  const std::vector<float> gate_up = stored.get("model.layers.0.mlp.experts.gate_up_proj", &shape);
  const std::vector<float> gate = as_f32(*backend, weights->tensors().at(p + "gate_proj.weight"));
  const int64_t hidden = shape[1], inter = shape[2] / 2;
  double worst = 0;
  for (int64_t i = 0; i < inter; ++i) {
    for (int64_t h = 0; h < hidden; ++h) {
      worst = std::max(worst, std::fabs(double{gate[static_cast<size_t>(i * hidden + h)]} -
                                        gate_up[static_cast<size_t>(h * 2 * inter + 2 * i)]));
    }
  }
  CHECK(worst > 0);
  CHECK(worst < 0.02);  // half a Q8_0 step of weights within about +-2
  // The footprint estimate holds what the load holds.
  tasks::FootprintOptions footprint_options;
  footprint_options.quantize = DType::kQ8_0;
  auto footprint = tasks::estimate_footprint(fixture_model_dir("gpt_oss_f32"), footprint_options);
  REQUIRE(footprint.has_value());
  CHECK(footprint->weights_bytes == weights->size_bytes());
}

TEST_CASE("gpt-oss BF16 experts keep their dtype and their biases widen", "[gpt_oss][weights]") {
  // Two experts, hidden 2, inter 2: gate_up [2, 2, 4] and its bias [2, 4], in BF16.
  std::vector<uint16_t> gate_up(16), bias(8);
  for (size_t i = 0; i < gate_up.size(); ++i) gate_up[i] = f32_to_bf16(static_cast<float>(i));
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = f32_to_bf16(0.5f * static_cast<float>(i));
  model::SafetensorsHeader header;
  header.path = "model.safetensors";
  header.tensors.push_back(
      {"model.layers.0.mlp.experts.gate_up_proj", DType::kBF16, {2, 2, 4}, 100, 32});
  header.tensors.push_back(
      {"model.layers.0.mlp.experts.gate_up_proj_bias", DType::kBF16, {2, 4}, 132, 16});
  header.tensors.push_back({"model.norm.weight", DType::kBF16, {2}, 148, 4});
  std::vector<model::SafetensorsHeader> headers = {header};
  auto plans = model::plan_gpt_oss_experts(headers);
  REQUIRE(plans.has_value());
  REQUIRE(plans->size() == 2);
  // What is derived leaves the plain list; the rest stays.
  REQUIRE(headers[0].tensors.size() == 1);
  CHECK(headers[0].tensors[0].name == "model.norm.weight");

  const model::DerivedTensors& weights_plan = plans->at(0);
  REQUIRE(weights_plan.outputs.size() == 2);
  CHECK(weights_plan.outputs[0].name == "model.layers.0.mlp.experts.gate_proj.weight");
  CHECK(weights_plan.outputs[0].dtype == DType::kBF16);
  CHECK(weights_plan.outputs[0].shape == std::vector<int64_t>{2, 2, 2});
  std::vector<uint16_t> gate(8), up(8);
  const uint8_t* in[] = {reinterpret_cast<const uint8_t*>(gate_up.data())};
  uint8_t* out[] = {reinterpret_cast<uint8_t*>(gate.data()), reinterpret_cast<uint8_t*>(up.data())};
  weights_plan.derive(in, out);
  // gate[e][i][h] = gate_up[e][h][2i]: expert 0 is [[0, 1, 2, 3], [4, 5, 6, 7]] by [h][c].
  CHECK(bf16_to_f32(gate[0]) == 0.0f);  // e0 i0 h0
  CHECK(bf16_to_f32(gate[1]) == 4.0f);  // e0 i0 h1
  CHECK(bf16_to_f32(gate[2]) == 2.0f);  // e0 i1 h0
  CHECK(bf16_to_f32(up[1]) == 5.0f);    // e0 i0 h1
  CHECK(bf16_to_f32(up[7]) == 15.0f);   // e1 i1 h1

  const model::DerivedTensors& bias_plan = plans->at(1);
  REQUIRE(bias_plan.outputs.size() == 2);
  CHECK(bias_plan.outputs[1].name == "model.layers.0.mlp.experts.up_proj.bias");
  CHECK(bias_plan.outputs[1].dtype == DType::kF32);
  std::vector<float> gate_bias(4), up_bias(4);
  const uint8_t* bias_in[] = {reinterpret_cast<const uint8_t*>(bias.data())};
  uint8_t* bias_out[] = {reinterpret_cast<uint8_t*>(gate_bias.data()),
                         reinterpret_cast<uint8_t*>(up_bias.data())};
  bias_plan.derive(bias_in, bias_out);
  CHECK(gate_bias == std::vector<float>{0.0f, 1.0f, 2.0f, 3.0f});
  CHECK(up_bias == std::vector<float>{0.5f, 1.5f, 2.5f, 3.5f});
}

TEST_CASE("gpt-oss expert tensors that do not fit its layout are refused", "[gpt_oss][weights]") {
  const std::string blocks = "model.layers.0.mlp.experts.gate_up_proj_blocks";
  const std::string scales = "model.layers.0.mlp.experts.gate_up_proj_scales";
  SECTION("blocks without their scales") {
    ModelCopy copy("gpt_oss_mxfp4");
    copy.edit_safetensors_header([&](nlohmann::json& header) { header.erase(scales); });
    const Status status = copy.load();
    CHECK(status.code() == StatusCode::kDataLoss);
    CHECK_THAT(status.message(), Catch::Contains(scales) && Catch::Contains("both halves"));
  }
  SECTION("a U8 tensor that is no expert matrix's half") {
    ModelCopy copy("gpt_oss_mxfp4");
    copy.edit_safetensors_header([&](nlohmann::json& header) {
      header["model.layers.0.mlp.router.extra_blocks"] = header[blocks];
      header["model.layers.0.mlp.router.extra_scales"] = header[scales];
      header.erase(blocks);
      header.erase(scales);
    });
    const Status status = copy.load();
    CHECK(status.code() == StatusCode::kUnimplemented);
    CHECK_THAT(status.message(), Catch::Contains("unsupported dtype U8"));
  }
  SECTION("scales that do not match their blocks") {
    std::vector<model::SafetensorsHeader> headers(1);
    headers[0].path = "model.safetensors";
    headers[0].byte_tensors.push_back({blocks, {2, 4, 2, 16}, 0, 256});
    headers[0].byte_tensors.push_back({scales, {2, 4, 3}, 256, 24});
    auto plans = model::plan_gpt_oss_experts(headers);
    REQUIRE_FALSE(plans.has_value());
    CHECK(plans.status().code() == StatusCode::kDataLoss);
    CHECK_THAT(plans.status().message(), Catch::Contains("do not pair"));
  }
  SECTION("a fused gate_up_proj with an odd width") {
    std::vector<model::SafetensorsHeader> headers(1);
    headers[0].path = "model.safetensors";
    headers[0].tensors.push_back(
        {"model.layers.0.mlp.experts.gate_up_proj", DType::kF32, {2, 4, 5}, 0, 160});
    auto plans = model::plan_gpt_oss_experts(headers);
    REQUIRE_FALSE(plans.has_value());
    CHECK(plans.status().code() == StatusCode::kDataLoss);
    CHECK_THAT(plans.status().message(), Catch::Contains("[experts, hidden, 2 * intermediate]"));
  }
}

}  // namespace
