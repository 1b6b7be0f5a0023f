// Pre-tokenizers: BertPreTokenizer, ByteLevel, Split, Metaspace, Whitespace,
// WhitespaceSplit, Punctuation, Digits, Sequence (and the few others tokenizer.json uses).
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>

#include "engine/tokenizer/pre_tokenized_string.h"

namespace sparkd::tokenizer {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(PreTokenizedString& text) const = 0;
};

// Throws ConfigError naming the unsupported "type" or the malformed field.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& config);

}  // namespace sparkd::tokenizer
