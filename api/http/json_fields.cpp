#include "api/http/json_fields.h"

#include <algorithm>
#include <cmath>

namespace sparkd::http {

std::string json_type_phrase(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return "a number";
    default:
      return "something else";
  }
}

std::string json_text(const OJson& value) {
  return value.dump(-1, ' ', false, OJson::error_handler_t::replace);
}

Expected<Json> json_object_body(const HttpRequest& request) {
  if (request.body.empty()) {
    return Status(StatusCode::kInvalidArgument,
                  "the request has no body; send a JSON object (Content-Type: application/json)");
  }
  Json body;
  try {
    body = Json::parse(request.body);
  } catch (const Json::exception& error) {  // a syntax error, or a number out of range
    return Status(StatusCode::kInvalidArgument,
                  std::string("the request body is not valid JSON: ") + error.what());
  }
  if (!body.is_object()) {
    return Status(StatusCode::kInvalidArgument,
                  "the request body must be a JSON object, got " + json_type_phrase(body));
  }
  return body;
}

FieldReader::FieldReader(const Json& object, std::string path)
    : object_(object), path_(std::move(path)) {}

const Json* FieldReader::get(std::string_view name) const {
  if (!object_.is_object()) return nullptr;
  const auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

void FieldReader::fail(std::string_view name, const std::string& message) {
  if (!status_.is_ok()) return;
  status_ = Status(StatusCode::kInvalidArgument, "'" + field_path(name) + "' " + message);
}

const Json* FieldReader::typed(std::string_view name, bool ok, const char* expected) {
  const Json* value = get(name);
  if (value == nullptr) return nullptr;
  if (!ok) {
    fail(name, std::string("must be ") + expected + ", got " + json_type_phrase(*value));
    return nullptr;
  }
  return value;
}

std::optional<std::string> FieldReader::string(std::string_view name) {
  const Json* v = get(name);
  if (v == nullptr || !typed(name, v->is_string(), "a string")) return std::nullopt;
  return v->get<std::string>();
}

std::optional<double> FieldReader::number(std::string_view name) {
  const Json* v = get(name);
  if (v == nullptr || !typed(name, v->is_number(), "a number")) return std::nullopt;
  return v->get<double>();
}

std::optional<int64_t> FieldReader::integer(std::string_view name) {
  const Json* v = get(name);
  if (v == nullptr || !typed(name, v->is_number(), "an integer")) return std::nullopt;
  if (v->is_number_integer()) return v->get<int64_t>();
  if (v->is_number_unsigned()) {
    const auto u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) {
      fail(name, "is too large");
      return std::nullopt;
    }
    return static_cast<int64_t>(u);
  }
  const double d = v->get<double>();
  if (std::floor(d) != d || std::fabs(d) > 9.0e15) {
    fail(name, "must be an integer, got " + v->dump());
    return std::nullopt;
  }
  return static_cast<int64_t>(d);
}

std::optional<bool> FieldReader::boolean(std::string_view name) {
  const Json* v = get(name);
  if (v == nullptr || !typed(name, v->is_boolean(), "true or false")) return std::nullopt;
  return v->get<bool>();
}

const Json* FieldReader::object(std::string_view name) {
  const Json* v = get(name);
  return v == nullptr ? nullptr : typed(name, v->is_object(), "an object");
}

const Json* FieldReader::array(std::string_view name) {
  const Json* v = get(name);
  return v == nullptr ? nullptr : typed(name, v->is_array(), "an array");
}

std::vector<std::string> FieldReader::strings(std::string_view name) {
  const Json* value = get(name);
  std::vector<std::string> out;
  if (value != nullptr && value->is_string()) {
    out.push_back(value->get<std::string>());
    return out;
  }
  const bool list =
      value != nullptr && value->is_array() && !value->empty() &&
      std::all_of(value->begin(), value->end(), [](const Json& item) { return item.is_string(); });
  if (!list) {
    fail(name, value == nullptr ? "is required: a string or a list of strings"
                                : "must be a string or a non-empty list of strings (token-id "
                                  "lists are not taken)");
    return {};
  }
  for (const Json& item : *value) out.push_back(item.get<std::string>());
  return out;
}

const Json* FieldReader::required_array(std::string_view name) {
  const Json* value = array(name);
  if (value == nullptr && get(name) == nullptr) fail(name, "is required");
  return value;
}

}  // namespace sparkd::http
