// Error-message text for JSON read from untrusted files (config.json, safetensors headers,
// the shard index): every value a message quotes stays short, printable and cheap to build.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace sparkd::model {

// A short, printable description of an untrusted JSON value for error messages. Arrays and
// objects are summarised, never dumped: dump() recurses and a hostile file can nest deeply.
std::string describe_untrusted_json(const nlohmann::json& value);

// "[json.exception.parse_error.101] parse error at ..." without the bracketed tag.
std::string json_error_text(const nlohmann::json::exception& error);

}  // namespace sparkd::model
