// Reading one tokenizer.json component (a normalizer, pre-tokenizer, model,
// post-processor or decoder) the way the reference deserializer (serde) does: a field
// without a serde default is required, a field of the wrong JSON type is an error, and the
// "_or" / optional readers treat a missing field and null alike. Every error is a
// ConfigError "<component> <type>: <message>" that names the field, e.g.
//   normalizer Strip: missing field "strip_right"
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "engine/tokenizer/pattern.h"

namespace sparkd::tokenizer {

class ConfigReader {
 public:
  // `component` is the kind ("normalizer", "model", ...), `type` the variant ("Strip",
  // "BPE", ...). `config` is read in place and must outlive the reader.
  ConfigReader(const nlohmann::json& config, std::string_view component, std::string_view type);

  // A reader of a nested object (a list item, a sub-object) whose errors carry this
  // reader's component and type.
  ConfigReader nested(const nlohmann::json& object) const;

  // Throws ConfigError("<component> <type>: <message>").
  [[noreturn]] void fail(std::string_view message) const;
  // "<component> <type>: field \"<field>\"", for errors raised by other code.
  std::string field_label(std::string_view field) const;

  bool has(std::string_view field) const { return find(field) != nullptr; }
  // nullptr when the field is absent (a null value counts as present).
  const nlohmann::json* find(std::string_view field) const;
  // The field's value, whatever its JSON type; an error when absent.
  const nlohmann::json& require(std::string_view field) const;

  bool get_bool(std::string_view field) const;
  bool get_bool_or(std::string_view field, bool fallback) const;
  std::string get_string(std::string_view field) const;
  std::optional<std::string> get_optional_string(std::string_view field) const;
  // A non-negative integer no larger than `max`.
  uint64_t get_uint(std::string_view field, uint64_t max) const;
  size_t get_size(std::string_view field) const;
  // A Rust `char`: a string holding exactly one code point.
  char32_t get_char(std::string_view field) const;
  const nlohmann::json& get_array(std::string_view field) const;
  const nlohmann::json& get_object(std::string_view field) const;
  // make(item) for each item of the array `field` (e.g. the members of a Sequence).
  template <typename Make>
  auto map_array(std::string_view field, Make&& make) const {
    const nlohmann::json& list = get_array(field);
    std::vector<std::invoke_result_t<Make&, const nlohmann::json&>> out;
    out.reserve(list.size());
    for (const nlohmann::json& item : list) out.push_back(make(item));
    return out;
  }
  // {"String": "..."} or {"Regex": "..."}, as Replace and Split serialize their pattern.
  // A literal is searched like the reference's escaped regex; the one difference between
  // the two is the empty literal, which as a regex matches between every pair of chars,
  // so it becomes Pattern::regex(""). Throws ConfigError when the regex does not compile.
  Pattern get_pattern(std::string_view field) const;

  // The same checks for a value that is not a direct field of this object (an array
  // item, a pair's element); `field` names it in errors.
  std::string as_string(const nlohmann::json& value, std::string_view field) const;
  uint64_t as_uint(const nlohmann::json& value, std::string_view field, uint64_t max) const;
  // The position of `value` (a string) in `names`; anything else is an error listing them.
  size_t one_of(const nlohmann::json& value, std::string_view field,
                std::initializer_list<std::string_view> names) const;

  // Rejects a "type" tag that names another variant; the tag itself may be absent
  // (models, whose tag is optional for backward compatibility).
  void check_type() const;

 private:
  const nlohmann::json& config_;
  std::string component_;
  std::string type_;
};

// The "type" tag of a component's config: std::nullopt when absent (legacy files), an
// error when the config is not an object or the tag is not a string.
std::optional<std::string> read_type_tag(const nlohmann::json& config, std::string_view component);

// Throws ConfigError: unsupported <component> type "<type>" (supported: <supported>).
[[noreturn]] void unsupported_type(std::string_view component, std::string_view type,
                                   std::string_view supported);

}  // namespace sparkd::tokenizer
