// Unigram (SentencePiece): the best-scoring segmentation of a pre-token into vocabulary
// pieces (Viterbi over the lattice of all pieces matching at each position). Chars no
// piece covers become unknowns, consecutive unknowns are fused into one token, and with
// byte_fallback an unknown is spelled as <0xNN> byte pieces instead.
// Mirrors Hugging Face tokenizers' models/unigram (model.rs encode_optimized + tokenize).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/model.h"
#include "engine/tokenizer/vocab.h"  // StringMap

namespace sparkd::tokenizer {

class UnigramModel final : public Model {
 public:
  struct Piece {
    std::string text;
    double score;
  };

  // Throws ConfigError when unk_id is set but the vocabulary is empty or too short.
  UnigramModel(std::vector<Piece> pieces, std::optional<size_t> unk_id, bool byte_fallback);
  // Reads "vocab" ([[piece, score], ...], mandatory), "unk_id" (int or null) and
  // "byte_fallback" (bool).
  static std::unique_ptr<UnigramModel> from_json(const nlohmann::json& config);

  std::vector<Token> tokenize(std::string_view sequence) const override;
  std::optional<uint32_t> token_to_id(std::string_view token) const override;
  const std::string* id_to_token(uint32_t id) const override {
    return id < pieces_.size() ? &pieces_[id].text : nullptr;
  }
  // Number of pieces, duplicates included (the library's get_vocab_size).
  size_t vocab_size() const override { return pieces_.size(); }

 private:
  // Byte trie of all pieces in compressed-row form: a node's children are the contiguous,
  // byte-sorted edges [edge_begin, edge_end), so a prefix search walks flat arrays.
  struct TrieNode {
    uint32_t edge_begin = 0;
    uint32_t edge_end = 0;
    int64_t piece = -1;  // id of the piece ending here, -1 if none
  };
  struct TrieEdge {
    unsigned char byte;
    uint32_t child;
  };
  // One step of the best path: the piece covering sequence[begin, end).
  struct PathStep {
    size_t begin;
    size_t end;
    uint32_t id;
  };

  void build_trie();
  // Child of `node` along `byte`, or -1.
  int64_t child(uint32_t node, unsigned char byte) const;
  std::vector<PathStep> best_path(std::string_view sequence) const;

  std::vector<Piece> pieces_;
  // piece text -> id; a piece listed twice maps to its last id, as in the library.
  StringMap<uint32_t> token_to_id_;
  std::vector<TrieNode> nodes_;
  std::vector<TrieEdge> edges_;
  std::array<int64_t, 256> root_children_{};  // direct table for the hottest node
  double min_score_;
  std::optional<uint32_t> unk_id_;
  bool byte_fallback_;
  std::array<std::optional<uint32_t>, 256> byte_ids_;
};

}  // namespace sparkd::tokenizer
