// Bad tokenizer files and bad input: each gives an error that names the file and the
// component, or is handled the way the library handles it; nothing crashes.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/tokenizer/tokenizer.h"

namespace {

using nlohmann::json;
using sparkd::StatusCode;
using sparkd::tokenizer::Tokenizer;

const std::filesystem::path kFixtures =
    std::filesystem::path(SPARKD_SOURCE_DIR) / "tests/fixtures/tokenizers";

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A scratch directory removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("sparkd-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::filesystem::path write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return path / name;
  }
};

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("a missing tokenizer.json is NOT_FOUND and names the path", "[tokenizer][errors]") {
  TempDir dir;
  auto t = Tokenizer::from_file(dir.path);
  REQUIRE_FALSE(t.has_value());
  CHECK(t.status().code() == StatusCode::kNotFound);
  CHECK(contains(t.status().message(), (dir.path / "tokenizer.json").string()));
}

TEST_CASE("a truncated tokenizer.json is rejected with the file name", "[tokenizer][errors]") {
  const std::string full = read(kFixtures / "bert_wordpiece_uncased/tokenizer.json");
  REQUIRE(full.size() > 100);
  TempDir dir;
  for (size_t cut : {size_t{0}, size_t{1}, full.size() / 3, full.size() - 2}) {
    auto file = dir.write("tokenizer.json", full.substr(0, cut));
    auto t = Tokenizer::from_file(file);
    INFO("cut at " << cut);
    REQUIRE_FALSE(t.has_value());
    CHECK(t.status().code() == StatusCode::kInvalidArgument);
    CHECK(contains(t.status().message(), file.string()));
  }
}

TEST_CASE("unsupported components are named in the error", "[tokenizer][errors]") {
  json base = json::parse(read(kFixtures / "bert_wordpiece_uncased/tokenizer.json"));
  struct Case {
    const char* component;
    json value;
    const char* must_mention;
  };
  const Case cases[] = {
      {"normalizer", json{{"type", "Frobnicate"}}, "Frobnicate"},
      {"pre_tokenizer", json{{"type", "ShuffleWords"}}, "ShuffleWords"},
      {"model", json{{"type", "NeuralBPE"}, {"vocab", json::object()}}, "NeuralBPE"},
      {"post_processor", json{{"type", "AddEmoji"}}, "AddEmoji"},
      {"decoder", json{{"type", "Telepathy"}}, "Telepathy"},
  };
  TempDir dir;
  for (const Case& c : cases) {
    json broken = base;
    broken[c.component] = c.value;
    auto file = dir.write("tokenizer.json", broken.dump());
    auto t = Tokenizer::from_file(file);
    INFO(c.component);
    REQUIRE_FALSE(t.has_value());
    const std::string& message = t.status().message();
    INFO(message);
    CHECK(contains(message, file.string()));
    CHECK(contains(message, c.component));
    CHECK(contains(message, c.must_mention));
  }
}

TEST_CASE("a tokenizer.json without a model, or of another version, is rejected",
          "[tokenizer][errors]") {
  json base = json::parse(read(kFixtures / "bert_wordpiece_uncased/tokenizer.json"));
  TempDir dir;
  json no_model = base;
  no_model.erase("model");
  auto t = Tokenizer::from_file(dir.write("tokenizer.json", no_model.dump()));
  REQUIRE_FALSE(t.has_value());
  CHECK(contains(t.status().message(), "model"));

  json future = base;
  future["version"] = "9.0";
  t = Tokenizer::from_file(dir.write("tokenizer.json", future.dump()));
  REQUIRE_FALSE(t.has_value());
  CHECK(contains(t.status().message(), "9.0"));

  t = Tokenizer::from_file(dir.write("tokenizer.json", "[1, 2, 3]"));
  REQUIRE_FALSE(t.has_value());
  CHECK(contains(t.status().message(), "object"));
}

TEST_CASE("invalid UTF-8 input is replaced by U+FFFD, never a crash", "[tokenizer][errors]") {
  for (const char* name : {"qwen2_bytelevel_bpe", "bert_wordpiece_uncased",
                           "llama2_sentencepiece_bpe", "xlmr_unigram"}) {
    INFO(name);
    auto t = Tokenizer::from_file(kFixtures / name);
    REQUIRE(t.has_value());
    // A lone continuation byte, a truncated 3-byte sequence, an overlong NUL, a surrogate.
    const std::string bad = "a\x80 b\xE2\x82 c\xC0\x80 d\xED\xA0\x80 e";
    const std::string replaced =
        "a\xEF\xBF\xBD b\xEF\xBF\xBD c\xEF\xBF\xBD\xEF\xBF\xBD "
        "d\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD e";
    auto got = (*t)->encode(bad);
    auto want = (*t)->encode(replaced);
    REQUIRE(got.has_value());
    REQUIRE(want.has_value());
    CHECK(got->ids == want->ids);
  }
}

TEST_CASE("decoding ids outside the vocabulary skips them", "[tokenizer][errors]") {
  auto t = Tokenizer::from_file(kFixtures / "bert_wordpiece_uncased");
  REQUIRE(t.has_value());
  auto hello = (*t)->encode("hello", false);
  REQUIRE(hello.has_value());
  std::vector<uint32_t> ids = hello->ids;
  ids.push_back(4000000000u);
  auto text = (*t)->decode(ids);
  REQUIRE(text.has_value());
  CHECK(*text == "hello");
}
