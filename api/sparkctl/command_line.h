// sparkctl's command line: turns argv into one sparkd.v1.Request plus how to print its answer.
// Header-only so the unit tests (which do not link the sparkctl program) can check it.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <istream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "api/sparkd.pb.h"
#include "common/model_reference.h"
#include "common/status.h"

namespace sparkd::sparkctl {

inline constexpr const char* kDefaultSocketPath = "/run/sparkd/sparkd.sock";

inline constexpr const char* kUsageText =
    R"(usage: sparkctl [--socket PATH] [--json] COMMAND ARGS...

Commands:
  embed MODEL TEXT... [--normalize|--no-normalize] [--truncate]
        TEXT "-" reads one input per non-empty line of stdin
  rerank MODEL QUERY DOC... [--top-n N] [--raw-scores] [--truncate]
        DOC "-" reads one document per non-empty line of stdin
  generate MODEL PROMPT [--chat] [--system TEXT] [--max-tokens N] [--temperature T]
        [--top-p P] [--top-k K] [--min-p P] [--seed S] [--stop STR]... [--ignore-eos]
        [--no-stream]
  tokenize MODEL TEXT [--no-special]
  detokenize MODEL ID... [--skip-special]
  models | status | health
  top [--interval SECONDS] [--iterations N]
        a live view of the governor and the models, refreshed until Ctrl-C (or N times)
  load NAME [PATH] [--residency pinned|on_demand] | unload NAME | reload
        a relative PATH is taken from the current directory

Options:
  --socket PATH  the daemon's socket (else $SPARKD_SOCKET, else /run/sparkd/sparkd.sock)
  --json         print exactly one JSON object on stdout (for scripts)
  -h, --help     this text

Exit status: 0 done, 1 the daemon answered with an error, 2 usage error,
3 the daemon could not be reached (or the connection broke).
)";

// What main() needs besides the request: where to connect and how to print.
struct Invocation {
  std::string command;  // "embed", "generate", ...; empty when only help was asked for
  std::string socket_path;
  bool json = false;
  bool help = false;
  // generate only: print text as it arrives (false with --no-stream or --json).
  bool stream_output = false;
  // top only: seconds between refreshes, and how many (0: until interrupted).
  double interval_s = 1.0;
  uint64_t iterations = 0;
  sparkd::v1::Request request;
};

namespace detail {

struct OptionSpec {
  std::string_view name;  // without the leading "--"
  bool takes_value;
  // Commands the option applies to; empty = every command.
  std::vector<std::string_view> commands;
};

inline const std::vector<OptionSpec>& option_specs() {
  static const std::vector<OptionSpec> specs = {
      {"socket", true, {}},
      {"json", false, {}},
      {"help", false, {}},
      {"normalize", false, {"embed"}},
      {"no-normalize", false, {"embed"}},
      {"truncate", false, {"embed", "rerank"}},
      {"top-n", true, {"rerank"}},
      {"raw-scores", false, {"rerank"}},
      {"chat", false, {"generate"}},
      {"system", true, {"generate"}},
      {"max-tokens", true, {"generate"}},
      {"temperature", true, {"generate"}},
      {"top-p", true, {"generate"}},
      {"top-k", true, {"generate"}},
      {"min-p", true, {"generate"}},
      {"seed", true, {"generate"}},
      {"stop", true, {"generate"}},
      {"ignore-eos", false, {"generate"}},
      {"no-stream", false, {"generate"}},
      {"no-special", false, {"tokenize"}},
      {"skip-special", false, {"detokenize"}},
      {"residency", true, {"load"}},
      {"interval", true, {"top"}},
      {"iterations", true, {"top"}},
  };
  return specs;
}

inline Status usage_error(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

template <typename Int>
Expected<Int> parse_integer(std::string_view option, std::string_view text) {
  Int value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return usage_error(std::string(option) + " wants an integer in [" +
                       std::to_string(std::numeric_limits<Int>::min()) + ", " +
                       std::to_string(std::numeric_limits<Int>::max()) + "], not '" +
                       std::string(text) + "'");
  }
  return value;
}

inline Expected<float> parse_float(std::string_view option, std::string_view text) {
  float value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return usage_error(std::string(option) + " wants a number, not '" + std::string(text) + "'");
  }
  return value;
}

// Each non-empty line of `in` (a trailing '\r' dropped), appended to `out`.
inline void read_lines(std::istream& in, std::vector<std::string>& out) {
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) out.push_back(line);
  }
}

// The positional texts, with "-" replaced by the lines of stdin (read once).
inline std::vector<std::string> expand_stdin(const std::vector<std::string>& texts,
                                             std::istream& stdin_stream) {
  std::vector<std::string> expanded;
  bool stdin_read = false;
  for (const std::string& text : texts) {
    if (text == "-") {
      if (!stdin_read) read_lines(stdin_stream, expanded);
      stdin_read = true;
    } else {
      expanded.push_back(text);
    }
  }
  return expanded;
}

}  // namespace detail

// Parses argv[1..] (without the program name). `env_socket` is $SPARKD_SOCKET (nullptr when
// unset); `stdin_stream` supplies the lines a "-" argument stands for. Usage errors come back
// as INVALID_ARGUMENT with a message naming the offending argument.
inline Expected<Invocation> parse_command_line(const std::vector<std::string>& args,
                                               const char* env_socket, std::istream& stdin_stream) {
  namespace v1 = sparkd::v1;
  using detail::usage_error;

  // First pass: split options from positionals, so options may come anywhere.
  std::vector<std::string> positionals;
  std::vector<std::pair<std::string, std::string>> options;  // (name, value)
  bool options_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (options_ended || arg == "-" || arg.rfind("-", 0) != 0) {
      positionals.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_ended = true;
      continue;
    }
    if (arg == "-h") {
      options.emplace_back("help", "");
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      return usage_error("unknown option '" + arg + "' (options start with --; use -- before " +
                         "a text that starts with -)");
    }
    std::string name = arg.substr(2);
    std::optional<std::string> inline_value;
    if (const size_t equals = name.find('='); equals != std::string::npos) {
      inline_value = name.substr(equals + 1);
      name.resize(equals);
    }
    const auto& specs = detail::option_specs();
    const auto spec = std::find_if(specs.begin(), specs.end(),
                                   [&](const detail::OptionSpec& s) { return s.name == name; });
    if (spec == specs.end()) return usage_error("unknown option '--" + name + "'");
    if (!spec->takes_value) {
      if (inline_value) return usage_error("--" + name + " takes no value");
      options.emplace_back(name, "");
    } else if (inline_value) {
      options.emplace_back(name, *inline_value);
    } else if (i + 1 < args.size()) {
      options.emplace_back(name, args[++i]);
    } else {
      return usage_error("--" + name + " needs a value");
    }
  }

  Invocation invocation;
  invocation.socket_path =
      env_socket != nullptr && *env_socket != '\0' ? env_socket : kDefaultSocketPath;
  for (const auto& [name, value] : options) {
    if (name == "help") invocation.help = true;
  }
  if (positionals.empty()) {
    if (invocation.help) return invocation;
    return usage_error("no command given (try sparkctl --help)");
  }
  invocation.command = positionals.front();
  const std::string& command = invocation.command;
  const std::vector<std::string> operands(positionals.begin() + 1, positionals.end());

  static const std::vector<std::string_view> kCommands = {
      "embed",  "rerank", "generate", "tokenize", "detokenize", "models",
      "status", "health", "load",     "unload",   "reload",     "top"};
  if (std::find(kCommands.begin(), kCommands.end(), command) == kCommands.end()) {
    return usage_error("unknown command '" + command + "' (try sparkctl --help)");
  }
  if (invocation.help) return invocation;

  for (const auto& [name, value] : options) {
    const auto& specs = detail::option_specs();
    const auto spec = std::find_if(specs.begin(), specs.end(),
                                   [&](const detail::OptionSpec& s) { return s.name == name; });
    if (!spec->commands.empty() &&
        std::find(spec->commands.begin(), spec->commands.end(), command) == spec->commands.end()) {
      return usage_error("--" + name + " does not apply to '" + command + "'");
    }
  }

  const auto operand_count_error = [&](const char* wanted) {
    return usage_error("'" + command + "' takes " + wanted + ", got " +
                       std::to_string(operands.size()) + " argument(s) (try sparkctl --help)");
  };

  v1::Request& request = invocation.request;
  if (command == "embed") {
    if (operands.size() < 2) return operand_count_error("MODEL TEXT...");
    v1::EmbedRequest& embed = *request.mutable_embed();
    embed.set_model(operands[0]);
    for (std::string& text : detail::expand_stdin(
             std::vector<std::string>(operands.begin() + 1, operands.end()), stdin_stream)) {
      embed.add_inputs(std::move(text));
    }
    if (embed.inputs().empty()) return usage_error("embed: stdin gave no non-empty lines");
  } else if (command == "rerank") {
    if (operands.size() < 3) return operand_count_error("MODEL QUERY DOC...");
    v1::RerankRequest& rerank = *request.mutable_rerank();
    rerank.set_model(operands[0]);
    rerank.set_query(operands[1]);
    for (std::string& text : detail::expand_stdin(
             std::vector<std::string>(operands.begin() + 2, operands.end()), stdin_stream)) {
      rerank.add_documents(std::move(text));
    }
    if (rerank.documents().empty()) return usage_error("rerank: stdin gave no non-empty lines");
  } else if (command == "generate") {
    if (operands.size() != 2) return operand_count_error("MODEL PROMPT");
    v1::GenerateRequest& generate = *request.mutable_generate();
    generate.set_model(operands[0]);
  } else if (command == "tokenize") {
    if (operands.size() != 2) return operand_count_error("MODEL TEXT");
    request.mutable_tokenize()->set_model(operands[0]);
    request.mutable_tokenize()->set_text(operands[1]);
    // The token strings make the human table readable; the ids are the same either way.
    request.mutable_tokenize()->set_return_tokens(true);
  } else if (command == "detokenize") {
    if (operands.size() < 2) return operand_count_error("MODEL ID...");
    request.mutable_detokenize()->set_model(operands[0]);
    for (size_t i = 1; i < operands.size(); ++i) {
      SPARKD_ASSIGN_OR_RETURN(const int32_t id,
                              detail::parse_integer<int32_t>("token id", operands[i]));
      request.mutable_detokenize()->add_ids(id);
    }
  } else if (command == "top") {
    if (!operands.empty()) return operand_count_error("no arguments");
    request.mutable_status();
    for (const auto& [name, value] : options) {
      if (name == "interval") {
        char* end = nullptr;
        const double seconds = std::strtod(value.c_str(), &end);
        if (value.empty() || end != value.c_str() + value.size() || !(seconds >= 0.05) ||
            seconds > 3600) {
          return usage_error("--interval must be a number of seconds from 0.05 to 3600, got '" +
                             value + "'");
        }
        invocation.interval_s = seconds;
      } else if (name == "iterations") {
        SPARKD_ASSIGN_OR_RETURN(invocation.iterations,
                                detail::parse_integer<uint64_t>("--iterations", value));
      } else if (name == "json") {
        return usage_error("top is for people; use 'status --json' in scripts");
      }
    }
  } else if (command == "models" || command == "status" || command == "health" ||
             command == "reload") {
    if (!operands.empty()) return operand_count_error("no arguments");
    if (command == "models") request.mutable_list_models();
    if (command == "status") request.mutable_status();
    if (command == "health") request.mutable_health();
    if (command == "reload") request.mutable_reload();
  } else if (command == "load") {
    if (operands.empty() || operands.size() > 2) return operand_count_error("NAME [PATH]");
    request.mutable_load()->set_name(operands[0]);
    if (operands.size() == 2 && is_store_reference(operands[1])) {
      request.mutable_load()->set_path(operands[1]);  // ollama:..., hf:...: not a path
    } else if (operands.size() == 2) {
      // The daemon resolves nothing against its own working directory: paths go absolute.
      std::error_code error;
      const std::filesystem::path absolute = std::filesystem::absolute(operands[1], error);
      if (error) {
        return usage_error("load: cannot make '" + operands[1] +
                           "' an absolute path: " + error.message());
      }
      request.mutable_load()->set_path(absolute.lexically_normal().string());
    }
  } else if (command == "unload") {
    if (operands.size() != 1) return operand_count_error("NAME");
    request.mutable_unload()->set_name(operands[0]);
  }

  bool chat = false;
  std::optional<std::string> system_text;
  bool normalize_given = false;
  for (const auto& [name, value] : options) {
    const std::string option = "--" + name;
    if (name == "socket") {
      if (value.empty()) return usage_error("--socket needs a non-empty path");
      invocation.socket_path = value;
    } else if (name == "json") {
      invocation.json = true;
    } else if (name == "normalize" || name == "no-normalize") {
      if (normalize_given) return usage_error("give at most one of --normalize, --no-normalize");
      normalize_given = true;
      request.mutable_embed()->set_normalize(name == "normalize");
    } else if (name == "truncate") {
      if (command == "embed") request.mutable_embed()->set_truncate(true);
      if (command == "rerank") request.mutable_rerank()->set_truncate(true);
    } else if (name == "top-n") {
      SPARKD_ASSIGN_OR_RETURN(const uint32_t top_n, detail::parse_integer<uint32_t>(option, value));
      request.mutable_rerank()->set_top_n(top_n);
    } else if (name == "raw-scores") {
      request.mutable_rerank()->set_raw_scores(true);
    } else if (name == "chat") {
      chat = true;
    } else if (name == "system") {
      system_text = value;
    } else if (name == "max-tokens") {
      SPARKD_ASSIGN_OR_RETURN(const uint32_t max_tokens,
                              detail::parse_integer<uint32_t>(option, value));
      request.mutable_generate()->set_max_tokens(max_tokens);
    } else if (name == "temperature") {
      SPARKD_ASSIGN_OR_RETURN(const float temperature, detail::parse_float(option, value));
      request.mutable_generate()->mutable_sampling()->set_temperature(temperature);
    } else if (name == "top-p") {
      SPARKD_ASSIGN_OR_RETURN(const float top_p, detail::parse_float(option, value));
      request.mutable_generate()->mutable_sampling()->set_top_p(top_p);
    } else if (name == "top-k") {
      SPARKD_ASSIGN_OR_RETURN(const int32_t top_k, detail::parse_integer<int32_t>(option, value));
      request.mutable_generate()->mutable_sampling()->set_top_k(top_k);
    } else if (name == "min-p") {
      SPARKD_ASSIGN_OR_RETURN(const float min_p, detail::parse_float(option, value));
      request.mutable_generate()->mutable_sampling()->set_min_p(min_p);
    } else if (name == "seed") {
      SPARKD_ASSIGN_OR_RETURN(const uint64_t seed, detail::parse_integer<uint64_t>(option, value));
      request.mutable_generate()->mutable_sampling()->set_seed(seed);
    } else if (name == "stop") {
      request.mutable_generate()->add_stop(value);
    } else if (name == "ignore-eos") {
      request.mutable_generate()->set_ignore_eos(true);
    } else if (name == "no-stream") {
      request.mutable_generate()->set_stream(false);
    } else if (name == "no-special") {
      request.mutable_tokenize()->set_add_special_tokens(false);
    } else if (name == "skip-special") {
      request.mutable_detokenize()->set_skip_special_tokens(true);
    } else if (name == "residency") {
      if (value != "pinned" && value != "on_demand") {
        return usage_error("--residency wants pinned or on_demand, not '" + value + "'");
      }
      request.mutable_load()->set_residency(value);
    }
  }

  if (command == "generate") {
    v1::GenerateRequest& generate = *request.mutable_generate();
    const std::string& prompt = operands[1];
    if (system_text && !chat) return usage_error("--system needs --chat");
    if (chat) {
      v1::Chat& conversation = *generate.mutable_chat();
      if (system_text) {
        v1::ChatMessage& system_message = *conversation.add_messages();
        system_message.set_role("system");
        system_message.set_content(*system_text);
      }
      v1::ChatMessage& user_message = *conversation.add_messages();
      user_message.set_role("user");
      user_message.set_content(prompt);
    } else {
      generate.set_prompt(prompt);
    }
    const bool no_stream = std::any_of(options.begin(), options.end(),
                                       [](const auto& o) { return o.first == "no-stream"; });
    // --json prints the assembled result only, so there is nothing to gain from chunks.
    generate.set_stream(!no_stream && !invocation.json);
    invocation.stream_output = generate.stream();
  }
  return invocation;
}

}  // namespace sparkd::sparkctl
