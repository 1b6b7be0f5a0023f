// WordLevel model, plus the vocabulary and JSON field helpers all models share.

#include "engine/tokenizer/wordlevel_model.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "engine/tokenizer/error.h"

namespace sparkd::tokenizer {

using nlohmann::json;

// ---------------------------------------------------------------------------------------
// Vocab
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// JSON field readers
// ---------------------------------------------------------------------------------------

namespace model_config {
namespace {

std::string field_name(std::string_view model, std::string_view field) {
  return std::string(model) + " model: field \"" + std::string(field) + "\"";
}

}  // namespace

const json* find(const json& object, std::string_view field) {
  auto it = object.find(std::string(field));
  return it == object.end() ? nullptr : &*it;
}

const json& required(const json& object, std::string_view model, std::string_view field) {
  const json* value = find(object, field);
  if (value == nullptr) throw ConfigError(field_name(model, field) + " is missing");
  return *value;
}

std::optional<std::string> optional_string(const json& object, std::string_view model,
                                           std::string_view field) {
  const json* value = find(object, field);
  if (value == nullptr || value->is_null()) return std::nullopt;
  if (!value->is_string()) {
    throw ConfigError(field_name(model, field) + " must be a string or null, got " +
                      value->type_name());
  }
  return value->get<std::string>();
}

std::string required_string(const json& object, std::string_view model, std::string_view field) {
  const json& value = required(object, model, field);
  if (!value.is_string()) {
    throw ConfigError(field_name(model, field) + " must be a string, got " + value.type_name());
  }
  return value.get<std::string>();
}

bool optional_bool(const json& object, std::string_view model, std::string_view field,
                   bool fallback) {
  const json* value = find(object, field);
  if (value == nullptr || value->is_null()) return fallback;
  if (!value->is_boolean()) {
    throw ConfigError(field_name(model, field) + " must be a boolean, got " + value->type_name());
  }
  return value->get<bool>();
}

uint64_t required_uint(const json& object, std::string_view model, std::string_view field,
                       uint64_t max) {
  const json& value = required(object, model, field);
  if (!value.is_number_integer() || (!value.is_number_unsigned() && value.get<int64_t>() < 0)) {
    throw ConfigError(field_name(model, field) + " must be a non-negative integer");
  }
  const uint64_t result = value.is_number_unsigned() ? value.get<uint64_t>()
                                                     : static_cast<uint64_t>(value.get<int64_t>());
  if (result > max) throw ConfigError(field_name(model, field) + " is too large");
  return result;
}

void check_type(const json& object, std::string_view model) {
  const json* type = find(object, "type");
  if (type == nullptr) return;  // "type" is optional for backward compatibility
  if (!type->is_string() || type->get<std::string>() != model) {
    throw ConfigError(std::string(model) + " model: field \"type\" is " + type->dump() +
                      ", expected \"" + std::string(model) + "\"");
  }
}

}  // namespace model_config

// ---------------------------------------------------------------------------------------
// WordLevel
// ---------------------------------------------------------------------------------------

WordLevelModel::WordLevelModel(Vocab vocab, std::string unk_token)
    : vocab_(std::move(vocab)), unk_token_(std::move(unk_token)) {
  unk_id_ = vocab_.find(unk_token_);
}

std::unique_ptr<WordLevelModel> WordLevelModel::from_json(const json& config) {
  constexpr std::string_view kModel = "WordLevel";
  model_config::check_type(config, kModel);
  Vocab vocab = Vocab::from_json(model_config::required(config, kModel, "vocab"),
                                 "WordLevel model: field \"vocab\"");
  std::string unk_token = model_config::required_string(config, kModel, "unk_token");
  return std::make_unique<WordLevelModel>(std::move(vocab), std::move(unk_token));
}

std::vector<Token> WordLevelModel::tokenize(std::string_view sequence) const {
  // Like the library, even an empty sequence yields one token (unk unless "" is in the
  // vocabulary); the pipeline never hands the model an empty split.
  std::vector<Token> tokens;
  if (auto id = vocab_.find(sequence)) {
    tokens.push_back(Token{*id, std::string(sequence), {0, sequence.size()}});
  } else if (unk_id_) {
    tokens.push_back(Token{*unk_id_, unk_token_, {0, sequence.size()}});
  } else {
    throw EncodeError("WordLevel error: Missing [UNK] token from the vocabulary");
  }
  return tokens;
}

}  // namespace sparkd::tokenizer
