#include "engine/tokenizer/unicode.h"

#include <utf8proc.h>

#include <array>

namespace sparkd::tokenizer {

size_t utf8_sequence_length(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

char32_t next_code_point(std::string_view s, size_t* pos) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + *pos;
  size_t remaining = s.size() - *pos;
  unsigned char b0 = p[0];
  if (b0 < 0x80) {
    *pos += 1;
    return b0;
  }
  size_t len = utf8_sequence_length(b0);
  if (len > remaining || len == 1) {  // invalid: never produced after sanitize_utf8
    *pos += 1;
    return 0xFFFD;
  }
  char32_t c = b0 & (0xFF >> (len + 1));
  for (size_t i = 1; i < len; ++i) c = (c << 6) | (p[i] & 0x3F);
  *pos += len;
  return c;
}

void append_utf8(std::string* out, char32_t c) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string to_utf8(char32_t c) {
  std::string s;
  append_utf8(&s, c);
  return s;
}

std::vector<char32_t> to_code_points(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) out.push_back(next_code_point(s, &pos));
  return out;
}

size_t count_code_points(std::string_view s) {
  size_t n = 0;
  for (unsigned char b : s) n += (b & 0xC0) != 0x80;
  return n;
}

namespace {

// Length of the valid UTF-8 sequence at s[pos], or 0 when the bytes there are not one.
// Follows the Unicode "maximal subpart" rules (overlongs, surrogates and values past
// U+10FFFF are invalid), which is what decides how many U+FFFD a lossy decode emits.
size_t valid_sequence_length(std::string_view s, size_t pos, size_t* maximal_subpart) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  unsigned char b0 = p[pos];
  *maximal_subpart = 1;
  if (b0 < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t i = 1; i < len; ++i) {
    if (pos + i >= n) return 0;
    unsigned char b = p[pos + i];
    unsigned char want_lo = i == 1 ? lo : 0x80;
    unsigned char want_hi = i == 1 ? hi : 0xBF;
    if (b < want_lo || b > want_hi) return 0;
    *maximal_subpart = i + 1;
  }
  return len;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t subpart;
    size_t len = valid_sequence_length(s, pos, &subpart);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

std::string sanitize_utf8(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  size_t pos = 0;
  while (pos < s.size()) {
    size_t subpart;
    size_t len = valid_sequence_length(s, pos, &subpart);
    if (len > 0) {
      out.append(s.substr(pos, len));
      pos += len;
    } else {
      out.append("\xEF\xBF\xBD");
      pos += subpart;
    }
  }
  return out;
}

int general_category(char32_t c) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

bool is_whitespace(char32_t c) {
  switch (c) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_alphabetic(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  switch (general_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_NL:
      return true;
    // Other_Alphabetic is not exposed by utf8proc; nearly all of it is spacing marks.
    case UTF8PROC_CATEGORY_MC:
      return true;
    default:
      return false;
  }
}

bool is_numeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  int cat = general_category(c);
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

// Rust regex's Unicode \w: Alphabetic, marks, decimal digits, connector punctuation and
// the two joiners. Alphabetic is letters, letter numbers and Other_Alphabetic; the latter
// is all marks except for the enclosed/squared Latin letters listed here.
bool is_word_char(char32_t c) {
  if (c < 0x80) {
    return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '_';
  }
  switch (general_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return c == 0x200C || c == 0x200D || (c >= 0x24B6 && c <= 0x24E9) ||
             (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
             (c >= 0x1F170 && c <= 0x1F189);
  }
}

bool is_alphanumeric(char32_t c) {
  return is_alphabetic(c) || is_numeric(c);
}

bool is_control(char32_t c) {
  return general_category(c) == UTF8PROC_CATEGORY_CC;
}

bool is_punctuation(char32_t c) {
  switch (general_category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

bool is_mark_nonspacing(char32_t c) {
  return general_category(c) == UTF8PROC_CATEGORY_MN;
}

bool is_digit(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return general_category(c) == UTF8PROC_CATEGORY_ND;
}

bool is_chinese_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

void to_lowercase(char32_t c, std::vector<char32_t>* out) {
  // The one unconditional multi-char lowercase mapping in SpecialCasing.txt.
  if (c == 0x130) {
    out->push_back('i');
    out->push_back(0x307);
    return;
  }
  out->push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
}

void to_uppercase(char32_t c, std::vector<char32_t>* out) {
  // Unconditional multi-char uppercase mappings that occur in real text; the rest of
  // SpecialCasing.txt (Greek with ypogegrammeni, Armenian ligatures) maps char by char.
  switch (c) {
    case 0xDF:
      out->insert(out->end(), {'S', 'S'});
      return;
    case 0xFB00:
      out->insert(out->end(), {'F', 'F'});
      return;
    case 0xFB01:
      out->insert(out->end(), {'F', 'I'});
      return;
    case 0xFB02:
      out->insert(out->end(), {'F', 'L'});
      return;
    case 0xFB03:
      out->insert(out->end(), {'F', 'F', 'I'});
      return;
    case 0xFB04:
      out->insert(out->end(), {'F', 'F', 'L'});
      return;
    case 0xFB05:
    case 0xFB06:
      out->insert(out->end(), {'S', 'T'});
      return;
    case 0x149:
      out->insert(out->end(), {0x2BC, 'N'});
      return;
    default:
      out->push_back(static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))));
  }
}

namespace {

struct ByteLevelTables {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int, 512> char_to_byte;  // every table char is < U+0144

  ByteLevelTables() {
    char_to_byte.fill(-1);
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      char32_t c = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      byte_to_utf8[b] = to_utf8(c);
      char_to_byte[c] = b;
    }
  }
};

const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables tables;
  return tables;
}

}  // namespace

const std::string& byte_to_unicode_utf8(unsigned char b) {
  return byte_level_tables().byte_to_utf8[b];
}

int unicode_to_byte(char32_t c) {
  if (c >= 512) return -1;
  return byte_level_tables().char_to_byte[c];
}

}  // namespace sparkd::tokenizer
