// Stop strings over streamed text: text deltas in, the text that may reach the client now
// out. Any tail that could be the start of a stop string is held back, so a stop string
// split across tokens or deltas is still caught and never partly sent. When a stop string
// completes, the text before it is released (the stop string itself too only with
// include_stop_str_in_output; vLLM's default is to trim it) and the matcher stops.
//
// Which stop fires: the one that completes earliest in the stream (ties: the longer one,
// i.e. the earlier start), so the result does not depend on how the text was split into
// deltas. With stops {"ab", "abc"} the text "abc" stops at "ab".
//
// Cost per push: O(|held| + |delta|) * sum(|stop|) with naive search, where |held| <
// max |stop|; fine for the handful of stops requests carry (capped at kMaxStopStrings).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace sparkd::sched {

struct StopStringOptions {
  bool include_stop_str_in_output = false;
};

// What one push or flush lets through.
struct StopStringResult {
  std::string text;                     // releasable to the client now
  std::optional<size_t> stopped_index;  // set when a stop string completed: its index
};

class StopStringMatcher {
 public:
  static constexpr size_t kMaxStopStrings = 16;
  static constexpr size_t kMaxStopStringBytes = 256;

  // Errors: an empty stop string, more than kMaxStopStrings, one longer than
  // kMaxStopStringBytes, or one that is not valid UTF-8.
  static Expected<StopStringMatcher> create(std::vector<std::string> stop_strings,
                                            StopStringOptions options = {});

  // Appends decoded text. After a stop, further text is ignored (empty result).
  StopStringResult push(std::string_view delta);
  // End of the sequence without a stop: releases what was held back.
  std::string flush();

  bool stopped() const { return stopped_index_.has_value(); }
  std::optional<size_t> stopped_index() const { return stopped_index_; }
  const std::vector<std::string>& stop_strings() const { return stop_strings_; }
  // Bytes currently held back as a possible stop-string start.
  size_t held_bytes() const { return held_.size(); }

 private:
  StopStringMatcher(std::vector<std::string> stop_strings, StopStringOptions options);
  // Length of the longest suffix of held_ that is a proper prefix of some stop string.
  size_t longest_partial_match() const;

  std::vector<std::string> stop_strings_;
  StopStringOptions options_;
  std::string held_;
  std::optional<size_t> stopped_index_;
};

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view text);

}  // namespace sparkd::sched
