// WordPiece model (Hugging Face tokenizers models/wordpiece).

#include "engine/tokenizer/wordpiece_model.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "engine/tokenizer/error.h"
#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {

namespace {

// True when s[pos] starts a UTF-8 sequence (is not a continuation byte).
bool is_char_boundary(std::string_view s, size_t pos) {
  return pos >= s.size() || (static_cast<unsigned char>(s[pos]) & 0xC0) != 0x80;
}

}  // namespace

WordPieceModel::WordPieceModel(Vocab vocab, std::string unk_token,
                               std::string continuing_subword_prefix,
                               size_t max_input_chars_per_word)
    : vocab_(std::move(vocab)),
      unk_token_(std::move(unk_token)),
      prefix_(std::move(continuing_subword_prefix)),
      max_input_chars_per_word_(max_input_chars_per_word) {
  unk_id_ = vocab_.find(unk_token_);
}

std::unique_ptr<WordPieceModel> WordPieceModel::from_json(const nlohmann::json& config) {
  constexpr std::string_view kModel = "WordPiece";
  model_config::check_type(config, kModel);
  std::string unk_token = model_config::required_string(config, kModel, "unk_token");
  std::string prefix = model_config::required_string(config, kModel, "continuing_subword_prefix");
  const uint64_t max_chars = model_config::required_uint(config, kModel, "max_input_chars_per_word",
                                                         std::numeric_limits<size_t>::max());
  Vocab vocab = Vocab::from_json(model_config::required(config, kModel, "vocab"),
                                 "WordPiece model: field \"vocab\"");
  return std::make_unique<WordPieceModel>(std::move(vocab), std::move(unk_token), std::move(prefix),
                                          static_cast<size_t>(max_chars));
}

std::vector<Token> WordPieceModel::unknown_word(std::string_view sequence) const {
  // The unk token is looked up only when needed: a vocabulary without it is fine until a
  // word actually cannot be covered.
  if (!unk_id_) throw EncodeError("WordPiece error: Missing [UNK] token from the vocabulary");
  std::vector<Token> tokens;
  tokens.push_back(Token{*unk_id_, unk_token_, {0, sequence.size()}});
  return tokens;
}

std::vector<Token> WordPieceModel::tokenize(std::string_view sequence) const {
  if (count_code_points(sequence) > max_input_chars_per_word_) return unknown_word(sequence);

  std::vector<Token> tokens;
  // Candidates are prefixes of prefix_ + sequence[start..]: build that string once per
  // start and probe the vocabulary with views of it instead of allocating per candidate.
  std::string candidate;
  const size_t max_bytes = vocab_.max_token_bytes();
  size_t start = 0;
  while (start < sequence.size()) {
    const std::string_view rest = sequence.substr(start);
    const size_t affix = start > 0 ? prefix_.size() : 0;
    candidate.clear();
    if (affix > 0) candidate.append(prefix_);
    candidate.append(rest);

    // The library tries every end from the end of the word downwards. Pieces longer than
    // the longest vocabulary entry cannot match, so start at the last char boundary that
    // fits; the first match found is the same.
    size_t end = sequence.size();
    if (max_bytes < affix) {
      end = start;  // nothing can match
    } else if (max_bytes - affix < rest.size()) {
      end = start + (max_bytes - affix);
      while (end > start && !is_char_boundary(sequence, end)) --end;
    }

    std::optional<uint32_t> match;
    while (end > start) {
      match = vocab_.find(std::string_view(candidate).substr(0, affix + (end - start)));
      if (match) break;
      // Step back one char.
      do {
        --end;
      } while (end > start && !is_char_boundary(sequence, end));
    }
    if (!match) return unknown_word(sequence);

    tokens.push_back(Token{*match, candidate.substr(0, affix + (end - start)), {start, end}});
    start = end;
  }
  return tokens;
}

}  // namespace sparkd::tokenizer
