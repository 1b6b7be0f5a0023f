// Encoding: truncation (with stride/overflow) and merging, following Hugging Face's
// tokenizer/encoding.rs and utils/truncation.rs step by step, since callers compare our
// ids, overflowing encodings and error texts with the library's.
#include "engine/tokenizer/encoding.h"

#include <algorithm>
#include <string>
#include <utility>

#include "engine/tokenizer/error.h"

namespace sparkd::tokenizer {
namespace {

// The per-token fields of `source` in [begin, end), as a fresh Encoding with no overflowing
// and no sequence ranges (the library drops both when it slices an encoding).
Encoding slice(const Encoding& source, size_t begin, size_t end) {
  auto part = [begin, end](const auto& v) {
    using Vec = std::decay_t<decltype(v)>;
    return Vec(v.begin() + static_cast<std::ptrdiff_t>(begin),
               v.begin() + static_cast<std::ptrdiff_t>(end));
  };
  Encoding out;
  out.ids = part(source.ids);
  out.type_ids = part(source.type_ids);
  out.tokens = part(source.tokens);
  out.words = part(source.words);
  out.offsets = part(source.offsets);
  out.special_tokens_mask = part(source.special_tokens_mask);
  out.attention_mask = part(source.attention_mask);
  return out;
}

// Appends `tail` to `head`: the vector-level step of merge_with.
template <typename T>
void append(std::vector<T>* head, std::vector<T>&& tail) {
  head->insert(head->end(), std::make_move_iterator(tail.begin()),
               std::make_move_iterator(tail.end()));
}

}  // namespace

void Encoding::set_sequence_id(size_t sequence_id) {
  sequence_ranges[sequence_id] = {0, size()};
}

void Encoding::set_type_ids(uint32_t type_id) {
  type_ids.assign(size(), type_id);
}

void Encoding::truncate(size_t max_length, size_t stride, TruncationDirection direction) {
  const size_t length = ids.size();
  // Nothing to cut: the stride is not even checked in this case (the library returns first).
  if (max_length >= length) return;

  if (max_length == 0) {
    // Everything overflows: the whole original encoding (with its own overflowing and
    // sequence ranges) becomes the single overflowing entry of an empty encoding.
    Encoding original = std::move(*this);
    *this = Encoding{};
    overflowing.push_back(std::move(original));
    return;
  }

  if (stride >= max_length) {
    // The library asserts here (a Rust panic); this is its message, verbatim, including
    // the unbalanced parenthesis.
    throw EncodeError("`stride` must be strictly less than `max_len=" + std::to_string(max_length) +
                      "` (note that `max_len` may be shorter than the max length of the "
                      "original model, as it subtracts the number of special characters");
  }

  // Windows of max_length tokens whose starts are (max_length - stride) apart, so that
  // consecutive windows share `stride` tokens. The first window is what we keep.
  const size_t step = max_length - stride;
  std::vector<std::pair<size_t, size_t>> windows;
  if (direction == TruncationDirection::kRight) {
    // Walk forward from the start; stop after the window that reaches the end.
    for (size_t begin = 0; begin < length; begin += step) {
      const size_t end = std::min(begin + max_length, length);
      windows.emplace_back(begin, end);
      if (end == length) break;
    }
  } else {
    // Walk backward from the end; stop after the window that reaches the start.
    size_t last = length - 1;  // index of the window's last token
    while (true) {
      const size_t end = last + 1;
      const size_t begin = end > max_length ? end - max_length : 0;
      windows.emplace_back(begin, end);
      if (begin == 0 || last < step) break;
      last -= step;
    }
  }

  Encoding kept = slice(*this, windows[0].first, windows[0].second);
  for (size_t i = 1; i < windows.size(); ++i) {
    kept.overflowing.push_back(slice(*this, windows[i].first, windows[i].second));
  }
  // Truncation loses sequence_ranges and any previous overflowing, like the library.
  *this = std::move(kept);
}

void Encoding::merge_with(Encoding pair, bool growing_offsets) {
  // Overflowing parts combine pairwise so that every overflowing window of one side is
  // matched with the other side (and its windows), in the library's order.
  std::vector<Encoding> combined;
  for (const Encoding& own : overflowing) {
    Encoding with_pair = own;
    with_pair.merge_with(pair, growing_offsets);
    combined.push_back(std::move(with_pair));
    for (const Encoding& other : pair.overflowing) {
      Encoding with_other = own;
      with_other.merge_with(other, growing_offsets);
      combined.push_back(std::move(with_other));
    }
  }
  for (const Encoding& other : pair.overflowing) {
    Encoding self_with_other = *this;
    self_with_other.merge_with(other, growing_offsets);
    combined.push_back(std::move(self_with_other));
  }

  const size_t original_length = size();
  // The pair's ranges move past our tokens; an id present on both sides takes the pair's.
  for (const auto& [sequence_id, range] : pair.sequence_ranges) {
    sequence_ranges[sequence_id] = {original_length + range.first, original_length + range.second};
  }
  append(&ids, std::move(pair.ids));
  append(&type_ids, std::move(pair.type_ids));
  append(&tokens, std::move(pair.tokens));
  append(&words, std::move(pair.words));

  // With growing offsets the pair continues where our last token ended.
  const size_t shift = growing_offsets && !offsets.empty() ? offsets.back().second : 0;
  offsets.reserve(offsets.size() + pair.offsets.size());
  for (const Offsets& o : pair.offsets) offsets.emplace_back(o.first + shift, o.second + shift);

  append(&special_tokens_mask, std::move(pair.special_tokens_mask));
  append(&attention_mask, std::move(pair.attention_mask));
  overflowing = std::move(combined);
}

Encoding Encoding::merge(std::vector<Encoding> encodings, bool growing_offsets) {
  Encoding merged;
  for (Encoding& e : encodings) merged.merge_with(std::move(e), growing_offsets);
  return merged;
}

void truncate_encodings(Encoding* encoding, Encoding* pair, const TruncationParams& params) {
  if (params.max_length == 0) {
    encoding->truncate(0, params.stride, params.direction);
    if (pair != nullptr) pair->truncate(0, params.stride, params.direction);
    return;
  }

  const size_t total = encoding->size() + (pair != nullptr ? pair->size() : 0);
  if (total <= params.max_length) return;
  const size_t to_remove = total - params.max_length;

  if (params.strategy == TruncationStrategy::kLongestFirst) {
    if (pair == nullptr) {
      encoding->truncate(params.max_length, params.stride, params.direction);
      return;
    }
    // Let n1 be the shorter length. Either only the longer input is cut (to
    // max_length - n1, but never below n1), or both are cut to about half of max_length
    // (the longer one gets the odd token).
    size_t n1 = encoding->size();
    size_t n2 = pair->size();
    const bool swapped = n1 > n2;
    if (swapped) std::swap(n1, n2);
    n2 = n1 > params.max_length ? n1 : std::max(n1, params.max_length - n1);
    if (n1 + n2 > params.max_length) {
      n1 = params.max_length / 2;
      n2 = n1 + params.max_length % 2;
    }
    if (swapped) std::swap(n1, n2);
    encoding->truncate(n1, params.stride, params.direction);
    pair->truncate(n2, params.stride, params.direction);
    return;
  }

  Encoding* target = encoding;
  if (params.strategy == TruncationStrategy::kOnlySecond) {
    if (pair == nullptr) {
      throw EncodeError("Truncation error: Second sequence not provided");
    }
    target = pair;
  }
  const size_t target_length = target->size();
  if (target_length <= to_remove) {
    throw EncodeError(
        "Truncation error: Sequence to truncate too short to respect the provided max_length");
  }
  target->truncate(target_length - to_remove, params.stride, params.direction);
}

void Encoding::pad(size_t target_length, const PaddingParams& params) {
  for (Encoding& overflow : overflowing) overflow.pad(target_length, params);
  if (ids.size() >= target_length) return;
  const size_t n = target_length - ids.size();
  // Inserts n copies of `value` at the padded end of `v`.
  auto extend = [&](auto& v, const auto& value) {
    v.insert(params.pad_left ? v.begin() : v.end(), n, value);
  };
  extend(ids, params.pad_id);
  extend(type_ids, params.pad_type_id);
  extend(tokens, params.pad_token);
  extend(words, std::optional<uint32_t>());
  extend(attention_mask, uint32_t{0});
  extend(special_tokens_mask, uint32_t{1});
  extend(offsets, Offsets{0, 0});
  if (params.pad_left) {
    for (auto& [sequence, range] : sequence_ranges) range = {range.first + n, range.second + n};
  }
}

void pad_encodings(std::vector<Encoding*> encodings, const PaddingParams& params) {
  if (encodings.empty()) return;
  size_t length = 0;
  if (params.fixed_length) {
    length = *params.fixed_length;
  } else {
    for (const Encoding* e : encodings) length = std::max(length, e->size());
  }
  if (params.pad_to_multiple_of && *params.pad_to_multiple_of > 0 &&
      length % *params.pad_to_multiple_of > 0) {
    length += *params.pad_to_multiple_of - length % *params.pad_to_multiple_of;
  }
  for (Encoding* e : encodings) e->pad(length, params);
}

}  // namespace sparkd::tokenizer
