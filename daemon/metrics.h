// Prometheus metrics for the daemon: plain structs in, `sparkd_*` series out.
//
// engine/ and governor/ expose plain counters (ModelSnapshot, SystemSnapshot); this file is
// the only place that maps them to prometheus-cpp types and serves them over HTTP at
// http://LISTEN/metrics. Snapshots are pulled right before each scrape, so a scrape always
// shows current gauges without a timer thread; per-request events are pushed as they happen.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "governor/system_memory.h"

namespace prometheus {
class Exposer;
class Registry;
class Gauge;
class Counter;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace sparkd::daemon {

using governor::MemoryPressure;

// Cumulative counters and current gauges, read from one resident model's runner. Counters
// restart at 0 when a model is unloaded and loaded again.
struct ModelSnapshot {
  std::string model, task;  // task: embed | rerank | generate
  uint64_t weights_bytes = 0, kv_granted_bytes = 0, kv_used_bytes = 0, prefix_cached_bytes = 0;
  uint64_t workspace_bytes = 0, kv_min_bytes = 0, kv_max_bytes = 0, kv_rounding_waste_bytes = 0;
  uint64_t recurrent_state_bytes = 0;  // Qwen3.5's per-sequence state (within kv_used_bytes)
  uint64_t queue_depth = 0, running = 0, waiting_for_memory = 0;
  uint64_t preemptions_total = 0, prefix_cache_hit_blocks_total = 0,
           prefix_cache_queried_blocks_total = 0;
  uint64_t prompt_tokens_total = 0, generated_tokens_total = 0;
  double decode_bytes_per_second = 0;  // effective bandwidth of the last decode steps
};

// The governor's figures (governor/memory_governor.h, LedgerSnapshot).
struct GovernorSnapshot {
  uint64_t ledger_bytes = 0, held_bytes = 0, free_bytes = 0, baseline_bytes = 0,
           os_reserve_bytes = 0, load_reserved_bytes = 0, reclaim_pending_bytes = 0;
  bool under_pressure = false;
  uint64_t grants_refused_total = 0, pressure_episodes_total = 0;
  std::map<std::string, uint64_t> reclaims_total;         // by kind
  std::map<std::string, uint64_t> reclaimed_bytes_total;  // by kind: asked of the victims
  std::map<std::string, uint64_t> loads_total;            // by outcome
};

struct SystemSnapshot {
  uint64_t mem_available_bytes = 0, mem_total_bytes = 0, governor_budget_bytes = 0;
  uint64_t process_resident_bytes = 0;  // the daemon's RSS (/proc/self/statm)
  GovernorSnapshot governor;
  std::optional<MemoryPressure> pressure;  // absent without PSI
  uint32_t connections = 0, requests_in_flight = 0;
  // Connections the daemon closed for a reason of its own, by reason (cumulative):
  // max_connections, frame_too_large, frame_timeout, idle, request_timeout (HTTP).
  std::map<std::string, uint64_t> connections_closed_total;
};

enum class RequestOutcome {
  kOk,
  kInvalid,
  kNotFound,
  kCancelled,
  kDeadline,
  kResourceExhausted,
  kUnavailable,
  kPermissionDenied,
  kError
};
// The `outcome` label value: ok, invalid, not_found, cancelled, deadline,
// resource_exhausted, unavailable, permission_denied, error.
const char* request_outcome_label(RequestOutcome outcome);

struct RequestObservation {
  std::string model, task;
  double queue_s = 0, e2e_s = 0;
  std::optional<double> ttft_s;  // generate requests that produced a token
  uint64_t prompt_tokens = 0, completion_tokens = 0;
};

using MetricsRefresh = std::function<void(std::vector<ModelSnapshot>&, SystemSnapshot&)>;

class Metrics {
 public:
  // Starts the HTTP exposer on `listen` ("host:port", host a numeric IPv4 address, a
  // bracketed IPv6 one or localhost; port 0 picks a free port). `refresh` is called (on the
  // exposer's thread, and by render_text) right before each scrape to fetch fresh snapshots; it
  // must be thread-safe. INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it cannot bind.
  static Expected<std::unique_ptr<Metrics>> start(const std::string& listen,
                                                  MetricsRefresh refresh);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  uint16_t port() const { return port_; }  // the bound port (useful with port 0)

  // Thread-safe, all of them.
  // One answered request (sparkd_requests_total): every request, whatever its kind (`task`:
  // embed, generate, health, ...) and however it ended. `model` is "" when the request names
  // no model the daemon has; `api` is the front end it came through ("socket" | "http").
  void count_request(const std::string& model, const std::string& task, RequestOutcome outcome,
                     const std::string& api = "socket");
  // The latency histograms of a request a model ran (queue, end to end, time to first token);
  // count_request counts it.
  void observe_request(const RequestObservation& request);
  void observe_inter_token(const std::string& model, double seconds);
  void observe_model_load(const std::string& model, double seconds, bool ok);
  void count_eviction(const std::string& model, const std::string& reason);

  // The exposition text, as the page serves it (refreshed first): for tests and logs.
  std::string render_text();

 private:
  class RefreshingCollectable;
  struct Families;
  // Last cumulative values seen per model, to turn snapshots into counter increments.
  struct CumulativeSeen {
    uint64_t preemptions = 0, prefix_cache_hit_blocks = 0, prefix_cache_queried_blocks = 0,
             prompt_tokens = 0, generated_tokens = 0;
  };
  using ModelKey = std::pair<std::string, std::string>;  // (model, task)

  explicit Metrics(MetricsRefresh refresh);
  // Pulls snapshots and applies them; called with refresh_mutex_ held.
  void refresh_locked();
  void apply_models_locked(const std::vector<ModelSnapshot>& models);
  void apply_system_locked(const SystemSnapshot& system);

  MetricsRefresh refresh_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
  std::shared_ptr<RefreshingCollectable> collectable_;
  // Serialises refresh + collect: the exposer serves scrapes on more than one thread.
  std::mutex refresh_mutex_;
  std::map<ModelKey, CumulativeSeen> seen_models_;            // guarded by refresh_mutex_
  uint64_t seen_some_stall_us_ = 0, seen_full_stall_us_ = 0;  // guarded by refresh_mutex_
  std::map<std::string, uint64_t> seen_connections_closed_;   // guarded by refresh_mutex_
  // Cumulative governor counters last seen, by series ("reclaims/prefix_cache", ...).
  std::map<std::string, uint64_t> seen_governor_;  // guarded by refresh_mutex_
  uint16_t port_ = 0;
  // Last: destroyed first, so no scrape thread outlives what it reads.
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace sparkd::daemon
