// Every caller learns what happened: each error path of the protocol, driven against the real
// daemon, must reach the caller with the daemon's own reason, through the C++ client, sparkctl
// and the Python client alike. Also: the drain, idle and frame timeouts, the full range of
// max_tokens, and admin loads as first-class calls.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <future>
#include <nlohmann/json.hpp>

#include "api/protocol/frame.h"
#include "api/protocol/status_codes.h"
#include "engine/backend/placement.h"
#include "tests/integration/daemon_test_helpers.h"
#include "tests/support/daemon_process.h"
#include "tests/support/model_copy.h"
#include "tests/support/run_command.h"

namespace {

using namespace sparkd;
using namespace sparkd::testing;
using Catch::Contains;
using Catch::StartsWith;
using nlohmann::json;

// A header announcing `length` bytes.
std::string length_prefix(uint32_t length) {
  std::string bytes(4, '\0');
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return bytes;
}

std::string framed(const std::string& payload) {
  return length_prefix(static_cast<uint32_t>(payload.size())) + payload;
}

// What a program printed on stdout and stderr together, and how it exited.
struct Output {
  int exit_code = -1;
  std::string text;
};

Output run_merged(const std::string& command, const std::string& stdin_text = "") {
  const RunResult run = run_command(command + " 2>&1", stdin_text);
  Output output{run.exit_code, ""};
  for (const std::string& line : run.lines) output.text += line + "\n";
  return output;
}

std::string sparkctl(const DaemonProcess& daemon) {
  return std::string(SPARKCTL_BINARY) + " --socket " + daemon.socket_path() + " ";
}

// The one line error_paths.py prints for `path`: "CODE: message" or "OK ...".
std::string python_error_path(const DaemonProcess& daemon, const std::string& path) {
  const Output out =
      run_merged("/usr/bin/python3 " + std::string(SPARKD_SOURCE_DIR) +
                 "/clients/python/integration/error_paths.py " + daemon.socket_path() + " " + path +
                 " " + std::to_string(daemon.pid()));
  INFO(out.text);
  REQUIRE(out.exit_code == 0);
  return out.text.substr(0, out.text.find('\n'));
}

v1::Request health_request() {
  v1::Request request;
  request.mutable_health();
  return request;
}

v1::Request long_stream(uint64_t id) {
  v1::Request request = generate_request("gen", "keep going", 1'000'000, /*stream=*/true);
  request.mutable_generate()->set_ignore_eos(true);
  request.set_id(id);
  return request;
}

// Reads responses until the final one for `id`; fails the test on a transport error.
std::vector<v1::Response> responses_until_final(api::Client& client, uint64_t id) {
  std::vector<v1::Response> responses;
  for (;;) {
    auto response = client.receive(std::chrono::minutes(2));
    INFO((response ? "" : response.status().message()));
    REQUIRE(response.has_value());
    if (response->id() != id) continue;
    responses.push_back(*response);
    if (response->final()) return responses;
  }
}

// The config of the error-path tests: small frames, few connections, a short frame timeout.
std::string strict_config(const std::filesystem::path& dir) {
  return fixture_config(dir,
                        "max_frame_bytes = \"64KiB\"\nmax_connections = 3\n"
                        "frame_timeout_s = 0.5\n");
}

// The daemon's model list, by name.
std::map<std::string, v1::ModelInfo> model_list(api::Client& client) {
  v1::Request request;
  request.mutable_list_models();
  std::map<std::string, v1::ModelInfo> models;
  const v1::Response response = call_once(client, request);
  for (const v1::ModelInfo& model : response.list_models().models()) {
    models[model.name()] = model;
  }
  return models;
}

}  // namespace

TEST_CASE("Daemon: every error path reaches each client with the daemon's own reason",
          "[daemon][errors]") {
  DaemonProcess daemon(strict_config);

  SECTION("an unparseable frame: its error carries the id that could be read") {
    api::Client client = daemon.connect();
    // id 8, then a tag of wire type 7, which protobuf does not have.
    REQUIRE(client.send_bytes(framed(std::string("\x08\x08\x0f", 3))).is_ok());
    auto response = client.receive();
    REQUIRE(response.has_value());
    CHECK(response->id() == 8);
    CHECK(response->error().code() == v1::INVALID_ARGUMENT);
    CHECK_THAT(response->error().message(),
               StartsWith("the frame is not a sparkd.v1.Request: ") && Contains("wire type 7"));
    CHECK(error_code(call_once(client, health_request())) == v1::OK);  // the connection goes on

    CHECK_THAT(python_error_path(daemon, "unparseable"),
               StartsWith("INVALID_ARGUMENT: the frame is not a sparkd.v1.Request: ") &&
                   Contains("wire type 7"));
  }

  SECTION("an unknown field: INVALID_ARGUMENT with the request's id") {
    api::Client client = daemon.connect();
    v1::Request request = health_request();
    request.set_id(8);
    REQUIRE(client.send_bytes(framed(request.SerializeAsString() + "\x98\x06\x01")).is_ok());
    auto response = client.receive();
    REQUIRE(response.has_value());
    CHECK(response->id() == 8);
    CHECK(response->error().code() == v1::INVALID_ARGUMENT);
    CHECK_THAT(response->error().message(), StartsWith("unknown field 99 in sparkd.v1.Request"));

    CHECK_THAT(python_error_path(daemon, "unknown_field"),
               StartsWith("INVALID_ARGUMENT: unknown field 99 in sparkd.v1.Request"));
  }

  SECTION("a frame over max_frame_bytes: the reason, then the connection closes") {
    const std::string big(100'000, 'x');
    const std::string reason_start = "RESOURCE_EXHAUSTED: frame of ";
    const std::string reason_end = " bytes exceeds max_frame_bytes 65536";

    api::Client client = daemon.connect();
    auto responses = client.call(embed_request("embed", {big}));
    REQUIRE(responses.has_value());
    const v1::Response& refusal = responses->back();
    CHECK(refusal.id() == 0);
    CHECK(refusal.error().code() == v1::RESOURCE_EXHAUSTED);
    CHECK_THAT("RESOURCE_EXHAUSTED: " + refusal.error().message(),
               StartsWith(reason_start) && Contains(reason_end));

    const Output cli = run_merged(sparkctl(daemon) + "embed embed -", big + "\n");
    INFO(cli.text);
    CHECK(cli.exit_code == 1);
    CHECK_THAT(cli.text, StartsWith("sparkctl: " + reason_start) && Contains(reason_end));

    CHECK_THAT(python_error_path(daemon, "over_limit"),
               StartsWith(reason_start) && Contains(reason_end));
  }

  SECTION("too many connections: the one over the limit hears why") {
    std::vector<api::Client> holders;
    for (int i = 0; i < 3; ++i) {
      holders.push_back(daemon.connect());
      REQUIRE(error_code(call_once(holders.back(), health_request())) == v1::OK);
    }
    const std::string reason =
        "RESOURCE_EXHAUSTED: sparkd already serves 3 connections (server.max_connections)";

    api::Client extra = daemon.connect();
    auto responses = extra.call(health_request());
    REQUIRE(responses.has_value());
    CHECK(responses->back().id() == 0);
    CHECK_THAT("RESOURCE_EXHAUSTED: " + responses->back().error().message(), StartsWith(reason));

    const Output cli = run_merged(sparkctl(daemon) + "health");
    INFO(cli.text);
    CHECK(cli.exit_code == 1);
    CHECK_THAT(cli.text, StartsWith("sparkctl: " + reason));

    CHECK_THAT(python_error_path(daemon, "too_many_connections"), StartsWith(reason));

    // A slot that frees up is served again.
    holders.pop_back();
    bool served = false;
    for (int attempt = 0; attempt < 200 && !served; ++attempt) {
      api::Client again = daemon.connect();
      auto answer = again.call(health_request());
      served = answer && answer->back().id() != 0 && error_code(answer->back()) == v1::OK;
      if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(served);
  }

  SECTION("a frame not completed in time closes its connection; others are served") {
    const std::string reason =
        "DEADLINE_EXCEEDED: closing the connection: a frame was started but not completed "
        "within 0.5 s (server.frame_timeout_s)";
    api::Client stalled_a = daemon.connect();
    api::Client stalled_b = daemon.connect();
    REQUIRE(stalled_a.send_bytes(length_prefix(100) + "1234567").is_ok());
    REQUIRE(stalled_b.send_bytes(length_prefix(100) + "12").is_ok());
    {
      api::Client served = daemon.connect();  // the third and last slot
      CHECK(error_code(call_once(served, health_request())) == v1::OK);
    }
    for (api::Client* stalled : {&stalled_a, &stalled_b}) {
      auto closing = stalled->receive(std::chrono::seconds(30));
      REQUIRE(closing.has_value());
      CHECK(closing->id() == 0);
      CHECK_THAT(status_code_name(api::from_proto_code(closing->error().code())) +
                     std::string(": ") + closing->error().message(),
                 StartsWith(reason));
      CHECK(stalled->receive(std::chrono::seconds(30)).status().code() ==
            StatusCode::kUnavailable);  // closed
    }
    CHECK_THAT(stalled_a.connection_error()->error().message(),
               Contains("; 11 bytes of it arrived"));  // header included
    // Their slots are free again: all three can be used.
    std::vector<api::Client> three;
    for (int i = 0; i < 3; ++i) {
      three.push_back(daemon.connect());
      CHECK(error_code(call_once(three.back(), health_request())) == v1::OK);
    }
    three.clear();

    CHECK_THAT(python_error_path(daemon, "half_frame"), StartsWith(reason));
  }

  SECTION("a duplicate id is refused without ending the request in flight under it") {
    // Only a hand-made client can send one: sparkctl and the Python client choose the ids.
    api::Client client = daemon.connect();
    v1::Request generate = generate_request("gen", "the first of two", 500);
    generate.mutable_generate()->set_ignore_eos(true);
    generate.set_id(5);
    REQUIRE(client.send(generate).is_ok());
    // Whatever else a second request with id 5 is (valid, invalid, a Cancel, not even
    // parseable), its answer must not look like the end of request 5.
    v1::Request duplicate = health_request();
    duplicate.set_id(5);
    REQUIRE(client.send(duplicate).is_ok());
    v1::Request invalid = embed_request("embed", {});
    invalid.set_id(5);
    REQUIRE(client.send(invalid).is_ok());
    v1::Request cancel;
    cancel.set_id(5);
    cancel.mutable_cancel()->set_target_id(5);
    REQUIRE(client.send(cancel).is_ok());
    REQUIRE(client.send_bytes(framed(std::string("\x08\x05\x0f", 3))).is_ok());
    const std::vector<v1::Response> responses = responses_until_final(client, 5);
    REQUIRE(responses.size() == 5);
    for (size_t i = 0; i < 4; ++i) {
      INFO(i);
      CHECK_FALSE(responses[i].final());
      CHECK(responses[i].error().code() == v1::ALREADY_EXISTS);
      CHECK_THAT(responses[i].error().message(),
                 StartsWith("request id 5 is already in flight on this connection"));
    }
    CHECK(error_code(responses[4]) == v1::OK);  // neither cancelled nor refused
    CHECK(responses[4].generate().token_ids_size() == 500);
  }

  SECTION("frames sent back to back for longer than the frame timeout are all served") {
    // Every write ends in the middle of the next frame, so the daemon nearly always holds a
    // partial frame; each frame still completes within the timeout and nothing is closed.
    api::Client client = daemon.connect();
    std::vector<std::string> frames;
    for (uint64_t id = 1; id <= 21; ++id) {
      v1::Request request = health_request();
      request.set_id(id);
      frames.push_back(api::encode_frame(request));
    }
    // Write k: the second half of frame k, then the first half of frame k + 1.
    std::string pending;
    for (const std::string& frame : frames) {
      const size_t half = frame.size() / 2;
      REQUIRE(client.send_bytes(pending + frame.substr(0, half)).is_ok());
      pending = frame.substr(half);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // 2 s in all: 4 timeouts
    }
    REQUIRE(client.send_bytes(pending).is_ok());
    for (int i = 1; i <= 21; ++i) {
      auto response = client.receive(std::chrono::seconds(30));
      REQUIRE(response.has_value());
      CHECK(response->id() != 0);
      CHECK(error_code(*response) == v1::OK);
    }
  }

  SECTION("when the daemon closes a connection, what ran on it stops and its reason is last") {
    api::Client client = daemon.connect();
    REQUIRE(client.send(long_stream(1)).is_ok());
    REQUIRE(client.receive(std::chrono::minutes(1)).has_value());  // it is running
    REQUIRE(client.send_bytes(length_prefix(1u << 20)).is_ok());   // over max_frame_bytes
    std::vector<v1::Response> after;
    for (;;) {
      auto response = client.receive(std::chrono::seconds(30));
      if (!response) break;  // closed
      after.push_back(*response);
    }
    REQUIRE_FALSE(after.empty());
    CHECK(after.back().id() == 0);  // nothing is written after the reason
    CHECK(after.back().error().code() == v1::RESOURCE_EXHAUSTED);
    api::Client watcher = daemon.connect();
    CHECK(wait_kv_released(watcher, "gen"));
  }
}

TEST_CASE("Daemon: at the drain timeout, each client's stream ends with CANCELLED",
          "[daemon][errors]") {
  auto config = [](const std::filesystem::path& dir) {
    std::string text = fixture_config(dir);
    const std::string drain = "drain_timeout_s = 60";
    text.replace(text.find(drain), drain.size(), "drain_timeout_s = 0");
    // KV for the whole 40960-token context: the stream runs for seconds, not to a KV limit.
    const std::string kv = "kv_max = \"16MiB\"";
    return text.replace(text.find(kv), kv.size(), "kv_max = \"64MiB\"");
  };
  const std::string reason =
      "CANCELLED: sparkd is shutting down: the drain timeout (server.drain_timeout_s) ended this "
      "request before it finished";

  SECTION("C++ client") {
    DaemonProcess daemon(config);
    api::Client client = daemon.connect();
    REQUIRE(client.send(long_stream(3)).is_ok());
    auto first = client.receive(std::chrono::minutes(1));
    REQUIRE(first.has_value());
    REQUIRE_FALSE(first->final());
    daemon.signal(SIGTERM);
    const std::vector<v1::Response> rest = responses_until_final(client, 3);
    const v1::Response& last = rest.back();
    CHECK(last.error().code() == v1::CANCELLED);
    CHECK(std::string("CANCELLED: ") + last.error().message() == reason);
    CHECK(daemon.wait_exit() == 0);
  }
  SECTION("sparkctl") {
    DaemonProcess daemon(config);
    auto generation = std::async(std::launch::async, [&] {
      return run_merged(sparkctl(daemon) +
                        "generate gen 'keep going' --max-tokens 1000000 --ignore-eos --no-stream");
    });
    // SIGTERM once the generation is running.
    api::Client watcher = daemon.connect();
    REQUIRE(wait_for_model_status(watcher, "gen",
                                  [](const v1::ModelStatus& m) { return m.running() > 0; }));
    daemon.signal(SIGTERM);
    const Output cli = generation.get();
    INFO(cli.text);
    CHECK(cli.exit_code == 1);
    CHECK_THAT(cli.text, Contains("sparkctl: " + reason));
    CHECK(daemon.wait_exit() == 0);
  }
  SECTION("Python client") {
    DaemonProcess daemon(config);
    CHECK(python_error_path(daemon, "drain") == reason);
    CHECK(daemon.wait_exit() == 0);
  }
}

TEST_CASE("Daemon: while it drains, Health says so and Status and Cancel are answered",
          "[daemon][errors]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });  // 60 s drain
  api::Client client = daemon.connect();
  REQUIRE(client.send(long_stream(100)).is_ok());  // an id call() will not pick
  REQUIRE(client.receive(std::chrono::minutes(1)).has_value());
  daemon.signal(SIGTERM);
  REQUIRE(daemon.wait_for_log("draining"));

  const v1::Response health = call_once(client, health_request());
  CHECK(health.health().status() == "draining");
  CHECK_FALSE(health.health().ready());
  CHECK_THAT(health.health().reason(), Contains("shutting down"));
  v1::Request status;
  status.mutable_status();
  CHECK(error_code(call_once(client, status)) == v1::OK);
  const v1::Response refused = call_once(client, embed_request("embed", {"too late"}));
  CHECK(error_code(refused) == v1::UNAVAILABLE);
  CHECK_THAT(refused.error().message(), Contains("shutting down"));

  v1::Request cancel;
  cancel.mutable_cancel()->set_target_id(100);
  cancel.set_id(101);
  REQUIRE(client.send(cancel).is_ok());
  CHECK(responses_until_final(client, 101).back().cancel().cancelled());
  CHECK(responses_until_final(client, 100).back().error().code() == v1::CANCELLED);
  CHECK(daemon.wait_exit() == 0);
}

TEST_CASE("Daemon: an idle connection is closed with its reason, a busy one is not",
          "[daemon][errors]") {
  DaemonProcess daemon(
      [](const auto& dir) { return fixture_config(dir, "idle_timeout_s = 0.3\n"); });
  api::Client idle = daemon.connect();
  CHECK(error_code(call_once(idle, health_request())) == v1::OK);
  api::Client busy = daemon.connect();
  REQUIRE(busy.send(long_stream(1)).is_ok());

  auto closing = idle.receive(std::chrono::seconds(30));
  REQUIRE(closing.has_value());
  CHECK(closing->id() == 0);
  CHECK(closing->error().code() == v1::UNAVAILABLE);
  CHECK(closing->error().message() ==
        "closing the connection: idle for 0.3 s (server.idle_timeout_s); connect again to send "
        "more");
  CHECK(idle.receive(std::chrono::seconds(30)).status().code() == StatusCode::kUnavailable);

  // Three idle timeouts later, the connection with a request in flight still works.
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  v1::Request cancel;
  cancel.mutable_cancel()->set_target_id(1);
  cancel.set_id(2);
  REQUIRE(busy.send(cancel).is_ok());
  CHECK(responses_until_final(busy, 2).back().cancel().cancelled());
  CHECK(responses_until_final(busy, 1).back().error().code() == v1::CANCELLED);

  // The Python client reopens a connection the daemon closed as idle.
  CHECK(python_error_path(daemon, "idle_reconnect") == "OK reconnected, ready=True");
  CHECK(metric_value(http_get(daemon.metrics_port(), "/metrics"),
                     R"(sparkd_connections_closed_total{reason="idle"})") >= 2);
}

TEST_CASE("Daemon: max_tokens takes the whole uint32 range", "[daemon][errors]") {
  // A 64-token context, so "as many as fit" ends soon.
  ModelCopy short_context("qwen3_f32");
  short_context.edit_json("config.json",
                          [](json& config) { config["max_position_embeddings"] = 64; });
  DaemonProcess daemon([&](const auto& dir) {
    return fixture_config(
        dir, "", "[[models]]\nname = \"short\"\npath = \"" + short_context.dir().string() + "\"\n");
  });
  api::Client client = daemon.connect();
  for (const uint32_t max_tokens : {4294967295u, 2147483648u, 2147483647u}) {
    INFO(max_tokens);
    v1::Request request = generate_request("short", "count to the end", max_tokens);
    request.mutable_generate()->set_ignore_eos(true);
    const v1::Response response = call_once(client, request);
    REQUIRE(error_code(response) == v1::OK);
    CHECK(response.generate().finish_reason() == "length");
    CHECK(response.usage().prompt_tokens() + response.usage().completion_tokens() == 64);
  }
  const Output cli = run_merged(sparkctl(daemon) +
                                "--json generate short 'count to the end' --max-tokens "
                                "4294967295 --ignore-eos");
  INFO(cli.text);
  CHECK(cli.exit_code == 0);
  CHECK(json::parse(cli.text)["finish_reason"] == "length");
}

TEST_CASE("Daemon: each model runs where its device says, and a missing GPU gives its reason",
          "[daemon][errors][device]") {
  const std::string xlmr = fixture_model_dir("xlmr_embed");
  DaemonProcess daemon([&](const auto& dir) {
    return fixture_config(dir, "",
                          "[[models]]\nname = \"on_cpu\"\ndevice = \"cpu\"\npath = \"" + xlmr +
                              "\"\n[[models]]\nname = \"on_gpu9\"\ndevice = \"cuda:9\"\n"
                              "residency = \"on_demand\"\npath = \"" +
                              xlmr + "\"\n");
  });
  api::Client client = daemon.connect();
  auto models = model_list(client);
  CHECK(models["on_cpu"].device() == "cpu");
  // No device key: "auto", a GPU when the machine has one.
  CHECK(models["embed"].device() == sparkd::default_placement().to_string());
  CHECK(models["on_gpu9"].device().empty());  // not loaded

  // No machine this runs on has a ninth GPU: the load fails with the backend's own reason,
  // and everything else keeps serving.
  const v1::Response refused = call_once(client, load_request("on_gpu9", ""));
  CHECK(error_code(refused) == v1::UNAVAILABLE);
  CHECK_THAT(refused.error().message(), Contains("device \"cuda:9\" (cuda:9): "));
  CHECK(error_code(call_once(client, embed_request("on_cpu", {"still here"}))) == v1::OK);

  v1::Request status;
  status.mutable_status();
  const v1::Response answered = call_once(client, status);
  bool found = false;
  for (const v1::ModelStatus& m : answered.status().models()) {
    if (m.name() != "on_cpu") continue;
    found = true;
    CHECK(m.device() == "cpu");
  }
  CHECK(found);
}

TEST_CASE("Daemon: admin loads are first-class: residency, unload, names, paths, logs",
          "[daemon][errors][admin]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });
  api::Client client = daemon.connect();
  const std::string xlmr = fixture_model_dir("xlmr_embed");

  SECTION("an admin-loaded model is on_demand by default and can be unloaded") {
    const v1::Response loaded = call_once(client, load_request("extra", xlmr));
    REQUIRE(error_code(loaded) == v1::OK);
    CHECK(loaded.admin().message() == "loaded extra from " + xlmr + " (on_demand)");
    auto models = model_list(client);
    CHECK(models["extra"].residency() == "on_demand");
    CHECK(models["extra"].source() == "admin");
    CHECK(models["embed"].source() == "config");
    CHECK(error_code(call_once(client, embed_request("extra", {"hello"}))) == v1::OK);
    CHECK(error_code(call_once(client, unload_request("extra"))) == v1::OK);
    CHECK(model_list(client).count("extra") == 0);

    // Pinned by the caller: it stays pinned, yet the caller can unload it again.
    REQUIRE(error_code(call_once(client, load_request("extra", xlmr, "pinned"))) == v1::OK);
    CHECK(model_list(client)["extra"].residency() == "pinned");
    CHECK(error_code(call_once(client, unload_request("extra"))) == v1::OK);

    // A model the config pins is still refused.
    const v1::Response refused = call_once(client, unload_request("embed"));
    CHECK(error_code(refused) == v1::FAILED_PRECONDITION);
    CHECK_THAT(refused.error().message(), Contains("pinned by the config"));

    // Every admin action is logged with the peer's uid.
    CHECK_THAT(daemon.log(), Contains("admin load extra by uid " + std::to_string(::geteuid())) &&
                                 Contains("admin unload extra by uid ") &&
                                 Contains("admin unload embed by uid ") &&
                                 Contains("FAILED_PRECONDITION: model 'embed' is pinned"));
  }

  SECTION("a residency given to Load holds until unload; an unchanged config leaves it") {
    // "rerank" is the config's, pinned. Made on_demand for this load, it can be unloaded,
    // and a reload of the unchanged file does not reload it.
    const v1::Response refused = call_once(client, unload_request("rerank"));
    CHECK(error_code(refused) == v1::FAILED_PRECONDITION);
    daemon.write_config(fixture_config(daemon.dir(), "",
                                       "[[models]]\nname = \"od\"\nresidency = \"on_demand\"\n"
                                       "path = \"" +
                                           xlmr + "\"\n"));
    v1::Request reload;
    reload.mutable_reload();
    REQUIRE(error_code(call_once(client, reload)) == v1::OK);  // lists od, not loaded yet
    CHECK(model_list(client)["od"].state() == "unloaded");
    CHECK(error_code(call_once(client, unload_request("od"))) == v1::FAILED_PRECONDITION);
    REQUIRE(error_code(call_once(client, load_request("od", "", "pinned"))) == v1::OK);
    auto models = model_list(client);
    CHECK(models["od"].residency() == "pinned");
    CHECK(models["od"].source() == "config");
    const v1::Response unchanged = call_once(client, reload);
    CHECK(error_code(unchanged) == v1::OK);
    CHECK(unchanged.admin().message() == "no model changed");
    CHECK(model_list(client)["od"].residency() == "pinned");
    // Pinned by the caller, not by the config: the caller may unload it again. The config's
    // on_demand model stays listed, unloaded, with the config's residency.
    CHECK(error_code(call_once(client, unload_request("od"))) == v1::OK);
    CHECK(model_list(client)["od"].state() == "unloaded");
    CHECK(model_list(client)["od"].residency() == "on_demand");
  }

  SECTION("a failed load leaves nothing behind") {
    const v1::Response failed =
        call_once(client, load_request("ghost", "/nonexistent/sparkd/model"));
    CHECK(error_code(failed) != v1::OK);
    CHECK_THAT(failed.error().message(), StartsWith("model 'ghost': "));
    CHECK(model_list(client).count("ghost") == 0);
    CHECK(error_code(call_once(client, embed_request("ghost", {"x"}))) == v1::NOT_FOUND);
    CHECK_THAT(daemon.log(), Contains("admin load ghost by uid "));
  }

  SECTION("names follow the config's rule") {
    for (const std::string& name :
         {std::string("bad name!"), std::string(300, 'n'), std::string("quo\"te\nline")}) {
      INFO(name);
      const v1::Response refused = call_once(client, load_request(name, xlmr));
      CHECK(error_code(refused) == v1::INVALID_ARGUMENT);
      CHECK_THAT(refused.error().message(),
                 StartsWith("load.name must be 1 to 64 characters of A-Z a-z 0-9 . _ -, got \""));
    }
    const v1::Response escaped = call_once(client, load_request("quo\"te\nline", xlmr));
    CHECK_THAT(escaped.error().message(), Contains("\"quo\\\"te\\x0aline\""));
    const v1::Response cut = call_once(client, load_request(std::string(300, 'n'), xlmr));
    CHECK_THAT(cut.error().message(), Contains("... (300 bytes)"));
    CHECK(model_list(client).size() == 3);
  }

  SECTION("paths over the socket are absolute; sparkctl makes a relative one absolute") {
    const v1::Response refused = call_once(client, load_request("extra", "models/xlmr_embed"));
    CHECK(error_code(refused) == v1::INVALID_ARGUMENT);
    CHECK_THAT(refused.error().message(),
               StartsWith("load.path must be an absolute path, ollama:NAME[:TAG] or hf:ORG/NAME, "
                          "got \"models/xlmr_embed\""));
    const Output cli = run_merged("cd " + std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures && " +
                                  sparkctl(daemon) + "load extra models/xlmr_embed");
    INFO(cli.text);
    CHECK(cli.exit_code == 0);
    CHECK(cli.text == "loaded extra from " + xlmr + " (on_demand)\n");
    CHECK(model_list(client)["extra"].path() == xlmr);
  }

  SECTION("a reload in which a model fails is a failure, with what was applied") {
    ModelCopy broken("bert_embed");
    broken.edit_json("config.json", [](json& config) { config["hidden_size"] = -3; });
    daemon.write_config(fixture_config(
        daemon.dir(), "",
        "[[models]]\nname = \"broken\"\npath = \"" + broken.dir().string() + "\"\n"));
    v1::Request reload;
    reload.mutable_reload();
    const v1::Response reloaded = call_once(client, reload);
    CHECK(error_code(reloaded) != v1::OK);
    CHECK_THAT(reloaded.error().message(),
               StartsWith("the config was reloaded, but 1 model(s) failed to load: model "
                          "'broken': ") &&
                   Contains("applied: loaded broken"));
    const Output cli = run_merged(sparkctl(daemon) + "reload");
    CHECK(cli.exit_code == 1);  // the second reload retries the broken model, and fails again
    CHECK_THAT(cli.text, Contains("failed to load: model 'broken'"));
    CHECK_THAT(daemon.log(), Contains("admin reload by uid ") &&
                                 Contains("reloaded with failures: the config was reloaded"));
  }
  CHECK(error_code(call_once(client, embed_request("embed", {"still serving"}))) == v1::OK);
}
