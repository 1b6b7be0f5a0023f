// Normalizers: BertNormalizer, NFC/NFD/NFKC/NFKD, Lowercase, StripAccents, Replace,
// Prepend, Strip, Sequence (and the few others tokenizer.json files use).
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>

#include "engine/tokenizer/normalized_string.h"

namespace sparkd::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(NormalizedString& text) const = 0;
};

// Builds a normalizer from its tokenizer.json object. Throws ConfigError naming the
// unsupported "type" or the malformed field.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config);

}  // namespace sparkd::tokenizer
