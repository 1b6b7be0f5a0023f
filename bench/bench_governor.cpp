// bench_governor: the memory governor against what users run today, on traces of their
// workloads, in the trace simulator of bench/sim (the daemon's own governor, scheduler,
// prefix cache and KV block accounting under a simulated clock; forward passes replaced by
// the roofline cost model of a machine profile).
//
//   bench_governor --profile bench/profiles/dgx-spark.toml [--traces rag-office,...]
//                  [--trace-file FILE.jsonl] [--seed N] [--policies sparkd,static,...]
//                  [--out DIR] [--no-invariants] [--log] [--seeds FIRST-LAST]
//
// For each trace (generated from --seed, or read from --trace-file) it runs every policy and
// prints a markdown table; with --out it also writes, per trace, TRACE.jsonl (the replayable
// trace), TRACE.md (the table), TRACE-memory.csv, TRACE-summary.csv and TRACE-outcomes.csv
// (what tools/bench/plot_governor.py draws). --log prints the governor's actions with their
// simulated time. --seeds runs every generated trace for each seed of the range instead and
// prints, per trace, one table of SLO attainment and OOM events by policy and seed. The exit
// status is 1 when an invariant broke.
#include <cstdio>
#include <cstdlib>
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

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = list.find(',', start);
    const size_t end = comma == std::string::npos ? list.size() : comma;
    if (end > start) parts.push_back(list.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return parts;
}

bool write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  return static_cast<bool>(out);
}

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "bench_governor: %s\nusage: bench_governor --profile FILE [--traces a,b] "
               "[--trace-file FILE] [--seed N] [--policies p,q] [--out DIR] [--no-invariants] "
               "[--log] [--seeds FIRST-LAST]\n",
               problem.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string profile_path;
  std::vector<std::string> trace_names = trace_generator_names();
  std::string trace_file;
  uint64_t seed = 1;
  std::vector<Policy> policies = all_policies();
  std::string out_dir;
  std::vector<uint64_t> seeds;  // --seeds: the summary over seeds instead
  SimOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--profile") {
      profile_path = value();
    } else if (arg == "--traces") {
      trace_names = split(value());
    } else if (arg == "--trace-file") {
      trace_file = value();
    } else if (arg == "--seed") {
      seed = std::stoull(value());
    } else if (arg == "--policies") {
      policies.clear();
      for (const std::string& name : split(value())) {
        bool known = false;
        for (Policy p : all_policies()) {
          if (name == policy_name(p)) policies.push_back(p), known = true;
        }
        if (!known) usage("unknown policy \"" + name + "\"");
      }
    } else if (arg == "--out") {
      out_dir = value();
    } else if (arg == "--seeds") {
      const std::string range = value();
      const size_t dash = range.find('-');
      if (dash == std::string::npos) usage("--seeds takes FIRST-LAST");
      const uint64_t first = std::stoull(range.substr(0, dash));
      const uint64_t last = std::stoull(range.substr(dash + 1));
      if (last < first || last - first > 100) usage("--seeds: a range of at most 100 seeds");
      for (uint64_t s = first; s <= last; ++s) seeds.push_back(s);
    } else if (arg == "--log") {
      options.governor_log = [](double t, const std::string& line) {
        std::fprintf(stderr, "t=%.3f %s\n", t, line.c_str());
      };
    } else if (arg == "--no-invariants") {
      options.check_invariants = false;
    } else {
      usage("unknown argument " + arg);
    }
  }
  if (profile_path.empty()) usage("--profile is required");
  auto profile = load_machine_profile(profile_path);
  if (!profile) usage(profile.status().to_string());
  const CostModel cost(*profile);

  if (!seeds.empty()) {
    bool seeds_broken = false;
    std::printf("machine profile %s, seeds %llu-%llu: SLO attainment (OOM events)\n\n",
                profile->name.c_str(), static_cast<unsigned long long>(seeds.front()),
                static_cast<unsigned long long>(seeds.back()));
    for (const std::string& name : trace_names) {
      std::vector<std::vector<SimResult>> by_seed;
      for (uint64_t s : seeds) {
        auto trace = generate_trace(name, s);
        if (!trace) usage(trace.status().to_string());
        by_seed.emplace_back();
        for (Policy policy : policies) {
          by_seed.back().push_back(simulate(*trace, cost, policy, options));
          for (const std::string& v : by_seed.back().back().invariant_violations) {
            std::fprintf(stderr, "%s seed %llu / %s: invariant broken: %s\n", name.c_str(),
                         static_cast<unsigned long long>(s), policy_name(policy), v.c_str());
            seeds_broken = true;
          }
        }
      }
      std::printf("## %s\n\n%s\n", name.c_str(), seeds_table(seeds, by_seed).c_str());
    }
    return seeds_broken ? 1 : 0;
  }

  std::vector<Trace> traces;
  if (!trace_file.empty()) {
    auto trace = read_trace(trace_file);
    if (!trace) usage(trace.status().to_string());
    traces.push_back(std::move(trace).value());
  } else {
    for (const std::string& name : trace_names) {
      auto trace = generate_trace(name, seed);
      if (!trace) usage(trace.status().to_string());
      traces.push_back(std::move(trace).value());
    }
  }
  if (!out_dir.empty()) std::filesystem::create_directories(out_dir);

  std::printf(
      "machine profile %s: %.0f GB/s, %.1f TFLOPS, %.0f GiB (OS %.1f GiB), loads at %.1f GB/s, "
      "%.2f ms a step\n\n",
      profile->name.c_str(), profile->bandwidth_gbs, profile->compute_tflops,
      double(profile->memory_bytes) / double(1ull << 30),
      double(profile->os_bytes) / double(1ull << 30), profile->load_gbs, profile->step_overhead_ms);
  bool broken = false;
  for (const Trace& trace : traces) {
    std::vector<SimResult> results;
    for (Policy policy : policies) {
      results.push_back(simulate(trace, cost, policy, options));
      const SimResult& r = results.back();
      for (const std::string& v : r.invariant_violations) {
        std::fprintf(stderr, "%s / %s: invariant broken: %s\n", trace.name.c_str(),
                     r.policy.c_str(), v.c_str());
        broken = true;
      }
    }
    const std::string table = results_table(results);
    std::printf("## %s (seed %llu, %zu requests, %.0f s)\n\n%s\n", trace.name.c_str(),
                static_cast<unsigned long long>(trace.seed), trace.requests.size(),
                trace.duration_s, table.c_str());
    if (out_dir.empty()) continue;
    const std::filesystem::path dir = out_dir;
    const auto status = write_trace(trace, (dir / (trace.name + ".jsonl")).string());
    if (!status.is_ok() || !write_file(dir / (trace.name + ".md"), table) ||
        !write_file(dir / (trace.name + "-memory.csv"), memory_csv(results)) ||
        !write_file(dir / (trace.name + "-summary.csv"), summary_csv(results)) ||
        !write_file(dir / (trace.name + "-outcomes.csv"), outcomes_csv(trace, results))) {
      std::fprintf(stderr, "bench_governor: cannot write results under %s\n", out_dir.c_str());
      return 2;
    }
  }
  return broken ? 1 : 0;
}
