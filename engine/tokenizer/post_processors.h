// Post-processors: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel,
// Sequence. They add special tokens and join pairs (query, document) for rerankers.
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>

#include "engine/tokenizer/encoding.h"

namespace sparkd::tokenizer {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Number of special tokens process() adds (truncation reserves room for them).
  virtual size_t added_tokens(bool is_pair) const = 0;
  virtual Encoding process(Encoding encoding, std::optional<Encoding> pair,
                           bool add_special_tokens) const = 0;
};

// What the library does without a post-processor: set sequence ids and merge.
Encoding default_post_process(Encoding encoding, std::optional<Encoding> pair);

// Throws ConfigError naming the unsupported "type" or the malformed field.
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& config);

}  // namespace sparkd::tokenizer
