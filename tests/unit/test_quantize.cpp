// Quantizing floats at load (engine/backend/quantize.cpp, config.toml's `quantize`): the
// reference quantizers write the gguf package's bytes exactly; the K-quant quantizers'
// blocks decode to within their step of the input; a safetensors model loads with its
// matrices quantized, the footprint estimate holding what the load allocates, and its logits
// near the unquantized model's.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/quantize.h"
#include "engine/model/gguf.h"
#include "engine/tasks/loaded_model.h"
#include "engine/tasks/model_footprint.h"
#include "tests/support/file_range.h"

namespace {

using sparkd::DType;

const std::string kSource = SPARKD_SOURCE_DIR;

std::vector<float> dequantize(DType dtype, std::vector<uint8_t>& blocks, int64_t rows,
                              int64_t cols) {
  auto backend = sparkd::make_cpu_backend();
  std::vector<float> out(static_cast<size_t>(rows * cols));
  backend->download_f32(sparkd::Tensor(dtype, {rows, cols}, blocks.data()), out);
  return out;
}

}  // namespace

TEST_CASE("quantize: names, and ggml's reference quantizers byte for byte", "[quantize]") {
  CHECK(sparkd::quant::quantize_target("Q4_K") == DType::kQ4_K);
  CHECK(sparkd::quant::quantize_target("q8_0") == DType::kQ8_0);
  CHECK_FALSE(sparkd::quant::quantize_target("q3_k").has_value());
  CHECK_FALSE(sparkd::quant::quantize_target("int4").has_value());
  CHECK(sparkd::quant::quantize_target_names() == "q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k");

  const std::string path = kSource + "/tests/fixtures/gguf/quant_types.gguf";
  auto model = sparkd::model::read_gguf_model(path);
  REQUIRE(model.has_value());
  const auto tensors = model->tensors();
  for (DType dtype : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0}) {
    const std::string name = sparkd::dtype_name(dtype);
    INFO(name);
    const auto& values_info = *tensors.at("values." + name);
    const auto& raw_info = *tensors.at("raw." + name);
    const auto value_bytes =
        sparkd::testing::read_file_range(path, values_info.file_offset, values_info.size_bytes);
    const auto expected =
        sparkd::testing::read_file_range(path, raw_info.file_offset, raw_info.size_bytes);
    std::vector<float> values(value_bytes.size() / 4);
    std::memcpy(values.data(), value_bytes.data(), value_bytes.size());
    std::vector<uint8_t> ours(expected.size());
    sparkd::quant::quantize_row(values.data(), static_cast<int64_t>(values.size()), dtype,
                                ours.data());
    CHECK(ours == expected);
  }
}

TEST_CASE("quantize: K-quant blocks decode to within their step", "[quantize]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t rows = 4, cols = 512;
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (float& v : x) v = normal(rng);
  x[5] = 9.0f;  // an outlier: its sub-block's step grows, the others' must not
  // RMS error relative to the RMS of x, per type (round to nearest on 15, 31, 63 levels).
  const std::pair<DType, double> cases[] = {
      {DType::kQ4_K, 0.12}, {DType::kQ5_K, 0.06}, {DType::kQ6_K, 0.03}, {DType::kQ8_0, 0.01}};
  for (const auto& [dtype, bound] : cases) {
    INFO(sparkd::dtype_name(dtype));
    std::vector<uint8_t> blocks(sparkd::dtype_row_bytes(dtype, cols) * rows);
    for (int64_t r = 0; r < rows; ++r) {
      sparkd::quant::quantize_row(x.data() + r * cols, cols, dtype,
                                  blocks.data() + r * sparkd::dtype_row_bytes(dtype, cols));
    }
    const std::vector<float> back = dequantize(dtype, blocks, rows, cols);
    double error = 0, energy = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      error += (back[i] - x[i]) * (back[i] - x[i]);
      energy += x[i] * x[i];
    }
    CHECK(std::sqrt(error / energy) < bound);
    CHECK(std::abs(back[5] - 9.0f) < 0.5f);
  }
}

TEST_CASE("quantize: a safetensors model loads with quantized matrices", "[quantize]") {
  const std::string dir = kSource + "/tests/fixtures/models/llama_f32";
  auto backend = sparkd::make_cpu_backend();
  auto plain = sparkd::tasks::LoadedModel::load(dir, *backend);
  REQUIRE(plain.has_value());
  sparkd::model::WeightLoadOptions options;
  options.quantize = DType::kQ8_0;
  auto quantized = sparkd::tasks::LoadedModel::load(dir, *backend, options);
  REQUIRE(quantized.has_value());

  // Matrices with rows of whole Q8_0 blocks are Q8_0; the embedding table, vectors and
  // down_proj (rows of 120 values) are as stored.
  const auto& weights = (*quantized)->weights();
  CHECK(weights.tensors().at("model.layers.0.self_attn.q_proj.weight").dtype == DType::kQ8_0);
  CHECK(weights.tensors().at("model.layers.1.mlp.up_proj.weight").dtype == DType::kQ8_0);
  CHECK(weights.tensors().at("lm_head.weight").dtype == DType::kQ8_0);
  CHECK(weights.tensors().at("model.layers.1.mlp.down_proj.weight").dtype == DType::kF32);
  CHECK(weights.tensors().at("model.embed_tokens.weight").dtype == DType::kF32);
  CHECK(weights.tensors().at("model.norm.weight").dtype == DType::kF32);
  CHECK(10 * weights.size_bytes() < 6 * (*plain)->weights().size_bytes());

  // The governor reserves what the load then holds.
  sparkd::tasks::FootprintOptions footprint_options;
  footprint_options.quantize = DType::kQ8_0;
  auto footprint = sparkd::tasks::estimate_footprint(dir, footprint_options);
  REQUIRE(footprint.has_value());
  CHECK(footprint->weights_bytes == weights.size_bytes());

  // Logits move by a little of their spread.
  const std::vector<int32_t> prompt = {1, 17, 42, 99, 7, 256, 3};
  auto logits_of = [&](const sparkd::tasks::LoadedModel& model) {
    auto kv = model.decoder()->allocate_kv_cache(static_cast<int32_t>(prompt.size()));
    REQUIRE(kv.has_value());
    sparkd::arch::DecoderStepSequence step;
    step.tokens = prompt;
    auto logits = model.decoder()->forward({&step, 1}, *kv);
    REQUIRE(logits.has_value());
    return *logits;
  };
  const std::vector<float> a = logits_of(**plain), b = logits_of(**quantized);
  double diff = 0, spread = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    spread = std::max(spread, static_cast<double>(std::abs(a[i])));
  }
  INFO("max |logit difference| " << diff << " of max |logit| " << spread);
  CHECK(diff < 0.05 * spread);

  // Rows that are not whole blocks of the target stay as stored (64 columns, Q4_K's 256).
  options.quantize = DType::kQ4_K;
  auto unchanged = sparkd::tasks::LoadedModel::load(dir, *backend, options);
  REQUIRE(unchanged.has_value());
  CHECK((*unchanged)->weights().tensors().at("model.layers.0.self_attn.q_proj.weight").dtype ==
        DType::kF32);

  // GGUF files keep their own types.
  options.quantize = DType::kQ8_0;
  auto gguf = sparkd::tasks::LoadedModel::load(kSource + "/tests/fixtures/gguf/tiny_llama.gguf",
                                               *backend, options);
  REQUIRE_FALSE(gguf.has_value());
  CHECK_THAT(gguf.status().message(), Catch::Contains("`quantize` applies to safetensors"));
}
