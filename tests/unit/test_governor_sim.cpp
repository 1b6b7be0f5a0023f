// The governor's trace simulator (bench/sim): deterministic, invariants held on every trace,
// a tiny trace whose every number is computed by hand, OOM accounting, trace files that
// round-trip and fail with their line, and the machine profiles.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench/sim/cost_model.h"
#include "bench/sim/report.h"
#include "bench/sim/simulator.h"
#include "bench/sim/trace.h"

namespace {

using namespace sparkd::sim;
namespace fs = std::filesystem;

constexpr uint64_t kGiB = 1ull << 30;

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("sparkd-sim-" + std::to_string(getpid()) + "-" + name);
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every policy on `trace`, in all_policies() order.
std::vector<SimResult> simulate_all(const Trace& trace, const CostModel& cost) {
  std::vector<SimResult> results;
  for (Policy policy : all_policies()) results.push_back(simulate(trace, cost, policy));
  return results;
}

MachineProfile spark() {
  auto profile =
      load_machine_profile(std::string(SPARKD_SOURCE_DIR) + "/bench/profiles/dgx-spark.toml");
  REQUIRE(profile.has_value());
  return *profile;
}

// 1 GB/s of bandwidth, compute that never binds, no step overhead, 1 GB/s loads: a step of a
// model of 1e9 weight bytes takes 1 s plus its KV reads, at 4 bytes a token.
MachineProfile unit_machine() {
  MachineProfile m;
  m.name = "unit";
  m.bandwidth_gbs = 1;
  m.compute_tflops = 1e9;
  m.load_gbs = 1;
  m.step_overhead_ms = 0;
  m.memory_bytes = 16 * kGiB;
  m.os_bytes = 1 * kGiB;
  return m;
}

Trace unit_trace() {
  Trace t;
  t.name = "unit";
  t.seed = 0;
  t.duration_s = 20;
  TraceModel m;
  m.name = "tiny";
  m.shape.dense_params = 1e9;
  m.shape.bytes_per_param = 1;
  m.shape.layers = 1;
  m.shape.q_width = 1;
  m.shape.kv_heads = 1;
  m.shape.head_dim = 1;
  m.kv_max_bytes = 1 * kGiB;
  m.static_fraction = 0.25;
  t.models.push_back(m);
  TraceRequest first;
  first.arrival_s = 0;
  first.shared = {{7, 32}};
  first.output_tokens = 3;
  first.ttft_slo_s = 3;
  first.tpot_slo_s = 1.5;
  TraceRequest second = first;  // the same 32 shared tokens, one of its own
  second.arrival_s = 10;
  second.unique_tokens = 1;
  second.output_tokens = 1;
  t.requests = {first, second};
  return t;
}

TEST_CASE("governor sim: a tiny trace matches the numbers computed by hand", "[sim]") {
  const CostModel cost(unit_machine());
  const Trace trace = unit_trace();
  for (Policy policy : all_policies()) {
    INFO(policy_name(policy));
    const SimResult r = simulate(trace, cost, policy);
    CHECK(r.invariant_violations.empty());
    REQUIRE(r.outcomes.size() == 2);
    // The model loads from t = 0 to 1 s (1e9 bytes at 1 GB/s). The first request's prefill of
    // 32 tokens reads the weights and 32 tokens of KV: 1 + 128e-9 s, its first token at 2 s +
    // 128 ns; its two decode steps read 33 and 34 tokens of KV.
    const RequestOutcome& a = r.outcomes[0];
    CHECK(a.completed);
    CHECK(a.output_tokens == 3);
    CHECK(a.ttft_s == Approx(2.0 + 128e-9).epsilon(1e-12));
    CHECK(a.tpot_s == Approx(1.0 + (132e-9 + 136e-9) / 2).epsilon(1e-12));
    CHECK(a.met_slo);
    // The second finds its 32 shared tokens in the prefix cache (two full blocks) and
    // computes only its own: one step reading 33 tokens of KV.
    const RequestOutcome& b = r.outcomes[1];
    CHECK(b.completed);
    CHECK(b.ttft_s == Approx(1.0 + 132e-9).epsilon(1e-12));
    CHECK(r.slo_attainment == 1.0);
    CHECK(r.goodput_rps == Approx(2.0 / 20));
    CHECK(r.oom_events == 0);
    CHECK(r.loads == 1);
    CHECK(r.itl_p50_s == Approx(1.0 + 134e-9).epsilon(1e-12));
    // 4 output tokens; the run ends at the trace's 20 s.
    CHECK(r.throughput_tok_s == Approx(4.0 / 20));
  }
}

TEST_CASE("governor sim: a policy that commits more than the machine has is an OOM event",
          "[sim]") {
  const CostModel cost(unit_machine());
  Trace trace = unit_trace();
  // Another process takes 12 GiB from t = 1.5 s (ramp 0.1 s) while the first request runs:
  // static partitioning holds its 4 GiB share (16 x 0.25) regardless: 1 (OS) + 12 + 4 > 16.
  trace.host = {{.at_s = 1.5, .bytes = 12 * kGiB, .ramp_s = 0.1, .hold_s = 30}};
  SimOptions options;
  options.os_reserve_bytes = 1 * kGiB;
  const SimResult fixed = simulate(trace, cost, Policy::kStatic, options);
  CHECK(fixed.oom_events == 1);
  CHECK(fixed.outcomes[0].failure == "oom");
  CHECK(fixed.outcomes[1].failure == "oom");  // arrived while the host was out of memory
  CHECK(fixed.met_slo == 0);
  CHECK(fixed.failures.at("oom") == 2);
  // The governor holds the weights (0.93 GiB) and a granule of KV: 1 + 12 + 0.93 + 1 (its
  // reserve) < 16.
  const SimResult governed = simulate(trace, cost, Policy::kSparkd, options);
  CHECK(governed.oom_events == 0);
  CHECK(governed.met_slo == 2);
  CHECK(governed.invariant_violations.empty());
}

TEST_CASE("governor sim: the same seed gives the same trace file and the same results", "[sim]") {
  const CostModel cost(spark());
  for (const std::string& name : trace_generator_names()) {
    INFO(name);
    auto one = generate_trace(name, 7);
    auto two = generate_trace(name, 7);
    REQUIRE(one.has_value());
    REQUIRE(two.has_value());
    const fs::path a = temp_path("a.jsonl");
    const fs::path b = temp_path("b.jsonl");
    REQUIRE(write_trace(*one, a.string()).is_ok());
    REQUIRE(write_trace(*two, b.string()).is_ok());
    CHECK(read_all(a) == read_all(b));
    // Another seed, another trace.
    auto other = generate_trace(name, 8);
    REQUIRE(write_trace(*other, b.string()).is_ok());
    CHECK(read_all(a) != read_all(b));
    // The file replays: read back, it simulates exactly like the generated trace.
    auto replayed = read_trace(a.string());
    REQUIRE(replayed.has_value());
    fs::remove(a);
    fs::remove(b);
    REQUIRE(replayed->requests.size() == one->requests.size());
    const SimResult first = simulate(*one, cost, Policy::kSparkd);
    const SimResult again = simulate(*replayed, cost, Policy::kSparkd);
    CHECK(results_table({first}) == results_table({again}));
    CHECK(memory_csv({first}) == memory_csv({again}));
    CHECK(outcomes_csv(*one, {first}) == outcomes_csv(*replayed, {again}));
  }
}

TEST_CASE("governor sim: every policy keeps the invariants on every trace, checked at every event",
          "[sim]") {
  const CostModel cost(spark());
  for (const std::string& name : trace_generator_names()) {
    auto trace = generate_trace(name, 1);
    REQUIRE(trace.has_value());
    for (Policy policy : all_policies()) {
      INFO(name << " / " << policy_name(policy));
      const SimResult r = simulate(*trace, cost, policy);
      CHECK(r.invariant_violations.empty());
      CHECK(r.invariant_checks == r.events);
      CHECK(r.requests == trace->requests.size());
      CHECK(r.completed + [&] {
        uint64_t failed = 0;
        for (const auto& [reason, n] : r.failures) failed += n;
        return failed;
      }() == r.requests);
      CHECK(r.met_slo <= r.completed);
      // sparkd's governor never takes the host out of memory, and never holds more than
      // the machine minus what the OS holds and its reserve.
      if (policy == Policy::kSparkd) {
        CHECK(r.oom_events == 0);
        CHECK(r.peak_committed_bytes <= cost.machine().memory_bytes - cost.machine().os_bytes -
                                            SimOptions{}.os_reserve_bytes);
      }
    }
  }
}

TEST_CASE("governor sim: bench/README.md shows what the simulator computes", "[sim]") {
  // tools/bench/governor_bench.sh writes the tables; the simulator is deterministic, so they
  // must be exactly what it computes now for both profiles (seed 1).
  const std::string readme = read_all(std::string(SPARKD_SOURCE_DIR) + "/bench/README.md");
  for (const std::string profile_name : {"dgx-spark", "this-machine"}) {
    auto profile = load_machine_profile(std::string(SPARKD_SOURCE_DIR) + "/bench/profiles/" +
                                        profile_name + ".toml");
    REQUIRE(profile.has_value());
    const CostModel cost(*profile);
    for (const std::string& name : trace_generator_names()) {
      INFO(profile_name << " / " << name << ": run tools/bench/governor_bench.sh");
      auto trace = generate_trace(name, 1);
      REQUIRE(trace.has_value());
      CHECK(readme.find(results_table(simulate_all(*trace, cost))) != std::string::npos);
    }
  }
  // And the summary over seeds 1-5 (dgx-spark): sparkd never takes the host out of memory.
  auto spark_profile =
      load_machine_profile(std::string(SPARKD_SOURCE_DIR) + "/bench/profiles/dgx-spark.toml");
  REQUIRE(spark_profile.has_value());
  const CostModel cost(*spark_profile);
  const std::vector<uint64_t> seeds = {1, 2, 3, 4, 5};
  for (const std::string& name : trace_generator_names()) {
    INFO("dgx-spark / " << name << " over seeds 1-5: run tools/bench/governor_bench.sh");
    std::vector<std::vector<SimResult>> by_seed;
    for (uint64_t seed : seeds) {
      auto trace = generate_trace(name, seed);
      REQUIRE(trace.has_value());
      by_seed.push_back(simulate_all(*trace, cost));
      CHECK(by_seed.back().front().oom_events == 0);
    }
    CHECK(readme.find(seeds_table(seeds, by_seed)) != std::string::npos);
  }
}

TEST_CASE("governor sim: a bad trace file fails with its line and reason", "[sim]") {
  auto trace = generate_trace("judge-pipeline", 1);
  REQUIRE(trace.has_value());
  const fs::path path = temp_path("bad.jsonl");
  REQUIRE(write_trace(*trace, path.string()).is_ok());
  std::string text = read_all(path);
  // The third line's model becomes one the header does not have.
  const size_t third = text.find('\n', text.find('\n') + 1) + 1;
  const size_t model = text.find("\"model\":\"", third) + 9;
  text.replace(model, text.find('"', model) - model, "nobody");
  std::ofstream(path, std::ios::trunc) << text;
  auto bad = read_trace(path.string());
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.status().message().find("line 3") != std::string::npos);
  CHECK(bad.status().message().find("unknown model \"nobody\"") != std::string::npos);
  std::ofstream(path, std::ios::trunc) << "{not json\n";
  bad = read_trace(path.string());
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.status().message().find("line 1") != std::string::npos);
  fs::remove(path);
  CHECK_FALSE(read_trace(path.string()).has_value());
  CHECK_FALSE(generate_trace("no-such-trace", 1).has_value());
}

TEST_CASE("governor sim: machine profiles load, and bad ones name the key", "[sim]") {
  const MachineProfile p = spark();
  CHECK(p.name == "dgx-spark");
  CHECK(p.bandwidth_gbs == 273);
  CHECK(p.memory_bytes == 128 * kGiB);
  const fs::path path = temp_path("profile.toml");
  std::ofstream(path) << "name = \"x\"\nbandwidth_gbs = -1\n";
  auto bad = load_machine_profile(path.string());
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.status().message().find("bandwidth_gbs") != std::string::npos);
  std::ofstream(path, std::ios::trunc) << "name = [\n";
  CHECK_FALSE(load_machine_profile(path.string()).has_value());
  fs::remove(path);
}

TEST_CASE("governor sim: a CPU profile adds streaming and computing, small steps at their rate",
          "[sim]") {
  MachineProfile cpu = unit_machine();
  cpu.compute_tflops = 1e-3;  // 1 GFLOP/s for large steps
  cpu.overlap = false;
  cpu.small_step_tokens = 4;
  cpu.small_step_tflops = 0.5e-3;
  const CostModel cost(cpu);
  ModelShape dense;
  dense.dense_params = 1e9;
  dense.bytes_per_param = 1;
  dense.layers = 1;
  dense.q_width = 1;
  dense.kv_heads = 1;
  dense.head_dim = 1;
  // 2 tokens: 1 s of weights + 4e9 FLOPs at the small-step 0.5 GFLOP/s, added.
  const std::vector<ChunkShape> two = {{0, 1}, {0, 1}};
  const StepCost small = cost.decoder_step(dense, two);
  CHECK(small.seconds == Approx(small.bytes / 1e9 + small.flops / 0.5e9));
  // 8 tokens: past small_step_tokens, at the large rate.
  const std::vector<ChunkShape> eight = {{0, 8}};
  const StepCost large = cost.decoder_step(dense, eight);
  CHECK(large.seconds == Approx(large.bytes / 1e9 + large.flops / 1e9));
  // A GPU profile overlaps them.
  cpu.overlap = true;
  const CostModel gpu(cpu);
  CHECK(gpu.decoder_step(dense, eight).seconds == Approx(large.flops / 1e9));
  // The committed CPU profile says so.
  auto measured =
      load_machine_profile(std::string(SPARKD_SOURCE_DIR) + "/bench/profiles/this-machine.toml");
  REQUIRE(measured.has_value());
  CHECK_FALSE(measured->overlap);
  CHECK(measured->small_step_tokens == 64);
  CHECK(measured->small_step_tflops > 0);
}

TEST_CASE("governor sim: an MoE step reads only the experts its tokens route to", "[sim]") {
  const CostModel cost(unit_machine());
  ModelShape moe;
  moe.dense_params = 1e9;
  moe.expert_params = 64e9;
  moe.experts = 64;
  moe.experts_per_token = 4;
  moe.bytes_per_param = 1;
  moe.layers = 1;
  moe.q_width = 1;
  moe.kv_heads = 1;
  moe.head_dim = 1;
  // One token: 4 of 64 experts (4e9 bytes) and the dense part; no KV yet.
  const std::vector<ChunkShape> one = {{0, 1}};
  CHECK(cost.decoder_step(moe, one).bytes == Approx(1e9 + 4e9 + 4));
  // Two tokens in a step: the experts either routes to, 1 - (60/64)^2 of them.
  const std::vector<ChunkShape> two = {{0, 1}, {0, 1}};
  CHECK(cost.decoder_step(moe, two).bytes == Approx(1e9 + 64e9 * (1 - std::pow(60.0 / 64, 2)) + 8));
  CHECK(moe.active_params() == Approx(5e9));
  CHECK(cost.load_seconds(moe) == Approx(65));
}

}  // namespace
