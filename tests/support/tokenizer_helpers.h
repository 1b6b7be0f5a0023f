// Small helpers shared by the tokenizer component tests.
#pragma once

#include <cstdint>
#include <string>

#include "engine/tokenizer/encoding.h"

namespace sparkd::testing {

// The message of the E that `f` throws ("<no exception>" if none, so the check fails).
template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception>";
}

// What `tok.encode("a b c ...", add_special_tokens=False)` returns for single-letter words.
inline tokenizer::Encoding letters(const std::string& text) {
  tokenizer::Encoding e;
  uint32_t word = 0;
  for (size_t i = 0; i < text.size(); i += 2, ++word) {
    e.ids.push_back(static_cast<uint32_t>(text[i] - 'a') + 5);
    e.type_ids.push_back(0);
    e.tokens.emplace_back(1, text[i]);
    e.words.emplace_back(word);
    e.offsets.emplace_back(i, i + 1);
    e.special_tokens_mask.push_back(0);
    e.attention_mask.push_back(1);
  }
  return e;
}

}  // namespace sparkd::testing
