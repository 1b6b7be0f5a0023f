// Vocab: the {"token": id} vocabulary of BPE, WordPiece and WordLevel.

#include "engine/tokenizer/vocab.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "engine/tokenizer/error.h"

namespace sparkd::tokenizer {

using nlohmann::json;

Vocab Vocab::from_json(const json& value, std::string_view where) {
  if (!value.is_object()) {
    throw ConfigError(std::string(where) + " must be an object {\"token\": id, ...}, got " +
                      value.type_name());
  }
  StringMap<uint32_t> map;
  map.reserve(value.size());
  for (const auto& [token, id] : value.items()) {
    // serde reads ids as u32: negative, fractional or larger values are rejected.
    if (!id.is_number_integer() || (!id.is_number_unsigned() && id.get<int64_t>() < 0)) {
      throw ConfigError(std::string(where) + ": id of token \"" + token +
                        "\" must be a non-negative integer");
    }
    const uint64_t id_value =
        id.is_number_unsigned() ? id.get<uint64_t>() : static_cast<uint64_t>(id.get<int64_t>());
    if (id_value > std::numeric_limits<uint32_t>::max()) {
      throw ConfigError(std::string(where) + ": id of token \"" + token + "\" exceeds u32");
    }
    map.insert_or_assign(token, static_cast<uint32_t>(id_value));
  }
  return from_map(std::move(map));
}

Vocab Vocab::from_map(StringMap<uint32_t> map) {
  Vocab vocab;
  vocab.to_id_ = std::move(map);
  vocab.build_reverse_index();
  return vocab;
}

void Vocab::build_reverse_index() {
  uint32_t max_id = 0;
  for (const auto& [token, id] : to_id_) {
    max_id = std::max(max_id, id);
    max_token_bytes_ = std::max(max_token_bytes_, token.size());
  }
  // Two tokens may share an id in a hand-edited vocabulary; the library then keeps whichever
  // its hash map yields last (unspecified). We keep the lexicographically smallest so the
  // choice at least does not depend on hash order.
  auto keep = [](const std::string*& slot, const std::string* candidate) {
    if (slot == nullptr || *candidate < *slot) slot = candidate;
  };
  const bool dense =
      static_cast<uint64_t>(max_id) <= 2 * static_cast<uint64_t>(to_id_.size()) + 1024;
  if (dense) {
    dense_.assign(to_id_.empty() ? 0 : static_cast<size_t>(max_id) + 1, nullptr);
    for (const auto& [token, id] : to_id_) keep(dense_[id], &token);
  } else {
    sparse_.reserve(to_id_.size());
    for (const auto& [token, id] : to_id_) keep(sparse_[id], &token);
  }
}

const std::string* Vocab::token(uint32_t id) const {
  if (id < dense_.size()) return dense_[id];
  if (sparse_.empty()) return nullptr;
  auto it = sparse_.find(id);
  return it == sparse_.end() ? nullptr : it->second;
}

}  // namespace sparkd::tokenizer
