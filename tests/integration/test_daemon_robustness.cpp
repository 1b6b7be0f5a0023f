// The real daemon under bad input, disconnects, signals and scrapes: each bad request gets
// its own error and the daemon keeps serving the others.
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "api/protocol/frame.h"
#include "tests/integration/daemon_test_helpers.h"
#include "tests/support/daemon_process.h"
#include "tests/support/run_command.h"

namespace {

using namespace sparkd;
using namespace sparkd::testing;

void check_still_serving(DaemonProcess& daemon) {
  api::Client fresh = daemon.connect();
  v1::Response response = call_once(fresh, embed_request("embed", {"still here"}));
  CHECK(error_code(response) == v1::OK);
}

// A header announcing `length` bytes.
std::string length_prefix(uint32_t length) {
  std::string bytes(4, '\0');
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return bytes;
}

v1::Request generate_with(const std::function<void(v1::GenerateRequest&)>& edit) {
  v1::Request request = generate_request("gen", "hello", 4);
  edit(*request.mutable_generate());
  return request;
}

}  // namespace

TEST_CASE("Daemon: malformed frames and bad requests each get an error", "[daemon]") {
  DaemonProcess daemon([](const auto& dir) {
    return fixture_config(dir, "max_frame_bytes = \"1MiB\"\nmax_inflight_per_connection = 4\n");
  });

  SECTION("random bytes in a frame: a parse error, the connection goes on") {
    api::Client client = daemon.connect();
    std::mt19937 rng(7);
    std::string junk(200, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    REQUIRE(client.send_bytes(length_prefix(200) + junk).is_ok());
    auto response = client.receive();
    REQUIRE(response.has_value());
    CHECK(response->error().code() == v1::INVALID_ARGUMENT);
    CHECK(error_code(call_once(client, embed_request("embed", {"ok"}))) == v1::OK);
  }
  SECTION("an oversized length prefix: an error, then the connection closes") {
    api::Client client = daemon.connect();
    REQUIRE(client.send_bytes(length_prefix(1u << 30)).is_ok());
    auto response = client.receive();
    REQUIRE(response.has_value());
    CHECK(response->error().code() == v1::RESOURCE_EXHAUSTED);
    CHECK_THAT(response->error().message(), Catch::Contains("max_frame_bytes"));
    CHECK(client.receive().status().code() == StatusCode::kUnavailable);  // closed
  }
  SECTION("a truncated frame, then the client leaves") {
    api::Client client = daemon.connect();
    const std::string frame = api::encode_frame(embed_request("embed", {"cut short"}));
    REQUIRE(client.send_bytes(frame.substr(0, frame.size() / 2)).is_ok());
    client.close();
  }
  SECTION("request errors") {
    api::Client client = daemon.connect();
    CHECK(error_code(call_once(client, embed_request("no-such-model", {"x"}))) == v1::NOT_FOUND);
    CHECK(error_code(call_once(client, embed_request("embed", {}))) == v1::INVALID_ARGUMENT);
    CHECK(error_code(call_once(client, embed_request("embed", {""}))) == v1::INVALID_ARGUMENT);
    CHECK(error_code(call_once(client, embed_request("gen", {"x"}))) == v1::FAILED_PRECONDITION);
    std::string long_text;
    for (int i = 0; i < 600; ++i) long_text += "word ";
    v1::Response too_long = call_once(client, embed_request("embed", {long_text}));
    CHECK(error_code(too_long) == v1::INVALID_ARGUMENT);
    CHECK_THAT(too_long.error().message(), Catch::Contains("truncate"));
    std::string huge_prompt;
    for (int i = 0; i < 9000; ++i) huge_prompt += " hello";  // > 40960 tokens? no: context check
    v1::Response over_context = call_once(client, generate_with([&](v1::GenerateRequest& g) {
                                            g.set_prompt(std::string(60000, 'a') + huge_prompt);
                                          }));
    CHECK(error_code(over_context) == v1::INVALID_ARGUMENT);
    CHECK(error_code(call_once(client, generate_with([](v1::GenerateRequest& g) {
                                 g.mutable_sampling()->set_top_p(1.5f);
                               }))) == v1::INVALID_ARGUMENT);
    CHECK(error_code(call_once(client, generate_with([](v1::GenerateRequest& g) {
                                 g.mutable_sampling()->set_temperature(-1.0f);
                               }))) == v1::INVALID_ARGUMENT);
    CHECK(error_code(call_once(client, generate_with([](v1::GenerateRequest& g) {
                                 g.add_stop_token_ids(1 << 30);
                               }))) == v1::INVALID_ARGUMENT);
    // An unknown field (number 99) appended to a valid request.
    std::string payload = embed_request("embed", {"x"}).SerializeAsString();
    payload += std::string("\x98\x06\x01", 3);  // field 99, varint 1
    REQUIRE(
        client.send_bytes(length_prefix(static_cast<uint32_t>(payload.size())) + payload).is_ok());
    auto unknown = client.receive();
    REQUIRE(unknown.has_value());
    CHECK(unknown->error().code() == v1::INVALID_ARGUMENT);
    CHECK_THAT(unknown->error().message(), Catch::Contains("99"));
    // No kind at all.
    v1::Request empty;
    CHECK(error_code(call_once(client, empty)) == v1::INVALID_ARGUMENT);
  }
  SECTION("in-flight limit and duplicate ids") {
    api::Client client = daemon.connect();
    for (uint64_t id = 1; id <= 5; ++id) {
      v1::Request request = generate_request("gen", "hello", 64);
      request.mutable_generate()->set_ignore_eos(true);
      request.set_id(id <= 4 ? id : 1);  // the 5th reuses id 1
      REQUIRE(client.send(request).is_ok());
    }
    v1::Request sixth = generate_request("gen", "hello", 4);
    sixth.set_id(6);
    REQUIRE(client.send(sixth).is_ok());
    std::map<uint64_t, std::vector<v1::Code>> finals;
    std::vector<v1::Code> refusals_of_1;  // non-final errors for id 1
    while (finals[1].size() + finals[2].size() + finals[3].size() + finals[4].size() +
               finals[6].size() <
           5) {
      auto response = client.receive();
      REQUIRE(response.has_value());
      if (response->final()) {
        finals[response->id()].push_back(error_code(*response));
      } else if (response->has_error()) {
        CHECK(response->id() == 1);
        refusals_of_1.push_back(error_code(*response));
      }
    }
    // The duplicate is refused without ending the request in flight under id 1.
    CHECK(refusals_of_1 == std::vector<v1::Code>{v1::ALREADY_EXISTS});
    CHECK(finals[1] == std::vector<v1::Code>{v1::OK});
    CHECK(finals[6] == std::vector<v1::Code>{v1::RESOURCE_EXHAUSTED});
  }
  SECTION("an admin call from a non-admin peer") {
    // A child process that drops to `nobody` before connecting (the test runs as root).
    const passwd* nobody = ::getpwnam("nobody");
    if (::geteuid() != 0 || nobody == nullptr) {
      WARN("needs root and a 'nobody' user to act as a non-admin peer; skipped");
      return;
    }
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      if (::setgid(nobody->pw_gid) != 0 || ::setuid(nobody->pw_uid) != 0) ::_exit(10);
      auto client = api::Client::connect(daemon.socket_path());
      if (!client) ::_exit(11);
      v1::Request unload;
      unload.mutable_unload()->set_name("embed");
      auto responses = client->call(unload);
      if (!responses) ::_exit(12);
      ::_exit(responses->back().error().code() == v1::PERMISSION_DENIED ? 0 : 13);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  check_still_serving(daemon);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait_exit() == 0);
}

TEST_CASE("Daemon: a disconnect mid-stream cancels the request and frees its KV", "[daemon]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });
  {
    api::Client client = daemon.connect();
    v1::Request request = generate_request("gen", "a long story", 5000, /*stream=*/true);
    request.mutable_generate()->set_ignore_eos(true);
    request.set_id(1);
    REQUIRE(client.send(request).is_ok());
    auto first = client.receive();
    REQUIRE(first.has_value());
    CHECK_FALSE(first->final());
  }  // the client goes away mid-stream
  api::Client observer = daemon.connect();
  CHECK(wait_kv_released(observer, "gen"));
  // The metrics page agrees.
  const std::string page = http_get(daemon.metrics_port(), "/metrics");
  CHECK(metric_value(page, R"(sparkd_model_kv_used_bytes{model="gen",task="generate"})") == 0);
  CHECK(metric_value(page, R"(sparkd_model_running{model="gen",task="generate"})") == 0);
  CHECK(metric_value(page, R"(sparkd_generated_tokens_total{model="gen",task="generate"})") >= 1);
  // Cancel over the protocol does the same.
  api::Client client = daemon.connect();
  v1::Request request = generate_request("gen", "another story", 5000, true);
  request.mutable_generate()->set_ignore_eos(true);
  request.set_id(7);
  REQUIRE(client.send(request).is_ok());
  REQUIRE(client.receive().has_value());
  v1::Request cancel;
  cancel.set_id(8);
  cancel.mutable_cancel()->set_target_id(7);
  REQUIRE(client.send(cancel).is_ok());
  bool cancelled_final = false, cancel_answered = false;
  while (!(cancelled_final && cancel_answered)) {
    auto response = client.receive();
    REQUIRE(response.has_value());
    if (response->id() == 7 && response->final()) {
      CHECK(response->error().code() == v1::CANCELLED);
      cancelled_final = true;
    }
    if (response->id() == 8) {
      CHECK(response->cancel().cancelled());
      cancel_answered = true;
    }
  }
  CHECK(wait_kv_released(observer, "gen"));
}

TEST_CASE("Daemon: SIGHUP with a broken config keeps the old one, a good one applies", "[daemon]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });
  daemon.write_config("[server]\nsocket = 12\n[[models]]\nname = \"bad name!\"\n");
  daemon.signal(SIGHUP);
  REQUIRE(daemon.wait_for_log("reload refused"));
  check_still_serving(daemon);
  api::Client client = daemon.connect();
  v1::Request models;
  models.mutable_list_models();
  CHECK(call_once(client, models).list_models().models_size() == 3);

  // Drop "rerank", add "xlmr", allow one request in flight per connection, move the
  // metrics port (which needs a restart: the reload says so).
  {
    std::string text = fixture_config(daemon.dir(), "max_inflight_per_connection = 1\n");
    const size_t at = text.find("[[models]]\nname = \"rerank\"");
    const size_t end = text.find("[[models]]", at + 1);
    text.erase(at, end - at);
    text.replace(text.find("127.0.0.1:0"), 11, "127.0.0.1:1");
    daemon.write_config(text + "[[models]]\nname = \"xlmr\"\npath = \"" +
                        fixture_model_dir("xlmr_embed") + "\"\n");
  }
  daemon.signal(SIGHUP);
  REQUIRE(daemon.wait_for_log("reloaded:"));
  CHECK(error_code(call_once(client, embed_request("xlmr", {"hi"}))) == v1::OK);
  CHECK(error_code(call_once(client, rerank_request("rerank", "q", {"d"}))) == v1::NOT_FOUND);
  CHECK_THAT(daemon.log(), Catch::Contains("take effect at the next restart: [metrics]"));
  // The new in-flight limit holds: of two pipelined requests, the second is refused.
  v1::Request first = generate_request("gen", "slow", 200);
  first.mutable_generate()->set_ignore_eos(true);
  first.set_id(100);
  v1::Request second = embed_request("embed", {"second"});
  second.set_id(101);
  REQUIRE(client.send(first).is_ok());
  REQUIRE(client.send(second).is_ok());
  std::map<uint64_t, v1::Code> codes;
  while (codes.size() < 2) {
    auto response = client.receive();
    REQUIRE(response.has_value());
    if (response->final()) codes[response->id()] = error_code(*response);
  }
  CHECK(codes[100] == v1::OK);
  CHECK(codes[101] == v1::RESOURCE_EXHAUSTED);
}

TEST_CASE("Daemon: SIGTERM lets requests in flight finish, then exits", "[daemon]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });
  api::Client client = daemon.connect();
  v1::Request request = generate_request("gen", "finish me", 300);
  request.mutable_generate()->set_ignore_eos(true);
  request.set_id(1);
  REQUIRE(client.send(request).is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  daemon.signal(SIGTERM);
  auto response = client.receive();
  REQUIRE(response.has_value());
  CHECK(response->final());
  CHECK(error_code(*response) == v1::OK);
  CHECK(response->generate().token_ids_size() == 300);
  CHECK(daemon.wait_exit() == 0);
  CHECK_THAT(daemon.log(), Catch::Contains("Terminated: draining (up to 60 s)\n"));
  CHECK_FALSE(std::filesystem::exists(daemon.socket_path()));
}

TEST_CASE("Daemon: the metrics page is valid Prometheus text and follows the traffic", "[daemon]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });
  const uint16_t port = daemon.metrics_port();
  const std::string before = http_get(port, "/metrics");
  api::Client client = daemon.connect();
  for (int i = 0; i < 3; ++i) call_once(client, embed_request("embed", {"count me"}));
  call_once(client, embed_request("missing", {"x"}));
  call_once(client, generate_request("gen", "count my tokens", 5));
  const std::string after = http_get(port, "/metrics");
  CHECK(metric_value(
            after,
            R"(sparkd_requests_total{api="socket",model="embed",outcome="ok",task="embed"})") == 3);
  // An unknown model is not a label value (clients must not mint series): model="".
  CHECK(metric_value(
            after,
            R"(sparkd_requests_total{api="socket",model="",outcome="not_found",task="embed"})") ==
        1);
  CHECK(metric_value(after, R"(sparkd_generated_tokens_total{model="gen",task="generate"})") >= 1);
  CHECK(metric_value(after, R"(sparkd_model_weights_bytes{model="gen",task="generate"})") > 0);
  CHECK(metric_value(after, "sparkd_memory_available_bytes") > 0);
  // An independent parser: Python's prometheus_client (Debian python3-prometheus-client).
  const std::filesystem::path page = daemon.dir() / "metrics.txt";
  std::ofstream(page) << after;
  const RunResult parsed = run_command(
      "/usr/bin/python3 -c \"import sys; from prometheus_client.parser import "
      "text_string_to_metric_families as parse; "
      "print(sum(1 for f in parse(open(sys.argv[1]).read()) for s in f.samples))\" " +
          page.string(),
      "");
  REQUIRE(parsed.exit_code == 0);
  REQUIRE(parsed.lines.size() == 1);
  CHECK(std::stoi(parsed.lines[0]) > 20);
}

TEST_CASE("Daemon: every answered request is counted once, with its outcome", "[daemon]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });
  api::Client client = daemon.connect();
  // Refused in validation (by the server), by the service, and served.
  CHECK(error_code(call_once(client, generate_with([](v1::GenerateRequest& g) {
                               g.mutable_sampling()->set_temperature(-1.0f);
                             }))) == v1::INVALID_ARGUMENT);
  CHECK(error_code(call_once(client, embed_request("embed", {""}))) == v1::INVALID_ARGUMENT);
  const v1::Response wrong_task = call_once(client, embed_request("gen", {"x"}));
  CHECK(error_code(wrong_task) == v1::FAILED_PRECONDITION);
  CHECK(wrong_task.error().message() == "model 'gen' is a generate model; it cannot embed");
  const v1::Response wrong_task_an = call_once(client, generate_request("embed", "x", 1));
  CHECK(wrong_task_an.error().message() == "model 'embed' is an embed model; it cannot generate");
  CHECK(error_code(call_once(client, embed_request("nobody", {"x"}))) == v1::NOT_FOUND);
  REQUIRE(client.send_bytes(length_prefix(3) + std::string("\x08\x09\x0f", 3)).is_ok());
  REQUIRE(client.receive().has_value());
  v1::Request health;
  health.mutable_health();
  CHECK(error_code(call_once(client, health)) == v1::OK);
  v1::Request cancel;
  cancel.mutable_cancel()->set_target_id(12345);
  CHECK_FALSE(call_once(client, cancel).cancel().cancelled());

  const std::string page = http_get(daemon.metrics_port(), "/metrics");
  INFO(page);
  const auto count = [&](const std::string& labels) {
    return metric_value(page, R"(sparkd_requests_total{api="socket",)" + labels + "}");
  };
  CHECK(count(R"(model="gen",outcome="invalid",task="generate")") == 1);
  CHECK(count(R"(model="embed",outcome="invalid",task="embed")") == 1);
  CHECK(count(R"(model="gen",outcome="invalid",task="embed")") == 1);
  CHECK(count(R"(model="embed",outcome="invalid",task="generate")") == 1);
  CHECK(count(R"(model="",outcome="not_found",task="embed")") == 1);
  CHECK(count(R"(model="",outcome="invalid",task="unknown")") == 1);
  CHECK(count(R"(model="",outcome="ok",task="health")") == 1);
  CHECK(count(R"(model="",outcome="ok",task="cancel")") == 1);
}

TEST_CASE("Daemon: a client that does not read is not buffered without bound", "[daemon]") {
  DaemonProcess daemon(
      [](const auto& dir) { return fixture_config(dir, "max_write_buffer = \"64KiB\"\n"); });
  const long rss_before = daemon.rss_kib();
  api::Client client = daemon.connect();
  // Far more requests than the daemon may buffer answers for; every answer (a result or
  // RESOURCE_EXHAUSTED for too many in flight) is larger than its request.
  constexpr uint64_t kRequests = 400000;
  std::string frames;
  for (uint64_t id = 1; id <= kRequests; ++id) {
    v1::Request request = embed_request("embed", {"x"});
    request.set_id(id);
    api::append_frame(request, frames);
  }
  std::atomic<size_t> sent{0};
  std::thread sender([&] {
    for (size_t at = 0; at < frames.size(); at += 4096) {
      const size_t n = std::min<size_t>(4096, frames.size() - at);
      if (!client.send_bytes(std::string_view(frames).substr(at, n)).is_ok()) return;
      sent += n;
    }
  });
  // Wait until the sender stalls: the daemon has stopped reading this connection.
  size_t last = 0;
  for (int quiet = 0; quiet < 20 && sent < frames.size();) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    quiet = sent == last ? quiet + 1 : 0;
    last = sent;
  }
  const size_t stalled_at = sent;
  const long rss_stalled = daemon.rss_kib();
  WARN("sender stalled after " << stalled_at / 1024 << " KiB of " << frames.size() / 1024
                               << " KiB; daemon RSS " << rss_before / 1024 << " -> "
                               << rss_stalled / 1024 << " MiB");
  CHECK(stalled_at < frames.size());
  CHECK(rss_stalled - rss_before < 64 * 1024);
  // Reading resumes the flow: every request is answered exactly once.
  std::vector<bool> answered(kRequests + 1, false);
  uint64_t finals = 0, duplicates = 0, unknown_ids = 0;
  Status receive_status;
  while (finals < kRequests) {
    auto response = client.receive(std::chrono::minutes(2));
    if (!response) {
      receive_status = response.status();
      break;
    }
    if (!response->final()) continue;
    const uint64_t id = response->id();
    if (id < 1 || id > kRequests) {
      ++unknown_ids;
    } else {
      duplicates += answered[id] ? 1 : 0;
      answered[id] = true;
    }
    ++finals;
  }
  sender.join();
  INFO(receive_status.message());
  CHECK(finals == kRequests);
  CHECK(duplicates == 0);
  CHECK(unknown_ids == 0);
  check_still_serving(daemon);
}
