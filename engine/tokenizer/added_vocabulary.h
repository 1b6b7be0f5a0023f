// Tokens added on top of the model's vocabulary (special tokens such as [CLS] or
// <|im_end|>, and user-added ones). They are matched in the raw text (or in the normalized
// text, for `normalized` tokens) before pre-tokenization, leftmost-longest, honouring
// single_word, lstrip and rstrip exactly as Hugging Face's AddedVocabulary does.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/tokenizer/model.h"
#include "engine/tokenizer/normalizers.h"
#include "engine/tokenizer/pre_tokenized_string.h"

namespace sparkd::tokenizer {

struct AddedToken {
  uint32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);
  AddedVocabulary(AddedVocabulary&&) noexcept;
  AddedVocabulary& operator=(AddedVocabulary&&) noexcept;
  ~AddedVocabulary();

  // Splits `text` on added tokens, normalizing what lies between them.
  PreTokenizedString extract_and_normalize(const Normalizer* normalizer,
                                           std::string_view text) const;

  std::optional<uint32_t> token_to_id(std::string_view content) const;
  // The token's text for decoding (its normalized form when it is a normalized token whose
  // normalization changes it, as the library does); nullptr for ids not added here.
  const std::string* id_to_token(uint32_t id) const;
  bool is_special_token(std::string_view token) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  struct Trie;  // byte trie for leftmost-longest matching
  void find_matches(std::string_view text, const Trie* trie,
                    std::vector<std::pair<std::optional<uint32_t>, Offsets>>* out) const;
  std::vector<Split> split_with_indices(NormalizedString&& text, const Trie* trie) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, uint32_t> content_to_id_;
  std::unordered_map<uint32_t, size_t> id_to_index_;
  std::unordered_map<uint32_t, std::string> normalized_content_;  // only where it differs
  std::unordered_set<std::string> special_contents_;
  std::unique_ptr<Trie> raw_trie_;         // tokens with normalized == false
  std::unique_ptr<Trie> normalized_trie_;  // tokens with normalized == true
};

}  // namespace sparkd::tokenizer
