#include "bench/sim/report.h"

#include <cstdio>

namespace sparkd::sim {
namespace {

std::string fixed(double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

std::string gib(uint64_t bytes) {
  return fixed(double(bytes) / double(1ull << 30), 1);
}

std::string failures(const SimResult& r) {
  std::string text;
  for (const auto& [reason, count] : r.failures) {
    if (!text.empty()) text += ", ";
    text += reason + " " + std::to_string(count);
  }
  return text.empty() ? "-" : text;
}

}  // namespace

std::string results_table(const std::vector<SimResult>& results) {
  std::string out =
      "| policy | goodput (req/s) | SLO attainment | TTFT p50 / p99 (s) | ITL p50 / p99 (ms) | "
      "throughput (tok/s) | device busy | loads / evictions | preemptions | peak committed (GiB) | "
      "OOM events "
      "| failed |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (const SimResult& r : results) {
    out += "| " + r.policy + " | " + fixed(r.goodput_rps, 3) + " | " +
           fixed(100 * r.slo_attainment, 1) + " % | " + fixed(r.ttft_p50_s, 2) + " / " +
           fixed(r.ttft_p99_s, 2) + " | " + fixed(1000 * r.itl_p50_s, 0) + " / " +
           fixed(1000 * r.itl_p99_s, 0) + " | " + fixed(r.throughput_tok_s, 0) + " | " +
           fixed(100 * r.device_utilization, 0) + " % | " + std::to_string(r.loads) + " / " +
           std::to_string(r.evictions) + " | " + std::to_string(r.preemptions) + " | " +
           gib(r.peak_committed_bytes) + " | " + std::to_string(r.oom_events) + " | " +
           failures(r) + " |\n";
  }
  return out;
}

std::string seeds_table(const std::vector<uint64_t>& seeds,
                        const std::vector<std::vector<SimResult>>& by_seed) {
  std::string out = "| policy |";
  std::string rule = "|---|";
  for (uint64_t seed : seeds) {
    out += " seed " + std::to_string(seed) + " |";
    rule += "---:|";
  }
  out += "\n" + rule + "\n";
  if (by_seed.empty()) return out;
  for (size_t p = 0; p < by_seed.front().size(); ++p) {
    out += "| " + by_seed.front()[p].policy + " |";
    for (const std::vector<SimResult>& results : by_seed) {
      const SimResult& r = results.at(p);
      out += " " + fixed(100 * r.slo_attainment, 1) + " %";
      if (r.oom_events > 0) out += " (" + std::to_string(r.oom_events) + " OOM)";
      out += " |";
    }
    out += "\n";
  }
  return out;
}

std::string memory_csv(const std::vector<SimResult>& results) {
  std::string out = "t_s,policy,committed_gib,host_gib\n";
  for (const SimResult& r : results) {
    for (const MemorySample& s : r.memory) {
      out += fixed(s.t_s, 2) + "," + r.policy + "," + gib(s.committed_bytes) + "," +
             gib(s.host_bytes) + "\n";
    }
  }
  return out;
}

std::string summary_csv(const std::vector<SimResult>& results) {
  std::string out = "policy,goodput_rps,slo_attainment,oom_events,peak_committed_gib\n";
  for (const SimResult& r : results) {
    out += r.policy + "," + fixed(r.goodput_rps, 4) + "," + fixed(r.slo_attainment, 4) + "," +
           std::to_string(r.oom_events) + "," + gib(r.peak_committed_bytes) + "\n";
  }
  return out;
}

std::string outcomes_csv(const Trace& trace, const std::vector<SimResult>& results) {
  std::string out = "policy,request,model,arrival_s,completed,met_slo,failure,ttft_s,tpot_s\n";
  for (const SimResult& r : results) {
    for (size_t i = 0; i < r.outcomes.size(); ++i) {
      const RequestOutcome& o = r.outcomes[i];
      const TraceRequest& spec = trace.requests[i];
      out += r.policy + "," + std::to_string(i) + "," +
             trace.models[static_cast<size_t>(spec.model)].name + "," + fixed(spec.arrival_s, 3) +
             "," + (o.completed ? "1" : "0") + "," + (o.met_slo ? "1" : "0") + "," + o.failure +
             "," + fixed(o.ttft_s, 4) + "," + fixed(o.tpot_s, 4) + "\n";
    }
  }
  return out;
}

}  // namespace sparkd::sim
