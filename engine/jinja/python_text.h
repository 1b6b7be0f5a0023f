// Python's str semantics on UTF-8 text, as chat templates see them through Jinja: strings are
// sequences of code points (len, indexing and slicing count code points, not bytes), strip()
// removes what str.isspace() calls space, upper()/lower() map every script, and repr() and
// float formatting print what CPython prints. Bytes that are not valid UTF-8 count as one code
// point each (U+FFFD for case mapping), so nothing here fails on bad input.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sparkd::jinja {

// str.isspace() for one code point (bidirectional class WS, B or S, or category Zs).
bool is_python_space(char32_t code_point);

// The code points of `text` (an invalid byte decodes to itself as a code point 0xDC80+byte, as
// Python's surrogateescape would, so that encoding gives the bytes back).
std::vector<char32_t> decode_code_points(std::string_view text);
std::string encode_code_points(const std::vector<char32_t>& code_points);
void append_utf8(char32_t code_point, std::string& out);

// len(text).
int64_t code_point_count(std::string_view text);

// text.strip(), .lstrip(), .rstrip(): without `chars`, Python whitespace; with `chars`, any of
// its code points.
std::string_view python_strip(std::string_view text, const std::optional<std::string>& chars,
                              bool left = true, bool right = true);

// text.split(separator, max_splits) and text.rsplit(...): no separator splits on runs of
// whitespace and drops empty ends; max_splits < 0 is unlimited. separator must not be empty.
std::vector<std::string> python_split(std::string_view text,
                                      const std::optional<std::string>& separator,
                                      int64_t max_splits, bool from_right = false);
// text.splitlines() (keepends = False): \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029.
std::vector<std::string> python_splitlines(std::string_view text);

std::string python_upper(std::string_view text);
std::string python_lower(std::string_view text);
// str.capitalize(): the first code point upper-cased, the rest lower-cased.
std::string python_capitalize(std::string_view text);
// str.title(): each run of letters starts upper-case, the rest lower-case.
std::string python_title(std::string_view text);

// repr(text): single quotes unless the text holds ' and no ", backslash escapes for the quote,
// backslash and non-printable ASCII (\n, \r, \t, \xNN), other code points as they are.
std::string python_string_repr(std::string_view text);

// repr(value) of a float: the shortest digits that read back to the same double, fixed notation
// for exponents -4..15 (with ".0" when integral), else d.ddde+XX; inf, -inf, nan.
std::string python_float_repr(double value);

}  // namespace sparkd::jinja
