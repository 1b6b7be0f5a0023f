// sparkd-run's model commands as a real process: --json requests in, machine-readable results
// out, checked against the transformers / sentence-transformers goldens; bad requests get an
// error line while the others are still served.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/run_command.h"

namespace {

using nlohmann::json;

std::filesystem::path fixture(const std::string& name) {
  return std::filesystem::path(SPARKD_SOURCE_DIR) / "tests/fixtures/models" / name;
}

json expected_of(const std::string& name) {
  std::ifstream in(fixture(name) / "expected.json");
  return json::parse(in);
}

sparkd::testing::RunResult sparkd_run(const std::string& model, const std::string& args,
                                      const std::string& input) {
  return sparkd::testing::run_command(
      std::string(SPARKD_RUN_BINARY) + " " + fixture(model).string() + " " + args + " 2>/dev/null",
      input);
}

}  // namespace

TEST_CASE("sparkd-run generate --json reproduces transformers' greedy continuations", "[cli]") {
  const json expected = expected_of("qwen2_f32");
  std::string input;
  for (const json& greedy : expected.at("greedy")) {
    const json& prompt = expected.at("prompts")[greedy.at("prompt").get<size_t>()];
    input += json{{"prompt", prompt.at("text")},
                  {"max_new_tokens", greedy.at("new_ids").size()},
                  {"ignore_eos", true}}
                 .dump() +
             "\n";
  }
  input += "{\"prompt\": 42}\n";  // a bad request, answered with an error line
  input += "\"the\"\n";           // a plain prompt string still works after it
  const auto result = sparkd_run("qwen2_f32", "generate --json --max-new-tokens 3", input);
  CHECK(result.exit_code == 1);  // one request failed
  const json& greedy = expected.at("greedy");
  REQUIRE(result.lines.size() == greedy.size() + 2);
  for (size_t i = 0; i < greedy.size(); ++i) {
    const json out = json::parse(result.lines[i]);
    const json& prompt = expected.at("prompts")[greedy[i].at("prompt").get<size_t>()];
    CHECK(out.at("prompt_ids") == prompt.at("ids"));
    CHECK(out.at("ids") == greedy[i].at("new_ids"));
    CHECK(out.at("text") == greedy[i].at("text"));
    CHECK(out.at("finish_reason") == "length");
    CHECK(out.at("decode_tokens_per_second").get<double>() > 0);
  }
  CHECK(json::parse(result.lines[greedy.size()]).contains("error"));
  CHECK(json::parse(result.lines[greedy.size() + 1]).at("ids").size() == 3);
}

TEST_CASE("sparkd-run embed --json returns sentence-transformers' vectors", "[cli]") {
  const json expected = expected_of("bert_embed");
  const auto result = sparkd_run("bert_embed", "embed --json",
                                 expected.at("texts").dump() + "\n[1, 2]\n\"one more\"\n");
  CHECK(result.exit_code == 1);
  REQUIRE(result.lines.size() == 3);
  const json out = json::parse(result.lines[0]);
  const json& embeddings = out.at("embeddings");
  REQUIRE(embeddings.size() == expected.at("texts").size());
  for (size_t i = 0; i < embeddings.size(); ++i) {
    CHECK(out.at("token_counts")[i] == expected.at("ids")[i].size());
    double norm = 0;
    for (const json& x : embeddings[i]) norm += x.get<double>() * x.get<double>();
    CHECK(std::sqrt(norm) == Approx(1.0).epsilon(1e-5));  // the model's Normalize module
  }
  CHECK(json::parse(result.lines[1]).contains("error"));
  CHECK(json::parse(result.lines[2]).at("embeddings").size() == 1);
}

TEST_CASE("sparkd-run rerank --json returns CrossEncoder's scores", "[cli]") {
  const json expected = expected_of("bert_rerank");
  std::string input;
  for (const json& pair : expected.at("pairs")) {
    input += json{{"query", pair[0]}, {"documents", {pair[1]}}}.dump() + "\n";
  }
  input += "{\"documents\": [\"no query\"]}\n";
  const auto result = sparkd_run("bert_rerank", "rerank --json", input);
  CHECK(result.exit_code == 1);
  const size_t pairs = expected.at("pairs").size();
  REQUIRE(result.lines.size() == pairs + 1);
  for (size_t i = 0; i < pairs; ++i) {
    const json out = json::parse(result.lines[i]);
    CHECK(out.at("logits")[0].get<double>() ==
          Approx(expected.at("scores_raw")[i].get<double>()).margin(1e-4));
    CHECK(out.at("scores")[0].get<double>() ==
          Approx(expected.at("scores_sigmoid")[i].get<double>()).margin(1e-4));
  }
  CHECK(json::parse(result.lines[pairs]).contains("error"));
}

TEST_CASE("sparkd-run refuses a task the model cannot do", "[cli]") {
  const auto result = sparkd_run("bert_embed", "generate --json", "\"hello\"\n");
  CHECK(result.exit_code == 1);
  CHECK(result.lines.empty());
}
