// ConfigReader: the JSON field readers every tokenizer component shares.

#include "engine/tokenizer/config_reader.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "common/quoted.h"
#include "engine/tokenizer/error.h"
#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {

using nlohmann::json;

namespace {

std::string in_quotes(std::string_view text) {
  return quoted(text, '"');
}

}  // namespace

ConfigReader::ConfigReader(const json& config, std::string_view component, std::string_view type)
    : config_(config), component_(component), type_(type) {}

ConfigReader ConfigReader::nested(const json& object) const {
  return ConfigReader(object, component_, type_);
}

void ConfigReader::fail(std::string_view message) const {
  throw ConfigError(component_ + " " + type_ + ": " + std::string(message));
}

std::string ConfigReader::field_label(std::string_view field) const {
  return component_ + " " + type_ + ": field " + in_quotes(field);
}

const json* ConfigReader::find(std::string_view field) const {
  if (!config_.is_object()) return nullptr;
  auto it = config_.find(std::string(field));
  return it == config_.end() ? nullptr : &*it;
}

const json& ConfigReader::require(std::string_view field) const {
  const json* value = find(field);
  if (value == nullptr) fail("missing field " + in_quotes(field));
  return *value;
}

bool ConfigReader::get_bool(std::string_view field) const {
  const json& value = require(field);
  if (!value.is_boolean()) {
    fail("field " + in_quotes(field) + " must be a boolean, got " + value.type_name());
  }
  return value.get<bool>();
}

bool ConfigReader::get_bool_or(std::string_view field, bool fallback) const {
  const json* value = find(field);
  if (value == nullptr || value->is_null()) return fallback;
  if (!value->is_boolean()) {
    fail("field " + in_quotes(field) + " must be a boolean or null, got " + value->type_name());
  }
  return value->get<bool>();
}

std::string ConfigReader::get_string(std::string_view field) const {
  return as_string(require(field), field);
}

std::optional<std::string> ConfigReader::get_optional_string(std::string_view field) const {
  const json* value = find(field);
  if (value == nullptr || value->is_null()) return std::nullopt;
  if (!value->is_string()) {
    fail("field " + in_quotes(field) + " must be a string or null, got " + value->type_name());
  }
  return value->get<std::string>();
}

uint64_t ConfigReader::get_uint(std::string_view field, uint64_t max) const {
  return as_uint(require(field), field, max);
}

size_t ConfigReader::get_size(std::string_view field) const {
  return static_cast<size_t>(get_uint(field, std::numeric_limits<size_t>::max()));
}

char32_t ConfigReader::get_char(std::string_view field) const {
  const json& value = require(field);
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (!text.empty() && is_valid_utf8(text)) {
      size_t pos = 0;
      const char32_t c = next_code_point(text, &pos);
      if (pos == text.size()) return c;
    }
  }
  fail("field " + in_quotes(field) + " must be a string of exactly one character, got " +
       value.dump());
}

const json& ConfigReader::get_array(std::string_view field) const {
  const json& value = require(field);
  if (!value.is_array()) {
    fail("field " + in_quotes(field) + " must be an array, got " + value.type_name());
  }
  return value;
}

const json& ConfigReader::get_object(std::string_view field) const {
  const json& value = require(field);
  if (!value.is_object()) {
    fail("field " + in_quotes(field) + " must be an object, got " + value.type_name());
  }
  return value;
}

Pattern ConfigReader::get_pattern(std::string_view field) const {
  const json& pattern = require(field);
  if (pattern.is_object() && pattern.size() == 1) {
    auto it = pattern.begin();
    if (it.value().is_string()) {
      const std::string& text = it.value().get_ref<const std::string&>();
      if (it.key() == "String") return text.empty() ? Pattern::regex("") : Pattern::literal(text);
      if (it.key() == "Regex") return Pattern::regex(text);
    }
  }
  fail("field " + in_quotes(field) +
       " must be {\"String\": \"...\"} or {\"Regex\": \"...\"}, got " + pattern.dump());
}

std::string ConfigReader::as_string(const json& value, std::string_view field) const {
  if (!value.is_string()) {
    fail("field " + in_quotes(field) + " must be a string, got " + value.type_name());
  }
  return value.get<std::string>();
}

uint64_t ConfigReader::as_uint(const json& value, std::string_view field, uint64_t max) const {
  // serde's unsigned integers: negative or fractional values are rejected.
  if (!value.is_number_integer() || (!value.is_number_unsigned() && value.get<int64_t>() < 0)) {
    fail("field " + in_quotes(field) + " must be a non-negative integer, got " + value.dump());
  }
  const uint64_t result = value.is_number_unsigned() ? value.get<uint64_t>()
                                                     : static_cast<uint64_t>(value.get<int64_t>());
  if (result > max) {
    fail("field " + in_quotes(field) + " is too large: " + std::to_string(result) + " > " +
         std::to_string(max));
  }
  return result;
}

size_t ConfigReader::one_of(const json& value, std::string_view field,
                            std::initializer_list<std::string_view> names) const {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    size_t index = 0;
    for (std::string_view name : names) {
      if (text == name) return index;
      ++index;
    }
  }
  std::string listed;
  for (std::string_view name : names) {
    if (!listed.empty()) listed += ", ";
    listed += in_quotes(name);
  }
  fail("field " + in_quotes(field) + " must be one of " + listed + "; got " + value.dump());
}

void ConfigReader::check_type() const {
  const json* tag = find("type");
  if (tag == nullptr) return;
  if (!tag->is_string() || tag->get_ref<const std::string&>() != type_) {
    fail("field \"type\" is " + tag->dump() + ", expected " + in_quotes(type_));
  }
}

std::optional<std::string> read_type_tag(const json& config, std::string_view component) {
  if (!config.is_object()) {
    throw ConfigError(std::string(component) + ": expected a JSON object, got " +
                      config.type_name());
  }
  auto tag = config.find("type");
  if (tag == config.end()) return std::nullopt;
  if (!tag->is_string()) {
    throw ConfigError(std::string(component) + ": field \"type\" must be a string, got " +
                      tag->dump());
  }
  return tag->get<std::string>();
}

void unsupported_type(std::string_view component, std::string_view type,
                      std::string_view supported) {
  throw ConfigError("unsupported " + std::string(component) + " type " + in_quotes(type) +
                    " (supported: " + std::string(supported) + ")");
}

}  // namespace sparkd::tokenizer
