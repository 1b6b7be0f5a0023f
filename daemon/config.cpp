#include "daemon/config.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include "common/model_name.h"
#include "common/model_reference.h"
#include "engine/backend/placement.h"
#include "engine/backend/quantize.h"
#include "engine/model/model_location.h"

namespace sparkd::daemon {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kUint32Max = std::numeric_limits<uint32_t>::max();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr uint64_t kUint64Max = std::numeric_limits<uint64_t>::max();
// sockaddr_un::sun_path holds the path and its terminating NUL.
constexpr size_t kSocketPathCapacityBytes = sizeof(sockaddr_un{}.sun_path);
// protobuf refuses to parse a message of 2 GiB or more, so a larger frame could never be read.
constexpr uint64_t kMaxFrameBytesLimit = std::numeric_limits<int32_t>::max();

// ---------------------------------------------------------------------------------------
// Errors, collected rather than returned one at a time
// ---------------------------------------------------------------------------------------

struct ConfigError {
  toml::source_index line = 0;
  toml::source_index column = 0;
  std::string text;
};

class ErrorList {
 public:
  void add(const toml::source_region& where, std::string text) {
    errors_.push_back({where.begin.line, where.begin.column, std::move(text)});
  }
  bool empty() const { return errors_.empty(); }

  // One line per error, in the order they appear in the file.
  Status to_status(const std::string& source_path) {
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const ConfigError& a, const ConfigError& b) {
                       return std::pair(a.line, a.column) < std::pair(b.line, b.column);
                     });
    std::ostringstream message;
    message << "invalid configuration file "
            << (source_path.empty() ? std::string("(text)") : source_path) << " (" << errors_.size()
            << (errors_.size() == 1 ? " error):" : " errors):");
    for (const ConfigError& error : errors_) {
      message << "\n" << error.text;
      if (error.line > 0) message << " (line " << error.line << ", column " << error.column << ")";
    }
    return Status(StatusCode::kInvalidArgument, message.str());
  }

 private:
  std::vector<ConfigError> errors_;
};

std::string quote_text(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// "a string", "an integer": what a person would call the TOML type they wrote.
std::string_view type_phrase(toml::node_type type) {
  switch (type) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> previous(b.size() + 1);
  std::vector<size_t> current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

// ---------------------------------------------------------------------------------------
// Sections: a table, its dotted name, and the keys the reader asked for
// ---------------------------------------------------------------------------------------

class Section {
 public:
  // `path` is "" for the document root, "server", "models[2]", ...; `kind` names the section
  // as it is written in the file ("[server]", "[[models]]") for hints about misplaced keys.
  Section(const toml::table* table, std::string path, std::string kind, ErrorList& errors)
      : table_(table), path_(std::move(path)), kind_(std::move(kind)), errors_(&errors) {}

  // The node under `key`, or nullptr when it is absent; `key` becomes a known key.
  const toml::node* get(std::string_view key) {
    known_keys_.emplace_back(key);
    return table_ == nullptr ? nullptr : table_->get(key);
  }

  std::string key_path(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  const std::string& path() const { return path_; }
  const std::string& kind() const { return kind_; }
  const toml::table* table() const { return table_; }
  const std::vector<std::string>& known_keys() const { return known_keys_; }
  ErrorList& errors() { return *errors_; }

  // An error about the value of `key`, at that value's position.
  void error(std::string_view key, const toml::node& node, std::string_view text) {
    errors_->add(node.source(), "`" + key_path(key) + "`: " + std::string(text));
  }
  void type_error(std::string_view key, const toml::node& node, std::string_view expected) {
    error(key, node,
          "expected " + std::string(expected) + ", got " + std::string(type_phrase(node.type())));
  }

 private:
  const toml::table* table_;
  std::string path_;
  std::string kind_;
  ErrorList* errors_;
  std::vector<std::string> known_keys_;
};

// Unknown keys are errors so that a typo never silently leaves a default in place. Reported
// once every section has been read, so a key written under the wrong section can say where
// it belongs.
void report_unknown_keys(const std::vector<Section>& sections, ErrorList& errors) {
  for (const Section& section : sections) {
    if (section.table() == nullptr) continue;
    const std::vector<std::string>& known = section.known_keys();
    for (auto&& [key, node] : *section.table()) {
      const std::string_view name = key.str();
      if (std::find(known.begin(), known.end(), name) != known.end()) continue;
      std::string text = "unknown key `" + section.key_path(name) + "`";
      std::string nearest;
      size_t nearest_distance = 3;  // suggest only close misspellings
      for (const std::string& candidate : known) {
        const size_t distance = edit_distance(name, candidate);
        if (distance < nearest_distance) {
          nearest_distance = distance;
          nearest = candidate;
        }
      }
      if (!nearest.empty()) {
        text += "; did you mean `" + section.key_path(nearest) + "`?";
      } else {
        for (const Section& other : sections) {
          const std::vector<std::string>& other_known = other.known_keys();
          if (other.kind() == section.kind() ||
              std::find(other_known.begin(), other_known.end(), name) == other_known.end()) {
            continue;
          }
          text += "; it belongs in " + other.kind();
          break;
        }
      }
      errors.add(key.source(), std::move(text));
    }
  }
}

// ---------------------------------------------------------------------------------------
// Typed readers: each leaves `out` (the default) untouched when the key is absent or wrong
// ---------------------------------------------------------------------------------------

bool read_bool(Section& section, std::string_view key, bool& out) {
  const toml::node* node = section.get(key);
  if (node == nullptr) return false;
  if (const auto* value = node->as_boolean()) {
    out = value->get();
    return true;
  }
  section.type_error(key, *node, "a boolean (true or false)");
  return false;
}

bool read_string(Section& section, std::string_view key, std::string& out) {
  const toml::node* node = section.get(key);
  if (node == nullptr) return false;
  if (const auto* value = node->as_string()) {
    out = value->get();
    return true;
  }
  section.type_error(key, *node, "a string");
  return false;
}

std::string range_text(int64_t min_value, int64_t max_value) {
  if (max_value == kInt64Max) return "at least " + std::to_string(min_value);
  return "from " + std::to_string(min_value) + " to " + std::to_string(max_value);
}

template <typename Integer>
bool read_integer(Section& section, std::string_view key, int64_t min_value, int64_t max_value,
                  Integer& out) {
  const toml::node* node = section.get(key);
  if (node == nullptr) return false;
  const auto* value = node->as_integer();
  if (value == nullptr) {
    section.type_error(key, *node, "an integer");
    return false;
  }
  const int64_t number = value->get();
  if (number < min_value || number > max_value) {
    section.error(
        key, *node,
        "must be " + range_text(min_value, max_value) + ", got " + std::to_string(number));
    return false;
  }
  out = static_cast<Integer>(number);
  return true;
}

// A byte count: a non-negative integer or a size string such as "16MiB".
template <typename Integer>
bool read_size(Section& section, std::string_view key, uint64_t min_bytes, uint64_t max_bytes,
               Integer& out) {
  const toml::node* node = section.get(key);
  if (node == nullptr) return false;
  uint64_t bytes = 0;
  if (const auto* integer = node->as_integer()) {
    if (integer->get() < 0) {
      section.error(key, *node, "must not be negative, got " + std::to_string(integer->get()));
      return false;
    }
    bytes = static_cast<uint64_t>(integer->get());
  } else if (const auto* text = node->as_string()) {
    Expected<uint64_t> parsed = parse_size(text->get());
    if (!parsed.has_value()) {
      section.error(key, *node, parsed.status().message());
      return false;
    }
    bytes = *parsed;
  } else {
    section.type_error(key, *node,
                       "a size (an integer number of bytes or a string like \"16MiB\")");
    return false;
  }
  if (bytes < min_bytes || bytes > max_bytes) {
    std::string range = max_bytes == kUint64Max ? "at least " + std::to_string(min_bytes) + " bytes"
                                                : "from " + std::to_string(min_bytes) + " to " +
                                                      std::to_string(max_bytes) + " bytes";
    section.error(key, *node, "must be " + range + ", got " + std::to_string(bytes));
    return false;
  }
  out = static_cast<Integer>(bytes);
  return true;
}

// One of a fixed set of strings.
bool read_choice(Section& section, std::string_view key,
                 const std::vector<std::string_view>& choices, std::string& out) {
  std::string text;
  if (!read_string(section, key, text)) return false;
  if (std::find(choices.begin(), choices.end(), text) != choices.end()) {
    out = std::move(text);
    return true;
  }
  std::string listed;
  for (std::string_view choice : choices) {
    if (!listed.empty()) listed += ", ";
    listed += quote_text(choice);
  }
  section.error(key, *section.table()->get(key),
                "must be one of " + listed + ", got " + quote_text(text));
  return false;
}

// ---------------------------------------------------------------------------------------
// Checks of individual values
// ---------------------------------------------------------------------------------------

// Relative paths are relative to the configuration file, not to wherever the daemon was
// started, so `sparkd --config /etc/sparkd/config.toml` means the same from any directory.
std::string resolve_path(const fs::path& config_dir, const std::string& path) {
  return (config_dir / fs::path(path)).lexically_normal().string();
}

// Why `listen` is not "host:port" with an IP literal or localhost host; "" when it is.
std::string listen_address_problem(std::string_view listen) {
  const std::string_view example = " (e.g. \"127.0.0.1:9464\" or \"[::1]:9464\")";
  std::string host;
  std::string_view port;
  if (!listen.empty() && listen.front() == '[') {
    const size_t close = listen.find("]:");
    if (close == std::string_view::npos) {
      return "must be \"[IPv6]:port\", got " + quote_text(listen) + std::string(example);
    }
    host = std::string(listen.substr(1, close - 1));
    port = listen.substr(close + 2);
    in6_addr address{};
    if (inet_pton(AF_INET6, host.c_str(), &address) != 1) {
      return "`" + host + "` is not an IPv6 address" + std::string(example);
    }
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == std::string_view::npos) {
      return "must be \"host:port\", got " + quote_text(listen) + std::string(example);
    }
    host = std::string(listen.substr(0, colon));
    port = listen.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return "an IPv6 host must be in brackets, as in \"[" + host + "]:" + std::string(port) + "\"";
    }
    in_addr address{};
    if (host != "localhost" && inet_pton(AF_INET, host.c_str(), &address) != 1) {
      return "host `" + host + "` must be an IPv4 or IPv6 address or localhost" +
             std::string(example);
    }
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoul(std::string(port)) > 65535) {
    return "port must be a number from 0 to 65535 (0 picks a free port), got " + quote_text(port);
  }
  return "";
}

// ---------------------------------------------------------------------------------------
// Sections of the file
// ---------------------------------------------------------------------------------------

// A named sub-table of the root; nullptr (all defaults) when absent or not a table.
const toml::table* section_table(Section& root, std::string_view name) {
  const toml::node* node = root.get(name);
  if (node == nullptr) return nullptr;
  if (const toml::table* table = node->as_table()) return table;
  root.type_error(name, *node, "a table ([" + std::string(name) + "])");
  return nullptr;
}

void read_socket_mode(Section& section, uint32_t& out) {
  constexpr std::string_view kKey = "socket_mode";
  const toml::node* node = section.get(kKey);
  if (node == nullptr) return;
  uint64_t mode = 0;
  if (const auto* integer = node->as_integer()) {
    // TOML writes octal integers as 0o660; a decimal 660 is almost certainly meant as octal.
    if ((integer->flags() & toml::value_flags::format_as_octal) == toml::value_flags::none) {
      section.error(kKey, *node,
                    "write the mode as a string of octal digits such as \"0660\" (or as 0o660); "
                    "the decimal integer " +
                        std::to_string(integer->get()) + " is ambiguous");
      return;
    }
    if (integer->get() < 0) {
      section.error(kKey, *node, "must not be negative");
      return;
    }
    mode = static_cast<uint64_t>(integer->get());
  } else if (const auto* text = node->as_string()) {
    const std::string& digits = text->get();
    if (digits.empty() || digits.size() > 6 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '7'; })) {
      section.error(kKey, *node,
                    "expected octal digits such as \"0660\", got " + quote_text(digits));
      return;
    }
    mode = std::stoul(digits, nullptr, 8);
  } else {
    section.type_error(kKey, *node, "a string of octal digits such as \"0660\"");
    return;
  }
  if (mode > 0777) {
    std::ostringstream octal;
    octal << std::oct << mode;
    section.error(kKey, *node, "must be at most 0777 (permission bits only), got 0" + octal.str());
    return;
  }
  out = static_cast<uint32_t>(mode);
}

// A duration in seconds: an integer or a float, 0 to kMaxSeconds.
void read_seconds(Section& section, std::string_view key, double& out) {
  constexpr double kMaxSeconds = 1e7;  // ~115 days; any longer is a typo, and ms must fit
  const toml::node* node = section.get(key);
  if (node == nullptr) return;
  const std::optional<double> seconds = node->value<double>();  // integer or float
  if (!node->is_number() || !seconds.has_value()) {
    section.type_error(key, *node, "a number of seconds");
  } else if (!std::isfinite(*seconds) || *seconds < 0 || *seconds > kMaxSeconds) {
    char text[64];
    std::snprintf(text, sizeof(text), "%g", *seconds);
    section.error(key, *node,
                  std::string("must be a number of seconds from 0 to 1e7, got ") + text);
  } else {
    out = *seconds;
  }
}

void read_server(Section& section, const fs::path& config_dir, ServerConfig& server) {
  std::string socket;
  if (read_string(section, "socket", socket)) {
    const toml::node& node = *section.table()->get("socket");
    if (socket.empty()) {
      section.error("socket", node, "must not be empty");
    } else {
      const std::string resolved = resolve_path(config_dir, socket);
      if (resolved.size() >= kSocketPathCapacityBytes) {
        section.error("socket", node,
                      "the socket path " + quote_text(resolved) + " is " +
                          std::to_string(resolved.size()) + " bytes; a Unix socket path must be " +
                          "shorter than " + std::to_string(kSocketPathCapacityBytes) + " bytes");
      } else {
        server.socket_path = resolved;
      }
    }
  } else if (section.table() == nullptr || section.table()->get("socket") == nullptr) {
    server.socket_path = resolve_path(config_dir, server.socket_path);
  }
  read_socket_mode(section, server.socket_mode);
  read_string(section, "socket_group", server.socket_group);
  read_string(section, "admin_group", server.admin_group);
  read_size(section, "max_frame_bytes", 1, kMaxFrameBytesLimit, server.max_frame_bytes);
  read_integer(section, "max_connections", 1, kUint32Max, server.max_connections);
  read_integer(section, "max_inflight_per_connection", 1, kUint32Max,
               server.max_inflight_per_connection);
  read_size(section, "max_write_buffer", 1, kUint64Max, server.max_write_buffer_bytes);
  read_seconds(section, "drain_timeout_s", server.drain_timeout_s);
  read_seconds(section, "frame_timeout_s", server.frame_timeout_s);
  read_seconds(section, "idle_timeout_s", server.idle_timeout_s);
}

void read_limits(Section& section, DaemonConfig& config) {
  read_integer(section, "max_inputs_per_request", 1, kInt64Max, config.max_inputs_per_request);
  read_size(section, "max_text_bytes", 1, kUint64Max, config.max_text_bytes);
}

void read_metrics(Section& section, MetricsConfig& metrics) {
  read_bool(section, "enabled", metrics.enabled);
  std::string listen;
  if (read_string(section, "listen", listen)) {
    const std::string problem = listen_address_problem(listen);
    if (problem.empty()) {
      metrics.listen = listen;
    } else {
      section.error("listen", *section.table()->get("listen"), problem);
    }
  }
}

bool read_string_list(Section& section, std::string_view key, std::vector<std::string>& out) {
  const toml::node* node = section.get(key);
  if (node == nullptr) return false;
  const toml::array* array = node->as_array();
  std::vector<std::string> values;
  if (array != nullptr) {
    for (const toml::node& element : *array) {
      const auto* text = element.as_string();
      if (text == nullptr) {
        array = nullptr;
        break;
      }
      values.push_back(text->get());
    }
  }
  if (array == nullptr) {
    section.type_error(key, *node, "a list of strings");
    return false;
  }
  out = std::move(values);
  return true;
}

// The keys of an api_keys_file: one per line, blank lines and # comments skipped. The file must
// be private to the service: keys readable by other users are keys given away.
std::string read_api_keys(const std::string& path, std::vector<std::string>& keys) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return "cannot read " + quote_text(path) + ": " + std::strerror(errno);
  }
  if ((info.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(info.st_mode & 07777));
    return quote_text(path) + " is readable by group or others (mode " + mode +
           "); make it private to the service (chmod 600)";
  }
  std::ifstream file(path);
  if (!file) return "cannot read " + quote_text(path) + ": " + std::strerror(errno);
  std::string line;
  while (std::getline(file, line)) {
    const size_t start = line.find_first_not_of(" \t\r");
    if (start == std::string::npos || line[start] == '#') continue;
    const size_t end = line.find_last_not_of(" \t\r");
    keys.push_back(line.substr(start, end - start + 1));
  }
  if (keys.empty()) return quote_text(path) + " holds no key";
  return "";
}

void read_http(Section& section, const fs::path& config_dir, HttpConfig& http) {
  http.enabled = section.table() != nullptr;
  read_bool(section, "enabled", http.enabled);
  std::vector<std::string> listen;
  if (read_string_list(section, "listen", listen)) {
    const toml::node& node = *section.table()->get("listen");
    if (listen.empty()) section.error("listen", node, "must list at least one address");
    for (std::string& address : listen) {
      if (address.rfind("unix:", 0) == 0) {
        if (address.size() <= 5 || address[5] != '/') {
          section.error(
              "listen", node,
              "a Unix socket must be \"unix:/ABSOLUTE/PATH\", got " + quote_text(address));
        }
        continue;
      }
      if (const std::string problem = listen_address_problem(address); !problem.empty()) {
        section.error("listen", node, problem);
        continue;
      }
      if (address.rfind("localhost:", 0) == 0) address = "127.0.0.1" + address.substr(9);
    }
    http.listen = std::move(listen);
  }
  if (read_string(section, "api_keys_file", http.api_keys_file) && !http.api_keys_file.empty()) {
    http.api_keys_file = resolve_path(config_dir, http.api_keys_file);
    if (const std::string problem = read_api_keys(http.api_keys_file, http.api_keys);
        !problem.empty()) {
      section.error("api_keys_file", *section.table()->get("api_keys_file"), problem);
    }
  }
  read_string_list(section, "cors_allow_origins", http.cors_allow_origins);
  read_size(section, "max_body_bytes", 1, kUint64Max, http.max_body_bytes);
  read_size(section, "max_header_bytes", 1024, kUint64Max, http.max_header_bytes);
  read_integer(section, "max_connections", 1, kUint32Max, http.max_connections);
  read_seconds(section, "request_timeout_s", http.request_timeout_s);
  read_seconds(section, "idle_timeout_s", http.idle_timeout_s);
}

void read_engine(Section& section, EngineConfig& engine) {
  read_integer(section, "threads", 0, kInt32Max, engine.threads);
}

void read_governor(Section& section, GovernorConfig& governor) {
  const toml::node* budget = section.get("budget");
  if (budget != nullptr) {
    const auto* text = budget->as_string();
    if (text != nullptr && text->get() == "auto") {
      governor.budget_bytes = 0;
    } else if (budget->is_integer() || budget->is_string()) {
      // A second reader over the same table, for read_size's messages; "budget" is already
      // a known key of `section`.
      Section budget_reader(section.table(), section.path(), section.kind(), section.errors());
      uint64_t bytes = 0;
      if (read_size(budget_reader, "budget", 0, kUint64Max, bytes)) {
        if (bytes == 0) {
          // 0 is how the struct spells "auto", but written in the file it is more likely a
          // mistake than a wish for the machine's whole memory.
          section.error("budget", *budget,
                        "a budget of 0 bytes could hold nothing; write \"auto\" to use what "
                        "the machine can give");
        } else {
          governor.budget_bytes = bytes;
        }
      }
    } else {
      section.type_error("budget", *budget, "\"auto\" or a size such as \"100GiB\"");
    }
  }
  read_size(section, "os_reserve", 0, kUint64Max, governor.os_reserve_bytes);
  read_seconds(section, "memory_wait_s", governor.memory_wait_s);
  read_string(section, "meminfo", governor.meminfo_path);
  read_string(section, "pressure", governor.pressure_path);
}

// keep_alive: seconds (a number), a duration string ("90s", "5m", "2h"), or "forever".
void read_keep_alive(Section& section, double& out) {
  const toml::node* node = section.get("keep_alive");
  if (node == nullptr) return;
  constexpr const char* kExpected = "seconds, a duration such as \"5m\", or \"forever\"";
  if (node->is_number()) {
    read_seconds(section, "keep_alive", out);
    return;
  }
  const auto* text = node->as_string();
  if (text == nullptr) {
    section.type_error("keep_alive", *node, kExpected);
    return;
  }
  const std::string value = text->get();
  if (value == "forever") {
    out = -1;
    return;
  }
  double number = 0;
  const char* begin = value.data();
  const char* end = value.data() + value.size();
  const auto [rest, error] = std::from_chars(begin, end, number);
  const std::string unit(rest, end);
  const double scale = unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : 0;
  if (error != std::errc() || rest == begin || scale == 0 || number < 0 || number * scale > 1e7) {
    section.error("keep_alive", *node,
                  std::string("must be ") + kExpected + " (up to 1e7 s), got " + quote_text(value));
    return;
  }
  out = number * scale;
}

void read_model(Section& section, const fs::path& config_dir, ModelConfig& model) {
  const toml::source_region& where = section.table()->source();
  if (read_string(section, "name", model.name)) {
    const toml::node& node = *section.table()->get("name");
    if (!is_valid_model_name(model.name)) {
      section.error("name", node,
                    "must be " + std::string(kModelNameRule) + ", got " + quote_text(model.name));
    }
  } else if (section.table()->get("name") == nullptr) {
    section.errors().add(where, "`" + section.path() + "`: missing required key `name`");
  }

  std::string path;
  if (read_string(section, "path", path)) {
    if (path.empty()) {
      section.error("path", *section.table()->get("path"), "must not be empty");
    } else {
      // Store references (ollama:NAME, hf:ORG/NAME) are not paths.
      model.path = is_store_reference(path) ? path : resolve_path(config_dir, path);
    }
  } else if (section.table()->get("path") == nullptr) {
    section.errors().add(where, "`" + section.path() +
                                    "`: missing required key `path` (the model directory, .gguf "
                                    "file, ollama:NAME[:TAG] or hf:ORG/NAME)");
  }

  std::string residency;
  if (read_choice(section, "residency", {"pinned", "on_demand"}, residency)) {
    model.residency = residency == "pinned" ? Residency::kPinned : Residency::kOnDemand;
  }
  read_integer(section, "priority", std::numeric_limits<int32_t>::min(), kInt32Max, model.priority);
  read_integer(section, "max_batch_tokens", 1, kInt32Max, model.max_batch_tokens);
  read_integer(section, "max_batch_inputs", 1, kInt32Max, model.max_batch_inputs);
  read_integer(section, "max_seqs", 1, kInt32Max, model.max_seqs);

  const toml::node* block = section.get("block_tokens");
  if (block != nullptr) {
    const auto* integer = block->as_integer();
    const std::vector<int64_t> allowed = {8, 16, 32, 64, 128};
    if (integer == nullptr) {
      section.type_error("block_tokens", *block, "an integer");
    } else if (std::find(allowed.begin(), allowed.end(), integer->get()) == allowed.end()) {
      section.error("block_tokens", *block,
                    "must be one of 8, 16, 32, 64, 128, got " + std::to_string(integer->get()));
    } else {
      model.block_tokens = static_cast<int32_t>(integer->get());
    }
  }

  const bool kv_max_ok = read_size(section, "kv_max", 0, kUint64Max, model.kv_max_bytes);
  const bool kv_min_ok = read_size(section, "kv_min", 0, kUint64Max, model.kv_min_bytes);
  const toml::node* kv_min_node = section.table()->get("kv_min");
  const toml::node* kv_max_node = section.table()->get("kv_max");
  const bool both_valid =
      (kv_min_node == nullptr || kv_min_ok) && (kv_max_node == nullptr || kv_max_ok);
  if (both_valid && model.kv_min_bytes > model.kv_max_bytes) {
    const toml::node& node = kv_min_node != nullptr ? *kv_min_node : *kv_max_node;
    section.errors().add(node.source(), "`" + section.key_path("kv_min") + "` (" +
                                            std::to_string(model.kv_min_bytes) +
                                            " bytes) must not exceed `" +
                                            section.key_path("kv_max") + "` (" +
                                            std::to_string(model.kv_max_bytes) + " bytes)");
  }

  read_bool(section, "prefix_caching", model.prefix_caching);
  read_integer(section, "default_max_tokens", 1, kUint32Max, model.default_max_tokens);
  read_choice(section, "chat_template", {"", "chatml", "llama3", "mistral"}, model.chat_template);
  if (read_string(section, "quantize", model.quantize) && !model.quantize.empty() &&
      !quant::quantize_target(model.quantize)) {
    section.error("quantize", *section.table()->get("quantize"),
                  "must be \"\" (as stored) or one of " + quant::quantize_target_names() +
                      ", got " + quote_text(model.quantize));
  }
  if (read_string(section, "device", model.device)) {
    // Only the syntax here ("auto" would look for devices): whether the device exists is the
    // load's question.
    if (model.device.empty()) model.device = "auto";
    if (auto placement = model.device == "auto" ? Expected<Placement>(Placement{})
                                                : parse_placement(model.device);
        !placement) {
      section.error("device", *section.table()->get("device"), placement.status().message());
    }
  }
  read_keep_alive(section, model.keep_alive_s);
}

void read_models(Section& root, const fs::path& config_dir, std::vector<Section>& sections,
                 DaemonConfig& config) {
  const toml::node* node = root.get("models");
  if (node == nullptr) return;
  const toml::array* array = node->as_array();
  if (array == nullptr) {
    root.type_error("models", *node, "an array of tables ([[models]])");
    return;
  }
  // Where each name was first defined, to point at both ends of a duplicate.
  std::vector<std::pair<std::string, std::string>> first_definitions;
  for (size_t index = 0; index < array->size(); ++index) {
    const toml::node& element = *array->get(index);
    const std::string path = "models[" + std::to_string(index) + "]";
    const toml::table* table = element.as_table();
    if (table == nullptr) {
      root.errors().add(element.source(), "`" + path + "`: expected a table ([[models]]), got " +
                                              std::string(type_phrase(element.type())));
      continue;
    }
    Section section(table, path, "[[models]]", root.errors());
    ModelConfig model;
    read_model(section, config_dir, model);
    if (!model.name.empty()) {
      const auto first = std::find_if(first_definitions.begin(), first_definitions.end(),
                                      [&](const auto& entry) { return entry.first == model.name; });
      if (first != first_definitions.end()) {
        section.error("name", *table->get("name"),
                      "duplicate model name " + quote_text(model.name) + " (also `" +
                          first->second + ".name`); names must be unique");
      } else {
        first_definitions.emplace_back(model.name, path);
      }
    }
    config.models.push_back(std::move(model));
    sections.push_back(std::move(section));
  }
}

fs::path config_directory(const std::string& source_path) {
  fs::path directory = fs::path(source_path).parent_path();
  if (directory.empty()) directory = ".";
  std::error_code error;
  fs::path absolute = fs::absolute(directory, error);
  return error ? directory : absolute.lexically_normal();
}

Expected<DaemonConfig> parse_config_or_throw(std::string_view toml_text,
                                             const std::string& source_path) {
  DaemonConfig config;
  if (!source_path.empty()) {
    std::error_code error;
    fs::path absolute = fs::absolute(source_path, error);
    config.source_path = error ? source_path : absolute.lexically_normal().string();
  }

  toml::table document;
  try {
    document = toml::parse(toml_text, source_path);
  } catch (const toml::parse_error& error) {
    ErrorList errors;
    errors.add(error.source(), "TOML syntax error: " + std::string(error.description()));
    return errors.to_status(source_path);
  }

  const fs::path config_dir = config_directory(source_path);
  ErrorList errors;
  std::vector<Section> sections;
  Section root(&document, "", "the top level", errors);

  Section server(section_table(root, "server"), "server", "[server]", errors);
  read_server(server, config_dir, config.server);
  Section http(section_table(root, "http"), "http", "[http]", errors);
  read_http(http, config_dir, config.http);
  Section limits(section_table(root, "limits"), "limits", "[limits]", errors);
  read_limits(limits, config);
  Section metrics(section_table(root, "metrics"), "metrics", "[metrics]", errors);
  read_metrics(metrics, config.metrics);
  Section engine(section_table(root, "engine"), "engine", "[engine]", errors);
  read_engine(engine, config.engine);
  Section governor(section_table(root, "governor"), "governor", "[governor]", errors);
  read_governor(governor, config.governor);
  read_models(root, config_dir, sections, config);

  sections.push_back(std::move(root));
  sections.push_back(std::move(server));
  sections.push_back(std::move(http));
  sections.push_back(std::move(limits));
  sections.push_back(std::move(metrics));
  sections.push_back(std::move(engine));
  sections.push_back(std::move(governor));
  report_unknown_keys(sections, errors);

  if (!errors.empty()) return errors.to_status(source_path);
  return config;
}

struct SizeUnit {
  std::string_view name;
  uint64_t bytes;
};

constexpr SizeUnit kSizeUnits[] = {
    {"B", 1},
    {"KB", 1000ull},
    {"MB", 1000ull * 1000},
    {"GB", 1000ull * 1000 * 1000},
    {"TB", 1000ull * 1000 * 1000 * 1000},
    {"KiB", 1ull << 10},
    {"MiB", 1ull << 20},
    {"GiB", 1ull << 30},
    {"TiB", 1ull << 40},
};

Status size_error(std::string_view text, std::string_view why) {
  return Status(StatusCode::kInvalidArgument,
                "invalid size " + quote_text(text) + ": " + std::string(why));
}

}  // namespace

std::string_view residency_name(Residency residency) {
  return residency == Residency::kPinned ? "pinned" : "on_demand";
}

Expected<uint64_t> parse_size(std::string_view text) {
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  std::string_view rest = text;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  if (rest.empty()) return size_error(text, "it is empty; write e.g. \"512\", \"16MiB\", \"8GiB\"");
  if (rest.front() == '-') return size_error(text, "sizes cannot be negative");

  size_t whole_digits = 0;
  while (whole_digits < rest.size() && is_digit(rest[whole_digits])) ++whole_digits;
  if (whole_digits == 0) {
    return size_error(text, "expected a number, optionally followed by a unit (\"16MiB\")");
  }
  const std::string_view whole = rest.substr(0, whole_digits);
  rest.remove_prefix(whole_digits);
  std::string_view fraction;
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    size_t fraction_digits = 0;
    while (fraction_digits < rest.size() && is_digit(rest[fraction_digits])) ++fraction_digits;
    if (fraction_digits == 0) return size_error(text, "expected digits after the decimal point");
    fraction = rest.substr(0, fraction_digits);
    rest.remove_prefix(fraction_digits);
  }
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);

  uint64_t unit_bytes = 0;
  if (rest.empty()) {
    unit_bytes = 1;
  } else {
    for (const SizeUnit& unit : kSizeUnits) {
      if (unit.name == rest) unit_bytes = unit.bytes;
    }
  }
  if (unit_bytes == 0) {
    return size_error(text, "unknown unit `" + std::string(rest) +
                                "`; use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, "
                                "TiB (powers of 1024); units are case-sensitive");
  }
  if (!fraction.empty() && unit_bytes == 1) {
    return size_error(text, "a number of bytes must be whole");
  }

  const Status too_large = size_error(text, "it does not fit in 64 bits");
  uint64_t whole_value = 0;
  for (char digit : whole) {
    const uint64_t digit_value = static_cast<uint64_t>(digit - '0');
    if (whole_value > (kUint64Max - digit_value) / 10) return too_large;
    whole_value = whole_value * 10 + digit_value;
  }
  if (whole_value > kUint64Max / unit_bytes) return too_large;
  uint64_t bytes = whole_value * unit_bytes;

  if (!fraction.empty()) {
    // 18 digits fit in 64 bits; more cannot change a whole byte count of any unit above.
    const std::string_view significant = fraction.substr(0, 18);
    uint64_t numerator = 0;
    uint64_t denominator = 1;
    for (char digit : significant) {
      numerator = numerator * 10 + static_cast<uint64_t>(digit - '0');
      denominator *= 10;
    }
    // long double holds 64-bit integers exactly; the product's rounding is far below a byte.
    const long double fraction_bytes = static_cast<long double>(numerator) *
                                       static_cast<long double>(unit_bytes) /
                                       static_cast<long double>(denominator);
    const uint64_t extra = static_cast<uint64_t>(std::floor(fraction_bytes));
    if (extra > kUint64Max - bytes) return too_large;
    bytes += extra;
  }
  return bytes;
}

Expected<DaemonConfig> parse_config(std::string_view toml_text, const std::string& source_path) {
  // A reload must never take the daemon down: whatever goes wrong becomes an error value.
  try {
    return parse_config_or_throw(toml_text, source_path);
  } catch (const std::exception& error) {
    return Status(StatusCode::kInternal,
                  "reading configuration " + source_path + " failed: " + error.what());
  }
}

Expected<DaemonConfig> load_config(const std::string& path) {
  try {
    std::error_code ignored;
    if (fs::is_directory(path, ignored)) {
      return Status(StatusCode::kInvalidArgument,
                    "configuration file " + path + " is a directory; name the .toml file");
    }
    std::ifstream file(path, std::ios::binary);
    if (!file) {
      const int error_number = errno;
      const std::string reason =
          "cannot read configuration file " + path + ": " + std::strerror(error_number);
      if (error_number == ENOENT) return Status(StatusCode::kNotFound, reason);
      if (error_number == EACCES) return Status(StatusCode::kPermissionDenied, reason);
      return Status(StatusCode::kUnavailable, reason);
    }
    std::ostringstream contents;
    contents << file.rdbuf();
    if (file.bad()) {
      return Status(StatusCode::kUnavailable,
                    "reading configuration file " + path + " failed: " + std::strerror(errno));
    }
    return parse_config(contents.str(), path);
  } catch (const std::exception& error) {
    return Status(StatusCode::kInternal,
                  "reading configuration file " + path + " failed: " + error.what());
  }
}

}  // namespace sparkd::daemon
