// The Prometheus page: served over real HTTP on an ephemeral port, checked by an independent
// parser (python3-prometheus-client), values that move as observed, snapshot counters that
// never go backwards, series that go with their model, and bad addresses as errors.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/metrics.h"
#include "tests/support/run_command.h"

namespace {

using sparkd::StatusCode;
using sparkd::daemon::Metrics;
using sparkd::daemon::ModelSnapshot;
using sparkd::daemon::RequestObservation;
using sparkd::daemon::RequestOutcome;
using sparkd::daemon::SystemSnapshot;
using sparkd::governor::MemoryPressure;

struct HttpResponse {
  std::string status_line;
  std::string body;
};

// A plain HTTP/1.0 GET over a TCP socket, read to EOF (the server closes).
HttpResponse http_get(uint16_t port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  // Only so a broken server fails the test instead of hanging it.
  timeval receive_limit{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receive_limit, sizeof receive_limit);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[4096];
  ssize_t got;
  while ((got = ::recv(fd, buffer, sizeof buffer, 0)) > 0) {
    response.append(buffer, static_cast<size_t>(got));
  }
  ::close(fd);
  REQUIRE(got == 0);
  const size_t header_end = response.find("\r\n\r\n");
  REQUIRE(header_end != std::string::npos);
  return {response.substr(0, response.find("\r\n")), response.substr(header_end + 4)};
}

// Every sample of `page` as the reference parser reads it: "name{k="v",...}" (labels sorted)
// -> value. A page the parser rejects fails the test.
std::map<std::string, double> parse_with_prometheus_client(const std::string& page) {
  const auto script = std::filesystem::temp_directory_path() /
                      ("sparkd-test-parse-metrics-" + std::to_string(::getpid()) + ".py");
  std::ofstream(script) << "import sys\n"
                           "from prometheus_client.parser import text_string_to_metric_families\n"
                           "for family in text_string_to_metric_families(sys.stdin.read()):\n"
                           "    for s in family.samples:\n"
                           "        labels = ','.join('%s=\"%s\"' % kv for kv in "
                           "sorted(s.labels.items()))\n"
                           "        print('SAMPLE %s{%s} %r' % (s.name, labels, s.value))\n";
  // Debian's interpreter: python3-prometheus-client is a Debian package.
  const auto result = sparkd::testing::run_command("/usr/bin/python3 " + script.string(), page);
  std::filesystem::remove(script);
  REQUIRE(result.exit_code == 0);
  std::map<std::string, double> samples;
  for (const std::string& line : result.lines) {
    REQUIRE(line.rfind("SAMPLE ", 0) == 0);
    const size_t space = line.rfind(' ');
    samples[line.substr(7, space - 7)] = std::stod(line.substr(space + 1));
  }
  return samples;
}

// The value of one sample, or a failure naming it.
double sample(const std::map<std::string, double>& samples, const std::string& key) {
  INFO("sample " << key);
  const auto it = samples.find(key);
  REQUIRE(it != samples.end());
  return it->second;
}

// What the test's refresh callback serves; the test changes it between scrapes.
struct FakeDaemonState {
  std::mutex mutex;
  std::vector<ModelSnapshot> models;
  SystemSnapshot system;
  int refreshes = 0;
};

std::unique_ptr<Metrics> start_metrics(FakeDaemonState& state) {
  auto metrics = Metrics::start(
      "127.0.0.1:0", [&state](std::vector<ModelSnapshot>& models, SystemSnapshot& system) {
        std::lock_guard lock(state.mutex);
        models = state.models;
        system = state.system;
        ++state.refreshes;
      });
  REQUIRE(metrics.has_value());
  return std::move(metrics).value();
}

ModelSnapshot llm_snapshot(const std::string& name) {
  ModelSnapshot model;
  model.model = name;
  model.task = "generate";
  model.weights_bytes = 16'000'000'000;
  model.kv_granted_bytes = 4 << 20;
  model.kv_used_bytes = 3 << 20;
  model.prefix_cached_bytes = 1 << 20;
  model.queue_depth = 5;
  model.running = 2;
  model.preemptions_total = 1;
  model.prefix_cache_hit_blocks_total = 7;
  model.prefix_cache_queried_blocks_total = 10;
  model.prompt_tokens_total = 100;
  model.generated_tokens_total = 40;
  model.decode_bytes_per_second = 2.5e11;
  return model;
}

TEST_CASE("metrics: the page served over HTTP shows what was observed", "[metrics]") {
  FakeDaemonState state;
  state.models = {llm_snapshot("qwen3-8b")};
  state.system.mem_total_bytes = 128ull << 30;
  state.system.mem_available_bytes = 100ull << 30;
  state.system.governor_budget_bytes = 90ull << 30;
  state.system.connections = 3;
  state.system.connections_closed_total = {{"idle", 4}, {"frame_timeout", 1}};
  state.system.requests_in_flight = 4;
  MemoryPressure pressure;
  pressure.some = {12.5, 3.0, 1.0, 1'500'000};
  pressure.full = {2.0, 1.0, 0.5, 250'000};
  state.system.pressure = pressure;
  auto metrics = start_metrics(state);
  CHECK(metrics->port() != 0);

  RequestObservation ok_request;
  ok_request.model = "qwen3-8b";
  ok_request.task = "generate";
  ok_request.queue_s = 0.004;
  ok_request.e2e_s = 1.2;
  ok_request.ttft_s = 0.07;
  metrics->observe_request(ok_request);
  metrics->observe_request(ok_request);
  metrics->count_request("qwen3-8b", "generate", RequestOutcome::kOk);
  metrics->count_request("qwen3-8b", "generate", RequestOutcome::kOk);
  RequestObservation invalid_request = ok_request;
  invalid_request.ttft_s.reset();  // refused before it generated anything
  invalid_request.e2e_s = 0.0005;
  metrics->observe_request(invalid_request);
  metrics->count_request("qwen3-8b", "generate", RequestOutcome::kInvalid);
  metrics->count_request("", "unknown", RequestOutcome::kInvalid);
  metrics->count_request("", "health", RequestOutcome::kUnavailable);
  metrics->observe_inter_token("qwen3-8b", 0.02);
  metrics->observe_inter_token("qwen3-8b", 0.03);
  metrics->observe_inter_token("qwen3-8b", 0.5);
  metrics->observe_model_load("qwen3-8b", 42.0, true);
  metrics->observe_model_load("broken", 0.2, false);
  metrics->count_eviction("bge-m3", "idle");
  metrics->count_eviction("bge-m3", "idle");
  metrics->count_eviction("bge-m3", "memory_pressure");

  const HttpResponse response = http_get(metrics->port(), "/metrics");
  CHECK(response.status_line == "HTTP/1.1 200 OK");
  CHECK(state.refreshes >= 1);
  const auto samples = parse_with_prometheus_client(response.body);
  const std::string llm = "model=\"qwen3-8b\",task=\"generate\"";

  // Snapshot gauges and counters.
  CHECK(sample(samples, "sparkd_model_weights_bytes{" + llm + "}") == 16e9);
  CHECK(sample(samples, "sparkd_model_kv_granted_bytes{" + llm + "}") == 4 << 20);
  CHECK(sample(samples, "sparkd_model_kv_used_bytes{" + llm + "}") == 3 << 20);
  CHECK(sample(samples, "sparkd_model_prefix_cache_bytes{" + llm + "}") == 1 << 20);
  CHECK(sample(samples, "sparkd_model_queue_depth{" + llm + "}") == 5);
  CHECK(sample(samples, "sparkd_model_running{" + llm + "}") == 2);
  CHECK(sample(samples, "sparkd_preemptions_total{" + llm + "}") == 1);
  CHECK(sample(samples, "sparkd_prefix_cache_hit_blocks_total{" + llm + "}") == 7);
  CHECK(sample(samples, "sparkd_prefix_cache_queried_blocks_total{" + llm + "}") == 10);
  CHECK(sample(samples, "sparkd_prompt_tokens_total{" + llm + "}") == 100);
  CHECK(sample(samples, "sparkd_generated_tokens_total{" + llm + "}") == 40);
  CHECK(sample(samples, "sparkd_decode_bandwidth_bytes_per_second{model=\"qwen3-8b\"}") == 2.5e11);

  // Pushed observations.
  CHECK(sample(samples,
               "sparkd_requests_total{api=\"socket\",model=\"qwen3-8b\",outcome=\"ok\",task="
               "\"generate\"}") == 2);
  CHECK(sample(samples,
               "sparkd_requests_total{api=\"socket\",model=\"qwen3-8b\",outcome=\"invalid\",task="
               "\"generate\"}") == 1);
  CHECK(sample(samples,
               "sparkd_requests_total{api=\"socket\",model=\"\",outcome=\"invalid\",task="
               "\"unknown\"}") == 1);
  CHECK(sample(samples,
               "sparkd_requests_total{api=\"socket\",model=\"\",outcome=\"unavailable\",task="
               "\"health\"}") == 1);
  CHECK(sample(samples, "sparkd_request_duration_seconds_count{" + llm + "}") == 3);
  CHECK(sample(samples, "sparkd_request_duration_seconds_sum{" + llm + "}") == Approx(2.4005));
  CHECK(sample(samples, "sparkd_request_duration_seconds_bucket{le=\"0.001\"," + llm + "}") == 1);
  CHECK(sample(samples, "sparkd_request_queue_seconds_count{" + llm + "}") == 3);
  CHECK(sample(samples, "sparkd_request_queue_seconds_bucket{le=\"0.005\"," + llm + "}") == 3);
  CHECK(sample(samples, "sparkd_time_to_first_token_seconds_count{" + llm + "}") == 2);
  CHECK(sample(samples, "sparkd_time_to_first_token_seconds_bucket{le=\"0.06\"," + llm + "}") == 0);
  CHECK(sample(samples, "sparkd_time_to_first_token_seconds_bucket{le=\"0.08\"," + llm + "}") == 2);
  CHECK(sample(samples, "sparkd_inter_token_seconds_count{model=\"qwen3-8b\"}") == 3);
  CHECK(sample(samples, "sparkd_inter_token_seconds_bucket{le=\"0.025\",model=\"qwen3-8b\"}") == 1);
  CHECK(sample(samples, "sparkd_inter_token_seconds_bucket{le=\"+Inf\",model=\"qwen3-8b\"}") == 3);
  CHECK(sample(samples, "sparkd_model_load_seconds_sum{model=\"qwen3-8b\",outcome=\"ok\"}") == 42);
  CHECK(sample(samples, "sparkd_model_load_seconds_count{model=\"broken\",outcome=\"error\"}") ==
        1);
  CHECK(sample(samples, "sparkd_evictions_total{model=\"bge-m3\",reason=\"idle\"}") == 2);
  CHECK(sample(samples, "sparkd_evictions_total{model=\"bge-m3\",reason=\"memory_pressure\"}") ==
        1);

  // The machine and the daemon.
  CHECK(sample(samples, "sparkd_memory_total_bytes{}") == static_cast<double>(128ull << 30));
  CHECK(sample(samples, "sparkd_memory_available_bytes{}") == static_cast<double>(100ull << 30));
  CHECK(sample(samples, "sparkd_governor_budget_bytes{}") == static_cast<double>(90ull << 30));
  CHECK(sample(samples, "sparkd_memory_pressure_some_avg10{}") == Approx(0.125));
  CHECK(sample(samples, "sparkd_memory_pressure_full_avg10{}") == Approx(0.02));
  CHECK(sample(samples, "sparkd_memory_pressure_stall_seconds_total{kind=\"some\"}") ==
        Approx(1.5));
  CHECK(sample(samples, "sparkd_memory_pressure_stall_seconds_total{kind=\"full\"}") ==
        Approx(0.25));
  CHECK(sample(samples, "sparkd_connections{}") == 3);
  CHECK(sample(samples, "sparkd_connections_closed_total{reason=\"idle\"}") == 4);
  CHECK(sample(samples, "sparkd_connections_closed_total{reason=\"frame_timeout\"}") == 1);
  CHECK(sample(samples, "sparkd_requests_in_flight{}") == 4);

  // render_text is the same page: a second scrape, so only the cumulative PSI may not move.
  const auto rendered = parse_with_prometheus_client(metrics->render_text());
  CHECK(sample(rendered,
               "sparkd_requests_total{api=\"socket\",model=\"qwen3-8b\",outcome=\"ok\",task="
               "\"generate\"}") == 2);
  CHECK(sample(rendered, "sparkd_memory_pressure_stall_seconds_total{kind=\"some\"}") ==
        Approx(1.5));
}

TEST_CASE("metrics: snapshot counters grow by deltas and never go backwards", "[metrics]") {
  FakeDaemonState state;
  state.models = {llm_snapshot("llama")};
  auto metrics = start_metrics(state);
  const std::string key = "sparkd_prompt_tokens_total{model=\"llama\",task=\"generate\"}";
  auto scrape = [&] { return parse_with_prometheus_client(metrics->render_text()); };

  CHECK(sample(scrape(), key) == 100);
  CHECK(sample(scrape(), key) == 100);  // an unchanged snapshot adds nothing
  {
    std::lock_guard lock(state.mutex);
    state.models[0].prompt_tokens_total = 250;
  }
  CHECK(sample(scrape(), key) == 250);
  {
    // Reloaded between two scrapes: its count restarted at 0 and reached 30.
    std::lock_guard lock(state.mutex);
    state.models[0].prompt_tokens_total = 30;
  }
  CHECK(sample(scrape(), key) == 280);
  {
    // Unloaded: the counter stays where it was.
    std::lock_guard lock(state.mutex);
    state.models.clear();
  }
  CHECK(sample(scrape(), key) == 280);
  {
    // Loaded again, and it served 500 tokens before the next scrape: all 500 are new, even
    // though 500 is more than the 30 seen before it went.
    std::lock_guard lock(state.mutex);
    state.models = {llm_snapshot("llama")};
    state.models[0].prompt_tokens_total = 500;
  }
  CHECK(sample(scrape(), key) == 780);
}

TEST_CASE("metrics: a model's gauge series go when it is unloaded", "[metrics]") {
  FakeDaemonState state;
  ModelSnapshot embedder = llm_snapshot("minilm");
  embedder.task = "embed";
  state.models = {llm_snapshot("llama"), embedder};
  auto metrics = start_metrics(state);

  auto before = parse_with_prometheus_client(metrics->render_text());
  CHECK(before.count("sparkd_model_weights_bytes{model=\"llama\",task=\"generate\"}") == 1);
  CHECK(before.count("sparkd_model_weights_bytes{model=\"minilm\",task=\"embed\"}") == 1);
  CHECK(before.count("sparkd_decode_bandwidth_bytes_per_second{model=\"llama\"}") == 1);
  {
    std::lock_guard lock(state.mutex);
    state.models = {embedder};
  }
  const HttpResponse response = http_get(metrics->port(), "/metrics");
  auto after = parse_with_prometheus_client(response.body);
  for (const char* gauge :
       {"sparkd_model_weights_bytes", "sparkd_model_kv_granted_bytes", "sparkd_model_kv_used_bytes",
        "sparkd_model_prefix_cache_bytes", "sparkd_model_queue_depth", "sparkd_model_running"}) {
    INFO(gauge);
    CHECK(after.count(std::string(gauge) + "{model=\"llama\",task=\"generate\"}") == 0);
    CHECK(after.count(std::string(gauge) + "{model=\"minilm\",task=\"embed\"}") == 1);
  }
  CHECK(after.count("sparkd_decode_bandwidth_bytes_per_second{model=\"llama\"}") == 0);
  CHECK(after.count("sparkd_decode_bandwidth_bytes_per_second{model=\"minilm\"}") == 1);
  // Counters are cumulative and stay.
  CHECK(sample(after, "sparkd_generated_tokens_total{model=\"llama\",task=\"generate\"}") == 40);
}

TEST_CASE("metrics: without PSI the pressure gauges are omitted, not zero", "[metrics]") {
  FakeDaemonState state;
  MemoryPressure pressure;
  pressure.some.avg10 = 50;
  state.system.pressure = pressure;
  auto metrics = start_metrics(state);
  CHECK(sample(parse_with_prometheus_client(metrics->render_text()),
               "sparkd_memory_pressure_some_avg10{}") == 0.5);
  {
    std::lock_guard lock(state.mutex);
    state.system.pressure.reset();
  }
  const auto samples = parse_with_prometheus_client(metrics->render_text());
  CHECK(samples.count("sparkd_memory_pressure_some_avg10{}") == 0);
  CHECK(samples.count("sparkd_memory_pressure_full_avg10{}") == 0);
  CHECK(samples.count("sparkd_memory_available_bytes{}") == 1);
}

TEST_CASE("metrics: a bad listen address is a clear error, not an exception", "[metrics]") {
  for (const char* listen : {"nonsense", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999",
                             "127.0.0.1:http", "example.com:9464", "[::1:9464", ":9464"}) {
    INFO(listen);
    const auto metrics = Metrics::start(listen, nullptr);
    REQUIRE_FALSE(metrics.has_value());
    CHECK(metrics.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(metrics.status().message(), Catch::Contains(listen));
    CHECK_THAT(metrics.status().message(), Catch::Contains("host:port"));
  }
}

TEST_CASE("metrics: localhost is the loopback address", "[metrics]") {
  auto metrics = Metrics::start("localhost:0", nullptr);
  REQUIRE(metrics.has_value());
  CHECK(http_get((*metrics)->port(), "/metrics").status_line == "HTTP/1.1 200 OK");
}

TEST_CASE("metrics: a port already in use is UNAVAILABLE, not an exception", "[metrics]") {
  auto first = Metrics::start("127.0.0.1:0", nullptr);
  REQUIRE(first.has_value());
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  const auto second = Metrics::start(taken, nullptr);
  REQUIRE_FALSE(second.has_value());
  CHECK(second.status().code() == StatusCode::kUnavailable);
  CHECK_THAT(second.status().message(), Catch::Contains(taken));
}

}  // namespace
