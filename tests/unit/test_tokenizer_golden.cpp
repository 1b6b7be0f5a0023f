// Every fixture tokenizer against the outputs of Hugging Face `tokenizers` itself
// (tests/fixtures/tokenizers, written by tools/fixtures/make_tokenizer_fixtures.py): ids,
// tokens and type ids of single texts and pairs, truncation, and decoding.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace {

using nlohmann::json;
using sparkd::tokenizer::Encoding;
using sparkd::tokenizer::Tokenizer;
using sparkd::tokenizer::TruncationDirection;
using sparkd::tokenizer::TruncationParams;
using sparkd::tokenizer::TruncationStrategy;

std::filesystem::path fixture_dir(const std::string& name) {
  return std::filesystem::path(SPARKD_SOURCE_DIR) / "tests/fixtures/tokenizers" / name;
}

TruncationParams truncation_of(const json& c) {
  TruncationParams p;
  p.max_length = c.at("max_length").get<size_t>();
  p.stride = c.value("stride", 0);
  p.direction =
      c.at("direction") == "left" ? TruncationDirection::kLeft : TruncationDirection::kRight;
  const std::string strategy = c.at("strategy");
  p.strategy = strategy == "only_first"    ? TruncationStrategy::kOnlyFirst
               : strategy == "only_second" ? TruncationStrategy::kOnlySecond
                                           : TruncationStrategy::kLongestFirst;
  return p;
}

// Counts mismatches per field and keeps the first few for the failure message.
struct Tally {
  size_t cases = 0;
  size_t mismatches = 0;
  std::vector<std::string> examples;

  void check(bool ok, const std::string& what, const json& c, const json& got) {
    if (ok) return;
    ++mismatches;
    if (examples.size() < 8) {
      json expected = c;
      expected.erase("offsets");
      examples.push_back(
          what + "\n  case: " + expected.dump(-1, ' ', false, json::error_handler_t::replace) +
          "\n  got:  " + got.dump(-1, ' ', false, json::error_handler_t::replace));
    }
  }
};

void check_encoding(const sparkd::Expected<Encoding>& got, const json& c, const char* kind,
                    Tally* tally) {
  if (!got) {
    tally->check(false, std::string(kind) + ": error", c, json(got.status().to_string()));
    return;
  }
  tally->check(got->ids == c.at("ids").get<std::vector<uint32_t>>(), std::string(kind) + ": ids", c,
               json(got->ids));
  if (c.contains("type_ids")) {
    tally->check(got->type_ids == c.at("type_ids").get<std::vector<uint32_t>>(),
                 std::string(kind) + ": type_ids", c, json(got->type_ids));
  }
  if (c.contains("attention_mask")) {
    tally->check(got->attention_mask == c.at("attention_mask").get<std::vector<uint32_t>>(),
                 std::string(kind) + ": attention_mask", c, json(got->attention_mask));
  }
  if (c.contains("tokens")) {
    tally->check(got->tokens == c.at("tokens").get<std::vector<std::string>>(),
                 std::string(kind) + ": tokens", c, json(got->tokens));
  }
}

void check_cases(const Tokenizer& tok, const std::filesystem::path& expected, size_t min_cases);

void check_golden(const std::string& name) {
  const auto dir = fixture_dir(name);
  INFO("fixture " << dir.string());
  auto loaded = Tokenizer::from_file(dir);
  INFO((loaded ? std::string() : loaded.status().to_string()));
  REQUIRE(loaded.has_value());
  // The expectations were written with the library's no_truncation() and no_padding().
  const auto plain = (*loaded)->with_defaults(std::nullopt, std::nullopt);
  check_cases(*plain, dir / "expected.jsonl", 600);
}

void check_cases(const Tokenizer& tok, const std::filesystem::path& expected, size_t min_cases) {
  INFO("expectations " << expected.string());
  std::ifstream in(expected);
  REQUIRE(in.good());
  Tally tally;
  std::string line;
  while (std::getline(in, line)) {
    const json c = json::parse(line);
    const std::string kind = c.at("kind");
    ++tally.cases;
    if (kind == "single") {
      const bool special = c.at("add_special_tokens");
      auto got = tok.encode(c.at("text").get<std::string>(), special);
      check_encoding(got, c, "single", &tally);
      if (!c.contains("decoded")) continue;
      const auto ids = c.at("ids").get<std::vector<uint32_t>>();
      auto decoded = tok.decode(ids, false);
      tally.check(decoded && *decoded == c.at("decoded").get<std::string>(), "decode", c,
                  decoded ? json(*decoded) : json(decoded.status().to_string()));
      auto skipped = tok.decode(ids, true);
      tally.check(skipped && *skipped == c.at("decoded_skip_special").get<std::string>(),
                  "decode(skip_special_tokens)", c,
                  skipped ? json(*skipped) : json(skipped.status().to_string()));
    } else if (kind == "pair") {
      auto got = tok.encode_pair(c.at("text").get<std::string>(), c.at("pair").get<std::string>(),
                                 c.at("add_special_tokens"));
      check_encoding(got, c, "pair", &tally);
    } else if (kind == "truncate" || kind == "truncate_error") {
      const TruncationParams params = truncation_of(c);
      const bool special = c.value("add_special_tokens", true);
      auto got = c.at("pair").is_null()
                     ? tok.encode(c.at("text").get<std::string>(), special, params)
                     : tok.encode_pair(c.at("text").get<std::string>(),
                                       c.at("pair").get<std::string>(), special, params);
      if (kind == "truncate") {
        check_encoding(got, c, "truncate", &tally);
      } else {
        tally.check(!got.has_value(), "truncate_error: expected an error", c,
                    got ? json(got->ids) : json());
      }
    } else if (kind == "decode") {
      auto got = tok.decode(c.at("ids").get<std::vector<uint32_t>>(), c.at("skip_special_tokens"));
      tally.check(got && *got == c.at("decoded").get<std::string>(), "decode", c,
                  got ? json(*got) : json(got.status().to_string()));
    } else {
      FAIL("unknown case kind " << kind);
    }
  }
  std::string report;
  for (const auto& e : tally.examples) report += e + "\n";
  INFO(tally.mismatches << " mismatches in " << tally.cases << " cases; first ones:\n" << report);
  CHECK(tally.cases >= min_cases);
  CHECK(tally.mismatches == 0);
}

}  // namespace

#define GOLDEN_TOKENIZER_TEST(name)                                                      \
  TEST_CASE("tokenizer matches Hugging Face tokenizers: " name, "[tokenizer][golden]") { \
    check_golden(name);                                                                  \
  }

GOLDEN_TOKENIZER_TEST("all_minilm_l6_v2")
GOLDEN_TOKENIZER_TEST("bert_wordpiece_uncased")
GOLDEN_TOKENIZER_TEST("bert_wordpiece_cased_bertproc")
GOLDEN_TOKENIZER_TEST("qwen2_bytelevel_bpe")
GOLDEN_TOKENIZER_TEST("llama3_bytelevel_bpe")
GOLDEN_TOKENIZER_TEST("llama31_bytelevel_bpe")
GOLDEN_TOKENIZER_TEST("gpt2_bytelevel_bpe")
GOLDEN_TOKENIZER_TEST("roberta_bytelevel_bpe")
GOLDEN_TOKENIZER_TEST("llama2_sentencepiece_bpe")
GOLDEN_TOKENIZER_TEST("mistral_metaspace_bpe")
GOLDEN_TOKENIZER_TEST("xlmr_unigram")
GOLDEN_TOKENIZER_TEST("unigram_bytefallback")
GOLDEN_TOKENIZER_TEST("bpe_affixes")
GOLDEN_TOKENIZER_TEST("split_behaviours")

TEST_CASE("tokenizer.json truncation and padding apply by default, as in the library",
          "[tokenizer][golden]") {
  // all-MiniLM-L6-v2's real tokenizer.json truncates and pads to 128.
  const auto dir = fixture_dir("all_minilm_l6_v2");
  auto loaded = Tokenizer::from_file(dir);
  REQUIRE(loaded.has_value());
  REQUIRE((*loaded)->default_truncation().has_value());
  CHECK((*loaded)->default_truncation()->max_length == 128);
  REQUIRE((*loaded)->default_padding().has_value());
  CHECK((*loaded)->default_padding()->fixed_length == 128u);
  check_cases(**loaded, dir / "expected_file_defaults.jsonl", 20);

  auto plain = (*loaded)->with_defaults(std::nullopt, std::nullopt);
  auto short_text = plain->encode("hello");
  REQUIRE(short_text.has_value());
  CHECK(short_text->size() == 3);  // [CLS] hello [SEP], no padding
}
