// Decoders built from the JSON the Python `tokenizers` 0.23.3 library serializes
// (json.loads(tok.to_str())["decoder"] after `tok.decoder = ...`), checked against
// `decoder.decode(tokens)` in Python.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/tokenizer/decoders.h"
#include "engine/tokenizer/error.h"
#include "tests/support/tokenizer_helpers.h"

namespace {

using sparkd::testing::error_of;

using sparkd::tokenizer::ConfigError;
using sparkd::tokenizer::Decoder;
using sparkd::tokenizer::EncodeError;
using Tokens = std::vector<std::string>;

std::unique_ptr<Decoder> load(const char* json) {
  return sparkd::tokenizer::make_decoder(nlohmann::json::parse(json));
}

std::string decode(const char* json, Tokens tokens) {
  return load(json)->decode(std::move(tokens));
}

const std::string kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

TEST_CASE("ByteLevel decoder", "[decoders]") {
  // decoders.ByteLevel()
  const char* kJson = R"({"type": "ByteLevel", "add_prefix_space": true,
                          "trim_offsets": true, "use_regex": true})";
  // decode(["Hello", "Ġworld", "Ġ", "Ã©", "!"]) == "Hello world é!"
  CHECK(decode(kJson, {"Hello", "\u0120world", "\u0120", "\u00C3\u00A9", "!"}) ==
        "Hello world \u00E9!");
  // decode(["Ã"]) == "\ufffd": a lone lead byte
  CHECK(decode(kJson, {"\u00C3"}) == kReplacementChar);
  // decode(["Ã", "©"]) == "é": bytes join across tokens before UTF-8 decoding
  CHECK(decode(kJson, {"\u00C3", "\u00A9"}) == "\u00E9");
  // decode(["a", "€", "Ġb"]) == "a€ b": a char outside the table keeps the token as is
  CHECK(decode(kJson, {"a", "\u20AC", "\u0120b"}) == "a\u20AC b");
  // decode(["ð", "Ł", "ĺ"]) == "\ufffd": a truncated 4-byte sequence is one U+FFFD
  CHECK(decode(kJson, {"\u00F0", "\u0141", "\u013A"}) == kReplacementChar);
  // decode(["ðŁĺĢ"]) == "😀"
  CHECK(decode(kJson, {"\u00F0\u0141\u013A\u0122"}) == "\U0001F600");
  CHECK(decode(kJson, {}).empty());
  CHECK(load(kJson)->decode_chain({"a", "\u0120b"}) == Tokens{"a b"});
}

TEST_CASE("WordPiece decoder", "[decoders]") {
  // decoders.WordPiece()
  const char* kJson = R"({"type": "WordPiece", "prefix": "##", "cleanup": true})";
  CHECK(decode(kJson, {"hello", "##s", ",",   "i", "do", "not", "'",   "m", "here", "n't",
                       "it",    "'s",  "you", "'", "re", "we",  "'ve", "?", "!",    "."}) ==
        "hellos, i do not ' m heren't it's you ' re we've?!.");
  // The prefix is only stripped after the first token.
  CHECK(decode(kJson, {"##a", "b", "##c"}) == "##a bc");
  CHECK(decode(kJson, {}).empty());
  // decoders.WordPiece(prefix="##", cleanup=False)
  CHECK(decode(R"({"type": "WordPiece", "prefix": "##", "cleanup": false})",
               {"hello", "##s", ",", "do", "not"}) == "hellos , do not");
  // decoders.WordPiece(prefix="", cleanup=True): every token "has" the empty prefix
  CHECK(decode(R"({"type": "WordPiece", "prefix": "", "cleanup": true})",
               {"hello", "world", " ."}) == "helloworld.");
  // Cleanup runs per token: " do not" inside one token becomes " don't".
  CHECK(load(kJson)->decode_chain({"a", "b do not"}) == Tokens{"a", " b don't"});
}

TEST_CASE("Metaspace decoder", "[decoders]") {
  // decoders.Metaspace(replacement="▁", prepend_scheme=...)
  const char* kAlways =
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true})";
  const char* kFirst =
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true})";
  const char* kNever =
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": true})";
  const Tokens hey = {"\u2581Hey", "\u2581friend", "!", "\u2581\u2581x"};
  CHECK(decode(kAlways, hey) == "Hey friend!  x");
  CHECK(decode(kFirst, hey) == "Hey friend!  x");
  CHECK(decode(kNever, hey) == " Hey friend!  x");
  // Every replacement char of the first token is dropped, not just the leading one.
  const Tokens inner = {"\u2581a\u2581b", "\u2581c"};
  CHECK(decode(kAlways, inner) == "ab c");
  CHECK(decode(kFirst, inner) == "ab c");
  CHECK(decode(kNever, inner) == " a b c");
  // decoders.Metaspace(replacement="_", prepend_scheme="always", split=False)
  CHECK(decode(R"({"type": "Metaspace", "replacement": "_", "prepend_scheme": "always",
                   "split": false})",
               {"_a", "_b"}) == "a b");
  CHECK(decode(kAlways, {}).empty());

  // Legacy forms: add_prefix_space without prepend_scheme (default "always").
  CHECK(decode(R"({"type": "Metaspace", "replacement": "▁", "add_prefix_space": true})",
               {"\u2581a", "\u2581b"}) == "a b");
  CHECK(decode(R"({"type": "Metaspace", "replacement": "▁", "add_prefix_space": false,
                   "prepend_scheme": "never"})",
               {"\u2581a", "\u2581b"}) == " a b");
  // Tokenizer.from_str rejects add_prefix_space=false against the default "always".
  CHECK_THAT(error_of<ConfigError>([&] {
               load(R"({"type": "Metaspace", "replacement": "▁", "add_prefix_space": false})");
             }),
             Catch::Matchers::Contains("add_prefix_space does not match"));
  CHECK_THAT(error_of<ConfigError>([&] { load(R"({"type": "Metaspace", "replacement": "▁▁"})"); }),
             Catch::Matchers::Contains("replacement"));
  CHECK_THAT(error_of<ConfigError>([&] {
               load(R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "sometimes"})");
             }),
             Catch::Matchers::Contains("prepend_scheme"));
}

TEST_CASE("ByteFallback decoder", "[decoders]") {
  const char* kJson = R"({"type": "ByteFallback"})";
  CHECK(decode(kJson, {"Hey", "friend!"}) == "Heyfriend!");
  CHECK(decode(kJson, {"<0x61>"}) == "a");
  // decode(["<0xE5>"]) == "\ufffd"
  CHECK(decode(kJson, {"<0xE5>"}) == kReplacementChar);
  // decode(["<0xE5>", "<0x8f>"]) == "\ufffd\ufffd": one U+FFFD per byte of an invalid run
  CHECK(decode(kJson, {"<0xE5>", "<0x8f>"}) == kReplacementChar + kReplacementChar);
  CHECK(decode(kJson, {"<0xE5>", "<0x8f>", "<0xab>"}) == "\u53EB");
  // decode(["<0xE5>", "<0x8f>", "a", "<0x62>"]) == "\ufffd\ufffdab"
  CHECK(decode(kJson, {"<0xE5>", "<0x8f>", "a", "<0x62>"}) ==
        kReplacementChar + kReplacementChar + "ab");
  // Rust's u8::from_str_radix accepts a leading '+': decode(["<0x+A>"]) == "\n"
  CHECK(decode(kJson, {"<0x+A>"}) == "\n");
  CHECK(decode(kJson, {"<0xGG>", "<0x41>"}) == "<0xGG>A");
  CHECK(decode(kJson, {"<0x4>", "<0x0041>", "<0x-1>"}) == "<0x4><0x0041><0x-1>");
  // decode(["<0xe2>", "<0x82>", "<0xac>", "<0xff>"]): the run is invalid as a whole, so even
  // the valid "€" prefix becomes four U+FFFD
  CHECK(decode(kJson, {"<0xe2>", "<0x82>", "<0xac>", "<0xff>"}) ==
        kReplacementChar + kReplacementChar + kReplacementChar + kReplacementChar);
  CHECK(decode(kJson, {}).empty());
  // The chain's shape: one token per valid run, one per byte of an invalid run.
  CHECK(load(kJson)->decode_chain({"<0xE5>", "<0x8f>", "a", "<0x62>"}) ==
        Tokens{kReplacementChar, kReplacementChar, "a", "b"});
  CHECK(load(kJson)->decode_chain({"<0xE5>", "<0x8f>", "<0xab>", "x"}) == Tokens{"\u53EB", "x"});
  // decoders.Sequence([decoders.ByteFallback(), decoders.WordPiece(cleanup=False)])
  // .decode(["<0xE5>", "<0x8f>", "a", "<0x62>"]) shows the same shape.
  CHECK(decode(R"({"type": "Sequence", "decoders": [{"type": "ByteFallback"},
                   {"type": "WordPiece", "prefix": "##", "cleanup": false}]})",
               {"<0xE5>", "<0x8f>", "a", "<0x62>"}) ==
        kReplacementChar + " " + kReplacementChar + " a b");
}

TEST_CASE("Fuse and Strip decoders", "[decoders]") {
  CHECK(decode(R"({"type": "Fuse"})", {"a", " b", "c"}) == "a bc");
  CHECK(decode(R"({"type": "Fuse"})", {}).empty());
  CHECK(load(R"({"type": "Fuse"})")->decode_chain({"a", "b"}) == Tokens{"ab"});

  // decoders.Strip(content=" ", left=1, right=0)
  CHECK(decode(R"({"type": "Strip", "content": " ", "start": 1, "stop": 0})",
               {"  a", " b ", "c"}) == " ab c");
  auto strip = load(R"({"type": "Strip", "content": "H", "start": 2, "stop": 1})");
  CHECK(strip->decode_chain({"HHeyH", "xHH", "Hx"}) == Tokens{"ey", "xH", "x"});
  // The library panics on these ("slice index starts at 2 but ends at 1",
  // "index out of bounds"); we throw.
  CHECK_THROWS_AS(strip->decode_chain({"HH"}), EncodeError);
  CHECK_THROWS_AS(decode(R"({"type": "Strip", "content": " ", "start": 0, "stop": 3})", {"  "}),
                  EncodeError);
  CHECK_THROWS_AS(decode(R"({"type": "Strip", "content": "H", "start": 1, "stop": 1})", {"H"}),
                  EncodeError);
  CHECK_THAT(error_of<ConfigError>(
                 [&] { load(R"({"type": "Strip", "content": "ab", "start": 1, "stop": 0})"); }),
             Catch::Matchers::Contains("content"));
  CHECK_THAT(error_of<ConfigError>(
                 [&] { load(R"({"type": "Strip", "content": " ", "start": -1, "stop": 0})"); }),
             Catch::Matchers::Contains("start"));
}

TEST_CASE("Replace decoder", "[decoders]") {
  // decoders.Replace("▁", " ")
  CHECK(decode(R"({"type": "Replace", "pattern": {"String": "▁"}, "content": " "})",
               {"\u2581Hey", "\u2581\u2581friend", ""}) == " Hey  friend");
  // decoders.Replace("", "X"): an empty string matches around every char
  CHECK(decode(R"({"type": "Replace", "pattern": {"String": ""}, "content": "X"})", {"ab", ""}) ==
        "XaXbX");
  // decoders.Replace("aa", "b"): non-overlapping, left to right
  CHECK(decode(R"({"type": "Replace", "pattern": {"String": "aa"}, "content": "b"})",
               {"aaa", "aaaa"}) == "babb");
  // Regex-special characters in a String pattern are literal.
  CHECK(decode(R"({"type": "Replace", "pattern": {"String": ".*"}, "content": "!"})", {"a.*b"}) ==
        "a!b");
}

TEST_CASE("Replace decoder with a regex", "[decoders]") {
  // decoders.Replace(Regex(r"\s+"), "_")
  CHECK(decode(R"({"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": "_"})",
               {"a  b\tc", " ", ""}) == "a_b_c_");
  // decoders.Replace(Regex(r"x*"), "-"): empty matches follow Oniguruma's iteration
  CHECK(decode(R"({"type": "Replace", "pattern": {"Regex": "x*"}, "content": "-"})",
               {"abx", "xx"}) == "-a-b--");
}

TEST_CASE("Sequence decoder (Llama style)", "[decoders]") {
  // decoders.Sequence([Replace("▁", " "), ByteFallback(), Fuse(), Strip(" ", 1, 0)])
  const char* kJson = R"({"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
      {"type": "ByteFallback"}, {"type": "Fuse"},
      {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})";
  CHECK(decode(kJson, {"\u2581Hello", "\u2581", "<0xE5>", "<0x8f>", "<0xab>", "\u2581wor", "ld",
                       "<0xE5>"}) == "Hello \u53EB world" + kReplacementChar);
  CHECK(decode(kJson, {}).empty());
  CHECK(decode(R"({"type": "Sequence", "decoders": []})", {"a", "b"}) == "ab");
}

TEST_CASE("BPEDecoder and CTC", "[decoders]") {
  const char* kBpe = R"({"type": "BPEDecoder", "suffix": "</w>"})";
  CHECK(decode(kBpe, {"hel", "lo</w>", "wor", "ld</w>"}) == "hello world");
  CHECK(decode(kBpe, {"a</w>b</w>", "c</w>"}) == "a b c");
  CHECK(decode(kBpe, {}).empty());
  // decoders.BPEDecoder(suffix=""): Rust's str::replace("", " ") inserts around every char
  CHECK(decode(R"({"type": "BPEDecoder", "suffix": ""})", {"ab", "c"}) == " a b c");

  // decoders.CTC()
  const char* kCtc = R"({"type": "CTC", "pad_token": "<pad>", "word_delimiter_token": "|",
                         "cleanup": true})";
  const Tokens hello = {"<pad>", "<pad>", "h", "e",     "e",     "l", "l",     "<pad>", "l",
                        "o",     "o",     "o", "<pad>", "<pad>", "|", "<pad>", "w",     "o",
                        "o",     "o",     "r", "<pad>", "<pad>", "l", "l",     "d",     "<pad>"};
  CHECK(decode(kCtc, hello) == "hello world");
  CHECK(load(kCtc)->decode_chain({"<pad>", "h", "h", "|", "i"}) == Tokens{"h", " ", "i"});
  CHECK(decode(kCtc, {}).empty());
  // decoders.CTC(cleanup=False)
  CHECK(decode(R"({"type": "CTC", "pad_token": "<pad>", "word_delimiter_token": "|",
                   "cleanup": false})",
               {"<pad>", "h", "e", "e", "|", "|", "<pad>", "i"}) == "he|i");
}

TEST_CASE("decoder config errors", "[decoders]") {
  CHECK_THAT(error_of<ConfigError>([&] { load(R"({"type": "Foo"})"); }),
             Catch::Matchers::Contains("\"Foo\"") && Catch::Matchers::Contains("ByteFallback") &&
                 Catch::Matchers::Contains("Metaspace"));
  CHECK_THAT(error_of<ConfigError>([&] { load(R"({"type": "ByteLevel"})"); }),
             Catch::Matchers::Contains("add_prefix_space"));
  CHECK_THAT(error_of<ConfigError>([&] { load(R"({"type": "WordPiece", "prefix": "##"})"); }),
             Catch::Matchers::Contains("cleanup"));
  CHECK_THAT(
      error_of<ConfigError>([&] { load(R"({"type": "Sequence", "prepend_scheme": "always"})"); }),
      Catch::Matchers::Contains("decoders"));
  CHECK_THAT(error_of<ConfigError>(
                 [&] { load(R"({"type": "Replace", "pattern": {"Glob": "*"}, "content": ""})"); }),
             Catch::Matchers::Contains("pattern"));
  CHECK_THROWS_AS(load(R"({"type": "Sequence", "decoders": [{}]})"), ConfigError);
  CHECK_THROWS_AS(load(R"({"replacement": "▁", "prepend_scheme": "always"})"), ConfigError);
  CHECK_THROWS_AS(load(R"([1, 2])"), ConfigError);

  // Legacy configs without "type" are recognised by their fields, as the library does.
  CHECK(decode(R"({"suffix": "</w>"})", {"a</w>", "b"}) == "a b");
  CHECK(decode(R"({"prefix": "##", "cleanup": true})", {"a", "##b"}) == "ab");
}
