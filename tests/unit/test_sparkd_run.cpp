// The sparkd-run command line, run as a real process: JSON lines in, JSON lines out, bad
// lines reported on their own line while the rest are still processed.
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "tests/support/run_command.h"

namespace {

using nlohmann::json;
using sparkd::testing::RunResult;

const std::filesystem::path kFixtures =
    std::filesystem::path(SPARKD_SOURCE_DIR) / "tests/fixtures/tokenizers";

sparkd::testing::RunResult run_sparkd_run(const std::string& args, const std::string& stdin_text) {
  return sparkd::testing::run_command(std::string(SPARKD_RUN_BINARY) + " " + args, stdin_text);
}

}  // namespace

TEST_CASE("sparkd-run tokenize and detokenize agree with the library", "[cli]") {
  const auto dir = kFixtures / "qwen2_bytelevel_bpe";
  auto tokenizer = sparkd::tokenizer::Tokenizer::from_file(dir);
  REQUIRE(tokenizer.has_value());
  const std::vector<std::string> texts = {"Hello, world!", "line one\nline two",
                                          "<|im_start|>user\nhi<|im_end|>", ""};
  std::string input;
  for (const auto& t : texts) input += json(t).dump() + "\n";

  RunResult run = run_sparkd_run(dir.string() + " tokenize", input);
  CHECK(run.exit_code == 0);
  // Blank input lines are skipped; "" is a JSON string, so it is encoded (to no ids).
  REQUIRE(run.lines.size() == texts.size());
  std::string ids_input;
  for (size_t i = 0; i < texts.size(); ++i) {
    json out = json::parse(run.lines[i]);
    auto expected = (*tokenizer)->encode(texts[i]);
    REQUIRE(expected.has_value());
    CHECK(out.at("ids").get<std::vector<uint32_t>>() == expected->ids);
    ids_input += out.at("ids").dump() + "\n";
  }

  RunResult back = run_sparkd_run(dir.string() + " detokenize", ids_input);
  CHECK(back.exit_code == 0);
  REQUIRE(back.lines.size() == texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    CHECK(json::parse(back.lines[i]).at("text").get<std::string>() == texts[i]);
  }
}

TEST_CASE("sparkd-run reports a bad line and keeps going", "[cli]") {
  const auto dir = kFixtures / "bert_wordpiece_uncased";
  RunResult run =
      run_sparkd_run(dir.string() + " tokenize", "\"ok\"\nnot json\n42\n\"still ok\"\n");
  CHECK(run.exit_code == 1);
  REQUIRE(run.lines.size() == 4);
  CHECK(json::parse(run.lines[0]).contains("ids"));
  CHECK(json::parse(run.lines[1]).contains("error"));
  CHECK(json::parse(run.lines[2]).contains("error"));
  CHECK(json::parse(run.lines[3]).contains("ids"));

  RunResult pairs = run_sparkd_run(dir.string() + " tokenize --pair --tokens",
                                   "[\"what is a cat\", \"a cat is an animal\"]\n\"no pair\"\n");
  CHECK(pairs.exit_code == 1);
  REQUIRE(pairs.lines.size() == 2);
  json first = json::parse(pairs.lines[0]);
  CHECK(first.at("type_ids").back() == 1);
  CHECK(json::parse(pairs.lines[1]).contains("error"));
}

TEST_CASE("sparkd-run fails clearly on a missing tokenizer", "[cli]") {
  RunResult run = run_sparkd_run("/nonexistent/model tokenize", "\"x\"\n");
  CHECK(run.exit_code == 1);
  CHECK(run.lines.empty());
}

TEST_CASE("sparkd-run --device: cpu runs, a bad name or a missing device is refused", "[cli]") {
  const std::string model = std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/models/qwen2_f32";
  RunResult cpu = run_sparkd_run(model + " generate Hi --max-new-tokens 2 --device cpu 2>&1", "");
  CHECK(cpu.exit_code == 0);
  CHECK_THAT(cpu.text(), Catch::Contains("(Qwen2ForCausalLM, generate) on cpu:"));

  RunResult bad = run_sparkd_run(model + " generate Hi --device gpu 2>&1", "");
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.text(),
             Catch::Contains("--device: device \"gpu\" is not one of \"auto\", \"cpu\", "
                             "\"cuda\" or \"cuda:N\""));

  // No machine this runs on has a ninth GPU.
  RunResult missing = run_sparkd_run(model + " generate Hi --device cuda:9 2>&1", "");
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.text(), Catch::StartsWith("sparkd-run: cuda:9: UNAVAILABLE: "));
}

TEST_CASE("sparkd-run applies tokenizer.json padding unless --plain", "[cli]") {
  // all-MiniLM-L6-v2's tokenizer.json pads to 128, and the library applies it.
  const auto dir = kFixtures / "all_minilm_l6_v2";
  RunResult padded = run_sparkd_run(dir.string() + " tokenize", "\"hello world\"\n");
  REQUIRE(padded.lines.size() == 1);
  CHECK(json::parse(padded.lines[0]).at("ids").size() == 128);
  RunResult plain = run_sparkd_run(dir.string() + " tokenize --plain", "\"hello world\"\n");
  REQUIRE(plain.lines.size() == 1);
  CHECK(json::parse(plain.lines[0]).at("ids") == json({101, 7592, 2088, 102}));
}

TEST_CASE("sparkd-run generate puts its stats on a line of their own, even on one pipe", "[cli]") {
  const auto model = std::filesystem::path(SPARKD_SOURCE_DIR) / "tests/fixtures/models/qwen2_f32";
  const RunResult run = run_sparkd_run(
      model.string() + " generate 'Once upon a time' --max-new-tokens 8 --ignore-eos 2>&1", "");
  REQUIRE(run.exit_code == 0);
  REQUIRE(run.lines.size() >= 3);
  CHECK(run.lines.front().rfind("sparkd-run: ", 0) == 0);  // the load line
  CHECK(run.lines[1].rfind("Once upon a time", 0) == 0);   // prompt and continuation
  CHECK(run.lines.back().rfind("10 prompt tokens, 8 new (length); prefill ", 0) == 0);
}
