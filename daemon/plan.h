// `sparkd plan`: what a config would hold on this machine, before a weight is read.
//
// Reads every model's file headers and config.json (engine/tasks/model_footprint), then
// admits the pinned models into a private MemoryGovernor exactly as a start would (same
// ledger, same budget from MemAvailable and os_reserve), and tries each on_demand model on
// top of them. The verdict is the governor's own: a plan that says "fits" starts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/config.h"
#include "engine/tasks/model_footprint.h"
#include "governor/memory_governor.h"

namespace sparkd::daemon {

struct PlannedModel {
  std::string name, task, residency;
  int32_t priority = 0;
  uint64_t weights_bytes = 0;
  uint64_t workspace_bytes = 0;
  uint64_t kv_bytes_per_token = 0;  // generate models
  uint64_t kv_min_bytes = 0;
  uint64_t kv_max_bytes = 0;   // the pool's cap, granule rounding included
  uint64_t kv_min_tokens = 0;  // context tokens kv_min guarantees
  uint64_t kv_max_tokens = 0;  // context tokens kv_max can hold
  uint64_t least_bytes = 0;    // what loading it reserves: weights + workspace + kv_min
  // "fits", or why not ("never fits: ...", "does not fit beside the pinned models: ...",
  // or the error reading its files).
  std::string verdict;
  std::string detail;  // when it does not fit: the governor's reason, with the numbers
  bool fits = false;
};

struct Plan {
  std::string config_path;
  uint64_t budget_bytes = 0;             // now, on this machine
  uint64_t configured_budget_bytes = 0;  // 0: auto
  uint64_t mem_available_bytes = 0;
  uint64_t os_reserve_bytes = 0;
  uint64_t baseline_bytes = 0;  // the daemon before any model (this process, as measured)
  uint64_t pinned_bytes = 0;    // baseline + every pinned model's least_bytes
  bool pinned_fit = false;
  std::vector<PlannedModel> models;
  std::vector<std::string> advice;  // what to change, when something does not fit
};

// What a model's config asks of its footprint: its batch sizes, KV block size and cap.
tasks::FootprintOptions footprint_options(const ModelConfig& model);

// `machine` is where MemAvailable and MemTotal come from (a ProcMemorySource on the config's
// paths, or a test's).
Plan make_plan(const DaemonConfig& config, governor::MachineMemorySource& machine,
               uint64_t baseline_bytes);

std::string plan_text(const Plan& plan);
std::string plan_json(const Plan& plan);

}  // namespace sparkd::daemon
