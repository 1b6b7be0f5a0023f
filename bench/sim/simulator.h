// The governor's trace simulator: a deterministic discrete-event simulation of one machine
// serving a trace under one memory policy. It drives the daemon's own code under a simulated
// clock: per model a real sched::Scheduler over a real kv::PrefixCache over a KvBlockPool
// (ledger-only: the same blocks, groups and granules, no memory), demands applied through
// sched/kv_reclaim.h, and, for sparkd's policy, the real governor::MemoryGovernor with its
// reclaim policy, fed the machine's figures by the simulation. Only the forward passes are
// replaced, by the roofline cost model (cost_model.h).
//
// The machine: one device runs one forward step at a time (models time-share it, as processes
// share a GPU), steps go in the order they are planned; one disk reads model files, one load
// at a time. Memory: MemTotal, what the OS holds, the trace's host bursts, and what the
// policy commits. A policy that commits more than the machine has is an OOM event (on a Spark,
// a wedged host): every request in flight then, or arriving while it lasts, fails.
//
// The policies, each as its users configure it (Trace::models and Trace::baselines):
//  - sparkd: the memory governor. Pinned models load at the start, on_demand ones on first
//    use; KV is granted granule by granule and reclaimed by the governor's policy.
//  - static: every model in its own process with a fixed share of memory (vLLM's
//    gpu_memory_utilization): weights, workspace and KV committed at start; a model whose
//    weights do not fit its share never starts.
//  - count-lru: at most N models loaded, the least recently used idle one unloaded to make
//    room, each with a fixed KV of parallel x context tokens committed at load (Ollama's
//    scheduler, llama.cpp's router). Memory is not checked before a load.
//  - no-governor: sparkd before the governor: every model pinned, one fixed KV budget shared
//    first come first served.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench/sim/cost_model.h"
#include "bench/sim/trace.h"

namespace sparkd::sim {

enum class Policy { kSparkd, kStatic, kCountLru, kNoGovernor };
const char* policy_name(Policy policy);  // "sparkd", "static", "count-lru", "no-governor"
std::vector<Policy> all_policies();

struct SimOptions {
  int32_t block_tokens = 16;
  uint64_t os_reserve_bytes = 8ull << 30;  // the governor's floor (config [governor])
  double tick_s = 0.25;                    // the daemon's refresh period
  // Record the committed memory every this many seconds, for the plots.
  double timeline_step_s = 5;
  // Check the governor's and the pools' invariants at every event (slower).
  bool check_invariants = true;
  // The governor's log lines (reclaims, evictions, pressure), with the simulated time.
  std::function<void(double t_s, const std::string& line)> governor_log;
};

// What became of one request.
struct RequestOutcome {
  bool completed = false;
  bool met_slo = false;
  std::string failure;  // why it did not complete: "deadline", "oom", "not_started", ...
  double ttft_s = -1;
  double tpot_s = 0;
  int32_t output_tokens = 0;
};

struct MemorySample {
  double t_s = 0;
  uint64_t committed_bytes = 0;  // by the serving process(es)
  uint64_t host_bytes = 0;       // the OS and other processes
};

struct SimResult {
  std::string trace;
  std::string policy;
  double makespan_s = 0;  // until the last request finished (at least the trace's duration)
  uint64_t requests = 0;
  uint64_t completed = 0;
  uint64_t met_slo = 0;
  double goodput_rps = 0;                 // requests meeting their SLOs per second of the trace
  double slo_attainment = 0;              // of all requests
  double ttft_p50_s = 0, ttft_p99_s = 0;  // completed requests
  double itl_p50_s = 0, itl_p99_s = 0;    // every gap between two tokens of a request
  double throughput_tok_s = 0;            // output tokens of completed requests per second
  double device_utilization = 0;          // of the makespan, the device ran steps
  uint64_t loads = 0;
  uint64_t evictions = 0;
  uint64_t preemptions = 0;
  uint64_t peak_committed_bytes = 0;
  uint64_t oom_events = 0;
  std::map<std::string, uint64_t> failures;  // by reason
  uint64_t events = 0;
  uint64_t invariant_checks = 0;
  std::vector<std::string> invariant_violations;  // the first few, with their time
  std::vector<MemorySample> memory;
  std::vector<RequestOutcome> outcomes;  // by trace order
};

SimResult simulate(const Trace& trace, const CostModel& cost, Policy policy,
                   const SimOptions& options = {});

}  // namespace sparkd::sim
