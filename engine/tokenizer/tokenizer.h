// A Hugging Face tokenizer.json pipeline: added tokens -> normalizer -> pre-tokenizer ->
// model -> post-processor, and decoding back to text. Results are identical to the
// `tokenizers` library (ids, type ids, truncation, decoded text). Thread-safe: every method
// is const.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
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
  ~Tokenizer();

  // Input bytes that are not valid UTF-8 are replaced by U+FFFD (what Python's str does
  // before the library ever sees them).
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

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  std::unique_ptr<AddedVocabulary> added_vocabulary_;
};

}  // namespace sparkd::tokenizer
