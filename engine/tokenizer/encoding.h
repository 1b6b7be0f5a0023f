// The result of encoding one input (or one pair of inputs): ids plus the per-token data a
// caller may ask for. Mirrors Hugging Face's Encoding, including how truncation and merging
// of pairs behave.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/pattern.h"

namespace sparkd::tokenizer {

enum class TruncationDirection { kLeft, kRight };
enum class TruncationStrategy { kLongestFirst, kOnlyFirst, kOnlySecond };

struct TruncationParams {
  size_t max_length = 512;
  size_t stride = 0;
  TruncationStrategy strategy = TruncationStrategy::kLongestFirst;
  TruncationDirection direction = TruncationDirection::kRight;
};

// How encodings are padded (tokenizer.json "padding"). For one encoding, BatchLongest pads
// only up to pad_to_multiple_of.
struct PaddingParams {
  std::optional<size_t> fixed_length;  // Fixed(n); nullopt is BatchLongest
  std::optional<size_t> pad_to_multiple_of;
  bool pad_left = false;
  uint32_t pad_id = 0;
  uint32_t pad_type_id = 0;
  std::string pad_token = "[PAD]";
};

struct Encoding {
  std::vector<uint32_t> ids;
  std::vector<uint32_t> type_ids;
  std::vector<std::string> tokens;
  std::vector<std::optional<uint32_t>> words;
  std::vector<Offsets> offsets;
  std::vector<uint32_t> special_tokens_mask;
  std::vector<uint32_t> attention_mask;
  // What truncation cut off (with `stride` tokens of overlap), each its own Encoding.
  std::vector<Encoding> overflowing;
  // Sequence index (0: first input, 1: pair) -> [begin, end) of its tokens.
  std::map<size_t, std::pair<size_t, size_t>> sequence_ranges;

  size_t size() const { return ids.size(); }
  bool empty() const { return ids.empty(); }
  // Marks every token as belonging to sequence `sequence_id` (sets sequence_ranges).
  void set_sequence_id(size_t sequence_id);
  void set_type_ids(uint32_t type_id);
  // Keeps at most max_length tokens; the rest (with `stride` overlap) goes to overflowing.
  // Throws EncodeError when stride >= max_length > 0, like the library.
  void truncate(size_t max_length, size_t stride, TruncationDirection direction);
  // Appends `pair` (and combines overflowing encodings the way the library does).
  void merge_with(Encoding pair, bool growing_offsets);
  // Pads (this and every overflowing encoding) up to target_length; longer ones are kept.
  void pad(size_t target_length, const PaddingParams& params);
  static Encoding merge(std::vector<Encoding> encodings, bool growing_offsets);
};

// Pads like the library's pad_encodings: to the fixed length, or to the longest encoding,
// rounded up to pad_to_multiple_of.
void pad_encodings(std::vector<Encoding*> encodings, const PaddingParams& params);

// Truncates one or two encodings to fit params.max_length in total (Hugging Face's
// truncate_encodings). Throws EncodeError on impossible requests, with the library's message.
void truncate_encodings(Encoding* encoding, Encoding* pair, const TruncationParams& params);

}  // namespace sparkd::tokenizer
