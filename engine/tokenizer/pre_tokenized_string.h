// The text of one input sequence as it moves through the pipeline: a list of splits, each a
// NormalizedString, some already turned into tokens (added tokens are matched before the
// model runs). Mirrors Hugging Face's PreTokenizedString.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/tokenizer/normalized_string.h"

namespace sparkd::tokenizer {

struct Token {
  uint32_t id = 0;
  std::string value;
  Offsets offsets;  // within the split's normalized string
};

struct Split {
  NormalizedString normalized;
  std::optional<std::vector<Token>> tokens;
};

class PreTokenizedString {
 public:
  PreTokenizedString() = default;
  explicit PreTokenizedString(std::string_view original);
  explicit PreTokenizedString(NormalizedString normalized);

  // Replaces each split that has no tokens yet by what `fn(index, split)` returns; empty
  // results are dropped. Splits that already have tokens are kept as they are.
  void split(const std::function<void(size_t, NormalizedString&&, std::vector<Split>*)>& fn);
  // Convenience for pre-tokenizers that only produce NormalizedStrings.
  void split_normalized(
      const std::function<std::vector<NormalizedString>(size_t, NormalizedString&&)>& fn);
  void normalize(const std::function<void(NormalizedString&)>& fn);
  void tokenize(const std::function<std::vector<Token>(const NormalizedString&)>& fn);

  std::vector<Split>& splits() { return splits_; }
  const std::vector<Split>& splits() const { return splits_; }

 private:
  std::vector<Split> splits_;
};

}  // namespace sparkd::tokenizer
