// A text between quote marks, for error messages.
#pragma once

#include <string>
#include <string_view>

namespace sparkd {

// `mark` + text + `mark`. Built by appending rather than as "'" + std::string(text): GCC 12
// at -O3 warns wrongly about that form (-Wrestrict, GCC bug 105329).
inline std::string quoted(std::string_view text, char mark) {
  std::string out;
  out.reserve(text.size() + 2);
  out += mark;
  out += text;
  out += mark;
  return out;
}

}  // namespace sparkd
