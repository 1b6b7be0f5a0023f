// Post-processors, following Hugging Face's processors/*.rs and the PostProcessor::process
// default method (tokenizer/mod.rs). Each processor works on the list of encodings
// (`process_encodings`, which Sequence chains); `process` prepares the list, runs the
// processor and merges the result, as the library does.
#include "engine/tokenizer/post_processors.h"

#include <charconv>
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tokenizer/config_reader.h"
#include "engine/tokenizer/error.h"
#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {
namespace {

using nlohmann::json;

// A special token (text, id), serialized as the two-element array ["[SEP]", 102].
struct SpecialToken {
  std::string token;
  uint32_t id = 0;
};

uint32_t as_u32(const ConfigReader& reader, const json& value, std::string_view field) {
  return static_cast<uint32_t>(reader.as_uint(value, field, std::numeric_limits<uint32_t>::max()));
}

SpecialToken get_token_pair(const ConfigReader& reader, std::string_view field) {
  const json& value = reader.require(field);
  if (!value.is_array() || value.size() != 2 || !value[0].is_string()) {
    reader.fail("field \"" + std::string(field) + "\" must be a [token, id] pair");
  }
  return {value[0].get<std::string>(), as_u32(reader, value[1], field)};
}

// ---------------------------------------------------------------------------------------
// The shared processing skeleton.
// ---------------------------------------------------------------------------------------

class ChainableProcessor : public PostProcessor {
 public:
  // Transforms the list of encodings (one, or two for a pair); Sequence feeds one
  // processor's output into the next.
  virtual std::vector<Encoding> process_encodings(std::vector<Encoding> encodings,
                                                  bool add_special_tokens) const = 0;

  // The library's default `process`: label each input with its sequence id and type id
  // (the type id only on the encoding itself, not on its overflowing parts), let the
  // processor work, then merge everything without growing offsets.
  Encoding process(Encoding encoding, std::optional<Encoding> pair,
                   bool add_special_tokens) const final {
    std::vector<Encoding> encodings;
    encodings.push_back(std::move(encoding));
    if (pair) encodings.push_back(std::move(*pair));
    for (size_t i = 0; i < encodings.size(); ++i) {
      Encoding& e = encodings[i];
      e.set_sequence_id(i);
      for (Encoding& o : e.overflowing) o.set_sequence_id(i);
      e.set_type_ids(static_cast<uint32_t>(i));
    }
    return Encoding::merge(process_encodings(std::move(encodings), add_special_tokens), false);
  }
};

using ProcessorPtr = std::unique_ptr<ChainableProcessor>;
ProcessorPtr parse_processor(const json& config);

// Byte-level offsets trimming (byte_level.rs process_offsets): tokens that start or end
// with spaces ('Ġ', the GPT-2 char for ' ', or real whitespace) get offsets that exclude
// them. A single leading space on the first token is kept when add_prefix_space is on,
// because that space was added by the pre-tokenizer rather than present in the input.
void trim_offsets(Encoding* encoding, bool add_prefix_space) {
  constexpr char32_t kSpaceChar = U'\u0120';  // 'Ġ'
  auto is_space = [](char32_t c) { return c == kSpaceChar || is_whitespace(c); };
  for (size_t i = 0; i < encoding->tokens.size(); ++i) {
    const std::vector<char32_t> chars = to_code_points(encoding->tokens[i]);
    size_t leading = 0;
    while (leading < chars.size() && is_space(chars[leading])) ++leading;
    size_t trailing = 0;
    while (trailing < chars.size() && is_space(chars[chars.size() - 1 - trailing])) ++trailing;
    if (leading == 0 && trailing == 0) continue;

    Offsets& offsets = encoding->offsets[i];
    if (leading > 0) {
      // With pre-tokenized input, a later token may also start at 0: treat it as first.
      const bool is_first = i == 0 || offsets.first == 0;
      if (is_first && add_prefix_space && leading == 1) leading = 0;
      offsets.first = std::min(offsets.first + leading, offsets.second);
    }
    if (trailing > 0 && offsets.second >= trailing) {
      offsets.second = std::max(offsets.second - trailing, offsets.first);
    }
  }
}

void trim_offsets_with_overflowing(std::vector<Encoding>* encodings, bool add_prefix_space) {
  for (Encoding& e : *encodings) {
    trim_offsets(&e, add_prefix_space);
    for (Encoding& o : e.overflowing) trim_offsets(&o, add_prefix_space);
  }
}

// How Bert/Roberta wrap one encoding: an optional special token before, one after.
struct WrapSpec {
  const SpecialToken* before = nullptr;  // nullptr: nothing before
  const SpecialToken* after = nullptr;
  uint32_t before_type_id = 0;
  uint32_t after_type_id = 0;
  bool zero_type_ids = false;  // Roberta: every type id becomes 0
  size_t sequence_id = 0;
};

// Wraps `e` (ignoring its overflowing). The sequence range covers only the original tokens.
Encoding wrap_one(const Encoding& e, const WrapSpec& spec) {
  Encoding out;
  const size_t n = e.size();
  const size_t total = n + (spec.before ? 2 : 1);
  out.ids.reserve(total);
  auto push_special = [&out](const SpecialToken& t, uint32_t type_id) {
    out.ids.push_back(t.id);
    out.type_ids.push_back(type_id);
    out.tokens.push_back(t.token);
    out.words.push_back(std::nullopt);
    out.offsets.emplace_back(0, 0);
    out.special_tokens_mask.push_back(1);
  };
  if (spec.before) push_special(*spec.before, spec.before_type_id);
  out.ids.insert(out.ids.end(), e.ids.begin(), e.ids.end());
  out.type_ids.insert(out.type_ids.end(), e.type_ids.begin(), e.type_ids.end());
  out.tokens.insert(out.tokens.end(), e.tokens.begin(), e.tokens.end());
  out.words.insert(out.words.end(), e.words.begin(), e.words.end());
  out.offsets.insert(out.offsets.end(), e.offsets.begin(), e.offsets.end());
  out.special_tokens_mask.insert(out.special_tokens_mask.end(), n, 0);
  push_special(*spec.after, spec.after_type_id);
  if (spec.zero_type_ids) out.type_ids.assign(out.ids.size(), 0);
  out.attention_mask.assign(out.ids.size(), 1);
  const size_t first = spec.before ? 1 : 0;
  out.sequence_ranges[spec.sequence_id] = {first, out.ids.size() - 1};
  return out;
}

// Wraps `e` and, the same way, each of its overflowing parts (whose own overflowing is
// dropped, as in the library).
Encoding wrap(Encoding e, const WrapSpec& spec) {
  Encoding out = wrap_one(e, spec);
  for (const Encoding& o : e.overflowing) out.overflowing.push_back(wrap_one(o, spec));
  return out;
}

// ---------------------------------------------------------------------------------------
// BertProcessing: [CLS] A [SEP] (type 0) then B [SEP] (type 1).
// ---------------------------------------------------------------------------------------
class BertProcessing final : public ChainableProcessor {
 public:
  BertProcessing(SpecialToken sep, SpecialToken cls) : sep_(std::move(sep)), cls_(std::move(cls)) {}

  size_t added_tokens(bool is_pair) const override { return is_pair ? 3 : 2; }

  std::vector<Encoding> process_encodings(std::vector<Encoding> encodings,
                                          bool add_special_tokens) const override {
    // Without special tokens the inputs pass through; process() already set type ids 0/1.
    if (!add_special_tokens) return encodings;
    for (size_t i = 0; i < encodings.size(); ++i) {
      WrapSpec spec;
      spec.after = &sep_;
      if (i == 0) {
        spec.before = &cls_;
        spec.sequence_id = 0;
      } else {
        spec.after_type_id = 1;
        spec.sequence_id = 1;
      }
      encodings[i] = wrap(std::move(encodings[i]), spec);
    }
    return encodings;
  }

 private:
  SpecialToken sep_;
  SpecialToken cls_;
};

// ---------------------------------------------------------------------------------------
// RobertaProcessing: <s> A </s> then </s> B </s>, all type 0, optional offsets trimming.
// ---------------------------------------------------------------------------------------
class RobertaProcessing final : public ChainableProcessor {
 public:
  RobertaProcessing(SpecialToken sep, SpecialToken cls, bool trim, bool add_prefix_space)
      : sep_(std::move(sep)),
        cls_(std::move(cls)),
        trim_(trim),
        add_prefix_space_(add_prefix_space) {}

  size_t added_tokens(bool is_pair) const override { return is_pair ? 4 : 2; }

  std::vector<Encoding> process_encodings(std::vector<Encoding> encodings,
                                          bool add_special_tokens) const override {
    if (trim_) trim_offsets_with_overflowing(&encodings, add_prefix_space_);
    // Roberta has no segment embeddings: every type id is 0, even without special tokens.
    // (Only the encodings themselves; overflowing parts are zeroed when wrapped below.)
    for (Encoding& e : encodings) e.set_type_ids(0);
    if (!add_special_tokens) return encodings;
    for (size_t i = 0; i < encodings.size(); ++i) {
      WrapSpec spec;
      spec.before = i == 0 ? &cls_ : &sep_;
      spec.after = &sep_;
      spec.zero_type_ids = true;
      spec.sequence_id = i == 0 ? 0 : 1;
      encodings[i] = wrap(std::move(encodings[i]), spec);
    }
    return encodings;
  }

 private:
  SpecialToken sep_;
  SpecialToken cls_;
  bool trim_;
  bool add_prefix_space_;
};

// ---------------------------------------------------------------------------------------
// ByteLevel: only trims offsets; adds no tokens.
// ---------------------------------------------------------------------------------------
class ByteLevelProcessing final : public ChainableProcessor {
 public:
  ByteLevelProcessing(bool trim, bool add_prefix_space)
      : trim_(trim), add_prefix_space_(add_prefix_space) {}

  size_t added_tokens(bool) const override { return 0; }

  std::vector<Encoding> process_encodings(std::vector<Encoding> encodings, bool) const override {
    if (trim_) trim_offsets_with_overflowing(&encodings, add_prefix_space_);
    for (size_t i = 0; i < encodings.size(); ++i) encodings[i].set_sequence_id(i);
    return encodings;
  }

 private:
  bool trim_;
  bool add_prefix_space_;
};

// ---------------------------------------------------------------------------------------
// TemplateProcessing: pieces like "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1".
// ---------------------------------------------------------------------------------------
struct Piece {
  bool is_sequence = false;
  size_t sequence = 0;     // 0 for $A, 1 for $B (when is_sequence)
  std::string special_id;  // key into the special tokens map (when !is_sequence)
  uint32_t type_id = 0;
};

struct TemplateSpecialToken {
  std::vector<uint32_t> ids;
  std::vector<std::string> tokens;
};

// Rust's `str::parse::<u32>`: optional '+', then at least one decimal digit, no overflow.
bool parse_u32(std::string_view s, uint32_t* out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  const auto result = std::from_chars(s.data(), s.data() + s.size(), *out);
  return result.ec == std::errc() && result.ptr == s.data() + s.size();
}

// "$", "$A", "$a" -> A; "$B", "$b" -> B; "$N" -> A with type id N; otherwise the text is
// a special token id. False when a "$..." form is not recognised.
bool piece_from_id(std::string_view s, Piece* piece) {
  *piece = Piece{};
  if (s.empty() || s.front() != '$') {
    piece->special_id = std::string(s);
    return true;
  }
  const std::string_view rest = s.substr(1);
  piece->is_sequence = true;
  if (rest.empty() || rest == "A" || rest == "a") return true;
  if (rest == "B" || rest == "b") {
    piece->sequence = 1;
    return true;
  }
  return parse_u32(rest, &piece->type_id);
}

// The string form of one piece: "<id>" or "<id>:<type_id>".
Piece piece_from_string(const std::string& s) {
  const auto error = [&s]() {
    return ConfigError("post_processor TemplateProcessing: Cannot build Piece from string \"" + s +
                       "\"");
  };
  Piece piece;
  const size_t colon = s.find(':');
  if (colon == std::string::npos) {
    if (!piece_from_id(s, &piece)) throw error();
    return piece;
  }
  if (s.find(':', colon + 1) != std::string::npos) throw error();
  uint32_t type_id = 0;
  if (!parse_u32(std::string_view(s).substr(colon + 1), &type_id)) throw error();
  if (!piece_from_id(std::string_view(s).substr(0, colon), &piece)) throw error();
  piece.type_id = type_id;
  return piece;
}

// One piece as serialized ({"Sequence": {"id": "A", "type_id": 0}} or
// {"SpecialToken": {"id": "[CLS]", "type_id": 0}}), or in the string form.
Piece parse_piece(const ConfigReader& reader, const json& value, std::string_view field) {
  if (value.is_string()) return piece_from_string(value.get<std::string>());
  if (!value.is_object() || value.size() != 1) {
    reader.fail("each piece of \"" + std::string(field) +
                "\" must be {\"Sequence\": ...} or {\"SpecialToken\": ...}");
  }
  const std::string& kind = value.begin().key();
  const json& body = value.begin().value();
  if (!body.is_object()) reader.fail("piece \"" + kind + "\" must be an object");
  const ConfigReader piece_reader = reader.nested(body);
  Piece piece;
  piece.type_id = as_u32(reader, piece_reader.require("type_id"), "type_id");
  const json& id = piece_reader.require("id");
  if (kind == "Sequence") {
    piece.is_sequence = true;
    if (id == "A") {
      piece.sequence = 0;
    } else if (id == "B") {
      piece.sequence = 1;
    } else {
      reader.fail("a Sequence piece's \"id\" must be \"A\" or \"B\"");
    }
  } else if (kind == "SpecialToken") {
    piece.special_id = reader.as_string(id, "id");
  } else {
    reader.fail("unknown piece kind \"" + kind + "\" (expected Sequence or SpecialToken)");
  }
  return piece;
}

// A template: a list of pieces, or one string of pieces separated by single spaces.
std::vector<Piece> parse_template(const ConfigReader& reader, std::string_view field) {
  const json& value = reader.require(field);
  std::vector<Piece> pieces;
  if (value.is_string()) {
    // Split on every ' ' (so "a  b" has an empty piece, as in the library).
    const std::string text = value.get<std::string>();
    size_t begin = 0;
    while (true) {
      const size_t space = text.find(' ', begin);
      pieces.push_back(piece_from_string(text.substr(begin, space - begin)));
      if (space == std::string::npos) break;
      begin = space + 1;
    }
    return pieces;
  }
  if (!value.is_array()) reader.fail("field \"" + std::string(field) + "\" must be an array");
  for (const json& item : value) pieces.push_back(parse_piece(reader, item, field));
  return pieces;
}

class TemplateProcessing final : public ChainableProcessor {
 public:
  TemplateProcessing(std::vector<Piece> single, std::vector<Piece> pair,
                     std::map<std::string, TemplateSpecialToken> special_tokens)
      : single_(std::move(single)),
        pair_(std::move(pair)),
        special_tokens_(std::move(special_tokens)) {
    added_single_ = count_added(single_);
    added_pair_ = count_added(pair_);
  }

  size_t added_tokens(bool is_pair) const override { return is_pair ? added_pair_ : added_single_; }

  std::vector<Encoding> process_encodings(std::vector<Encoding> encodings,
                                          bool add_special_tokens) const override {
    if (encodings.empty() || encodings.size() > 2) {
      throw EncodeError("TemplateProcessing: expected 1 or 2 encodings, got " +
                        std::to_string(encodings.size()));
    }
    const std::vector<Piece>& pieces = encodings.size() == 2 ? pair_ : single_;
    std::vector<Encoding> out;
    for (const Piece& piece : pieces) {
      if (piece.is_sequence) {
        if (piece.sequence >= encodings.size()) {
          // The library indexes out of bounds here (a panic): a single-sequence template
          // that refers to $B.
          throw EncodeError(
              "TemplateProcessing: the template refers to sequence $B but no "
              "pair was given");
        }
        // The input itself takes the piece's type id (if it appears twice, each copy keeps
        // the type id of its own piece).
        Encoding& e = encodings[piece.sequence];
        e.set_type_ids(piece.type_id);
        e.set_sequence_id(piece.sequence);
        out.push_back(e);
      } else if (add_special_tokens) {
        out.push_back(special_encoding(piece));
      }
    }
    return out;
  }

 private:
  // Special tokens missing from the map add nothing to the count (the library only fails
  // when it actually has to insert them).
  size_t count_added(const std::vector<Piece>& pieces) const {
    size_t n = 0;
    for (const Piece& piece : pieces) {
      if (piece.is_sequence) continue;
      auto it = special_tokens_.find(piece.special_id);
      if (it != special_tokens_.end()) n += it->second.ids.size();
    }
    return n;
  }

  Encoding special_encoding(const Piece& piece) const {
    auto it = special_tokens_.find(piece.special_id);
    if (it == special_tokens_.end()) {
      // The library loads such a template but panics here; we report it instead.
      throw EncodeError("TemplateProcessing: missing SpecialToken with id \"" + piece.special_id +
                        "\"");
    }
    const TemplateSpecialToken& token = it->second;
    const size_t n = token.ids.size();
    Encoding e;
    e.ids = token.ids;
    e.type_ids.assign(n, piece.type_id);
    e.tokens = token.tokens;
    e.words.assign(n, std::nullopt);
    e.offsets.assign(n, Offsets{0, 0});
    e.special_tokens_mask.assign(n, 1);
    e.attention_mask.assign(n, 1);
    return e;
  }

  std::vector<Piece> single_;
  std::vector<Piece> pair_;
  std::map<std::string, TemplateSpecialToken> special_tokens_;
  size_t added_single_ = 0;
  size_t added_pair_ = 0;
};

ProcessorPtr parse_template_processing(const ConfigReader& reader) {
  std::vector<Piece> single = parse_template(reader, "single");
  std::vector<Piece> pair = parse_template(reader, "pair");
  std::map<std::string, TemplateSpecialToken> special_tokens;
  // Pieces refer to the map key (normally equal to the entry's own "id").
  for (const auto& [key, entry] : reader.get_object("special_tokens").items()) {
    if (!entry.is_object()) reader.fail("special_tokens[\"" + key + "\"] must be an object");
    const ConfigReader entry_reader = reader.nested(entry);
    entry_reader.require("id");
    const json& ids = entry_reader.require("ids");
    const json& tokens = entry_reader.require("tokens");
    if (!ids.is_array() || !tokens.is_array()) {
      reader.fail("special_tokens[\"" + key + "\"]: \"ids\" and \"tokens\" must be arrays");
    }
    TemplateSpecialToken token;
    for (const json& id : ids) token.ids.push_back(as_u32(reader, id, "ids"));
    for (const json& t : tokens) token.tokens.push_back(reader.as_string(t, "tokens"));
    if (token.ids.size() != token.tokens.size()) {
      // The library would build encodings of mismatched lengths; refuse instead.
      reader.fail("special_tokens[\"" + key + "\"]: ids and tokens must be of the same length");
    }
    special_tokens.emplace(key, std::move(token));
  }
  return std::make_unique<TemplateProcessing>(std::move(single), std::move(pair),
                                              std::move(special_tokens));
}

// ---------------------------------------------------------------------------------------
// Sequence: processors applied one after the other to the list of encodings.
// ---------------------------------------------------------------------------------------
class SequenceProcessing final : public ChainableProcessor {
 public:
  explicit SequenceProcessing(std::vector<ProcessorPtr> processors)
      : processors_(std::move(processors)) {}

  size_t added_tokens(bool is_pair) const override {
    size_t n = 0;
    for (const ProcessorPtr& p : processors_) n += p->added_tokens(is_pair);
    return n;
  }

  std::vector<Encoding> process_encodings(std::vector<Encoding> encodings,
                                          bool add_special_tokens) const override {
    for (const ProcessorPtr& p : processors_) {
      encodings = p->process_encodings(std::move(encodings), add_special_tokens);
    }
    return encodings;
  }

 private:
  std::vector<ProcessorPtr> processors_;
};

// ---------------------------------------------------------------------------------------
// Parsing by "type".
// ---------------------------------------------------------------------------------------

// Old files may omit "type"; the library then tries each shape in turn (Roberta before
// Bert, since a Roberta config also fits Bert's fields).
std::string infer_legacy_type(const json& config) {
  if (config.contains("sep") && config.contains("cls")) {
    if (config.contains("trim_offsets") && config.contains("add_prefix_space")) {
      return "RobertaProcessing";
    }
    return "BertProcessing";
  }
  if (config.contains("single") && config.contains("pair") && config.contains("special_tokens")) {
    return "TemplateProcessing";
  }
  throw ConfigError("post_processor: missing field \"type\"");
}

ProcessorPtr parse_processor(const json& config) {
  const std::optional<std::string> tag = read_type_tag(config, "post_processor");
  const std::string type = tag ? *tag : infer_legacy_type(config);
  const ConfigReader reader(config, "post_processor", type);
  if (type == "TemplateProcessing") return parse_template_processing(reader);
  if (type == "BertProcessing") {
    SpecialToken sep = get_token_pair(reader, "sep");
    SpecialToken cls = get_token_pair(reader, "cls");
    return std::make_unique<BertProcessing>(std::move(sep), std::move(cls));
  }
  if (type == "RobertaProcessing") {
    SpecialToken sep = get_token_pair(reader, "sep");
    SpecialToken cls = get_token_pair(reader, "cls");
    const bool trim = reader.get_bool("trim_offsets");
    const bool add_prefix_space = reader.get_bool("add_prefix_space");
    return std::make_unique<RobertaProcessing>(std::move(sep), std::move(cls), trim,
                                               add_prefix_space);
  }
  if (type == "ByteLevel") {
    // All three are read by the library (use_regex is optional and unused here).
    const bool add_prefix_space = reader.get_bool("add_prefix_space");
    const bool trim = reader.get_bool("trim_offsets");
    if (reader.has("use_regex")) reader.get_bool("use_regex");
    return std::make_unique<ByteLevelProcessing>(trim, add_prefix_space);
  }
  if (type == "Sequence") {
    return std::make_unique<SequenceProcessing>(reader.map_array("processors", parse_processor));
  }
  unsupported_type("post_processor", type,
                   "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence");
}

}  // namespace

Encoding default_post_process(Encoding encoding, std::optional<Encoding> pair) {
  // A single input is returned untouched (no sequence id is set); a pair is labelled 0/1
  // and concatenated.
  if (!pair) return encoding;
  Encoding merged;
  encoding.set_sequence_id(0);
  merged.merge_with(std::move(encoding), false);
  pair->set_sequence_id(1);
  merged.merge_with(std::move(*pair), false);
  return merged;
}

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& config) {
  return parse_processor(config);
}

}  // namespace sparkd::tokenizer
