// BPE model (Hugging Face tokenizers models/bpe).

#include "engine/tokenizer/bpe_model.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <functional>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <shared_mutex>
#include <utility>

#include "engine/tokenizer/config_reader.h"
#include "engine/tokenizer/error.h"
#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {

namespace {

using nlohmann::json;

constexpr size_t kNoSymbol = std::numeric_limits<size_t>::max();
constexpr uint32_t kEmptyRank = std::numeric_limits<uint32_t>::max();
// The library caches up to 10,000 words, each shorter than 256 bytes (utils/cache.rs).
constexpr size_t kCacheCapacity = 10000;
constexpr size_t kMaxCachedWordBytes = 256;

uint64_t pack(uint32_t left, uint32_t right) {
  return (static_cast<uint64_t>(left) << 32) | right;
}

// splitmix64's finalizer: packed id pairs are far from uniformly distributed, and linear
// probing needs well-spread low bits.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// "<0x41>": the token SentencePiece-style byte fallback uses for one byte.
std::string byte_token(unsigned char byte) {
  char buffer[8];
  std::snprintf(buffer, sizeof(buffer), "<0x%02X>", byte);
  return buffer;
}

// Merges in either serialization: [["a", "b"], ...] (current) or ["a b", ...] (legacy,
// also what merges.txt holds; "#version" lines are skipped).
std::vector<BpeModel::Merge> parse_merges(const ConfigReader& reader) {
  const json& value = reader.get_array("merges");
  std::vector<BpeModel::Merge> merges;
  merges.reserve(value.size());
  const bool legacy = !value.empty() && value.front().is_string();
  for (const json& item : value) {
    if (legacy) {
      if (!item.is_string()) {
        reader.fail("field \"merges\" mixes \"a b\" strings with other values");
      }
      const std::string& line = item.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;
      // Exactly one space: "a b". The line number counts only non-#version lines.
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        reader.fail("field \"merges\": merge " + std::to_string(merges.size() + 1) + " (\"" + line +
                    "\") is not of the form \"left right\"");
      }
      merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    } else {
      if (!item.is_array() || item.size() != 2 || !item[0].is_string() || !item[1].is_string()) {
        reader.fail("field \"merges\": merge " + std::to_string(merges.size() + 1) +
                    " must be a pair of strings [\"left\", \"right\"], got " + item.dump());
      }
      merges.emplace_back(item[0].get<std::string>(), item[1].get<std::string>());
    }
  }
  return merges;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// MergeTable
// ---------------------------------------------------------------------------------------

void BpeModel::MergeTable::reserve(size_t count) {
  // Load factor <= 1/2 keeps linear-probe chains short.
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, count * 2));
  slots_.assign(capacity, Entry{0, kEmptyRank, 0});
  mask_ = capacity - 1;
  size_ = 0;
}

size_t BpeModel::MergeTable::slot_of(uint64_t key) const {
  size_t slot = static_cast<size_t>(mix(key)) & mask_;
  while (slots_[slot].rank != kEmptyRank && slots_[slot].key != key) slot = (slot + 1) & mask_;
  return slot;
}

void BpeModel::MergeTable::insert_or_assign(uint32_t left, uint32_t right, uint32_t rank,
                                            uint32_t new_id) {
  if (slots_.empty() || (size_ + 1) * 2 > slots_.size()) {
    // Grow (only reached when reserve() was too small).
    std::vector<Entry> old = std::move(slots_);
    reserve(std::max<size_t>(16, old.size()));
    for (const Entry& e : old) {
      if (e.rank == kEmptyRank) continue;
      slots_[slot_of(e.key)] = e;
      ++size_;
    }
  }
  const uint64_t key = pack(left, right);
  Entry& entry = slots_[slot_of(key)];
  if (entry.rank == kEmptyRank) ++size_;
  // A pair listed twice keeps its last rank, as the library's map insertion does.
  entry = Entry{key, rank, new_id};
}

const BpeModel::MergeTable::Entry* BpeModel::MergeTable::find(uint32_t left, uint32_t right) const {
  if (slots_.empty()) return nullptr;
  const Entry& entry = slots_[slot_of(pack(left, right))];
  return entry.rank == kEmptyRank ? nullptr : &entry;
}

// ---------------------------------------------------------------------------------------
// WordCache: word -> merged pieces, shared by all threads. Sharded so concurrent encodes
// rarely contend; readers take a shared lock. Like the library's cache it stops growing
// when full (no eviction); caching never changes results.
// ---------------------------------------------------------------------------------------

class BpeModel::WordCache {
 public:
  struct Piece {
    uint32_t id;
    uint32_t len;  // bytes; cached words are < 256 bytes
  };

  // Calls `fn(pieces)` under the shard's lock when `word` is cached.
  template <typename Fn>
  bool visit(std::string_view word, Fn&& fn) const {
    const Shard& shard = shard_of(word);
    std::shared_lock lock(shard.mutex);
    auto it = shard.words.find(word);
    if (it == shard.words.end()) return false;
    fn(it->second);
    return true;
  }

  void put(std::string_view word, std::vector<Piece> pieces) {
    Shard& shard = shard_of(word);
    std::unique_lock lock(shard.mutex);
    if (shard.words.size() >= kShardCapacity) return;
    shard.words.try_emplace(std::string(word), std::move(pieces));
  }

 private:
  static constexpr size_t kShards = 16;
  static constexpr size_t kShardCapacity = kCacheCapacity / kShards;
  struct Shard {
    mutable std::shared_mutex mutex;
    StringMap<std::vector<Piece>> words;
  };

  Shard& shard_of(std::string_view word) {
    return shards_[(StringViewHash{}(word) >> 7) % kShards];
  }
  const Shard& shard_of(std::string_view word) const {
    return shards_[(StringViewHash{}(word) >> 7) % kShards];
  }

  std::array<Shard, kShards> shards_;
};

// ---------------------------------------------------------------------------------------
// BpeModel
// ---------------------------------------------------------------------------------------

BpeModel::BpeModel(Vocab vocab, const std::vector<Merge>& merges, Options options)
    : VocabModel(std::move(vocab)), options_(std::move(options)) {
  if (merges.size() >= kEmptyRank) throw ConfigError("model BPE: too many merges");
  // A merge (a, b) produces a + b with b's continuing-subword prefix stripped: with prefix
  // "##", ("a", "##b") -> "ab" and ("##a", "##b") -> "##ab". The library strips
  // prefix-length bytes without checking that b actually starts with the prefix.
  const size_t prefix_len =
      options_.continuing_subword_prefix ? options_.continuing_subword_prefix->size() : 0;
  merges_.reserve(merges.size());
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    auto out_of_vocab = [](const std::string& token) {
      return ConfigError("model BPE: merge token `" + token + "` is not in the vocabulary");
    };
    const auto left_id = this->vocab().find(left);
    if (!left_id) throw out_of_vocab(left);
    const auto right_id = this->vocab().find(right);
    if (!right_id) throw out_of_vocab(right);
    if (right.size() < prefix_len) throw out_of_vocab(right);  // the library panics here
    merged.assign(left);
    merged.append(right, prefix_len);
    const auto new_id = this->vocab().find(merged);
    if (!new_id) throw out_of_vocab(merged);
    merges_.insert_or_assign(*left_id, *right_id, static_cast<uint32_t>(rank), *new_id);
  }

  if (options_.unk_token) unk_id_ = this->vocab().find(*options_.unk_token);
  if (options_.byte_fallback) {
    for (size_t b = 0; b < byte_ids_.size(); ++b) {
      byte_ids_[b] = this->vocab().find(byte_token(static_cast<unsigned char>(b)));
    }
  }
  cache_ = std::make_unique<WordCache>();
}

BpeModel::~BpeModel() = default;

std::unique_ptr<BpeModel> BpeModel::from_json(const json& config) {
  const ConfigReader reader(config, "model", "BPE");
  reader.check_type();
  Options options;
  if (const json* dropout = reader.find("dropout"); dropout != nullptr && !dropout->is_null()) {
    if (!dropout->is_number()) reader.fail("field \"dropout\" must be a number or null");
    // The library stores dropout as f32 and draws a uniform value in [0, 1) per merge: 0
    // never drops, 1 always drops (no merges at all); anything between is random.
    const float p = dropout->get<float>();
    if (!(p >= 0.0f && p <= 1.0f)) {
      reader.fail("field \"dropout\" should be between 0 and 1, inclusive");
    }
    if (p == 1.0f) {
      options.drop_all_merges = true;
    } else if (p != 0.0f) {
      reader.fail("dropout " + dropout->dump() +
                  " is not supported: it makes tokenization random (use null or 0)");
    }
  }
  options.unk_token = reader.get_optional_string("unk_token");
  options.continuing_subword_prefix = reader.get_optional_string("continuing_subword_prefix");
  options.end_of_word_suffix = reader.get_optional_string("end_of_word_suffix");
  options.fuse_unk = reader.get_bool_or("fuse_unk", false);
  options.byte_fallback = reader.get_bool_or("byte_fallback", false);
  options.ignore_merges = reader.get_bool_or("ignore_merges", false);

  const json& vocab_json = reader.require("vocab");
  reader.require("merges");
  Vocab vocab = Vocab::from_json(vocab_json, reader.field_label("vocab"));
  return std::make_unique<BpeModel>(std::move(vocab), parse_merges(reader), std::move(options));
}

uint32_t BpeModel::unk_id_or_throw() const {
  if (!unk_id_) {
    throw EncodeError("BPE: unk token `" + *options_.unk_token + "` not found in the vocabulary");
  }
  return *unk_id_;
}

std::vector<BpeModel::Symbol> BpeModel::initial_symbols(std::string_view word) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](uint32_t id, size_t len) {
    const size_t index = symbols.size();
    if (index > 0) symbols.back().next = index;
    symbols.push_back(Symbol{id, index > 0 ? index - 1 : kNoSymbol, kNoSymbol, len});
  };

  // An unknown char is held back so consecutive ones can be fused (fuse_unk).
  std::optional<std::pair<uint32_t, size_t>> pending_unk;
  std::string affixed;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t begin = pos;
    const size_t char_len =
        std::min(utf8_sequence_length(static_cast<unsigned char>(word[pos])), word.size() - pos);
    pos += char_len;

    // Non-initial chars get the continuing-subword prefix, the last one the suffix. (GPT-2
    // style files set both to "": skip the copy then, the key is the same.)
    std::string_view key = word.substr(begin, char_len);
    const bool with_prefix = begin > 0 && options_.continuing_subword_prefix &&
                             !options_.continuing_subword_prefix->empty();
    const bool with_suffix =
        pos == word.size() && options_.end_of_word_suffix && !options_.end_of_word_suffix->empty();
    if (with_prefix || with_suffix) {
      affixed.clear();
      if (with_prefix) affixed.append(*options_.continuing_subword_prefix);
      affixed.append(key);
      if (with_suffix) affixed.append(*options_.end_of_word_suffix);
      key = affixed;
    }

    if (const auto id = vocab().find(key)) {
      if (pending_unk) {
        add(pending_unk->first, pending_unk->second);
        pending_unk.reset();
      }
      add(*id, char_len);
      continue;
    }

    if (options_.byte_fallback && std::all_of(key.begin(), key.end(), [this](char c) {
          return byte_ids_[static_cast<unsigned char>(c)].has_value();
        })) {
      // Quirks kept from the library: the bytes are those of the affixed key (prefix and
      // suffix included), each counted as 1 input byte, so offsets may run past the word;
      // and a pending unknown is not flushed first, so it lands after these bytes.
      for (char c : key) add(*byte_ids_[static_cast<unsigned char>(c)], 1);
      continue;
    }

    // Without an unk token the char is silently dropped (later offsets shift left).
    if (!options_.unk_token) continue;
    if (pending_unk && options_.fuse_unk) {
      pending_unk->second += char_len;
    } else {
      if (pending_unk) add(pending_unk->first, pending_unk->second);
      pending_unk.emplace(unk_id_or_throw(), char_len);
    }
  }
  if (pending_unk) add(pending_unk->first, pending_unk->second);
  return symbols;
}

void BpeModel::merge_all(std::vector<Symbol>* symbols_ptr) const {
  std::vector<Symbol>& symbols = *symbols_ptr;
  struct Candidate {
    uint32_t rank;
    size_t pos;
    uint32_t new_id;
  };
  // Min-heap on (rank, pos): the lowest-ranked merge first, leftmost on ties.
  auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::vector<Candidate> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later,
                                                                                std::move(storage));
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const auto* m = merges_.find(symbols[i].id, symbols[i + 1].id)) {
      queue.push(Candidate{m->rank, i, m->new_id});
    }
  }

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    // Skip stale entries: the symbol was merged away, is now last, or its pair changed.
    // Like the library, staleness is judged by the merged id only, not the rank.
    if (current.len == 0 || current.next == kNoSymbol) continue;
    const size_t right_pos = current.next;
    const Symbol right = symbols[right_pos];
    const auto* m = merges_.find(current.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;

    current.id = top.new_id;
    current.len += right.len;
    current.next = right.next;
    symbols[right_pos].len = 0;
    if (right.next != kNoSymbol) symbols[right.next].prev = top.pos;

    if (current.prev != kNoSymbol) {
      if (const auto* p = merges_.find(symbols[current.prev].id, current.id)) {
        queue.push(Candidate{p->rank, current.prev, p->new_id});
      }
    }
    if (current.next != kNoSymbol) {
      if (const auto* n = merges_.find(current.id, symbols[current.next].id)) {
        queue.push(Candidate{n->rank, top.pos, n->new_id});
      }
    }
  }
}

std::vector<Token> BpeModel::tokenize(std::string_view sequence) const {
  std::vector<Token> tokens;
  if (sequence.empty()) return tokens;

  // With dropout the library bypasses both ignore_merges and the cache.
  const bool deterministic = !options_.drop_all_merges;
  if (deterministic && options_.ignore_merges) {
    if (const auto id = vocab().find(sequence)) {
      tokens.push_back(Token{*id, std::string(sequence), {0, sequence.size()}});
      return tokens;
    }
  }

  const bool cacheable = deterministic && sequence.size() < kMaxCachedWordBytes;
  if (cacheable && cache_->visit(sequence, [&](const std::vector<WordCache::Piece>& pieces) {
        tokens.reserve(pieces.size());
        size_t offset = 0;
        for (const auto& piece : pieces) {
          tokens.push_back(Token{piece.id, *vocab().token(piece.id), {offset, offset + piece.len}});
          offset += piece.len;
        }
      })) {
    return tokens;
  }

  std::vector<Symbol> symbols = initial_symbols(sequence);
  if (deterministic) merge_all(&symbols);

  std::vector<WordCache::Piece> pieces;
  if (cacheable) pieces.reserve(symbols.size());
  size_t offset = 0;
  for (const Symbol& symbol : symbols) {
    if (symbol.len == 0) continue;  // merged into its left neighbour
    tokens.push_back(Token{symbol.id, *vocab().token(symbol.id), {offset, offset + symbol.len}});
    offset += symbol.len;
    if (cacheable) pieces.push_back(WordCache::Piece{symbol.id, static_cast<uint32_t>(symbol.len)});
  }
  if (cacheable) cache_->put(sequence, std::move(pieces));
  return tokens;
}

}  // namespace sparkd::tokenizer
