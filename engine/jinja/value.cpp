#include "engine/jinja/value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/jinja/python_text.h"

namespace sparkd::jinja {

Value Value::undefined(std::string hint) {
  Value v;
  v.string_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value::Value(std::string s)
    : kind_(Kind::kString), string_(std::make_shared<const std::string>(std::move(s))) {}

Value Value::markup(std::string s) {
  Value v(std::move(s));
  v.markup_ = true;
  return v;
}

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Value Value::list(List items, Sequence sequence) {
  Value v;
  v.kind_ = Kind::kList;
  v.sequence_ = sequence;
  v.list_ = std::make_shared<List>(std::move(items));
  return v;
}

Value Value::dict(Dict entries) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<Dict>(std::move(entries));
  return v;
}

Value Value::namespace_object(Dict entries) {
  entries.is_namespace = true;
  return dict(std::move(entries));
}

Value Value::function(std::string name, Function fn) {
  Value v;
  v.kind_ = Kind::kFunction;
  v.string_ = std::make_shared<const std::string>(std::move(name));
  v.function_ = std::make_shared<Function>(std::move(fn));
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& json) {
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Value(static_cast<int64_t>(json.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float:
      return Value(json.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List items;
      for (const auto& item : json) items.push_back(from_json(item));
      return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict entries;
      for (const auto& [key, item] : json.items()) entries.set(key, from_json(item));
      return dict(std::move(entries));
    }
    default:
      throw TemplateError("a JSON value of type " + std::string(json.type_name()) +
                          " has no template equivalent");
  }
}

bool Value::is_namespace() const {
  return kind_ == Kind::kDict && dict_->is_namespace;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
    case Kind::kInt:
      return int_ != 0;
    case Kind::kFloat:
      return float_ != 0;
    case Kind::kString:
      return !string_->empty();
    case Kind::kList:
      return is_generator() || !list_->empty();
    case Kind::kDict:
      return is_namespace() || !dict_->entries.empty();
    case Kind::kFunction:
      return true;
  }
  return false;
}

Value Value::call(CallArgs& args) const {
  if (kind_ != Kind::kFunction) throw TemplateError("'" + type_name() + "' object is not callable");
  return (*function_)(args);
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return is_tuple() ? "tuple" : is_generator() ? "generator" : "list";
    case Kind::kDict:
      return is_namespace() ? "Namespace" : "dict";
    case Kind::kFunction:
      return "function";
  }
  return "object";
}

std::string Value::str() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "";
    case Kind::kString:
      return *string_;
    default:
      return repr();
  }
}

std::string Value::repr() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return int_ ? "True" : "False";
    case Kind::kInt:
      return std::to_string(int_);
    case Kind::kFloat:
      return python_float_repr(float_);
    case Kind::kString:
      return python_string_repr(*string_);
    case Kind::kList: {
      if (is_generator()) return "<generator object>";
      std::string out = is_tuple() ? "(" : "[";
      for (size_t i = 0; i < list_->size(); ++i) {
        if (i > 0) out += ", ";
        out += (*list_)[i].repr();
      }
      if (is_tuple() && list_->size() == 1) out += ",";
      return out + (is_tuple() ? ")" : "]");
    }
    case Kind::kDict: {
      std::string out = is_namespace() ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [key, value] : dict_->entries) {
        if (!first) out += ", ";
        first = false;
        out += key.repr() + ": " + value.repr();
      }
      return out + (is_namespace() ? "}>" : "}");
    }
    case Kind::kFunction:
      return "<function " + *string_ + ">";
  }
  return "";
}

namespace {

void append_json_string(std::string_view text, bool ensure_ascii, std::string& out) {
  out += '"';
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    char escaped[16];
    if (c < 0x20) {
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else if (c < 0x80 || !ensure_ascii) {
      out += static_cast<char>(c);
    } else {
      // ensure_ascii: the code point as \uXXXX (a surrogate pair above the BMP).
      size_t end = i + 1;
      while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
      for (char32_t code_point : decode_code_points(text.substr(i, end - i))) {
        if (code_point >= 0x10000) {
          const char32_t v = code_point - 0x10000;
          std::snprintf(escaped, sizeof escaped, "\\u%04x\\u%04x",
                        static_cast<unsigned>(0xD800 + (v >> 10)),
                        static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
        } else {
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(code_point));
        }
        out += escaped;
      }
      i = end - 1;
    }
  }
  out += '"';
}

void append_newline_indent(const Value::JsonFormat& format, int depth, std::string& out) {
  out += '\n';
  out.append(static_cast<size_t>(format.indent * depth), ' ');
}

}  // namespace

std::string Value::to_json(const JsonFormat& format) const {
  std::string out;
  append_json(format, 0, out);
  return out;
}

void Value::append_json(const JsonFormat& format, int depth, std::string& out) const {
  if (out.size() > format.max_bytes) {
    throw TemplateError("JSON text of more than " + std::to_string(format.max_bytes) + " bytes");
  }
  switch (kind_) {
    case Kind::kNone:
      out += "null";
      return;
    case Kind::kBool:
      out += int_ ? "true" : "false";
      return;
    case Kind::kInt:
      out += std::to_string(int_);
      return;
    case Kind::kFloat:
      if (std::isnan(float_)) {
        out += "NaN";
      } else if (std::isinf(float_)) {
        out += float_ < 0 ? "-Infinity" : "Infinity";
      } else {
        out += python_float_repr(float_);
      }
      return;
    case Kind::kString:
      append_json_string(*string_, format.ensure_ascii, out);
      return;
    case Kind::kList: {
      if (is_generator()) throw TemplateError("Object of type generator is not JSON serializable");
      if (list_->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < list_->size(); ++i) {
        if (i > 0) out += format.item_separator;
        if (format.indent >= 0) append_newline_indent(format, depth + 1, out);
        (*list_)[i].append_json(format, depth + 1, out);
      }
      if (format.indent >= 0) append_newline_indent(format, depth, out);
      out += ']';
      return;
    }
    case Kind::kDict: {
      if (dict_->entries.empty()) {
        out += "{}";
        return;
      }
      // json.dumps turns keys into strings: str as is, int and float by repr, True as
      // "true", None as "null"; other keys are errors.
      std::vector<std::pair<std::string, const Value*>> entries;
      for (const auto& [key, value] : dict_->entries) {
        std::string text;
        if (key.is_string()) {
          text = key.as_string();
        } else if (key.is_bool()) {
          text = key.as_bool() ? "true" : "false";
        } else if (key.is_none()) {
          text = "null";
        } else if (key.is_number()) {
          text = key.repr();
        } else {
          throw TemplateError("keys must be str, int, float, bool or None, not " + key.type_name());
        }
        entries.emplace_back(std::move(text), &value);
      }
      if (format.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out += '{';
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out += format.item_separator;
        if (format.indent >= 0) append_newline_indent(format, depth + 1, out);
        append_json_string(entries[i].first, format.ensure_ascii, out);
        out += format.key_separator;
        entries[i].second->append_json(format, depth + 1, out);
      }
      if (format.indent >= 0) append_newline_indent(format, depth, out);
      out += '}';
      return;
    }
    case Kind::kUndefined:
    case Kind::kFunction:
      throw TemplateError("Object of type " + type_name() + " is not JSON serializable");
  }
}

const Value* Dict::find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k.is_string() && k.as_string() == key) return &v;
  }
  return nullptr;
}

const Value* Dict::find_key(const Value& key) const {
  for (const auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Dict::set_key(const Value& key, Value value) {
  for (auto& [k, v] : entries) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(key, std::move(value));
}

Value CallArgs::take(size_t index, std::string_view name) {
  for (auto it = keyword.begin(); it != keyword.end(); ++it) {
    if (it->first == name) {
      Value v = std::move(it->second);
      keyword.erase(it);
      return v;
    }
  }
  // Missing: undefined, with a hint for the error should the callee need it.
  return index < positional.size()
             ? positional[index]
             : Value::undefined("missing required argument '" + std::string(name) + "'");
}

void CallArgs::check_no_more(std::string_view callee, size_t positional_count) const {
  if (positional.size() > positional_count) {
    throw TemplateError(std::string(callee) + "() takes at most " +
                        std::to_string(positional_count) + " positional arguments (" +
                        std::to_string(positional.size()) + " given)");
  }
  if (!keyword.empty()) {
    throw TemplateError(std::string(callee) + "() got an unexpected keyword argument '" +
                        keyword.front().first + "'");
  }
}

bool operator==(const Value& a, const Value& b) {
  if (a.is_number() || a.is_bool()) {
    if (!(b.is_number() || b.is_bool())) return false;
    if (a.is_float() || b.is_float()) return a.as_number() == b.as_number();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kList:
      return a.as_list() == b.as_list();
    case Value::Kind::kDict: {
      const Dict& x = a.as_dict();
      const Dict& y = b.as_dict();
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [key, value] : x.entries) {
        const Value* other = y.find_key(key);  // by Python ==
        if (other == nullptr || *other != value) return false;
      }
      return true;
    }
    case Value::Kind::kFunction:
      return &a == &b;
    default:
      return false;
  }
}

bool less_than(const Value& a, const Value& b) {
  if ((a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool())) {
    if (a.is_float() || b.is_float()) return a.as_number() < b.as_number();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_list() && b.is_list()) {
    const List& x = a.as_list();
    const List& y = b.as_list();
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
      if (x[i] != y[i]) return less_than(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  throw TemplateError("'<' not supported between instances of '" + a.type_name() + "' and '" +
                      b.type_name() + "'");
}

}  // namespace sparkd::jinja
