// make_model: builds the model named by a tokenizer.json "model" section.

#include "engine/tokenizer/model.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/config_reader.h"
#include "engine/tokenizer/error.h"
#include "engine/tokenizer/unigram_model.h"
#include "engine/tokenizer/wordlevel_model.h"
#include "engine/tokenizer/wordpiece_model.h"

namespace sparkd::tokenizer {

namespace {

constexpr const char* kSupported = "BPE, WordPiece, WordLevel, Unigram";

std::unique_ptr<Model> make_typed(const std::string& type, const nlohmann::json& config) {
  if (type == "BPE") return BpeModel::from_json(config);
  if (type == "WordPiece") return WordPieceModel::from_json(config);
  if (type == "WordLevel") return WordLevelModel::from_json(config);
  if (type == "Unigram") return UnigramModel::from_json(config);
  unsupported_type("model", type, kSupported);
}

}  // namespace

std::unique_ptr<Model> make_model(const nlohmann::json& config) {
  if (const std::optional<std::string> type = read_type_tag(config, "model")) {
    return make_typed(*type, config);
  }

  // Files written before "type" existed: the library tries each model in this order and
  // keeps the first that loads (WordPiece must come before WordLevel, whose fields are a
  // subset of WordPiece's). A BPE needs "merges", a WordPiece its four fields, a
  // WordLevel a {token: id} vocab and "unk_token", a Unigram a [[piece, score]] vocab.
  std::string failures;
  for (const char* type : {"BPE", "WordPiece", "WordLevel", "Unigram"}) {
    try {
      return make_typed(type, config);
    } catch (const ConfigError& e) {
      failures += std::string("; as ") + type + ": " + e.what();
    }
  }
  throw ConfigError("model: no \"type\" and the data matches none of " + std::string(kSupported) +
                    failures);
}

}  // namespace sparkd::tokenizer
