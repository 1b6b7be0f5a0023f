// The clients users run against the real daemon: the Python client (sync and asyncio) and
// sparkctl --json. Their results must equal the engine's direct results.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "tests/integration/daemon_test_helpers.h"
#include "tests/support/daemon_process.h"
#include "tests/support/loaded_fixture.h"
#include "tests/support/run_command.h"

namespace {

using namespace sparkd;
using namespace sparkd::testing;
using nlohmann::json;

const std::vector<std::string> kTexts = {"the quick brown fox", "unified memory on one box",
                                         "a reranker scores pairs"};

void check_embeddings(const json& rows, const tasks::Embeddings& expected) {
  REQUIRE(rows.size() == expected.token_counts.size());
  const auto dims = static_cast<size_t>(expected.dimensions);
  for (size_t i = 0; i < rows.size(); ++i) {
    REQUIRE(rows[i].size() == dims);
    for (size_t d = 0; d < dims; ++d) {
      CHECK(rows[i][d].get<double>() == Approx(expected.values[i * dims + d]).margin(1e-5));
    }
  }
}

std::vector<int32_t> greedy_ids(const std::string& prompt, int32_t tokens) {
  LoadedFixture engine("qwen3_f32");
  auto ids = engine.model->tokenizer().encode(prompt);
  REQUIRE(ids.has_value());
  const std::vector<int32_t> prompt_ids(ids->ids.begin(), ids->ids.end());
  tasks::GenerateOptions options;
  options.max_new_tokens = tokens;
  options.ignore_eos = true;
  auto generated = tasks::generate_greedy(*engine.model, prompt_ids, options);
  REQUIRE(generated.has_value());
  return generated->new_ids;
}

}  // namespace

TEST_CASE("Daemon: the Python client's results equal the engine's", "[daemon][python]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });
  const RunResult run =
      run_command("/usr/bin/python3 " + std::string(SPARKD_SOURCE_DIR) +
                      "/clients/python/integration/dump_rpcs.py " + daemon.socket_path(),
                  "");
  REQUIRE(run.exit_code == 0);
  REQUIRE(run.lines.size() == 1);
  const json out = json::parse(run.lines[0]);

  CHECK(out["health"]["ready"] == true);
  CHECK(out["models"] == json({"embed", "gen", "rerank"}));
  CHECK(out["status_models"] == json({"embed", "gen", "rerank"}));
  CHECK(out["error"] == "NOT_FOUND");

  LoadedFixture embedder("bert_embed");
  auto embeddings = tasks::embed_texts(*embedder.model, kTexts);
  REQUIRE(embeddings.has_value());
  check_embeddings(out["embed"], *embeddings);
  check_embeddings(out["async"]["embed"], *embeddings);

  LoadedFixture reranker("bert_rerank");
  auto scores = tasks::rerank(*reranker.model, "what is unified memory", kTexts);
  REQUIRE(scores.has_value());
  REQUIRE(out["rerank"].size() == kTexts.size());
  double previous = 2;
  for (const json& result : out["rerank"]) {
    const auto index = result[0].get<size_t>();
    CHECK(result[1].get<double>() == Approx(scores->probabilities[index]).margin(1e-6));
    CHECK(result[2] == kTexts[index]);
    CHECK(result[1].get<double>() <= previous);
    previous = result[1].get<double>();
  }

  const std::vector<int32_t> expected = greedy_ids("The daemon serves", 12);
  CHECK(out["generate"]["token_ids"].get<std::vector<int32_t>>() == expected);
  CHECK(out["generate"]["finish_reason"] == "length");
  CHECK(out["generate_stream"]["token_ids"].get<std::vector<int32_t>>() == expected);
  CHECK(out["generate_stream"]["text"] == out["generate"]["text"]);
  CHECK(out["async"]["generate_stream"].get<std::vector<int32_t>>() == expected);

  LoadedFixture generator("qwen3_f32");
  auto tokens = generator.model->tokenizer().encode("héllo wörld");
  REQUIRE(tokens.has_value());
  CHECK(out["tokenize"]["ids"].get<std::vector<uint32_t>>() == tokens->ids);
  CHECK(out["tokenize"]["tokens"].get<std::vector<std::string>>() == tokens->tokens);
  CHECK(out["detokenize"] == "héllo wörld");
}

TEST_CASE("Daemon: sparkctl's results equal the engine's", "[daemon][sparkctl]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });
  const std::string sparkctl =
      std::string(SPARKCTL_BINARY) + " --socket " + daemon.socket_path() + " ";
  auto json_of = [&](const std::string& args) {
    const RunResult run = run_command(sparkctl + "--json " + args, "");
    INFO(args);
    REQUIRE(run.exit_code == 0);
    REQUIRE(run.lines.size() == 1);
    return json::parse(run.lines[0]);
  };

  LoadedFixture embedder("bert_embed");
  auto embeddings = tasks::embed_texts(*embedder.model, kTexts);
  REQUIRE(embeddings.has_value());
  const json embedded = json_of(
      "embed embed 'the quick brown fox' 'unified memory on one box' "
      "'a reranker scores pairs'");
  json rows = json::array();
  for (const json& e : embedded["embeddings"]) rows.push_back(e["values"]);
  check_embeddings(rows, *embeddings);
  // Texts from stdin, one per line.
  const RunResult from_stdin =
      run_command(sparkctl + "--json embed embed -",
                  "the quick brown fox\nunified memory on one box\na reranker scores pairs\n");
  REQUIRE(from_stdin.exit_code == 0);
  const json stdin_embedded = json::parse(from_stdin.lines.at(0));
  json stdin_rows = json::array();
  for (const json& e : stdin_embedded["embeddings"]) {
    stdin_rows.push_back(e["values"]);
  }
  check_embeddings(stdin_rows, *embeddings);

  LoadedFixture reranker("bert_rerank");
  auto scores = tasks::rerank(*reranker.model, "what is unified memory", kTexts);
  REQUIRE(scores.has_value());
  const json ranked = json_of(
      "rerank rerank 'what is unified memory' 'the quick brown fox' "
      "'unified memory on one box' 'a reranker scores pairs'");
  REQUIRE(ranked["results"].size() == 3);
  for (const json& result : ranked["results"]) {
    CHECK(result["score"].get<double>() ==
          Approx(scores->probabilities[result["index"].get<size_t>()]).margin(1e-6));
  }

  const std::vector<int32_t> expected = greedy_ids("The daemon serves", 12);
  const json generated =
      json_of("generate gen 'The daemon serves' --max-tokens 12 --temperature 0 --ignore-eos");
  CHECK(generated["token_ids"].get<std::vector<int32_t>>() == expected);
  CHECK(generated["finish_reason"] == "length");
  // Streamed to the terminal: the same text.
  const RunResult streamed = run_command(
      sparkctl +
          "generate gen 'The daemon serves' --max-tokens 12 --temperature 0 --ignore-eos "
          "2>/dev/null",
      "");
  REQUIRE(streamed.exit_code == 0);
  std::string streamed_text;
  for (size_t i = 0; i < streamed.lines.size(); ++i) {
    streamed_text += (i ? "\n" : "") + streamed.lines[i];
  }
  CHECK(streamed_text == generated["text"].get<std::string>());

  LoadedFixture generator("qwen3_f32");
  auto tokens = generator.model->tokenizer().encode("hello world");
  REQUIRE(tokens.has_value());
  CHECK(json_of("tokenize gen 'hello world'")["ids"].get<std::vector<uint32_t>>() == tokens->ids);
  const json models = json_of("models");
  CHECK(models["models"].size() == 3);

  // Errors: a daemon error exits 1, an unreachable daemon 3, a usage error 2.
  CHECK(run_command(sparkctl + "embed no-such-model hello 2>/dev/null", "").exit_code == 1);
  CHECK(run_command(std::string(SPARKCTL_BINARY) + " --socket " +
                        (daemon.dir() / "nobody-listens.sock").string() + " models 2>/dev/null",
                    "")
            .exit_code == 3);
  CHECK(run_command(sparkctl + "frobnicate 2>/dev/null", "").exit_code == 2);
}
