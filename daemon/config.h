// sparkd's configuration file (TOML): the structs the daemon runs from, and the one function
// that reads and validates a whole file. Validation collects every error (each names its
// dotted key and its line and column) into one message, so an operator fixes a file in one
// pass; unknown keys are errors, so a typo is never silently ignored. The functions never
// throw and return either a complete DaemonConfig or an error: SIGHUP reloads call the same
// function and keep the old configuration when it fails. docs/configuration.md is the
// reference of every key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace sparkd::daemon {

// [server]: the Unix socket and the limits that protect the daemon from its clients.
struct ServerConfig {
  std::string socket_path = "/run/sparkd/sparkd.sock";  // TOML `socket`; resolved, absolute
  uint32_t socket_mode = 0660;               // TOML: string of octal digits "0660" (or 0o660)
  std::string socket_group = "sparkd";       // "" = leave the group as created
  std::string admin_group = "sparkd-admin";  // peers in it (or root) may load/unload/reload
  size_t max_frame_bytes = 16 << 20;         // TOML: integer or size string "16MiB"
  uint32_t max_connections = 256;
  uint32_t max_inflight_per_connection = 64;
  size_t max_write_buffer_bytes = 8 << 20;  // per connection; beyond it the server stops reading
  double drain_timeout_s = 30;
  // A frame not completed this long after its first byte closes its connection; 0 = never.
  double frame_timeout_s = 10;
  // A connection with nothing in flight and nothing received for this long is closed (clients
  // reconnect); 0 = never.
  double idle_timeout_s = 300;
};

// [metrics]: the Prometheus exposer.
struct MetricsConfig {
  bool enabled = true;
  std::string listen = "127.0.0.1:9464";  // host:port; host is an IP literal or localhost
};

// [http]: the OpenAI- and Ollama-compatible HTTP front end. Off unless the file has an [http]
// table; then it listens on loopback unless told otherwise.
struct HttpConfig {
  bool enabled = false;  // true when the file has [http] (and enabled is not false)
  // "HOST:PORT" ("localhost" becomes 127.0.0.1) or "unix:/ABSOLUTE/PATH" (mode and group as
  // server.socket's).
  std::vector<std::string> listen = {"127.0.0.1:8000"};
  // A file of API keys, one per line (# comments): every request then needs
  // "Authorization: Bearer <key>". It must not be readable by group or others.
  std::string api_keys_file;
  std::vector<std::string> api_keys;  // read from api_keys_file at load (and reload)
  // Origins (or "*") that browsers may call from; empty = no CORS headers at all.
  std::vector<std::string> cors_allow_origins;
  size_t max_body_bytes = 32 << 20;
  size_t max_header_bytes = 64 << 10;
  uint32_t max_connections = 256;
  // A request not received whole this long after its first byte gets 408 and is closed.
  double request_timeout_s = 10;
  // A keep-alive connection idle this long is closed; 0 = never.
  double idle_timeout_s = 60;

  bool operator==(const HttpConfig&) const = default;
};

// [engine]
struct EngineConfig {
  int32_t threads = 0;  // 0 = all cores
};

// [governor]: the memory budget every byte the daemon holds is granted from.
struct GovernorConfig {
  uint64_t budget_bytes = 0;  // 0 = "auto": what the machine can give
  uint64_t os_reserve_bytes = 8ull << 30;
  // How long a request (with no deadline of its own) or a load may wait for memory before it
  // fails with RESOURCE_EXHAUSTED.
  double memory_wait_s = 30;
  // Where MemAvailable and PSI are read (tests point these at files they write).
  std::string meminfo_path = "/proc/meminfo";
  std::string pressure_path = "/proc/pressure/memory";
};

enum class Residency { kPinned, kOnDemand };

// "pinned" or "on_demand", as written in the file.
std::string_view residency_name(Residency residency);

// One [[models]] entry.
struct ModelConfig {
  std::string name;  // unique; [A-Za-z0-9._-]{1,64}; clients use it
  std::string path;  // model directory; relative paths resolve against the
                     // directory of the config file (this is the resolved one)
  Residency residency = Residency::kPinned;
  int32_t priority = 0;  // lower = more important
  // generate models
  int32_t max_batch_tokens = 2048;
  int32_t max_seqs = 64;
  int32_t block_tokens = 16;
  uint64_t kv_max_bytes = 1ull << 30;  // KV cache cap (size string ok)
  uint64_t kv_min_bytes = 0;
  bool prefix_caching = true;
  uint32_t default_max_tokens = 256;
  // embed/rerank models: TEI-style batching under a token budget that counts padding
  int32_t max_batch_inputs = 64;  // inputs per forward batch, not the client's request limit
  std::string
      chat_template;     // "" = the model's own, else by family; or "chatml"|"llama3"|"mistral"
  std::string quantize;  // "" = as stored; else a quant::quantize_target() name
  // Where it runs: "auto" (a CUDA device when there is one, else the CPU), "cpu", "cuda"
  // (device 0) or "cuda:N"; resolved when the model loads.
  std::string device = "auto";
  // on_demand models: unload after this many idle seconds; negative = stay resident until
  // the governor needs the memory (TOML: seconds, "30s"/"5m"/"2h", or "forever").
  double keep_alive_s = -1;

  // Reload compares the running entry with the file's: any difference reloads the model.
  bool operator==(const ModelConfig&) const = default;
};

struct DaemonConfig {
  std::string source_path;  // the file it was read from (absolute, for SIGHUP re-reads)
  ServerConfig server;
  HttpConfig http;
  MetricsConfig metrics;
  EngineConfig engine;
  GovernorConfig governor;
  std::vector<ModelConfig> models;
  size_t max_inputs_per_request = 1024;  // [limits] embed inputs / rerank documents
  size_t max_text_bytes = 1 << 20;       // [limits]
};

// Reads and validates the file at `path`. NOT_FOUND / PERMISSION_DENIED / UNAVAILABLE when
// it cannot be read; otherwise what parse_config returns.
Expected<DaemonConfig> load_config(const std::string& path);

// Validates a whole TOML document. `source_path` is the file it came from: it names the file
// in messages, and relative paths (models' `path`, `server.socket`) resolve against its
// directory (against the current directory when `source_path` is empty). INVALID_ARGUMENT
// with one line per error, sorted by position in the file.
Expected<DaemonConfig> parse_config(std::string_view toml_text, const std::string& source_path);

// Size strings: "512", "16MiB", "8GiB", "1.5GB" (KiB/MiB/GiB/TiB = 1024^n; KB/MB/GB/TB =
// 1000^n; "B" = bytes). Units are case-sensitive; one space may separate number and unit;
// fractions are rounded down to a whole byte.
Expected<uint64_t> parse_size(std::string_view text);

}  // namespace sparkd::daemon
