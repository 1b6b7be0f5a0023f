// Unigram model (Hugging Face tokenizers models/unigram).

#include "engine/tokenizer/unigram_model.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "engine/tokenizer/config_reader.h"
#include "engine/tokenizer/error.h"
#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {

namespace {

using nlohmann::json;

constexpr size_t kNoStart = std::numeric_limits<size_t>::max();
// An unknown char scores this much below the worst piece (SentencePiece's kUnkPenalty).
constexpr double kUnkPenalty = 10.0;

std::string byte_token(unsigned char byte) {
  char buffer[8];
  std::snprintf(buffer, sizeof(buffer), "<0x%02X>", byte);
  return buffer;
}

}  // namespace

UnigramModel::UnigramModel(std::vector<Piece> pieces, std::optional<size_t> unk_id,
                           bool byte_fallback)
    : pieces_(std::move(pieces)), byte_fallback_(byte_fallback) {
  if (unk_id) {
    if (pieces_.empty()) {
      throw ConfigError("model Unigram: the vocabulary is empty but at least <unk> is needed");
    }
    if (*unk_id >= pieces_.size()) {
      throw ConfigError("model Unigram: unk_id " + std::to_string(*unk_id) +
                        " is not smaller than the vocabulary size " +
                        std::to_string(pieces_.size()));
    }
    unk_id_ = static_cast<uint32_t>(*unk_id);
  }
  if (pieces_.size() > std::numeric_limits<uint32_t>::max()) {
    throw ConfigError("model Unigram: too many pieces");
  }

  min_score_ = std::numeric_limits<double>::infinity();
  token_to_id_.reserve(pieces_.size());
  for (size_t id = 0; id < pieces_.size(); ++id) {
    token_to_id_.insert_or_assign(pieces_[id].text, static_cast<uint32_t>(id));
    min_score_ = std::min(min_score_, pieces_[id].score);
  }
  build_trie();
  if (byte_fallback_) {
    for (size_t b = 0; b < byte_ids_.size(); ++b) {
      byte_ids_[b] = token_to_id(byte_token(static_cast<unsigned char>(b)));
    }
  }
}

std::unique_ptr<UnigramModel> UnigramModel::from_json(const json& config) {
  const ConfigReader reader(config, "model", "Unigram");
  reader.check_type();

  const json& vocab = reader.require("vocab");
  if (!vocab.is_array()) {
    reader.fail("field \"vocab\" must be an array of [piece, score], got " +
                std::string(vocab.type_name()));
  }
  std::vector<Piece> pieces;
  pieces.reserve(vocab.size());
  for (const json& item : vocab) {
    if (!item.is_array() || item.size() != 2 || !item[0].is_string() || !item[1].is_number()) {
      reader.fail("vocab entry " + std::to_string(pieces.size()) + " must be [piece, score], got " +
                  item.dump());
    }
    pieces.push_back(Piece{item[0].get<std::string>(), item[1].get<double>()});
  }

  std::optional<size_t> unk_id;
  if (const json* unk = reader.find("unk_id"); unk != nullptr && !unk->is_null()) {
    unk_id = reader.get_size("unk_id");
  }
  // Not optional in serde's sense: when present, null is rejected like any non-boolean.
  const bool byte_fallback = reader.has("byte_fallback") && reader.get_bool("byte_fallback");
  return std::make_unique<UnigramModel>(std::move(pieces), unk_id, byte_fallback);
}

void UnigramModel::build_trie() {
  // Distinct non-empty pieces in byte order. (An empty piece can never be matched: the
  // library's prefix search only reports prefixes of at least one byte.)
  std::vector<std::pair<std::string_view, uint32_t>> keys;
  keys.reserve(token_to_id_.size());
  for (const auto& [text, id] : token_to_id_) {
    if (!text.empty()) keys.emplace_back(text, id);
  }
  std::sort(keys.begin(), keys.end());

  // Breadth-first: each node's children are created together, so its edges are
  // contiguous and already sorted by byte.
  struct Work {
    uint32_t node;
    size_t lo, hi, depth;  // keys[lo, hi) share their first `depth` bytes
  };
  nodes_.assign(1, TrieNode{});
  edges_.clear();
  std::deque<Work> work{Work{0, 0, keys.size(), 0}};
  while (!work.empty()) {
    Work w = work.front();
    work.pop_front();
    if (w.lo < w.hi && keys[w.lo].first.size() == w.depth) {
      nodes_[w.node].piece = keys[w.lo].second;
      ++w.lo;
    }
    nodes_[w.node].edge_begin = static_cast<uint32_t>(edges_.size());
    size_t lo = w.lo;
    while (lo < w.hi) {
      const auto byte = static_cast<unsigned char>(keys[lo].first[w.depth]);
      size_t hi = lo + 1;
      while (hi < w.hi && static_cast<unsigned char>(keys[hi].first[w.depth]) == byte) ++hi;
      const auto child_index = static_cast<uint32_t>(nodes_.size());
      nodes_.push_back(TrieNode{});
      edges_.push_back(TrieEdge{byte, child_index});
      work.push_back(Work{child_index, lo, hi, w.depth + 1});
      lo = hi;
    }
    nodes_[w.node].edge_end = static_cast<uint32_t>(edges_.size());
  }

  root_children_.fill(-1);
  for (uint32_t e = nodes_[0].edge_begin; e < nodes_[0].edge_end; ++e) {
    root_children_[edges_[e].byte] = edges_[e].child;
  }
}

int64_t UnigramModel::child(uint32_t node, unsigned char byte) const {
  if (node == 0) return root_children_[byte];
  const auto first = edges_.begin() + nodes_[node].edge_begin;
  const auto last = edges_.begin() + nodes_[node].edge_end;
  const auto it = std::lower_bound(
      first, last, byte, [](const TrieEdge& edge, unsigned char b) { return edge.byte < b; });
  return (it != last && it->byte == byte) ? static_cast<int64_t>(it->child) : -1;
}

std::optional<uint32_t> UnigramModel::token_to_id(std::string_view token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

std::vector<UnigramModel::PathStep> UnigramModel::best_path(std::string_view sequence) const {
  // best[i]: the best-scoring segmentation of sequence[0, i), stored as its last step.
  struct Best {
    double score = 0.0;
    size_t begin = kNoStart;  // kNoStart: not reached yet
    uint32_t id = 0;
  };
  const size_t size = sequence.size();
  const double unk_score = min_score_ - kUnkPenalty;
  std::vector<Best> best(size + 1);

  // Tie-breaking follows the library: candidates are tried by start position, then by
  // length (shortest first), the unknown last, and only a strictly better score replaces
  // the current best. So on equal scores the earliest-starting (longest) last piece wins.
  auto offer = [&best](size_t end, size_t begin, double score, uint32_t id) {
    Best& target = best[end];
    if (target.begin == kNoStart || score > target.score) {
      target = Best{score, begin, id};
      return true;
    }
    return false;
  };

  size_t begin = 0;
  while (begin < size) {
    const double base = best[begin].score;
    const size_t char_len =
        std::min(utf8_sequence_length(static_cast<unsigned char>(sequence[begin])), size - begin);
    bool has_single_char_piece = false;
    uint32_t node = 0;
    for (size_t pos = begin; pos < size; ++pos) {
      const int64_t next = child(node, static_cast<unsigned char>(sequence[pos]));
      if (next < 0) break;
      node = static_cast<uint32_t>(next);
      const int64_t piece = nodes_[node].piece;
      if (piece < 0) continue;
      const auto id = static_cast<uint32_t>(piece);
      offer(pos + 1, begin, pieces_[id].score + base, id);
      if (pos + 1 - begin == char_len) has_single_char_piece = true;
    }
    if (!has_single_char_piece) {
      // The library errors only when it would actually record the unknown.
      const Best& target = best[begin + char_len];
      const double score = unk_score + base;
      if (target.begin == kNoStart || score > target.score) {
        if (!unk_id_) {
          throw EncodeError("Unigram: encountered an unknown token but `unk_id` is missing");
        }
        offer(begin + char_len, begin, score, *unk_id_);
      }
    }
    begin += char_len;
  }

  std::vector<PathStep> path;
  for (size_t end = size; end > 0;) {
    const Best& step = best[end];
    path.push_back(PathStep{step.begin, end, step.id});
    end = step.begin;
  }
  std::reverse(path.begin(), path.end());
  return path;
}

std::vector<Token> UnigramModel::tokenize(std::string_view sequence) const {
  std::vector<Token> tokens;
  if (sequence.empty()) return tokens;
  const std::vector<PathStep> path = best_path(sequence);
  tokens.reserve(path.size());

  for (size_t i = 0; i < path.size();) {
    const bool is_unk = unk_id_ && path[i].id == *unk_id_;
    if (!is_unk) {
      const PathStep& step = path[i++];
      tokens.push_back(Token{step.id,
                             std::string(sequence.substr(step.begin, step.end - step.begin)),
                             {step.begin, step.end}});
      continue;
    }
    // Consecutive steps with the unk id (unknown chars, but also the unk piece itself when
    // it occurs in the text) are fused into one string, as the library does.
    size_t j = i + 1;
    while (j < path.size() && path[j].id == *unk_id_) ++j;
    const size_t begin = path[i].begin;
    const size_t end = path[j - 1].end;
    i = j;
    std::string text(sequence.substr(begin, end - begin));

    // The fused text is looked up again: it can be a piece after all (e.g. "xy" in the
    // vocabulary but cheaper as two unknowns), which then gives its own id.
    if (const auto id = token_to_id(text)) {
      tokens.push_back(Token{*id, std::move(text), {begin, end}});
      continue;
    }
    if (byte_fallback_ && std::all_of(text.begin(), text.end(), [this](char c) {
          return byte_ids_[static_cast<unsigned char>(c)].has_value();
        })) {
      // Every byte token carries the offsets of the whole unknown span.
      for (char c : text) {
        const uint32_t id = *byte_ids_[static_cast<unsigned char>(c)];
        tokens.push_back(Token{id, pieces_[id].text, {begin, end}});
      }
      continue;
    }
    // The unknown token's value is the original text, not the unk piece.
    tokens.push_back(Token{*unk_id_, std::move(text), {begin, end}});
  }
  return tokens;
}

}  // namespace sparkd::tokenizer
