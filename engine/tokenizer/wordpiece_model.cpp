// WordPiece model (Hugging Face tokenizers models/wordpiece).

#include "engine/tokenizer/wordpiece_model.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "engine/tokenizer/config_reader.h"
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
    : VocabModel(std::move(vocab)),
      unk_token_(std::move(unk_token)),
      prefix_(std::move(continuing_subword_prefix)),
      max_input_chars_per_word_(max_input_chars_per_word) {
  unk_id_ = this->vocab().find(unk_token_);
}

std::unique_ptr<WordPieceModel> WordPieceModel::from_json(const nlohmann::json& config) {
  const ConfigReader reader(config, "model", "WordPiece");
  reader.check_type();
  std::string unk_token = reader.get_string("unk_token");
  std::string prefix = reader.get_string("continuing_subword_prefix");
  const size_t max_chars = reader.get_size("max_input_chars_per_word");
  Vocab vocab = Vocab::from_json(reader.require("vocab"), reader.field_label("vocab"));
  return std::make_unique<WordPieceModel>(std::move(vocab), std::move(unk_token), std::move(prefix),
                                          max_chars);
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
  const size_t max_bytes = vocab().max_token_bytes();
  size_t start = 0;
  while (start < sequence.size()) {
    const std::string_view rest = sequence.substr(start);
    const size_t affix = start > 0 ? prefix_.size() : 0;
    candidate.clear();
    if (affix > 0) candidate.append(prefix_);
    // No piece is longer than the longest entry: a long word costs no quadratic copying.
    candidate.append(rest.substr(0, std::min(rest.size(), max_bytes)));

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
      match = vocab().find(std::string_view(candidate).substr(0, affix + (end - start)));
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
