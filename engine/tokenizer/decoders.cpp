// Decoders, following Hugging Face's decoders/*.rs (plus the ByteLevel and Metaspace
// decoders in pre_tokenizers/ and Replace in normalizers/replace.rs). Each one maps a list
// of token strings to another list; Decoder::decode concatenates the final list.
#include "engine/tokenizer/decoders.h"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

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
// JSON helpers: errors name the decoder and the field.
// ---------------------------------------------------------------------------------------

[[noreturn]] void fail(std::string_view what, const std::string& message) {
  throw ConfigError("decoder " + std::string(what) + ": " + message);
}

const json& require(const json& config, std::string_view what, const char* field) {
  auto it = config.find(field);
  if (it == config.end()) fail(what, std::string("missing field \"") + field + "\"");
  return *it;
}

bool require_bool(const json& config, std::string_view what, const char* field) {
  const json& value = require(config, what, field);
  if (!value.is_boolean()) fail(what, std::string("field \"") + field + "\" must be a boolean");
  return value.get<bool>();
}

std::string require_string(const json& config, std::string_view what, const char* field) {
  const json& value = require(config, what, field);
  if (!value.is_string()) fail(what, std::string("field \"") + field + "\" must be a string");
  return value.get<std::string>();
}

size_t require_size(const json& config, std::string_view what, const char* field) {
  const json& value = require(config, what, field);
  if (!value.is_number_unsigned() || value.get<uint64_t>() > std::numeric_limits<size_t>::max()) {
    fail(what, std::string("field \"") + field + "\" must be a non-negative integer");
  }
  return static_cast<size_t>(value.get<uint64_t>());
}

// A Rust `char` field: a string holding exactly one code point.
char32_t require_char(const json& config, std::string_view what, const char* field) {
  const std::string text = require_string(config, what, field);
  if (!is_valid_utf8(text) || count_code_points(text) != 1) {
    fail(what, std::string("field \"") + field + "\" must be a single character");
  }
  size_t pos = 0;
  return next_code_point(text, &pos);
}

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
          token.insert(0, " ");
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

// Replace: every match of a literal string or a regex becomes `content`.
class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(std::optional<std::string> literal, std::optional<Pattern> regex,
                 std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}

  Tokens decode_chain(Tokens tokens) const override {
    for (std::string& token : tokens) {
      if (token.empty()) continue;  // the library's matcher yields no match on ""
      if (literal_) {
        token = replace_all(token, *literal_, content_);
        continue;
      }
      std::string out;
      for (const PatternMatch& m : regex_->find_matches(token)) {
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
  std::optional<std::string> literal_;
  std::optional<Pattern> regex_;
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

std::unique_ptr<Decoder> parse_byte_level(const json& config) {
  // The library requires these fields even though decoding ignores them.
  require_bool(config, "ByteLevel", "add_prefix_space");
  require_bool(config, "ByteLevel", "trim_offsets");
  if (config.contains("use_regex")) require_bool(config, "ByteLevel", "use_regex");
  return std::make_unique<ByteLevelDecoder>();
}

std::unique_ptr<Decoder> parse_wordpiece(const json& config) {
  return std::make_unique<WordPieceDecoder>(require_string(config, "WordPiece", "prefix"),
                                            require_bool(config, "WordPiece", "cleanup"));
}

std::unique_ptr<Decoder> parse_metaspace(const json& config) {
  constexpr std::string_view kWhat = "Metaspace";
  const char32_t replacement = require_char(config, kWhat, "replacement");
  PrependScheme scheme = PrependScheme::kAlways;  // the default when absent
  if (config.contains("prepend_scheme")) {
    const std::string name = require_string(config, kWhat, "prepend_scheme");
    if (name == "always") {
      scheme = PrependScheme::kAlways;
    } else if (name == "first") {
      scheme = PrependScheme::kFirst;
    } else if (name == "never") {
      scheme = PrependScheme::kNever;
    } else {
      fail(kWhat, "field \"prepend_scheme\" must be \"first\", \"never\" or \"always\", got \"" +
                      name + "\"");
    }
  }
  // Legacy files carry add_prefix_space; false means "never" and must not contradict an
  // explicit scheme (the library rejects that, even against the default "always").
  auto legacy = config.find("add_prefix_space");
  if (legacy != config.end() && !legacy->is_null()) {
    if (!legacy->is_boolean()) fail(kWhat, "field \"add_prefix_space\" must be a boolean");
    if (!legacy->get<bool>()) {
      if (scheme != PrependScheme::kNever) {
        fail(kWhat, "add_prefix_space does not match declared prepend_scheme");
      }
    }
  }
  auto split = config.find("split");
  if (split != config.end() && !split->is_null() && !split->is_boolean()) {
    fail(kWhat, "field \"split\" must be a boolean");
  }
  return std::make_unique<MetaspaceDecoder>(replacement, scheme);
}

std::unique_ptr<Decoder> parse_strip(const json& config) {
  constexpr std::string_view kWhat = "Strip";
  return std::make_unique<StripDecoder>(require_char(config, kWhat, "content"),
                                        require_size(config, kWhat, "start"),
                                        require_size(config, kWhat, "stop"));
}

std::unique_ptr<Decoder> parse_replace(const json& config) {
  constexpr std::string_view kWhat = "Replace";
  const json& pattern = require(config, kWhat, "pattern");
  std::string content = require_string(config, kWhat, "content");
  if (!pattern.is_object() || pattern.size() != 1) {
    fail(kWhat, "field \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
  }
  if (auto s = pattern.find("String"); s != pattern.end()) {
    if (!s->is_string()) fail(kWhat, "pattern \"String\" must be a string");
    return std::make_unique<ReplaceDecoder>(s->get<std::string>(), std::nullopt,
                                            std::move(content));
  }
  if (auto r = pattern.find("Regex"); r != pattern.end()) {
    if (!r->is_string()) fail(kWhat, "pattern \"Regex\" must be a string");
    return std::make_unique<ReplaceDecoder>(std::nullopt, Pattern::regex(r->get<std::string>()),
                                            std::move(content));
  }
  fail(kWhat, "field \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
}

std::unique_ptr<Decoder> parse_bpe(const json& config) {
  return std::make_unique<BpeDecoder>(require_string(config, "BPEDecoder", "suffix"));
}

std::unique_ptr<Decoder> parse_ctc(const json& config) {
  constexpr std::string_view kWhat = "CTC";
  return std::make_unique<CtcDecoder>(require_string(config, kWhat, "pad_token"),
                                      require_string(config, kWhat, "word_delimiter_token"),
                                      require_bool(config, kWhat, "cleanup"));
}

std::unique_ptr<Decoder> parse_sequence(const json& config) {
  const json& list = require(config, "Sequence", "decoders");
  if (!list.is_array()) fail("Sequence", "field \"decoders\" must be a list");
  std::vector<std::unique_ptr<Decoder>> decoders;
  for (const json& item : list) decoders.push_back(make_decoder(item));
  return std::make_unique<SequenceDecoder>(std::move(decoders));
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& config) {
  if (!config.is_object()) throw ConfigError("decoder must be a JSON object");
  auto type = config.find("type");
  if (type == config.end()) {
    // Legacy files may omit "type"; the library then recognises a decoder by its fields
    // (only those decoders whose type tag is optional).
    if (config.contains("suffix")) return parse_bpe(config);
    if (config.contains("prefix") && config.contains("cleanup")) return parse_wordpiece(config);
    if (config.contains("pad_token")) return parse_ctc(config);
    if (config.contains("pattern")) return parse_replace(config);
    if (config.contains("start") && config.contains("stop")) return parse_strip(config);
    throw ConfigError("decoder: missing field \"type\"");
  }
  if (!type->is_string()) throw ConfigError("decoder: field \"type\" must be a string");
  const std::string name = type->get<std::string>();
  if (name == "ByteLevel") return parse_byte_level(config);
  if (name == "WordPiece") return parse_wordpiece(config);
  if (name == "Metaspace") return parse_metaspace(config);
  if (name == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (name == "Fuse") return std::make_unique<FuseDecoder>();
  if (name == "Strip") return parse_strip(config);
  if (name == "Replace") return parse_replace(config);
  if (name == "Sequence") return parse_sequence(config);
  if (name == "BPEDecoder") return parse_bpe(config);
  if (name == "CTC") return parse_ctc(config);
  throw ConfigError("unsupported decoder type \"" + name +
                    "\" (supported: BPEDecoder, ByteLevel, WordPiece, Metaspace, CTC, Sequence, "
                    "Replace, Fuse, Strip, ByteFallback)");
}

}  // namespace sparkd::tokenizer
