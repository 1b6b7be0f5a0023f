#include "engine/tokenizer/added_vocabulary.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>

#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {

// Byte trie over token contents. Matching is leftmost-longest: the earliest position with
// any match wins, and there the longest content — what the library's Aho-Corasick
// automaton (MatchKind::LeftmostLongest) returns.
struct AddedVocabulary::Trie {
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // few per node: linear scan
    int64_t id = -1;                                          // token id when a content ends here
  };
  std::array<int32_t, 256> root_children;
  std::vector<Node> nodes;

  Trie() { root_children.fill(-1); }

  void insert(std::string_view content, uint32_t id) {
    int32_t node = -1;
    for (size_t i = 0; i < content.size(); ++i) {
      auto b = static_cast<unsigned char>(content[i]);
      int32_t* slot = nullptr;
      if (node < 0) {
        slot = &root_children[b];
      } else {
        for (auto& [byte, child] : nodes[node].children)
          if (byte == b) slot = &child;
      }
      if (slot == nullptr || *slot < 0) {
        nodes.emplace_back();
        auto created = static_cast<int32_t>(nodes.size() - 1);
        if (slot == nullptr) {
          nodes[node].children.emplace_back(b, created);
        } else {
          *slot = created;
        }
        node = created;
      } else {
        node = *slot;
      }
    }
    if (node >= 0) nodes[node].id = id;
  }

  // Longest content starting at text[pos]; returns its length (0 if none) and id.
  size_t longest_at(std::string_view text, size_t pos, uint32_t* id) const {
    int32_t node = root_children[static_cast<unsigned char>(text[pos])];
    size_t best = 0;
    for (size_t i = pos + 1; node >= 0; ++i) {
      if (nodes[node].id >= 0) {
        best = i - pos;
        *id = static_cast<uint32_t>(nodes[node].id);
      }
      if (i >= text.size()) break;
      auto b = static_cast<unsigned char>(text[i]);
      int32_t next = -1;
      for (const auto& [byte, child] : nodes[node].children)
        if (byte == b) next = child;
      node = next;
    }
    return best;
  }
};

namespace {

char32_t last_char(std::string_view s) {
  size_t begin = s.size() - 1;
  while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80) --begin;
  return next_code_point(s, &begin);
}

// Start of the whitespace run that ends `s` (s.size() when there is none).
size_t trailing_space_start(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t begin = end - 1;
    while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80) --begin;
    size_t pos = begin;
    if (!is_whitespace(next_code_point(s, &pos))) break;
    end = begin;
  }
  return end;
}

// Length of the whitespace run that starts `s`.
size_t leading_space_length(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t at = pos;
    if (!is_whitespace(next_code_point(s, &pos))) return at;
  }
  return s.size();
}

}  // namespace

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    content_to_id_[t.content] = t.id;
    id_to_index_[t.id] = i;
    if (t.special) special_contents_.insert(t.content);
    if (t.normalized && normalizer != nullptr) {
      NormalizedString s(t.content);
      normalizer->normalize(s);
      if (s.get() != t.content) normalized_content_[t.id] = s.get();
    }
  }
  for (const AddedToken& t : tokens_) {
    if (content_to_id_.at(t.content) != t.id) continue;  // superseded by a later duplicate
    std::unique_ptr<Trie>& trie = t.normalized ? normalized_trie_ : raw_trie_;
    if (!trie) trie = std::make_unique<Trie>();
    auto it = normalized_content_.find(t.id);
    const std::string& pattern =
        (t.normalized && it != normalized_content_.end()) ? it->second : t.content;
    if (!pattern.empty()) trie->insert(pattern, t.id);
  }
}

AddedVocabulary::AddedVocabulary(AddedVocabulary&&) noexcept = default;
AddedVocabulary& AddedVocabulary::operator=(AddedVocabulary&&) noexcept = default;
AddedVocabulary::~AddedVocabulary() = default;

std::optional<uint32_t> AddedVocabulary::token_to_id(std::string_view content) const {
  auto it = content_to_id_.find(std::string(content));
  if (it == content_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string* AddedVocabulary::id_to_token(uint32_t id) const {
  auto it = id_to_index_.find(id);
  if (it == id_to_index_.end()) return nullptr;
  auto norm = normalized_content_.find(id);
  if (norm != normalized_content_.end()) return &norm->second;
  return &tokens_[it->second].content;
}

bool AddedVocabulary::is_special_token(std::string_view token) const {
  return special_contents_.count(std::string(token)) > 0;
}

void AddedVocabulary::find_matches(
    std::string_view text, const Trie* trie,
    std::vector<std::pair<std::optional<uint32_t>, Offsets>>* out) const {
  if (text.empty()) {
    out->push_back({std::nullopt, {0, 0}});
    return;
  }
  if (trie == nullptr) {
    out->push_back({std::nullopt, {0, text.size()}});
    return;
  }
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    uint32_t id = 0;
    size_t len = trie->longest_at(text, pos, &id);
    if (len == 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t stop = pos + len;
    pos = stop;  // a rejected match still consumes its text, as in the automaton
    const AddedToken& token = tokens_[id_to_index_.at(id)];
    if (token.single_word) {
      bool start_space = start == 0 || !is_word_char(last_char(text.substr(0, start)));
      size_t after = stop;
      bool stop_space = stop == text.size() || !is_word_char(next_code_point(text, &after));
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
    if (token.rstrip) stop += leading_space_length(text.substr(stop));
    if (start_offset < start) out->push_back({std::nullopt, {start_offset, start}});
    out->push_back({id, {start, stop}});
    start_offset = stop;
    pos = stop;
  }
  if (start_offset != text.size()) out->push_back({std::nullopt, {start_offset, text.size()}});
}

std::vector<Split> AddedVocabulary::split_with_indices(NormalizedString&& text,
                                                       const Trie* trie) const {
  std::vector<std::pair<std::optional<uint32_t>, Offsets>> matches;
  find_matches(text.get(), trie, &matches);
  std::vector<Split> splits;
  splits.reserve(matches.size());
  // Even with no match the text is re-sliced, like the library: slicing re-bases the
  // original range on what normalization kept, which offsets_original() reports.
  for (const auto& [id, offsets] : matches) {
    std::optional<NormalizedString> slice = text.slice(offsets.first, offsets.second);
    if (!slice) continue;
    if (id) {
      std::string value = slice->get();
      size_t len = value.size();
      std::vector<Token> tokens{{*id, std::move(value), {0, len}}};
      splits.push_back({std::move(*slice), std::move(tokens)});
    } else {
      splits.push_back({std::move(*slice), std::nullopt});
    }
  }
  return splits;
}

PreTokenizedString AddedVocabulary::extract_and_normalize(const Normalizer* normalizer,
                                                          std::string_view text) const {
  PreTokenizedString pre(text);
  pre.split([&](size_t, NormalizedString&& s, std::vector<Split>* out) {
    *out = split_with_indices(std::move(s), raw_trie_.get());
  });
  pre.split([&](size_t, NormalizedString&& s, std::vector<Split>* out) {
    if (normalizer != nullptr) normalizer->normalize(s);
    *out = split_with_indices(std::move(s), normalized_trie_.get());
  });
  return pre;
}

}  // namespace sparkd::tokenizer
