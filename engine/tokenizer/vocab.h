// The vocabulary of the models that serialize one as a {"token": id} object (BPE,
// WordPiece, WordLevel), and VocabModel, their common base, which answers the Model
// vocabulary queries from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
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
  // `where` names the field in error messages, e.g. "model BPE: field \"vocab\"".
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

// A model whose tokens are exactly the entries of one Vocab.
class VocabModel : public Model {
 public:
  std::optional<uint32_t> token_to_id(std::string_view token) const final {
    return vocab_.find(token);
  }
  const std::string* id_to_token(uint32_t id) const final { return vocab_.token(id); }
  size_t vocab_size() const final { return vocab_.size(); }

 protected:
  explicit VocabModel(Vocab vocab) : vocab_(std::move(vocab)) {}
  const Vocab& vocab() const { return vocab_; }

 private:
  Vocab vocab_;
};

}  // namespace sparkd::tokenizer
