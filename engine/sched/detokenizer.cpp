#include "engine/sched/detokenizer.h"

#include <algorithm>
#include <string_view>
#include <utility>

namespace sparkd::sched {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

size_t common_prefix_bytes(std::string_view a, std::string_view b) {
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  (void)ib;
  return static_cast<size_t>(ia - a.begin());
}

// Largest n' <= n such that text[0, n') ends on a character boundary.
size_t floor_to_char_boundary(std::string_view text, size_t n) {
  while (n > 0 && n < text.size() && is_continuation(text[n])) --n;
  return n;
}

// Smallest n' >= n such that text[0, n') ends on a character boundary.
size_t ceil_to_char_boundary(std::string_view text, size_t n) {
  while (n < text.size() && is_continuation(text[n])) ++n;
  return std::min(n, text.size());
}

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(
    std::shared_ptr<const tokenizer::Tokenizer> tokenizer, DetokenizerOptions options)
    : tokenizer_(std::move(tokenizer)), options_(options) {}

Expected<IncrementalDetokenizer> IncrementalDetokenizer::create(
    std::shared_ptr<const tokenizer::Tokenizer> tokenizer, const std::vector<uint32_t>& prompt_ids,
    DetokenizerOptions options) {
  if (tokenizer == nullptr) {
    return Status(StatusCode::kInvalidArgument, "IncrementalDetokenizer needs a tokenizer");
  }
  IncrementalDetokenizer detok(std::move(tokenizer), options);
  const size_t context =
      std::min(prompt_ids.size(), options.context_tokens + kMaxExtraContextTokens);
  detok.ids_.assign(prompt_ids.end() - static_cast<std::ptrdiff_t>(context), prompt_ids.end());
  detok.output_begin_ = detok.ids_.size();
  SPARKD_RETURN_IF_ERROR(detok.slide_to(detok.ids_.size()));
  return detok;
}

Expected<std::string> IncrementalDetokenizer::decode_range(size_t begin, size_t end) const {
  const std::vector<uint32_t> window(ids_.begin() + static_cast<std::ptrdiff_t>(begin),
                                     ids_.begin() + static_cast<std::ptrdiff_t>(end));
  return tokenizer_->decode(window, options_.skip_special_tokens);
}

Status IncrementalDetokenizer::slide_to(size_t read_offset) {
  prefix_offset_ = read_offset - std::min(read_offset, options_.context_tokens);
  read_offset_ = read_offset;
  SPARKD_ASSIGN_OR_RETURN(released_, decode_range(prefix_offset_, read_offset_));
  // A window that starts inside a character decodes its first bytes to U+FFFD (byte
  // fallback even spoils the whole run of byte tokens), so start up to 3 ids earlier.
  for (size_t extra = 0; extra < kMaxExtraContextTokens && prefix_offset_ > 0 &&
                         std::string_view(released_).starts_with(kReplacement);
       ++extra) {
    --prefix_offset_;
    SPARKD_ASSIGN_OR_RETURN(released_, decode_range(prefix_offset_, read_offset_));
  }
  history_.clear();
  history_.push_back({read_offset_, released_});
  // Re-decode the held-back ids in the new window so the holdback comparison stays valid.
  for (size_t end = read_offset_ + 1; end <= ids_.size(); ++end) {
    SPARKD_ASSIGN_OR_RETURN(std::string text, decode_range(prefix_offset_, end));
    history_.push_back({end, std::move(text)});
  }
  while (history_.size() > options_.holdback_tokens + 1) history_.pop_front();
  return Status::ok();
}

Expected<std::string> IncrementalDetokenizer::push(uint32_t id) {
  ids_.push_back(id);
  SPARKD_ASSIGN_OR_RETURN(std::string text, decode_range(prefix_offset_, ids_.size()));

  // How much of the window text is final: not a trailing U+FFFD (an incomplete character),
  // and unchanged across the last holdback_tokens decodes.
  size_t stable = text.size();
  // Byte-fallback decoders give one U+FFFD per byte of an incomplete character.
  while (stable >= kReplacement.size() &&
         std::string_view(text).substr(0, stable).ends_with(kReplacement)) {
    stable -= kReplacement.size();
  }
  size_t compared = 0;
  for (auto it = history_.rbegin(); it != history_.rend() && compared < options_.holdback_tokens;
       ++it, ++compared) {
    stable = std::min(stable, common_prefix_bytes(text, it->text));
  }
  stable = floor_to_char_boundary(text, stable);

  std::string delta;
  const bool force = window_tokens() > kMaxWindowTokens;
  if (force) stable = text.size();
  // While the text ends in an incomplete character nothing is final: byte-fallback decoders
  // turn the whole run of byte tokens into U+FFFD until the run is valid UTF-8.
  const bool incomplete = std::string_view(text).ends_with(kReplacement);
  if (incomplete && !force) {
    // Hold everything until the character completes.
  } else if (std::string_view(text).starts_with(released_)) {
    if (stable > released_.size()) {
      delta = text.substr(released_.size(), stable - released_.size());
      released_ = text.substr(0, stable);
    }
  } else {
    // The decoder rewrote text that was already released (holdback_tokens too small for its
    // cleanup rules). Released text cannot be retracted; continue after the same byte
    // count, as vLLM does.
    const size_t start = ceil_to_char_boundary(text, released_.size());
    if (stable > start) delta = text.substr(start, stable - start);
    released_ = text.substr(0, std::max(stable, start));
  }

  history_.push_back({ids_.size(), std::move(text)});
  while (history_.size() > options_.holdback_tokens + 1) history_.pop_front();

  if (force) {
    SPARKD_RETURN_IF_ERROR(slide_to(ids_.size()));
  } else if (window_tokens() >
             options_.context_tokens + options_.holdback_tokens + kSlideAfterTokens) {
    // Slide to the latest id whose window text is exactly what has been released, so the
    // new window starts with nothing pending.
    for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
      if (it->end_token > read_offset_ && it->text == released_) {
        SPARKD_RETURN_IF_ERROR(slide_to(it->end_token));
        break;
      }
    }
  }
  return delta;
}

Expected<std::string> IncrementalDetokenizer::flush() {
  SPARKD_ASSIGN_OR_RETURN(std::string text, decode_range(prefix_offset_, ids_.size()));
  std::string delta;
  const size_t start = std::string_view(text).starts_with(released_)
                           ? released_.size()
                           : ceil_to_char_boundary(text, released_.size());
  if (text.size() > start) delta = text.substr(start);
  released_ = text;
  history_.clear();
  history_.push_back({ids_.size(), std::move(text)});
  return delta;
}

}  // namespace sparkd::sched
