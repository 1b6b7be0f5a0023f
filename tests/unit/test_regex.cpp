// The regex dialect: tokenizer.json regexes are Oniguruma's, run here on PCRE2.
#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/regex.h"

using sparkd::tokenizer::Regex;

TEST_CASE("regex class s (whitespace) means Unicode White_Space, as in Oniguruma", "[regex]") {
  Regex re("\\s+");
  // U+180E MONGOLIAN VOWEL SEPARATOR is not White_Space (PCRE2's \s took it: a golden
  // mismatch on "word\u180Eword" before the dialect translation).
  CHECK(re.find_all("word\xE1\xA0\x8Eword").empty());
  // U+3000 IDEOGRAPHIC SPACE, U+0085 NEXT LINE and U+2029 are.
  CHECK(re.find_all("a\xE3\x80\x80"
                    "b\xC2\x85"
                    "c\xE2\x80\xA9"
                    "d")
            .size() == 3);
  Regex not_space("[^\\s]+");
  CHECK(not_space.find_all("ab\xE3\x80\x80"
                           "cd") == std::vector<std::pair<size_t, size_t>>{{0, 2}, {5, 7}});
}

TEST_CASE("regex class w (word) takes combining marks and only decimal digits", "[regex]") {
  Regex re("\\w+");
  // "cafe" + U+0301 COMBINING ACUTE stays one word; U+00B2 SUPERSCRIPT TWO (No) does not
  // belong to \w in Oniguruma.
  CHECK(re.find_all("cafe\xCC\x81") == std::vector<std::pair<size_t, size_t>>{{0, 6}});
  CHECK(re.find_all("x\xC2\xB2") == std::vector<std::pair<size_t, size_t>>{{0, 1}});
}

TEST_CASE("regex class h (hex) is a hex digit and character classes survive translation",
          "[regex]") {
  CHECK(Regex("\\h+").find_all("zz0fFg") == std::vector<std::pair<size_t, size_t>>{{2, 5}});
  CHECK(Regex("[]a]+").find_all("x]a]y") == std::vector<std::pair<size_t, size_t>>{{1, 4}});
  CHECK(Regex("[[:digit:]\\s]+").find_all("a1 2b") ==
        std::vector<std::pair<size_t, size_t>>{{1, 4}});
}

TEST_CASE("empty matches iterate like Oniguruma", "[regex]") {
  // After an empty match the search moves one character on; a non-empty match that starts
  // where the previous one ended is still found.
  CHECK(Regex("a*").find_all("baac") ==
        std::vector<std::pair<size_t, size_t>>{{0, 0}, {1, 3}, {4, 4}});
}

TEST_CASE("a bad regex names itself in the error", "[regex]") {
  try {
    Regex re("(unclosed");
    FAIL("compiled");
  } catch (const std::exception& e) {
    CHECK(std::string(e.what()).find("(unclosed") != std::string::npos);
  }
}
