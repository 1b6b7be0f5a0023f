#include "engine/jinja/builtins.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "engine/jinja/python_text.h"

namespace sparkd::jinja {
namespace {

thread_local size_t max_built_size = SIZE_MAX;

[[noreturn]] void type_error(const std::string& message) {
  throw TemplateError(message);
}

// An undefined value used where jinja2 raises UndefinedError: its own hint says why.
void require_defined(const Value& value) {
  if (value.is_undefined()) throw TemplateError(value.undefined_hint());
}

const std::string& require_string(const Value& value, const char* what) {
  require_defined(value);
  if (!value.is_string())
    type_error(std::string(what) + " expects a string, got " + value.type_name());
  return value.as_string();
}

int64_t require_int(const Value& value, const char* what) {
  require_defined(value);
  if (value.is_int() || value.is_bool()) return value.as_int();
  if (value.is_float()) return static_cast<int64_t>(value.as_number());
  type_error(std::string(what) + " expects an integer, got " + value.type_name());
}

std::optional<std::string> optional_string(const Value& value, const char* what) {
  if (value.is_undefined() || value.is_none()) return std::nullopt;
  return require_string(value, what);
}

// A list of values for filters that take any iterable.
List items_of(const Value& value) {
  return iterate(value);
}

// Attribute lookup by a dotted path ("function.name"), as jinja2's make_attrgetter; integer
// parts index lists.
Value attribute_path(const Value& value, const std::string& path) {
  Value current = value;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    current = numeric ? get_item(current, Value(static_cast<int64_t>(std::stoll(part))))
                      : get_item(current, Value(part));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return current;
}

// ---- Python methods ----------------------------------------------------------------------

Value bound(const Value& self, const std::string& name,
            std::function<Value(const Value&, CallArgs&)> fn) {
  return Value::function(self.type_name() + "." + name,
                         [self, fn = std::move(fn)](CallArgs& args) { return fn(self, args); });
}

bool starts_or_ends_with(const std::string& text, const Value& affix, bool start) {
  const auto matches = [&](const Value& candidate) {
    const std::string& a = require_string(candidate, start ? "startswith" : "endswith");
    if (a.size() > text.size()) return false;
    return start ? text.compare(0, a.size(), a) == 0
                 : text.compare(text.size() - a.size(), a.size(), a) == 0;
  };
  if (affix.is_list()) {
    for (const Value& candidate : affix.as_list()) {
      if (matches(candidate)) return true;
    }
    return false;
  }
  return matches(affix);
}

// str.format for {} {0} {name} and {{ }}, without format specs or conversions.
std::string python_format(const std::string& format, const CallArgs& args) {
  std::string out;
  size_t automatic = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if ((c == '{' || c == '}') && i + 1 < format.size() && format[i + 1] == c) {
      out += c;
      ++i;
      continue;
    }
    if (c == '}') type_error("Single '}' encountered in format string");
    if (c != '{') {
      out += c;
      continue;
    }
    const size_t close = format.find('}', i);
    if (close == std::string::npos) type_error("Single '{' encountered in format string");
    const std::string field = format.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!") != std::string::npos) {
      type_error("str.format: format specs and conversions are not supported ('{" + field + "}')");
    }
    const Value* value = nullptr;
    if (field.empty() || std::all_of(field.begin(), field.end(), ::isdigit)) {
      const size_t index = field.empty() ? automatic++ : std::stoul(field);
      if (index >= args.positional.size())
        type_error("Replacement index " + std::to_string(index) +
                   " out of range for positional args tuple");
      value = &args.positional[index];
    } else {
      for (const auto& [name, v] : args.keyword) {
        if (name == field) value = &v;
      }
      if (value == nullptr) type_error("KeyError: '" + field + "'");
    }
    out += value->str();
    check_built_size(out.size());
    i = close;
  }
  return out;
}

Value string_method(const Value& self, const std::string& name) {
  using Method = std::function<Value(const Value&, CallArgs&)>;
  static const std::unordered_map<std::string, Method> kMethods = {
      {"strip",
       [](const Value& s, CallArgs& a) {
         return Value(std::string(
             python_strip(s.as_string(), optional_string(a.take(0, "chars"), "strip"))));
       }},
      {"lstrip",
       [](const Value& s, CallArgs& a) {
         return Value(std::string(python_strip(
             s.as_string(), optional_string(a.take(0, "chars"), "lstrip"), true, false)));
       }},
      {"rstrip",
       [](const Value& s, CallArgs& a) {
         return Value(std::string(python_strip(
             s.as_string(), optional_string(a.take(0, "chars"), "rstrip"), false, true)));
       }},
      {"split",
       [](const Value& s, CallArgs& a) {
         const auto separator = optional_string(a.take(0, "sep"), "split");
         const Value limit = a.take(1, "maxsplit");
         if (separator && separator->empty()) type_error("empty separator");
         List parts;
         for (auto& p : python_split(s.as_string(), separator,
                                     limit.is_undefined() ? -1 : require_int(limit, "split")))
           parts.emplace_back(std::move(p));
         return Value::list(std::move(parts));
       }},
      {"rsplit",
       [](const Value& s, CallArgs& a) {
         const auto separator = optional_string(a.take(0, "sep"), "rsplit");
         const Value limit = a.take(1, "maxsplit");
         if (separator && separator->empty()) type_error("empty separator");
         List parts;
         for (auto& p :
              python_split(s.as_string(), separator,
                           limit.is_undefined() ? -1 : require_int(limit, "rsplit"), true))
           parts.emplace_back(std::move(p));
         return Value::list(std::move(parts));
       }},
      {"splitlines",
       [](const Value& s, CallArgs&) {
         List lines;
         for (auto& line : python_splitlines(s.as_string())) lines.emplace_back(std::move(line));
         return Value::list(std::move(lines));
       }},
      {"startswith",
       [](const Value& s, CallArgs& a) {
         return Value(starts_or_ends_with(s.as_string(), a.take(0, "prefix"), true));
       }},
      {"endswith",
       [](const Value& s, CallArgs& a) {
         return Value(starts_or_ends_with(s.as_string(), a.take(0, "suffix"), false));
       }},
      {"upper", [](const Value& s, CallArgs&) { return Value(python_upper(s.as_string())); }},
      {"lower", [](const Value& s, CallArgs&) { return Value(python_lower(s.as_string())); }},
      {"title", [](const Value& s, CallArgs&) { return Value(python_title(s.as_string())); }},
      {"capitalize",
       [](const Value& s, CallArgs&) { return Value(python_capitalize(s.as_string())); }},
      {"replace",
       [](const Value& s, CallArgs& a) {
         CallArgs forwarded = a;
         return apply_filter("replace", s, forwarded);
       }},
      {"find",
       [](const Value& s, CallArgs& a) {
         const std::string& needle = require_string(a.take(0, "sub"), "find");
         const size_t at = s.as_string().find(needle);
         return Value(at == std::string::npos
                          ? int64_t{-1}
                          : code_point_count(std::string_view(s.as_string()).substr(0, at)));
       }},
      {"rfind",
       [](const Value& s, CallArgs& a) {
         const std::string& needle = require_string(a.take(0, "sub"), "rfind");
         const size_t at = s.as_string().rfind(needle);
         return Value(at == std::string::npos
                          ? int64_t{-1}
                          : code_point_count(std::string_view(s.as_string()).substr(0, at)));
       }},
      {"count",
       [](const Value& s, CallArgs& a) {
         const std::string& needle = require_string(a.take(0, "sub"), "count");
         if (needle.empty()) return Value(code_point_count(s.as_string()) + 1);
         int64_t count = 0;
         for (size_t at = s.as_string().find(needle); at != std::string::npos;
              at = s.as_string().find(needle, at + needle.size()))
           ++count;
         return Value(count);
       }},
      {"join",
       [](const Value& s, CallArgs& a) {
         std::string out;
         bool first = true;
         for (const Value& item : items_of(a.take(0, "iterable"))) {
           if (!first) out += s.as_string();
           first = false;
           out += require_string(item, "str.join");
           check_built_size(out.size());
         }
         return Value(std::move(out));
       }},
      {"removeprefix",
       [](const Value& s, CallArgs& a) {
         const std::string& prefix = require_string(a.take(0, "prefix"), "removeprefix");
         const std::string& text = s.as_string();
         return Value(text.compare(0, prefix.size(), prefix) == 0 ? text.substr(prefix.size())
                                                                  : text);
       }},
      {"removesuffix",
       [](const Value& s, CallArgs& a) {
         const std::string& suffix = require_string(a.take(0, "suffix"), "removesuffix");
         const std::string& text = s.as_string();
         const bool ends = !suffix.empty() && text.size() >= suffix.size() &&
                           text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
         return Value(ends ? text.substr(0, text.size() - suffix.size()) : text);
       }},
      {"format",
       [](const Value& s, CallArgs& a) { return Value(python_format(s.as_string(), a)); }},
      {"isdigit",
       [](const Value& s, CallArgs&) {
         const std::string& t = s.as_string();
         return Value(!t.empty() && std::all_of(t.begin(), t.end(), ::isdigit));
       }},
      {"isspace",
       [](const Value& s, CallArgs&) {
         return Value(!s.as_string().empty() && python_strip(s.as_string(), std::nullopt).empty());
       }},
      {"isupper",
       [](const Value& s, CallArgs&) {
         return Value(python_upper(s.as_string()) == s.as_string() &&
                      python_lower(s.as_string()) != s.as_string());
       }},
      {"islower",
       [](const Value& s, CallArgs&) {
         return Value(python_lower(s.as_string()) == s.as_string() &&
                      python_upper(s.as_string()) != s.as_string());
       }},
  };
  const auto it = kMethods.find(name);
  if (it == kMethods.end()) return Value::undefined("'str object' has no attribute '" + name + "'");
  return bound(self, name, it->second);
}

Value dict_method(const Value& self, const std::string& name) {
  if (name == "items") {
    return bound(self, name, [](const Value& d, CallArgs&) {
      List pairs;
      for (const auto& [k, v] : d.as_dict().entries)
        pairs.push_back(Value::list({k, v}, Value::Sequence::kTuple));
      return Value::list(std::move(pairs));
    });
  }
  if (name == "keys") {
    return bound(self, name, [](const Value& d, CallArgs&) {
      List keys;
      for (const auto& entry : d.as_dict().entries) keys.emplace_back(entry.first);
      return Value::list(std::move(keys));
    });
  }
  if (name == "values") {
    return bound(self, name, [](const Value& d, CallArgs&) {
      List values;
      for (const auto& entry : d.as_dict().entries) values.push_back(entry.second);
      return Value::list(std::move(values));
    });
  }
  if (name == "get") {
    return bound(self, name, [](const Value& d, CallArgs& a) {
      const Value key = a.take(0, "key");
      const Value fallback = a.take(1, "default");
      const Value* found = d.as_dict().find_key(key);
      return found ? *found : (fallback.is_undefined() ? Value::none() : fallback);
    });
  }
  return Value();
}

bool is_mutating_method(const Value& object, const std::string& name) {
  static const char* kListMutators[] = {"append", "extend", "insert", "pop",
                                        "remove", "clear",  "sort",   "reverse"};
  static const char* kDictMutators[] = {"update", "pop", "popitem", "setdefault", "clear"};
  if (object.is_list()) {
    return std::find(std::begin(kListMutators), std::end(kListMutators), name) !=
           std::end(kListMutators);
  }
  if (object.is_dict() && !object.is_namespace()) {
    return std::find(std::begin(kDictMutators), std::end(kDictMutators), name) !=
           std::end(kDictMutators);
  }
  return false;
}

// ---- filters -----------------------------------------------------------------------------

using FilterFn = std::function<Value(const Value&, CallArgs&)>;

Value to_int(const Value& value, const Value& fallback) {
  if (value.is_int() || value.is_bool()) return Value(value.as_int());
  if (value.is_float()) return Value(static_cast<int64_t>(value.as_number()));
  if (value.is_string()) {
    try {
      size_t used = 0;
      const std::string text(python_strip(value.as_string(), std::nullopt));
      const double parsed = std::stod(text, &used);
      if (used == text.size()) return Value(static_cast<int64_t>(parsed));
    } catch (const std::exception&) {
    }
  }
  return fallback.is_undefined() ? Value(int64_t{0}) : fallback;
}

Value sorted(const Value& value, bool reverse, bool case_sensitive, const Value& attribute) {
  List items = items_of(value);
  const auto key = [&](const Value& item) {
    Value k = attribute.is_undefined() || attribute.is_none()
                  ? item
                  : attribute_path(item, attribute.str());
    if (!case_sensitive && k.is_string()) k = Value(python_lower(k.as_string()));
    return k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return reverse ? less_than(key(b), key(a)) : less_than(key(a), key(b));
  });
  return Value::list(std::move(items));
}

// select/reject/selectattr/rejectattr: items for which the test (or truthiness) holds.
// jinja2's select, reject, selectattr, rejectattr and map yield from a generator, and skip a
// false input ("if value:") instead of iterating it.
Value generator(List items) {
  return Value::list(std::move(items), Value::Sequence::kGenerator);
}

Value select_items(const Value& value, CallArgs& args, bool by_attribute, bool keep_when) {
  size_t next = 0;
  std::string attribute;
  if (by_attribute) attribute = require_string(args.take(next++, "attribute"), "selectattr");
  const Value test = args.positional.size() > next ? args.positional[next] : Value();
  CallArgs test_args;
  for (size_t i = next + 1; i < args.positional.size(); ++i)
    test_args.positional.push_back(args.positional[i]);
  List kept;
  for (const Value& item : value.truthy() ? items_of(value) : List{}) {
    const Value subject = by_attribute ? attribute_path(item, attribute) : item;
    bool passes;
    if (test.is_undefined()) {
      passes = subject.truthy();
    } else {
      CallArgs copy = test_args;
      passes = apply_test(require_string(test, "select"), subject, copy);
    }
    if (passes == keep_when) kept.push_back(item);
  }
  return generator(std::move(kept));
}

std::string indent_text(const std::string& text, const std::string& prefix, bool first,
                        bool blank) {
  std::vector<std::string> lines = python_splitlines(text);
  // splitlines drops a trailing newline; jinja2 indents "text\n" as lines + the trailing "\n".
  const bool trailing_newline = !text.empty() && text.back() == '\n';
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += '\n';
    const bool indent = (i > 0 || first) && (blank || !lines[i].empty());
    if (indent) out += prefix;
    out += lines[i];
    check_built_size(out.size());
  }
  if (trailing_newline) out += '\n';
  return out;
}

// printf-style formatting of Python's str % args for %s %d %i %r %f and %%.
std::string percent_format(const std::string& format, const List& args) {
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out += format[i];
      continue;
    }
    if (++i >= format.size()) type_error("incomplete format");
    const char spec = format[i];
    if (spec == '%') {
      out += '%';
      continue;
    }
    if (next >= args.size()) type_error("not enough arguments for format string");
    const Value& arg = args[next++];
    switch (spec) {
      case 's':
        out += arg.str();
        break;
      case 'r':
        out += arg.repr();
        break;
      case 'd':
      case 'i':
        out += std::to_string(require_int(arg, "%d format"));
        break;
      case 'f': {
        char buffer[64];
        std::snprintf(buffer, sizeof buffer, "%f", arg.as_number());
        out += buffer;
        break;
      }
      default:
        type_error(std::string("unsupported format character '") + spec + "'");
    }
  }
  if (next < args.size()) type_error("not all arguments converted during string formatting");
  return out;
}

const std::unordered_map<std::string, FilterFn>& filters() {
  static const std::unordered_map<std::string, FilterFn> kFilters = [] {
    std::unordered_map<std::string, FilterFn> f;
    f["abs"] = [](const Value& v, CallArgs&) {
      require_defined(v);
      return v.is_float() ? Value(std::fabs(v.as_number()))
                          : Value(static_cast<int64_t>(std::llabs(require_int(v, "abs"))));
    };
    f["capitalize"] = [](const Value& v, CallArgs&) { return Value(python_capitalize(v.str())); };
    f["count"] = f["length"] = [](const Value& v, CallArgs&) {
      if (v.is_string()) return Value(code_point_count(v.as_string()));
      if (v.is_list() && !v.is_generator()) return Value(static_cast<int64_t>(v.as_list().size()));
      if (v.is_dict()) return Value(static_cast<int64_t>(v.as_dict().entries.size()));
      if (v.is_undefined()) return Value(int64_t{0});
      type_error("object of type '" + v.type_name() + "' has no len()");
    };
    f["default"] = f["d"] = [](const Value& v, CallArgs& a) {
      const Value fallback = a.take(0, "default_value");
      const bool boolean = a.take(1, "boolean").truthy();
      if (v.is_undefined() || (boolean && !v.truthy()))
        return fallback.is_undefined() ? Value("") : fallback;
      return v;
    };
    f["dictsort"] = [](const Value& v, CallArgs& a) {
      require_defined(v);
      if (!v.is_dict()) type_error("dictsort expects a dict, got " + v.type_name());
      const bool case_sensitive = a.take(0, "case_sensitive").truthy();
      const Value by = a.take(1, "by");
      const bool by_value = by.is_string() && by.as_string() == "value";
      const bool reverse = a.take(2, "reverse").truthy();
      List pairs;
      for (const auto& [k, val] : v.as_dict().entries)
        pairs.push_back(Value::list({k, val}, Value::Sequence::kTuple));
      return sorted(Value::list(std::move(pairs)), reverse, case_sensitive,
                    Value(by_value ? "1" : "0"));
    };
    f["escape"] = f["e"] = [](const Value& v, CallArgs&) {
      return v.is_markup() ? v : Value::markup(html_escape(v.str()));
    };
    f["first"] = [](const Value& v, CallArgs&) {
      List items = items_of(v);
      return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
    };
    f["last"] = [](const Value& v, CallArgs&) {
      if (v.is_generator()) type_error("'generator' object is not reversible");
      List items = items_of(v);
      return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
    };
    f["float"] = [](const Value& v, CallArgs& a) {
      if (v.is_number() || v.is_bool()) return Value(v.as_number());
      if (v.is_string()) {
        try {
          return Value(std::stod(v.as_string()));
        } catch (const std::exception&) {
        }
      }
      const Value fallback = a.take(0, "default");
      return fallback.is_undefined() ? Value(0.0) : fallback;
    };
    f["format"] = [](const Value& v, CallArgs& a) {
      return Value(percent_format(require_string(v, "format"), a.positional));
    };
    f["indent"] = [](const Value& v, CallArgs& a) {
      const Value width = a.take(0, "width");
      const bool first = a.take(1, "first").truthy();
      const bool blank = a.take(2, "blank").truthy();
      const std::string prefix =
          width.is_string()
              ? width.as_string()
              : std::string(
                    static_cast<size_t>(width.is_undefined() ? 4 : require_int(width, "indent")),
                    ' ');
      return Value(indent_text(v.str(), prefix, first, blank));
    };
    f["int"] = [](const Value& v, CallArgs& a) { return to_int(v, a.take(0, "default")); };
    f["items"] = [](const Value& v, CallArgs&) {
      if (v.is_undefined()) return Value::list({});
      if (!v.is_dict()) type_error("items expects a dict, got " + v.type_name());
      List pairs;
      for (const auto& [k, val] : v.as_dict().entries)
        pairs.push_back(Value::list({k, val}, Value::Sequence::kTuple));
      return Value::list(std::move(pairs));
    };
    f["join"] = [](const Value& v, CallArgs& a) {
      const Value separator = a.take(0, "d");
      const Value attribute = a.take(1, "attribute");
      std::string out;
      bool first = true;
      for (const Value& item : items_of(v)) {
        if (!first) out += separator.is_undefined() ? "" : separator.str();
        first = false;
        out += (attribute.is_undefined() ? item : attribute_path(item, attribute.str())).str();
        check_built_size(out.size());
      }
      return Value(std::move(out));
    };
    f["list"] = [](const Value& v, CallArgs&) { return Value::list(items_of(v)); };
    f["lower"] = [](const Value& v, CallArgs&) { return Value(python_lower(v.str())); };
    f["upper"] = [](const Value& v, CallArgs&) { return Value(python_upper(v.str())); };
    f["title"] = [](const Value& v, CallArgs&) { return Value(python_title(v.str())); };
    f["map"] = [](const Value& v, CallArgs& a) {
      const Value attribute = a.take(99, "attribute");
      const Value fallback = a.take(99, "default");
      List mapped;
      for (const Value& item : v.truthy() ? items_of(v) : List{}) {
        if (!attribute.is_undefined()) {
          Value got = attribute_path(item, attribute.str());
          mapped.push_back(got.is_undefined() && !fallback.is_undefined() ? fallback : got);
        } else {
          if (a.positional.empty()) type_error("map requires a filter name or attribute=");
          CallArgs rest;
          rest.positional.assign(a.positional.begin() + 1, a.positional.end());
          mapped.push_back(apply_filter(require_string(a.positional[0], "map"), item, rest));
        }
      }
      return generator(std::move(mapped));
    };
    f["max"] = [](const Value& v, CallArgs&) {
      List items = items_of(v);
      if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
      return *std::max_element(items.begin(), items.end(), less_than);
    };
    f["min"] = [](const Value& v, CallArgs&) {
      List items = items_of(v);
      if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
      return *std::min_element(items.begin(), items.end(), less_than);
    };
    f["reject"] = [](const Value& v, CallArgs& a) { return select_items(v, a, false, false); };
    f["rejectattr"] = [](const Value& v, CallArgs& a) { return select_items(v, a, true, false); };
    f["select"] = [](const Value& v, CallArgs& a) { return select_items(v, a, false, true); };
    f["selectattr"] = [](const Value& v, CallArgs& a) { return select_items(v, a, true, true); };
    f["replace"] = [](const Value& v, CallArgs& a) {
      const std::string text = v.str();
      const std::string old_text = a.take(0, "old").str();
      const std::string new_text = a.take(1, "new").str();
      const Value count_value = a.take(2, "count");
      int64_t remaining = count_value.is_undefined() || count_value.is_none()
                              ? -1
                              : require_int(count_value, "replace");
      std::string out;
      if (old_text.empty()) {  // Python inserts between every code point
        const std::vector<char32_t> code_points = decode_code_points(text);
        for (char32_t c : code_points) {
          if (remaining != 0) {
            out += new_text;
            --remaining;
          }
          append_utf8(c, out);
          check_built_size(out.size());
        }
        if (remaining != 0) out += new_text;
        return Value(std::move(out));
      }
      size_t start = 0;
      while (remaining != 0) {
        const size_t at = text.find(old_text, start);
        if (at == std::string::npos) break;
        out.append(text, start, at - start);
        out += new_text;
        check_built_size(out.size());
        start = at + old_text.size();
        --remaining;
      }
      out.append(text, start, std::string::npos);
      return Value(std::move(out));
    };
    f["reverse"] = [](const Value& v, CallArgs&) {
      if (v.is_string()) {
        std::vector<char32_t> code_points = decode_code_points(v.as_string());
        std::reverse(code_points.begin(), code_points.end());
        return Value(encode_code_points(code_points));
      }
      List items = items_of(v);
      std::reverse(items.begin(), items.end());
      return Value::list(std::move(items));
    };
    f["round"] = [](const Value& v, CallArgs& a) {
      const Value precision_value = a.take(0, "precision");
      const int64_t precision =
          precision_value.is_undefined() ? 0 : require_int(precision_value, "round");
      const std::string method =
          a.take(1, "method").is_undefined() ? "common" : a.take(1, "method").str();
      const double scale = std::pow(10.0, static_cast<double>(precision));
      const double x = v.as_number() * scale;
      const double rounded = method == "floor"  ? std::floor(x)
                             : method == "ceil" ? std::ceil(x)
                                                : std::round(x);
      return Value(rounded / scale);
    };
    f["safe"] = [](const Value& v, CallArgs&) {
      return v.is_markup() ? v : Value::markup(v.str());
    };
    f["string"] = [](const Value& v, CallArgs&) { return v.is_string() ? v : Value(v.str()); };
    f["sort"] = [](const Value& v, CallArgs& a) {
      const bool reverse = a.take(0, "reverse").truthy();
      const bool case_sensitive = a.take(1, "case_sensitive").truthy();
      return sorted(v, reverse, case_sensitive, a.take(2, "attribute"));
    };
    f["sum"] = [](const Value& v, CallArgs& a) {
      const Value attribute = a.take(0, "attribute");
      const Value start = a.take(1, "start");
      Value total = start.is_undefined() ? Value(int64_t{0}) : start;
      for (const Value& item : items_of(v)) {
        const Value x = attribute.is_undefined() ? item : attribute_path(item, attribute.str());
        total = total.is_float() || x.is_float() ? Value(total.as_number() + x.as_number())
                                                 : Value(total.as_int() + require_int(x, "sum"));
      }
      return total;
    };
    f["tojson"] = [](const Value& v, CallArgs& a) {
      // transformers' tojson: json.dumps(x, ensure_ascii=False, indent=indent,
      // separators=separators, sort_keys=sort_keys).
      Value::JsonFormat format;
      const Value ensure_ascii = a.take(0, "ensure_ascii");
      format.ensure_ascii = ensure_ascii.is_undefined() ? false : ensure_ascii.truthy();
      const Value indent = a.take(1, "indent");
      if (!indent.is_undefined() && !indent.is_none()) {
        format.indent = static_cast<int>(require_int(indent, "tojson indent"));
        format.item_separator = ",";
      }
      const Value separators = a.take(2, "separators");
      if (separators.is_list() && separators.as_list().size() == 2) {
        format.item_separator = separators.as_list()[0].str();
        format.key_separator = separators.as_list()[1].str();
      }
      format.sort_keys = a.take(3, "sort_keys").truthy();
      format.max_bytes = max_built_size;
      return Value(v.to_json(format));
    };
    f["trim"] = [](const Value& v, CallArgs& a) {
      return Value(std::string(python_strip(v.str(), optional_string(a.take(0, "chars"), "trim"))));
    };
    f["unique"] = [](const Value& v, CallArgs&) {
      List unique;
      for (const Value& item : items_of(v)) {
        if (std::find(unique.begin(), unique.end(), item) == unique.end()) unique.push_back(item);
      }
      return Value::list(std::move(unique));
    };
    f["wordcount"] = [](const Value& v, CallArgs&) {
      return Value(static_cast<int64_t>(python_split(v.str(), std::nullopt, -1).size()));
    };
    f["attr"] = [](const Value& v, CallArgs& a) {
      return get_attribute(v, a.take(0, "name").str());
    };
    return f;
  }();
  return kFilters;
}

// ---- tests -------------------------------------------------------------------------------

using TestFn = std::function<bool(const Value&, CallArgs&)>;

const std::unordered_map<std::string, TestFn>& tests() {
  static const std::unordered_map<std::string, TestFn> kTests = [] {
    std::unordered_map<std::string, TestFn> t;
    t["defined"] = [](const Value& v, CallArgs&) { return !v.is_undefined(); };
    t["undefined"] = [](const Value& v, CallArgs&) { return v.is_undefined(); };
    t["none"] = [](const Value& v, CallArgs&) { return v.is_none(); };
    t["boolean"] = [](const Value& v, CallArgs&) { return v.is_bool(); };
    t["true"] = [](const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); };
    t["false"] = [](const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); };
    t["integer"] = [](const Value& v, CallArgs&) { return v.is_int(); };
    t["float"] = [](const Value& v, CallArgs&) { return v.is_float(); };
    t["number"] = [](const Value& v, CallArgs&) { return v.is_number() || v.is_bool(); };
    t["string"] = [](const Value& v, CallArgs&) { return v.is_string(); };
    t["mapping"] = [](const Value& v, CallArgs&) { return v.is_dict(); };
    t["sequence"] = [](const Value& v, CallArgs&) {
      return v.is_list() || v.is_string() || v.is_dict();
    };
    t["iterable"] = [](const Value& v, CallArgs&) {
      return v.is_list() || v.is_string() || v.is_dict();
    };
    t["callable"] = [](const Value& v, CallArgs&) { return v.is_function(); };
    t["odd"] = [](const Value& v, CallArgs&) { return require_int(v, "odd") % 2 != 0; };
    t["even"] = [](const Value& v, CallArgs&) { return require_int(v, "even") % 2 == 0; };
    t["divisibleby"] = [](const Value& v, CallArgs& a) {
      const int64_t divisor = require_int(a.take(0, "num"), "divisibleby");
      return divisor != 0 && require_int(v, "divisibleby") % divisor == 0;
    };
    t["eq"] = t["equalto"] =
        t["=="] = [](const Value& v, CallArgs& a) { return v == a.take(0, "other"); };
    t["ne"] = t["!="] = [](const Value& v, CallArgs& a) { return v != a.take(0, "other"); };
    t["lt"] = t["lessthan"] =
        t["<"] = [](const Value& v, CallArgs& a) { return less_than(v, a.take(0, "other")); };
    t["gt"] = t["greaterthan"] =
        t[">"] = [](const Value& v, CallArgs& a) { return less_than(a.take(0, "other"), v); };
    t["le"] =
        t["<="] = [](const Value& v, CallArgs& a) { return !less_than(a.take(0, "other"), v); };
    t["ge"] =
        t[">="] = [](const Value& v, CallArgs& a) { return !less_than(v, a.take(0, "other")); };
    t["sameas"] = [](const Value& v, CallArgs& a) {
      const Value other = a.take(0, "other");
      if (v.is_none() || v.is_bool() || v.is_undefined())
        return v.kind() == other.kind() && v == other;
      return false;
    };
    t["in"] = [](const Value& v, CallArgs& a) {
      const Value container = a.take(0, "seq");
      if (container.is_string())
        return v.is_string() && container.as_string().find(v.as_string()) != std::string::npos;
      if (container.is_dict()) return container.as_dict().find_key(v) != nullptr;
      for (const Value& item : items_of(container)) {
        if (item == v) return true;
      }
      return false;
    };
    t["lower"] = [](const Value& v, CallArgs&) {
      return v.is_string() && python_lower(v.as_string()) == v.as_string();
    };
    t["upper"] = [](const Value& v, CallArgs&) {
      return v.is_string() && python_upper(v.as_string()) == v.as_string();
    };
    return t;
  }();
  return kTests;
}

}  // namespace

BuiltValueLimit::BuiltValueLimit(size_t max_bytes) : previous_(max_built_size) {
  max_built_size = max_bytes;
}

BuiltValueLimit::~BuiltValueLimit() {
  max_built_size = previous_;
}

void check_built_size(size_t size) {
  if (size > max_built_size) {
    throw TemplateError("the template built a value of more than " +
                        std::to_string(max_built_size) + " bytes or items");
  }
}

Value apply_filter(const std::string& name, const Value& value, CallArgs& args) {
  const auto it = filters().find(name);
  if (it == filters().end()) throw TemplateError("no filter named '" + name + "'");
  return it->second(value, args);
}

bool apply_test(const std::string& name, const Value& value, CallArgs& args) {
  const auto it = tests().find(name);
  if (it == tests().end()) throw TemplateError("no test named '" + name + "'");
  return it->second(value, args);
}

Value get_attribute(const Value& object, const std::string& name) {
  if (object.is_undefined()) throw TemplateError(object.undefined_hint());
  if (is_mutating_method(object, name)) {
    throw TemplateError("access to attribute '" + name + "' of '" + object.type_name() +
                        "' object is unsafe.");
  }
  if (object.is_string()) return string_method(object, name);
  if (object.is_dict()) {
    if (!object.is_namespace()) {
      Value method = dict_method(object, name);
      if (!method.is_undefined()) return method;
    }
    const Value* found = object.as_dict().find(name);
    if (found != nullptr) return *found;
    return Value::undefined("'" + std::string(object.is_namespace() ? "Namespace" : "dict") +
                            " object' has no attribute '" + name + "'");
  }
  return Value::undefined("'" + object.type_name() + " object' has no attribute '" + name + "'");
}

Value get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) throw TemplateError(object.undefined_hint());
  if (object.is_dict()) {
    const Value* found = object.as_dict().find_key(key);
    if (found != nullptr) return *found;
    if (key.is_string() && !object.is_namespace()) {
      Value method = dict_method(object, key.as_string());
      if (!method.is_undefined()) return method;
    }
    return Value::undefined("'dict object' has no attribute " + key.repr());
  }
  if ((object.is_list() || object.is_string()) && (key.is_int() || key.is_bool())) {
    if (object.is_string()) {
      const std::vector<char32_t> code_points = decode_code_points(object.as_string());
      int64_t index = key.as_int();
      if (index < 0) index += static_cast<int64_t>(code_points.size());
      if (index < 0 || index >= static_cast<int64_t>(code_points.size())) {
        return Value::undefined("string index out of range");
      }
      std::string out;
      append_utf8(code_points[static_cast<size_t>(index)], out);
      return Value(std::move(out));
    }
    const List& items = object.as_list();
    int64_t index = key.as_int();
    if (index < 0) index += static_cast<int64_t>(items.size());
    if (index < 0 || index >= static_cast<int64_t>(items.size())) {
      return Value::undefined("list object has no element " + std::to_string(key.as_int()));
    }
    return items[static_cast<size_t>(index)];
  }
  if (key.is_string()) return get_attribute(object, key.as_string());
  return Value::undefined("'" + object.type_name() + " object' has no attribute " + key.repr());
}

Value get_slice(const Value& object, const Value& start_value, const Value& stop_value,
                const Value& step_value) {
  require_defined(object);
  const bool is_string = object.is_string();
  if (!is_string && !object.is_list())
    type_error("'" + object.type_name() + "' object is not subscriptable");
  const std::vector<char32_t> code_points =
      is_string ? decode_code_points(object.as_string()) : std::vector<char32_t>{};
  const int64_t length = is_string ? static_cast<int64_t>(code_points.size())
                                   : static_cast<int64_t>(object.as_list().size());
  const auto given = [](const Value& v) { return !v.is_undefined() && !v.is_none(); };
  const int64_t step = given(step_value) ? require_int(step_value, "slice") : 1;
  if (step == 0) type_error("slice step cannot be zero");
  // Python's PySlice_AdjustIndices.
  const auto adjust = [&](const Value& v, int64_t fallback) {
    if (!given(v)) return fallback;
    int64_t i = require_int(v, "slice");
    if (i < 0) {
      i += length;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= length) {
      i = step < 0 ? length - 1 : length;
    }
    return i;
  };
  const int64_t start = adjust(start_value, step < 0 ? length - 1 : 0);
  const int64_t stop = adjust(stop_value, step < 0 ? -1 : length);
  std::vector<int64_t> indices;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) indices.push_back(i);
  if (is_string) {
    std::string out;
    for (int64_t i : indices) append_utf8(code_points[static_cast<size_t>(i)], out);
    return Value(std::move(out));
  }
  List out;
  for (int64_t i : indices) out.push_back(object.as_list()[static_cast<size_t>(i)]);
  return Value::list(std::move(out));
}

List iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return value.as_list();
    case Value::Kind::kDict: {
      List keys;
      for (const auto& entry : value.as_dict().entries) keys.emplace_back(entry.first);
      return keys;
    }
    case Value::Kind::kString: {
      List characters;
      for (char32_t c : decode_code_points(value.as_string())) {
        std::string s;
        append_utf8(c, s);
        characters.emplace_back(std::move(s));
      }
      return characters;
    }
    default:
      type_error("'" + value.type_name() + "' object is not iterable");
  }
}

Dict make_globals(std::function<std::time_t()> clock) {
  Dict globals;
  globals.set("range", Value::function("range", [](CallArgs& a) {
                if (a.positional.empty() || a.positional.size() > 3)
                  type_error("range expected 1 to 3 arguments");
                int64_t start = 0, stop, step = 1;
                if (a.positional.size() == 1) {
                  stop = require_int(a.positional[0], "range");
                } else {
                  start = require_int(a.positional[0], "range");
                  stop = require_int(a.positional[1], "range");
                  if (a.positional.size() == 3) step = require_int(a.positional[2], "range");
                }
                if (step == 0) type_error("range() arg 3 must not be zero");
                List items;
                for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
                  items.emplace_back(i);
                  if (items.size() > 1000000) type_error("range too big");
                }
                return Value::list(std::move(items));
              }));
  const auto keyword_dict = [](CallArgs& a) {
    Dict entries;
    for (const Value& positional : a.positional) {
      if (!positional.is_dict()) type_error("dict() positional argument must be a mapping");
      for (const auto& [k, v] : positional.as_dict().entries) entries.set_key(k, v);
    }
    for (auto& [k, v] : a.keyword) entries.set(k, v);
    return entries;
  };
  globals.set("namespace", Value::function("namespace", [keyword_dict](CallArgs& a) {
                return Value::namespace_object(keyword_dict(a));
              }));
  globals.set("dict", Value::function("dict", [keyword_dict](CallArgs& a) {
                return Value::dict(keyword_dict(a));
              }));
  globals.set("raise_exception", Value::function("raise_exception", [](CallArgs& a) -> Value {
                throw TemplateError(a.take(0, "message").str());
              }));
  globals.set("strftime_now", Value::function("strftime_now", [clock](CallArgs& a) {
                const std::string& format = require_string(a.take(0, "format"), "strftime_now");
                const std::time_t now = clock ? clock() : std::time(nullptr);
                std::tm local{};
                localtime_r(&now, &local);
                char buffer[256];
                const size_t length = std::strftime(buffer, sizeof buffer, format.c_str(), &local);
                return Value(std::string(buffer, length));
              }));
  return globals;
}

}  // namespace sparkd::jinja
