// Decoders, following Hugging Face's decoders/*.rs (plus the ByteLevel and Metaspace
// decoders in pre_tokenizers/ and Replace in normalizers/replace.rs). Each one maps a list
// of token strings to another list; Decoder::decode concatenates the final list.
#include "engine/tokenizer/decoders.h"

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "engine/tokenizer/config_reader.h"
#include "engine/tokenizer/error.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {

std::string Decoder::decode(std::vector<std::string> tokens) const {
  std::string text;
  for (const std::string& piece : decode_chain(std::move(tokens))) text += piece;
  return text;
}

namespace {

using nlohmann::json;
using Tokens = std::vector<std::string>;

// ---------------------------------------------------------------------------------------
// String helpers with Rust's semantics.
// ---------------------------------------------------------------------------------------

// Rust's `str::replace`: non-overlapping, left to right. An empty `from` matches before
// every character and at the end ("ab" -> "XaXbX"), which is also what the library's
// regex-based Replace does with an empty string pattern.
std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  if (from.empty()) {
    size_t pos = 0;
    while (pos < text.size()) {
      out += to;
      const size_t start = pos;
      pos += utf8_sequence_length(static_cast<unsigned char>(text[pos]));
      out += text.substr(start, pos - start);
    }
    out += to;
    return out;
  }
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(from, pos);
    if (hit == std::string_view::npos) break;
    out += text.substr(pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out += text.substr(pos);
  return out;
}

// WordPiece's cleanup of tokenization artifacts (decoders/wordpiece.rs), applied in this
// order, each to the result of the previous one.
std::string wordpiece_cleanup(std::string text) {
  static constexpr std::pair<std::string_view, std::string_view> kReplacements[] = {
      {" .", "."},   {" ?", "?"},     {" !", "!"},     {" ,", ","},
      {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},   {" do not", " don't"},
      {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : kReplacements) text = replace_all(text, from, to);
  return text;
}

// Rust's `u8::from_str_radix(s, 16)`: an optional '+', then at least one hex digit.
std::optional<uint8_t> parse_hex_byte(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  unsigned value = 0;
  for (char c : s) {
    unsigned digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<unsigned>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<unsigned>(c - 'A' + 10);
    } else {
      return std::nullopt;
    }
    value = value * 16 + digit;
  }
  if (value > 0xFF) return std::nullopt;
  return static_cast<uint8_t>(value);
}

// ---------------------------------------------------------------------------------------
// The decoders.
// ---------------------------------------------------------------------------------------

// GPT-2 byte-level: each token char stands for one byte. A token containing any char
// outside the table contributes its own UTF-8 bytes unchanged. The bytes of all tokens
// are then decoded as UTF-8, invalid sequences becoming U+FFFD (from_utf8_lossy).
class ByteLevelDecoder final : public Decoder {
 public:
  Tokens decode_chain(Tokens tokens) const override {
    std::string bytes;
    std::string token_bytes;
    for (const std::string& token : tokens) {
      token_bytes.clear();
      bool all_mapped = true;
      size_t pos = 0;
      while (pos < token.size()) {
        const int b = unicode_to_byte(next_code_point(token, &pos));
        if (b < 0) {
          all_mapped = false;
          break;
        }
        token_bytes.push_back(static_cast<char>(static_cast<unsigned char>(b)));
      }
      bytes += all_mapped ? token_bytes : token;
    }
    return {sanitize_utf8(bytes)};
  }
};

// WordPiece: tokens after the first get a space unless they carry the continuation
// prefix (which is removed). Cleanup runs on each token separately.
class WordPieceDecoder final : public Decoder {
 public:
  WordPieceDecoder(std::string prefix, bool cleanup)
      : prefix_(std::move(prefix)), cleanup_(cleanup) {}

  Tokens decode_chain(Tokens tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& token = tokens[i];
      if (i != 0) {
        if (token.starts_with(prefix_)) {
          token.erase(0, prefix_.size());
        } else {
          // Not token.insert(0, " "): GCC 12 at -O3 warns wrongly about that (-Wrestrict,
          // GCC bug 105329).
          std::string spaced;
          spaced.reserve(token.size() + 1);
          spaced += ' ';
          spaced += token;
          token = std::move(spaced);
        }
      }
      if (cleanup_) token = wordpiece_cleanup(std::move(token));
    }
    return tokens;
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

// Metaspace: the replacement char becomes a space. In the first token every replacement
// char is dropped instead (not only a leading one), unless the prepend scheme is "never".
class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, PrependScheme scheme)
      : replacement_(replacement), scheme_(scheme) {}

  Tokens decode_chain(Tokens tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const bool drop = i == 0 && scheme_ != PrependScheme::kNever;
      std::string out;
      size_t pos = 0;
      const std::string& token = tokens[i];
      while (pos < token.size()) {
        const size_t start = pos;
        const char32_t c = next_code_point(token, &pos);
        if (c != replacement_) {
          out.append(token, start, pos - start);
        } else if (!drop) {
          out.push_back(' ');
        }
      }
      tokens[i] = std::move(out);
    }
    return tokens;
  }

 private:
  char32_t replacement_;
  PrependScheme scheme_;
};

// ByteFallback: runs of "<0xNN>" tokens become the bytes they name. A run that is valid
// UTF-8 becomes one token; otherwise each of its bytes becomes one U+FFFD token.
class ByteFallbackDecoder final : public Decoder {
 public:
  Tokens decode_chain(Tokens tokens) const override {
    Tokens out;
    std::string run;
    auto flush = [&out, &run]() {
      if (run.empty()) return;
      if (is_valid_utf8(run)) {
        out.push_back(run);
      } else {
        out.insert(out.end(), run.size(), "\xEF\xBF\xBD");
      }
      run.clear();
    };
    for (std::string& token : tokens) {
      std::optional<uint8_t> byte;
      if (token.size() == 6 && token.starts_with("<0x") && token.back() == '>') {
        byte = parse_hex_byte(std::string_view(token).substr(3, 2));
      }
      if (byte) {
        run.push_back(static_cast<char>(*byte));
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    return out;
  }
};

// Fuse: everything into one token.
class FuseDecoder final : public Decoder {
 public:
  Tokens decode_chain(Tokens tokens) const override {
    std::string joined;
    for (const std::string& t : tokens) joined += t;
    return {joined};
  }
};

// Strip: removes up to `start` leading and `stop` trailing occurrences of `content` from
// each token.
class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}

  Tokens decode_chain(Tokens tokens) const override {
    for (std::string& token : tokens) {
      const std::vector<char32_t> chars = to_code_points(token);
      size_t start_cut = 0;
      while (start_cut < start_ && start_cut < chars.size() && chars[start_cut] == content_) {
        ++start_cut;
      }
      size_t stop_cut = chars.size();
      for (size_t i = 0; i < stop_; ++i) {
        if (i >= chars.size()) {
          // The library indexes before the start of the token here (a panic).
          throw EncodeError("Strip decoder: cannot strip " + std::to_string(stop_) +
                            " trailing chars from a token of " + std::to_string(chars.size()) +
                            " chars");
        }
        if (chars[chars.size() - 1 - i] != content_) break;
        stop_cut = chars.size() - 1 - i;
      }
      if (start_cut > stop_cut) {
        // The same char counted from both ends: the library's slice panics here.
        throw EncodeError("Strip decoder: start and stop overlap in a token");
      }
      std::string out;
      for (size_t i = start_cut; i < stop_cut; ++i) append_utf8(&out, chars[i]);
      token = std::move(out);
    }
    return tokens;
  }

 private:
  char32_t content_;
  size_t start_;
  size_t stop_;
};

// Replace: every match of the pattern (a literal string or a regex) becomes `content`.
class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}

  Tokens decode_chain(Tokens tokens) const override {
    for (std::string& token : tokens) {
      if (token.empty()) continue;  // the library's matcher yields no match on ""
      std::string out;
      for (const PatternMatch& m : pattern_.find_matches(token)) {
        if (m.is_match) {
          out += content_;
        } else {
          out.append(token, m.offsets.first, m.offsets.second - m.offsets.first);
        }
      }
      token = std::move(out);
    }
    return tokens;
  }

 private:
  Pattern pattern_;
  std::string content_;
};

// BPEDecoder: the end-of-word suffix becomes a space, except in the last token.
class BpeDecoder final : public Decoder {
 public:
  explicit BpeDecoder(std::string suffix) : suffix_(std::move(suffix)) {}

  Tokens decode_chain(Tokens tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = replace_all(tokens[i], suffix_, i + 1 == tokens.size() ? "" : " ");
    }
    return tokens;
  }

 private:
  std::string suffix_;
};

// CTC: collapses repeated tokens, removes the pad token, optionally cleans up and turns
// the word delimiter into a space; tokens left empty are dropped.
class CtcDecoder final : public Decoder {
 public:
  CtcDecoder(std::string pad_token, std::string word_delimiter, bool cleanup)
      : pad_token_(std::move(pad_token)),
        word_delimiter_(std::move(word_delimiter)),
        cleanup_(cleanup) {}

  Tokens decode_chain(Tokens tokens) const override {
    Tokens out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0 && tokens[i] == tokens[i - 1]) continue;
      std::string token = replace_all(tokens[i], pad_token_, "");
      if (cleanup_) token = replace_all(wordpiece_cleanup(std::move(token)), word_delimiter_, " ");
      if (!token.empty()) out.push_back(std::move(token));
    }
    return out;
  }

 private:
  std::string pad_token_;
  std::string word_delimiter_;
  bool cleanup_;
};

// Sequence: each decoder's output list feeds the next.
class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> decoders)
      : decoders_(std::move(decoders)) {}

  Tokens decode_chain(Tokens tokens) const override {
    for (const auto& d : decoders_) tokens = d->decode_chain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> decoders_;
};

// ---------------------------------------------------------------------------------------
// Parsing.
// ---------------------------------------------------------------------------------------

std::unique_ptr<Decoder> parse_metaspace(const ConfigReader& reader) {
  constexpr PrependScheme kSchemes[] = {PrependScheme::kAlways, PrependScheme::kFirst,
                                        PrependScheme::kNever};
  const char32_t replacement = reader.get_char("replacement");
  PrependScheme scheme = PrependScheme::kAlways;  // the default when absent
  if (const json* name = reader.find("prepend_scheme")) {
    scheme = kSchemes[reader.one_of(*name, "prepend_scheme", {"always", "first", "never"})];
  }
  // Legacy files carry add_prefix_space; false means "never" and must not contradict an
  // explicit scheme (the library rejects that, even against the default "always").
  if (!reader.get_bool_or("add_prefix_space", true) && scheme != PrependScheme::kNever) {
    reader.fail("add_prefix_space does not match declared prepend_scheme");
  }
  reader.get_bool_or("split", true);  // checked, but decoding does not use it
  return std::make_unique<MetaspaceDecoder>(replacement, scheme);
}

std::unique_ptr<Decoder> parse_replace(const ConfigReader& reader) {
  Pattern pattern = reader.get_pattern("pattern");
  return std::make_unique<ReplaceDecoder>(std::move(pattern), reader.get_string("content"));
}

// Legacy files may omit "type"; the library then recognises a decoder by its fields (only
// those decoders whose type tag is optional).
std::string infer_legacy_type(const json& config) {
  if (config.contains("suffix")) return "BPEDecoder";
  if (config.contains("prefix") && config.contains("cleanup")) return "WordPiece";
  if (config.contains("pad_token")) return "CTC";
  if (config.contains("pattern")) return "Replace";
  if (config.contains("start") && config.contains("stop")) return "Strip";
  throw ConfigError("decoder: missing field \"type\"");
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& config) {
  const std::optional<std::string> tag = read_type_tag(config, "decoder");
  const std::string type = tag ? *tag : infer_legacy_type(config);
  const ConfigReader reader(config, "decoder", type);
  if (type == "ByteLevel") {
    // The library requires these fields even though decoding ignores them.
    reader.get_bool("add_prefix_space");
    reader.get_bool("trim_offsets");
    if (reader.has("use_regex")) reader.get_bool("use_regex");
    return std::make_unique<ByteLevelDecoder>();
  }
  if (type == "WordPiece") {
    std::string prefix = reader.get_string("prefix");
    return std::make_unique<WordPieceDecoder>(std::move(prefix), reader.get_bool("cleanup"));
  }
  if (type == "Metaspace") return parse_metaspace(reader);
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const char32_t content = reader.get_char("content");
    const size_t start = reader.get_size("start");
    return std::make_unique<StripDecoder>(content, start, reader.get_size("stop"));
  }
  if (type == "Replace") return parse_replace(reader);
  if (type == "Sequence") {
    return std::make_unique<SequenceDecoder>(reader.map_array("decoders", make_decoder));
  }
  if (type == "BPEDecoder") return std::make_unique<BpeDecoder>(reader.get_string("suffix"));
  if (type == "CTC") {
    std::string pad_token = reader.get_string("pad_token");
    std::string word_delimiter = reader.get_string("word_delimiter_token");
    return std::make_unique<CtcDecoder>(std::move(pad_token), std::move(word_delimiter),
                                        reader.get_bool("cleanup"));
  }
  unsupported_type("decoder", type,
                   "BPEDecoder, ByteLevel, WordPiece, Metaspace, CTC, Sequence, Replace, Fuse, "
                   "Strip, ByteFallback");
}

}  // namespace sparkd::tokenizer
