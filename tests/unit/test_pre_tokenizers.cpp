// Pre-tokenizers built from their tokenizer.json objects, checked against Hugging Face
// tokenizers (Python package 0.23.3). Each expected list was produced by loading a
// tokenizer.json whose "pre_tokenizer" is the JSON shown and calling
// `tokenizer.pre_tokenizer.pre_tokenize_str(input)`, which gives every piece with its
// offsets in the input, counted in chars.
#include <catch2/catch.hpp>

#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/error.h"
#include "engine/tokenizer/pre_tokenized_string.h"
#include "engine/tokenizer/pre_tokenizers.h"
#include "engine/tokenizer/unicode.h"

namespace {

using namespace std::string_literals;
using sparkd::tokenizer::ConfigError;
using sparkd::tokenizer::PreTokenizedString;
using sparkd::tokenizer::PreTokenizer;

struct Piece {
  std::string text;
  size_t begin;  // chars into the input, like pre_tokenize_str's offsets
  size_t end;
  bool operator==(const Piece&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Piece& piece) {
  return os << "{\"" << piece.text << "\", " << piece.begin << ", " << piece.end << "}";
}

std::unique_ptr<PreTokenizer> build(std::string_view config) {
  return sparkd::tokenizer::make_pre_tokenizer(nlohmann::json::parse(config));
}

std::vector<Piece> pieces_of(const PreTokenizer& pre_tokenizer, const std::string& input) {
  PreTokenizedString text(input);
  pre_tokenizer.pre_tokenize(text);
  std::vector<Piece> pieces;
  for (const auto& split : text.splits()) {
    const auto [begin, end] = split.normalized.offsets_original();
    pieces.push_back({split.normalized.get(),
                      sparkd::tokenizer::count_code_points(std::string_view(input).substr(0, begin)),
                      sparkd::tokenizer::count_code_points(std::string_view(input).substr(0, end))});
  }
  return pieces;
}

// The expected list is a braced list of {text, begin, end}; it travels through
// __VA_ARGS__ because its commas are not inside parentheses.
#define CHECK_PIECES(pre_tokenizer, input, ...) \
  CHECK(pieces_of(pre_tokenizer, input) == std::vector<Piece> __VA_ARGS__)

std::string build_error(std::string_view config) {
  try {
    build(config);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("pre_tokenizers: BertPreTokenizer", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "BertPreTokenizer"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {});
    CHECK_PIECES(*pre_tokenizer, "Hello, world! How's it going?"s, {{"Hello"s, 0, 5}, {","s, 5, 6}, {"world"s, 7, 12}, {"!"s, 12, 13}, {"How"s, 14, 17}, {"'"s, 17, 18}, {"s"s, 18, 19}, {"it"s, 20, 22}, {"going"s, 23, 28}, {"?"s, 28, 29}});
    CHECK_PIECES(*pre_tokenizer, "a\u3000b\u00A0c"s, {{"a"s, 0, 1}, {"b"s, 2, 3}, {"c"s, 4, 5}});
    CHECK_PIECES(*pre_tokenizer, " 中 文 "s, {{"中"s, 1, 2}, {"文"s, 3, 4}});
    CHECK_PIECES(*pre_tokenizer, "$100 + 5%^`|~"s, {{"$"s, 0, 1}, {"100"s, 1, 4}, {"+"s, 5, 6}, {"5"s, 7, 8}, {"%"s, 8, 9}, {"^"s, 9, 10}, {"`"s, 10, 11}, {"|"s, 11, 12}, {"~"s, 12, 13}});
    CHECK_PIECES(*pre_tokenizer, "emoji👍ok"s, {{"emoji👍ok"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "¿Qué?"s, {{"¿"s, 0, 1}, {"Qué"s, 1, 4}, {"?"s, 4, 5}});
    CHECK_PIECES(*pre_tokenizer, "a\xC2\x85" "b\x1C" "c"s, {{"a"s, 0, 1}, {"b\x1C" "c"s, 2, 5}});
  }
}

TEST_CASE("pre_tokenizers: ByteLevel with the GPT-2 regex", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, " "s, {{"Ġ"s, 0, 1}});
    CHECK_PIECES(*pre_tokenizer, "Hello world"s, {{"ĠHello"s, 0, 5}, {"Ġworld"s, 5, 11}});
    CHECK_PIECES(*pre_tokenizer, "  multiple   spaces  "s, {{"Ġ"s, 0, 1}, {"Ġmultiple"s, 1, 10}, {"ĠĠ"s, 10, 12}, {"Ġspaces"s, 12, 19}, {"ĠĠ"s, 19, 21}});
    CHECK_PIECES(*pre_tokenizer, "I'm you're we've they'll he'd it's"s, {{"ĠI"s, 0, 1}, {"'m"s, 1, 3}, {"Ġyou"s, 3, 7}, {"'re"s, 7, 10}, {"Ġwe"s, 10, 13}, {"'ve"s, 13, 16}, {"Ġthey"s, 16, 21}, {"'ll"s, 21, 24}, {"Ġhe"s, 24, 27}, {"'d"s, 27, 29}, {"Ġit"s, 29, 32}, {"'s"s, 32, 34}});
    CHECK_PIECES(*pre_tokenizer, "'S 'x ''s"s, {{"Ġ'"s, 0, 1}, {"S"s, 1, 2}, {"Ġ'"s, 2, 4}, {"x"s, 4, 5}, {"Ġ''"s, 5, 8}, {"s"s, 8, 9}});
    CHECK_PIECES(*pre_tokenizer, "tab\tand\nnewline\n\n"s, {{"Ġtab"s, 0, 3}, {"ĉ"s, 3, 4}, {"and"s, 4, 7}, {"Ċ"s, 7, 8}, {"newline"s, 8, 15}, {"ĊĊ"s, 15, 17}});
    CHECK_PIECES(*pre_tokenizer, "end with space "s, {{"Ġend"s, 0, 3}, {"Ġwith"s, 3, 8}, {"Ġspace"s, 8, 14}, {"Ġ"s, 14, 15}});
    CHECK_PIECES(*pre_tokenizer, "数字123 and ½ ²"s, {{"Ġæķ°åŃĹ"s, 0, 2}, {"123"s, 2, 5}, {"Ġand"s, 5, 9}, {"ĠÂ½"s, 9, 11}, {"ĠÂ²"s, 11, 13}});
    CHECK_PIECES(*pre_tokenizer, "héllo wörld"s, {{"ĠhÃ©llo"s, 0, 5}, {"ĠwÃ¶rld"s, 5, 11}});
    CHECK_PIECES(*pre_tokenizer, "👍🏽 emoji!!"s, {{"ĠðŁĳįðŁı½"s, 0, 2}, {"Ġemoji"s, 2, 8}, {"!!"s, 8, 10}});
    CHECK_PIECES(*pre_tokenizer, "a\xC2\x85\xC2\x85" "b"s, {{"Ġa"s, 0, 1}, {"Âħ"s, 1, 2}, {"Âħ"s, 2, 3}, {"b"s, 3, 4}});
    CHECK_PIECES(*pre_tokenizer, "a\u180E\u180Eb"s, {{"Ġa"s, 0, 1}, {"áłİáłİ"s, 1, 3}, {"b"s, 3, 4}});
    CHECK_PIECES(*pre_tokenizer, "x \u00A0y\u3000 z"s, {{"Ġx"s, 0, 1}, {"Ġ"s, 1, 2}, {"Âł"s, 2, 3}, {"y"s, 3, 4}, {"ãĢĢ"s, 4, 5}, {"Ġz"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "e\u0301t"s, {{"Ġe"s, 0, 1}, {"Ìģ"s, 1, 2}, {"t"s, 2, 3}});
    CHECK_PIECES(*pre_tokenizer, "  \n  x"s, {{"ĠĠĊĠ"s, 0, 4}, {"Ġx"s, 4, 6}});
    CHECK_PIECES(*pre_tokenizer, "$100.00 + 5%"s, {{"Ġ$"s, 0, 1}, {"100"s, 1, 4}, {"."s, 4, 5}, {"00"s, 5, 7}, {"Ġ+"s, 7, 9}, {"Ġ5"s, 9, 11}, {"%"s, 11, 12}});
    CHECK_PIECES(*pre_tokenizer, "\x1C\x1C a"s, {{"ĠĜĜ"s, 0, 2}, {"Ġa"s, 2, 4}});
  }
}

TEST_CASE("pre_tokenizers: ByteLevel options", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "Hello world"s, {{"Hello"s, 0, 5}, {"Ġworld"s, 5, 11}});
    CHECK_PIECES(*pre_tokenizer, " lead"s, {{"Ġlead"s, 0, 5}});
    CHECK_PIECES(*pre_tokenizer, "  two  "s, {{"Ġ"s, 0, 1}, {"Ġtwo"s, 1, 5}, {"ĠĠ"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "I'm 😀"s, {{"I"s, 0, 1}, {"'m"s, 1, 3}, {"ĠðŁĺĢ"s, 3, 5}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "Hello world"s, {{"ĠHelloĠworld"s, 0, 11}});
    CHECK_PIECES(*pre_tokenizer, " lead"s, {{"Ġlead"s, 0, 5}});
    CHECK_PIECES(*pre_tokenizer, "  two  "s, {{"ĠĠtwoĠĠ"s, 0, 7}});
    CHECK_PIECES(*pre_tokenizer, "I'm 😀"s, {{"ĠI'mĠðŁĺĢ"s, 0, 5}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "Hello world"s, {{"HelloĠworld"s, 0, 11}});
    CHECK_PIECES(*pre_tokenizer, " lead"s, {{"Ġlead"s, 0, 5}});
    CHECK_PIECES(*pre_tokenizer, "  two  "s, {{"ĠĠtwoĠĠ"s, 0, 7}});
    CHECK_PIECES(*pre_tokenizer, "I'm 😀"s, {{"I'mĠðŁĺĢ"s, 0, 5}});
  }
}

TEST_CASE("pre_tokenizers: Split by a literal, every behavior", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": "--"}, "behavior": "Removed", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "--"s, {});
    CHECK_PIECES(*pre_tokenizer, "a--b----c--"s, {{"a"s, 0, 1}, {"b"s, 3, 4}, {"c"s, 8, 9}});
    CHECK_PIECES(*pre_tokenizer, "--x-y--"s, {{"x-y"s, 2, 5}});
    CHECK_PIECES(*pre_tokenizer, "none"s, {{"none"s, 0, 4}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": "--"}, "behavior": "Isolated", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "--"s, {{"--"s, 0, 2}});
    CHECK_PIECES(*pre_tokenizer, "a--b----c--"s, {{"a"s, 0, 1}, {"--"s, 1, 3}, {"b"s, 3, 4}, {"--"s, 4, 6}, {"--"s, 6, 8}, {"c"s, 8, 9}, {"--"s, 9, 11}});
    CHECK_PIECES(*pre_tokenizer, "--x-y--"s, {{"--"s, 0, 2}, {"x-y"s, 2, 5}, {"--"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "none"s, {{"none"s, 0, 4}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": "--"}, "behavior": "MergedWithPrevious", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "--"s, {{"--"s, 0, 2}});
    CHECK_PIECES(*pre_tokenizer, "a--b----c--"s, {{"a--"s, 0, 3}, {"b--"s, 3, 6}, {"--"s, 6, 8}, {"c--"s, 8, 11}});
    CHECK_PIECES(*pre_tokenizer, "--x-y--"s, {{"--"s, 0, 2}, {"x-y--"s, 2, 7}});
    CHECK_PIECES(*pre_tokenizer, "none"s, {{"none"s, 0, 4}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": "--"}, "behavior": "MergedWithNext", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "--"s, {{"--"s, 0, 2}});
    CHECK_PIECES(*pre_tokenizer, "a--b----c--"s, {{"a"s, 0, 1}, {"--b"s, 1, 4}, {"--"s, 4, 6}, {"--c"s, 6, 9}, {"--"s, 9, 11}});
    CHECK_PIECES(*pre_tokenizer, "--x-y--"s, {{"--x-y"s, 0, 5}, {"--"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "none"s, {{"none"s, 0, 4}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": "--"}, "behavior": "Contiguous", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "--"s, {{"--"s, 0, 2}});
    CHECK_PIECES(*pre_tokenizer, "a--b----c--"s, {{"a"s, 0, 1}, {"--"s, 1, 3}, {"b"s, 3, 4}, {"----"s, 4, 8}, {"c"s, 8, 9}, {"--"s, 9, 11}});
    CHECK_PIECES(*pre_tokenizer, "--x-y--"s, {{"--"s, 0, 2}, {"x-y"s, 2, 5}, {"--"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "none"s, {{"none"s, 0, 4}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": "--"}, "behavior": "Removed", "invert": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "--"s, {{"--"s, 0, 2}});
    CHECK_PIECES(*pre_tokenizer, "a--b----c--"s, {{"--"s, 1, 3}, {"--"s, 4, 6}, {"--"s, 6, 8}, {"--"s, 9, 11}});
    CHECK_PIECES(*pre_tokenizer, "--x-y--"s, {{"--"s, 0, 2}, {"--"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "none"s, {});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": "--"}, "behavior": "Isolated", "invert": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "--"s, {{"--"s, 0, 2}});
    CHECK_PIECES(*pre_tokenizer, "a--b----c--"s, {{"a"s, 0, 1}, {"--"s, 1, 3}, {"b"s, 3, 4}, {"--"s, 4, 6}, {"--"s, 6, 8}, {"c"s, 8, 9}, {"--"s, 9, 11}});
    CHECK_PIECES(*pre_tokenizer, "--x-y--"s, {{"--"s, 0, 2}, {"x-y"s, 2, 5}, {"--"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "none"s, {{"none"s, 0, 4}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": "--"}, "behavior": "MergedWithPrevious", "invert": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "--"s, {{"--"s, 0, 2}});
    CHECK_PIECES(*pre_tokenizer, "a--b----c--"s, {{"a"s, 0, 1}, {"--b"s, 1, 4}, {"--"s, 4, 6}, {"--c"s, 6, 9}, {"--"s, 9, 11}});
    CHECK_PIECES(*pre_tokenizer, "--x-y--"s, {{"--x-y"s, 0, 5}, {"--"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "none"s, {{"none"s, 0, 4}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": "--"}, "behavior": "MergedWithNext", "invert": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "--"s, {{"--"s, 0, 2}});
    CHECK_PIECES(*pre_tokenizer, "a--b----c--"s, {{"a--"s, 0, 3}, {"b--"s, 3, 6}, {"--"s, 6, 8}, {"c--"s, 8, 11}});
    CHECK_PIECES(*pre_tokenizer, "--x-y--"s, {{"--"s, 0, 2}, {"x-y--"s, 2, 7}});
    CHECK_PIECES(*pre_tokenizer, "none"s, {{"none"s, 0, 4}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": "--"}, "behavior": "Contiguous", "invert": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "--"s, {{"--"s, 0, 2}});
    CHECK_PIECES(*pre_tokenizer, "a--b----c--"s, {{"a"s, 0, 1}, {"--"s, 1, 3}, {"b"s, 3, 4}, {"----"s, 4, 8}, {"c"s, 8, 9}, {"--"s, 9, 11}});
    CHECK_PIECES(*pre_tokenizer, "--x-y--"s, {{"--"s, 0, 2}, {"x-y"s, 2, 5}, {"--"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "none"s, {{"none"s, 0, 4}});
  }
}

TEST_CASE("pre_tokenizers: Split by a regex, every behavior", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {});
    CHECK_PIECES(*pre_tokenizer, " hello  world \t"s, {{"hello"s, 1, 6}, {"world"s, 8, 13}});
    CHECK_PIECES(*pre_tokenizer, "one"s, {{"one"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {{"   "s, 0, 3}});
    CHECK_PIECES(*pre_tokenizer, " hello  world \t"s, {{" "s, 0, 1}, {"hello"s, 1, 6}, {"  "s, 6, 8}, {"world"s, 8, 13}, {" \t"s, 13, 15}});
    CHECK_PIECES(*pre_tokenizer, "one"s, {{"one"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithPrevious", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {{"   "s, 0, 3}});
    CHECK_PIECES(*pre_tokenizer, " hello  world \t"s, {{" "s, 0, 1}, {"hello  "s, 1, 8}, {"world \t"s, 8, 15}});
    CHECK_PIECES(*pre_tokenizer, "one"s, {{"one"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithNext", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {{"   "s, 0, 3}});
    CHECK_PIECES(*pre_tokenizer, " hello  world \t"s, {{" hello"s, 0, 6}, {"  world"s, 6, 13}, {" \t"s, 13, 15}});
    CHECK_PIECES(*pre_tokenizer, "one"s, {{"one"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Contiguous", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {{"   "s, 0, 3}});
    CHECK_PIECES(*pre_tokenizer, " hello  world \t"s, {{" "s, 0, 1}, {"hello"s, 1, 6}, {"  "s, 6, 8}, {"world"s, 8, 13}, {" \t"s, 13, 15}});
    CHECK_PIECES(*pre_tokenizer, "one"s, {{"one"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {{"   "s, 0, 3}});
    CHECK_PIECES(*pre_tokenizer, " hello  world \t"s, {{" "s, 0, 1}, {"  "s, 6, 8}, {" \t"s, 13, 15}});
    CHECK_PIECES(*pre_tokenizer, "one"s, {});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {{"   "s, 0, 3}});
    CHECK_PIECES(*pre_tokenizer, " hello  world \t"s, {{" "s, 0, 1}, {"hello"s, 1, 6}, {"  "s, 6, 8}, {"world"s, 8, 13}, {" \t"s, 13, 15}});
    CHECK_PIECES(*pre_tokenizer, "one"s, {{"one"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithPrevious", "invert": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {{"   "s, 0, 3}});
    CHECK_PIECES(*pre_tokenizer, " hello  world \t"s, {{" hello"s, 0, 6}, {"  world"s, 6, 13}, {" \t"s, 13, 15}});
    CHECK_PIECES(*pre_tokenizer, "one"s, {{"one"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithNext", "invert": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {{"   "s, 0, 3}});
    CHECK_PIECES(*pre_tokenizer, " hello  world \t"s, {{" "s, 0, 1}, {"hello  "s, 1, 8}, {"world \t"s, 8, 15}});
    CHECK_PIECES(*pre_tokenizer, "one"s, {{"one"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Contiguous", "invert": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {{"   "s, 0, 3}});
    CHECK_PIECES(*pre_tokenizer, " hello  world \t"s, {{" "s, 0, 1}, {"hello"s, 1, 6}, {"  "s, 6, 8}, {"world"s, 8, 13}, {" \t"s, 13, 15}});
    CHECK_PIECES(*pre_tokenizer, "one"s, {{"one"s, 0, 3}});
  }
}

TEST_CASE("pre_tokenizers: Split by a character class regex", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "[,.]"}, "behavior": "Removed", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, "a,b..c,"s, {{"a"s, 0, 1}, {"b"s, 2, 3}, {"c"s, 5, 6}});
    CHECK_PIECES(*pre_tokenizer, "1,000.50"s, {{"1"s, 0, 1}, {"000"s, 2, 5}, {"50"s, 6, 8}});
    CHECK_PIECES(*pre_tokenizer, "x٣y"s, {{"x٣y"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "[,.]"}, "behavior": "Isolated", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, "a,b..c,"s, {{"a"s, 0, 1}, {","s, 1, 2}, {"b"s, 2, 3}, {"."s, 3, 4}, {"."s, 4, 5}, {"c"s, 5, 6}, {","s, 6, 7}});
    CHECK_PIECES(*pre_tokenizer, "1,000.50"s, {{"1"s, 0, 1}, {","s, 1, 2}, {"000"s, 2, 5}, {"."s, 5, 6}, {"50"s, 6, 8}});
    CHECK_PIECES(*pre_tokenizer, "x٣y"s, {{"x٣y"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "[,.]"}, "behavior": "MergedWithPrevious", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, "a,b..c,"s, {{"a,"s, 0, 2}, {"b."s, 2, 4}, {"."s, 4, 5}, {"c,"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "1,000.50"s, {{"1,"s, 0, 2}, {"000."s, 2, 6}, {"50"s, 6, 8}});
    CHECK_PIECES(*pre_tokenizer, "x٣y"s, {{"x٣y"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "[,.]"}, "behavior": "MergedWithNext", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, "a,b..c,"s, {{"a"s, 0, 1}, {",b"s, 1, 3}, {"."s, 3, 4}, {".c"s, 4, 6}, {","s, 6, 7}});
    CHECK_PIECES(*pre_tokenizer, "1,000.50"s, {{"1"s, 0, 1}, {",000"s, 1, 5}, {".50"s, 5, 8}});
    CHECK_PIECES(*pre_tokenizer, "x٣y"s, {{"x٣y"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "[,.]"}, "behavior": "Contiguous", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, "a,b..c,"s, {{"a"s, 0, 1}, {","s, 1, 2}, {"b"s, 2, 3}, {".."s, 3, 5}, {"c"s, 5, 6}, {","s, 6, 7}});
    CHECK_PIECES(*pre_tokenizer, "1,000.50"s, {{"1"s, 0, 1}, {","s, 1, 2}, {"000"s, 2, 5}, {"."s, 5, 6}, {"50"s, 6, 8}});
    CHECK_PIECES(*pre_tokenizer, "x٣y"s, {{"x٣y"s, 0, 3}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "\\p{N}"}, "behavior": "Isolated", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, "a,b..c,"s, {{"a,b..c,"s, 0, 7}});
    CHECK_PIECES(*pre_tokenizer, "1,000.50"s, {{"1"s, 0, 1}, {","s, 1, 2}, {"0"s, 2, 3}, {"0"s, 3, 4}, {"0"s, 4, 5}, {"."s, 5, 6}, {"5"s, 6, 7}, {"0"s, 7, 8}});
    CHECK_PIECES(*pre_tokenizer, "x٣y"s, {{"x"s, 0, 1}, {"٣"s, 1, 2}, {"y"s, 2, 3}});
  }
}

TEST_CASE("pre_tokenizers: Split with an empty pattern", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"String": ""}, "behavior": "Isolated", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "abc"s, {{"a"s, 0, 1}, {"b"s, 1, 2}, {"c"s, 2, 3}});
    CHECK_PIECES(*pre_tokenizer, "é中"s, {{"é"s, 0, 1}, {"中"s, 1, 2}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": ""}, "behavior": "Removed", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "abc"s, {{"a"s, 0, 1}, {"b"s, 1, 2}, {"c"s, 2, 3}});
    CHECK_PIECES(*pre_tokenizer, "é中"s, {{"é"s, 0, 1}, {"中"s, 1, 2}});
  }
}

TEST_CASE("pre_tokenizers: Split with the Llama 3 regex", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "Hello world"s, {{"Hello"s, 0, 5}, {" world"s, 5, 11}});
    CHECK_PIECES(*pre_tokenizer, "I'M you'RE 12345 é中文"s, {{"I"s, 0, 1}, {"'M"s, 1, 3}, {" you"s, 3, 7}, {"'RE"s, 7, 10}, {" "s, 10, 11}, {"123"s, 11, 14}, {"45"s, 14, 16}, {" é中文"s, 16, 20}});
    CHECK_PIECES(*pre_tokenizer, "  x\n\n  y  "s, {{" "s, 0, 1}, {" x"s, 1, 3}, {"\n\n"s, 3, 5}, {" "s, 5, 6}, {" y"s, 6, 8}, {"  "s, 8, 10}});
    CHECK_PIECES(*pre_tokenizer, "a!!\r\n b"s, {{"a"s, 0, 1}, {"!!\r\n"s, 1, 5}, {" b"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "don't ½1234"s, {{"don"s, 0, 3}, {"'t"s, 3, 5}, {" "s, 5, 6}, {"½12"s, 6, 9}, {"34"s, 9, 11}});
  }
}

TEST_CASE("pre_tokenizers: Metaspace", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, " "s, {{"▁"s, 0, 1}});
    CHECK_PIECES(*pre_tokenizer, "Hello  world"s, {{"▁Hello"s, 0, 5}, {"▁"s, 5, 6}, {"▁world"s, 6, 12}});
    CHECK_PIECES(*pre_tokenizer, " leading"s, {{"▁leading"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "trailing  "s, {{"▁trailing"s, 0, 8}, {"▁"s, 8, 9}, {"▁"s, 9, 10}});
    CHECK_PIECES(*pre_tokenizer, "▁already"s, {{"▁already"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "中文 text"s, {{"▁中文"s, 0, 2}, {"▁text"s, 2, 7}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, " "s, {{"▁"s, 0, 1}});
    CHECK_PIECES(*pre_tokenizer, "Hello  world"s, {{"▁Hello"s, 0, 5}, {"▁"s, 5, 6}, {"▁world"s, 6, 12}});
    CHECK_PIECES(*pre_tokenizer, " leading"s, {{"▁leading"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "trailing  "s, {{"▁trailing"s, 0, 8}, {"▁"s, 8, 9}, {"▁"s, 9, 10}});
    CHECK_PIECES(*pre_tokenizer, "▁already"s, {{"▁already"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "中文 text"s, {{"▁中文"s, 0, 2}, {"▁text"s, 2, 7}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, " "s, {{"▁"s, 0, 1}});
    CHECK_PIECES(*pre_tokenizer, "Hello  world"s, {{"Hello"s, 0, 5}, {"▁"s, 5, 6}, {"▁world"s, 6, 12}});
    CHECK_PIECES(*pre_tokenizer, " leading"s, {{"▁leading"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "trailing  "s, {{"trailing"s, 0, 8}, {"▁"s, 8, 9}, {"▁"s, 9, 10}});
    CHECK_PIECES(*pre_tokenizer, "▁already"s, {{"▁already"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "中文 text"s, {{"中文"s, 0, 2}, {"▁text"s, 2, 7}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, " "s, {{"▁"s, 0, 1}});
    CHECK_PIECES(*pre_tokenizer, "Hello  world"s, {{"▁Hello▁▁world"s, 0, 12}});
    CHECK_PIECES(*pre_tokenizer, " leading"s, {{"▁leading"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "trailing  "s, {{"▁trailing▁▁"s, 0, 10}});
    CHECK_PIECES(*pre_tokenizer, "▁already"s, {{"▁already"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "中文 text"s, {{"▁中文▁text"s, 0, 7}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Metaspace", "replacement": "_", "prepend_scheme": "always", "split": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, " "s, {{"_"s, 0, 1}});
    CHECK_PIECES(*pre_tokenizer, "Hello  world"s, {{"_Hello"s, 0, 5}, {"_"s, 5, 6}, {"_world"s, 6, 12}});
    CHECK_PIECES(*pre_tokenizer, " leading"s, {{"_leading"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "trailing  "s, {{"_trailing"s, 0, 8}, {"_"s, 8, 9}, {"_"s, 9, 10}});
    CHECK_PIECES(*pre_tokenizer, "▁already"s, {{"_▁already"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "中文 text"s, {{"_中文"s, 0, 2}, {"_text"s, 2, 7}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, " "s, {{"▁"s, 0, 1}});
    CHECK_PIECES(*pre_tokenizer, "Hello  world"s, {{"▁Hello▁▁world"s, 0, 12}});
    CHECK_PIECES(*pre_tokenizer, " leading"s, {{"▁leading"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "trailing  "s, {{"▁trailing▁▁"s, 0, 10}});
    CHECK_PIECES(*pre_tokenizer, "▁already"s, {{"▁already"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, "中文 text"s, {{"▁中文▁text"s, 0, 7}});
  }
}

TEST_CASE("pre_tokenizers: Metaspace prepend_scheme first after another split", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}]})json");
    CHECK_PIECES(*pre_tokenizer, "hello world"s, {{"▁hello"s, 0, 5}, {"world"s, 6, 11}});
    CHECK_PIECES(*pre_tokenizer, "  ab cd"s, {{"ab"s, 2, 4}, {"cd"s, 5, 7}});
    CHECK_PIECES(*pre_tokenizer, "a|b c|d"s, {{"▁a|b"s, 0, 3}, {"c|d"s, 4, 7}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"String": "|"}, "behavior": "Isolated", "invert": false}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}]})json");
    CHECK_PIECES(*pre_tokenizer, "hello world"s, {{"▁hello"s, 0, 5}, {"▁world"s, 5, 11}});
    CHECK_PIECES(*pre_tokenizer, "  ab cd"s, {{"▁"s, 0, 1}, {"▁ab"s, 1, 4}, {"▁cd"s, 4, 7}});
    CHECK_PIECES(*pre_tokenizer, "a|b c|d"s, {{"▁a"s, 0, 1}, {"|"s, 1, 2}, {"b"s, 2, 3}, {"▁c"s, 3, 5}, {"|"s, 5, 6}, {"d"s, 6, 7}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"String": "|"}, "behavior": "Isolated", "invert": false}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}]})json");
    CHECK_PIECES(*pre_tokenizer, "hello world"s, {{"▁hello"s, 0, 5}, {"▁world"s, 5, 11}});
    CHECK_PIECES(*pre_tokenizer, "  ab cd"s, {{"▁"s, 0, 1}, {"▁ab"s, 1, 4}, {"▁cd"s, 4, 7}});
    CHECK_PIECES(*pre_tokenizer, "a|b c|d"s, {{"▁a"s, 0, 1}, {"▁|"s, 1, 2}, {"▁b"s, 2, 3}, {"▁c"s, 3, 5}, {"▁|"s, 5, 6}, {"▁d"s, 6, 7}});
  }
}

TEST_CASE("pre_tokenizers: Whitespace", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Whitespace"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {});
    CHECK_PIECES(*pre_tokenizer, "Hello, world! How's it going?"s, {{"Hello"s, 0, 5}, {","s, 5, 6}, {"world"s, 7, 12}, {"!"s, 12, 13}, {"How"s, 14, 17}, {"'"s, 17, 18}, {"s"s, 18, 19}, {"it"s, 20, 22}, {"going"s, 23, 28}, {"?"s, 28, 29}});
    CHECK_PIECES(*pre_tokenizer, "x² e\u0301t a_b ½ ⅷ Ⓐb \u200Db"s, {{"x"s, 0, 1}, {"²"s, 1, 2}, {"e\u0301t"s, 3, 6}, {"a_b"s, 7, 10}, {"½"s, 11, 12}, {"ⅷ"s, 13, 14}, {"Ⓐb"s, 15, 17}, {"\u200Db"s, 18, 20}});
    CHECK_PIECES(*pre_tokenizer, "tab\tsep\u3000x"s, {{"tab"s, 0, 3}, {"sep"s, 4, 7}, {"x"s, 8, 9}});
    CHECK_PIECES(*pre_tokenizer, "$$$abc!!!def"s, {{"$$$"s, 0, 3}, {"abc"s, 3, 6}, {"!!!"s, 6, 9}, {"def"s, 9, 12}});
    CHECK_PIECES(*pre_tokenizer, "中文，标点。"s, {{"中文"s, 0, 2}, {"，"s, 2, 3}, {"标点"s, 3, 5}, {"。"s, 5, 6}});
    CHECK_PIECES(*pre_tokenizer, "👍🏽ok"s, {{"👍🏽"s, 0, 2}, {"ok"s, 2, 4}});
  }
}

TEST_CASE("pre_tokenizers: WhitespaceSplit", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "WhitespaceSplit"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "   "s, {});
    CHECK_PIECES(*pre_tokenizer, "a  b\tc\u00A0d\u3000e\u2028f"s, {{"a"s, 0, 1}, {"b"s, 3, 4}, {"c"s, 5, 6}, {"d"s, 7, 8}, {"e"s, 9, 10}, {"f"s, 11, 12}});
    CHECK_PIECES(*pre_tokenizer, "no-split"s, {{"no-split"s, 0, 8}});
    CHECK_PIECES(*pre_tokenizer, " x\xC2\x85y\x1Cz "s, {{"x"s, 1, 2}, {"y\x1Cz"s, 3, 6}});
  }
}

TEST_CASE("pre_tokenizers: Punctuation", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Punctuation"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "Hey!! friend...?"s, {{"Hey"s, 0, 3}, {"!"s, 3, 4}, {"!"s, 4, 5}, {" friend"s, 5, 12}, {"."s, 12, 13}, {"."s, 13, 14}, {"."s, 14, 15}, {"?"s, 15, 16}});
    CHECK_PIECES(*pre_tokenizer, "¿Qué? «ok» $5"s, {{"¿"s, 0, 1}, {"Qué"s, 1, 4}, {"?"s, 4, 5}, {" "s, 5, 6}, {"«"s, 6, 7}, {"ok"s, 7, 9}, {"»"s, 9, 10}, {" "s, 10, 11}, {"$"s, 11, 12}, {"5"s, 12, 13}});
    CHECK_PIECES(*pre_tokenizer, "a_b-c"s, {{"a"s, 0, 1}, {"_"s, 1, 2}, {"b"s, 2, 3}, {"-"s, 3, 4}, {"c"s, 4, 5}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Punctuation", "behavior": "Removed"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "Hey!! friend...?"s, {{"Hey"s, 0, 3}, {" friend"s, 5, 12}});
    CHECK_PIECES(*pre_tokenizer, "¿Qué? «ok» $5"s, {{"Qué"s, 1, 4}, {" "s, 5, 6}, {"ok"s, 7, 9}, {" "s, 10, 11}, {"5"s, 12, 13}});
    CHECK_PIECES(*pre_tokenizer, "a_b-c"s, {{"a"s, 0, 1}, {"b"s, 2, 3}, {"c"s, 4, 5}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Punctuation", "behavior": "Isolated"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "Hey!! friend...?"s, {{"Hey"s, 0, 3}, {"!"s, 3, 4}, {"!"s, 4, 5}, {" friend"s, 5, 12}, {"."s, 12, 13}, {"."s, 13, 14}, {"."s, 14, 15}, {"?"s, 15, 16}});
    CHECK_PIECES(*pre_tokenizer, "¿Qué? «ok» $5"s, {{"¿"s, 0, 1}, {"Qué"s, 1, 4}, {"?"s, 4, 5}, {" "s, 5, 6}, {"«"s, 6, 7}, {"ok"s, 7, 9}, {"»"s, 9, 10}, {" "s, 10, 11}, {"$"s, 11, 12}, {"5"s, 12, 13}});
    CHECK_PIECES(*pre_tokenizer, "a_b-c"s, {{"a"s, 0, 1}, {"_"s, 1, 2}, {"b"s, 2, 3}, {"-"s, 3, 4}, {"c"s, 4, 5}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Punctuation", "behavior": "MergedWithPrevious"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "Hey!! friend...?"s, {{"Hey!"s, 0, 4}, {"!"s, 4, 5}, {" friend."s, 5, 13}, {"."s, 13, 14}, {"."s, 14, 15}, {"?"s, 15, 16}});
    CHECK_PIECES(*pre_tokenizer, "¿Qué? «ok» $5"s, {{"¿"s, 0, 1}, {"Qué?"s, 1, 5}, {" «"s, 5, 7}, {"ok»"s, 7, 10}, {" $"s, 10, 12}, {"5"s, 12, 13}});
    CHECK_PIECES(*pre_tokenizer, "a_b-c"s, {{"a_"s, 0, 2}, {"b-"s, 2, 4}, {"c"s, 4, 5}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Punctuation", "behavior": "MergedWithNext"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "Hey!! friend...?"s, {{"Hey"s, 0, 3}, {"!"s, 3, 4}, {"! friend"s, 4, 12}, {"."s, 12, 13}, {"."s, 13, 14}, {"."s, 14, 15}, {"?"s, 15, 16}});
    CHECK_PIECES(*pre_tokenizer, "¿Qué? «ok» $5"s, {{"¿Qué"s, 0, 4}, {"? "s, 4, 6}, {"«ok"s, 6, 9}, {"» "s, 9, 11}, {"$5"s, 11, 13}});
    CHECK_PIECES(*pre_tokenizer, "a_b-c"s, {{"a"s, 0, 1}, {"_b"s, 1, 3}, {"-c"s, 3, 5}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Punctuation", "behavior": "Contiguous"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "Hey!! friend...?"s, {{"Hey"s, 0, 3}, {"!!"s, 3, 5}, {" friend"s, 5, 12}, {"...?"s, 12, 16}});
    CHECK_PIECES(*pre_tokenizer, "¿Qué? «ok» $5"s, {{"¿"s, 0, 1}, {"Qué"s, 1, 4}, {"?"s, 4, 5}, {" "s, 5, 6}, {"«"s, 6, 7}, {"ok"s, 7, 9}, {"»"s, 9, 10}, {" "s, 10, 11}, {"$"s, 11, 12}, {"5"s, 12, 13}});
    CHECK_PIECES(*pre_tokenizer, "a_b-c"s, {{"a"s, 0, 1}, {"_"s, 1, 2}, {"b"s, 2, 3}, {"-"s, 3, 4}, {"c"s, 4, 5}});
  }
}

TEST_CASE("pre_tokenizers: Digits", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Digits", "individual_digits": false})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "abc123def4"s, {{"abc"s, 0, 3}, {"123"s, 3, 6}, {"def"s, 6, 9}, {"4"s, 9, 10}});
    CHECK_PIECES(*pre_tokenizer, "½²٣x"s, {{"½²٣"s, 0, 3}, {"x"s, 3, 4}});
    CHECK_PIECES(*pre_tokenizer, "2024-01-01"s, {{"2024"s, 0, 4}, {"-"s, 4, 5}, {"01"s, 5, 7}, {"-"s, 7, 8}, {"01"s, 8, 10}});
    CHECK_PIECES(*pre_tokenizer, "nodigits"s, {{"nodigits"s, 0, 8}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Digits", "individual_digits": true})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "abc123def4"s, {{"abc"s, 0, 3}, {"1"s, 3, 4}, {"2"s, 4, 5}, {"3"s, 5, 6}, {"def"s, 6, 9}, {"4"s, 9, 10}});
    CHECK_PIECES(*pre_tokenizer, "½²٣x"s, {{"½"s, 0, 1}, {"²"s, 1, 2}, {"٣"s, 2, 3}, {"x"s, 3, 4}});
    CHECK_PIECES(*pre_tokenizer, "2024-01-01"s, {{"2"s, 0, 1}, {"0"s, 1, 2}, {"2"s, 2, 3}, {"4"s, 3, 4}, {"-"s, 4, 5}, {"0"s, 5, 6}, {"1"s, 6, 7}, {"-"s, 7, 8}, {"0"s, 8, 9}, {"1"s, 9, 10}});
    CHECK_PIECES(*pre_tokenizer, "nodigits"s, {{"nodigits"s, 0, 8}});
  }
}

TEST_CASE("pre_tokenizers: CharDelimiterSplit", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "CharDelimiterSplit", "delimiter": "x"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "axbxxc"s, {{"a"s, 0, 1}, {"b"s, 2, 3}, {"c"s, 5, 6}});
    CHECK_PIECES(*pre_tokenizer, "x"s, {});
    CHECK_PIECES(*pre_tokenizer, "▁a▁▁b"s, {{"▁a▁▁b"s, 0, 5}});
    CHECK_PIECES(*pre_tokenizer, "é▁x"s, {{"é▁"s, 0, 2}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "CharDelimiterSplit", "delimiter": "▁"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "axbxxc"s, {{"axbxxc"s, 0, 6}});
    CHECK_PIECES(*pre_tokenizer, "x"s, {{"x"s, 0, 1}});
    CHECK_PIECES(*pre_tokenizer, "▁a▁▁b"s, {{"a"s, 1, 2}, {"b"s, 4, 5}});
    CHECK_PIECES(*pre_tokenizer, "é▁x"s, {{"é"s, 0, 1}, {"x"s, 2, 3}});
  }
}

TEST_CASE("pre_tokenizers: UnicodeScripts", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "UnicodeScripts"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, " abc"s, {{"abc"s, 1, 4}});
    CHECK_PIECES(*pre_tokenizer, "   "s, {});
    CHECK_PIECES(*pre_tokenizer, "abc 123 def"s, {{"abc "s, 0, 4}, {"123 "s, 4, 8}, {"def"s, 8, 11}});
    CHECK_PIECES(*pre_tokenizer, "こんにちは世界 hello"s, {{"こんにちは世界 "s, 0, 8}, {"hello"s, 8, 13}});
    CHECK_PIECES(*pre_tokenizer, "ーabc"s, {{"ー"s, 0, 1}, {"abc"s, 1, 4}});
    CHECK_PIECES(*pre_tokenizer, "e\u0301b"s, {{"e"s, 0, 1}, {"\u0301"s, 1, 2}, {"b"s, 2, 3}});
    CHECK_PIECES(*pre_tokenizer, "😀a😀"s, {{"😀"s, 0, 1}, {"a"s, 1, 2}, {"😀"s, 2, 3}});
    CHECK_PIECES(*pre_tokenizer, "x, y"s, {{"x"s, 0, 1}, {", "s, 1, 3}, {"y"s, 3, 4}});
    CHECK_PIECES(*pre_tokenizer, "Привет мир"s, {{"Привет мир"s, 0, 10}});
    CHECK_PIECES(*pre_tokenizer, "한국어 text"s, {{"한국어 "s, 0, 4}, {"text"s, 4, 8}});
    CHECK_PIECES(*pre_tokenizer, "カタカナひらがな漢字"s, {{"カタカナひらがな漢字"s, 0, 10}});
  }
}

TEST_CASE("pre_tokenizers: FixedLength", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "FixedLength", "length": 3})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "abcdefgh"s, {{"abc"s, 0, 3}, {"def"s, 3, 6}, {"gh"s, 6, 8}});
    CHECK_PIECES(*pre_tokenizer, "héllo wörld"s, {{"hél"s, 0, 3}, {"lo "s, 3, 6}, {"wör"s, 6, 9}, {"ld"s, 9, 11}});
    CHECK_PIECES(*pre_tokenizer, "ab"s, {{"ab"s, 0, 2}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "FixedLength"})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "abcdefgh"s, {{"abcde"s, 0, 5}, {"fgh"s, 5, 8}});
    CHECK_PIECES(*pre_tokenizer, "héllo wörld"s, {{"héllo"s, 0, 5}, {" wörl"s, 5, 10}, {"d"s, 10, 11}});
    CHECK_PIECES(*pre_tokenizer, "ab"s, {{"ab"s, 0, 2}});
  }
}

TEST_CASE("pre_tokenizers: Sequence", "[pre_tokenizers]") {
  // Expected: tokenizers.Tokenizer.from_str(<tokenizer.json with this pre_tokenizer>)
  //           .pre_tokenizer.pre_tokenize_str(input): (piece, char offsets), 0.23.3.
  {
    const auto pre_tokenizer = build(R"json({"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {"type": "Digits", "individual_digits": true}]})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "abc 123 x9"s, {{"abc"s, 0, 3}, {"1"s, 4, 5}, {"2"s, 5, 6}, {"3"s, 6, 7}, {"x"s, 8, 9}, {"9"s, 9, 10}});
    CHECK_PIECES(*pre_tokenizer, "Hello, world!"s, {{"Hello,"s, 0, 6}, {"world!"s, 7, 13}});
    CHECK_PIECES(*pre_tokenizer, " don't stop"s, {{"don't"s, 1, 6}, {"stop"s, 7, 11}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Sequence", "pretokenizers": []})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {{""s, 0, 0}});
    CHECK_PIECES(*pre_tokenizer, "abc 123 x9"s, {{"abc 123 x9"s, 0, 10}});
    CHECK_PIECES(*pre_tokenizer, "Hello, world!"s, {{"Hello, world!"s, 0, 13}});
    CHECK_PIECES(*pre_tokenizer, " don't stop"s, {{" don't stop"s, 0, 11}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "abc 123 x9"s, {{"abc"s, 0, 3}, {"Ġ"s, 3, 4}, {"123"s, 4, 7}, {"Ġx"s, 7, 9}, {"9"s, 9, 10}});
    CHECK_PIECES(*pre_tokenizer, "Hello, world!"s, {{"Hello"s, 0, 5}, {","s, 5, 6}, {"Ġworld"s, 6, 12}, {"!"s, 12, 13}});
    CHECK_PIECES(*pre_tokenizer, " don't stop"s, {{"Ġdon"s, 0, 4}, {"'t"s, 4, 6}, {"Ġstop"s, 6, 11}});
  }
  {
    const auto pre_tokenizer = build(R"json({"type": "Sequence", "pretokenizers": [{"type": "Punctuation"}, {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}]})json");
    CHECK_PIECES(*pre_tokenizer, ""s, {});
    CHECK_PIECES(*pre_tokenizer, "abc 123 x9"s, {{"Ġabc"s, 0, 3}, {"Ġ123"s, 3, 7}, {"Ġx"s, 7, 9}, {"9"s, 9, 10}});
    CHECK_PIECES(*pre_tokenizer, "Hello, world!"s, {{"ĠHello"s, 0, 5}, {"Ġ,"s, 5, 6}, {"Ġworld"s, 6, 12}, {"Ġ!"s, 12, 13}});
    CHECK_PIECES(*pre_tokenizer, " don't stop"s, {{"Ġdon"s, 0, 4}, {"Ġ'"s, 4, 5}, {"Ġt"s, 5, 6}, {"Ġstop"s, 6, 11}});
  }
}


TEST_CASE("pre_tokenizers: Metaspace legacy add_prefix_space", "[pre_tokenizers]") {
  // add_prefix_space=true is the reference's "always"; the expected pieces match
  // Metaspace(prepend_scheme="always").pre_tokenize_str("a b").
  CHECK_PIECES(*build(R"json({"type": "Metaspace", "replacement": "▁", "add_prefix_space": true})json"),
               "a b"s, {{"▁a"s, 0, 1}, {"▁b"s, 1, 3}});
  // add_prefix_space=false with no prepend_scheme: the reference (0.23) rejects this
  // because its scheme defaults to "always"; we give it the meaning older files had,
  // "never" (expected = Metaspace(prepend_scheme="never").pre_tokenize_str("a b")).
  CHECK_PIECES(*build(R"json({"type": "Metaspace", "replacement": "▁", "add_prefix_space": false})json"),
               "a b"s, {{"a"s, 0, 1}, {"▁b"s, 1, 3}});
  // A contradiction is rejected, as in the reference.
  CHECK(build_error(R"json({"type": "Metaspace", "replacement": "▁", "add_prefix_space": false,
                            "prepend_scheme": "first"})json")
            .find("add_prefix_space") != std::string::npos);
  // A legacy str_rep field is ignored, and split defaults to true.
  CHECK_PIECES(*build(R"json({"type": "Metaspace", "replacement": "▁", "str_rep": "▁"})json"),
               "a b"s, {{"▁a"s, 0, 1}, {"▁b"s, 1, 3}});
}

TEST_CASE("pre_tokenizers: Pre-tokenizer config errors name the culprit", "[pre_tokenizers]") {
  const std::string unknown = build_error(R"json({"type": "Frobnicate"})json");
  CHECK(unknown.find("Frobnicate") != std::string::npos);
  CHECK(unknown.find("ByteLevel") != std::string::npos);
  CHECK(unknown.find("Metaspace") != std::string::npos);

  // Fields the reference requires (no serde defaults).
  CHECK(build_error(R"json({"type": "ByteLevel"})json").find("add_prefix_space") !=
        std::string::npos);
  CHECK(build_error(R"json({"type": "ByteLevel", "add_prefix_space": true})json")
            .find("trim_offsets") != std::string::npos);
  CHECK(build_error(R"json({"type": "Split", "pattern": {"String": "a"}, "behavior": "Removed"})json")
            .find("invert") != std::string::npos);
  CHECK(build_error(R"json({"type": "Digits"})json").find("individual_digits") != std::string::npos);
  CHECK(build_error(R"json({"type": "Metaspace"})json").find("replacement") != std::string::npos);
  CHECK(build_error(R"json({"type": "Sequence"})json").find("pretokenizers") != std::string::npos);

  // Malformed values.
  CHECK(build_error(R"json({"type": "Split", "pattern": {"String": "a"}, "behavior": "removed",
                            "invert": false})json")
            .find("behavior") != std::string::npos);
  CHECK(build_error(R"json({"type": "Split", "pattern": "a", "behavior": "Removed",
                            "invert": false})json")
            .find("pattern") != std::string::npos);
  CHECK(build_error(R"json({"type": "Metaspace", "replacement": "ab"})json").find("replacement") !=
        std::string::npos);
  CHECK(build_error(R"json({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "sometimes"})json")
            .find("prepend_scheme") != std::string::npos);
  CHECK(build_error(R"json({"type": "CharDelimiterSplit", "delimiter": "xy"})json")
            .find("delimiter") != std::string::npos);
  CHECK(build_error(R"json({"type": "FixedLength", "length": 0})json").find("length") !=
        std::string::npos);
  CHECK(build_error(R"json({"type": "Sequence", "pretokenizers": [{"type": "Nope"}]})json")
            .find("Nope") != std::string::npos);
  CHECK(build_error(R"json({"behavior": "Isolated"})json").find("type") != std::string::npos);
  CHECK_THROWS_AS(build(R"json({"type": "Split", "pattern": {"Regex": "("}, "behavior": "Removed",
                                "invert": false})json"),
                  ConfigError);

  // Extra fields are ignored, as serde does.
  CHECK_PIECES(*build(R"json({"type": "Whitespace", "x": 1})json"), "a b"s,
               {{"a"s, 0, 1}, {"b"s, 2, 3}});
}
