#include "engine/model/untrusted_json.h"

#include <string_view>

namespace sparkd::model {

using nlohmann::json;

std::string describe_untrusted_json(const json& value) {
  if (value.is_array()) return "an array of " + std::to_string(value.size()) + " elements";
  if (value.is_object()) return "an object";
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 64) text = text.substr(0, 61) + "...";
  return text;
}

std::string json_error_text(const json::exception& error) {
  std::string_view text = error.what();
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find("] ");
    if (close != std::string_view::npos) text.remove_prefix(close + 2);
  }
  return std::string(text);
}

}  // namespace sparkd::model
