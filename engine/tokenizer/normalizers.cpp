// Normalizers of Hugging Face tokenizers, rebuilt on NormalizedString.
//
// Every normalizer is immutable after construction, so one instance may serve many threads.
// Each mirrors the reference implementation's observable behavior, including a few
// surprising details that are called out where they happen.
#include "engine/tokenizer/normalizers.h"

#include <utf8proc.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
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
    "BertNormalizer, Strip, StripAccents, NFC, NFD, NFKC, NFKD, Sequence, Lowercase, Nmt, "
    "Precompiled, Replace, Prepend, ByteLevel";

// Calls fn(c) for each code point of `s`.
template <typename Fn>
void for_each_char(std::string_view s, Fn&& fn) {
  size_t pos = 0;
  while (pos < s.size()) fn(next_code_point(s, &pos));
}

// Whether `pred` holds for some code point of `s`; ASCII bytes skip the decoder. Used to
// skip filter/map passes that would change nothing: each pass rebuilds the string and its
// alignments, and an identity pass leaves both exactly as they were.
template <typename Pred>
bool any_char(std::string_view s, Pred&& pred) {
  size_t pos = 0;
  while (pos < s.size()) {
    const auto byte = static_cast<unsigned char>(s[pos]);
    if (byte < 0x80) {
      if (pred(char32_t{byte})) return true;
      ++pos;
    } else if (pred(next_code_point(s, &pos))) {
      return true;
    }
  }
  return false;
}

bool is_general_category(char32_t c, std::initializer_list<int> categories) {
  const int cat = general_category(c);
  for (int wanted : categories) {
    if (cat == wanted) return true;
  }
  return false;
}

// General category M (Mn, Mc, Me); no mark precedes U+0300.
bool is_mark(char32_t c) {
  return c >= 0x300 &&
         is_general_category(c, {UTF8PROC_CATEGORY_MN, UTF8PROC_CATEGORY_MC, UTF8PROC_CATEGORY_ME});
}

// ---------------------------------------------------------------------------------------
// BertNormalizer
// ---------------------------------------------------------------------------------------

// White_Space already holds \t \n \r; they are named because BERT treats exactly those
// three controls as spaces (see is_bert_control).
bool is_bert_whitespace(char32_t c) {
  return c == '\t' || c == '\n' || c == '\r' || is_whitespace(c);
}

// "Other" in the reference is Cc, Cf, Co and Cs -- but not Cn: unassigned code points are
// kept. \t, \n and \r are controls that count as whitespace instead.
bool is_bert_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  if (c < 0x80) return c < 0x20 || c == 0x7F;
  return is_general_category(
      c, {UTF8PROC_CATEGORY_CC, UTF8PROC_CATEGORY_CF, UTF8PROC_CATEGORY_CO, UTF8PROC_CATEGORY_CS});
}

class BertNormalizer final : public Normalizer {
 public:
  BertNormalizer(bool clean_text, bool handle_chinese_chars, bool strip_accents, bool lowercase)
      : clean_text_(clean_text),
        handle_chinese_chars_(handle_chinese_chars),
        strip_accents_(strip_accents),
        lowercase_(lowercase) {}

  void normalize(NormalizedString& text) const override {
    if (clean_text_) {
      auto removed = [](char32_t c) { return c == 0 || c == 0xFFFD || is_bert_control(c); };
      if (any_char(text.get(), removed)) text.filter([&](char32_t c) { return !removed(c); });
      auto spaced = [](char32_t c) { return c != ' ' && is_bert_whitespace(c); };
      if (any_char(text.get(), spaced)) {
        text.map([&](char32_t c) { return spaced(c) ? char32_t{' '} : c; });
      }
    }
    if (handle_chinese_chars_) pad_chinese_chars(text);
    // ASCII text is its own NFD and has no marks.
    if (strip_accents_ && any_char(text.get(), [](char32_t c) { return c >= 0x80; })) {
      text.nfd();
      auto nonspacing = [](char32_t c) { return c >= 0x300 && is_mark_nonspacing(c); };
      if (any_char(text.get(), nonspacing)) {
        text.filter([&](char32_t c) { return !nonspacing(c); });
      }
    }
    if (lowercase_) text.lowercase();
  }

 private:
  // Surrounds every CJK ideograph with spaces so the pre-tokenizer isolates it. The
  // leading space takes over the ideograph's own alignment and the ideograph and the
  // trailing space count as inserted, which is what decides their offsets.
  static void pad_chinese_chars(NormalizedString& text) {
    const std::string& s = text.get();
    // No ideograph precedes U+3400; without one the transform would be the identity.
    if (!any_char(s, [](char32_t c) { return c >= 0x3400 && is_chinese_char(c); })) return;
    std::vector<CharChange> changes;
    changes.reserve(s.size() + 16);
    for_each_char(s, [&](char32_t c) {
      if (is_chinese_char(c)) {
        changes.push_back({' ', 0});
        changes.push_back({c, 1});
        changes.push_back({' ', 1});
      } else {
        changes.push_back({c, 0});
      }
    });
    text.transform(changes, 0);
  }

  bool clean_text_;
  bool handle_chinese_chars_;
  bool strip_accents_;
  bool lowercase_;
};

// ---------------------------------------------------------------------------------------
// Unicode forms, case and accents
// ---------------------------------------------------------------------------------------

class UnicodeForm final : public Normalizer {
 public:
  enum class Form { kNfc, kNfd, kNfkc, kNfkd };
  explicit UnicodeForm(Form form) : form_(form) {}

  void normalize(NormalizedString& text) const override {
    switch (form_) {
      case Form::kNfc:
        text.nfc();
        break;
      case Form::kNfd:
        text.nfd();
        break;
      case Form::kNfkc:
        text.nfkc();
        break;
      case Form::kNfkd:
        text.nfkd();
        break;
    }
  }

 private:
  Form form_;
};

class Lowercase final : public Normalizer {
 public:
  void normalize(NormalizedString& text) const override { text.lowercase(); }
};

// Unlike BertNormalizer's accent stripping, this one removes every mark (Mn, Mc and Me)
// and does not decompose first: without a preceding NFD it leaves precomposed letters.
class StripAccents final : public Normalizer {
 public:
  void normalize(NormalizedString& text) const override {
    if (any_char(text.get(), is_mark)) text.filter([](char32_t c) { return !is_mark(c); });
  }
};

// ---------------------------------------------------------------------------------------
// Nmt: sentencepiece's nmt_nfkc clean-up of control chars and odd spaces (without NFKC).
// ---------------------------------------------------------------------------------------

class Nmt final : public Normalizer {
 public:
  void normalize(NormalizedString& text) const override {
    if (any_char(text.get(), is_removed)) {
      text.filter([](char32_t c) { return !is_removed(c); });
    }
    if (any_char(text.get(), is_space_like)) {
      text.map([](char32_t c) { return is_space_like(c) ? char32_t{' '} : c; });
    }
  }

 private:
  static bool is_removed(char32_t c) {
    return (c >= 0x01 && c <= 0x08) || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
           c == 0x8F || c == 0x9F;
  }
  static bool is_space_like(char32_t c) {
    switch (c) {
      case 0x09:
      case 0x0A:
      case 0x0C:
      case 0x0D:
      case 0x1680:
      case 0x2028:
      case 0x2029:
      case 0x2581:
      case 0xFEFF:
      case 0xFFFD:
        return true;
      default:
        return c >= 0x200B && c <= 0x200F;
    }
  }
};

// ---------------------------------------------------------------------------------------
// Replace, Prepend, Strip
// ---------------------------------------------------------------------------------------

class Replace final : public Normalizer {
 public:
  Replace(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(NormalizedString& text) const override { text.replace(pattern_, content_); }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  // An empty input stays empty: there is no first char to attach the prefix's alignment to.
  void normalize(NormalizedString& text) const override {
    if (!text.empty()) text.prepend(prefix_);
  }

 private:
  std::string prefix_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(NormalizedString& text) const override {
    if (left_ || right_) text.strip(left_, right_);
  }

 private:
  bool left_;
  bool right_;
};

// ---------------------------------------------------------------------------------------
// ByteLevel: every UTF-8 byte becomes its GPT-2 printable stand-in char.
// ---------------------------------------------------------------------------------------

class ByteLevelNormalizer final : public Normalizer {
 public:
  ByteLevelNormalizer() {
    for (int b = 0; b < 256; ++b) {
      const std::string& utf8 = byte_to_unicode_utf8(static_cast<unsigned char>(b));
      size_t pos = 0;
      table_[static_cast<size_t>(b)] = next_code_point(utf8, &pos);
    }
  }

  void normalize(NormalizedString& text) const override {
    if (text.empty()) return;
    const std::string& s = text.get();
    std::vector<CharChange> changes;
    changes.reserve(s.size());
    // The first byte of a char replaces it; its continuation bytes count as inserted.
    for (unsigned char b : s) {
      changes.push_back({table_[b], (b & 0xC0) == 0x80 ? 1 : 0});
    }
    text.transform(changes, 0);
  }

 private:
  std::array<char32_t, 256> table_{};
};

// ---------------------------------------------------------------------------------------
// Precompiled: sentencepiece's normalization rules, compiled into its
// `precompiled_charsmap` blob: [u32 trie size in bytes][trie units][normalized strings].
// The trie is a darts-clone double array over UTF-8 bytes whose leaves hold byte offsets
// into the NUL-separated normalized strings.
// ---------------------------------------------------------------------------------------

std::optional<std::string> decode_base64(std::string_view text) {
  std::array<int, 256> value{};
  value.fill(-1);
  const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) value[static_cast<unsigned char>(alphabet[i])] = i;
  // Standard alphabet with padding, as the reference requires.
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    int pad = 0;
    uint32_t group = 0;
    for (size_t j = 0; j < 4; ++j) {
      const char ch = text[i + j];
      int v = 0;
      if (ch == '=') {
        if (i + 4 != text.size() || j < 2) return std::nullopt;
        ++pad;
      } else {
        if (pad > 0) return std::nullopt;  // data after padding
        v = value[static_cast<unsigned char>(ch)];
        if (v < 0) return std::nullopt;
      }
      group = (group << 6) | static_cast<uint32_t>(v);
    }
    out.push_back(static_cast<char>((group >> 16) & 0xFF));
    if (pad < 2) out.push_back(static_cast<char>((group >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(group & 0xFF));
  }
  return out;
}

class Precompiled final : public Normalizer {
 public:
  explicit Precompiled(std::string_view blob) {
    if (blob.size() < 4)
      throw ConfigError("normalizer Precompiled: cannot parse precompiled_charsmap");
    const uint32_t trie_bytes = read_u32(blob, 0);
    const size_t units = trie_bytes / 4;
    if (4 + units * 4 > blob.size()) {
      throw ConfigError("normalizer Precompiled: cannot parse precompiled_charsmap");
    }
    trie_.resize(units);
    for (size_t i = 0; i < units; ++i) trie_[i] = read_u32(blob, 4 + i * 4);
    normalized_ = std::string(blob.substr(4 + units * 4));
    if (!is_valid_utf8(normalized_)) {
      throw ConfigError("normalizer Precompiled: precompiled_charsmap strings are not UTF-8");
    }
  }

  // The reference walks extended grapheme clusters: a short cluster (under 6 bytes) that
  // the trie knows is replaced as a whole, otherwise each of its chars is looked up on its
  // own. "Knows" means *some* prefix of the cluster is a key -- the shortest such key's
  // replacement then stands for the whole cluster -- which is sentencepiece-incompatible
  // but what the models were validated against.
  void normalize(NormalizedString& text) const override {
    const std::string& s = text.get();
    if (s.empty()) return;
    std::vector<CharChange> changes;
    changes.reserve(s.size());
    bool modified = false;
    size_t pos = 0;
    utf8proc_int32_t state = 0;  // carries regional-indicator / emoji context across pairs
    while (pos < s.size()) {
      // The cluster starting at `pos` ends before the first char that begins a new one.
      size_t end = pos;
      char32_t previous = next_code_point(s, &end);
      while (end < s.size()) {
        size_t after = end;
        const char32_t c = next_code_point(s, &after);
        if (utf8proc_grapheme_break_stateful(static_cast<utf8proc_int32_t>(previous),
                                             static_cast<utf8proc_int32_t>(c), &state)) {
          break;
        }
        previous = c;
        end = after;
      }
      const std::string_view grapheme(s.data() + pos, end - pos);

      std::string_view replacement;
      if (grapheme.size() < 6 && lookup(grapheme, &replacement)) {
        modified = true;
        append_replacement(&changes, grapheme, replacement);
      } else {
        size_t char_pos = 0;
        while (char_pos < grapheme.size()) {
          const size_t char_begin = char_pos;
          const char32_t ch = next_code_point(grapheme, &char_pos);
          const std::string_view part = grapheme.substr(char_begin, char_pos - char_begin);
          if (lookup(part, &replacement)) {
            modified = true;
            append_replacement(&changes, part, replacement);
          } else {
            changes.push_back({ch, 0});
          }
        }
      }
      pos = end;
    }
    if (modified) text.transform(changes, 0);
  }

 private:
  static uint32_t read_u32(std::string_view blob, size_t at) {
    const auto* p = reinterpret_cast<const unsigned char*>(blob.data() + at);
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
  }

  // darts-clone unit layout.
  static bool has_leaf(uint32_t unit) { return ((unit >> 8) & 1) == 1; }
  static uint32_t value(uint32_t unit) { return unit & ((1u << 31) - 1); }
  static uint32_t label(uint32_t unit) { return unit & ((1u << 31) | 0xFF); }
  static uint32_t offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }

  // Replacement of the shortest key that prefixes `key`. A malformed trie that points
  // outside itself simply stops matching.
  bool lookup(std::string_view key, std::string_view* replacement) const {
    if (trie_.empty()) return false;
    size_t node = offset(trie_[0]);
    for (unsigned char byte : key) {
      if (byte == 0) break;
      node ^= byte;
      if (node >= trie_.size()) return false;
      const uint32_t unit = trie_[node];
      if (label(unit) != byte) return false;
      node ^= offset(unit);
      if (has_leaf(unit)) {
        if (node >= trie_.size()) return false;
        const size_t begin = value(trie_[node]);
        if (begin > normalized_.size()) return false;
        size_t end = normalized_.find('\0', begin);
        if (end == std::string::npos) end = normalized_.size();
        *replacement = std::string_view(normalized_).substr(begin, end - begin);
        return true;
      }
    }
    return false;
  }

  // Emits `replacement` for `original`, expressing the length difference the way the
  // reference does: extra chars are marked inserted at the end; missing chars are
  // charged to the last change emitted so far -- which, for an empty replacement, is the
  // previous cluster's last char.
  static void append_replacement(std::vector<CharChange>* changes, std::string_view original,
                                 std::string_view replacement) {
    const auto old_count = static_cast<long>(count_code_points(original));
    const auto new_count = static_cast<long>(count_code_points(replacement));
    for_each_char(replacement, [&](char32_t c) { changes->push_back({c, 0}); });
    const long diff = new_count - old_count;
    if (diff > 0) {
      for (long i = 0; i < diff; ++i)
        (*changes)[changes->size() - 1 - static_cast<size_t>(i)].change = 1;
    } else if (diff < 0 && !changes->empty()) {
      changes->back().change += static_cast<int>(diff);
    }
  }

  std::vector<uint32_t> trie_;
  std::string normalized_;
};

// ---------------------------------------------------------------------------------------
// Sequence
// ---------------------------------------------------------------------------------------

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> normalizers)
      : normalizers_(std::move(normalizers)) {}
  void normalize(NormalizedString& text) const override {
    for (const auto& normalizer : normalizers_) normalizer->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> normalizers_;
};

// Files written before the "type" tag existed are recognised by their fields, trying the
// variants in the reference's order. Only the variants that ever had fields can match.
std::string infer_legacy_type(const json& config) {
  auto has = [&](const char* field) { return config.contains(field); };
  if (has("clean_text") && has("handle_chinese_chars") && has("lowercase")) return "BertNormalizer";
  if (has("strip_left") && has("strip_right")) return "Strip";
  if (has("normalizers")) return "Sequence";
  if (has("precompiled_charsmap")) return "Precompiled";
  if (has("pattern") && has("content")) return "Replace";
  if (has("prepend")) return "Prepend";
  throw ConfigError("normalizer: missing field \"type\" and the fields match no normalizer (" +
                    config.dump() + "); supported types: " + kSupportedTypes);
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& config) {
  const std::optional<std::string> tag = read_type_tag(config, "normalizer");
  const std::string type = tag ? *tag : infer_legacy_type(config);
  const ConfigReader reader(config, "normalizer", type);

  if (type == "BertNormalizer") {
    const bool lowercase = reader.get_bool("lowercase");
    // null or absent: accents go when case goes
    const bool strip_accents = reader.get_bool_or("strip_accents", lowercase);
    return std::make_unique<BertNormalizer>(reader.get_bool("clean_text"),
                                            reader.get_bool("handle_chinese_chars"), strip_accents,
                                            lowercase);
  }
  if (type == "NFC") return std::make_unique<UnicodeForm>(UnicodeForm::Form::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeForm>(UnicodeForm::Form::kNfd);
  if (type == "NFKC") return std::make_unique<UnicodeForm>(UnicodeForm::Form::kNfkc);
  if (type == "NFKD") return std::make_unique<UnicodeForm>(UnicodeForm::Form::kNfkd);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "Nmt") return std::make_unique<Nmt>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "Strip") {
    return std::make_unique<Strip>(reader.get_bool("strip_left"), reader.get_bool("strip_right"));
  }
  if (type == "Prepend") return std::make_unique<Prepend>(reader.get_string("prepend"));
  if (type == "Replace") {
    Pattern pattern = reader.get_pattern("pattern");
    return std::make_unique<Replace>(std::move(pattern), reader.get_string("content"));
  }
  if (type == "Precompiled") {
    std::optional<std::string> blob = decode_base64(reader.get_string("precompiled_charsmap"));
    if (!blob) reader.fail("field \"precompiled_charsmap\" is not valid base64");
    return std::make_unique<Precompiled>(*blob);
  }
  if (type == "Sequence") {
    return std::make_unique<SequenceNormalizer>(reader.map_array("normalizers", make_normalizer));
  }
  unsupported_type("normalizer", type, kSupportedTypes);
}

}  // namespace sparkd::tokenizer
