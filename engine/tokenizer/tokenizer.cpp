#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/decoders.h"
#include "engine/tokenizer/error.h"
#include "engine/tokenizer/model.h"
#include "engine/tokenizer/normalizers.h"
#include "engine/tokenizer/post_processors.h"
#include "engine/tokenizer/pre_tokenizers.h"
#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {

namespace {

using nlohmann::json;

Expected<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(StatusCode::kNotFound, "cannot open " + path.string());
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return Status(StatusCode::kDataLoss, "cannot read " + path.string());
  return buffer.str();
}

AddedToken parse_added_token(const json& j) {
  if (!j.is_object() || !j.contains("content") || !j["content"].is_string()) {
    throw ConfigError("added token without a string \"content\": " + j.dump());
  }
  AddedToken t;
  t.content = j["content"].get<std::string>();
  t.single_word = j.value("single_word", false);
  t.lstrip = j.value("lstrip", false);
  t.rstrip = j.value("rstrip", false);
  t.special = j.value("special", false);
  t.normalized = j.value("normalized", !t.special);
  return t;
}

// The library's AddedVocabulary::add_tokens: ids come from the existing vocabularies when
// the content is known, otherwise from the next free id after the model's vocabulary. The
// "id" written in tokenizer.json is not trusted, exactly as the library does not.
void add_tokens(const std::vector<AddedToken>& incoming, const Model& model,
                std::vector<AddedToken>* tokens) {
  auto find_content = [&](const std::string& content) -> const AddedToken* {
    for (auto it = tokens->rbegin(); it != tokens->rend(); ++it)
      if (it->content == content) return &*it;
    return nullptr;
  };
  auto vocab = static_cast<uint32_t>(model.vocab_size());
  uint32_t next_id = vocab;
  if (!tokens->empty()) {
    uint32_t max_id = 0;
    for (const AddedToken& t : *tokens) max_id = std::max(max_id, t.id);
    next_id = (max_id >= vocab || vocab == 0) ? max_id + 1 : vocab;
  }
  for (AddedToken token : incoming) {
    if (token.content.empty()) continue;
    const AddedToken* existing = find_content(token.content);
    if (existing != nullptr && existing->single_word == token.single_word &&
        existing->lstrip == token.lstrip && existing->rstrip == token.rstrip &&
        existing->normalized == token.normalized && existing->special == token.special) {
      continue;
    }
    if (existing != nullptr) {
      token.id = existing->id;
    } else if (auto id = model.token_to_id(token.content)) {
      token.id = *id;
    } else {
      token.id = next_id++;
    }
    // One entry per id: a re-added token replaces the old one's flags.
    std::erase_if(*tokens, [&](const AddedToken& t) { return t.id == token.id; });
    tokens->push_back(std::move(token));
  }
}

// tokenizer.json "truncation": {"max_length", "strategy", "stride", "direction"} or null.
std::optional<TruncationParams> parse_truncation(const json& root) {
  auto it = root.find("truncation");
  if (it == root.end() || it->is_null()) return std::nullopt;
  try {
    TruncationParams p;
    p.max_length = it->at("max_length").get<size_t>();
    p.stride = it->value("stride", size_t{0});
    const std::string strategy = it->value("strategy", std::string("LongestFirst"));
    if (strategy == "LongestFirst") {
      p.strategy = TruncationStrategy::kLongestFirst;
    } else if (strategy == "OnlyFirst") {
      p.strategy = TruncationStrategy::kOnlyFirst;
    } else if (strategy == "OnlySecond") {
      p.strategy = TruncationStrategy::kOnlySecond;
    } else {
      throw ConfigError("unknown strategy '" + strategy +
                        "' (supported: LongestFirst, OnlyFirst, OnlySecond)");
    }
    const std::string direction = it->value("direction", std::string("Right"));
    if (direction != "Left" && direction != "Right") {
      throw ConfigError("unknown direction '" + direction + "' (supported: Left, Right)");
    }
    p.direction = direction == "Left" ? TruncationDirection::kLeft : TruncationDirection::kRight;
    return p;
  } catch (const json::exception& e) {
    throw ConfigError(std::string("truncation: malformed: ") + e.what());
  } catch (const ConfigError& e) {
    throw ConfigError(std::string("truncation: ") + e.what());
  }
}

// tokenizer.json "padding": {"strategy": "BatchLongest" | {"Fixed": n}, "direction",
// "pad_to_multiple_of", "pad_id", "pad_type_id", "pad_token"} or null.
std::optional<PaddingParams> parse_padding(const json& root) {
  auto it = root.find("padding");
  if (it == root.end() || it->is_null()) return std::nullopt;
  try {
    PaddingParams p;
    const json& strategy = it->at("strategy");
    if (strategy.is_object() && strategy.contains("Fixed")) {
      p.fixed_length = strategy.at("Fixed").get<size_t>();
    } else if (!(strategy.is_string() && strategy == "BatchLongest")) {
      throw ConfigError("unknown strategy " + strategy.dump() +
                        " (supported: \"BatchLongest\", {\"Fixed\": n})");
    }
    const std::string direction = it->value("direction", std::string("Right"));
    if (direction != "Left" && direction != "Right") {
      throw ConfigError("unknown direction '" + direction + "' (supported: Left, Right)");
    }
    p.pad_left = direction == "Left";
    if (auto m = it->find("pad_to_multiple_of"); m != it->end() && !m->is_null()) {
      p.pad_to_multiple_of = m->get<size_t>();
    }
    p.pad_id = it->value("pad_id", 0u);
    p.pad_type_id = it->value("pad_type_id", 0u);
    p.pad_token = it->value("pad_token", std::string("[PAD]"));
    return p;
  } catch (const json::exception& e) {
    throw ConfigError(std::string("padding: malformed: ") + e.what());
  } catch (const ConfigError& e) {
    throw ConfigError(std::string("padding: ") + e.what());
  }
}

template <typename T, typename Make>
std::shared_ptr<const T> make_component(const json& root, const char* key, Make make) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) return nullptr;
  try {
    return make(*it);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string(key) + ": " + e.what());
  } catch (const json::exception& e) {
    throw ConfigError(std::string(key) + ": malformed: " + e.what());
  }
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

Expected<std::shared_ptr<const Tokenizer>> Tokenizer::from_file(const std::filesystem::path& path) {
  std::filesystem::path file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) file = path / "tokenizer.json";
  Expected<std::string> text = read_file(file);
  if (!text) return text.status();
  Expected<std::shared_ptr<const Tokenizer>> tokenizer = from_json(*text, file.string());
  if (!tokenizer) return tokenizer;

  // transformers re-adds the tokens listed in tokenizer_config.json's added_tokens_decoder,
  // whose flags (special, lstrip, ...) then win; do the same so special-token handling
  // matches what users of the model see.
  std::filesystem::path config_path = file.parent_path() / "tokenizer_config.json";
  if (!std::filesystem::exists(config_path, ec)) return tokenizer;
  Expected<std::string> config_text = read_file(config_path);
  if (!config_text) return config_text.status();
  try {
    json config = json::parse(*config_text);
    auto decoder = config.find("added_tokens_decoder");
    if (decoder == config.end() || !decoder->is_object() || decoder->empty()) return tokenizer;
    std::vector<std::pair<uint32_t, AddedToken>> listed;
    for (auto& [id_text, entry] : decoder->items()) {
      listed.emplace_back(static_cast<uint32_t>(std::stoul(id_text)), parse_added_token(entry));
    }
    std::sort(listed.begin(), listed.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    auto mutable_tokenizer = std::const_pointer_cast<Tokenizer>(*tokenizer);
    std::vector<AddedToken> tokens = mutable_tokenizer->added_vocabulary_->tokens();
    std::vector<AddedToken> incoming;
    for (auto& [id, token] : listed) incoming.push_back(std::move(token));
    add_tokens(incoming, *mutable_tokenizer->model_, &tokens);
    mutable_tokenizer->added_vocabulary_ = std::make_shared<const AddedVocabulary>(
        std::move(tokens), mutable_tokenizer->normalizer_.get());
  } catch (const std::exception& e) {
    return Status(StatusCode::kInvalidArgument, config_path.string() + ": " + e.what());
  }
  return tokenizer;
}

Expected<std::shared_ptr<const Tokenizer>> Tokenizer::from_json(std::string_view text,
                                                                std::string_view source_name) {
  const std::string source(source_name);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    return Status(StatusCode::kInvalidArgument,
                  source + ": not valid JSON (truncated or corrupt?): " + e.what());
  }
  return from_json_value(root, source_name);
}

Expected<std::shared_ptr<const Tokenizer>> Tokenizer::from_json_value(
    const json& root, std::string_view source_name) {
  const std::string source(source_name);
  if (!root.is_object()) {
    return Status(StatusCode::kInvalidArgument, source + ": expected a JSON object at the top");
  }
  std::shared_ptr<Tokenizer> tokenizer(new Tokenizer());
  try {
    if (auto version = root.find("version");
        version != root.end() && version->is_string() && *version != "1.0") {
      throw ConfigError("unsupported tokenizer.json version '" + version->get<std::string>() +
                        "' (supported: 1.0)");
    }
    tokenizer->normalizer_ = make_component<Normalizer>(root, "normalizer", make_normalizer);
    tokenizer->pre_tokenizer_ =
        make_component<PreTokenizer>(root, "pre_tokenizer", make_pre_tokenizer);
    tokenizer->model_ = make_component<Model>(root, "model", make_model);
    if (!tokenizer->model_) throw ConfigError("model: missing (every tokenizer.json has one)");
    tokenizer->post_processor_ =
        make_component<PostProcessor>(root, "post_processor", make_post_processor);
    tokenizer->decoder_ = make_component<Decoder>(root, "decoder", make_decoder);

    std::vector<AddedToken> incoming;
    if (auto added = root.find("added_tokens"); added != root.end() && !added->is_null()) {
      if (!added->is_array()) throw ConfigError("added_tokens: expected a list");
      for (const json& entry : *added) incoming.push_back(parse_added_token(entry));
    }
    std::vector<AddedToken> tokens;
    add_tokens(incoming, *tokenizer->model_, &tokens);
    tokenizer->added_vocabulary_ =
        std::make_shared<const AddedVocabulary>(std::move(tokens), tokenizer->normalizer_.get());
    tokenizer->truncation_ = parse_truncation(root);
    tokenizer->padding_ = parse_padding(root);
  } catch (const ConfigError& e) {
    return Status(StatusCode::kInvalidArgument, source + ": " + e.what());
  } catch (const std::exception& e) {
    return Status(StatusCode::kInvalidArgument, source + ": malformed: " + e.what());
  }
  return std::shared_ptr<const Tokenizer>(std::move(tokenizer));
}

Encoding Tokenizer::encode_sequence(std::string_view text, uint32_t type_id) const {
  PreTokenizedString pre = added_vocabulary_->extract_and_normalize(normalizer_.get(), text);
  if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pre);
  pre.tokenize([&](const NormalizedString& s) { return model_->tokenize(s.get()); });

  Encoding encoding;
  size_t total = 0;
  for (const Split& split : pre.splits()) total += split.tokens->size();
  encoding.ids.reserve(total);
  encoding.tokens.reserve(total);
  encoding.offsets.reserve(total);
  encoding.words.reserve(total);
  for (size_t word = 0; word < pre.splits().size(); ++word) {
    const Split& split = pre.splits()[word];
    size_t shift = split.normalized.offsets_original().first;
    for (const Token& token : *split.tokens) {
      std::optional<Offsets> original = split.normalized.normalized_to_original(token.offsets);
      Offsets offsets =
          original ? Offsets{shift + original->first, shift + original->second} : token.offsets;
      encoding.ids.push_back(token.id);
      encoding.tokens.push_back(token.value);
      encoding.offsets.push_back(offsets);
      encoding.words.push_back(static_cast<uint32_t>(word));
    }
  }
  encoding.type_ids.assign(total, type_id);
  encoding.special_tokens_mask.assign(total, 0);
  encoding.attention_mask.assign(total, 1);
  return encoding;
}

Expected<Encoding> Tokenizer::finish(Encoding encoding, std::optional<Encoding> pair,
                                     bool add_special_tokens,
                                     const std::optional<TruncationParams>& truncation) const {
  const std::optional<TruncationParams>& use_truncation = truncation ? truncation : truncation_;
  if (use_truncation) {
    TruncationParams params = *use_truncation;
    size_t n_added = post_processor_ ? post_processor_->added_tokens(pair.has_value()) : 0;
    // The library subtracts the special tokens in unsigned arithmetic: a max_length smaller
    // than their count wraps around and nothing is truncated. We keep that for identical
    // results; callers that want an error check max_length against added tokens first.
    bool wraps = add_special_tokens && n_added > params.max_length;
    if (add_special_tokens) params.max_length -= std::min(n_added, params.max_length);
    if (!wraps) truncate_encodings(&encoding, pair ? &*pair : nullptr, params);
  }
  Encoding result = post_processor_ ? post_processor_->process(std::move(encoding), std::move(pair),
                                                               add_special_tokens)
                                    : default_post_process(std::move(encoding), std::move(pair));
  if (padding_) pad_encodings({&result}, *padding_);
  return result;
}

std::shared_ptr<const Tokenizer> Tokenizer::with_defaults(
    std::optional<TruncationParams> truncation, std::optional<PaddingParams> padding) const {
  std::shared_ptr<Tokenizer> copy(new Tokenizer(*this));
  copy->truncation_ = std::move(truncation);
  copy->padding_ = std::move(padding);
  return copy;
}

Expected<Encoding> Tokenizer::encode(std::string_view text, bool add_special_tokens,
                                     const std::optional<TruncationParams>& truncation) const {
  try {
    std::string clean = sanitize_utf8(text);
    return finish(encode_sequence(clean, 0), std::nullopt, add_special_tokens, truncation);
  } catch (const EncodeError& e) {
    return Status(StatusCode::kInvalidArgument, e.what());
  }
}

Expected<Encoding> Tokenizer::encode_pair(std::string_view text, std::string_view pair,
                                          bool add_special_tokens,
                                          const std::optional<TruncationParams>& truncation) const {
  try {
    std::string clean = sanitize_utf8(text);
    std::string clean_pair = sanitize_utf8(pair);
    return finish(encode_sequence(clean, 0), encode_sequence(clean_pair, 1), add_special_tokens,
                  truncation);
  } catch (const EncodeError& e) {
    return Status(StatusCode::kInvalidArgument, e.what());
  }
}

Expected<std::string> Tokenizer::decode(const std::vector<uint32_t>& ids,
                                        bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (uint32_t id : ids) {
    const std::string* token = added_vocabulary_->id_to_token(id);
    if (token == nullptr) token = model_->id_to_token(id);
    if (token == nullptr) continue;  // unknown ids are skipped, as the library does
    if (skip_special_tokens && added_vocabulary_->is_special_token(*token)) continue;
    tokens.push_back(*token);
  }
  try {
    if (decoder_) return decoder_->decode(std::move(tokens));
  } catch (const EncodeError& e) {
    return Status(StatusCode::kInvalidArgument, e.what());
  }
  std::string joined;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) joined.push_back(' ');
    joined += tokens[i];
  }
  return joined;
}

std::optional<uint32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto id = added_vocabulary_->token_to_id(token)) return id;
  return model_->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(uint32_t id) const {
  const std::string* token = added_vocabulary_->id_to_token(id);
  if (token == nullptr) token = model_->id_to_token(id);
  if (token == nullptr) return std::nullopt;
  return *token;
}

size_t Tokenizer::vocab_size() const {
  size_t size = model_->vocab_size();
  for (const AddedToken& t : added_vocabulary_->tokens()) size = std::max<size_t>(size, t.id + 1);
  return size;
}

std::vector<std::string> Tokenizer::special_tokens() const {
  std::vector<std::string> out;
  for (const AddedToken& t : added_vocabulary_->tokens())
    if (t.special) out.push_back(t.content);
  return out;
}

bool Tokenizer::is_special_id(uint32_t id) const {
  const std::string* token = added_vocabulary_->id_to_token(id);
  return token != nullptr && added_vocabulary_->is_special_token(*token);
}

}  // namespace sparkd::tokenizer
