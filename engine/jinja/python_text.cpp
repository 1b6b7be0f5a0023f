#include "engine/jinja/python_text.h"

#include <utf8proc.h>

#include "engine/tokenizer/unicode.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace sparkd::jinja {
namespace {

// An invalid byte b decodes to U+DC00 + b (Python's surrogateescape), and encodes back to b.
constexpr char32_t kEscapedByteBase = 0xDC00;

bool is_escaped_byte(char32_t code_point) {
  return code_point >= kEscapedByteBase + 0x80 && code_point <= kEscapedByteBase + 0xFF;
}

// Decodes the code point at text[pos]; returns its length in bytes.
size_t decode_at(std::string_view text, size_t pos, char32_t& code_point) {
  utf8proc_int32_t decoded = -1;
  const utf8proc_ssize_t length =
      utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + pos),
                       static_cast<utf8proc_ssize_t>(text.size() - pos), &decoded);
  if (length <= 0 || decoded < 0) {
    code_point = kEscapedByteBase + static_cast<unsigned char>(text[pos]);
    return 1;
  }
  code_point = static_cast<char32_t>(decoded);
  return static_cast<size_t>(length);
}

template <typename Map>
std::string map_code_points(std::string_view text, Map&& map) {
  std::string out;
  out.reserve(text.size());
  char32_t previous = 0;
  bool first = true;
  for (size_t pos = 0; pos < text.size();) {
    char32_t code_point;
    pos += decode_at(text, pos, code_point);
    append_utf8(is_escaped_byte(code_point) ? code_point : map(code_point, previous, first), out);
    previous = code_point;
    first = false;
  }
  return out;
}

char32_t upper(char32_t c) {
  return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c)));
}
char32_t lower(char32_t c) {
  return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
}
bool is_letter(char32_t c) {
  const utf8proc_category_t category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO;
}

bool in_chars(char32_t c, const std::vector<char32_t>& chars) {
  for (char32_t x : chars) {
    if (x == c) return true;
  }
  return false;
}

}  // namespace

bool is_python_space(char32_t code_point) {
  // Unicode White_Space, plus the information separators U+001C..U+001F (bidirectional class
  // B or S, which str.isspace() counts and White_Space does not).
  return tokenizer::is_whitespace(code_point) || (code_point >= 0x1C && code_point <= 0x1F);
}

void append_utf8(char32_t code_point, std::string& out) {
  if (is_escaped_byte(code_point)) {
    out += static_cast<char>(code_point - kEscapedByteBase);
  } else if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

std::vector<char32_t> decode_code_points(std::string_view text) {
  std::vector<char32_t> code_points;
  code_points.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    char32_t code_point;
    pos += decode_at(text, pos, code_point);
    code_points.push_back(code_point);
  }
  return code_points;
}

std::string encode_code_points(const std::vector<char32_t>& code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t c : code_points) append_utf8(c, out);
  return out;
}

int64_t code_point_count(std::string_view text) {
  int64_t count = 0;
  for (size_t pos = 0; pos < text.size(); ++count) {
    char32_t code_point;
    pos += decode_at(text, pos, code_point);
  }
  return count;
}

std::string_view python_strip(std::string_view text, const std::optional<std::string>& chars,
                              bool left, bool right) {
  const std::vector<char32_t> strip_set =
      chars ? decode_code_points(*chars) : std::vector<char32_t>{};
  const auto strips = [&](char32_t c) {
    return chars ? in_chars(c, strip_set) : is_python_space(c);
  };
  size_t begin = 0;
  if (left) {
    while (begin < text.size()) {
      char32_t c;
      const size_t length = decode_at(text, begin, c);
      if (!strips(c)) break;
      begin += length;
    }
  }
  size_t end = text.size();
  if (right) {
    while (end > begin) {
      // Step back to the lead byte of the last code point (at most 3 continuation bytes).
      size_t lead = end - 1;
      while (lead > begin && end - lead < 4 &&
             (static_cast<unsigned char>(text[lead]) & 0xC0) == 0x80) {
        --lead;
      }
      char32_t c;
      if (lead + decode_at(text, lead, c) != end || !strips(c)) break;
      end = lead;
    }
  }
  return text.substr(begin, end - begin);
}

std::vector<std::string> python_split(std::string_view text,
                                      const std::optional<std::string>& separator,
                                      int64_t max_splits, bool from_right) {
  std::vector<std::string> parts;
  if (separator) {
    // Splitting from the right with a limit differs from the left only in where it stops.
    if (!from_right || max_splits < 0) {
      size_t start = 0;
      while (max_splits < 0 || static_cast<int64_t>(parts.size()) < max_splits) {
        const size_t found = text.find(*separator, start);
        if (found == std::string_view::npos) break;
        parts.emplace_back(text.substr(start, found - start));
        start = found + separator->size();
      }
      parts.emplace_back(text.substr(start));
      return parts;
    }
    size_t end = text.size();
    std::vector<std::string> reversed;
    while (static_cast<int64_t>(reversed.size()) < max_splits) {
      if (end < separator->size()) break;
      const size_t found = text.rfind(*separator, end - separator->size());
      if (found == std::string_view::npos) break;
      reversed.emplace_back(
          text.substr(found + separator->size(), end - found - separator->size()));
      end = found;
    }
    reversed.emplace_back(text.substr(0, end));
    return {reversed.rbegin(), reversed.rend()};
  }
  // Runs of whitespace; a limit leaves the rest (its leading whitespace stripped) as the last part.
  const std::vector<char32_t> code_points = decode_code_points(text);
  const int64_t n = static_cast<int64_t>(code_points.size());
  std::vector<std::pair<int64_t, int64_t>> words;  // [begin, end) in code points
  for (int64_t i = 0; i < n;) {
    while (i < n && is_python_space(code_points[i])) ++i;
    if (i == n) break;
    int64_t j = i;
    while (j < n && !is_python_space(code_points[j])) ++j;
    words.emplace_back(i, j);
    i = j;
  }
  const auto piece = [&](int64_t begin, int64_t end) {
    return encode_code_points({code_points.begin() + begin, code_points.begin() + end});
  };
  if (max_splits < 0 || static_cast<int64_t>(words.size()) <= max_splits + 1) {
    for (const auto& [b, e] : words) parts.push_back(piece(b, e));
    return parts;
  }
  if (!from_right) {
    for (int64_t w = 0; w < max_splits; ++w)
      parts.push_back(piece(words[w].first, words[w].second));
    parts.push_back(piece(words[max_splits].first, words.back().second));
    return parts;
  }
  const size_t rest = words.size() - static_cast<size_t>(max_splits);
  parts.push_back(piece(words.front().first, words[rest - 1].second));
  for (size_t w = rest; w < words.size(); ++w)
    parts.push_back(piece(words[w].first, words[w].second));
  return parts;
}

std::vector<std::string> python_splitlines(std::string_view text) {
  std::vector<std::string> lines;
  const std::vector<char32_t> code_points = decode_code_points(text);
  std::vector<char32_t> line;
  for (size_t i = 0; i < code_points.size(); ++i) {
    const char32_t c = code_points[i];
    const bool breaks = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C ||
                        c == 0x1D || c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!breaks) {
      line.push_back(c);
      continue;
    }
    if (c == '\r' && i + 1 < code_points.size() && code_points[i + 1] == '\n') ++i;
    lines.push_back(encode_code_points(line));
    line.clear();
  }
  if (!line.empty()) lines.push_back(encode_code_points(line));
  return lines;
}

std::string python_upper(std::string_view text) {
  return map_code_points(text, [](char32_t c, char32_t, bool) { return upper(c); });
}

std::string python_lower(std::string_view text) {
  return map_code_points(text, [](char32_t c, char32_t, bool) { return lower(c); });
}

std::string python_capitalize(std::string_view text) {
  return map_code_points(
      text, [](char32_t c, char32_t, bool first) { return first ? upper(c) : lower(c); });
}

std::string python_title(std::string_view text) {
  return map_code_points(text, [](char32_t c, char32_t previous, bool first) {
    return first || !is_letter(previous) ? upper(c) : lower(c);
  });
}

std::string python_string_repr(std::string_view text) {
  const bool has_single = text.find('\'') != std::string_view::npos;
  const bool has_double = text.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t pos = 0; pos < text.size();) {
    char32_t c;
    pos += decode_at(text, pos, c);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0xA0) || is_escaped_byte(c)) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x",
                    static_cast<unsigned>(is_escaped_byte(c) ? c - kEscapedByteBase : c));
      out += escaped;
    } else {
      append_utf8(c, out);
    }
  }
  out += quote;
  return out;
}

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  // The shortest round-trip digits, in scientific form: [-]d[.ddd]e[+-]X.
  char buffer[64];
  const auto result =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  const std::string scientific(buffer, result.ptr);
  const size_t e = scientific.find('e');
  const bool negative = scientific[0] == '-';
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e; ++i) {
    if (scientific[i] != '.') digits += scientific[i];
  }
  const int exponent = std::atoi(scientific.c_str() + e + 1);
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(exponent) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exponent) + 1) + "." +
             digits.substr(static_cast<size_t>(exponent) + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exponent_text[16];
  std::snprintf(exponent_text, sizeof exponent_text, "e%c%02d", exponent < 0 ? '-' : '+',
                std::abs(exponent));
  return out + exponent_text;
}

}  // namespace sparkd::jinja
