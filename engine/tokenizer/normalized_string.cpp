#include "engine/tokenizer/normalized_string.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {

namespace {

bool is_ascii(std::string_view s) {
  for (unsigned char b : s)
    if (b >= 0x80) return false;
  return true;
}

// Decoded chars of `s` with their starting byte offsets.
struct CharAt {
  char32_t c;
  size_t byte;
};

std::vector<CharAt> chars_with_offsets(std::string_view s) {
  std::vector<CharAt> out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    size_t at = pos;
    out.push_back({next_code_point(s, &pos), at});
  }
  return out;
}

std::string utf8proc_normalize(std::string_view s, int options) {
  utf8proc_uint8_t* result = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                    static_cast<utf8proc_ssize_t>(s.size()), &result,
                                    static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
  if (n < 0) return std::string(s);  // only on invalid input, which never reaches here
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(result, &std::free);
  return std::string(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
}

// Appends the changes that turn `in_chars` input chars into `out`: chars replace inputs one
// for one, extra output chars are insertions, and missing ones are removals folded into the
// last output char.
void append_segment_changes(size_t in_chars, std::string_view out,
                            std::vector<CharChange>* changes) {
  std::vector<char32_t> out_chars = to_code_points(out);
  size_t n_out = out_chars.size();
  for (size_t i = 0; i < n_out; ++i) {
    int change = 0;
    if (i >= in_chars) {
      change = 1;
    } else if (i + 1 == n_out && in_chars > n_out) {
      change = -static_cast<int>(in_chars - n_out);
    }
    changes->push_back({out_chars[i], change});
  }
}

}  // namespace

NormalizedString::NormalizedString(std::string_view original)
    : original_(original), normalized_(original) {
  alignments_.reserve(original.size());
  size_t pos = 0;
  while (pos < original.size()) {
    size_t begin = pos;
    pos += utf8_sequence_length(static_cast<unsigned char>(original[pos]));
    if (pos > original.size()) pos = original.size();
    for (size_t i = begin; i < pos; ++i) alignments_.emplace_back(begin, pos);
  }
}

Offsets NormalizedString::offsets_original() const {
  return {original_shift_, original_shift_ + original_.size()};
}

std::optional<Offsets> NormalizedString::normalized_to_original(Offsets range) const {
  // Same quirks as the library's convert_offsets(Range::Normalized): an empty range maps to
  // itself, and a range is mapped through the first and last aligned bytes.
  if (range.first == range.second) return range;
  if (range.first > range.second || range.second > alignments_.size()) return std::nullopt;
  return Offsets{alignments_[range.first].first, alignments_[range.second - 1].second};
}

void NormalizedString::transform_range(size_t begin, size_t end,
                                       const std::vector<CharChange>& dest, size_t initial_offset) {
  std::vector<CharAt> replaced =
      chars_with_offsets(std::string_view(normalized_).substr(begin, end - begin));
  size_t next_replaced = 0;
  size_t offset = begin;
  for (; next_replaced < initial_offset && next_replaced < replaced.size(); ++next_replaced) {
    size_t char_end =
        next_replaced + 1 < replaced.size() ? replaced[next_replaced + 1].byte : end - begin;
    offset += char_end - replaced[next_replaced].byte;
  }
  auto replaced_size = [&](size_t i) {
    size_t char_end = i + 1 < replaced.size() ? replaced[i + 1].byte : end - begin;
    return char_end - replaced[i].byte;
  };

  std::string new_text;
  new_text.reserve(end - begin + 8);
  std::vector<Offsets> new_alignments;
  new_alignments.reserve(end - begin + 8);
  for (const CharChange& cc : dest) {
    Offsets align;
    if (cc.change > 0) {
      align = offset < 1 ? Offsets{0, 0} : alignments_[offset - 1];
    } else {
      align = alignments_[offset];
    }
    if (cc.change <= 0 && next_replaced < replaced.size()) {
      offset += replaced_size(next_replaced++);
    }
    for (int r = 0; r < -cc.change && next_replaced < replaced.size(); ++r) {
      offset += replaced_size(next_replaced++);
    }
    size_t before = new_text.size();
    append_utf8(&new_text, cc.c);
    new_alignments.insert(new_alignments.end(), new_text.size() - before, align);
  }
  normalized_.replace(begin, end - begin, new_text);
  alignments_.erase(alignments_.begin() + static_cast<std::ptrdiff_t>(begin),
                    alignments_.begin() + static_cast<std::ptrdiff_t>(end));
  alignments_.insert(alignments_.begin() + static_cast<std::ptrdiff_t>(begin),
                     new_alignments.begin(), new_alignments.end());
}

void NormalizedString::unicode_normalize(Form form) {
  if (is_ascii(normalized_)) return;  // every normalization form is the identity on ASCII
  int options = 0;
  switch (form) {
    case Form::kNfd:
      options = UTF8PROC_DECOMPOSE;
      break;
    case Form::kNfkd:
      options = UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
    case Form::kNfc:
      options = UTF8PROC_COMPOSE;
      break;
    case Form::kNfkc:
      options = UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
  }
  std::string whole = utf8proc_normalize(normalized_, options);
  if (whole == normalized_) return;

  // Alignments are kept per segment (a starter and the combining marks after it) so each
  // output char points at the input it came from. If composition joins across segments,
  // fall back to treating the whole string as one segment: the text is exact either way,
  // only offsets get coarser.
  std::vector<CharAt> chars = chars_with_offsets(normalized_);
  std::vector<CharChange> changes;
  changes.reserve(chars.size() + 8);
  std::string joined;
  size_t seg_begin = 0;
  for (size_t i = 1; i <= chars.size(); ++i) {
    bool boundary =
        i == chars.size() ||
        utf8proc_get_property(static_cast<utf8proc_int32_t>(chars[i].c))->combining_class == 0;
    if (!boundary) continue;
    size_t byte_begin = chars[seg_begin].byte;
    size_t byte_end = i == chars.size() ? normalized_.size() : chars[i].byte;
    std::string out = utf8proc_normalize(
        std::string_view(normalized_).substr(byte_begin, byte_end - byte_begin), options);
    joined += out;
    append_segment_changes(i - seg_begin, out, &changes);
    seg_begin = i;
  }
  if (joined != whole) {
    changes.clear();
    append_segment_changes(chars.size(), whole, &changes);
  }
  transform(changes, 0);
}

void NormalizedString::nfd() {
  unicode_normalize(Form::kNfd);
}
void NormalizedString::nfkd() {
  unicode_normalize(Form::kNfkd);
}
void NormalizedString::nfc() {
  unicode_normalize(Form::kNfc);
}
void NormalizedString::nfkc() {
  unicode_normalize(Form::kNfkc);
}

void NormalizedString::map_case(void (*mapping)(char32_t, std::vector<char32_t>*)) {
  // One char may map to several (U+0130 -> "i\u0307"): the extra ones are insertions.
  std::vector<CharChange> changes;
  changes.reserve(normalized_.size());
  std::vector<char32_t> mapped;
  size_t pos = 0;
  while (pos < normalized_.size()) {
    mapped.clear();
    mapping(next_code_point(normalized_, &pos), &mapped);
    for (size_t i = 0; i < mapped.size(); ++i) changes.push_back({mapped[i], i > 0 ? 1 : 0});
  }
  transform(changes, 0);
}

void NormalizedString::lowercase() {
  if (is_ascii(normalized_)) {  // byte-for-byte: alignments do not move
    for (char& ch : normalized_)
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + ('a' - 'A'));
    return;
  }
  map_case(to_lowercase);
}

void NormalizedString::uppercase() {
  map_case(to_uppercase);
}

void NormalizedString::filter(const std::function<bool(char32_t)>& keep) {
  // Removed chars are folded into the kept char before them (or, at the start, skipped via
  // initial_offset), as the library does.
  std::vector<CharChange> changes;
  changes.reserve(normalized_.size());
  int removed = 0;
  size_t removed_start = 0;
  bool have_last = false;
  char32_t last = 0;
  size_t pos = 0;
  while (pos < normalized_.size()) {
    char32_t c = next_code_point(normalized_, &pos);
    if (keep(c)) {
      if (have_last) {
        changes.push_back({last, -removed});
      } else {
        removed_start = static_cast<size_t>(removed);
      }
      last = c;
      have_last = true;
      removed = 0;
    } else {
      ++removed;
    }
  }
  if (have_last) changes.push_back({last, -removed});
  transform(changes, removed_start);
}

void NormalizedString::map(const std::function<char32_t(char32_t)>& fn) {
  std::vector<CharChange> changes;
  changes.reserve(normalized_.size());
  size_t pos = 0;
  while (pos < normalized_.size()) changes.push_back({fn(next_code_point(normalized_, &pos)), 0});
  transform(changes, 0);
}

void NormalizedString::prepend(std::string_view s) {
  if (normalized_.empty()) return;
  size_t first_len = utf8_sequence_length(static_cast<unsigned char>(normalized_[0]));
  size_t pos = 0;
  char32_t first = next_code_point(normalized_, &pos);
  std::vector<CharChange> changes;
  size_t i = 0;
  size_t spos = 0;
  while (spos < s.size()) changes.push_back({next_code_point(s, &spos), i++ != 0 ? 1 : 0});
  changes.push_back({first, 1});
  transform_range(0, first_len, changes, 0);
}

void NormalizedString::append(std::string_view s) {
  std::vector<CharChange> changes;
  size_t begin = normalized_.size();
  if (!normalized_.empty()) {
    begin = normalized_.size() - 1;
    while (begin > 0 && (static_cast<unsigned char>(normalized_[begin]) & 0xC0) == 0x80) --begin;
    size_t pos = begin;
    changes.push_back({next_code_point(normalized_, &pos), 0});
  } else {
    begin = 0;
  }
  size_t spos = 0;
  while (spos < s.size()) changes.push_back({next_code_point(s, &spos), 1});
  transform_range(begin, normalized_.size(), changes, 0);
}

void NormalizedString::replace(const Pattern& pattern, std::string_view content) {
  std::vector<PatternMatch> matches = pattern.find_matches(normalized_);
  bool any = false;
  for (const PatternMatch& m : matches) any |= m.is_match;
  if (!any) return;
  std::string new_text;
  new_text.reserve(normalized_.size());
  std::vector<Offsets> new_alignments;
  new_alignments.reserve(alignments_.size());
  size_t last_end = 0;
  for (const PatternMatch& m : matches) {
    if (!m.is_match) continue;
    auto [start, end] = m.offsets;
    new_text.append(normalized_, last_end, start - last_end);
    new_alignments.insert(new_alignments.end(),
                          alignments_.begin() + static_cast<std::ptrdiff_t>(last_end),
                          alignments_.begin() + static_cast<std::ptrdiff_t>(start));
    // Every char of `content` is an insertion after the removed match: it takes the
    // alignment of the byte before the match's end (the library's transform_range with
    // initial_offset = chars in the match).
    Offsets align = end < 1 ? Offsets{0, 0} : alignments_[end - 1];
    size_t before = new_text.size();
    new_text.append(content);
    new_alignments.insert(new_alignments.end(), new_text.size() - before, align);
    last_end = end;
  }
  new_text.append(normalized_, last_end, std::string::npos);
  new_alignments.insert(new_alignments.end(),
                        alignments_.begin() + static_cast<std::ptrdiff_t>(last_end),
                        alignments_.end());
  normalized_ = std::move(new_text);
  alignments_ = std::move(new_alignments);
}

void NormalizedString::strip(bool left, bool right) {
  std::vector<CharAt> chars = chars_with_offsets(normalized_);
  size_t leading = 0;
  if (left)
    while (leading < chars.size() && is_whitespace(chars[leading].c)) ++leading;
  size_t trailing = 0;
  if (right)
    while (trailing < chars.size() - leading && is_whitespace(chars[chars.size() - 1 - trailing].c))
      ++trailing;
  if (leading == 0 && trailing == 0) return;
  std::vector<CharChange> changes;
  for (size_t i = leading; i + trailing < chars.size(); ++i) {
    int change = (i + trailing + 1 == chars.size()) ? -static_cast<int>(trailing) : 0;
    changes.push_back({chars[i].c, change});
  }
  transform(changes, leading);
}

std::optional<NormalizedString> NormalizedString::slice(size_t begin, size_t end) const {
  auto on_boundary = [&](size_t i) {
    return i == normalized_.size() ||
           (i < normalized_.size() && (static_cast<unsigned char>(normalized_[i]) & 0xC0) != 0x80);
  };
  if (begin > end || !on_boundary(begin) || !on_boundary(end)) return std::nullopt;
  std::optional<Offsets> original_range = normalized_to_original({begin, end});
  if (!original_range) return std::nullopt;
  NormalizedString out;
  size_t n_shift = original_range->first;
  if (original_range->first <= original_range->second &&
      original_range->second <= original_.size()) {
    out.original_ =
        original_.substr(original_range->first, original_range->second - original_range->first);
  }
  out.normalized_ = normalized_.substr(begin, end - begin);
  out.alignments_.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) {
    out.alignments_.emplace_back(alignments_[i].first - n_shift, alignments_[i].second - n_shift);
  }
  out.original_shift_ = original_shift_ + n_shift;
  return out;
}

std::vector<NormalizedString> NormalizedString::split(const Pattern& pattern,
                                                      SplitBehavior behavior) const {
  std::vector<PatternMatch> matches = pattern.find_matches(normalized_);
  // (offsets, remove) pieces, as the library computes them per behaviour.
  std::vector<std::pair<Offsets, bool>> pieces;
  pieces.reserve(matches.size());
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const PatternMatch& m : matches) pieces.push_back({m.offsets, false});
      break;
    case SplitBehavior::kRemoved:
      for (const PatternMatch& m : matches) pieces.push_back({m.offsets, m.is_match});
      break;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const PatternMatch& m : matches) {
        if (m.is_match == previous_match && !pieces.empty()) {
          pieces.back().first.second = m.offsets.second;
        } else {
          pieces.push_back({m.offsets, false});
        }
        previous_match = m.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const PatternMatch& m : matches) {
        if (m.is_match && !previous_match && !pieces.empty()) {
          pieces.back().first.second = m.offsets.second;
        } else {
          pieces.push_back({m.offsets, false});
        }
        previous_match = m.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->is_match && !previous_match && !pieces.empty()) {
          pieces.back().first.first = it->offsets.first;
        } else {
          pieces.push_back({it->offsets, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
    }
  }
  std::vector<NormalizedString> out;
  out.reserve(pieces.size());
  for (const auto& [offsets, remove] : pieces) {
    if (remove) continue;
    std::optional<NormalizedString> s = slice(offsets.first, offsets.second);
    if (s) out.push_back(std::move(*s));
  }
  return out;
}

}  // namespace sparkd::tokenizer
