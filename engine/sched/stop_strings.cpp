#include "engine/sched/stop_strings.h"

#include <algorithm>
#include <cstdint>
#include <utility>

namespace sparkd::sched {

bool is_valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (b0 < 0x80) {
      ++i;
      continue;
    } else if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2;
      cp = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3;
      cp = b0 & 0x0Fu;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      cp = b0 & 0x07u;
    } else {
      return false;
    }
    if (i + len > text.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(text[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings,
                                     StopStringOptions options)
    : stop_strings_(std::move(stop_strings)), options_(options) {}

Expected<StopStringMatcher> StopStringMatcher::create(std::vector<std::string> stop_strings,
                                                      StopStringOptions options) {
  if (stop_strings.size() > kMaxStopStrings) {
    return Status(StatusCode::kInvalidArgument,
                  "too many stop strings: " + std::to_string(stop_strings.size()) +
                      " given, at most " + std::to_string(kMaxStopStrings) + " allowed");
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    const std::string& stop = stop_strings[i];
    const std::string where = "stop string #" + std::to_string(i);
    if (stop.empty()) {
      return Status(StatusCode::kInvalidArgument,
                    where + " is empty; stop strings must be non-empty");
    }
    if (stop.size() > kMaxStopStringBytes) {
      return Status(StatusCode::kInvalidArgument,
                    where + " is " + std::to_string(stop.size()) + " bytes; at most " +
                        std::to_string(kMaxStopStringBytes) + " allowed");
    }
    if (!is_valid_utf8(stop)) {
      return Status(StatusCode::kInvalidArgument, where + " is not valid UTF-8");
    }
  }
  return StopStringMatcher(std::move(stop_strings), options);
}

size_t StopStringMatcher::longest_partial_match() const {
  size_t best = 0;
  for (const std::string& stop : stop_strings_) {
    const size_t max_len = std::min(stop.size() - 1, held_.size());
    for (size_t len = max_len; len > best; --len) {
      if (std::string_view(held_).substr(held_.size() - len) ==
          std::string_view(stop).substr(0, len)) {
        best = len;
        break;
      }
    }
  }
  return best;
}

StopStringResult StopStringMatcher::push(std::string_view delta) {
  StopStringResult result;
  if (stopped()) return result;
  held_.append(delta);

  // The stop that completes first; on equal ends, the one that starts first.
  size_t best_end = std::string::npos;
  size_t best_start = 0;
  std::optional<size_t> best_index;
  for (size_t i = 0; i < stop_strings_.size(); ++i) {
    const size_t start = held_.find(stop_strings_[i]);
    if (start == std::string::npos) continue;
    const size_t end = start + stop_strings_[i].size();
    if (!best_index || end < best_end || (end == best_end && start < best_start)) {
      best_end = end;
      best_start = start;
      best_index = i;
    }
  }
  if (best_index) {
    result.text = held_.substr(0, options_.include_stop_str_in_output ? best_end : best_start);
    result.stopped_index = best_index;
    stopped_index_ = best_index;
    held_.clear();
    return result;
  }

  const size_t keep = longest_partial_match();
  result.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return result;
}

std::string StopStringMatcher::flush() {
  std::string rest = std::move(held_);
  held_.clear();
  return rest;
}

}  // namespace sparkd::sched
