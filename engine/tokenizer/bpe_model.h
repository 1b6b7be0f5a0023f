// Byte-Pair Encoding: a pre-token starts as one symbol per char (with optional
// continuing-subword prefix / end-of-word suffix, byte fallback and unknown handling) and
// adjacent symbols are merged by rank, lowest first, until no ranked pair remains.
// Mirrors Hugging Face tokenizers' models/bpe (model.rs + word.rs).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tokenizer/vocab.h"

namespace sparkd::tokenizer {

class BpeModel final : public VocabModel {
 public:
  struct Options {
    std::optional<std::string> unk_token;
    std::optional<std::string> continuing_subword_prefix;
    std::optional<std::string> end_of_word_suffix;
    bool fuse_unk = false;
    bool byte_fallback = false;
    bool ignore_merges = false;
    // dropout == 1.0: every merge is dropped (the only deterministic dropout besides 0).
    bool drop_all_merges = false;
  };
  using Merge = std::pair<std::string, std::string>;

  // Throws ConfigError when a merge names a token (or produces one) outside the vocabulary.
  BpeModel(Vocab vocab, const std::vector<Merge>& merges, Options options);
  ~BpeModel() override;
  // Reads "vocab", "merges" (["a b", ...] or [["a", "b"], ...]) and the optional fields.
  // A dropout strictly between 0 and 1 is rejected: it makes encoding random.
  static std::unique_ptr<BpeModel> from_json(const nlohmann::json& config);

  std::vector<Token> tokenize(std::string_view sequence) const override;

 private:
  // One symbol of a word being merged: a doubly-linked list laid out in an array, so a merge
  // is O(1) and removed symbols are just marked (len == 0).
  struct Symbol {
    uint32_t id;
    size_t prev;  // kNoSymbol when first
    size_t next;  // kNoSymbol when last
    size_t len;   // bytes of the input covered; 0 once merged into its left neighbour
  };
  // (rank, id of the merged token) for one mergeable pair, in an open-addressing table keyed
  // by the two ids packed into a u64: this lookup is the inner loop of BPE.
  class MergeTable {
   public:
    struct Entry {
      uint64_t key;
      uint32_t rank;  // kEmptyRank marks a free slot
      uint32_t new_id;
    };
    void reserve(size_t count);
    void insert_or_assign(uint32_t left, uint32_t right, uint32_t rank, uint32_t new_id);
    const Entry* find(uint32_t left, uint32_t right) const;
    size_t size() const { return size_; }

   private:
    size_t slot_of(uint64_t key) const;
    std::vector<Entry> slots_;
    size_t mask_ = 0;
    size_t size_ = 0;
  };
  class WordCache;

  // Splits `word` into initial symbols (chars, byte-fallback bytes, unknowns).
  std::vector<Symbol> initial_symbols(std::string_view word) const;
  void merge_all(std::vector<Symbol>* symbols) const;
  uint32_t unk_id_or_throw() const;

  MergeTable merges_;
  Options options_;
  std::optional<uint32_t> unk_id_;
  // Ids of "<0x00>".."<0xFF>" (byte_fallback), looked up once.
  std::array<std::optional<uint32_t>, 256> byte_ids_;
  std::unique_ptr<WordCache> cache_;
};

}  // namespace sparkd::tokenizer
