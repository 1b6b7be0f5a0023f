// The JSON of HTTP API requests and answers. Reading: the body as an object, and its fields by
// type, with errors that name the field and say what was sent ("'temperature' must be a number, got
// a string"), as OpenAI's and Ollama's servers answer. JSON null counts as absent, as both
// APIs treat it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/http/request_parser.h"
#include "common/status.h"

namespace sparkd::http {

using Json = nlohmann::json;
// Answers keep their APIs' field order (an ordered object), as clients' debug output shows it.
using OJson = nlohmann::ordered_json;

// An answer's JSON text, compact; invalid UTF-8 in a string (a token cut mid-character) is
// replaced rather than thrown on.
std::string json_text(const OJson& value);

// The request's body as a JSON object. INVALID_ARGUMENT for an empty body, one that is not
// JSON (with the parser's reason), or JSON that is not an object.
Expected<Json> json_object_body(const HttpRequest& request);

// Typed reads of an object's fields. A field of the wrong type is recorded (the first such
// error is kept) and read as absent; status() says whether every read was clean.
class FieldReader {
 public:
  // `path` prefixes field names in errors ("messages[2]." reads as "messages[2].role").
  // `object` must outlive the reader (a temporary may not be read).
  explicit FieldReader(const Json& object, std::string path = "");
  FieldReader(Json&& object, std::string path = "") = delete;

  const Json* get(std::string_view name) const;  // null when absent or null
  std::optional<std::string> string(std::string_view name);
  std::optional<double> number(std::string_view name);
  std::optional<int64_t> integer(std::string_view name);  // a number with no fraction
  std::optional<bool> boolean(std::string_view name);
  const Json* object(std::string_view name);
  const Json* array(std::string_view name);
  // A string or a non-empty list of strings (embedding inputs); absent is an error.
  std::vector<std::string> strings(std::string_view name);
  // An array that must be there: absent is an error ("'messages' is required").
  const Json* required_array(std::string_view name);

  // Records an error about field `name` (when none is recorded yet).
  void fail(std::string_view name, const std::string& message);
  std::string field_path(std::string_view name) const { return path_ + std::string(name); }
  const Status& status() const { return status_; }

 private:
  const Json* typed(std::string_view name, bool ok, const char* expected);

  const Json& object_;
  std::string path_;
  Status status_;
};

// "a string", "an array", ... for error messages.
std::string json_type_phrase(const Json& value);

}  // namespace sparkd::http
