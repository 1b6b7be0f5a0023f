// `sparkd plan`: the repository's config fits and says so; an impossible one exits non-zero
// with what to change; the JSON form carries every figure.

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/daemon_process.h"
#include "tests/support/loaded_fixture.h"
#include "tests/support/run_command.h"

namespace {

using namespace sparkd::testing;
using Catch::Contains;

std::string sparkd_plan(const std::string& config, const std::string& flags = "") {
  return std::string(SPARKD_DAEMON_BINARY) + " plan --config " + config + " " + flags;
}

TEST_CASE("sparkd plan: the repository's config fits", "[daemon][plan]") {
  const std::string config = std::string(SPARKD_SOURCE_DIR) + "/config.toml";
  const RunResult text = run_command(sparkd_plan(config), "");
  INFO(text.text());
  CHECK(text.exit_code == 0);
  CHECK_THAT(text.text(), Contains("smollm2") && Contains("rerank-demo") && Contains("minilm") &&
                              Contains("fits: the pinned models"));
  // kv_min 120 MiB of SmolLM2 (45 KiB of KV per token; 30 layers, each committed in whole
  // granules) buys 2720 tokens of context.
  CHECK_THAT(text.text(), Contains("45.0 KiB") && Contains("120.0 MiB (2720 tokens)"));

  const RunResult json_run = run_command(sparkd_plan(config, "--json"), "");
  REQUIRE(json_run.exit_code == 0);
  const auto plan = nlohmann::json::parse(json_run.text());
  CHECK(plan["fits"] == true);
  REQUIRE(plan["models"].size() == 3);
  for (const auto& model : plan["models"]) {
    INFO(model.dump());
    CHECK(model["fits"] == true);
    CHECK(model["weights_bytes"].get<uint64_t>() > 0);
    CHECK(model["reserves_bytes"].get<uint64_t>() >=
          model["weights_bytes"].get<uint64_t>() + model["workspace_bytes"].get<uint64_t>());
  }
  CHECK(plan["pinned_bytes"].get<uint64_t>() <= plan["budget_bytes"].get<uint64_t>());
}

TEST_CASE("sparkd plan: an impossible config exits 1 and says what to change", "[daemon][plan]") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sparkd-plan-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string config = (dir / "config.toml").string();
  std::ofstream(config) << "[governor]\nbudget = \"32MiB\"\nos_reserve = \"1GiB\"\n"
                        << "[[models]]\nname = \"big\"\npath = \"" << SPARKD_MINILM_DIR << "\"\n"
                        << "[[models]]\nname = \"gen\"\npath = \"" << fixture_model_dir("qwen3_f32")
                        << "\"\nkv_min = \"24MiB\"\n"
                        << "[[models]]\nname = \"later\"\nresidency = \"on_demand\"\npath = \""
                        << SPARKD_MINILM_DIR << "\"\n";
  const RunResult run = run_command(sparkd_plan(config), "");
  INFO(run.text());
  CHECK(run.exit_code == 1);
  CHECK_THAT(run.text(), Contains("does not fit: the pinned models and the baseline need more") &&
                             Contains("never fits") && Contains("lower kv_min of gen") &&
                             Contains("make big residency = \"on_demand\"") &&
                             Contains("raise governor.budget"));
  const RunResult json_run = run_command(sparkd_plan(config, "--json"), "");
  CHECK(json_run.exit_code == 1);
  const auto plan = nlohmann::json::parse(json_run.text());
  CHECK(plan["fits"] == false);
  CHECK(plan["models"][2]["fits"] == false);  // the on_demand one cannot load either
  CHECK_FALSE(plan["advice"].empty());

  // A config that does not parse is exit 2, like --check-config.
  std::ofstream(config) << "[governor]\nbudget = \"lots\"\n";
  CHECK(run_command(sparkd_plan(config), "").exit_code == 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
