// Incremental detokenization for streaming: one new token id in, the newly final text out.
// The approach of HF text-generation-inference and vLLM (prefix_offset / read_offset): decode
// a short window of recent ids together with a few ids of context before them, and release
// only the part of the window's text that extends what the context already decoded to, and
// that does not end in U+FFFD (an incomplete UTF-8 character that later ids may complete).
// Decoding with context is what keeps Metaspace and WordPiece spacing right: the first id of
// a window is never the first id of the text unless it really is.
//
// Invariant (checked by tests/unit/test_detokenizer.cpp): without prompt context,
// concat(push deltas) + flush() == tokenizer.decode(output_ids, skip_special_tokens), and
// every delta is valid UTF-8 (unless the model itself produced invalid bytes, which decode
// turns into U+FFFD as well).
//
// Cost per token: one decode of at most kMaxWindowTokens ids (typically context + a handful),
// independent of the sequence length; the window slides forward once it exceeds
// kSlideAfterTokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/tokenizer/tokenizer.h"

namespace sparkd::sched {

struct DetokenizerOptions {
  bool skip_special_tokens = true;
  // How many trailing prompt ids decode in front of the first output ids (vLLM's
  // INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET), so the first output token's leading space is
  // decided as in a decode of prompt + output. Also the context kept when the window slides.
  size_t context_tokens = 5;
  // Extra ids of delay before text is final: text is released only once it has stayed the
  // same over this many further decodes. 0 (vLLM) is right for every decoder here: ByteLevel,
  // Metaspace and byte fallback map each token on its own, and WordPiece's cleanup
  // (" ' " -> "'", " n't" -> "n't") also runs per token, as in the tokenizers library.
  size_t holdback_tokens = 0;
};

class IncrementalDetokenizer {
 public:
  // The window slides once it holds this many ids (beyond context and holdback).
  static constexpr size_t kSlideAfterTokens = 8;
  // Past this window length the text is released even if it still ends in U+FFFD (only
  // persistently invalid bytes get there), so the per-token cost stays bounded.
  static constexpr size_t kMaxWindowTokens = 64;
  // Extra context ids taken when the context would start inside a UTF-8 character.
  static constexpr size_t kMaxExtraContextTokens = 3;

  // `prompt_ids` may be empty; only its last context_tokens (+3) ids are kept.
  static Expected<IncrementalDetokenizer> create(
      std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
      const std::vector<uint32_t>& prompt_ids, DetokenizerOptions options = {});

  // Appends one output id and returns the text that became final (often empty).
  Expected<std::string> push(uint32_t id);
  // At the end of the sequence: whatever is still held back (an incomplete trailing
  // character comes out as U+FFFD, exactly as a full decode does).
  Expected<std::string> flush();

  size_t num_output_tokens() const { return ids_.size() - output_begin_; }
  // Ids currently decoded per push: context + unreleased + holdback.
  size_t window_tokens() const { return ids_.size() - prefix_offset_; }

 private:
  // The window's text after the ids [prefix_offset_, end_token).
  struct Snapshot {
    size_t end_token = 0;
    std::string text;
  };

  IncrementalDetokenizer(std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
                         DetokenizerOptions options);
  Expected<std::string> decode_range(size_t begin, size_t end) const;
  // Starts a new window whose released text ends exactly after id `read_offset`.
  Status slide_to(size_t read_offset);

  std::shared_ptr<const tokenizer::Tokenizer> tokenizer_;
  DetokenizerOptions options_;
  std::vector<uint32_t> ids_;  // prompt context, then output ids
  size_t output_begin_ = 0;
  size_t prefix_offset_ = 0;      // first id of the window
  size_t read_offset_ = 0;        // first id whose text the window's context does not cover
  std::string released_;          // the window text released so far (context text included)
  std::deque<Snapshot> history_;  // recent window decodes, oldest first
};

}  // namespace sparkd::sched
