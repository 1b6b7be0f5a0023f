// Errors raised while loading or running a tokenizer pipeline. They are thrown inside the
// tokenizer and turned into sparkd::Status at its public boundary (tokenizer.h); no
// exception leaves engine/tokenizer.
#pragma once

#include <stdexcept>
#include <string>

namespace sparkd::tokenizer {

// A tokenizer.json that is malformed or uses something we do not support.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A failure while encoding or decoding (e.g. a model without an unknown token meets an
// unknown word), mirroring the errors Hugging Face tokenizers returns.
class EncodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace sparkd::tokenizer
