// A compiled PCRE2 regular expression (UTF + UCP, JIT when available) that is safe to use
// from many threads at once: match data is per call.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sparkd::tokenizer {

// Rewrites the shorthand classes whose meaning differs between Oniguruma (the engine the
// library runs tokenizer.json regexes on) and PCRE2: \s \S \w \W \h \H.
std::string translate_oniguruma(std::string_view expression);

class Regex {
 public:
  // `expression` is in Oniguruma's dialect, as tokenizer.json files hold it.
  // Throws ConfigError naming the expression and PCRE2's reason when it does not compile.
  explicit Regex(const std::string& expression);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches, leftmost first. Empty matches follow Oniguruma's
  // iteration (what Hugging Face tokenizers uses): an empty match that ends where the
  // previous match ended is skipped by advancing one character.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  // Calls visit(begin, end) for each match, in the same order as find_all.
  template <typename Visit>
  void for_each_match(std::string_view text, Visit&& visit) const;

  // First match at or after `start`; false when there is none.
  bool search(std::string_view text, size_t start, size_t* match_begin, size_t* match_end) const;
  const std::string& expression() const { return expression_; }

 private:
  std::string expression_;
  void* code_ = nullptr;  // pcre2_code_8*; kept opaque so pcre2.h stays out of headers
  bool jit_ = false;
};

template <typename Visit>
void Regex::for_each_match(std::string_view text, Visit&& visit) const {
  size_t last_end = 0;
  bool have_last_match = false;
  size_t last_match_end = 0;
  while (last_end <= text.size()) {
    size_t begin = 0, end = 0;
    if (!search(text, last_end, &begin, &end)) return;
    if (begin == end && have_last_match && last_match_end == end) {
      if (last_end >= text.size()) return;
      size_t step = 1;
      unsigned char lead = static_cast<unsigned char>(text[last_end]);
      if (lead >= 0xF0)
        step = 4;
      else if (lead >= 0xE0)
        step = 3;
      else if (lead >= 0xC0)
        step = 2;
      last_end += step;
      continue;
    }
    last_end = end;
    have_last_match = true;
    last_match_end = end;
    visit(begin, end);
    if (begin == end && end >= text.size()) return;
  }
}

}  // namespace sparkd::tokenizer
