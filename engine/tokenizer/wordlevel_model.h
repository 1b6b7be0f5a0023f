// WordLevel: a whole pre-token maps to one vocabulary entry or to the unknown token.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/vocab.h"

namespace sparkd::tokenizer {

class WordLevelModel final : public VocabModel {
 public:
  WordLevelModel(Vocab vocab, std::string unk_token);
  // Needs "vocab" and "unk_token" (both mandatory in the library).
  static std::unique_ptr<WordLevelModel> from_json(const nlohmann::json& config);

  std::vector<Token> tokenize(std::string_view sequence) const override;

 private:
  std::string unk_token_;
  std::optional<uint32_t> unk_id_;
};

}  // namespace sparkd::tokenizer
