// The values a Jinja template computes with, with Python's semantics (what jinja2 gives chat
// templates): undefined, None, bool, int, float, str, list (or tuple, or a generator: what
// jinja2's map and select filters return), dict (insertion-ordered), and callables (macros, bound
// methods, builtins). Lists and dicts are shared, as Python's are, so a namespace() assigned
// through one name is seen through another.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sparkd::jinja {

// A rendering error: what went wrong, in the words jinja2 would use where it can. The
// interpreter adds the template name and line.
class TemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Value;
struct Dict;
struct CallArgs;
using List = std::vector<Value>;
using Function = std::function<Value(CallArgs&)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };

  Value() = default;                         // undefined
  static Value undefined(std::string hint);  // hint: what was looked up, for the error message
  static Value none();
  Value(bool b) : kind_(Kind::kBool), int_(b) {}        // NOLINT: implicit
  Value(int v) : kind_(Kind::kInt), int_(v) {}          // NOLINT: implicit
  Value(int64_t v) : kind_(Kind::kInt), int_(v) {}      // NOLINT: implicit
  Value(double v) : kind_(Kind::kFloat), float_(v) {}   // NOLINT: implicit
  Value(std::string s);                                 // NOLINT: implicit
  Value(std::string_view s) : Value(std::string(s)) {}  // NOLINT: implicit
  Value(const char* s) : Value(std::string(s)) {}       // NOLINT: implicit
  enum class Sequence { kList, kTuple, kGenerator };
  static Value list(List items, Sequence sequence = Sequence::kList);
  static Value dict(Dict entries);
  static Value namespace_object(Dict entries);
  static Value function(std::string name, Function fn);
  // markupsafe's Markup: a string marked safe (|safe, |escape). Autoescape is off in chat
  // templates, so it prints as it is; it matters to +, which escapes the plain-string side.
  static Value markup(std::string s);

  // JSON in (objects keep their key order) and Python's json.dumps out.
  static Value from_json(const nlohmann::ordered_json& json);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_markup() const { return kind_ == Kind::kString && markup_; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kList && sequence_ == Sequence::kTuple; }
  // A generator iterates like a list but has no len(), no JSON form and is always true.
  bool is_generator() const { return kind_ == Kind::kList && sequence_ == Sequence::kGenerator; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const;
  bool is_function() const { return kind_ == Kind::kFunction; }

  // Python's bool(value); undefined is false.
  bool truthy() const;
  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }
  double as_number() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return *string_; }
  const List& as_list() const { return *list_; }
  const Dict& as_dict() const { return *dict_; }
  Dict& mutable_dict() const { return *dict_; }  // namespaces are assigned through
  const std::string& function_name() const { return *string_; }
  Value call(CallArgs& args) const;
  // What was looked up (a default-constructed undefined value has no hint of its own).
  const std::string& undefined_hint() const {
    static const std::string kNoHint = "a value is undefined";
    return string_ ? *string_ : kNoHint;
  }

  // Python's type name ("str", "dict", ...) for error messages.
  std::string type_name() const;
  // str(value) as Jinja prints it ({{ value }}): undefined prints nothing, None "None".
  std::string str() const;
  // repr(value).
  std::string repr() const;

  struct JsonFormat {
    int indent = -1;  // < 0: one line
    std::string item_separator = ", ";
    std::string key_separator = ": ";
    bool sort_keys = false;
    bool ensure_ascii = false;
    size_t max_bytes = SIZE_MAX;  // a longer text is a TemplateError
  };
  // json.dumps(value, ...); undefined and functions are TemplateErrors, as in Python.
  std::string to_json(const JsonFormat& format) const;

 private:
  void append_json(const JsonFormat& format, int depth, std::string& out) const;

  Kind kind_ = Kind::kUndefined;
  Sequence sequence_ = Sequence::kList;
  bool markup_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::shared_ptr<const std::string> string_;  // the string, a function's name, an undefined's hint
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Function> function_;
};

// Keys are Values as in Python (strings from JSON and most templates; ints occur), compared by
// Python's ==.
struct Dict {
  std::vector<std::pair<Value, Value>> entries;
  bool is_namespace = false;

  const Value* find(std::string_view key) const;
  const Value* find_key(const Value& key) const;
  void set(std::string_view key, Value value) { set_key(Value(key), std::move(value)); }
  void set_key(const Value& key, Value value);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // Argument `index` by position or `name` by keyword (removed from keyword, so that
  // check_no_more can name what was left), or undefined.
  Value take(size_t index, std::string_view name);
  // A TemplateError naming `callee` when arguments beyond `positional_count` or unknown
  // keywords remain.
  void check_no_more(std::string_view callee, size_t positional_count) const;
};

// Python's == (1 == 1.0, [1] == [1], a dict equals one with the same items in any order).
bool operator==(const Value& a, const Value& b);
// markupsafe.escape: & < > " ' as HTML entities.
std::string html_escape(std::string_view text);
inline bool operator!=(const Value& a, const Value& b) {
  return !(a == b);
}
// Python's <, for numbers, strings (by code point) and lists; a TemplateError otherwise.
bool less_than(const Value& a, const Value& b);

}  // namespace sparkd::jinja
