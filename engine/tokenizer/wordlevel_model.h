// WordLevel: a whole pre-token maps to one vocabulary entry or to the unknown token.
//
// This header also holds the pieces every model shares: `Vocab` (the {token: id} object
// that BPE, WordPiece and WordLevel serialize) and the JSON field readers that reproduce
// serde's strictness for tokenizer.json model sections.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/model.h"

namespace sparkd::tokenizer {

// Lets unordered containers keyed by std::string be probed with a string_view, so a lookup
// on the hot path never builds a temporary std::string.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

template <typename Value>
using StringMap = std::unordered_map<std::string, Value, StringViewHash, std::equal_to<>>;

// token <-> id mapping. Move-only: the reverse index points at the keys of the forward map,
// which stay put when the map is moved but not when it is copied.
class Vocab {
 public:
  Vocab() = default;
  Vocab(Vocab&&) = default;
  Vocab& operator=(Vocab&&) = default;
  Vocab(const Vocab&) = delete;
  Vocab& operator=(const Vocab&) = delete;

  // Parses a JSON object {"token": id, ...} (ids must fit in u32, as serde requires).
  // `where` names the field in error messages, e.g. "BPE model: field \"vocab\"".
  static Vocab from_json(const nlohmann::json& value, std::string_view where);
  static Vocab from_map(StringMap<uint32_t> map);

  std::optional<uint32_t> find(std::string_view token) const {
    auto it = to_id_.find(token);
    if (it == to_id_.end()) return std::nullopt;
    return it->second;
  }
  // nullptr when no token has this id.
  const std::string* token(uint32_t id) const;
  // Number of distinct tokens: the library's get_vocab_size() for these models.
  size_t size() const { return to_id_.size(); }
  // Byte length of the longest token (bounds WordPiece's longest-match search).
  size_t max_token_bytes() const { return max_token_bytes_; }

 private:
  void build_reverse_index();

  StringMap<uint32_t> to_id_;
  // id -> token: a flat array when ids are reasonably dense (the normal case), a hash map
  // when a vocabulary has huge gaps so memory stays proportional to the vocabulary.
  std::vector<const std::string*> dense_;
  std::unordered_map<uint32_t, const std::string*> sparse_;
  size_t max_token_bytes_ = 0;
};

// Field readers shared by the model parsers. `model` names the model in messages. They
// follow serde: a field of the wrong JSON type is an error; "optional" readers treat a
// missing field and null alike.
namespace model_config {
const nlohmann::json* find(const nlohmann::json& object, std::string_view field);
std::optional<std::string> optional_string(const nlohmann::json& object, std::string_view model,
                                           std::string_view field);
std::string required_string(const nlohmann::json& object, std::string_view model,
                            std::string_view field);
bool optional_bool(const nlohmann::json& object, std::string_view model, std::string_view field,
                   bool fallback);
uint64_t required_uint(const nlohmann::json& object, std::string_view model, std::string_view field,
                       uint64_t max);
const nlohmann::json& required(const nlohmann::json& object, std::string_view model,
                               std::string_view field);
// Rejects a present "type" that names another model (serde does the same).
void check_type(const nlohmann::json& object, std::string_view model);
}  // namespace model_config

class WordLevelModel final : public Model {
 public:
  WordLevelModel(Vocab vocab, std::string unk_token);
  // Needs "vocab" and "unk_token" (both mandatory in the library).
  static std::unique_ptr<WordLevelModel> from_json(const nlohmann::json& config);

  std::vector<Token> tokenize(std::string_view sequence) const override;
  std::optional<uint32_t> token_to_id(std::string_view token) const override {
    return vocab_.find(token);
  }
  const std::string* id_to_token(uint32_t id) const override { return vocab_.token(id); }
  size_t vocab_size() const override { return vocab_.size(); }

 private:
  Vocab vocab_;
  std::string unk_token_;
  std::optional<uint32_t> unk_id_;
};

}  // namespace sparkd::tokenizer
