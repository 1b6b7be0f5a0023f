// sparkd-run: run one engine component from the command line, so anyone can check it
// against the reference libraries from a script.
//
//   sparkd-run TOKENIZER_OR_MODEL_DIR tokenize   [--no-special] [--pair] [--tokens] [--plain]
//                                                [--max-length N] [--truncation-side left|right]
//                                                [--truncation-strategy
//                                                longest_first|only_first|only_second]
//   sparkd-run TOKENIZER_OR_MODEL_DIR detokenize [--skip-special]
//   sparkd-run devices
//   sparkd-run MODEL_DIR embed|rerank|generate ...   (engine/cli/model_commands.cpp)
//
// tokenize reads one JSON string per line on stdin (JSON, so texts may hold newlines; with
// --pair a JSON array [text, pair]) and writes one JSON object per line: {"ids": [...]}
// (plus "tokens" and "type_ids" with --tokens). Like the library, the truncation and
// padding a tokenizer.json sets apply unless --plain is given. detokenize reads a JSON array of ids
// (or an object with "ids") per line and writes {"text": "..."}. A bad line gets {"error": "..."}
// on its own output line; the other lines are still processed, and the exit status is 1.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/backend/devices.h"
#include "engine/backend/placement.h"
#include "engine/cli/model_commands.h"
#include "engine/tasks/loaded_model.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using nlohmann::json;
using sparkd::Expected;
using sparkd::tokenizer::Encoding;
using sparkd::tokenizer::Tokenizer;
using sparkd::tokenizer::TruncationDirection;
using sparkd::tokenizer::TruncationParams;
using sparkd::tokenizer::TruncationStrategy;

constexpr const char* kUsage =
    "usage: sparkd-run TOKENIZER_OR_MODEL_DIR tokenize [--no-special] [--pair] [--tokens] "
    "[--plain]\n"
    "                  [--max-length N] [--truncation-side left|right]\n"
    "                  [--truncation-strategy longest_first|only_first|only_second]\n"
    "       sparkd-run TOKENIZER_OR_MODEL_DIR detokenize [--skip-special]\n"
    "       sparkd-run devices\n";

struct Options {
  bool add_special_tokens = true;
  bool pair = false;
  bool with_tokens = false;
  bool skip_special_tokens = false;
  bool plain = false;  // ignore tokenizer.json's own truncation and padding
  std::optional<TruncationParams> truncation;
};

void print_line(const json& j) {
  std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace);
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stdout);
}

sparkd::Status bad_line(std::string message) {
  return sparkd::Status(sparkd::StatusCode::kInvalidArgument, std::move(message));
}

// One tokenize input line -> {"ids": [...]} (and tokens/type_ids with --tokens).
Expected<json> tokenize_line(const Tokenizer& tokenizer, const Options& options,
                             const json& input) {
  Expected<Encoding> encoding = sparkd::Status();
  if (options.pair) {
    if (!input.is_array() || input.size() != 2 || !input[0].is_string() || !input[1].is_string()) {
      return bad_line("with --pair each line must be a JSON array [text, pair]");
    }
    encoding = tokenizer.encode_pair(input[0].get_ref<const std::string&>(),
                                     input[1].get_ref<const std::string&>(),
                                     options.add_special_tokens, options.truncation);
  } else {
    if (!input.is_string()) return bad_line("each line must be a JSON string");
    encoding = tokenizer.encode(input.get_ref<const std::string&>(), options.add_special_tokens,
                                options.truncation);
  }
  if (!encoding) return encoding.status();
  json out{{"ids", encoding->ids}};
  if (options.with_tokens) {
    out["tokens"] = encoding->tokens;
    out["type_ids"] = encoding->type_ids;
  }
  return out;
}

// One detokenize input line (ids, or {"ids": [...]}) -> {"text": "..."}.
Expected<json> detokenize_line(const Tokenizer& tokenizer, const Options& options,
                               const json& input) {
  const json& ids_json = input.is_object() && input.contains("ids") ? input["ids"] : input;
  if (!ids_json.is_array()) {
    return bad_line("each line must be a JSON array of token ids or {\"ids\": [...]}");
  }
  std::vector<uint32_t> ids;
  for (const json& id : ids_json) {
    if (!id.is_number_unsigned() || id.get<uint64_t>() > UINT32_MAX) {
      return bad_line("token ids must be non-negative 32-bit integers, got " + id.dump());
    }
    ids.push_back(id.get<uint32_t>());
  }
  Expected<std::string> text = tokenizer.decode(ids, options.skip_special_tokens);
  if (!text) return text.status();
  return json{{"text", *text}};
}

int run_devices() {
  std::string error;
  std::vector<sparkd::DeviceInfo> devices = sparkd::list_devices(&error);
  std::printf("CUDA backend: %s\n", sparkd::cuda_compiled_in() ? "compiled in" : "not built");
  if (devices.empty()) {
    std::printf("no CUDA devices (%s); models run on the CPU backend\n", error.c_str());
    return 0;
  }
  for (const auto& d : devices) {
    std::printf("cuda:%d %s sm_%d%d %.1f GiB %d SMs %zu KiB smem/block%s\n", d.index,
                d.name.c_str(), d.compute_capability_major, d.compute_capability_minor,
                static_cast<double>(d.total_memory_bytes) / (1024.0 * 1024.0 * 1024.0),
                d.multiprocessor_count, d.shared_memory_per_block_optin_bytes / 1024,
                d.integrated ? " (unified memory)" : "");
  }
  std::printf("models with device = \"auto\" run on %s\n",
              sparkd::default_placement().to_string().c_str());
  return 0;
}

bool parse_options(int argc, char** argv, int first, Options* options, std::string* error) {
  TruncationParams truncation;
  bool truncate = false;
  for (int i = first; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::optional<std::string_view> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string_view(argv[++i]);
    };
    if (arg == "--no-special") {
      options->add_special_tokens = false;
    } else if (arg == "--pair") {
      options->pair = true;
    } else if (arg == "--tokens") {
      options->with_tokens = true;
    } else if (arg == "--skip-special") {
      options->skip_special_tokens = true;
    } else if (arg == "--plain") {
      options->plain = true;
    } else if (arg == "--max-length") {
      auto v = value();
      char* end = nullptr;
      unsigned long n = v ? std::strtoul(std::string(*v).c_str(), &end, 10) : 0;
      if (!v || end == nullptr || *end != '\0' || n == 0) {
        *error = "--max-length needs a positive integer";
        return false;
      }
      truncation.max_length = n;
      truncate = true;
    } else if (arg == "--truncation-side") {
      auto v = value();
      if (v == "left") {
        truncation.direction = TruncationDirection::kLeft;
      } else if (v == "right") {
        truncation.direction = TruncationDirection::kRight;
      } else {
        *error = "--truncation-side must be left or right";
        return false;
      }
    } else if (arg == "--truncation-strategy") {
      auto v = value();
      if (v == "longest_first") {
        truncation.strategy = TruncationStrategy::kLongestFirst;
      } else if (v == "only_first") {
        truncation.strategy = TruncationStrategy::kOnlyFirst;
      } else if (v == "only_second") {
        truncation.strategy = TruncationStrategy::kOnlySecond;
      } else {
        *error = "--truncation-strategy must be longest_first, only_first or only_second";
        return false;
      }
    } else {
      *error = "unknown option " + std::string(arg);
      return false;
    }
  }
  if (truncate) options->truncation = truncation;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "devices") return run_devices();
  if (argc < 3 || std::string_view(argv[1]) == "--help") {
    std::fputs(kUsage, argc < 3 ? stderr : stdout);
    std::fputs(sparkd::cli::kModelCommandsUsage, argc < 3 ? stderr : stdout);
    return argc < 3 ? 2 : 0;
  }
  if (sparkd::cli::is_model_command(argv[2])) return sparkd::cli::run_model_command(argc, argv);
  std::string_view command = argv[2];
  if (command != "tokenize" && command != "detokenize") {
    std::fprintf(stderr, "sparkd-run: unknown command '%s'\n%s%s", argv[2], kUsage,
                 sparkd::cli::kModelCommandsUsage);
    return 2;
  }
  Options options;
  std::string error;
  if (!parse_options(argc, argv, 3, &options, &error)) {
    std::fprintf(stderr, "sparkd-run: %s\n%s%s", error.c_str(), kUsage,
                 sparkd::cli::kModelCommandsUsage);
    return 2;
  }
  auto loaded = sparkd::tasks::LoadedModel::load_tokenizer(argv[1]);
  if (!loaded) {
    std::fprintf(stderr, "sparkd-run: %s\n", loaded.status().to_string().c_str());
    return 1;
  }
  std::shared_ptr<const Tokenizer> tokenizer =
      options.plain ? (*loaded)->with_defaults(std::nullopt, std::nullopt) : *loaded;
  auto handle = command == "tokenize" ? tokenize_line : detokenize_line;
  bool all_ok = true;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    Expected<json> out = sparkd::Status();
    try {
      out = handle(*tokenizer, options, json::parse(line));
    } catch (const json::exception& e) {
      out = bad_line(std::string("input is not JSON: ") + e.what());
    }
    if (!out) {
      all_ok = false;
      print_line(json{{"error", out.status().to_string()}});
    } else {
      print_line(*out);
    }
  }
  std::fflush(stdout);
  return all_ok ? 0 : 1;
}
