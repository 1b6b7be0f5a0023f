// IncrementalDetokenizer against full decodes of the fixture tokenizers over the corpus.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/sched/detokenizer.h"
#include "engine/sched/stop_strings.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using sparkd::sched::DetokenizerOptions;
using sparkd::sched::IncrementalDetokenizer;
using sparkd::sched::is_valid_utf8;
using sparkd::tokenizer::Tokenizer;

std::filesystem::path fixtures() {
  return std::filesystem::path(SPARKD_SOURCE_DIR) / "tests/fixtures/tokenizers";
}

std::shared_ptr<const Tokenizer> load(const std::string& name) {
  auto tok = Tokenizer::from_file(fixtures() / name / "tokenizer.json");
  if (!tok) FAIL(tok.status().to_string());
  return *tok;
}

std::vector<std::string> corpus() {
  std::ifstream in(fixtures() / "corpus.json");
  REQUIRE(in.good());
  const auto json = nlohmann::json::parse(in);
  REQUIRE(json.is_array());
  return json.get<std::vector<std::string>>();
}

struct Streamed {
  std::vector<std::string> deltas;
  std::string text;
};

Streamed stream(const std::shared_ptr<const Tokenizer>& tok, const std::vector<uint32_t>& prompt,
                const std::vector<uint32_t>& output, DetokenizerOptions options) {
  auto detok = IncrementalDetokenizer::create(tok, prompt, options);
  REQUIRE(detok.has_value());
  Streamed out;
  for (uint32_t id : output) {
    auto delta = detok->push(id);
    REQUIRE(delta.has_value());
    out.deltas.push_back(*delta);
    out.text += *delta;
    // Cost stays bounded: the window never holds the whole sequence.
    REQUIRE(detok->window_tokens() <= IncrementalDetokenizer::kMaxWindowTokens + 1);
  }
  auto rest = detok->flush();
  REQUIRE(rest.has_value());
  out.deltas.push_back(*rest);
  out.text += *rest;
  return out;
}

std::vector<uint32_t> encode(const Tokenizer& tok, const std::string& text, bool special) {
  auto enc = tok.encode(text, special);
  REQUIRE(enc.has_value());
  return enc->ids;
}

void check_corpus(const std::string& name, size_t holdback_tokens) {
  const auto tok = load(name);
  const auto texts = corpus();
  size_t checked = 0;
  for (bool skip_special : {true, false}) {
    DetokenizerOptions options;
    options.skip_special_tokens = skip_special;
    options.holdback_tokens = holdback_tokens;
    for (const std::string& text : texts) {
      const auto ids = encode(*tok, text, /*special=*/true);
      auto expected = tok->decode(ids, skip_special);
      REQUIRE(expected.has_value());
      INFO(name << " skip_special=" << skip_special << " text: " << text);
      const Streamed got = stream(tok, {}, ids, options);
      for (const auto& delta : got.deltas) {
        INFO("delta: " << delta);
        CHECK(is_valid_utf8(delta));
      }
      CHECK(got.text == *expected);
      ++checked;
    }
  }
  CHECK(checked == 2 * texts.size());
}

}  // namespace

TEST_CASE("detokenizer: deltas concatenate to a full decode (byte-level BPE)", "[detokenizer]") {
  check_corpus("qwen2_bytelevel_bpe", 0);
  check_corpus("llama3_bytelevel_bpe", 0);
  check_corpus("gpt2_bytelevel_bpe", 0);
}

TEST_CASE("detokenizer: deltas concatenate to a full decode (sentencepiece, metaspace)",
          "[detokenizer]") {
  check_corpus("llama2_sentencepiece_bpe", 0);
  check_corpus("mistral_metaspace_bpe", 0);
  check_corpus("xlmr_unigram", 0);
}

TEST_CASE("detokenizer: deltas concatenate to a full decode (WordPiece with cleanup)",
          "[detokenizer]") {
  check_corpus("bert_wordpiece_uncased", 2);
}

TEST_CASE("detokenizer: WordPiece cleanup needs no holdback (it runs per token)", "[detokenizer]") {
  check_corpus("bert_wordpiece_uncased", 0);
}

TEST_CASE("detokenizer: an emoji split across byte-fallback tokens comes out whole",
          "[detokenizer]") {
  const auto tok = load("llama2_sentencepiece_bpe");
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600, not in the vocabulary
  const auto ids = encode(*tok, "Hi " + emoji + emoji + " there", false);
  // The four bytes of each emoji are four <0xXX> tokens.
  size_t byte_tokens = 0;
  for (uint32_t id : ids) {
    const auto piece = tok->id_to_token(id);
    if (piece && piece->rfind("<0x", 0) == 0) ++byte_tokens;
  }
  REQUIRE(byte_tokens == 8);
  const Streamed got = stream(tok, {}, ids, DetokenizerOptions{});
  for (const auto& delta : got.deltas) {
    INFO("delta: " << delta);
    CHECK(is_valid_utf8(delta));
    // Each delta holds whole emojis or none: never 1..3 of their bytes.
    CHECK(delta.find("\xEF\xBF\xBD") == std::string::npos);
  }
  CHECK(got.text == "Hi " + emoji + emoji + " there");
  // The first emoji is released on its 4th byte token, not earlier.
  size_t first = 0;
  while (first < got.deltas.size() && got.deltas[first].find(emoji) == std::string::npos) ++first;
  REQUIRE(first < got.deltas.size());
  CHECK(std::count(got.deltas.begin(), got.deltas.begin() + static_cast<long>(first),
                   std::string()) >= 3);
}

TEST_CASE("detokenizer: byte-level BPE splits of a multibyte character are held back",
          "[detokenizer]") {
  const auto tok = load("qwen2_bytelevel_bpe");
  // Byte-level tokens for the raw bytes of U+1F600 ("ðŁĺĢ" in GPT-2's byte alphabet).
  std::vector<uint32_t> bytes;
  for (const char* piece : {"\xC3\xB0", "\xC5\x81", "\xC4\xBA", "\xC4\xA2"}) {
    const auto id = tok->token_to_id(piece);
    REQUIRE(id.has_value());
    bytes.push_back(*id);
  }
  auto detok = IncrementalDetokenizer::create(tok, {}, {});
  REQUIRE(detok.has_value());
  for (size_t i = 0; i + 1 < bytes.size(); ++i) CHECK(detok->push(bytes[i]).value().empty());
  CHECK(detok->push(bytes.back()).value() == "\xF0\x9F\x98\x80");
  // A truncated character at the end comes out as U+FFFD, as a full decode gives it.
  CHECK(detok->push(bytes[0]).value().empty());
  const std::string rest = detok->flush().value();
  CHECK(rest == tok->decode({bytes[0]}).value());
  CHECK(rest == "\xEF\xBF\xBD");
}

TEST_CASE("detokenizer: prompt context decides the first token's leading space", "[detokenizer]") {
  const auto tok = load("mistral_metaspace_bpe");
  const auto prompt = encode(*tok, "The weather today is", true);
  const auto full = encode(*tok, "The weather today is sunny and warm", true);
  REQUIRE(full.size() > prompt.size());
  REQUIRE(std::equal(prompt.begin(), prompt.end(), full.begin()));
  const std::vector<uint32_t> output(full.begin() + static_cast<long>(prompt.size()), full.end());
  const Streamed with_prompt = stream(tok, prompt, output, DetokenizerOptions{});
  CHECK(with_prompt.text == " sunny and warm");
  // Without context the first token's space is stripped, as decode(output) does.
  const Streamed alone = stream(tok, {}, output, DetokenizerOptions{});
  CHECK(alone.text == tok->decode(output).value());
  CHECK(alone.text == "sunny and warm");
}

TEST_CASE("detokenizer: long outputs slide the window and still match", "[detokenizer]") {
  const auto tok = load("llama2_sentencepiece_bpe");
  std::string text;
  for (const auto& t : corpus()) text += t + " ";
  const auto ids = encode(*tok, text, true);
  REQUIRE(ids.size() > 500);
  // The BOS id primes the context; skipped specials leave the text unchanged.
  const std::vector<uint32_t> output(ids.begin() + 1, ids.end());
  const Streamed got = stream(tok, {ids[0]}, output, DetokenizerOptions{});
  CHECK(got.text == tok->decode(ids, true).value());
}

TEST_CASE("detokenizer: a missing tokenizer is an error, unknown ids decode to nothing",
          "[detokenizer]") {
  CHECK_FALSE(IncrementalDetokenizer::create(nullptr, {}, {}).has_value());
  const auto tok = load("gpt2_bytelevel_bpe");
  auto detok = IncrementalDetokenizer::create(tok, {}, {});
  REQUIRE(detok.has_value());
  // Ids outside the vocabulary decode to nothing, as in the tokenizers library.
  auto unknown = detok->push(4000000000u);
  REQUIRE(unknown.has_value());
  CHECK(unknown->empty());
}
