#include "engine/tokenizer/ggml_vocabulary.h"

#include <algorithm>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

namespace sparkd::tokenizer {

namespace {

using json = nlohmann::json;

// llama.cpp's pre-tokenizer regexes (src/llama-vocab.cpp), by tokenizer.ggml.pre. Each
// splits every piece the one before left, keeping the matches and the text between them.
struct PreTokenizerRegexes {
  std::vector<std::string> names;
  std::vector<std::string> regexes;
  bool ignore_merges = false;  // a word that is itself a token is not merged (llama 3)
};

const std::vector<PreTokenizerRegexes>& pre_tokenizer_table() {
  static const std::vector<PreTokenizerRegexes> table = {
      {{"gpt-2", "gpt2", "phi-2"},
       {R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))"}},
      {{"smollm"},
       {R"(\p{N})", R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))"}},
      {{"qwen2", "deepseek-r1-qwen"},
       {R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {{"llama3", "llama-v3", "llama-bpe"},
       {R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
       /*ignore_merges=*/true},
      {{"default"},
       {R"([\p{P}\$\+<=>\^~\|]+)",
        R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))", R"(\p{N}+)",
        R"([0-9][0-9][0-9])"}},
  };
  return table;
}

const PreTokenizerRegexes* find_pre_tokenizer(const std::string& name) {
  for (const PreTokenizerRegexes& entry : pre_tokenizer_table()) {
    if (std::find(entry.names.begin(), entry.names.end(), name) != entry.names.end()) {
      return &entry;
    }
  }
  return nullptr;
}

GgmlTokenType type_of(const GgmlVocabulary& vocabulary, size_t id) {
  if (vocabulary.token_types.empty()) return GgmlTokenType::kNormal;
  return static_cast<GgmlTokenType>(vocabulary.token_types[id]);
}

json added_tokens(const GgmlVocabulary& vocabulary) {
  json added = json::array();
  for (size_t id = 0; id < vocabulary.tokens.size(); ++id) {
    const GgmlTokenType type = type_of(vocabulary, id);
    // Control tokens are special (matched in text, skipped when decoding with
    // skip_special_tokens); user-defined ones are matched verbatim, as llama.cpp does.
    const bool special = type == GgmlTokenType::kControl || type == GgmlTokenType::kUnknown;
    if (!special && type != GgmlTokenType::kUserDefined) continue;
    if (vocabulary.tokens[id].empty()) continue;
    added.push_back({{"id", id},
                     {"content", vocabulary.tokens[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", special}});
  }
  return added;
}

json vocab_object(const GgmlVocabulary& vocabulary) {
  json vocab = json::object();
  for (size_t id = 0; id < vocabulary.tokens.size(); ++id) vocab[vocabulary.tokens[id]] = id;
  return vocab;
}

// The token to add when `add` (or, unset, `by_default`) says so and the vocabulary has one
// (an SPM vocabulary without <s> adds nothing, though add_bos_token defaults to true).
std::optional<int32_t> framing_id(std::optional<bool> add, bool by_default,
                                  std::optional<int32_t> id) {
  return add.value_or(by_default) ? id : std::nullopt;
}

// `first` before and `last` after the text (BOS and EOS, as add_bos_token / add_eos_token say;
// for bert [CLS] and [SEP]); either may be absent.
json post_processor(const GgmlVocabulary& vocabulary, std::optional<int32_t> first,
                    std::optional<int32_t> last) {
  if (!first && !last) return nullptr;
  json single = json::array(), pair = json::array(), specials = json::object();
  auto special = [&](int32_t id, json& sequence) {
    const std::string& token = vocabulary.tokens[static_cast<size_t>(id)];
    sequence.push_back({{"SpecialToken", {{"id", token}, {"type_id", 0}}}});
    specials[token] = {{"id", token}, {"ids", {id}}, {"tokens", {token}}};
  };
  auto text = [](const char* which, json& sequence) {
    sequence.push_back({{"Sequence", {{"id", which}, {"type_id", 0}}}});
  };
  if (first) special(*first, single);
  text("A", single);
  if (last) special(*last, single);
  pair = single;
  if (first) special(*first, pair);
  text("B", pair);
  if (last) special(*last, pair);
  return {{"type", "TemplateProcessing"},
          {"single", single},
          {"pair", pair},
          {"special_tokens", specials}};
}

// Byte-level BPE (tokenizer.ggml.model "gpt2").
Expected<json> gpt2_tokenizer(const GgmlVocabulary& vocabulary, const std::string& source) {
  const PreTokenizerRegexes* pre =
      find_pre_tokenizer(vocabulary.pre.empty() ? "default" : vocabulary.pre);
  if (!pre) {
    std::string known;
    for (const std::string& name : supported_ggml_pre_tokenizers()) {
      known += (known.empty() ? "" : ", ") + name;
    }
    return Status(StatusCode::kUnimplemented,
                  source + ": tokenizer.ggml.pre '" + vocabulary.pre +
                      "' is a pre-tokenizer sparkd does not know; known: " + known);
  }
  json splits = json::array();
  for (const std::string& regex : pre->regexes) {
    splits.push_back({{"type", "Split"},
                      {"pattern", {{"Regex", regex}}},
                      {"behavior", "Isolated"},
                      {"invert", false}});
  }
  splits.push_back({{"type", "ByteLevel"},
                    {"add_prefix_space", false},
                    {"trim_offsets", false},
                    {"use_regex", false}});
  json merges = json::array();
  for (const std::string& merge : vocabulary.merges) merges.push_back(merge);
  return json{
      {"version", "1.0"},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", splits}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab_object(vocabulary)},
        {"merges", merges},
        {"ignore_merges", pre->ignore_merges}}},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", false},
        {"use_regex", false}}},
      {"post_processor",
       post_processor(vocabulary, framing_id(vocabulary.add_bos, false, vocabulary.bos_id),
                      framing_id(vocabulary.add_eos, false, vocabulary.eos_id))},
      {"added_tokens", added_tokens(vocabulary)},
  };
}

// The byte offsets of the code points of `text` after the first (where it may be split).
std::vector<size_t> split_points(const std::string& text) {
  std::vector<size_t> points;
  for (size_t i = 1; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) points.push_back(i);
  }
  return points;
}

// SentencePiece-style BPE (tokenizer.ggml.model "llama"): llama.cpp merges the adjacent pair
// whose concatenation is the highest-scoring token. As BPE merges: every split of every token
// into two tokens, ranked by the whole token's score, best first (what transformers' GGUF
// loader does).
Expected<json> spm_tokenizer(const GgmlVocabulary& vocabulary, const std::string& source) {
  if (vocabulary.scores.size() != vocabulary.tokens.size()) {
    return Status(StatusCode::kInvalidArgument,
                  source + ": a 'llama' tokenizer needs tokenizer.ggml.scores, one per token (" +
                      std::to_string(vocabulary.scores.size()) + " for " +
                      std::to_string(vocabulary.tokens.size()) + " tokens)");
  }
  std::unordered_map<std::string, size_t> ids;
  for (size_t id = 0; id < vocabulary.tokens.size(); ++id) ids.emplace(vocabulary.tokens[id], id);
  struct Candidate {
    float score;
    size_t left, right;
  };
  std::vector<Candidate> candidates;
  for (size_t id = 0; id < vocabulary.tokens.size(); ++id) {
    const std::string& token = vocabulary.tokens[id];
    std::vector<Candidate> local;
    for (size_t point : split_points(token)) {
      auto left = ids.find(token.substr(0, point));
      auto right = ids.find(token.substr(point));
      if (left != ids.end() && right != ids.end()) {
        local.push_back({vocabulary.scores[id], left->second, right->second});
      }
    }
    std::sort(local.begin(), local.end(), [](const Candidate& a, const Candidate& b) {
      return a.left != b.left ? a.left < b.left : a.right < b.right;
    });
    candidates.insert(candidates.end(), local.begin(), local.end());
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
  json merges = json::array();
  for (const Candidate& c : candidates) {
    merges.push_back(json::array({vocabulary.tokens[c.left], vocabulary.tokens[c.right]}));
  }

  const bool space_prefix = vocabulary.add_space_prefix.value_or(true);
  json normalizers = json::array();
  if (space_prefix) normalizers.push_back({{"type", "Prepend"}, {"prepend", "\u2581"}});
  normalizers.push_back(
      {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}});
  json decoders = json::array({
      {{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
      {{"type", "ByteFallback"}},
      {{"type", "Fuse"}},
  });
  if (space_prefix) {
    decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  }
  json model = {{"type", "BPE"},
                {"vocab", vocab_object(vocabulary)},
                {"merges", merges},
                {"byte_fallback", true},
                {"fuse_unk", true}};
  if (vocabulary.unknown_id) {
    model["unk_token"] = vocabulary.tokens[static_cast<size_t>(*vocabulary.unknown_id)];
  }
  return json{
      {"version", "1.0"},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", normalizers}}},
      {"pre_tokenizer", nullptr},
      {"model", model},
      {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}},
      {"post_processor",
       post_processor(vocabulary, framing_id(vocabulary.add_bos, true, vocabulary.bos_id),
                      framing_id(vocabulary.add_eos, false, vocabulary.eos_id))},
      {"added_tokens", added_tokens(vocabulary)},
  };
}

// WordPiece (tokenizer.ggml.model "bert"). llama.cpp's converter writes the vocabulary in
// "phantom space" form: a word-initial piece "foo" as "\u2581foo", a continuation "##foo" as
// "foo", control tokens as they are; llama.cpp prepends U+2581 to each word and matches
// longest pieces. That is WordPiece over the original vocabulary, which this restores, with
// BERT's normaliser and pre-tokenizer and [CLS] text [SEP] around the text, and with
// llama.cpp's three departures from BERT's own tokenizer, since GGUF users compare with it:
// \v, \f and U+0085 separate words (BERT drops them as control characters), stripping
// accents drops every mark (Mn, Mc and Me; BERT only Mn), and no word is too long to split
// (BERT makes a word over 100 characters one [UNK]).
Expected<json> bert_tokenizer(const GgmlVocabulary& vocabulary, const std::string& source) {
  static const std::string kPhantomSpace = "\xe2\x96\x81";
  json vocab = json::object();
  for (size_t id = 0; id < vocabulary.tokens.size(); ++id) {
    const std::string& token = vocabulary.tokens[id];
    std::string piece = token;
    if (type_of(vocabulary, id) != GgmlTokenType::kControl) {
      piece =
          token.rfind(kPhantomSpace, 0) == 0 ? token.substr(kPhantomSpace.size()) : "##" + token;
    }
    if (piece.empty() || piece == "##") continue;  // a bare phantom space matches no word
    if (!vocab.contains(piece)) vocab[piece] = id;
  }
  if (!vocabulary.unknown_id) {
    return Status(StatusCode::kInvalidArgument,
                  source + ": a bert (WordPiece) vocabulary needs tokenizer.ggml.unknown_token_id");
  }
  const bool lowercase = vocabulary.lowercase.value_or(false);
  const bool strip_accents = vocabulary.strip_accents.value_or(lowercase);
  json normalizers = json::array(
      {{{"type", "Replace"}, {"pattern", {{"Regex", "[\\x{0B}\\x{0C}\\x{85}]"}}}, {"content", " "}},
       {{"type", "BertNormalizer"},
        {"clean_text", true},
        {"handle_chinese_chars", true},
        {"strip_accents", strip_accents},
        {"lowercase", lowercase}}});
  if (strip_accents) normalizers.push_back({{"type", "StripAccents"}});
  return json{
      {"version", "1.0"},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", normalizers}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"model",
       {{"type", "WordPiece"},
        {"unk_token", vocabulary.tokens[static_cast<size_t>(*vocabulary.unknown_id)]},
        {"continuing_subword_prefix", "##"},
        {"max_input_chars_per_word", std::numeric_limits<int32_t>::max()},
        {"vocab", vocab}}},
      {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
      // llama.cpp adds [CLS] and [SEP] (its BOS and its EOS or separator) unless told not to.
      {"post_processor",
       post_processor(vocabulary, framing_id(vocabulary.add_bos, true, vocabulary.bos_id),
                      framing_id(vocabulary.add_eos, true,
                                 vocabulary.eos_id ? vocabulary.eos_id : vocabulary.separator_id))},
      {"added_tokens", added_tokens(vocabulary)},
  };
}

Status check_ids(const GgmlVocabulary& vocabulary, const std::string& source) {
  const size_t n = vocabulary.tokens.size();
  if (n == 0) return Status(StatusCode::kInvalidArgument, source + ": the vocabulary is empty");
  if (!vocabulary.token_types.empty() && vocabulary.token_types.size() != n) {
    return Status(StatusCode::kInvalidArgument, source + ": tokenizer.ggml.token_type has " +
                                                    std::to_string(vocabulary.token_types.size()) +
                                                    " entries for " + std::to_string(n) +
                                                    " tokens");
  }
  const std::pair<const char*, std::optional<int32_t>> ids[] = {
      {"bos_token_id", vocabulary.bos_id},         {"eos_token_id", vocabulary.eos_id},
      {"unknown_token_id", vocabulary.unknown_id}, {"seperator_token_id", vocabulary.separator_id},
      {"padding_token_id", vocabulary.padding_id}, {"mask_token_id", vocabulary.mask_id}};
  for (const auto& [key, id] : ids) {
    if (id && (*id < 0 || static_cast<size_t>(*id) >= n)) {
      return Status(StatusCode::kInvalidArgument, source + ": tokenizer.ggml." + key + " " +
                                                      std::to_string(*id) + " is not a token id (" +
                                                      std::to_string(n) + " tokens)");
    }
  }
  if (vocabulary.add_bos.value_or(false) && !vocabulary.bos_id) {
    return Status(StatusCode::kInvalidArgument,
                  source + ": tokenizer.ggml.add_bos_token is set but there is no bos_token_id");
  }
  if (vocabulary.add_eos.value_or(false) && !vocabulary.eos_id) {
    return Status(StatusCode::kInvalidArgument,
                  source + ": tokenizer.ggml.add_eos_token is set but there is no eos_token_id");
  }
  return Status::ok();
}

}  // namespace

std::vector<std::string> supported_ggml_pre_tokenizers() {
  std::vector<std::string> names;
  for (const PreTokenizerRegexes& entry : pre_tokenizer_table()) {
    names.insert(names.end(), entry.names.begin(), entry.names.end());
  }
  return names;
}

Expected<std::shared_ptr<const Tokenizer>> tokenizer_from_ggml_vocabulary(
    const GgmlVocabulary& vocabulary, const std::string& source) {
  SPARKD_RETURN_IF_ERROR(check_ids(vocabulary, source));
  Expected<json> config =
      Status(StatusCode::kUnimplemented, source + ": tokenizer.ggml.model '" + vocabulary.model +
                                             "' is a tokenizer sparkd does not build from GGUF "
                                             "(known: gpt2, llama, bert)");
  if (vocabulary.model == "gpt2") {
    config = gpt2_tokenizer(vocabulary, source);
  } else if (vocabulary.model == "llama") {
    config = spm_tokenizer(vocabulary, source);
  } else if (vocabulary.model == "bert") {
    config = bert_tokenizer(vocabulary, source);
  }
  if (!config) return config.status();
  return Tokenizer::from_json_value(*config, source + " (tokenizer.ggml.*)");
}

}  // namespace sparkd::tokenizer
