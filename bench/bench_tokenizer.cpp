// Tokenizer encode throughput on one core: MB/s and tokens/s over a text file, encoded one
// document (line, or blank-line separated paragraph with --paragraphs) at a time, the way a
// server sees requests.
//
//   bench_tokenizer TOKENIZER_OR_MODEL_DIR TEXT_FILE [--repeat N] [--paragraphs]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: bench_tokenizer TOKENIZER_OR_MODEL_DIR TEXT_FILE [--repeat N] "
                 "[--paragraphs]\n");
    return 2;
  }
  int repeat = 3;
  bool paragraphs = false;
  for (int i = 3; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--repeat" && i + 1 < argc) {
      repeat = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--paragraphs") {
      paragraphs = true;
    } else {
      std::fprintf(stderr, "bench_tokenizer: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  auto loaded = sparkd::tokenizer::Tokenizer::from_file(argv[1]);
  if (!loaded) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", loaded.status().to_string().c_str());
    return 1;
  }
  // Plain encodes, without the padding/truncation some tokenizer.json files set.
  auto tokenizer = (*loaded)->with_defaults(std::nullopt, std::nullopt);
  std::ifstream in(argv[2], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "bench_tokenizer: cannot open %s\n", argv[2]);
    return 1;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();

  std::vector<std::string_view> documents;
  std::string_view rest = text;
  const std::string_view separator = paragraphs ? "\n\n" : "\n";
  while (!rest.empty()) {
    size_t cut = rest.find(separator);
    std::string_view doc = rest.substr(0, cut);
    if (!doc.empty()) documents.push_back(doc);
    if (cut == std::string_view::npos) break;
    rest.remove_prefix(cut + separator.size());
  }

  double best_seconds = 1e30;
  size_t tokens = 0;
  size_t bytes = 0;
  for (int r = 0; r < repeat; ++r) {
    tokens = 0;
    bytes = 0;
    auto start = std::chrono::steady_clock::now();
    for (std::string_view doc : documents) {
      auto encoding = tokenizer->encode(doc, /*add_special_tokens=*/false);
      if (!encoding) {
        std::fprintf(stderr, "bench_tokenizer: %s\n", encoding.status().to_string().c_str());
        return 1;
      }
      tokens += encoding->size();
      bytes += doc.size();
    }
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best_seconds = std::min(best_seconds, seconds);
  }
  std::printf(
      "sparkd  %-28s docs=%zu bytes=%zu tokens=%zu best_of=%d time=%.3fs  %.2f MB/s  %.0f "
      "tokens/s\n",
      argv[1], documents.size(), bytes, tokens, repeat, best_seconds,
      static_cast<double>(bytes) / best_seconds / 1e6, static_cast<double>(tokens) / best_seconds);
  return 0;
}
