// Greedy generation's stopping rules: end-of-sequence tokens (from generation_config.json),
// max_new_tokens, and prompts that do not fit the model's context.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/tasks/loaded_model.h"
#include "tests/support/model_copy.h"

namespace {

using nlohmann::json;
using sparkd::tasks::GenerateOptions;
using sparkd::tasks::LoadedModel;

// The first greedy continuation of a fixture: its prompt ids and transformers' 32 new ids.
struct Continuation {
  std::vector<int32_t> prompt;
  std::vector<int32_t> new_ids;
};

Continuation first_continuation(const std::string& fixture) {
  std::ifstream in(std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/models/" + fixture +
                   "/expected.json");
  const json expected = json::parse(in);
  const json& greedy = expected.at("greedy").at(2);
  return {expected.at("prompts")[greedy.at("prompt").get<size_t>()]
              .at("ids")
              .get<std::vector<int32_t>>(),
          greedy.at("new_ids").get<std::vector<int32_t>>()};
}

std::unique_ptr<LoadedModel> load(const sparkd::testing::ModelCopy& copy,
                                  sparkd::Backend& backend) {
  auto model = LoadedModel::load(copy.dir().string(), backend);
  INFO((model ? "" : model.status().to_string()));
  REQUIRE(model.has_value());
  return std::move(model).value();
}

}  // namespace

TEST_CASE("generation stops at an end-of-sequence token from generation_config.json",
          "[generate]") {
  const Continuation c = first_continuation("qwen2_f32");
  // Make the 6th greedy token an end-of-sequence token (if it did not occur earlier).
  size_t stop_at = 5;
  while (std::find(c.new_ids.begin(), c.new_ids.begin() + stop_at, c.new_ids[stop_at]) !=
         c.new_ids.begin() + stop_at) {
    ++stop_at;
  }
  sparkd::testing::ModelCopy copy("qwen2_f32");
  copy.edit_json("generation_config.json",
                 [&](json& g) { g["eos_token_id"] = {c.new_ids[stop_at]}; });
  auto backend = sparkd::make_cpu_backend();
  auto model = load(copy, *backend);

  GenerateOptions options;
  options.max_new_tokens = 32;
  auto stopped = sparkd::tasks::generate_greedy(*model, c.prompt, options);
  REQUIRE(stopped.has_value());
  CHECK(stopped->finish_reason == "stop");
  CHECK(stopped->new_ids == std::vector<int32_t>(c.new_ids.begin(), c.new_ids.begin() + stop_at));

  options.ignore_eos = true;
  auto ignored = sparkd::tasks::generate_greedy(*model, c.prompt, options);
  REQUIRE(ignored.has_value());
  CHECK(ignored->finish_reason == "length");
  CHECK(ignored->new_ids == c.new_ids);
}

TEST_CASE("max_new_tokens bounds the continuation", "[generate]") {
  const Continuation c = first_continuation("llama_f32");
  sparkd::testing::ModelCopy copy("llama_f32");
  copy.edit_json("generation_config.json", [](json& g) { g.erase("eos_token_id"); });
  copy.edit_config([](json& g) { g.erase("eos_token_id"); });
  auto backend = sparkd::make_cpu_backend();
  auto model = load(copy, *backend);
  for (int32_t n : {0, 1, 7}) {
    GenerateOptions options;
    options.max_new_tokens = n;
    auto generation = sparkd::tasks::generate_greedy(*model, c.prompt, options);
    REQUIRE(generation.has_value());
    CHECK(generation->finish_reason == "length");
    CHECK(generation->new_ids == std::vector<int32_t>(c.new_ids.begin(), c.new_ids.begin() + n));
  }
}

TEST_CASE("a prompt that does not fit the context is refused, one that nearly does is cut short",
          "[generate]") {
  sparkd::testing::ModelCopy copy("qwen3_f32");
  copy.edit_config([](json& c) { c["max_position_embeddings"] = 16; });
  auto backend = sparkd::make_cpu_backend();
  auto model = load(copy, *backend);
  GenerateOptions options;
  options.max_new_tokens = 100;
  options.ignore_eos = true;

  const std::vector<int32_t> too_long(16, 5);
  auto refused = sparkd::tasks::generate_greedy(*model, too_long, options);
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.status().code() == sparkd::StatusCode::kInvalidArgument);
  CHECK_THAT(refused.status().message(), Catch::Contains("16 tokens"));

  const std::vector<int32_t> nearly(12, 5);
  auto cut = sparkd::tasks::generate_greedy(*model, nearly, options);
  REQUIRE(cut.has_value());
  CHECK(cut->new_ids.size() == 4);
  CHECK(cut->finish_reason == "length");

  CHECK_FALSE(sparkd::tasks::generate_greedy(*model, {}, options).has_value());
  const std::vector<int32_t> outside_vocabulary{1, 2, 1 << 20};
  auto bad = sparkd::tasks::generate_greedy(*model, outside_vocabulary, options);
  REQUIRE_FALSE(bad.has_value());
  CHECK_THAT(bad.status().message(), Catch::Contains("outside the vocabulary"));
}
