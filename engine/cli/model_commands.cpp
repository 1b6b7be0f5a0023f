#include "engine/cli/model_commands.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend/placement.h"
#include "engine/tasks/loaded_model.h"

namespace sparkd::cli {

const char* const kModelCommandsUsage =
    "       sparkd-run MODEL_DIR embed [TEXT...] [--json] [--threads N] [--device D]\n"
    "       sparkd-run MODEL_DIR rerank QUERY DOCUMENT... | --json [--threads N] [--device D]\n"
    "       sparkd-run MODEL_DIR generate [PROMPT] [--max-new-tokens N] [--ignore-eos] [--json]\n"
    "                  [--threads N] [--device D]\n"
    "  --device: auto (default: a CUDA device when there is one), cpu, cuda or cuda:N.\n"
    "  Without --json, inputs come from the arguments (embed and generate read stdin when\n"
    "  none are given) and results are printed for people. With --json, each stdin line is a\n"
    "  request and each output line its JSON result:\n"
    "    embed:    \"text\" | [\"text\", ...] | {\"ids\": [[id, ...], ...]}\n"
    "              -> {\"embeddings\": [[...], ...], \"token_counts\": [...]}\n"
    "    rerank:   {\"query\": \"...\", \"documents\": [\"...\", ...]}\n"
    "              -> {\"scores\": [sigmoid], \"logits\": [raw], \"token_counts\": [...]}\n"
    "    generate: \"prompt\" | {\"prompt\": \"...\" | \"ids\": [...], \"max_new_tokens\": N,\n"
    "              \"ignore_eos\": bool} -> {\"prompt_ids\", \"ids\", \"text\", "
    "\"finish_reason\",\n"
    "              \"prefill_tokens_per_second\", \"decode_tokens_per_second\"}\n";

namespace {

using nlohmann::json;
using tasks::LoadedModel;

struct ModelOptions {
  bool json_mode = false;
  int threads = 0;
  int32_t max_new_tokens = 64;
  bool ignore_eos = false;
  std::string device = "auto";
  std::vector<std::string> positional;
};

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

void print_json_line(const json& j) {
  std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace);
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

json rows_to_json(const std::vector<float>& values, int32_t width) {
  json rows = json::array();
  for (size_t begin = 0; begin < values.size(); begin += width) {
    rows.push_back(std::vector<float>(values.begin() + begin, values.begin() + begin + width));
  }
  return rows;
}

Expected<std::vector<int32_t>> ids_from_json(const json& j) {
  if (!j.is_array()) return invalid("\"ids\" must be an array of token ids");
  std::vector<int32_t> ids;
  for (const json& id : j) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      return invalid("token ids must be non-negative integers, got " + id.dump());
    }
    ids.push_back(id.get<int32_t>());
  }
  return ids;
}

Expected<std::vector<std::string>> strings_from_json(const json& j, const char* what) {
  if (!j.is_array()) return invalid(std::string(what) + " must be an array of strings");
  std::vector<std::string> out;
  for (const json& s : j) {
    if (!s.is_string()) return invalid(std::string(what) + " must be an array of strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

// ---- embed ------------------------------------------------------------------------------
Expected<json> embed_request(const LoadedModel& model, const json& input) {
  Expected<tasks::Embeddings> result = Status();
  if (input.is_string()) {
    std::vector<std::string> texts{input.get<std::string>()};
    result = tasks::embed_texts(model, texts);
  } else if (input.is_array()) {
    SPARKD_ASSIGN_OR_RETURN(auto texts, strings_from_json(input, "an embed request"));
    result = tasks::embed_texts(model, texts);
  } else if (input.is_object() && input.contains("texts")) {
    SPARKD_ASSIGN_OR_RETURN(auto texts, strings_from_json(input["texts"], "\"texts\""));
    result = tasks::embed_texts(model, texts);
  } else if (input.is_object() && input.contains("ids") && input["ids"].is_array()) {
    std::vector<std::vector<int32_t>> inputs;
    for (const json& ids : input["ids"]) {
      SPARKD_ASSIGN_OR_RETURN(auto one, ids_from_json(ids));
      inputs.push_back(std::move(one));
    }
    result = tasks::embed_token_ids(model, inputs);
  } else {
    return invalid("an embed request is a string, an array of strings, or {\"ids\": [[...]]}");
  }
  if (!result) return result.status();
  return json{{"embeddings", rows_to_json(result->values, result->dimensions)},
              {"token_counts", result->token_counts}};
}

// ---- rerank -----------------------------------------------------------------------------
Expected<json> rerank_request(const LoadedModel& model, const json& input) {
  if (!input.is_object() || !input.contains("query") || !input["query"].is_string() ||
      !input.contains("documents")) {
    return invalid("a rerank request is {\"query\": \"...\", \"documents\": [\"...\", ...]}");
  }
  SPARKD_ASSIGN_OR_RETURN(auto documents, strings_from_json(input["documents"], "\"documents\""));
  SPARKD_ASSIGN_OR_RETURN(auto scores,
                          tasks::rerank(model, input["query"].get<std::string>(), documents));
  return json{{"scores", scores.probabilities},
              {"logits", scores.logits},
              {"token_counts", scores.token_counts}};
}

// ---- generate ---------------------------------------------------------------------------
Expected<json> generate_request(const LoadedModel& model, const ModelOptions& options,
                                const json& input) {
  tasks::GenerateOptions generate;
  generate.max_new_tokens = options.max_new_tokens;
  generate.ignore_eos = options.ignore_eos;
  std::vector<int32_t> prompt_ids;
  auto encode = [&](const std::string& prompt) -> Status {
    SPARKD_ASSIGN_OR_RETURN(auto encoding, model.tokenizer().encode(prompt));
    prompt_ids.assign(encoding.ids.begin(), encoding.ids.end());
    return Status::ok();
  };
  if (input.is_string()) {
    SPARKD_RETURN_IF_ERROR(encode(input.get<std::string>()));
  } else if (input.is_object() && input.contains("prompt") && input["prompt"].is_string()) {
    SPARKD_RETURN_IF_ERROR(encode(input["prompt"].get<std::string>()));
  } else if (input.is_object() && input.contains("ids")) {
    SPARKD_ASSIGN_OR_RETURN(prompt_ids, ids_from_json(input["ids"]));
  } else {
    return invalid(
        "a generate request is a prompt string or {\"prompt\": \"...\"} or {\"ids\": [...]}");
  }
  if (input.is_object()) {
    if (input.contains("max_new_tokens")) {
      const json& n = input["max_new_tokens"];
      if (!n.is_number_integer() || n.get<int64_t>() < 0 || n.get<int64_t>() > INT32_MAX) {
        return invalid("\"max_new_tokens\" must be a non-negative integer");
      }
      generate.max_new_tokens = n.get<int32_t>();
    }
    if (input.contains("ignore_eos")) {
      if (!input["ignore_eos"].is_boolean()) return invalid("\"ignore_eos\" must be true or false");
      generate.ignore_eos = input["ignore_eos"].get<bool>();
    }
  }
  SPARKD_ASSIGN_OR_RETURN(auto generation, tasks::generate_greedy(model, prompt_ids, generate));
  std::vector<uint32_t> new_ids(generation.new_ids.begin(), generation.new_ids.end());
  SPARKD_ASSIGN_OR_RETURN(std::string text, model.tokenizer().decode(new_ids, true));
  const double decode_tokens = std::max<double>(0.0, static_cast<double>(new_ids.size()) - 1.0);
  return json{{"prompt_ids", generation.prompt_ids},
              {"ids", generation.new_ids},
              {"text", text},
              {"finish_reason", generation.finish_reason},
              {"prefill_tokens_per_second",
               generation.prefill_seconds > 0
                   ? static_cast<double>(prompt_ids.size()) / generation.prefill_seconds
                   : 0.0},
              {"decode_tokens_per_second",
               generation.decode_seconds > 0 ? decode_tokens / generation.decode_seconds : 0.0}};
}

// Streams the continuation of one prompt to stdout as it is produced, then the speeds.
int generate_for_people(const LoadedModel& model, const ModelOptions& options,
                        const std::string& prompt) {
  auto encoding = model.tokenizer().encode(prompt);
  if (!encoding) {
    std::fprintf(stderr, "sparkd-run: %s\n", encoding.status().to_string().c_str());
    return 1;
  }
  std::vector<int32_t> prompt_ids(encoding->ids.begin(), encoding->ids.end());
  tasks::GenerateOptions generate;
  generate.max_new_tokens = options.max_new_tokens;
  generate.ignore_eos = options.ignore_eos;
  // Decoding the whole continuation each time and printing the new suffix keeps multi-byte
  // characters split across tokens intact.
  std::vector<uint32_t> so_far;
  std::string printed;
  std::fputs(prompt.c_str(), stdout);
  auto generation = tasks::generate_greedy(model, prompt_ids, generate, [&](int32_t token) {
    so_far.push_back(static_cast<uint32_t>(token));
    auto text = model.tokenizer().decode(so_far, true);
    if (text && text->size() > printed.size() && text->compare(0, printed.size(), printed) == 0) {
      std::fputs(text->c_str() + printed.size(), stdout);
      std::fflush(stdout);
      printed = *text;
    }
  });
  std::fputs("\n", stdout);
  // The text goes to stdout and the stats to stderr: flush, so that with both on one pipe
  // the stats line still starts a line of its own.
  std::fflush(stdout);
  if (!generation) {
    std::fprintf(stderr, "sparkd-run: %s\n", generation.status().to_string().c_str());
    return 1;
  }
  const size_t produced = generation->new_ids.size();
  std::fprintf(stderr, "%zu prompt tokens, %zu new (%s); prefill %.1f tok/s, decode %.1f tok/s\n",
               prompt_ids.size(), produced, generation->finish_reason.c_str(),
               generation->prefill_seconds > 0
                   ? static_cast<double>(prompt_ids.size()) / generation->prefill_seconds
                   : 0.0,
               generation->decode_seconds > 0 && produced > 1
                   ? static_cast<double>(produced - 1) / generation->decode_seconds
                   : 0.0);
  return 0;
}

std::vector<std::string> stdin_lines() {
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

int run_for_people(const LoadedModel& model, std::string_view command,
                   const ModelOptions& options) {
  std::vector<std::string> inputs = options.positional;
  if (command == "rerank") {
    if (inputs.size() < 2) {
      std::fprintf(stderr, "sparkd-run: rerank needs a query and at least one document\n");
      return 2;
    }
    std::vector<std::string> documents(inputs.begin() + 1, inputs.end());
    auto scores = tasks::rerank(model, inputs[0], documents);
    if (!scores) {
      std::fprintf(stderr, "sparkd-run: %s\n", scores.status().to_string().c_str());
      return 1;
    }
    for (size_t i = 0; i < documents.size(); ++i) {
      std::printf("%.6f  (logit %+.4f)  %s\n", scores->probabilities[i], scores->logits[i],
                  documents[i].c_str());
    }
    return 0;
  }
  if (inputs.empty()) inputs = stdin_lines();
  if (command == "generate") {
    int status = 0;
    for (const std::string& prompt : inputs) status |= generate_for_people(model, options, prompt);
    return status;
  }
  auto embeddings = tasks::embed_texts(model, inputs);
  if (!embeddings) {
    std::fprintf(stderr, "sparkd-run: %s\n", embeddings.status().to_string().c_str());
    return 1;
  }
  const int32_t width = embeddings->dimensions;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const float* row = embeddings->values.data() + i * width;
    std::printf("[%d tokens] [%.5f, %.5f, %.5f, ... %.5f] (%d dims)  %s\n",
                embeddings->token_counts[i], row[0], row[1], row[2], row[width - 1], width,
                inputs[i].c_str());
  }
  return 0;
}

int run_json_lines(const LoadedModel& model, std::string_view command,
                   const ModelOptions& options) {
  bool all_ok = true;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    Expected<json> out = Status();
    const json input = json::parse(line, nullptr, false);
    if (input.is_discarded()) {
      out = invalid("input line is not JSON");
    } else if (command == "embed") {
      out = embed_request(model, input);
    } else if (command == "rerank") {
      out = rerank_request(model, input);
    } else {
      out = generate_request(model, options, input);
    }
    if (!out) {
      all_ok = false;
      print_json_line(json{{"error", out.status().to_string()}});
    } else {
      print_json_line(*out);
    }
  }
  return all_ok ? 0 : 1;
}

bool parse_model_options(int argc, char** argv, ModelOptions* options, std::string* error) {
  for (int i = 3; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto integer = [&](int64_t min_value, int64_t* out) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      const long long v = std::strtoll(argv[++i], &end, 10);
      if (end == nullptr || *end != '\0' || v < min_value || v > INT32_MAX) return false;
      *out = v;
      return true;
    };
    int64_t value = 0;
    if (arg == "--json") {
      options->json_mode = true;
    } else if (arg == "--ignore-eos") {
      options->ignore_eos = true;
    } else if (arg == "--device") {
      if (i + 1 >= argc) {
        *error = "--device needs a value (auto, cpu, cuda or cuda:N)";
        return false;
      }
      options->device = argv[++i];
    } else if (arg == "--threads") {
      if (!integer(1, &value)) {
        *error = "--threads needs a positive integer";
        return false;
      }
      options->threads = static_cast<int>(value);
    } else if (arg == "--max-new-tokens") {
      if (!integer(0, &value)) {
        *error = "--max-new-tokens needs a non-negative integer";
        return false;
      }
      options->max_new_tokens = static_cast<int32_t>(value);
    } else if (arg.size() > 2 && arg.substr(0, 2) == "--") {
      *error = "unknown option " + std::string(arg);
      return false;
    } else {
      options->positional.emplace_back(arg);
    }
  }
  return true;
}

}  // namespace

bool is_model_command(const char* command) {
  const std::string_view c = command;
  return c == "embed" || c == "rerank" || c == "generate";
}

int run_model_command(int argc, char** argv) {
  ModelOptions options;
  std::string error;
  if (!parse_model_options(argc, argv, &options, &error)) {
    std::fprintf(stderr, "sparkd-run: %s\n", error.c_str());
    return 2;
  }
  const std::string_view command = argv[2];
  CpuBackendOptions backend_options;
  backend_options.num_threads = options.threads;
  auto placement = parse_placement(options.device);
  if (!placement) {
    std::fprintf(stderr, "sparkd-run: --device: %s\n", placement.status().message().c_str());
    return 2;
  }
  auto made = make_backend(*placement, backend_options);
  if (!made) {
    std::fprintf(stderr, "sparkd-run: %s: %s\n", placement->to_string().c_str(),
                 made.status().to_string().c_str());
    return 1;
  }
  std::unique_ptr<Backend> backend = std::move(made).value();
  auto model = tasks::LoadedModel::load(argv[1], *backend);
  if (!model) {
    std::fprintf(stderr, "sparkd-run: %s\n", model.status().to_string().c_str());
    return 1;
  }
  const model::ModelSpec& spec = (*model)->spec();
  const model::LoadStats& stats = (*model)->weights().stats();
  std::fprintf(stderr, "sparkd-run: %s (%s, %s) on %s: %.1f MB of weights in %.3f s (%.2f GB/s)\n",
               argv[1], spec.architecture.c_str(), model::task_name(spec.task),
               backend->name().c_str(), static_cast<double>(stats.bytes_read) / 1e6, stats.seconds,
               stats.gigabytes_per_second());
  const bool task_matches = (command == "embed" && spec.task == model::ModelTask::kEmbed) ||
                            (command == "rerank" && spec.task == model::ModelTask::kRerank) ||
                            (command == "generate" && spec.task == model::ModelTask::kGenerate);
  if (!task_matches) {
    std::fprintf(stderr, "sparkd-run: %s is a %s model; it cannot %s\n", argv[1],
                 model::task_name(spec.task), std::string(command).c_str());
    return 1;
  }
  return options.json_mode ? run_json_lines(**model, command, options)
                           : run_for_people(**model, command, options);
}

}  // namespace sparkd::cli
