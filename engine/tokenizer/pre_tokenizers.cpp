// Pre-tokenizers of Hugging Face tokenizers, rebuilt on PreTokenizedString.
//
// Each pre-tokenizer is immutable after construction and safe to share between threads.
// The fixed splitting rules (GPT-2's regex, Whitespace's `\w+|[^\w\s]+`, BERT's
// whitespace-and-punctuation split) are hand-written scanners that produce the same pieces
// as the reference's regex engines: that avoids a regex per call on the hot path and pins
// the character classes to the engines the reference uses (Oniguruma for GPT-2, Rust's
// regex crate for Whitespace), whose \s and \w differ from PCRE2's.
#include "engine/tokenizer/pre_tokenizers.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tokenizer/config_reader.h"
#include "engine/tokenizer/error.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {
namespace {

using nlohmann::json;

constexpr const char* kSupportedTypes =
    "BertPreTokenizer, ByteLevel, CharDelimiterSplit, Metaspace, Whitespace, Sequence, Split, "
    "Punctuation, WhitespaceSplit, Digits, UnicodeScripts, FixedLength";

// Split's and Punctuation's "behavior" (SplitDelimiterBehavior in the reference).
SplitBehavior parse_behavior(const ConfigReader& reader, const json& value) {
  constexpr SplitBehavior kBehaviors[] = {
      SplitBehavior::kRemoved, SplitBehavior::kIsolated, SplitBehavior::kMergedWithPrevious,
      SplitBehavior::kMergedWithNext, SplitBehavior::kContiguous};
  return kBehaviors[reader.one_of(
      value, "behavior",
      {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"})];
}

// Appends text[begin, end) to `out` unless it is empty. Pieces are always slices, even
// when one covers the whole split: slicing re-derives the original range, which is what
// later offsets and Metaspace's "first" scheme see.
void push_slice(const NormalizedString& text, size_t begin, size_t end,
                std::vector<NormalizedString>* out) {
  if (begin == end) return;
  std::optional<NormalizedString> piece = text.slice(begin, end);
  if (piece) out->push_back(std::move(*piece));
}

// Rust's char::is_ascii_punctuation or Unicode P*: what BERT and Punctuation split on.
bool is_bert_punctuation(char32_t c) {
  if (c < 0x80) {
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
           (c >= '{' && c <= '~');
  }
  return is_punctuation(c);
}

// ---------------------------------------------------------------------------------------
// BertPreTokenizer: drop whitespace, isolate each punctuation char.
// ---------------------------------------------------------------------------------------

class BertPreTokenizer final : public PreTokenizer {
 public:
  void pre_tokenize(PreTokenizedString& text) const override {
    text.split_normalized([](size_t, NormalizedString&& normalized) {
      std::vector<NormalizedString> pieces;
      const std::string& s = normalized.get();
      size_t word_begin = 0;
      size_t pos = 0;
      while (pos < s.size()) {
        const size_t begin = pos;
        const char32_t c = next_code_point(s, &pos);
        if (is_whitespace(c)) {
          push_slice(normalized, word_begin, begin, &pieces);
          word_begin = pos;
        } else if (is_bert_punctuation(c)) {
          push_slice(normalized, word_begin, begin, &pieces);
          push_slice(normalized, begin, pos, &pieces);
          word_begin = pos;
        }
      }
      push_slice(normalized, word_begin, s.size(), &pieces);
      return pieces;
    });
  }
};

// ---------------------------------------------------------------------------------------
// ByteLevel: GPT-2's split, then every byte becomes its printable stand-in char.
// ---------------------------------------------------------------------------------------

enum class CharKind : uint8_t { kLetter, kNumber, kSpace, kOther };

// Classes of GPT-2's pattern as Oniguruma reads it: \p{L}, \p{N}, and \s as the Unicode
// White_Space property (which, unlike Python's str.isspace, leaves out U+001C..U+001F and,
// unlike PCRE2, leaves out U+180E).
CharKind gpt2_kind(char32_t c) {
  if (c < 0x80) {
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return CharKind::kLetter;
    if (c >= '0' && c <= '9') return CharKind::kNumber;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return CharKind::kSpace;
    return CharKind::kOther;
  }
  if (is_whitespace(c)) return CharKind::kSpace;
  switch (general_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharKind::kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharKind::kNumber;
    default:
      return CharKind::kOther;
  }
}

// Length of the contraction ('s 't 're 've 'm 'll 'd, case-sensitive) at s[pos], or 0.
size_t contraction_length(std::string_view s, size_t pos) {
  if (s[pos] != '\'' || pos + 1 >= s.size()) return 0;
  const char a = s[pos + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (pos + 2 >= s.size()) return 0;
  const char b = s[pos + 2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// Calls emit(begin, end) for each match of
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// in order. Some alternative matches at every position, so the matches tile `s`.
template <typename Emit>
void scan_gpt2(std::string_view s, Emit&& emit) {
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    if (const size_t n = contraction_length(s, pos)) {
      emit(start, start + n);
      pos = start + n;
      continue;
    }
    size_t after = pos;
    const char32_t c = next_code_point(s, &after);
    CharKind kind = gpt2_kind(c);
    size_t run_from = after;  // where the \p{L}+ / \p{N}+ / [^...]+ run continues
    if (c == ' ' && after < s.size()) {
      // " ?" lets one leading space join a following letter/number/other run.
      size_t next = after;
      const CharKind next_kind = gpt2_kind(next_code_point(s, &next));
      if (next_kind != CharKind::kSpace) {
        kind = next_kind;
        run_from = next;
      }
    }
    if (kind != CharKind::kSpace) {
      size_t end = run_from;
      while (end < s.size()) {
        size_t next = end;
        if (gpt2_kind(next_code_point(s, &next)) != kind) break;
        end = next;
      }
      emit(start, end);
      pos = end;
      continue;
    }
    // A whitespace run. \s+(?!\S) takes all of it at the end of the text; before a
    // non-space it backs off one char so that char can prefix the next word, unless the
    // run is a single char, which \s+ then takes alone.
    size_t end = after;
    size_t last_char = start;
    while (end < s.size()) {
      size_t next = end;
      if (gpt2_kind(next_code_point(s, &next)) != CharKind::kSpace) break;
      last_char = end;
      end = next;
    }
    if (end < s.size() && last_char > start) end = last_char;
    emit(start, end);
    pos = end;
  }
}

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {
    for (int b = 0; b < 256; ++b) {
      const std::string& utf8 = byte_to_unicode_utf8(static_cast<unsigned char>(b));
      size_t pos = 0;
      table_[static_cast<size_t>(b)] = next_code_point(utf8, &pos);
    }
  }

  void pre_tokenize(PreTokenizedString& text) const override {
    text.split_normalized([this](size_t, NormalizedString&& normalized) {
      // Every split gets the prefix space, not just the first one of the input.
      if (add_prefix_space_ && !normalized.empty() && normalized.get()[0] != ' ') {
        normalized.prepend(" ");
      }
      std::vector<NormalizedString> pieces;
      if (!use_regex_) {
        pieces.push_back(std::move(normalized));
        return pieces;
      }
      scan_gpt2(normalized.get(),
                [&](size_t begin, size_t end) { push_slice(normalized, begin, end, &pieces); });
      return pieces;
    });
    text.normalize([this](NormalizedString& normalized) {
      // Reused per thread: one transform per word must not cost an allocation per word.
      thread_local std::vector<CharChange> changes;
      changes.clear();
      for (unsigned char b : normalized.get()) {
        // A char's first byte takes its place; continuation bytes count as inserted.
        changes.push_back({table_[b], (b & 0xC0) == 0x80 ? 1 : 0});
      }
      normalized.transform(changes, 0);
    });
  }

 private:
  bool add_prefix_space_;
  bool use_regex_;
  std::array<char32_t, 256> table_{};
};

// ---------------------------------------------------------------------------------------
// Whitespace (`\w+|[^\w\s]+` as Rust's regex crate reads it) and WhitespaceSplit.
// ---------------------------------------------------------------------------------------

class WhitespacePreTokenizer final : public PreTokenizer {
 public:
  void pre_tokenize(PreTokenizedString& text) const override {
    text.split_normalized([](size_t, NormalizedString&& normalized) {
      // Maximal runs of word chars and of other non-space chars; whitespace is dropped.
      enum class Run { kNone, kWord, kOther };
      std::vector<NormalizedString> pieces;
      const std::string& s = normalized.get();
      Run run = Run::kNone;
      size_t run_begin = 0;
      size_t pos = 0;
      while (pos < s.size()) {
        const size_t begin = pos;
        const char32_t c = next_code_point(s, &pos);
        const Run kind = is_whitespace(c)        ? Run::kNone
                         : is_word_char(c) ? Run::kWord
                                                 : Run::kOther;
        if (kind != run) {
          if (run != Run::kNone) push_slice(normalized, run_begin, begin, &pieces);
          run = kind;
          run_begin = begin;
        }
      }
      if (run != Run::kNone) push_slice(normalized, run_begin, s.size(), &pieces);
      return pieces;
    });
  }
};

class WhitespaceSplitPreTokenizer final : public PreTokenizer {
 public:
  void pre_tokenize(PreTokenizedString& text) const override {
    text.split_normalized([](size_t, NormalizedString&& normalized) {
      std::vector<NormalizedString> pieces;
      const std::string& s = normalized.get();
      size_t word_begin = 0;
      size_t pos = 0;
      while (pos < s.size()) {
        const size_t begin = pos;
        if (is_whitespace(next_code_point(s, &pos))) {
          push_slice(normalized, word_begin, begin, &pieces);
          word_begin = pos;
        }
      }
      push_slice(normalized, word_begin, s.size(), &pieces);
      return pieces;
    });
  }
};

// ---------------------------------------------------------------------------------------
// Pattern-driven splitters: Split, Punctuation, Digits, CharDelimiterSplit.
// ---------------------------------------------------------------------------------------

class PatternSplit final : public PreTokenizer {
 public:
  PatternSplit(Pattern pattern, SplitBehavior behavior)
      : pattern_(std::move(pattern)), behavior_(behavior) {}

  void pre_tokenize(PreTokenizedString& text) const override {
    text.split_normalized([this](size_t, NormalizedString&& normalized) {
      return normalized.split(pattern_, behavior_);
    });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
};

// ---------------------------------------------------------------------------------------
// Metaspace: spaces become the replacement char (default U+2581), optionally prepended,
// then each word keeps its leading replacement char.
// ---------------------------------------------------------------------------------------

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  enum class PrependScheme { kAlways, kFirst, kNever };

  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
      : replacement_(to_utf8(replacement)),
        space_(Pattern::literal(" ")),
        delimiter_(Pattern::literal(replacement_)),
        scheme_(scheme),
        split_(split) {}

  void pre_tokenize(PreTokenizedString& text) const override {
    text.split_normalized([this](size_t, NormalizedString&& normalized) {
      normalized.replace(space_, replacement_);
      const bool starts_with_replacement =
          std::string_view(normalized.get()).substr(0, replacement_.size()) == replacement_;
      // "first" means the split that starts the original input, which excludes splits
      // that follow an added token and pieces a previous pre-tokenizer cut off the front.
      const bool prepend =
          !starts_with_replacement &&
          (scheme_ == PrependScheme::kAlways ||
           (scheme_ == PrependScheme::kFirst && normalized.offsets_original().first == 0));
      if (prepend) normalized.prepend(replacement_);
      if (split_) return normalized.split(delimiter_, SplitBehavior::kMergedWithNext);
      std::vector<NormalizedString> pieces;
      pieces.push_back(std::move(normalized));
      return pieces;
    });
  }

 private:
  std::string replacement_;
  Pattern space_;
  Pattern delimiter_;
  PrependScheme scheme_;
  bool split_;
};

// ---------------------------------------------------------------------------------------
// FixedLength: chunks of `length` chars.
// ---------------------------------------------------------------------------------------

class FixedLengthPreTokenizer final : public PreTokenizer {
 public:
  explicit FixedLengthPreTokenizer(size_t length) : length_(length) {}

  void pre_tokenize(PreTokenizedString& text) const override {
    text.split_normalized([this](size_t, NormalizedString&& normalized) {
      std::vector<NormalizedString> pieces;
      const std::string& s = normalized.get();
      size_t chunk_begin = 0;
      size_t chars = 0;
      size_t pos = 0;
      while (pos < s.size()) {
        next_code_point(s, &pos);
        if (++chars == length_) {
          push_slice(normalized, chunk_begin, pos, &pieces);
          chunk_begin = pos;
          chars = 0;
        }
      }
      push_slice(normalized, chunk_begin, s.size(), &pieces);
      return pieces;
    });
  }

 private:
  size_t length_;
};

// ---------------------------------------------------------------------------------------
// UnicodeScripts: splits where the script changes, as sentencepiece's Unigram trainer
// does. Hiragana, Katakana and U+30FC count as Han; spaces and chars without a script
// ("Any") join whatever run they are in.
// ---------------------------------------------------------------------------------------

struct ScriptRange {
  uint32_t first;
  uint32_t last;
  uint8_t script;
};

// Code point ranges and their scripts as the reference's (Unicode 9 era) table assigns
// them, with adjacent ranges of one script merged and the Han folding above applied.
// Chars outside every range are "Any" (0). Script ids:
// 1 Adlam, 2 Ahom, 3 AnatolianHieroglyphs, 4 Arabic, 5 Armenian, 6 Avestan, 7 Balinese,
// 8 Bamum, 9 BassaVah, 10 Batak, 11 Bengali, 12 Bhaiksuki, 13 Bopomofo, 14 Brahmi,
// 15 Braille, 16 Buginese, 17 Buhid, 18 CanadianAboriginal, 19 Carian,
// 20 CaucasianAlbanian, 21 Chakma, 22 Cham, 23 Cherokee, 24 Common, 25 Coptic,
// 26 Cuneiform, 27 Cypriot, 28 Cyrillic, 29 Deseret, 30 Devanagari, 31 Duployan,
// 32 EgyptianHieroglyphs, 33 Elbasan, 34 Ethiopic, 35 Georgian, 36 Glagolitic, 37 Gothic,
// 38 Grantha, 39 Greek, 40 Gujarati, 41 Gurmukhi, 42 Han, 43 Hangul, 44 Hanunoo, 45 Hatran,
// 46 Hebrew, 47 ImperialAramaic, 48 Inherited, 49 InscriptionalPahlavi,
// 50 InscriptionalParthian, 51 Javanese, 52 Kaithi, 53 Kannada, 54 KayahLi, 55 Kharoshthi,
// 56 Khmer, 57 Khojki, 58 Khudawadi, 59 Lao, 60 Latin, 61 Lepcha, 62 Limbu, 63 LinearA,
// 64 LinearB, 65 Lisu, 66 Lycian, 67 Lydian, 68 Mahajani, 69 Malayalam, 70 Mandaic,
// 71 Manichaean, 72 Marchen, 73 MeeteiMayek, 74 MendeKikakui, 75 MeroiticCursive,
// 76 MeroiticHieroglyphs, 77 Miao, 78 Modi, 79 Mongolian, 80 Mro, 81 Multani, 82 Myanmar,
// 83 Nabataean, 84 NewTaiLue, 85 Newa, 86 Nko, 87 Ogham, 88 OlChiki, 89 OldHungarian,
// 90 OldItalic, 91 OldNorthArabian, 92 OldPermic, 93 OldPersian, 94 OldSouthArabian,
// 95 OldTurkic, 96 Oriya, 97 Osage, 98 Osmanya, 99 PahawhHmong, 100 Palmyrene,
// 101 PauCinHau, 102 PhagsPa, 103 Phoenician, 104 PsalterPahlavi, 105 Rejang, 106 Runic,
// 107 Samaritan, 108 Saurashtra, 109 Sharada, 110 Shavian, 111 Siddham, 112 SignWriting,
// 113 Sinhala, 114 SoraSompeng, 115 Sundanese, 116 SylotiNagri, 117 Syriac, 118 Tagalog,
// 119 Tagbanwa, 120 TaiLe, 121 TaiTham, 122 TaiViet, 123 Takri, 124 Tamil, 125 Tangut,
// 126 Telugu, 127 Thaana, 128 Thai, 129 Tibetan, 130 Tifinagh, 131 Tirhuta, 132 Ugaritic,
// 133 Vai, 134 WarangCiti, 135 Yi
// clang-format off
constexpr ScriptRange kScriptRanges[] = {
    {0x0, 0x1F, 24}, {0x21, 0x40, 24}, {0x41, 0x5A, 60}, {0x5B, 0x60, 24},
    {0x61, 0x7A, 60}, {0x7B, 0xA9, 24}, {0xAA, 0xAA, 60}, {0xAB, 0xB9, 24},
    {0xBA, 0xBA, 60}, {0xBB, 0xBF, 24}, {0xC0, 0xD6, 60}, {0xD7, 0xD7, 24},
    {0xD8, 0xF6, 60}, {0xF7, 0xF7, 24}, {0xF8, 0x2B8, 60}, {0x2B9, 0x2DF, 24},
    {0x2E0, 0x2E4, 60}, {0x2E5, 0x2E9, 24}, {0x2EA, 0x2EB, 13}, {0x2EC, 0x2FF, 24},
    {0x300, 0x36F, 48}, {0x370, 0x373, 39}, {0x374, 0x374, 24}, {0x375, 0x377, 39},
    {0x37A, 0x37D, 39}, {0x37E, 0x37E, 24}, {0x37F, 0x37F, 39}, {0x384, 0x384, 39},
    {0x385, 0x385, 24}, {0x386, 0x386, 39}, {0x387, 0x387, 24}, {0x388, 0x38A, 39},
    {0x38C, 0x38C, 39}, {0x38E, 0x3A1, 39}, {0x3A3, 0x3E1, 39}, {0x3E2, 0x3EF, 25},
    {0x3F0, 0x3FF, 39}, {0x400, 0x484, 28}, {0x485, 0x486, 48}, {0x487, 0x52F, 28},
    {0x531, 0x556, 5}, {0x559, 0x55F, 5}, {0x561, 0x587, 5}, {0x589, 0x589, 24},
    {0x58A, 0x58A, 5}, {0x58D, 0x58F, 5}, {0x591, 0x5C7, 46}, {0x5D0, 0x5EA, 46},
    {0x5F0, 0x5F4, 46}, {0x600, 0x604, 4}, {0x605, 0x605, 24}, {0x606, 0x60B, 4},
    {0x60C, 0x60C, 24}, {0x60D, 0x61A, 4}, {0x61B, 0x61C, 24}, {0x61E, 0x61E, 4},
    {0x61F, 0x61F, 24}, {0x620, 0x63F, 4}, {0x640, 0x640, 24}, {0x641, 0x64A, 4},
    {0x64B, 0x655, 48}, {0x656, 0x66F, 4}, {0x670, 0x670, 48}, {0x671, 0x6DC, 4},
    {0x6DD, 0x6DD, 24}, {0x6DE, 0x6FF, 4}, {0x700, 0x70D, 117}, {0x70F, 0x74A, 117},
    {0x74D, 0x74F, 117}, {0x750, 0x77F, 4}, {0x780, 0x7B1, 127}, {0x7C0, 0x7FA, 86},
    {0x800, 0x82D, 107}, {0x830, 0x83E, 107}, {0x840, 0x85B, 70}, {0x85E, 0x85E, 70},
    {0x8A0, 0x8B4, 4}, {0x8B6, 0x8BD, 4}, {0x8D4, 0x8E1, 4}, {0x8E2, 0x8E2, 24},
    {0x8E3, 0x8FF, 4}, {0x900, 0x950, 30}, {0x951, 0x952, 48}, {0x953, 0x963, 30},
    {0x964, 0x965, 24}, {0x966, 0x97F, 30}, {0x980, 0x983, 11}, {0x985, 0x98C, 11},
    {0x98F, 0x990, 11}, {0x993, 0x9A8, 11}, {0x9AA, 0x9B0, 11}, {0x9B2, 0x9B2, 11},
    {0x9B6, 0x9B9, 11}, {0x9BC, 0x9C4, 11}, {0x9C7, 0x9C8, 11}, {0x9CB, 0x9CE, 11},
    {0x9D7, 0x9D7, 11}, {0x9DC, 0x9DD, 11}, {0x9DF, 0x9E3, 11}, {0x9E6, 0x9FB, 11},
    {0xA01, 0xA03, 41}, {0xA05, 0xA0A, 41}, {0xA0F, 0xA10, 41}, {0xA13, 0xA28, 41},
    {0xA2A, 0xA30, 41}, {0xA32, 0xA33, 41}, {0xA35, 0xA36, 41}, {0xA38, 0xA39, 41},
    {0xA3C, 0xA3C, 41}, {0xA3E, 0xA42, 41}, {0xA47, 0xA48, 41}, {0xA4B, 0xA4D, 41},
    {0xA51, 0xA51, 41}, {0xA59, 0xA5C, 41}, {0xA5E, 0xA5E, 41}, {0xA66, 0xA75, 41},
    {0xA81, 0xA83, 40}, {0xA85, 0xA8D, 40}, {0xA8F, 0xA91, 40}, {0xA93, 0xAA8, 40},
    {0xAAA, 0xAB0, 40}, {0xAB2, 0xAB3, 40}, {0xAB5, 0xAB9, 40}, {0xABC, 0xAC5, 40},
    {0xAC7, 0xAC9, 40}, {0xACB, 0xACD, 40}, {0xAD0, 0xAD0, 40}, {0xAE0, 0xAE3, 40},
    {0xAE6, 0xAF1, 40}, {0xAF9, 0xAF9, 40}, {0xB01, 0xB03, 96}, {0xB05, 0xB0C, 96},
    {0xB0F, 0xB10, 96}, {0xB13, 0xB28, 96}, {0xB2A, 0xB30, 96}, {0xB32, 0xB33, 96},
    {0xB35, 0xB39, 96}, {0xB3C, 0xB44, 96}, {0xB47, 0xB48, 96}, {0xB4B, 0xB4D, 96},
    {0xB56, 0xB57, 96}, {0xB5C, 0xB5D, 96}, {0xB5F, 0xB63, 96}, {0xB66, 0xB77, 96},
    {0xB82, 0xB83, 124}, {0xB85, 0xB8A, 124}, {0xB8E, 0xB90, 124}, {0xB92, 0xB95, 124},
    {0xB99, 0xB9A, 124}, {0xB9C, 0xB9C, 124}, {0xB9E, 0xB9F, 124}, {0xBA3, 0xBA4, 124},
    {0xBA8, 0xBAA, 124}, {0xBAE, 0xBB9, 124}, {0xBBE, 0xBC2, 124}, {0xBC6, 0xBC8, 124},
    {0xBCA, 0xBCD, 124}, {0xBD0, 0xBD0, 124}, {0xBD7, 0xBD7, 124}, {0xBE6, 0xBFA, 124},
    {0xC00, 0xC03, 126}, {0xC05, 0xC0C, 126}, {0xC0E, 0xC10, 126}, {0xC12, 0xC28, 126},
    {0xC2A, 0xC39, 126}, {0xC3D, 0xC44, 126}, {0xC46, 0xC48, 126}, {0xC4A, 0xC4D, 126},
    {0xC55, 0xC56, 126}, {0xC58, 0xC5A, 126}, {0xC60, 0xC63, 126}, {0xC66, 0xC6F, 126},
    {0xC78, 0xC7F, 126}, {0xC80, 0xC83, 53}, {0xC85, 0xC8C, 53}, {0xC8E, 0xC90, 53},
    {0xC92, 0xCA8, 53}, {0xCAA, 0xCB3, 53}, {0xCB5, 0xCB9, 53}, {0xCBC, 0xCC4, 53},
    {0xCC6, 0xCC8, 53}, {0xCCA, 0xCCD, 53}, {0xCD5, 0xCD6, 53}, {0xCDE, 0xCDE, 53},
    {0xCE0, 0xCE3, 53}, {0xCE6, 0xCEF, 53}, {0xCF1, 0xCF2, 53}, {0xD01, 0xD03, 69},
    {0xD05, 0xD0C, 69}, {0xD0E, 0xD10, 69}, {0xD12, 0xD3A, 69}, {0xD3D, 0xD44, 69},
    {0xD46, 0xD48, 69}, {0xD4A, 0xD4F, 69}, {0xD54, 0xD63, 69}, {0xD66, 0xD7F, 69},
    {0xD82, 0xD83, 113}, {0xD85, 0xD96, 113}, {0xD9A, 0xDB1, 113}, {0xDB3, 0xDBB, 113},
    {0xDBD, 0xDBD, 113}, {0xDC0, 0xDC6, 113}, {0xDCA, 0xDCA, 113}, {0xDCF, 0xDD4, 113},
    {0xDD6, 0xDD6, 113}, {0xDD8, 0xDDF, 113}, {0xDE6, 0xDEF, 113}, {0xDF2, 0xDF4, 113},
    {0xE01, 0xE3A, 128}, {0xE3F, 0xE3F, 24}, {0xE40, 0xE5B, 128}, {0xE81, 0xE82, 59},
    {0xE84, 0xE84, 59}, {0xE87, 0xE88, 59}, {0xE8A, 0xE8A, 59}, {0xE8D, 0xE8D, 59},
    {0xE94, 0xE97, 59}, {0xE99, 0xE9F, 59}, {0xEA1, 0xEA3, 59}, {0xEA5, 0xEA5, 59},
    {0xEA7, 0xEA7, 59}, {0xEAA, 0xEAB, 59}, {0xEAD, 0xEB9, 59}, {0xEBB, 0xEBD, 59},
    {0xEC0, 0xEC4, 59}, {0xEC6, 0xEC6, 59}, {0xEC8, 0xECD, 59}, {0xED0, 0xED9, 59},
    {0xEDC, 0xEDF, 59}, {0xF00, 0xF47, 129}, {0xF49, 0xF6C, 129}, {0xF71, 0xF97, 129},
    {0xF99, 0xFBC, 129}, {0xFBE, 0xFCC, 129}, {0xFCE, 0xFD4, 129}, {0xFD5, 0xFD8, 24},
    {0xFD9, 0xFDA, 129}, {0x1000, 0x109F, 82}, {0x10A0, 0x10C5, 35}, {0x10C7, 0x10C7, 35},
    {0x10CD, 0x10CD, 35}, {0x10D0, 0x10FA, 35}, {0x10FB, 0x10FB, 24}, {0x10FC, 0x10FF, 35},
    {0x1100, 0x11FF, 43}, {0x1200, 0x1248, 34}, {0x124A, 0x124D, 34}, {0x1250, 0x1256, 34},
    {0x1258, 0x1258, 34}, {0x125A, 0x125D, 34}, {0x1260, 0x1288, 34}, {0x128A, 0x128D, 34},
    {0x1290, 0x12B0, 34}, {0x12B2, 0x12B5, 34}, {0x12B8, 0x12BE, 34}, {0x12C0, 0x12C0, 34},
    {0x12C2, 0x12C5, 34}, {0x12C8, 0x12D6, 34}, {0x12D8, 0x1310, 34}, {0x1312, 0x1315, 34},
    {0x1318, 0x135A, 34}, {0x135D, 0x137C, 34}, {0x1380, 0x1399, 34}, {0x13A0, 0x13F5, 23},
    {0x13F8, 0x13FD, 23}, {0x1400, 0x167F, 18}, {0x1680, 0x169C, 87},
    {0x16A0, 0x16EA, 106}, {0x16EB, 0x16ED, 24}, {0x16EE, 0x16F8, 106},
    {0x1700, 0x170C, 118}, {0x170E, 0x1714, 118}, {0x1720, 0x1734, 44},
    {0x1735, 0x1736, 24}, {0x1740, 0x1753, 17}, {0x1760, 0x176C, 119},
    {0x176E, 0x1770, 119}, {0x1772, 0x1773, 119}, {0x1780, 0x17DD, 56},
    {0x17E0, 0x17E9, 56}, {0x17F0, 0x17F9, 56}, {0x1800, 0x1801, 79}, {0x1802, 0x1803, 24},
    {0x1804, 0x1804, 79}, {0x1805, 0x1805, 24}, {0x1806, 0x180E, 79}, {0x1810, 0x1819, 79},
    {0x1820, 0x1877, 79}, {0x1880, 0x18AA, 79}, {0x18B0, 0x18F5, 18}, {0x1900, 0x191E, 62},
    {0x1920, 0x192B, 62}, {0x1930, 0x193B, 62}, {0x1940, 0x1940, 62}, {0x1944, 0x194F, 62},
    {0x1950, 0x196D, 120}, {0x1970, 0x1974, 120}, {0x1980, 0x19AB, 84},
    {0x19B0, 0x19C9, 84}, {0x19D0, 0x19DA, 84}, {0x19DE, 0x19DF, 84}, {0x19E0, 0x19FF, 56},
    {0x1A00, 0x1A1B, 16}, {0x1A1E, 0x1A1F, 16}, {0x1A20, 0x1A5E, 121},
    {0x1A60, 0x1A7C, 121}, {0x1A7F, 0x1A89, 121}, {0x1A90, 0x1A99, 121},
    {0x1AA0, 0x1AAD, 121}, {0x1AB0, 0x1ABE, 48}, {0x1B00, 0x1B4B, 7}, {0x1B50, 0x1B7C, 7},
    {0x1B80, 0x1BBF, 115}, {0x1BC0, 0x1BF3, 10}, {0x1BFC, 0x1BFF, 10},
    {0x1C00, 0x1C37, 61}, {0x1C3B, 0x1C49, 61}, {0x1C4D, 0x1C4F, 61}, {0x1C50, 0x1C7F, 88},
    {0x1C80, 0x1C88, 28}, {0x1CC0, 0x1CC7, 115}, {0x1CD0, 0x1CD2, 48},
    {0x1CD3, 0x1CD3, 24}, {0x1CD4, 0x1CE0, 48}, {0x1CE1, 0x1CE1, 24}, {0x1CE2, 0x1CE8, 48},
    {0x1CE9, 0x1CEC, 24}, {0x1CED, 0x1CED, 48}, {0x1CEE, 0x1CF3, 24}, {0x1CF4, 0x1CF4, 48},
    {0x1CF5, 0x1CF6, 24}, {0x1CF8, 0x1CF9, 48}, {0x1D00, 0x1D25, 60}, {0x1D26, 0x1D2A, 39},
    {0x1D2B, 0x1D2B, 28}, {0x1D2C, 0x1D5C, 60}, {0x1D5D, 0x1D61, 39}, {0x1D62, 0x1D65, 60},
    {0x1D66, 0x1D6A, 39}, {0x1D6B, 0x1D77, 60}, {0x1D78, 0x1D78, 28}, {0x1D79, 0x1DBE, 60},
    {0x1DBF, 0x1DBF, 39}, {0x1DC0, 0x1DF5, 48}, {0x1DFB, 0x1DFF, 48}, {0x1E00, 0x1EFF, 60},
    {0x1F00, 0x1F15, 39}, {0x1F18, 0x1F1D, 39}, {0x1F20, 0x1F45, 39}, {0x1F48, 0x1F4D, 39},
    {0x1F50, 0x1F57, 39}, {0x1F59, 0x1F59, 39}, {0x1F5B, 0x1F5B, 39}, {0x1F5D, 0x1F5D, 39},
    {0x1F5F, 0x1F7D, 39}, {0x1F80, 0x1FB4, 39}, {0x1FB6, 0x1FC4, 39}, {0x1FC6, 0x1FD3, 39},
    {0x1FD6, 0x1FDB, 39}, {0x1FDD, 0x1FEF, 39}, {0x1FF2, 0x1FF4, 39}, {0x1FF6, 0x1FFE, 39},
    {0x2000, 0x200B, 24}, {0x200C, 0x200D, 48}, {0x200E, 0x2064, 24}, {0x2066, 0x2070, 24},
    {0x2071, 0x2071, 60}, {0x2074, 0x207E, 24}, {0x207F, 0x207F, 60}, {0x2080, 0x208E, 24},
    {0x2090, 0x209C, 60}, {0x20A0, 0x20BE, 24}, {0x20D0, 0x20F0, 48}, {0x2100, 0x2125, 24},
    {0x2126, 0x2126, 39}, {0x2127, 0x2129, 24}, {0x212A, 0x212B, 60}, {0x212C, 0x2131, 24},
    {0x2132, 0x2132, 60}, {0x2133, 0x214D, 24}, {0x214E, 0x214E, 60}, {0x214F, 0x215F, 24},
    {0x2160, 0x2188, 60}, {0x2189, 0x218B, 24}, {0x2190, 0x23FE, 24}, {0x2400, 0x2426, 24},
    {0x2440, 0x244A, 24}, {0x2460, 0x27FF, 24}, {0x2800, 0x28FF, 15}, {0x2900, 0x2B73, 24},
    {0x2B76, 0x2B95, 24}, {0x2B98, 0x2BB9, 24}, {0x2BBD, 0x2BC8, 24}, {0x2BCA, 0x2BD1, 24},
    {0x2BEC, 0x2BEF, 24}, {0x2C00, 0x2C2E, 36}, {0x2C30, 0x2C5E, 36}, {0x2C60, 0x2C7F, 60},
    {0x2C80, 0x2CF3, 25}, {0x2CF9, 0x2CFF, 25}, {0x2D00, 0x2D25, 35}, {0x2D27, 0x2D27, 35},
    {0x2D2D, 0x2D2D, 35}, {0x2D30, 0x2D67, 130}, {0x2D6F, 0x2D70, 130},
    {0x2D7F, 0x2D7F, 130}, {0x2D80, 0x2D96, 34}, {0x2DA0, 0x2DA6, 34},
    {0x2DA8, 0x2DAE, 34}, {0x2DB0, 0x2DB6, 34}, {0x2DB8, 0x2DBE, 34}, {0x2DC0, 0x2DC6, 34},
    {0x2DC8, 0x2DCE, 34}, {0x2DD0, 0x2DD6, 34}, {0x2DD8, 0x2DDE, 34}, {0x2DE0, 0x2DFF, 28},
    {0x2E00, 0x2E44, 24}, {0x2E80, 0x2E99, 42}, {0x2E9B, 0x2EF3, 42}, {0x2F00, 0x2FD5, 42},
    {0x2FF0, 0x2FFB, 24}, {0x3000, 0x3004, 24}, {0x3005, 0x3005, 42}, {0x3006, 0x3006, 24},
    {0x3007, 0x3007, 42}, {0x3008, 0x3020, 24}, {0x3021, 0x3029, 42}, {0x302A, 0x302D, 48},
    {0x302E, 0x302F, 43}, {0x3030, 0x3037, 24}, {0x3038, 0x303B, 42}, {0x303C, 0x303F, 24},
    {0x3041, 0x3096, 42}, {0x3099, 0x309A, 48}, {0x309B, 0x309C, 24}, {0x309D, 0x309F, 42},
    {0x30A0, 0x30A0, 24}, {0x30A1, 0x30FA, 42}, {0x30FB, 0x30FB, 24}, {0x30FC, 0x30FF, 42},
    {0x3105, 0x312D, 13}, {0x3131, 0x318E, 43}, {0x3190, 0x319F, 24}, {0x31A0, 0x31BA, 13},
    {0x31C0, 0x31E3, 24}, {0x31F0, 0x31FF, 42}, {0x3200, 0x321E, 43}, {0x3220, 0x325F, 24},
    {0x3260, 0x327E, 43}, {0x327F, 0x32CF, 24}, {0x32D0, 0x32FE, 42}, {0x3300, 0x3357, 42},
    {0x3358, 0x33FF, 24}, {0x3400, 0x4DB5, 42}, {0x4DC0, 0x4DFF, 24}, {0x4E00, 0x9FD5, 42},
    {0xA000, 0xA48C, 135}, {0xA490, 0xA4C6, 135}, {0xA4D0, 0xA4FF, 65},
    {0xA500, 0xA62B, 133}, {0xA640, 0xA69F, 28}, {0xA6A0, 0xA6F7, 8}, {0xA700, 0xA721, 24},
    {0xA722, 0xA787, 60}, {0xA788, 0xA78A, 24}, {0xA78B, 0xA7AE, 60}, {0xA7B0, 0xA7B7, 60},
    {0xA7F7, 0xA7FF, 60}, {0xA800, 0xA82B, 116}, {0xA830, 0xA839, 24},
    {0xA840, 0xA877, 102}, {0xA880, 0xA8C5, 108}, {0xA8CE, 0xA8D9, 108},
    {0xA8E0, 0xA8FD, 30}, {0xA900, 0xA92D, 54}, {0xA92E, 0xA92E, 24}, {0xA92F, 0xA92F, 54},
    {0xA930, 0xA953, 105}, {0xA95F, 0xA95F, 105}, {0xA960, 0xA97C, 43},
    {0xA980, 0xA9CD, 51}, {0xA9CF, 0xA9CF, 24}, {0xA9D0, 0xA9D9, 51}, {0xA9DE, 0xA9DF, 51},
    {0xA9E0, 0xA9FE, 82}, {0xAA00, 0xAA36, 22}, {0xAA40, 0xAA4D, 22}, {0xAA50, 0xAA59, 22},
    {0xAA5C, 0xAA5F, 22}, {0xAA60, 0xAA7F, 82}, {0xAA80, 0xAAC2, 122},
    {0xAADB, 0xAADF, 122}, {0xAAE0, 0xAAF6, 73}, {0xAB01, 0xAB06, 34},
    {0xAB09, 0xAB0E, 34}, {0xAB11, 0xAB16, 34}, {0xAB20, 0xAB26, 34}, {0xAB28, 0xAB2E, 34},
    {0xAB30, 0xAB5A, 60}, {0xAB5B, 0xAB5B, 24}, {0xAB5C, 0xAB64, 60}, {0xAB65, 0xAB65, 39},
    {0xAB70, 0xABBF, 23}, {0xABC0, 0xABED, 73}, {0xABF0, 0xABF9, 73}, {0xAC00, 0xD7A3, 43},
    {0xD7B0, 0xD7C6, 43}, {0xD7CB, 0xD7FB, 43}, {0xF900, 0xFA6D, 42}, {0xFA70, 0xFAD9, 42},
    {0xFB00, 0xFB06, 60}, {0xFB13, 0xFB17, 5}, {0xFB1D, 0xFB36, 46}, {0xFB38, 0xFB3C, 46},
    {0xFB3E, 0xFB3E, 46}, {0xFB40, 0xFB41, 46}, {0xFB43, 0xFB44, 46}, {0xFB46, 0xFB4F, 46},
    {0xFB50, 0xFBC1, 4}, {0xFBD3, 0xFD3D, 4}, {0xFD3E, 0xFD3F, 24}, {0xFD50, 0xFD8F, 4},
    {0xFD92, 0xFDC7, 4}, {0xFDF0, 0xFDFD, 4}, {0xFE00, 0xFE0F, 48}, {0xFE10, 0xFE19, 24},
    {0xFE20, 0xFE2D, 48}, {0xFE2E, 0xFE2F, 28}, {0xFE30, 0xFE52, 24}, {0xFE54, 0xFE66, 24},
    {0xFE68, 0xFE6B, 24}, {0xFE70, 0xFE74, 4}, {0xFE76, 0xFEFC, 4}, {0xFEFF, 0xFEFF, 24},
    {0xFF01, 0xFF20, 24}, {0xFF21, 0xFF3A, 60}, {0xFF3B, 0xFF40, 24}, {0xFF41, 0xFF5A, 60},
    {0xFF5B, 0xFF65, 24}, {0xFF66, 0xFF6F, 42}, {0xFF70, 0xFF70, 24}, {0xFF71, 0xFF9D, 42},
    {0xFF9E, 0xFF9F, 24}, {0xFFA0, 0xFFBE, 43}, {0xFFC2, 0xFFC7, 43}, {0xFFCA, 0xFFCF, 43},
    {0xFFD2, 0xFFD7, 43}, {0xFFDA, 0xFFDC, 43}, {0xFFE0, 0xFFE6, 24}, {0xFFE8, 0xFFEE, 24},
    {0xFFF9, 0xFFFD, 24}, {0x10000, 0x1000B, 64}, {0x1000D, 0x10026, 64},
    {0x10028, 0x1003A, 64}, {0x1003C, 0x1003D, 64}, {0x1003F, 0x1004D, 64},
    {0x10050, 0x1005D, 64}, {0x10080, 0x100FA, 64}, {0x10100, 0x10102, 24},
    {0x10107, 0x10133, 24}, {0x10137, 0x1013F, 24}, {0x10140, 0x1018E, 39},
    {0x10190, 0x1019B, 24}, {0x101A0, 0x101A0, 39}, {0x101D0, 0x101FC, 24},
    {0x101FD, 0x101FD, 48}, {0x10280, 0x1029C, 66}, {0x102A0, 0x102D0, 19},
    {0x102E0, 0x102E0, 48}, {0x102E1, 0x102FB, 24}, {0x10300, 0x10323, 90},
    {0x10330, 0x1034A, 37}, {0x10350, 0x1037A, 92}, {0x10380, 0x1039D, 132},
    {0x1039F, 0x1039F, 132}, {0x103A0, 0x103C3, 93}, {0x103C8, 0x103D5, 93},
    {0x10400, 0x1044F, 29}, {0x10450, 0x1047F, 110}, {0x10480, 0x1049D, 98},
    {0x104A0, 0x104A9, 98}, {0x104B0, 0x104D3, 97}, {0x104D8, 0x104FB, 97},
    {0x10500, 0x10527, 33}, {0x10530, 0x10563, 20}, {0x1056F, 0x1056F, 20},
    {0x10600, 0x10736, 63}, {0x10740, 0x10755, 63}, {0x10760, 0x10767, 63},
    {0x10800, 0x10805, 27}, {0x10808, 0x10808, 27}, {0x1080A, 0x10835, 27},
    {0x10837, 0x10838, 27}, {0x1083C, 0x1083C, 27}, {0x1083F, 0x1083F, 27},
    {0x10840, 0x10855, 47}, {0x10857, 0x1085F, 47}, {0x10860, 0x1087F, 100},
    {0x10880, 0x1089E, 83}, {0x108A7, 0x108AF, 83}, {0x108E0, 0x108F2, 45},
    {0x108F4, 0x108F5, 45}, {0x108FB, 0x108FF, 45}, {0x10900, 0x1091B, 103},
    {0x1091F, 0x1091F, 103}, {0x10920, 0x10939, 67}, {0x1093F, 0x1093F, 67},
    {0x10980, 0x1099F, 76}, {0x109A0, 0x109B7, 75}, {0x109BC, 0x109CF, 75},
    {0x109D2, 0x109FF, 75}, {0x10A00, 0x10A03, 55}, {0x10A05, 0x10A06, 55},
    {0x10A0C, 0x10A13, 55}, {0x10A15, 0x10A17, 55}, {0x10A19, 0x10A33, 55},
    {0x10A38, 0x10A3A, 55}, {0x10A3F, 0x10A47, 55}, {0x10A50, 0x10A58, 55},
    {0x10A60, 0x10A7F, 94}, {0x10A80, 0x10A9F, 91}, {0x10AC0, 0x10AE6, 71},
    {0x10AEB, 0x10AF6, 71}, {0x10B00, 0x10B35, 6}, {0x10B39, 0x10B3F, 6},
    {0x10B40, 0x10B55, 50}, {0x10B58, 0x10B5F, 50}, {0x10B60, 0x10B72, 49},
    {0x10B78, 0x10B7F, 49}, {0x10B80, 0x10B91, 104}, {0x10B99, 0x10B9C, 104},
    {0x10BA9, 0x10BAF, 104}, {0x10C00, 0x10C48, 95}, {0x10C80, 0x10CB2, 89},
    {0x10CC0, 0x10CF2, 89}, {0x10CFA, 0x10CFF, 89}, {0x10E60, 0x10E7E, 4},
    {0x11000, 0x1104D, 14}, {0x11052, 0x1106F, 14}, {0x1107F, 0x1107F, 14},
    {0x11080, 0x110C1, 52}, {0x110D0, 0x110E8, 114}, {0x110F0, 0x110F9, 114},
    {0x11100, 0x11134, 21}, {0x11136, 0x11143, 21}, {0x11150, 0x11176, 68},
    {0x11180, 0x111CD, 109}, {0x111D0, 0x111DF, 109}, {0x111E1, 0x111F4, 113},
    {0x11200, 0x11211, 57}, {0x11213, 0x1123E, 57}, {0x11280, 0x11286, 81},
    {0x11288, 0x11288, 81}, {0x1128A, 0x1128D, 81}, {0x1128F, 0x1129D, 81},
    {0x1129F, 0x112A9, 81}, {0x112B0, 0x112EA, 58}, {0x112F0, 0x112F9, 58},
    {0x11300, 0x11303, 38}, {0x11305, 0x1130C, 38}, {0x1130F, 0x11310, 38},
    {0x11313, 0x11328, 38}, {0x1132A, 0x11330, 38}, {0x11332, 0x11333, 38},
    {0x11335, 0x11339, 38}, {0x1133C, 0x11344, 38}, {0x11347, 0x11348, 38},
    {0x1134B, 0x1134D, 38}, {0x11350, 0x11350, 38}, {0x11357, 0x11357, 38},
    {0x1135D, 0x11363, 38}, {0x11366, 0x1136C, 38}, {0x11370, 0x11374, 38},
    {0x11400, 0x11459, 85}, {0x1145B, 0x1145B, 85}, {0x1145D, 0x1145D, 85},
    {0x11480, 0x114C7, 131}, {0x114D0, 0x114D9, 131}, {0x11580, 0x115B5, 111},
    {0x115B8, 0x115DD, 111}, {0x11600, 0x11644, 78}, {0x11650, 0x11659, 78},
    {0x11660, 0x1166C, 79}, {0x11680, 0x116B7, 123}, {0x116C0, 0x116C9, 123},
    {0x11700, 0x11719, 2}, {0x1171D, 0x1172B, 2}, {0x11730, 0x1173F, 2},
    {0x118A0, 0x118F2, 134}, {0x118FF, 0x118FF, 134}, {0x11AC0, 0x11AF8, 101},
    {0x11C00, 0x11C08, 12}, {0x11C0A, 0x11C36, 12}, {0x11C38, 0x11C45, 12},
    {0x11C50, 0x11C6C, 12}, {0x11C70, 0x11C8F, 72}, {0x11C92, 0x11CA7, 72},
    {0x11CA9, 0x11CB6, 72}, {0x12000, 0x12399, 26}, {0x12400, 0x1246E, 26},
    {0x12470, 0x12474, 26}, {0x12480, 0x12543, 26}, {0x13000, 0x1342E, 32},
    {0x14400, 0x14646, 3}, {0x16800, 0x16A38, 8}, {0x16A40, 0x16A5E, 80},
    {0x16A60, 0x16A69, 80}, {0x16A6E, 0x16A6F, 80}, {0x16AD0, 0x16AED, 9},
    {0x16AF0, 0x16AF5, 9}, {0x16B00, 0x16B45, 99}, {0x16B50, 0x16B59, 99},
    {0x16B5B, 0x16B61, 99}, {0x16B63, 0x16B77, 99}, {0x16B7D, 0x16B8F, 99},
    {0x16F00, 0x16F44, 77}, {0x16F50, 0x16F7E, 77}, {0x16F8F, 0x16F9F, 77},
    {0x16FE0, 0x16FE0, 125}, {0x17000, 0x187EC, 125}, {0x18800, 0x18AF2, 125},
    {0x1B000, 0x1B001, 42}, {0x1BC00, 0x1BC6A, 31}, {0x1BC70, 0x1BC7C, 31},
    {0x1BC80, 0x1BC88, 31}, {0x1BC90, 0x1BC99, 31}, {0x1BC9C, 0x1BC9F, 31},
    {0x1BCA0, 0x1BCA3, 24}, {0x1D000, 0x1D0F5, 24}, {0x1D100, 0x1D126, 24},
    {0x1D129, 0x1D166, 24}, {0x1D167, 0x1D169, 48}, {0x1D16A, 0x1D17A, 24},
    {0x1D17B, 0x1D182, 48}, {0x1D183, 0x1D184, 24}, {0x1D185, 0x1D18B, 48},
    {0x1D18C, 0x1D1A9, 24}, {0x1D1AA, 0x1D1AD, 48}, {0x1D1AE, 0x1D1E8, 24},
    {0x1D200, 0x1D245, 39}, {0x1D300, 0x1D356, 24}, {0x1D360, 0x1D371, 24},
    {0x1D400, 0x1D454, 24}, {0x1D456, 0x1D49C, 24}, {0x1D49E, 0x1D49F, 24},
    {0x1D4A2, 0x1D4A2, 24}, {0x1D4A5, 0x1D4A6, 24}, {0x1D4A9, 0x1D4AC, 24},
    {0x1D4AE, 0x1D4B9, 24}, {0x1D4BB, 0x1D4BB, 24}, {0x1D4BD, 0x1D4C3, 24},
    {0x1D4C5, 0x1D505, 24}, {0x1D507, 0x1D50A, 24}, {0x1D50D, 0x1D514, 24},
    {0x1D516, 0x1D51C, 24}, {0x1D51E, 0x1D539, 24}, {0x1D53B, 0x1D53E, 24},
    {0x1D540, 0x1D544, 24}, {0x1D546, 0x1D546, 24}, {0x1D54A, 0x1D550, 24},
    {0x1D552, 0x1D6A5, 24}, {0x1D6A8, 0x1D7CB, 24}, {0x1D7CE, 0x1D7FF, 24},
    {0x1D800, 0x1DA8B, 112}, {0x1DA9B, 0x1DA9F, 112}, {0x1DAA1, 0x1DAAF, 112},
    {0x1E000, 0x1E006, 36}, {0x1E008, 0x1E018, 36}, {0x1E01B, 0x1E021, 36},
    {0x1E023, 0x1E024, 36}, {0x1E026, 0x1E02A, 36}, {0x1E800, 0x1E8C4, 74},
    {0x1E8C7, 0x1E8D6, 74}, {0x1E900, 0x1E94A, 1}, {0x1E950, 0x1E959, 1},
    {0x1E95E, 0x1E95F, 1}, {0x1EE00, 0x1EE03, 4}, {0x1EE05, 0x1EE1F, 4},
    {0x1EE21, 0x1EE22, 4}, {0x1EE24, 0x1EE24, 4}, {0x1EE27, 0x1EE27, 4},
    {0x1EE29, 0x1EE32, 4}, {0x1EE34, 0x1EE37, 4}, {0x1EE39, 0x1EE39, 4},
    {0x1EE3B, 0x1EE3B, 4}, {0x1EE42, 0x1EE42, 4}, {0x1EE47, 0x1EE47, 4},
    {0x1EE49, 0x1EE49, 4}, {0x1EE4B, 0x1EE4B, 4}, {0x1EE4D, 0x1EE4F, 4},
    {0x1EE51, 0x1EE52, 4}, {0x1EE54, 0x1EE54, 4}, {0x1EE57, 0x1EE57, 4},
    {0x1EE59, 0x1EE59, 4}, {0x1EE5B, 0x1EE5B, 4}, {0x1EE5D, 0x1EE5D, 4},
    {0x1EE5F, 0x1EE5F, 4}, {0x1EE61, 0x1EE62, 4}, {0x1EE64, 0x1EE64, 4},
    {0x1EE67, 0x1EE6A, 4}, {0x1EE6C, 0x1EE72, 4}, {0x1EE74, 0x1EE77, 4},
    {0x1EE79, 0x1EE7C, 4}, {0x1EE7E, 0x1EE7E, 4}, {0x1EE80, 0x1EE89, 4},
    {0x1EE8B, 0x1EE9B, 4}, {0x1EEA1, 0x1EEA3, 4}, {0x1EEA5, 0x1EEA9, 4},
    {0x1EEAB, 0x1EEBB, 4}, {0x1EEF0, 0x1EEF1, 4}, {0x1F000, 0x1F02B, 24},
    {0x1F030, 0x1F093, 24}, {0x1F0A0, 0x1F0AE, 24}, {0x1F0B1, 0x1F0BF, 24},
    {0x1F0C1, 0x1F0CF, 24}, {0x1F0D1, 0x1F0F5, 24}, {0x1F100, 0x1F10C, 24},
    {0x1F110, 0x1F12E, 24}, {0x1F130, 0x1F16B, 24}, {0x1F170, 0x1F1AC, 24},
    {0x1F1E6, 0x1F1FF, 24}, {0x1F200, 0x1F200, 42}, {0x1F201, 0x1F202, 24},
    {0x1F210, 0x1F23B, 24}, {0x1F240, 0x1F248, 24}, {0x1F250, 0x1F251, 24},
    {0x1F300, 0x1F6D2, 24}, {0x1F6E0, 0x1F6EC, 24}, {0x1F6F0, 0x1F6F6, 24},
    {0x1F700, 0x1F773, 24}, {0x1F780, 0x1F7D4, 24}, {0x1F800, 0x1F80B, 24},
    {0x1F810, 0x1F847, 24}, {0x1F850, 0x1F859, 24}, {0x1F860, 0x1F887, 24},
    {0x1F890, 0x1F8AD, 24}, {0x1F910, 0x1F91E, 24}, {0x1F920, 0x1F927, 24},
    {0x1F930, 0x1F930, 24}, {0x1F933, 0x1F93E, 24}, {0x1F940, 0x1F94B, 24},
    {0x1F950, 0x1F95E, 24}, {0x1F980, 0x1F991, 24}, {0x1F9C0, 0x1F9C0, 24},
    {0x20000, 0x2A6D6, 42}, {0x2A700, 0x2B734, 42}, {0x2B740, 0x2B81D, 42},
    {0x2B820, 0x2CEA1, 42}, {0x2F800, 0x2FA1D, 42}, {0xE0001, 0xE0001, 24},
    {0xE0020, 0xE007F, 24}, {0xE0100, 0xE01EF, 48}
};
// clang-format on

constexpr uint8_t kAnyScript = 0;

uint8_t script_of(char32_t c) {
  if (c == ' ') return kAnyScript;
  const auto* end = std::end(kScriptRanges);
  const auto* it = std::upper_bound(
      std::begin(kScriptRanges), end, static_cast<uint32_t>(c),
      [](uint32_t value, const ScriptRange& range) { return value < range.first; });
  if (it == std::begin(kScriptRanges)) return kAnyScript;
  --it;
  return static_cast<uint32_t>(c) <= it->last ? it->script : kAnyScript;
}

class UnicodeScriptsPreTokenizer final : public PreTokenizer {
 public:
  void pre_tokenize(PreTokenizedString& text) const override {
    text.split_normalized([](size_t, NormalizedString&& normalized) {
      // A piece starts at every char whose script differs from the last real script seen.
      // Chars before the first real script start no piece, so they are dropped -- an
      // input made only of spaces and script-less chars vanishes entirely, as it does in
      // the reference.
      std::vector<NormalizedString> pieces;
      const std::string& s = normalized.get();
      std::optional<size_t> piece_begin;
      std::optional<uint8_t> last_script;
      size_t pos = 0;
      while (pos < s.size()) {
        const size_t begin = pos;
        const uint8_t script = script_of(next_code_point(s, &pos));
        if (script == kAnyScript) continue;
        if (last_script != script) {
          if (piece_begin) push_slice(normalized, *piece_begin, begin, &pieces);
          piece_begin = begin;
        }
        last_script = script;
      }
      if (piece_begin) push_slice(normalized, *piece_begin, s.size(), &pieces);
      return pieces;
    });
  }
};

// ---------------------------------------------------------------------------------------
// Sequence
// ---------------------------------------------------------------------------------------

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> pre_tokenizers)
      : pre_tokenizers_(std::move(pre_tokenizers)) {}
  void pre_tokenize(PreTokenizedString& text) const override {
    for (const auto& pre_tokenizer : pre_tokenizers_) pre_tokenizer->pre_tokenize(text);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> pre_tokenizers_;
};

std::unique_ptr<PreTokenizer> make_metaspace(const ConfigReader& reader) {
  using Scheme = MetaspacePreTokenizer::PrependScheme;
  constexpr Scheme kSchemes[] = {Scheme::kAlways, Scheme::kFirst, Scheme::kNever};
  const char32_t replacement = reader.get_char("replacement");
  std::optional<Scheme> scheme;
  if (const json* name = reader.find("prepend_scheme")) {
    scheme = kSchemes[reader.one_of(*name, "prepend_scheme", {"always", "first", "never"})];
  }
  // Files from before prepend_scheme existed say add_prefix_space instead. The reference
  // rejects add_prefix_space=false next to a scheme other than "never" -- and, because its
  // scheme defaults to "always", also when the scheme is absent; that last case is
  // accepted here with the meaning those older files had.
  if (!reader.get_bool_or("add_prefix_space", true)) {
    if (scheme && *scheme != Scheme::kNever) {
      reader.fail("add_prefix_space does not match declared prepend_scheme");
    }
    scheme = Scheme::kNever;
  }
  return std::make_unique<MetaspacePreTokenizer>(replacement, scheme.value_or(Scheme::kAlways),
                                                 reader.get_bool_or("split", true));
}

std::unique_ptr<PreTokenizer> make_split(const ConfigReader& reader) {
  Pattern pattern = reader.get_pattern("pattern");
  const SplitBehavior behavior = parse_behavior(reader, reader.require("behavior"));
  if (reader.get_bool("invert")) pattern = pattern.inverted();
  return std::make_unique<PatternSplit>(std::move(pattern), behavior);
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& config) {
  const std::optional<std::string> tag = read_type_tag(config, "pre_tokenizer");
  if (!tag) {
    throw ConfigError("pre_tokenizer: missing field \"type\"; supported types: " +
                      std::string(kSupportedTypes));
  }
  const std::string& type = *tag;
  const ConfigReader reader(config, "pre_tokenizer", type);

  if (type == "BertPreTokenizer") return std::make_unique<BertPreTokenizer>();
  if (type == "ByteLevel") {
    const bool add_prefix_space = reader.get_bool("add_prefix_space");
    // trim_offsets only matters to the post-processor; it is still required, as there.
    reader.get_bool("trim_offsets");
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space,
                                                   reader.get_bool_or("use_regex", true));
  }
  if (type == "Whitespace") return std::make_unique<WhitespacePreTokenizer>();
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplitPreTokenizer>();
  if (type == "Metaspace") return make_metaspace(reader);
  if (type == "Split") return make_split(reader);
  if (type == "Punctuation") {
    const json* behavior = reader.find("behavior");
    return std::make_unique<PatternSplit>(
        Pattern::char_class(is_bert_punctuation),
        behavior == nullptr ? SplitBehavior::kIsolated : parse_behavior(reader, *behavior));
  }
  if (type == "Digits") {
    // Rust's char::is_numeric: any N* char, not just decimal digits.
    return std::make_unique<PatternSplit>(Pattern::char_class(is_numeric),
                                          reader.get_bool("individual_digits")
                                              ? SplitBehavior::kIsolated
                                              : SplitBehavior::kContiguous);
  }
  if (type == "CharDelimiterSplit") {
    return std::make_unique<PatternSplit>(Pattern::literal(to_utf8(reader.get_char("delimiter"))),
                                          SplitBehavior::kRemoved);
  }
  if (type == "UnicodeScripts") return std::make_unique<UnicodeScriptsPreTokenizer>();
  if (type == "FixedLength") {
    size_t length = 5;
    if (const json* value = reader.find("length")) {
      if (!value->is_number_unsigned() || value->get<uint64_t>() == 0) {
        reader.fail("field \"length\" must be a positive integer, got " + value->dump());
      }
      length = static_cast<size_t>(value->get<uint64_t>());
    }
    return std::make_unique<FixedLengthPreTokenizer>(length);
  }
  if (type == "Sequence") {
    return std::make_unique<SequencePreTokenizer>(
        reader.map_array("pretokenizers", make_pre_tokenizer));
  }
  unsupported_type("pre_tokenizer", type, kSupportedTypes);
}

}  // namespace sparkd::tokenizer
