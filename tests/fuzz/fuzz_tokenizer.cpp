// Random bytes through encode, encode_pair and decode of every fixture tokenizer. The
// first byte picks the tokenizer and the operation; the rest is the input. Invalid UTF-8
// is part of the input space on purpose: the tokenizer must sanitize it, never crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace {

using sparkd::tokenizer::Tokenizer;
using sparkd::tokenizer::TruncationDirection;
using sparkd::tokenizer::TruncationParams;

std::vector<std::shared_ptr<const Tokenizer>>& tokenizers() {
  static std::vector<std::shared_ptr<const Tokenizer>> all;
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::vector<std::filesystem::path> dirs;
  for (const auto& entry : std::filesystem::directory_iterator(SPARKD_TOKENIZER_FIXTURES)) {
    if (std::filesystem::exists(entry.path() / "tokenizer.json")) dirs.push_back(entry.path());
  }
  std::sort(dirs.begin(), dirs.end());
  for (const auto& dir : dirs) {
    auto tokenizer = Tokenizer::from_file(dir);
    if (!tokenizer) {
      std::fprintf(stderr, "fuzz_tokenizer: %s\n", tokenizer.status().to_string().c_str());
      std::abort();
    }
    tokenizers().push_back(*tokenizer);
  }
  if (tokenizers().empty()) {
    std::fprintf(stderr, "fuzz_tokenizer: no tokenizer fixtures in %s\n",
                 SPARKD_TOKENIZER_FIXTURES);
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const Tokenizer& tokenizer = *tokenizers()[data[0] % tokenizers().size()];
  const unsigned mode = data[0] / 16;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  if (mode % 4 == 3) {
    // Decode arbitrary ids (in and beyond the vocabulary), with and without specials.
    std::vector<uint32_t> ids;
    for (size_t i = 0; i + 1 < input.size(); i += 2) {
      ids.push_back(static_cast<uint32_t>(static_cast<uint8_t>(input[i]) << 8 |
                                          static_cast<uint8_t>(input[i + 1])) %
                    static_cast<uint32_t>(tokenizer.vocab_size() + 8));
    }
    (void)tokenizer.decode(ids, mode & 1);
    return 0;
  }
  std::optional<TruncationParams> truncation;
  if (mode % 4 == 2) {
    TruncationParams params;
    params.max_length = 1 + input.size() % 17;
    params.direction = (mode & 8) ? TruncationDirection::kLeft : TruncationDirection::kRight;
    truncation = params;
  }
  size_t cut = input.find('\x01');
  if (cut != std::string_view::npos && mode % 2 == 1) {
    (void)tokenizer.encode_pair(input.substr(0, cut), input.substr(cut + 1), true, truncation);
    return 0;
  }
  auto encoding = tokenizer.encode(input, mode & 4, truncation);
  if (encoding) {
    // Round-trip whatever came out: decode must accept every id encode produces.
    auto text = tokenizer.decode(encoding->ids, false);
    if (!text) std::abort();
  }
  return 0;
}
