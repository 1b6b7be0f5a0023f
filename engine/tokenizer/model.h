// Tokenization models: BPE, WordPiece, Unigram, WordLevel. A model turns one pre-token
// (a split's normalized text) into tokens; it is const and safe to call from many threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/pre_tokenized_string.h"

namespace sparkd::tokenizer {

class Model {
 public:
  virtual ~Model() = default;
  // Throws EncodeError where the library returns an error (e.g. no unk token configured).
  virtual std::vector<Token> tokenize(std::string_view sequence) const = 0;
  virtual std::optional<uint32_t> token_to_id(std::string_view token) const = 0;
  // nullptr when `id` is not in the vocabulary.
  virtual const std::string* id_to_token(uint32_t id) const = 0;
  virtual size_t vocab_size() const = 0;
};

// Throws ConfigError naming the unsupported "type" or the malformed field.
std::unique_ptr<Model> make_model(const nlohmann::json& config);

}  // namespace sparkd::tokenizer
