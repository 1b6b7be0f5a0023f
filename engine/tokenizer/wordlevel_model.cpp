// WordLevel model (Hugging Face tokenizers models/wordlevel).

#include "engine/tokenizer/wordlevel_model.h"

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "engine/tokenizer/config_reader.h"
#include "engine/tokenizer/error.h"

namespace sparkd::tokenizer {

WordLevelModel::WordLevelModel(Vocab vocab, std::string unk_token)
    : VocabModel(std::move(vocab)), unk_token_(std::move(unk_token)) {
  unk_id_ = this->vocab().find(unk_token_);
}

std::unique_ptr<WordLevelModel> WordLevelModel::from_json(const nlohmann::json& config) {
  const ConfigReader reader(config, "model", "WordLevel");
  reader.check_type();
  Vocab vocab = Vocab::from_json(reader.require("vocab"), reader.field_label("vocab"));
  std::string unk_token = reader.get_string("unk_token");
  return std::make_unique<WordLevelModel>(std::move(vocab), std::move(unk_token));
}

std::vector<Token> WordLevelModel::tokenize(std::string_view sequence) const {
  // Like the library, even an empty sequence yields one token (unk unless "" is in the
  // vocabulary); the pipeline never hands the model an empty split.
  std::vector<Token> tokens;
  if (auto id = vocab().find(sequence)) {
    tokens.push_back(Token{*id, std::string(sequence), {0, sequence.size()}});
  } else if (unk_id_) {
    tokens.push_back(Token{*unk_id_, unk_token_, {0, sequence.size()}});
  } else {
    throw EncodeError("WordLevel error: Missing [UNK] token from the vocabulary");
  }
  return tokens;
}

}  // namespace sparkd::tokenizer
