// The memory governor in the real daemon process, under small budgets: on_demand residency
// (load on first use, eviction and reload when only one fits, never while busy, keep_alive,
// a model that can never fit), honest KV caps, reclaim across models in its documented order
// with identical outputs, host pressure (injected and real), and the ledger against RSS.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/tasks/loaded_model.h"
#include "engine/tasks/model_footprint.h"
#include "governor/system_memory.h"
#include "tests/integration/daemon_test_helpers.h"
#include "tests/support/daemon_process.h"
#include "tests/support/loaded_fixture.h"
#include "tests/support/wide_kv_model.h"

namespace {

using namespace sparkd;
using namespace sparkd::testing;
using Catch::Contains;

constexpr uint64_t kMiB = 1ull << 20;

// A daemon config with `governor` lines and `models` tables of the test's own.
std::string governor_config(const std::filesystem::path& dir, const std::string& governor,
                            const std::string& models) {
  return "[server]\nsocket = \"" + (dir / "sparkd.sock").string() +
         "\"\nsocket_mode = \"0666\"\nsocket_group = \"\"\n"
         "[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n"
         "[engine]\nthreads = 1\n"
         "[governor]\n" +
         governor + "\n" + models;
}

std::string model_table(const std::string& name, const std::string& path,
                        const std::string& extra = "") {
  return "[[models]]\nname = \"" + name + "\"\npath = \"" + path + "\"\n" + extra + "\n";
}

v1::StatusResponse status_now(api::Client& client) {
  v1::Request request;
  request.mutable_status();
  return call_once(client, request).status();
}

v1::ModelStatus model_in(const v1::StatusResponse& status, const std::string& name) {
  for (const v1::ModelStatus& m : status.models()) {
    if (m.name() == name) return m;
  }
  FAIL("no model " << name << " in Status");
  return {};
}

uint64_t count_of(const google::protobuf::Map<std::string, uint64_t>& counts,
                  const std::string& key) {
  const auto it = counts.find(key);
  return it == counts.end() ? 0 : it->second;
}

// Polls Status until `condition` holds (true) or 30 s pass (false).
template <typename Condition>
bool wait_for_status(api::Client& client, Condition condition) {
  for (int attempt = 0; attempt < 1500; ++attempt) {
    if (condition(status_now(client))) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// What the daemon holds before any model: a daemon whose models are all on_demand, asked
// before any request.
uint64_t measured_baseline(const std::string& models) {
  DaemonProcess probe([&](const auto& dir) {
    return governor_config(dir, "budget = \"auto\"\nos_reserve = \"1GiB\"", models);
  });
  api::Client client = probe.connect();
  const v1::StatusResponse status = status_now(client);
  REQUIRE(status.ledger_bytes() == status.baseline_bytes());  // nothing loaded
  return status.baseline_bytes();
}

// A directory removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() / ("sparkd-gov-" + std::to_string(::getpid()) +
                                                     "-" + std::to_string(counter++) + "-" + name);
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

std::string repeated(const std::string& token, int count) {
  std::string text;
  for (int i = 0; i < count; ++i) text += token;
  return text;
}

std::vector<float> embedding_of(const v1::Response& response) {
  REQUIRE(response.embed().embeddings_size() > 0);
  const auto& values = response.embed().embeddings(0).values();
  return {values.begin(), values.end()};
}

TEST_CASE("Daemon governor: on_demand models load on first use, evict and reload when one fits",
          "[daemon][governor]") {
  const std::string bert = fixture_model_dir("bert_embed");
  // A big workspace (max_batch_tokens) makes each model's footprint large and exact.
  const std::string models =
      model_table("od1", bert, "residency = \"on_demand\"\nmax_batch_tokens = 32768") +
      model_table("od2", bert, "residency = \"on_demand\"\nmax_batch_tokens = 32768") +
      model_table("huge", bert, "residency = \"on_demand\"\nmax_batch_tokens = 100000000");
  tasks::FootprintOptions options;
  options.max_batch_tokens = 32768;
  auto footprint = tasks::estimate_footprint(bert, options);
  REQUIRE(footprint.has_value());
  const uint64_t one = footprint->weights_bytes + footprint->workspace_bytes;
  // Room for one of them and half of another.
  const uint64_t budget = measured_baseline(models) + one + one / 2;
  DaemonProcess daemon([&](const auto& dir) {
    return governor_config(dir, "budget = " + std::to_string(budget) + "\nos_reserve = \"1GiB\"",
                           models);
  });
  api::Client client = daemon.connect();

  // Listed before any request, not loaded.
  v1::StatusResponse status = status_now(client);
  CHECK(model_in(status, "od1").state() == "unloaded");
  CHECK(model_in(status, "od2").state() == "unloaded");

  // The first request loads the model and is answered correctly.
  LoadedFixture engine("bert_embed");
  const std::vector<std::string> texts = {"unified memory"};
  auto expected = tasks::embed_texts(*engine.model, texts);
  REQUIRE(expected.has_value());
  const v1::Response first = call_once(client, embed_request("od1", texts));
  REQUIRE(error_code(first) == v1::OK);
  const std::vector<float> got = embedding_of(first);
  REQUIRE(got.size() == expected->values.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(expected->values[i]).margin(1e-5));
  status = status_now(client);
  CHECK(model_in(status, "od1").state() == "ready");
  CHECK(model_in(status, "od1").workspace_bytes() == footprint->workspace_bytes);
  CHECK(count_of(status.loads_total(), "ok") == 1);

  // Alternating requests: each evicts the other (idle) model and loads its own.
  for (const char* name : {"od2", "od1", "od2"}) {
    INFO(name);
    const v1::Response response = call_once(client, embed_request(name, texts));
    REQUIRE(error_code(response) == v1::OK);
    CHECK(embedding_of(response) == got);
  }
  status = status_now(client);
  CHECK(count_of(status.loads_total(), "ok") == 4);
  CHECK(count_of(status.evictions_total(), "memory") == 3);
  CHECK(count_of(status.reclaims_total(), "evict") == 3);
  CHECK(model_in(status, "od1").state() == "unloaded");  // still listed
  CHECK(model_in(status, "od2").state() == "ready");
  CHECK(status.ledger_bytes() <= status.budget_bytes());

  SECTION("a model with requests in flight is never evicted") {
    // A long embed on od2 and, on another connection, a request for od1 that needs od2's
    // memory: od1 waits for od2 to be idle; od2's request is answered in full.
    v1::Request long_embed =
        embed_request("od2", std::vector<std::string>(1024, repeated(" unified memory", 60)));
    long_embed.mutable_embed()->set_truncate(true);  // each input fills the 128-token context
    api::Client other = daemon.connect();
    auto busy = client.call(long_embed);
    const v1::Response waiting = call_once(other, embed_request("od1", texts));
    REQUIRE(busy.has_value());
    REQUIRE(error_code(busy->back()) == v1::OK);
    CHECK(busy->back().embed().embeddings_size() == 1024);
    CHECK(error_code(waiting) == v1::OK);
    CHECK_THAT(daemon.log(), !Contains("CANCELLED"));
  }

  SECTION("a model that can never fit fails at once, and nothing is evicted for it") {
    const v1::Response refused = call_once(client, embed_request("huge", texts));
    CHECK(error_code(refused) == v1::RESOURCE_EXHAUSTED);
    CHECK_THAT(refused.error().message(), Contains("never fit") && Contains("budget"));
    status = status_now(client);
    CHECK(count_of(status.loads_total(), "never_fits") == 1);
    CHECK(count_of(status.evictions_total(), "memory") == 3);
    CHECK(model_in(status, "od2").state() == "ready");
    CHECK(model_in(status, "huge").state() == "failed");
    // The others serve on.
    CHECK(error_code(call_once(client, embed_request("od2", texts))) == v1::OK);
  }
}

TEST_CASE("Daemon governor: keep_alive unloads an idle on_demand model", "[daemon][governor]") {
  DaemonProcess daemon([](const auto& dir) {
    return governor_config(dir, "budget = \"1GiB\"\nos_reserve = \"1GiB\"",
                           model_table("brief", fixture_model_dir("bert_embed"),
                                       "residency = \"on_demand\"\nkeep_alive = 0.5"));
  });
  api::Client client = daemon.connect();
  REQUIRE(error_code(call_once(client, embed_request("brief", {"x"}))) == v1::OK);
  CHECK(wait_for_status(client, [](const v1::StatusResponse& s) {
    return model_in(s, "brief").state() == "unloaded";
  }));
  v1::StatusResponse status = status_now(client);
  CHECK(count_of(status.evictions_total(), "keep_alive") == 1);
  CHECK(status.ledger_bytes() == status.baseline_bytes());  // every byte came back
  CHECK_THAT(daemon.log(), Contains("evicted brief (keep_alive)"));
  REQUIRE(error_code(call_once(client, embed_request("brief", {"x"}))) == v1::OK);
  CHECK(count_of(status_now(client).loads_total(), "ok") == 2);
}

TEST_CASE("Daemon governor: kv_max bounds committed KV with rounding and kv_min is reserved",
          "[daemon][governor]") {
  // 3 layers of wide KV heads: a block group is 16 blocks (256 tokens) over 6 sub-ranges of
  // one 2 MiB granule each, 12 MiB. 64 MiB buys 5 groups: 60 MiB, never the 72 that
  // rounding each sub-range up used to commit.
  TempDir models("kvmax");
  WideKvModel wide;
  wide.layers = 3;
  write_wide_kv_model(models.path / "wide", wide);
  DaemonProcess daemon([&](const auto& dir) {
    return governor_config(dir, "budget = \"1GiB\"\nos_reserve = \"1GiB\"",
                           model_table("gen", (models.path / "wide").string(),
                                       "kv_max = \"64MiB\"\nkv_min = \"12MiB\""));
  });
  api::Client client = daemon.connect();
  v1::StatusResponse status = status_now(client);
  v1::ModelStatus gen = model_in(status, "gen");
  CHECK(gen.kv_max_bytes() == 60 * kMiB);
  CHECK(gen.kv_min_bytes() == 12 * kMiB);
  // The ledger holds kv_min before a byte of KV is committed.
  CHECK(gen.kv_bytes_committed() == 0);
  CHECK(status.ledger_bytes() ==
        status.baseline_bytes() + gen.weights_bytes() + gen.workspace_bytes() + 12 * kMiB);
  // Five prompts of one full group each fill the pool; committed stays within kv_max.
  for (const char* token : {" a", " b", " c", " d", " e"}) {
    const v1::Response r = call_once(client, generate_request("gen", repeated(token, 256), 1));
    REQUIRE(error_code(r) == v1::OK);
    CHECK(r.usage().prompt_tokens() == 256);
    CHECK(model_in(status_now(client), "gen").kv_bytes_committed() <= 60 * kMiB);
  }
  CHECK(model_in(status_now(client), "gen").kv_bytes_committed() == 60 * kMiB);
  // A sixth prompt reuses the cache's least recently used blocks: still 60 MiB.
  REQUIRE(error_code(call_once(client, generate_request("gen", repeated(" x", 128), 1))) == v1::OK);
  status = status_now(client);
  CHECK(model_in(status, "gen").kv_bytes_committed() == 60 * kMiB);
  CHECK(status.held_bytes() ==
        status.baseline_bytes() + gen.weights_bytes() + gen.workspace_bytes() + 60 * kMiB);
  const std::string page = http_get(daemon.metrics_port(), "/metrics");
  CHECK(metric_value(page, "sparkd_model_kv_max_bytes{model=\"gen\",task=\"generate\"}") ==
        static_cast<double>(60 * kMiB));
  CHECK(metric_value(page,
                     "sparkd_model_kv_rounding_waste_bytes{model=\"gen\",task=\"generate\"}") == 0);
}

// Two generators and an embedder under a budget too small for all: the wide-KV model makes a
// block group 16 blocks (256 tokens) and 8 MiB. "low" (priority 1, kv_min one group) holds
// its prefix cache in one group and a running sequence in two more; "high" (priority 0) then
// needs two groups: it takes low's cache first, then preempts low above kv_min. low's
// sequence is recomputed and ends exactly as it would have alone.
TEST_CASE("Daemon governor: reclaim across models: cache first, then preemption, by priority",
          "[daemon][governor]") {
  TempDir dir("reclaim");
  const std::string wide = (dir.path / "wide").string();
  // Wider layers than the other tests' model: a decode step reads ~56 MB, so low's long
  // sequence runs for a good while after high's request comes.
  WideKvModel slow;
  slow.hidden = 512;
  slow.intermediate = 2048;
  write_wide_kv_model(wide, slow);
  const std::string models =
      model_table("low", wide,
                  "priority = 1\nkv_min = \"8MiB\"\nkv_max = \"24MiB\"\nmax_batch_tokens = 512") +
      model_table("high", wide, "priority = 0\nkv_max = \"16MiB\"\nmax_batch_tokens = 512") +
      model_table("embed", fixture_model_dir("bert_embed"));
  uint64_t loaded_ledger = 0;
  {
    DaemonProcess probe([&](const auto& d) {
      return governor_config(d, "budget = \"auto\"\nos_reserve = \"1GiB\"", models);
    });
    api::Client client = probe.connect();
    loaded_ledger = status_now(client).ledger_bytes();  // with low's kv_min reserved
  }
  // Two groups beyond low's kv_min, and a little (not a group) to spare.
  const uint64_t budget = loaded_ledger + 16 * kMiB + 3 * kMiB;
  DaemonProcess daemon([&](const auto& d) {
    return governor_config(d, "budget = " + std::to_string(budget) + "\nos_reserve = \"1GiB\"",
                           models);
  });
  api::Client client = daemon.connect();

  // What low's long request produces on its own.
  LoadedFixture reference(wide);
  // 260 prompt tokens: from its prefill on, it holds two groups (17 blocks and growing).
  const std::string long_prompt = repeated(" b", 260);
  auto prompt_ids = reference.model->tokenizer().encode(long_prompt, true);
  REQUIRE(prompt_ids.has_value());
  tasks::GenerateOptions greedy;
  greedy.max_new_tokens = 236;
  greedy.ignore_eos = true;
  const std::vector<int32_t> ids(prompt_ids->ids.begin(), prompt_ids->ids.end());
  auto alone = tasks::generate_greedy(*reference.model, ids, greedy);
  REQUIRE(alone.has_value());

  // 1. low's cache: one full group (256 tokens, 16 full blocks) no sequence uses.
  REQUIRE(error_code(call_once(client, generate_request("low", repeated(" a", 256), 1))) == v1::OK);
  CHECK(model_in(status_now(client), "low").prefix_cached_bytes() == 8 * kMiB);

  // 2. low's long sequence grows into two more groups.
  v1::Request long_request = generate_request("low", long_prompt, 236);
  long_request.mutable_generate()->set_ignore_eos(true);
  api::Client low_client = daemon.connect();
  Expected<std::vector<v1::Response>> low_result = Status::ok();
  std::thread low_thread([&] { low_result = low_client.call(long_request); });
  const bool grown = wait_for_status(client, [](const v1::StatusResponse& s) {
    const v1::ModelStatus low = model_in(s, "low");
    return low.kv_bytes_committed() >= 24 * kMiB && low.running() == 1;
  });
  CHECK(grown);

  // 3. high needs two groups: 3 MiB are free.
  const v1::ModelStatus low_before = model_in(status_now(client), "low");
  INFO("low before high: committed " << low_before.kv_bytes_committed() << " cached "
                                     << low_before.prefix_cached_bytes() << " running "
                                     << low_before.running() << " generated "
                                     << low_before.generated_tokens_total());
  const auto high_start = std::chrono::steady_clock::now();
  const v1::Response high = call_once(client, generate_request("high", repeated(" d", 400), 1));
  INFO("high took "
       << std::chrono::duration<double>(std::chrono::steady_clock::now() - high_start).count()
       << " s");
  CHECK(error_code(high) == v1::OK);
  // The embedder serves on throughout.
  CHECK(error_code(call_once(client, embed_request("embed", {"still here"}))) == v1::OK);
  low_thread.join();
  REQUIRE(low_result.has_value());
  const v1::Response& low_final = low_result->back();
  REQUIRE(error_code(low_final) == v1::OK);
  const std::vector<int32_t> low_tokens(low_final.generate().token_ids().begin(),
                                        low_final.generate().token_ids().end());
  CHECK(low_tokens == alone->new_ids);  // preempted and recomputed: the same output

  const std::string log = daemon.log();
  INFO(log);
  const v1::StatusResponse status = status_now(client);
  CHECK(count_of(status.reclaims_total(), "prefix_cache") >= 2);  // low's, then high's
  CHECK(count_of(status.reclaims_total(), "preempt") >= 1);
  CHECK(model_in(status, "low").preemptions_total() >= 1);
  CHECK(model_in(status, "high").preemptions_total() == 0);
  CHECK(status.ledger_bytes() <= status.budget_bytes());
  // In that order: low's cache went before its sequence was preempted.
  const size_t cache = log.find("reclaim prefix_cache from low");
  const size_t preempt = log.find("reclaim preempt from low");
  REQUIRE(cache != std::string::npos);
  REQUIRE(preempt != std::string::npos);
  CHECK(cache < preempt);
  // high, more important, was never preempted for low.
  CHECK(log.find("reclaim preempt from high") == std::string::npos);
}

// A machine played through files: /proc/meminfo with 64 GiB total and MemAvailable as the
// test writes it, and no PSI; the governor reads them with os_reserve 30 GiB.
struct InjectedMemory {
  explicit InjectedMemory(const std::filesystem::path& dir)
      : meminfo(dir / "meminfo"), no_psi(dir / "no-psi") {}
  void write_available(uint64_t available_mib) const {
    std::ofstream(meminfo) << "MemTotal:       67108864 kB\nMemAvailable:   "
                           << available_mib * 1024 << " kB\n";
  }
  std::string governor_lines() const {
    return "budget = \"auto\"\nos_reserve = \"30GiB\"\nmemory_wait_s = 2\nmeminfo = \"" +
           meminfo.string() + "\"\npressure = \"" + no_psi.string() + "\"";
  }
  std::filesystem::path meminfo;
  std::filesystem::path no_psi;
};

// Pressure driven through the injected /proc/meminfo: the daemon sheds its cache and holds
// growth while MemAvailable is below os_reserve, keeps serving within kv_min, and grows back
// once the host recovers.
TEST_CASE("Daemon governor: host pressure (injected MemAvailable) sheds cache and holds growth",
          "[daemon][governor]") {
  TempDir dir("pressure");
  const std::string wide = (dir.path / "wide").string();
  write_wide_kv_model(wide);
  InjectedMemory machine(dir.path);
  machine.write_available(32 * 1024);  // 32 GiB: 2 GiB above os_reserve
  DaemonProcess daemon([&](const auto& d) {
    return governor_config(d, machine.governor_lines(),
                           model_table("gen", wide,
                                       "kv_min = \"8MiB\"\nkv_max = \"48MiB\"\n"
                                       "max_batch_tokens = 512"));
  });
  api::Client client = daemon.connect();
  for (const char* token : {" a", " b", " c", " d", " e"}) {
    REQUIRE(error_code(call_once(client, generate_request("gen", repeated(token, 256), 1))) ==
            v1::OK);
  }
  v1::StatusResponse before = status_now(client);
  CHECK(model_in(before, "gen").prefix_cached_bytes() == 40 * kMiB);
  CHECK_FALSE(before.under_pressure());

  machine.write_available(30 * 1024 - 100);  // another process took memory: below the reserve
  CHECK(wait_for_status(client, [](const v1::StatusResponse& s) {
    return s.under_pressure() && model_in(s, "gen").kv_bytes_committed() == 0;
  }));
  v1::StatusResponse during = status_now(client);
  CHECK(count_of(during.reclaims_total(), "prefix_cache") >= 1);
  CHECK(during.budget_bytes() < before.budget_bytes());
  // Still serving within kv_min (one group)...
  CHECK(error_code(call_once(client, generate_request("gen", repeated(" a", 100), 1))) == v1::OK);
  // ...but no growth above it while the host is short: the request waits, then says why.
  const v1::Response held = call_once(client, generate_request("gen", repeated(" c", 400), 1));
  CHECK(error_code(held) == v1::RESOURCE_EXHAUSTED);
  CHECK_THAT(held.error().message(), Contains("waited") && Contains("short of memory"));
  CHECK_THAT(daemon.log(), Contains("host memory pressure: MemAvailable"));

  machine.write_available(32 * 1024);  // it recovered
  CHECK(wait_for_status(client, [&](const v1::StatusResponse& s) {
    return !s.under_pressure() && s.budget_bytes() > during.budget_bytes();
  }));
  CHECK(error_code(call_once(client, generate_request("gen", repeated(" c", 400), 1))) == v1::OK);
  CHECK_THAT(daemon.log(), Contains("host memory pressure over"));
}

// The last resort before the host runs out of memory: an on_demand model goes even while it
// serves, and its request is told why (found by the trace simulator, bench/README.md).
TEST_CASE("Daemon governor: host pressure evicts a busy on_demand model and tells its requests",
          "[daemon][governor]") {
  TempDir dir("busy-evict");
  const std::string wide = (dir.path / "wide").string();
  WideKvModel slow;
  slow.hidden = 512;
  slow.intermediate = 2048;
  write_wide_kv_model(wide, slow);
  InjectedMemory machine(dir.path);
  machine.write_available(32 * 1024);  // 2 GiB above os_reserve
  DaemonProcess daemon([&](const auto& d) {
    return governor_config(d, machine.governor_lines(),
                           model_table("od", wide,
                                       "residency = \"on_demand\"\nkv_max = \"256MiB\"\n"
                                       "max_batch_tokens = 512"));
  });
  api::Client client = daemon.connect();

  v1::Request long_request = generate_request("od", repeated(" a", 64), 4000);
  long_request.mutable_generate()->set_ignore_eos(true);
  api::Client od_client = daemon.connect();
  Expected<std::vector<v1::Response>> result = Status::ok();
  std::thread serving([&] { result = od_client.call(long_request); });
  CHECK(wait_for_status(client, [](const v1::StatusResponse& s) {
    return model_in(s, "od").state() == "ready" && model_in(s, "od").running() == 1;
  }));

  // Another process takes 3 GiB: 1 GiB below the reserve, more than od's KV could give.
  machine.write_available(29 * 1024);
  serving.join();
  REQUIRE(result.has_value());
  const v1::Response& last = result->back();
  CHECK(error_code(last) == v1::UNAVAILABLE);
  CHECK_THAT(last.error().message(),
             Contains("model 'od' was unloaded") && Contains("host ran short of memory"));
  CHECK(wait_for_status(client, [](const v1::StatusResponse& s) {
    return model_in(s, "od").state() == "unloaded" &&
           count_of(s.evictions_total(), "pressure") == 1;
  }));
  CHECK_THAT(daemon.log(), Contains("reclaim evict (busy: its requests end) from od"));

  // The host recovers: the next request loads it again.
  machine.write_available(32 * 1024);
  CHECK(wait_for_status(client, [](const v1::StatusResponse& s) { return !s.under_pressure(); }));
  CHECK(error_code(call_once(client, generate_request("od", repeated(" b", 16), 2))) == v1::OK);
}

uint64_t mem_available_now() {
  auto memory = governor::read_system_memory();
  REQUIRE(memory.has_value());
  return memory->available_bytes;
}

// A real process beside the daemon takes memory: os_reserve is set 1 GiB below what is
// available at the start, and a 1.5 GiB hog pushes MemAvailable under it.
TEST_CASE("Daemon governor: a real memory hog makes the daemon shed, and it grows back after",
          "[daemon][governor][pressure]") {
  TempDir dir("hog");
  const std::string wide = (dir.path / "wide").string();
  write_wide_kv_model(wide);
  const uint64_t reserve = mem_available_now() - (1ull << 30);
  DaemonProcess daemon([&](const auto& d) {
    return governor_config(d, "budget = \"auto\"\nos_reserve = " + std::to_string(reserve),
                           model_table("gen", wide,
                                       "kv_min = \"8MiB\"\nkv_max = \"64MiB\"\n"
                                       "max_batch_tokens = 512"));
  });
  api::Client client = daemon.connect();
  for (const char* token : {" a", " b", " c", " d", " e", " x"}) {
    const int count = std::string(token) == " x" ? 128 : 256;
    REQUIRE(error_code(call_once(client, generate_request("gen", repeated(token, count), 1))) ==
            v1::OK);
  }
  const v1::StatusResponse before = status_now(client);
  REQUIRE(model_in(before, "gen").prefix_cached_bytes() == 48 * kMiB);

  const pid_t hog = ::fork();
  REQUIRE(hog >= 0);
  if (hog == 0) {
    // Touch every page of 1.5 GiB, then hold it.
    ::execl("/usr/bin/python3", "python3", "-c",
            "import time\nb = bytearray(1536 << 20)\nb[::4096] = b'\\x01' * len(range(0, len(b), "
            "4096))\ntime.sleep(120)\n",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Kills the hog if the test ends early. Never with pid -1: kill(-1) signals every process.
  struct Reaper {
    pid_t pid;
    void reap() {
      if (pid <= 0) return;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = 0;
    }
    ~Reaper() { reap(); }
  } reaper{hog};

  CHECK(wait_for_status(client, [](const v1::StatusResponse& s) {
    return s.under_pressure() && model_in(s, "gen").kv_bytes_committed() == 0;
  }));
  const v1::StatusResponse during = status_now(client);
  // The cache really went: the daemon's resident memory fell by (nearly) all of it.
  CHECK(during.process_resident_bytes() + 40 * kMiB < before.process_resident_bytes());
  CHECK(count_of(during.reclaims_total(), "prefix_cache") >= 1);
  // No request is lost: it is served within kv_min.
  CHECK(error_code(call_once(client, generate_request("gen", repeated(" a", 100), 1))) == v1::OK);

  reaper.reap();  // the hog exits
  CHECK(wait_for_status(client, [&](const v1::StatusResponse& s) {
    return !s.under_pressure() && s.budget_bytes() > during.budget_bytes() + 512 * kMiB;
  }));
  CHECK(error_code(call_once(client, generate_request("gen", repeated(" c", 400), 1))) == v1::OK);
}

// Under a mixed load the ledger's held bytes (baseline, weights, workspace, KV) stay within
// max(5 %, 64 MiB) of the daemon's RSS.
TEST_CASE("Daemon governor: the ledger matches RSS under a mixed load", "[daemon][governor]") {
  TempDir dir("rss");
  const std::string wide = (dir.path / "wide").string();
  write_wide_kv_model(wide);
  DaemonProcess daemon([&](const auto& d) {
    return governor_config(
        d, "budget = \"4GiB\"\nos_reserve = \"1GiB\"",
        model_table("minilm", SPARKD_MINILM_DIR) +
            model_table("embed", fixture_model_dir("bert_embed")) +
            model_table("rerank", fixture_model_dir("bert_rerank")) +
            model_table("gen", wide, "kv_max = \"96MiB\"\nmax_batch_tokens = 512"));
  });
  api::Client client = daemon.connect();
  auto check_ledger = [&](const char* when) {
    const v1::StatusResponse s = status_now(client);
    const double rss = static_cast<double>(s.process_resident_bytes());
    const double held = static_cast<double>(s.held_bytes());
    const double bound = std::max(0.05 * rss, 64.0 * kMiB);
    INFO(when << ": RSS " << rss / kMiB << " MiB, ledger held " << held / kMiB << " MiB");
    CHECK(std::abs(rss - held) <= bound);
  };
  check_ledger("loaded");
  std::atomic<bool> done{false};
  std::thread generator([&] {
    api::Client c = daemon.connect();
    int i = 0;
    while (!done) {
      v1::Request r =
          generate_request("gen", repeated(i % 2 ? " a" : " b", 300 + 50 * (i % 4)), 64);
      r.mutable_generate()->set_ignore_eos(true);
      CHECK(error_code(call_once(c, r)) == v1::OK);
      ++i;
    }
  });
  for (int round = 0; round < 6; ++round) {
    const std::vector<std::string> texts(64, repeated("unified memory on one box ", 8));
    CHECK(error_code(call_once(client, embed_request("minilm", texts))) == v1::OK);
    CHECK(error_code(call_once(client, embed_request("embed", texts))) == v1::OK);
    CHECK(error_code(call_once(client, rerank_request("rerank", "q", texts))) == v1::OK);
    check_ledger("under load");
  }
  done = true;
  generator.join();
  check_ledger("after");
}

}  // namespace

// Qwen3.5's hybrid in a real daemon: every running sequence holds a recurrent state beside its
// KV, granted on the model's account. Concurrent requests answer as transformers does, and once
// they are done no state (and, with no prefix cache for such a model, no KV) is left held.
TEST_CASE("Daemon governor: a hybrid model serves concurrent requests and returns its state",
          "[daemon][governor]") {
  const std::string dir = fixture_model_dir("qwen3_5_moe_f32");
  std::ifstream expected_file(dir + "/expected.json");
  const nlohmann::json expected = nlohmann::json::parse(expected_file);
  DaemonProcess daemon([&](const auto& daemon_dir) {
    return governor_config(daemon_dir, "budget = \"1GiB\"\nos_reserve = \"1GiB\"",
                           model_table("hybrid", dir, "kv_max = \"64MiB\""));
  });
  // Clients and requests are made here: Catch's assertions are not thread-safe, so the threads
  // only call.
  const size_t count = expected.at("greedy").size();
  std::vector<api::Client> clients;
  std::vector<v1::Request> requests;
  for (size_t i = 0; i < count; ++i) {
    const nlohmann::json& greedy = expected.at("greedy")[i];
    const nlohmann::json& prompt = expected.at("prompts")[greedy.at("prompt").get<size_t>()];
    requests.push_back(generate_request("hybrid", prompt.at("text").get<std::string>(),
                                        static_cast<uint32_t>(greedy.at("new_ids").size())));
    requests.back().mutable_generate()->set_ignore_eos(true);
    clients.push_back(daemon.connect());
  }
  std::vector<std::optional<Expected<std::vector<v1::Response>>>> answers(count);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < count; ++i) {
    threads.emplace_back([&, i] { answers[i].emplace(clients[i].call(requests[i])); });
  }
  for (std::thread& thread : threads) thread.join();
  for (size_t i = 0; i < count; ++i) {
    INFO("greedy continuation " << i);
    const auto& answer = *answers[i];
    REQUIRE(answer.has_value());
    REQUIRE(!answer->empty());
    const v1::Response& response = answer->back();
    REQUIRE(error_code(response) == v1::OK);
    CHECK(std::vector<int32_t>(response.generate().token_ids().begin(),
                               response.generate().token_ids().end()) ==
          expected.at("greedy")[i].at("new_ids").get<std::vector<int32_t>>());
  }
  const std::string page = http_get(daemon.metrics_port(), "/metrics");
  CHECK(metric_value(
            page, "sparkd_model_recurrent_state_bytes{model=\"hybrid\",task=\"generate\"}") == 0);
  CHECK(metric_value(page, "sparkd_model_kv_used_bytes{model=\"hybrid\",task=\"generate\"}") == 0);
  CHECK(metric_value(page, "sparkd_model_prefix_cache_bytes{model=\"hybrid\",task=\"generate\"}") ==
        0);
}
