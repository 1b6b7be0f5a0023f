// StopStringMatcher: held-back prefixes, stops split across deltas, trimming.
#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/sched/stop_strings.h"

namespace {

using sparkd::StatusCode;
using sparkd::sched::StopStringMatcher;
using sparkd::sched::StopStringOptions;

struct Outcome {
  std::string released;
  std::optional<size_t> stopped_index;
};

Outcome run(const std::vector<std::string>& stops, const std::vector<std::string>& deltas,
            bool include_stop = false) {
  auto matcher = StopStringMatcher::create(stops, StopStringOptions{include_stop});
  REQUIRE(matcher.has_value());
  Outcome out;
  for (const auto& delta : deltas) {
    auto result = matcher->push(delta);
    out.released += result.text;
    if (result.stopped_index) {
      REQUIRE_FALSE(out.stopped_index.has_value());
      out.stopped_index = result.stopped_index;
    }
  }
  if (!out.stopped_index) out.released += matcher->flush();
  return out;
}

// Every way of cutting `text` into two deltas, and into single bytes.
std::vector<std::vector<std::string>> splits(const std::string& text) {
  std::vector<std::vector<std::string>> all;
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    all.push_back({text.substr(0, cut), text.substr(cut)});
  }
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  all.push_back(bytes);
  return all;
}

}  // namespace

TEST_CASE("stop strings: a stop split at every position is caught and trimmed", "[stop_strings]") {
  const std::string text = "Hello world<|end|> and more";
  for (const auto& deltas : splits(text)) {
    const Outcome out = run({"<|end|>"}, deltas);
    CHECK(out.released == "Hello world");
    CHECK(out.stopped_index == std::optional<size_t>(0));
  }
}

TEST_CASE("stop strings: nothing of a possible stop start is released early", "[stop_strings]") {
  auto matcher = StopStringMatcher::create({"STOP"});
  REQUIRE(matcher.has_value());
  CHECK(matcher->push("abc ST").text == "abc ");
  CHECK(matcher->held_bytes() == 2);
  CHECK(matcher->push("O").text.empty());
  const auto done = matcher->push("P!");
  CHECK(done.text.empty());
  CHECK(done.stopped_index == std::optional<size_t>(0));
  CHECK(matcher->stopped());
  CHECK(matcher->push("more").text.empty());
}

TEST_CASE("stop strings: one stop a prefix of another", "[stop_strings]") {
  // The stop that completes first wins, however the text is split.
  for (const auto& deltas : splits("xx abc yy")) {
    const Outcome out = run({"abc", "ab"}, deltas);
    CHECK(out.released == "xx ");
    CHECK(out.stopped_index == std::optional<size_t>(1));
  }
  for (const auto& deltas : splits("xx abd")) {
    const Outcome out = run({"abc", "abd"}, deltas);
    CHECK(out.released == "xx ");
    CHECK(out.stopped_index == std::optional<size_t>(1));
  }
}

TEST_CASE("stop strings: a stop after a held-back false start", "[stop_strings]") {
  for (const auto& deltas : splits("ab ac abd tail")) {
    const Outcome out = run({"abd"}, deltas);
    CHECK(out.released == "ab ac ");
    CHECK(out.stopped_index == std::optional<size_t>(0));
  }
  // Overlapping false start: "aab" then "d" — the match starts one byte into the held text.
  for (const auto& deltas : splits("aaabd")) {
    const Outcome out = run({"abd"}, deltas);
    CHECK(out.released == "aa");
  }
  const Outcome held_then_released = run({"abd"}, {"ab", "ac"});
  CHECK(held_then_released.released == "abac");
  CHECK_FALSE(held_then_released.stopped_index.has_value());
}

TEST_CASE("stop strings: stop at the very beginning", "[stop_strings]") {
  for (const auto& deltas : splits("</s>after")) {
    const Outcome out = run({"</s>"}, deltas);
    CHECK(out.released.empty());
    CHECK(out.stopped_index == std::optional<size_t>(0));
  }
}

TEST_CASE("stop strings: include_stop_str_in_output", "[stop_strings]") {
  for (const auto& deltas : splits("answer: 42.\n\nnext")) {
    const Outcome out = run({"\n\n"}, deltas, /*include_stop=*/true);
    CHECK(out.released == "answer: 42.\n\n");
  }
}

TEST_CASE("stop strings: flush without a stop releases everything", "[stop_strings]") {
  for (const auto& deltas : splits("the end is nea")) {
    const Outcome out = run({"near", "xyz"}, deltas);
    CHECK(out.released == "the end is nea");
    CHECK_FALSE(out.stopped_index.has_value());
  }
  auto matcher = StopStringMatcher::create({"near"});
  REQUIRE(matcher.has_value());
  CHECK(matcher->push("nea").text.empty());
  CHECK(matcher->flush() == "nea");
  CHECK(matcher->held_bytes() == 0);
}

TEST_CASE("stop strings: UTF-8 multibyte stops", "[stop_strings]") {
  const std::string text =
      "\xE4\xBD\xA0\xE5\xA5\xBD\xE3\x80\x82\xE5\x86\x8D\xE8\xA7\x81";  // 你好。再见
  const std::string stop = "\xE3\x80\x82\xE5\x86\x8D";                 // 。再
  // Split at character boundaries only, as detokenizer deltas are.
  for (size_t cut = 0; cut <= text.size(); cut += 3) {
    const Outcome out = run({stop}, {text.substr(0, cut), text.substr(cut)});
    CHECK(out.released == "\xE4\xBD\xA0\xE5\xA5\xBD");
    CHECK(out.stopped_index == std::optional<size_t>(0));
  }
  // Released text always ends on a character boundary: a held prefix starts at a lead byte.
  auto matcher = StopStringMatcher::create({"\xF0\x9F\x98\x80!"});
  REQUIRE(matcher.has_value());
  const auto r = matcher->push("ok \xF0\x9F\x98\x80");
  CHECK(r.text == "ok ");
  CHECK(sparkd::sched::is_valid_utf8(r.text));
  CHECK(matcher->push("?").text == "\xF0\x9F\x98\x80?");
}

TEST_CASE("stop strings: invalid stop lists are rejected with clear errors", "[stop_strings]") {
  auto empty = StopStringMatcher::create({"ok", ""});
  REQUIRE_FALSE(empty.has_value());
  CHECK(empty.status().code() == StatusCode::kInvalidArgument);
  CHECK(empty.status().message().find("#1 is empty") != std::string::npos);

  std::vector<std::string> many(StopStringMatcher::kMaxStopStrings + 1, "x");
  auto too_many = StopStringMatcher::create(many);
  REQUIRE_FALSE(too_many.has_value());
  CHECK(too_many.status().message().find("too many stop strings") != std::string::npos);

  auto too_long =
      StopStringMatcher::create({std::string(StopStringMatcher::kMaxStopStringBytes + 1, 'a')});
  REQUIRE_FALSE(too_long.has_value());
  CHECK(too_long.status().code() == StatusCode::kInvalidArgument);

  auto bad_utf8 = StopStringMatcher::create({"\xC3"});
  REQUIRE_FALSE(bad_utf8.has_value());
  CHECK(bad_utf8.status().message().find("UTF-8") != std::string::npos);

  CHECK(StopStringMatcher::create({}).has_value());  // no stops: everything passes through
  CHECK(StopStringMatcher::create(std::vector<std::string>(StopStringMatcher::kMaxStopStrings, "y"))
            .has_value());
}
