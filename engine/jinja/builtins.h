// jinja2's builtin filters and tests, the Python methods templates call on strings, lists and
// dicts, and the globals transformers adds (builtins.cpp). Each throws TemplateError with
// jinja2's or Python's wording when misused.
#pragma once

#include <ctime>
#include <functional>
#include <string>

#include "engine/jinja/value.h"

namespace sparkd::jinja {

// value | name(args). Unknown filters are TemplateErrors ("no filter named 'x'").
Value apply_filter(const std::string& name, const Value& value, CallArgs& args);
// value is name(args).
bool apply_test(const std::string& name, const Value& value, CallArgs& args);

// object.name as jinja2's sandboxed getattr resolves it: a method bound to the object (dict
// items/keys/values/get, str strip/split/startswith/...), a dict's key, or undefined.
Value get_attribute(const Value& object, const std::string& name);
// object[key]: a dict's key, a list's or string's index (negative from the end), or undefined.
Value get_item(const Value& object, const Value& key);
// object[start:stop:step] for lists (a list) and strings (a string), Python's clamping.
Value get_slice(const Value& object, const Value& start, const Value& stop, const Value& step);

// Iteration as a for loop sees it: a list's items, a dict's keys, a string's code points;
// undefined is empty.
List iterate(const Value& value);

// While one is alive on a thread, the strings and lists the builtins build there (join,
// replace, indent, format, tojson, range, ...) are bounded: a larger one is a TemplateError
// before it is built.
class BuiltValueLimit {
 public:
  explicit BuiltValueLimit(size_t max_bytes);
  ~BuiltValueLimit();
  BuiltValueLimit(const BuiltValueLimit&) = delete;
  BuiltValueLimit& operator=(const BuiltValueLimit&) = delete;

 private:
  size_t previous_;
};
// A TemplateError when `size` (bytes of a string, items of a list) is beyond the limit.
void check_built_size(size_t size);

// The template globals: range, namespace, dict, raise_exception, strftime_now (on `clock`).
Dict make_globals(std::function<std::time_t()> clock);

}  // namespace sparkd::jinja
