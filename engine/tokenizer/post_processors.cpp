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
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tokenizer/error.h"
#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------
// JSON helpers. Errors name the processor and the field so a bad tokenizer.json is easy to
// fix.
// ---------------------------------------------------------------------------------------

[[noreturn]] void fail(std::string_view what, const std::string& message) {
  throw ConfigError("post_processor " + std::string(what) + ": " + message);
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

uint32_t to_u32(const json& value, std::string_view what, const std::string& field) {
  if (!value.is_number_unsigned() || value.get<uint64_t>() > std::numeric_limits<uint32_t>::max()) {
    fail(what, "field \"" + field + "\" must be an unsigned 32-bit integer");
  }
  return static_cast<uint32_t>(value.get<uint64_t>());
}

std::string to_string_field(const json& value, std::string_view what, const std::string& field) {
  if (!value.is_string()) fail(what, "field \"" + field + "\" must be a string");
  return value.get<std::string>();
}

// A special token (text, id), serialized as the two-element array ["[SEP]", 102].
struct SpecialToken {
  std::string token;
  uint32_t id = 0;
};

SpecialToken require_token_pair(const json& config, std::string_view what, const char* field) {
  const json& value = require(config, what, field);
  if (!value.is_array() || value.size() != 2 || !value[0].is_string()) {
    fail(what, std::string("field \"") + field + "\" must be a [token, id] pair");
  }
  return {value[0].get<std::string>(), to_u32(value[1], what, field)};
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
Piece parse_piece(const json& value, const char* field) {
  constexpr std::string_view kWhat = "TemplateProcessing";
  if (value.is_string()) return piece_from_string(value.get<std::string>());
  if (!value.is_object() || value.size() != 1) {
    fail(kWhat, std::string("each piece of \"") + field +
                    "\" must be {\"Sequence\": ...} or {\"SpecialToken\": ...}");
  }
  const auto& [kind, body] = *value.items().begin();
  if (!body.is_object()) fail(kWhat, "piece \"" + kind + "\" must be an object");
  Piece piece;
  piece.type_id = to_u32(require(body, kWhat, "type_id"), kWhat, "type_id");
  const json& id = require(body, kWhat, "id");
  if (kind == "Sequence") {
    piece.is_sequence = true;
    if (id == "A") {
      piece.sequence = 0;
    } else if (id == "B") {
      piece.sequence = 1;
    } else {
      fail(kWhat, "a Sequence piece's \"id\" must be \"A\" or \"B\"");
    }
  } else if (kind == "SpecialToken") {
    piece.special_id = to_string_field(id, kWhat, "id");
  } else {
    fail(kWhat, "unknown piece kind \"" + kind + "\" (expected Sequence or SpecialToken)");
  }
  return piece;
}

// A template: a list of pieces, or one string of pieces separated by single spaces.
std::vector<Piece> parse_template(const json& config, const char* field) {
  constexpr std::string_view kWhat = "TemplateProcessing";
  const json& value = require(config, kWhat, field);
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
  if (!value.is_array()) fail(kWhat, std::string("field \"") + field + "\" must be a list");
  for (const json& item : value) pieces.push_back(parse_piece(item, field));
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

ProcessorPtr parse_template_processing(const json& config) {
  constexpr std::string_view kWhat = "TemplateProcessing";
  std::vector<Piece> single = parse_template(config, "single");
  std::vector<Piece> pair = parse_template(config, "pair");
  const json& tokens_json = require(config, kWhat, "special_tokens");
  if (!tokens_json.is_object()) fail(kWhat, "field \"special_tokens\" must be an object");
  std::map<std::string, TemplateSpecialToken> special_tokens;
  // Pieces refer to the map key (normally equal to the entry's own "id").
  for (const auto& [key, entry] : tokens_json.items()) {
    if (!entry.is_object()) fail(kWhat, "special_tokens[\"" + key + "\"] must be an object");
    require(entry, kWhat, "id");
    const json& ids = require(entry, kWhat, "ids");
    const json& tokens = require(entry, kWhat, "tokens");
    if (!ids.is_array() || !tokens.is_array()) {
      fail(kWhat, "special_tokens[\"" + key + "\"]: \"ids\" and \"tokens\" must be lists");
    }
    TemplateSpecialToken token;
    for (const json& id : ids) token.ids.push_back(to_u32(id, kWhat, "ids"));
    for (const json& t : tokens) token.tokens.push_back(to_string_field(t, kWhat, "tokens"));
    if (token.ids.size() != token.tokens.size()) {
      // The library would build encodings of mismatched lengths; refuse instead.
      fail(kWhat, "special_tokens[\"" + key + "\"]: ids and tokens must be of the same length");
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
ProcessorPtr parse_bert(const json& config) {
  constexpr std::string_view kWhat = "BertProcessing";
  SpecialToken sep = require_token_pair(config, kWhat, "sep");
  SpecialToken cls = require_token_pair(config, kWhat, "cls");
  return std::make_unique<BertProcessing>(std::move(sep), std::move(cls));
}

ProcessorPtr parse_roberta(const json& config) {
  constexpr std::string_view kWhat = "RobertaProcessing";
  SpecialToken sep = require_token_pair(config, kWhat, "sep");
  SpecialToken cls = require_token_pair(config, kWhat, "cls");
  const bool trim = require_bool(config, kWhat, "trim_offsets");
  const bool add_prefix_space = require_bool(config, kWhat, "add_prefix_space");
  return std::make_unique<RobertaProcessing>(std::move(sep), std::move(cls), trim,
                                             add_prefix_space);
}

ProcessorPtr parse_byte_level(const json& config) {
  constexpr std::string_view kWhat = "ByteLevel";
  // All three are read by the library (use_regex is optional and unused here).
  const bool add_prefix_space = require_bool(config, kWhat, "add_prefix_space");
  const bool trim = require_bool(config, kWhat, "trim_offsets");
  if (config.contains("use_regex")) require_bool(config, kWhat, "use_regex");
  return std::make_unique<ByteLevelProcessing>(trim, add_prefix_space);
}

ProcessorPtr parse_sequence(const json& config) {
  constexpr std::string_view kWhat = "Sequence";
  const json& list = require(config, kWhat, "processors");
  if (!list.is_array()) fail(kWhat, "field \"processors\" must be a list");
  std::vector<ProcessorPtr> processors;
  for (const json& item : list) processors.push_back(parse_processor(item));
  return std::make_unique<SequenceProcessing>(std::move(processors));
}

ProcessorPtr parse_processor(const json& config) {
  if (!config.is_object()) throw ConfigError("post_processor must be a JSON object");
  auto type = config.find("type");
  if (type == config.end()) {
    // Old files may omit "type"; the library then tries each shape in turn (Roberta
    // before Bert, since a Roberta config also fits Bert's fields).
    if (config.contains("sep") && config.contains("cls")) {
      if (config.contains("trim_offsets") && config.contains("add_prefix_space")) {
        return parse_roberta(config);
      }
      return parse_bert(config);
    }
    if (config.contains("single") && config.contains("pair") && config.contains("special_tokens")) {
      return parse_template_processing(config);
    }
    throw ConfigError("post_processor: missing field \"type\"");
  }
  if (!type->is_string()) throw ConfigError("post_processor: field \"type\" must be a string");
  const std::string name = type->get<std::string>();
  if (name == "TemplateProcessing") return parse_template_processing(config);
  if (name == "BertProcessing") return parse_bert(config);
  if (name == "RobertaProcessing") return parse_roberta(config);
  if (name == "ByteLevel") return parse_byte_level(config);
  if (name == "Sequence") return parse_sequence(config);
  throw ConfigError("unsupported post_processor type \"" + name +
                    "\" (supported: TemplateProcessing, BertProcessing, RobertaProcessing, "
                    "ByteLevel, Sequence)");
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
