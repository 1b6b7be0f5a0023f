// What a normalizer or pre-tokenizer splits or replaces on: a literal string, a regex
// (PCRE2, Unicode, JIT-compiled) or a character class. find_matches() covers the whole
// input with alternating (range, is_match) pieces, exactly like Hugging Face's Pattern.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sparkd::tokenizer {

using Offsets = std::pair<size_t, size_t>;  // [begin, end) in bytes

struct PatternMatch {
  Offsets offsets;
  bool is_match;
};

class Regex;  // PCRE2 wrapper, defined in regex.h

class Pattern {
 public:
  static Pattern literal(std::string text);
  // Throws ConfigError when the expression does not compile.
  static Pattern regex(const std::string& expression);
  static Pattern char_class(std::function<bool(char32_t)> predicate);

  // Swaps matches and non-matches (Split's `invert`).
  Pattern inverted() const;

  std::vector<PatternMatch> find_matches(std::string_view inside) const;

 private:
  enum class Kind { kLiteral, kRegex, kCharClass };
  Kind kind_ = Kind::kLiteral;
  bool invert_ = false;
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
  std::function<bool(char32_t)> predicate_;
};

}  // namespace sparkd::tokenizer
