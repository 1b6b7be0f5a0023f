#include "engine/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/tokenizer/error.h"

namespace sparkd::tokenizer {

namespace {

pcre2_code* as_code(void* p) {
  return static_cast<pcre2_code*>(p);
}

// One match-data block per thread: matching allocates nothing on the hot path, and
// concurrent callers never share state. One ovector pair suffices: we only need the
// overall match, and PCRE2 still reports it when groups do not fit.
pcre2_match_data* thread_match_data() {
  struct Holder {
    pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
    ~Holder() { pcre2_match_data_free(data); }
  };
  thread_local Holder holder;
  return holder.data;
}

// Unicode White_Space, Oniguruma's \s. PCRE2's own \s under UCP also takes U+180E.
constexpr const char* kSpaceChars = "\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}";
// Oniguruma's Unicode \w: Letter, Mark, Decimal_Number, Connector_Punctuation. PCRE2
// 10.42's \w is \p{L}\p{N}_ (no marks, all numbers).
constexpr const char* kWordChars = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";
// Oniguruma's \h is a hexadecimal digit; PCRE2's is horizontal space.
constexpr const char* kHexChars = "0-9a-fA-F";

}  // namespace

std::string translate_oniguruma(std::string_view expression) {
  std::string out;
  out.reserve(expression.size() + 32);
  bool in_class = false;
  for (size_t i = 0; i < expression.size(); ++i) {
    char c = expression[i];
    if (c == '\\' && i + 1 < expression.size()) {
      char next = expression[++i];
      const char* chars = nullptr;
      bool negated = false;
      switch (next) {
        case 's':
          chars = kSpaceChars;
          break;
        case 'S':
          chars = kSpaceChars;
          negated = true;
          break;
        case 'w':
          chars = kWordChars;
          break;
        case 'W':
          chars = kWordChars;
          negated = true;
          break;
        case 'h':
          chars = kHexChars;
          break;
        case 'H':
          chars = kHexChars;
          negated = true;
          break;
        default:
          break;
      }
      if (chars == nullptr || (in_class && negated)) {
        // Other escapes mean the same in both dialects. A negated shorthand inside a class
        // cannot be spelled as a set union; PCRE2's own one differs only on rare chars.
        out.push_back('\\');
        out.push_back(next);
      } else if (in_class) {
        out += chars;
      } else {
        out += negated ? "[^" : "[";
        out += chars;
        out.push_back(']');
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < expression.size() && expression[i + 1] == '^') out.push_back(expression[++i]);
      if (i + 1 < expression.size() && expression[i + 1] == ']') out.push_back(expression[++i]);
      continue;
    }
    if (in_class && c == '[' && i + 1 < expression.size() && expression[i + 1] == ':') {
      size_t close = expression.find(":]", i + 2);  // POSIX class such as [:alpha:]
      if (close != std::string_view::npos) {
        out.append(expression.substr(i, close + 2 - i));
        i = close + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

Regex::Regex(const std::string& expression) : expression_(expression) {
  const std::string pcre2_expression = translate_oniguruma(expression);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre2_expression.data()), pcre2_expression.size(),
                    PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    throw ConfigError("invalid regex /" + expression + "/ at offset " +
                      std::to_string(error_offset) + ": " + reinterpret_cast<const char*>(message));
  }
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() {
  pcre2_code_free(as_code(code_));
}

bool Regex::search(std::string_view text, size_t start, size_t* match_begin,
                   size_t* match_end) const {
  pcre2_match_data* data = thread_match_data();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  // The pipeline only ever holds valid UTF-8 (inputs are sanitized on entry).
  int rc = jit_ ? pcre2_jit_match(as_code(code_), subject, text.size(), start, 0, data, nullptr)
                : pcre2_match(as_code(code_), subject, text.size(), start, PCRE2_NO_UTF_CHECK, data,
                              nullptr);
  if (rc < 0) {
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(rc, message, sizeof(message));
    throw EncodeError("regex /" + expression_ +
                      "/ failed: " + reinterpret_cast<const char*>(message));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
  *match_begin = ovector[0];
  *match_end = ovector[1];
  return true;
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  for_each_match(text, [&](size_t begin, size_t end) { matches.emplace_back(begin, end); });
  return matches;
}

}  // namespace sparkd::tokenizer
