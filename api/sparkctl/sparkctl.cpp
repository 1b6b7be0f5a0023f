// sparkctl: the command-line client of sparkd. One command per run: parse argv into one
// request, send it over the daemon's socket, print the answer for people (tables, streamed
// text) or for scripts (--json: one JSON object on stdout).
//
// Exit status: 0 done, 1 the daemon answered with an error, 2 usage error, 3 the daemon could
// not be reached or the connection broke, 130 interrupted (Ctrl-C) during generate.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "api/client/client.h"
#include "api/sparkctl/command_line.h"
#include "api/sparkctl/json_output.h"
#include "api/sparkd.pb.h"
#include "common/text_table.h"

namespace sparkd::sparkctl {
namespace {

namespace v1 = sparkd::v1;

constexpr int kExitOk = 0;
constexpr int kExitDaemonError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;
constexpr int kExitInterrupted = 130;  // 128 + SIGINT, as shells report it

// Short enough that Ctrl-C feels immediate, long enough not to spin.
constexpr std::chrono::milliseconds kInterruptPollInterval(100);
// Requests other than generate answer within this (model loads on demand included).
constexpr std::chrono::minutes kCallTimeout(10);
// After Ctrl-C: how long to wait for the daemon to confirm the cancel before leaving anyway.
constexpr std::chrono::seconds kCancelGrace(2);

std::atomic<bool> interrupted{false};

extern "C" void on_sigint(int) {
  interrupted.store(true);
}

void install_sigint_handler() {
  struct sigaction action {};
  action.sa_handler = on_sigint;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a blocked poll returns so the loop sees the flag
  sigaction(SIGINT, &action, nullptr);
}

void print_error(const std::string& code_name, const std::string& message) {
  std::cerr << "sparkctl: " << code_name << ": " << message << "\n";
}

// A transport failure (the client, not the daemon, reports it): exit 3.
int report_unreachable(const Status& status) {
  print_error(status_code_name(status.code()), status.message());
  return kExitUnreachable;
}

// An error response from the daemon: exit 1.
int report_daemon_error(const v1::Error& error) {
  print_error(v1::Code_Name(error.code()).empty() ? std::to_string(error.code())
                                                  : v1::Code_Name(error.code()),
              error.message());
  return kExitDaemonError;
}

// A broken connection: the daemon's own reason when it gave one before closing (exit 1),
// otherwise the transport's (exit 3).
int report_connection_failure(const api::Client& client, const Status& status) {
  if (client.connection_error()) return report_daemon_error(client.connection_error()->error());
  return report_unreachable(status);
}

std::string format_double(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

// One line of a document or token for a table cell: control characters shown, long text cut.
std::string cell_text(const std::string& text, size_t max_chars) {
  std::string cell;
  for (const char c : text) {
    if (c == '\n') {
      cell += "\\n";
    } else if (c == '\t') {
      cell += "\\t";
    } else if (c == '\r') {
      cell += "\\r";
    } else {
      cell += c;
    }
  }
  if (cell.size() > max_chars) {
    cell.resize(max_chars);
    // Do not leave half a UTF-8 sequence behind.
    while (!cell.empty() && (static_cast<unsigned char>(cell.back()) & 0xC0) == 0x80) {
      cell.pop_back();
    }
    if (!cell.empty() && (static_cast<unsigned char>(cell.back()) & 0x80) != 0) cell.pop_back();
    cell += "...";
  }
  return cell;
}

// Columns padded to their widest cell, two spaces apart; the last column is not padded.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::cout << text_table(rows);
}

std::string timing_summary(const v1::Timing& timing) {
  return "queue " + format_double("%.1f", timing.queue_ms()) + " ms, tokenize " +
         format_double("%.1f", timing.tokenize_ms()) + " ms, compute " +
         format_double("%.1f", timing.compute_ms()) + " ms, total " +
         format_double("%.1f", timing.total_ms()) + " ms";
}

void print_embed(const v1::Request& request, const v1::Response& response) {
  constexpr int kValuesShown = 4;
  const v1::EmbedResponse& embed = response.embed();
  for (int i = 0; i < embed.embeddings_size(); ++i) {
    const auto& values = embed.embeddings(i).values();
    std::string line = "[" + std::to_string(i) + "] " + std::to_string(values.size()) + " dims: ";
    for (int j = 0; j < std::min(values.size(), kValuesShown); ++j) {
      line += format_double("%.6f", static_cast<double>(values[j])) + " ";
    }
    if (values.size() > kValuesShown) line += "... ";
    if (i < request.embed().inputs_size()) line += "  " + cell_text(request.embed().inputs(i), 40);
    std::cout << line << "\n";
  }
  std::cout << "usage: " << response.usage().prompt_tokens() << " prompt tokens; "
            << timing_summary(response.timing()) << "\n";
}

void print_rerank(const v1::Request& request, const v1::Response& response) {
  std::vector<std::vector<std::string>> rows = {{"RANK", "INDEX", "SCORE", "DOCUMENT"}};
  const auto& results = response.rerank().results();
  for (int rank = 0; rank < results.size(); ++rank) {
    const v1::RerankResult& result = results[rank];
    const std::string document =
        result.index() < static_cast<uint32_t>(request.rerank().documents_size())
            ? request.rerank().documents(static_cast<int>(result.index()))
            : result.document();
    rows.push_back({std::to_string(rank + 1), std::to_string(result.index()),
                    format_double("%.6f", static_cast<double>(result.score())),
                    cell_text(document, 70)});
  }
  print_table(rows);
  std::cout << "usage: " << response.usage().prompt_tokens() << " prompt tokens; "
            << timing_summary(response.timing()) << "\n";
}

void print_tokenize(const v1::Response& response) {
  const v1::TokenizeResponse& tokenize = response.tokenize();
  std::cout << tokenize.ids_size() << " tokens\n";
  std::vector<std::vector<std::string>> rows = {{"ID", "TOKEN"}};
  for (int i = 0; i < tokenize.ids_size(); ++i) {
    rows.push_back({std::to_string(tokenize.ids(i)),
                    i < tokenize.tokens_size() ? cell_text(tokenize.tokens(i), 60) : ""});
  }
  print_table(rows);
}

void print_models(const v1::Response& response) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "TASK", "STATE", "DEVICE", "WEIGHTS", "KV", "MAX_INPUT"}};
  std::vector<std::string> failures;
  for (const v1::ModelInfo& model : response.list_models().models()) {
    rows.push_back({model.name(), model.task(), model.state(),
                    model.device().empty() ? "-" : model.device(),
                    human_bytes(model.weights_bytes()), human_bytes(model.kv_bytes()),
                    std::to_string(model.max_input_tokens())});
    if (!model.error().empty()) failures.push_back(model.name() + ": " + model.error());
  }
  print_table(rows);
  for (const std::string& failure : failures) std::cout << failure << "\n";
}

// "prefix_cache 2, preempt 0": a counter map in a stable order, the keys always listed.
std::string counts_text(const google::protobuf::Map<std::string, uint64_t>& counts,
                        std::initializer_list<const char*> keys) {
  std::string text;
  for (const char* key : keys) {
    const auto it = counts.find(key);
    text += (text.empty() ? "" : ", ") + std::string(key) + " " +
            std::to_string(it == counts.end() ? 0 : it->second);
  }
  return text;
}

// The governor's lines shared by status and top.
void print_governor(const v1::StatusResponse& status) {
  const std::string budget_source = status.configured_budget_bytes() > 0
                                        ? "governor.budget " +
                                              human_bytes(status.configured_budget_bytes()) +
                                              ", or less if the machine has less"
                                        : "auto: held + MemAvailable - os_reserve";
  std::cout << "memory budget      " << human_bytes(status.budget_bytes()) << " (" << budget_source
            << ")\n"
            << "ledger             " << human_bytes(status.ledger_bytes()) << " (held "
            << human_bytes(status.held_bytes()) << ", baseline "
            << human_bytes(status.baseline_bytes()) << "), free "
            << human_bytes(status.free_bytes()) << "\n"
            << "memory available   " << human_bytes(status.mem_available_bytes()) << " of "
            << human_bytes(status.mem_total_bytes()) << ", os_reserve "
            << human_bytes(status.os_reserve_bytes()) << "\n"
            << "memory pressure    " << format_double("%.2f", status.memory_pressure_some_avg10())
            << "% some, " << format_double("%.2f", status.memory_pressure_full_avg10())
            << "% full (PSI avg10)"
            << (status.under_pressure() ? "; the host is short of memory: KV growth held" : "")
            << "\n"
            << "daemon RSS         " << human_bytes(status.process_resident_bytes()) << "\n"
            << "reclaims           "
            << counts_text(status.reclaims_total(), {"prefix_cache", "preempt", "evict"}) << "\n"
            << "evictions          "
            << counts_text(status.evictions_total(), {"memory", "pressure", "keep_alive"}) << "\n"
            << "loads              "
            << counts_text(status.loads_total(), {"ok", "failed", "never_fits", "timeout"}) << "\n";
}

void print_status(const v1::Response& response) {
  const v1::StatusResponse& status = response.status();
  std::cout << "version            " << status.version() << "\n"
            << "uptime             " << format_double("%.0f", status.uptime_s()) << " s\n"
            << "connections        " << status.connections() << "\n"
            << "requests in flight " << status.requests_in_flight() << "\n";
  print_governor(status);
  std::cout << "\n";
  std::vector<std::vector<std::string>> rows = {
      {"MODEL", "STATE", "RESIDENCY", "PRIORITY", "RUNNING", "WAITING", "MEMORY_WAIT", "WEIGHTS",
       "WORKSPACE", "KV", "KV_USED", "KV_CACHED", "KV_MIN", "KV_MAX", "REQUESTS", "PREEMPTIONS",
       "GENERATED"}};
  for (const v1::ModelStatus& model : status.models()) {
    rows.push_back({model.name(), model.state(), model.residency(),
                    std::to_string(model.priority()), std::to_string(model.running()),
                    std::to_string(model.waiting()), std::to_string(model.waiting_for_memory()),
                    human_bytes(model.weights_bytes()), human_bytes(model.workspace_bytes()),
                    human_bytes(model.kv_bytes_committed()), human_bytes(model.kv_used_bytes()),
                    human_bytes(model.prefix_cached_bytes()), human_bytes(model.kv_min_bytes()),
                    human_bytes(model.kv_max_bytes()), std::to_string(model.requests_total()),
                    std::to_string(model.preemptions_total()),
                    std::to_string(model.generated_tokens_total())});
  }
  print_table(rows);
}

// sparkctl top: Status every interval, drawn over the previous frame; tokens per second come
// from the change in each model's generated tokens between two frames.
int run_top(api::Client& client, const Invocation& invocation) {
  install_sigint_handler();
  std::map<std::string, uint64_t> previous_tokens;
  auto previous_at = std::chrono::steady_clock::now();
  for (uint64_t frame = 0; invocation.iterations == 0 || frame < invocation.iterations; ++frame) {
    auto responses = client.call(invocation.request, kCallTimeout);
    if (!responses) return report_connection_failure(client, responses.status());
    if (responses->empty()) {
      return report_unreachable(Status(StatusCode::kInternal, "the daemon sent no response"));
    }
    const v1::Response& response = responses->back();
    if (response.has_error() && response.error().code() != v1::OK) {
      return report_daemon_error(response.error());
    }
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - previous_at).count();
    previous_at = now;
    const v1::StatusResponse& status = response.status();
    std::cout << "\033[H\033[2J"  // home, clear: each frame replaces the last
              << "sparkd " << status.version() << " - up "
              << format_double("%.0f", status.uptime_s()) << " s - " << status.connections()
              << " connections, " << status.requests_in_flight() << " requests in flight\n";
    print_governor(status);
    std::cout << "\n";
    std::vector<std::vector<std::string>> rows = {{"MODEL", "STATE", "RUNNING", "WAITING",
                                                   "MEMORY_WAIT", "WEIGHTS", "WORKSPACE", "KV",
                                                   "KV_USED", "KV_CACHED", "TOK/S"}};
    for (const v1::ModelStatus& model : status.models()) {
      const uint64_t tokens = model.generated_tokens_total();
      const auto seen = previous_tokens.find(model.name());
      double rate = 0;
      if (seen != previous_tokens.end() && tokens >= seen->second && seconds > 0) {
        rate = static_cast<double>(tokens - seen->second) / seconds;
      }
      previous_tokens[model.name()] = tokens;
      rows.push_back({model.name(), model.state(), std::to_string(model.running()),
                      std::to_string(model.waiting()), std::to_string(model.waiting_for_memory()),
                      human_bytes(model.weights_bytes()), human_bytes(model.workspace_bytes()),
                      human_bytes(model.kv_bytes_committed()), human_bytes(model.kv_used_bytes()),
                      human_bytes(model.prefix_cached_bytes()), format_double("%.1f", rate)});
    }
    print_table(rows);
    std::cout << "\n(refreshing every " << format_double("%g", invocation.interval_s)
              << " s; Ctrl-C quits)" << std::endl;
    if (invocation.iterations != 0 && frame + 1 == invocation.iterations) break;
    const auto wake = now + std::chrono::duration<double>(invocation.interval_s);
    while (std::chrono::steady_clock::now() < wake) {
      if (interrupted.load()) return kExitOk;
      std::this_thread::sleep_for(kInterruptPollInterval);
    }
    if (interrupted.load()) return kExitOk;
  }
  return kExitOk;
}

void print_for_people(const Invocation& invocation, const v1::Response& response) {
  const std::string& command = invocation.command;
  if (command == "embed") {
    print_embed(invocation.request, response);
  } else if (command == "rerank") {
    print_rerank(invocation.request, response);
  } else if (command == "tokenize") {
    print_tokenize(response);
  } else if (command == "detokenize") {
    std::cout << response.detokenize().text() << "\n";
  } else if (command == "models") {
    print_models(response);
  } else if (command == "status") {
    print_status(response);
  } else if (command == "health") {
    const v1::HealthResponse& health = response.health();
    std::cout << health.status() << " (" << (health.ready() ? "ready" : "not ready") << ")"
              << (health.reason().empty() ? "" : ": " + health.reason()) << "\n";
  } else {
    std::cout << response.admin().message() << "\n";  // load, unload, reload
  }
}

// The stats line after a generation, for people, on stderr (stdout holds only the text).
void print_generate_stats(const v1::Response& final_response, const std::string& finish_reason) {
  const v1::Usage& usage = final_response.usage();
  const v1::Timing& timing = final_response.timing();
  std::string line = "[" + std::to_string(usage.prompt_tokens()) + " prompt tokens";
  if (usage.cached_prompt_tokens() > 0) {
    line += " (" + std::to_string(usage.cached_prompt_tokens()) + " cached)";
  }
  line += ", " + std::to_string(usage.completion_tokens()) + " generated";
  // Decode rate: tokens after the first over the time after the first, so prefill and queueing
  // do not hide it.
  const double decode_ms = timing.total_ms() - timing.ttft_ms();
  if (usage.completion_tokens() > 1 && decode_ms > 0) {
    line += ", " + format_double("%.1f", (usage.completion_tokens() - 1) / (decode_ms / 1000.0)) +
            " tok/s";
  }
  line += ", ttft " + format_double("%.1f", timing.ttft_ms()) + " ms, total " +
          format_double("%.1f", timing.total_ms()) + " ms";
  if (!finish_reason.empty()) line += ", finish " + finish_reason;
  std::cerr << line << "]\n";
}

// Generate: read responses with a short poll so Ctrl-C can cancel the request on the daemon.
int run_generate(api::Client& client, const Invocation& invocation) {
  v1::Request request = invocation.request;
  request.set_id(client.next_id());
  if (Status sent = client.send(request); !sent.is_ok()) {
    return report_connection_failure(client, sent);
  }

  std::vector<v1::Response> responses;
  bool ended_with_newline = true;
  const auto deadline = std::chrono::steady_clock::now() + kCallTimeout;
  for (;;) {
    if (interrupted.load()) {
      v1::Request cancel;
      cancel.set_id(client.next_id());
      cancel.mutable_cancel()->set_target_id(request.id());
      const Status sent = client.send(cancel);
      // Wait briefly for the generation to end, so the daemon has freed its KV when we go.
      const auto grace_end = std::chrono::steady_clock::now() + kCancelGrace;
      while (sent.is_ok() && std::chrono::steady_clock::now() < grace_end) {
        auto response = client.receive(kInterruptPollInterval);
        if (!response && response.status().code() != StatusCode::kDeadlineExceeded) break;
        if (response && response->id() == request.id() && response->final()) break;
      }
      if (invocation.stream_output && !ended_with_newline) std::cout << "\n";
      std::cout.flush();
      print_error("CANCELLED", "interrupted; generate request " + std::to_string(request.id()) +
                                   (sent.is_ok() ? " cancelled on the daemon"
                                                 : " not cancelled: " + sent.message()));
      return kExitInterrupted;
    }
    auto received = client.receive(kInterruptPollInterval);
    if (!received) {
      if (received.status().code() != StatusCode::kDeadlineExceeded) {
        if (invocation.stream_output && !ended_with_newline) std::cout << "\n";
        std::cout.flush();
        return report_connection_failure(client, received.status());
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return report_unreachable(
            Status(StatusCode::kDeadlineExceeded, "no end of generation within 10 minutes"));
      }
      continue;
    }
    v1::Response response = std::move(received).value();
    if (response.id() != request.id()) continue;  // nothing else is in flight; ignore strays
    if (response.has_error() && response.error().code() != v1::OK) {
      if (invocation.stream_output && !ended_with_newline) std::cout << "\n";
      std::cout.flush();
      return report_daemon_error(response.error());
    }
    if (invocation.stream_output && response.has_generate() &&
        !response.generate().text().empty()) {
      const std::string& text = response.generate().text();
      std::cout << text;
      std::cout.flush();
      ended_with_newline = text.back() == '\n';
    }
    const bool final = response.final();
    responses.push_back(std::move(response));
    if (final) break;
  }

  const v1::GenerateChunk assembled = assemble_generate(responses);
  if (invocation.json) {
    auto json = command_result_json("generate", responses);
    if (!json) {
      print_error(status_code_name(json.status().code()), json.status().message());
      return kExitDaemonError;
    }
    std::cout << *json << "\n";
    return kExitOk;
  }
  if (!invocation.stream_output) {
    std::cout << assembled.text();
    ended_with_newline = assembled.text().empty() || assembled.text().back() == '\n';
  }
  if (!ended_with_newline) std::cout << "\n";
  std::cout.flush();
  print_generate_stats(responses.back(), assembled.finish_reason());
  return kExitOk;
}

int run(const std::vector<std::string>& args) {
  auto parsed = parse_command_line(args, std::getenv("SPARKD_SOCKET"), std::cin);
  if (!parsed) {
    print_error("INVALID_ARGUMENT", parsed.status().message());
    return kExitUsage;
  }
  const Invocation& invocation = *parsed;
  if (invocation.help) {
    std::cout << kUsageText;
    return kExitOk;
  }

  auto connected = api::Client::connect(invocation.socket_path);
  if (!connected) return report_unreachable(connected.status());
  api::Client& client = *connected;

  if (invocation.command == "generate") {
    install_sigint_handler();
    return run_generate(client, invocation);
  }
  if (invocation.command == "top") return run_top(client, invocation);

  auto responses = client.call(invocation.request, kCallTimeout);
  if (!responses) return report_unreachable(responses.status());
  if (responses->empty()) {
    return report_unreachable(Status(StatusCode::kInternal, "the daemon sent no response"));
  }
  const v1::Response& final_response = responses->back();
  if (final_response.has_error() && final_response.error().code() != v1::OK) {
    return report_daemon_error(final_response.error());
  }
  if (invocation.json) {
    auto json = command_result_json(invocation.command, *responses);
    if (!json) {
      print_error(status_code_name(json.status().code()), json.status().message());
      return kExitDaemonError;
    }
    std::cout << *json << "\n";
  } else {
    print_for_people(invocation, final_response);
  }
  std::cout.flush();
  return kExitOk;
}

}  // namespace
}  // namespace sparkd::sparkctl

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return sparkd::sparkctl::run(args);
}
