// What the governor's simulator writes: one markdown table per trace (a row per policy), and
// the CSV files the plot is drawn from.
#pragma once

#include <string>
#include <vector>

#include "bench/sim/simulator.h"

namespace sparkd::sim {

// The results of every policy on one trace, as a markdown table.
std::string results_table(const std::vector<SimResult>& results);
// One trace over several seeds: a row per policy, a column per seed, each cell the SLO
// attainment and the OOM events. `by_seed[i]` holds every policy's result for `seeds[i]`.
std::string seeds_table(const std::vector<uint64_t>& seeds,
                        const std::vector<std::vector<SimResult>>& by_seed);
// t_s, policy, committed_gib, host_gib: one row per sample of every policy.
std::string memory_csv(const std::vector<SimResult>& results);
// policy, goodput_rps, slo_attainment, oom_events, peak_committed_gib: one row per policy.
std::string summary_csv(const std::vector<SimResult>& results);
// policy, request, completed, met_slo, failure, ttft_s, tpot_s: one row per request.
std::string outcomes_csv(const Trace& trace, const std::vector<SimResult>& results);

}  // namespace sparkd::sim
