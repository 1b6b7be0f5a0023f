// A string being normalized, with the alignment of every normalized byte to the range of
// the original text it came from. Mirrors Hugging Face's NormalizedString closely: the
// alignments decide `offsets_original()`, which Metaspace(prepend_scheme="first") and the
// optional token offsets depend on.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tokenizer/pattern.h"

namespace sparkd::tokenizer {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// One output character of a transformation and how it relates to the input:
//   change == 0: replaces the next input char; change == +1: inserted (no input char
//   consumed); change == -n: replaces the next input char and removes the n after it.
struct CharChange {
  char32_t c;
  int change;
};

class NormalizedString {
 public:
  NormalizedString() = default;
  explicit NormalizedString(std::string_view original);

  const std::string& get() const { return normalized_; }
  const std::string& original() const { return original_; }
  size_t len() const { return normalized_.size(); }
  bool empty() const { return normalized_.empty(); }
  // Range of this (possibly sliced) string within the whole original input.
  Offsets offsets_original() const;
  // Original byte range of a normalized byte range; nullopt when it cannot be mapped.
  std::optional<Offsets> normalized_to_original(Offsets normalized) const;

  // --- Transformations (each updates the alignments) ---
  // Replaces normalized bytes [begin, end) by `dest`; the first `initial_offset` chars of
  // the range are removed before the first output char.
  void transform_range(size_t begin, size_t end, const std::vector<CharChange>& dest,
                       size_t initial_offset);
  void transform(const std::vector<CharChange>& dest, size_t initial_offset) {
    transform_range(0, normalized_.size(), dest, initial_offset);
  }
  void nfd();
  void nfkd();
  void nfc();
  void nfkc();
  void lowercase();
  void uppercase();
  void filter(const std::function<bool(char32_t)>& keep);
  void map(const std::function<char32_t(char32_t)>& fn);
  void prepend(std::string_view s);
  void append(std::string_view s);
  void replace(const Pattern& pattern, std::string_view content);
  void strip(bool left, bool right);

  // A sub-string by normalized byte range; nullopt when the range is not on char
  // boundaries.
  std::optional<NormalizedString> slice(size_t begin, size_t end) const;
  std::vector<NormalizedString> split(const Pattern& pattern, SplitBehavior behavior) const;

 private:
  enum class Form { kNfd, kNfkd, kNfc, kNfkc };
  void unicode_normalize(Form form);
  void map_case(void (*mapping)(char32_t, std::vector<char32_t>*));

  std::string original_;
  std::string normalized_;
  std::vector<Offsets> alignments_;  // one per normalized byte, into original_
  size_t original_shift_ = 0;        // where original_ starts in the whole input
};

}  // namespace sparkd::tokenizer
