// A Hugging Face tokenizer.json pipeline: added tokens -> normalizer -> pre-tokenizer ->
// model -> post-processor, and decoding back to text. Results are identical to the
// `tokenizers` library (ids, type ids, truncation, decoded text). Thread-safe: every method
// is const.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "engine/tokenizer/encoding.h"

namespace sparkd::tokenizer {

class Normalizer;
class PreTokenizer;
class Model;
class PostProcessor;
class Decoder;
class AddedVocabulary;

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a model directory holding one. A
  // tokenizer_config.json beside it is read for special-token flags. Errors name the file
  // and the component that is missing, malformed or unsupported.
  static Expected<std::shared_ptr<const Tokenizer>> from_file(const std::filesystem::path& path);
  static Expected<std::shared_ptr<const Tokenizer>> from_json(std::string_view json,
                                                              std::string_view source_name);
  // The same, from tokenizer.json already parsed (or built: ggml_vocabulary.cpp).
  static Expected<std::shared_ptr<const Tokenizer>> from_json_value(const nlohmann::json& root,
                                                                    std::string_view source_name);
  ~Tokenizer();

  // The same tokenizer with other default truncation and padding (what tokenizer.json's
  // "truncation" and "padding" set, and what encode() applies when the caller gives no
  // truncation). Components are shared, so this is cheap. with_defaults({}, {}) is the
  // library's no_truncation() + no_padding(): plain encodes, as a server wants them.
  std::shared_ptr<const Tokenizer> with_defaults(std::optional<TruncationParams> truncation,
                                                 std::optional<PaddingParams> padding) const;
  const std::optional<TruncationParams>& default_truncation() const { return truncation_; }
  const std::optional<PaddingParams>& default_padding() const { return padding_; }

  // Input bytes that are not valid UTF-8 are replaced by U+FFFD (what Python's str does
  // before the library ever sees them). `truncation` overrides default_truncation();
  // default_padding() always applies.
  Expected<Encoding> encode(std::string_view text, bool add_special_tokens = true,
                            const std::optional<TruncationParams>& truncation = {}) const;
  // A (query, document) pair, as rerankers take it.
  Expected<Encoding> encode_pair(std::string_view text, std::string_view pair,
                                 bool add_special_tokens = true,
                                 const std::optional<TruncationParams>& truncation = {}) const;
  Expected<std::string> decode(const std::vector<uint32_t>& ids,
                               bool skip_special_tokens = false) const;

  std::optional<uint32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(uint32_t id) const;
  // Model vocabulary plus added tokens (ids may exceed it when added ids leave gaps).
  size_t vocab_size() const;
  // Special tokens added on top of the model's vocabulary.
  std::vector<std::string> special_tokens() const;
  bool is_special_id(uint32_t id) const;

 private:
  Tokenizer();
  Encoding encode_sequence(std::string_view text, uint32_t type_id) const;
  Expected<Encoding> finish(Encoding encoding, std::optional<Encoding> pair,
                            bool add_special_tokens,
                            const std::optional<TruncationParams>& truncation) const;

  std::shared_ptr<const Normalizer> normalizer_;
  std::shared_ptr<const PreTokenizer> pre_tokenizer_;
  std::shared_ptr<const Model> model_;
  std::shared_ptr<const PostProcessor> post_processor_;
  std::shared_ptr<const Decoder> decoder_;
  std::shared_ptr<const AddedVocabulary> added_vocabulary_;
  std::optional<TruncationParams> truncation_;
  std::optional<PaddingParams> padding_;
};

}  // namespace sparkd::tokenizer
