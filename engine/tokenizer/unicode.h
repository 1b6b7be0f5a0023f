// UTF-8 and Unicode character classes used across the tokenizer pipeline.
// Classes follow Rust's char methods (what Hugging Face tokenizers calls), computed with
// utf8proc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sparkd::tokenizer {

// Decodes the code point starting at s[*pos] and advances *pos past it. Input is valid
// UTF-8 by the time it reaches the pipeline (see sanitize_utf8).
char32_t next_code_point(std::string_view s, size_t* pos);
// Byte length of the UTF-8 sequence that starts with lead byte `b` (1 for invalid bytes).
size_t utf8_sequence_length(unsigned char b);
void append_utf8(std::string* out, char32_t c);
std::string to_utf8(char32_t c);
std::vector<char32_t> to_code_points(std::string_view s);
size_t count_code_points(std::string_view s);
bool is_valid_utf8(std::string_view s);
// Replaces every maximal invalid subsequence with U+FFFD, as Python's
// bytes.decode("utf-8", "replace") and Rust's String::from_utf8_lossy do.
std::string sanitize_utf8(std::string_view s);

bool is_whitespace(char32_t c);  // Unicode White_Space (Rust char::is_whitespace)
bool is_alphabetic(char32_t c);  // Rust char::is_alphabetic (Alphabetic property)
bool is_numeric(char32_t c);     // Rust char::is_numeric (general category N*)
bool is_alphanumeric(char32_t c);
// Rust regex's Unicode \w (Whitespace pre-tokenizer, single_word added tokens).
bool is_word_char(char32_t c);
bool is_control(char32_t c);          // general category Cc
bool is_punctuation(char32_t c);      // general category P*
bool is_mark_nonspacing(char32_t c);  // general category Mn
bool is_digit(char32_t c);            // Rust char::is_ascii_digit || general category Nd
bool is_chinese_char(char32_t c);     // CJK ideograph blocks, as BertNormalizer defines them
int general_category(char32_t c);     // utf8proc_category_t
// Full lowercase/uppercase mappings (one char may map to several, e.g. U+0130 -> "i\u0307").
void to_lowercase(char32_t c, std::vector<char32_t>* out);
void to_uppercase(char32_t c, std::vector<char32_t>* out);

// GPT-2's byte <-> printable-char table used by ByteLevel pre-tokenizer and decoder.
const std::string& byte_to_unicode_utf8(unsigned char b);
// Returns -1 when `c` is not one of the 256 table chars.
int unicode_to_byte(char32_t c);

}  // namespace sparkd::tokenizer
