// The rule every model name follows, in config.toml and over the socket. Names become request
// arguments, log words and metric label values, so they are short and plain.
#pragma once

#include <cstddef>
#include <string_view>

namespace sparkd {

inline constexpr size_t kMaxModelNameBytes = 64;
// How error messages state the rule.
inline constexpr std::string_view kModelNameRule = "1 to 64 characters of A-Z a-z 0-9 . _ -";

inline bool is_valid_model_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxModelNameBytes) return false;
  for (const char c : name) {
    const bool allowed = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!allowed) return false;
  }
  return true;
}

}  // namespace sparkd
