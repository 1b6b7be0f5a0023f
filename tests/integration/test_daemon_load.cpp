// The real daemon under load: 200 concurrent streaming generations and 2,000 embed/rerank
// requests over 50 connections. Every request is answered exactly once, nothing is lost or
// duplicated, and the daemon's memory is flat from one round of load to the next.
#include <catch2/catch.hpp>
#include <set>
#include <thread>

#include "tests/integration/daemon_test_helpers.h"
#include "tests/support/daemon_process.h"

namespace {

using namespace sparkd;
using namespace sparkd::testing;

constexpr int kConnections = 50;
constexpr int kGenerationsPerConnection = 4;  // 200 in all
constexpr int kEncodesPerConnection = 40;     // 2,000 in all

struct ConnectionTally {
  int finals_ok = 0;
  int finals_error = 0;
  int duplicates = 0;  // a second final for one id
  int stream_tokens_mismatch = 0;
  std::string first_error;
};

// One connection's share: everything is sent first (pipelined, all in flight together), then
// every response is read and matched to its request id.
ConnectionTally run_connection(const std::string& socket, int connection) {
  ConnectionTally tally;
  auto client = api::Client::connect(socket);
  if (!client) {
    tally.finals_error = 1;
    tally.first_error = client.status().message();
    return tally;
  }
  std::map<uint64_t, int> streamed_tokens;
  std::map<uint64_t, bool> is_generate;
  uint64_t id = 1;
  for (int g = 0; g < kGenerationsPerConnection; ++g, ++id) {
    v1::Request request = generate_request("gen", "load " + std::to_string(connection), 16, true);
    request.mutable_generate()->set_ignore_eos(true);
    request.mutable_generate()->mutable_sampling()->set_seed(id);
    request.mutable_generate()->mutable_sampling()->set_temperature(0.8f);
    request.set_id(id);
    is_generate[id] = true;
    if (!client->send(request).is_ok()) return tally;
  }
  // Encodes in waves that stay under the per-connection in-flight limit (64).
  std::set<uint64_t> finished;
  int sent_encodes = 0;
  auto receive_one = [&]() -> bool {
    auto response = client->receive(std::chrono::minutes(5));
    if (!response) {
      tally.first_error = response.status().message();
      return false;
    }
    const uint64_t rid = response->id();
    streamed_tokens[rid] += response->generate().token_ids_size();
    if (!response->final()) return true;
    if (!finished.insert(rid).second) ++tally.duplicates;
    if (response->has_error()) {
      ++tally.finals_error;
      if (tally.first_error.empty()) tally.first_error = response->error().message();
    } else {
      ++tally.finals_ok;
      if (is_generate[rid] && streamed_tokens[rid] != 16) ++tally.stream_tokens_mismatch;
    }
    return true;
  };
  const int total = kGenerationsPerConnection + kEncodesPerConnection;
  while (static_cast<int>(finished.size()) < total) {
    while (sent_encodes < kEncodesPerConnection &&
           sent_encodes + kGenerationsPerConnection - static_cast<int>(finished.size()) < 48) {
      v1::Request request =
          sent_encodes % 2 == 0
              ? embed_request("embed", {"connection " + std::to_string(connection),
                                        "request " + std::to_string(id)})
              : rerank_request("rerank", "which", {"one", "two", "three"});
      request.set_id(id++);
      if (!client->send(request).is_ok()) return tally;
      ++sent_encodes;
    }
    if (!receive_one()) return tally;
  }
  return tally;
}

ConnectionTally run_round(const std::string& socket) {
  std::vector<ConnectionTally> tallies(kConnections);
  std::vector<std::thread> threads;
  for (int c = 0; c < kConnections; ++c) {
    threads.emplace_back([&, c] { tallies[c] = run_connection(socket, c); });
  }
  for (auto& t : threads) t.join();
  ConnectionTally sum;
  for (const ConnectionTally& t : tallies) {
    sum.finals_ok += t.finals_ok;
    sum.finals_error += t.finals_error;
    sum.duplicates += t.duplicates;
    sum.stream_tokens_mismatch += t.stream_tokens_mismatch;
    if (sum.first_error.empty()) sum.first_error = t.first_error;
  }
  return sum;
}

}  // namespace

TEST_CASE("Daemon: 200 streaming generations and 2,000 embed/rerank over 50 connections",
          "[daemon][load]") {
  DaemonProcess daemon(
      [](const auto& dir) { return fixture_config(dir, "max_connections = 64\n"); });
  const int expected = kConnections * (kGenerationsPerConnection + kEncodesPerConnection);
  long rss_after_first = 0;
  for (int round = 0; round < 2; ++round) {
    INFO("round " << round);
    const ConnectionTally tally = run_round(daemon.socket_path());
    INFO(tally.first_error);
    CHECK(tally.finals_ok == expected);
    CHECK(tally.finals_error == 0);
    CHECK(tally.duplicates == 0);
    CHECK(tally.stream_tokens_mismatch == 0);
    api::Client client = daemon.connect();
    v1::Request status;
    status.mutable_status();
    const v1::Response st = call_once(client, status);
    for (const auto& m : st.status().models()) {
      CHECK(m.running() == 0);
      CHECK(m.waiting() == 0);
      CHECK(m.kv_blocks_in_use() == 0);
    }
    const long rss = daemon.rss_kib();
    WARN("round " << round << ": daemon RSS " << rss / 1024 << " MiB");
    if (round == 0) {
      rss_after_first = rss;
    } else {
      // The second round reuses what the first allocated: no growth beyond allocator noise.
      CHECK(rss - rss_after_first < 32 * 1024);
    }
  }
  daemon.signal(SIGTERM);
  CHECK(daemon.wait_exit() == 0);
}
