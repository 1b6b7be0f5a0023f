// WordPiece (BERT): greedy longest-match-first split of a pre-token into vocabulary pieces,
// non-initial pieces carrying a continuing-subword prefix ("##"). A word that cannot be
// covered, or is longer than max_input_chars_per_word chars, becomes one unknown token.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/vocab.h"

namespace sparkd::tokenizer {

class WordPieceModel final : public VocabModel {
 public:
  // Library defaults: unk "[UNK]", prefix "##", 100 chars.
  WordPieceModel(Vocab vocab, std::string unk_token, std::string continuing_subword_prefix,
                 size_t max_input_chars_per_word);
  // "unk_token", "continuing_subword_prefix", "max_input_chars_per_word" and "vocab" are all
  // mandatory in a serialized WordPiece (the library reports the missing one).
  static std::unique_ptr<WordPieceModel> from_json(const nlohmann::json& config);

  std::vector<Token> tokenize(std::string_view sequence) const override;

 private:
  std::vector<Token> unknown_word(std::string_view sequence) const;

  std::string unk_token_;
  std::string prefix_;
  size_t max_input_chars_per_word_;
  std::optional<uint32_t> unk_id_;
};

}  // namespace sparkd::tokenizer
