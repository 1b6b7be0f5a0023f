#include "daemon/metrics.h"

#include <arpa/inet.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <charconv>
#include <exception>
#include <iostream>
#include <set>

namespace sparkd::daemon {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;

// Bucket bounds in seconds, after vLLM's, extended downwards: embed/rerank requests and a
// small model's decode steps on an H100 finish in milliseconds, where vLLM's first buckets
// would lump everything together.
const Histogram::BucketBoundaries kRequestSecondsBuckets = {
    0.001, 0.0025, 0.005, 0.01,  0.025, 0.05,  0.1,    0.3,   0.5,  0.8,
    1.0,   1.5,    2.0,   2.5,   5.0,   10.0,  15.0,   20.0,  30.0, 40.0,
    50.0,  60.0,   120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const Histogram::BucketBoundaries kTimeToFirstTokenBuckets = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
    1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const Histogram::BucketBoundaries kInterTokenBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,
    0.4,   0.5,    0.75,  1.0,  2.5,   5.0,  7.5,   10.0, 20.0, 40.0, 80.0};
// Loads go from a 90 MB embedder (well under a second) to a 70 GB LLM read from disk.
const Histogram::BucketBoundaries kModelLoadBuckets = {
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0};

template <typename T>
Family<T>& build(prometheus::Registry& registry, const std::string& name, const std::string& help);
template <>
Family<Gauge>& build(prometheus::Registry& registry, const std::string& name,
                     const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}
template <>
Family<Counter>& build(prometheus::Registry& registry, const std::string& name,
                       const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}
template <>
Family<Histogram>& build(prometheus::Registry& registry, const std::string& name,
                         const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

// A cumulative value that should only grow; when it shrank, its source restarted at 0
// (a model unloaded and loaded again between two scrapes), so all of it is new.
uint64_t increase_since(uint64_t previous, uint64_t current) {
  return current >= previous ? current - previous : current;
}

template <typename T>
void remove_series(Family<T>& family, const Labels& labels) {
  if (family.Has(labels)) family.Remove(&family.Add(labels));
}

// "127.0.0.1:9464", "[::1]:9464" or "localhost:9464" -> the address civetweb can bind
// (it takes numeric hosts only, so localhost becomes 127.0.0.1), or why it is malformed.
Expected<std::string> to_bind_address(const std::string& listen) {
  auto invalid = [&](const std::string& why) {
    return Status(StatusCode::kInvalidArgument,
                  "metrics listen address '" + listen + "' " + why +
                      "; expected host:port with a numeric IPv4 address, [IPv6] or localhost, e.g. "
                      "127.0.0.1:9464 (port 0 picks a free port)");
  };
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return invalid("has no port");
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  unsigned port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return invalid("has port '" + port_text + "', not a number 0..65535");
  }
  if (host == "localhost") {
    host = "127.0.0.1";
  } else if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    in6_addr address6{};
    if (::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &address6) != 1) {
      return invalid("has host '" + host + "', not an IPv6 address");
    }
  } else {
    in_addr address4{};
    if (::inet_pton(AF_INET, host.c_str(), &address4) != 1) {
      return invalid("has host '" + host + "', not a numeric IPv4 address");
    }
  }
  return host + ":" + port_text;
}

}  // namespace

const char* request_outcome_label(RequestOutcome outcome) {
  switch (outcome) {
    case RequestOutcome::kOk:
      return "ok";
    case RequestOutcome::kInvalid:
      return "invalid";
    case RequestOutcome::kNotFound:
      return "not_found";
    case RequestOutcome::kCancelled:
      return "cancelled";
    case RequestOutcome::kDeadline:
      return "deadline";
    case RequestOutcome::kResourceExhausted:
      return "resource_exhausted";
    case RequestOutcome::kUnavailable:
      return "unavailable";
    case RequestOutcome::kPermissionDenied:
      return "permission_denied";
    case RequestOutcome::kError:
      return "error";
  }
  return "error";
}

struct Metrics::Families {
  explicit Families(prometheus::Registry& r)
      : weights_bytes(
            build<Gauge>(r, "sparkd_model_weights_bytes", "Bytes of a resident model's weights")),
        kv_granted_bytes(build<Gauge>(r, "sparkd_model_kv_granted_bytes",
                                      "Bytes of KV cache the governor granted a model")),
        kv_used_bytes(build<Gauge>(r, "sparkd_model_kv_used_bytes",
                                   "Bytes of granted KV cache holding live sequences")),
        prefix_cache_bytes(
            build<Gauge>(r, "sparkd_model_prefix_cache_bytes",
                         "Bytes of KV blocks kept only as reusable prefix cache (reclaimable)")),
        workspace_bytes(
            build<Gauge>(r, "sparkd_model_workspace_bytes",
                         "Bytes of a model's activations and scratch, allocated once at load")),
        kv_min_bytes(build<Gauge>(r, "sparkd_model_kv_min_bytes",
                                  "KV bytes reserved for a model whatever others need (kv_min)")),
        kv_max_bytes(build<Gauge>(r, "sparkd_model_kv_max_bytes",
                                  "KV bytes a model may hold at most, rounding included")),
        kv_rounding_waste_bytes(build<Gauge>(
            r, "sparkd_model_kv_rounding_waste_bytes",
            "Committed KV bytes no block can use (granule rounding of partial block groups)")),
        recurrent_state_bytes(build<Gauge>(
            r, "sparkd_model_recurrent_state_bytes",
            "Bytes of the running sequences' recurrent state (linear-attention layers), "
            "counted in the KV in use")),
        waiting_for_memory(
            build<Gauge>(r, "sparkd_model_requests_waiting_for_memory",
                         "Requests that cannot start until the governor grants their KV memory")),
        queue_depth(build<Gauge>(r, "sparkd_model_queue_depth",
                                 "Requests waiting in a model's queue for admission")),
        running(build<Gauge>(r, "sparkd_model_running", "Requests a model is running now")),
        decode_bandwidth(build<Gauge>(
            r, "sparkd_decode_bandwidth_bytes_per_second",
            "Memory bandwidth the last decode steps achieved (weights + KV read per second)")),
        preemptions(build<Counter>(r, "sparkd_preemptions_total",
                                   "Sequences preempted to free KV (re-queued, recomputed)")),
        prefix_hit_blocks(build<Counter>(r, "sparkd_prefix_cache_hit_blocks_total",
                                         "KV blocks found in the prefix cache")),
        prefix_queried_blocks(build<Counter>(r, "sparkd_prefix_cache_queried_blocks_total",
                                             "KV blocks looked up in the prefix cache")),
        prompt_tokens(build<Counter>(r, "sparkd_prompt_tokens_total", "Prompt tokens processed")),
        generated_tokens(build<Counter>(r, "sparkd_generated_tokens_total", "Tokens generated")),
        requests(build<Counter>(r, "sparkd_requests_total", "Requests finished, by outcome")),
        evictions(
            build<Counter>(r, "sparkd_evictions_total", "Models evicted from memory, by reason")),
        queue_seconds(build<Histogram>(r, "sparkd_request_queue_seconds",
                                       "Seconds a request waited before it started running")),
        ttft_seconds(build<Histogram>(r, "sparkd_time_to_first_token_seconds",
                                      "Seconds from arrival to the first generated token")),
        inter_token_seconds(build<Histogram>(r, "sparkd_inter_token_seconds",
                                             "Seconds between consecutive generated tokens")),
        request_seconds(build<Histogram>(r, "sparkd_request_duration_seconds",
                                         "Seconds from arrival to the final response")),
        model_load_seconds(build<Histogram>(r, "sparkd_model_load_seconds",
                                            "Seconds a model load took, by outcome")),
        memory_available_bytes(
            build<Gauge>(r, "sparkd_memory_available_bytes", "MemAvailable from /proc/meminfo")),
        memory_total_bytes(
            build<Gauge>(r, "sparkd_memory_total_bytes", "MemTotal from /proc/meminfo")),
        governor_budget_bytes(
            build<Gauge>(r, "sparkd_governor_budget_bytes",
                         "Bytes the governor may grant: min(configured, what the machine gives)")),
        governor_ledger_bytes(build<Gauge>(
            r, "sparkd_governor_ledger_bytes",
            "Bytes the ledger counts against the budget: baseline, weights, workspace, "
            "max(KV granted, kv_min) and load reservations")),
        governor_held_bytes(build<Gauge>(
            r, "sparkd_governor_held_bytes",
            "Bytes the daemon really holds: baseline, weights, workspace and KV granted")),
        governor_free_bytes(
            build<Gauge>(r, "sparkd_governor_free_bytes", "Budget minus ledger: grantable now")),
        governor_baseline_bytes(build<Gauge>(r, "sparkd_governor_baseline_bytes",
                                             "The process's memory outside every model")),
        governor_os_reserve_bytes(build<Gauge>(r, "sparkd_governor_os_reserve_bytes",
                                               "MemAvailable the governor leaves to the host")),
        governor_load_reserved_bytes(build<Gauge>(r, "sparkd_governor_load_reserved_bytes",
                                                  "Bytes reserved by model loads under way")),
        governor_reclaim_pending_bytes(
            build<Gauge>(r, "sparkd_governor_reclaim_pending_bytes",
                         "Bytes the governor asked models to give back, not yet released")),
        governor_under_pressure(
            build<Gauge>(r, "sparkd_governor_under_pressure",
                         "1 while the host is short of memory: growth held, caches shed")),
        governor_reclaims(build<Counter>(
            r, "sparkd_governor_reclaims_total",
            "Reclaim actions, by kind: prefix_cache, preempt (KV above kv_min), evict")),
        governor_reclaimed_bytes(build<Counter>(r, "sparkd_governor_reclaim_bytes_total",
                                                "Bytes reclaim actions asked for, by kind")),
        governor_grants_refused(build<Counter>(r, "sparkd_governor_grants_refused_total",
                                               "KV grants the governor refused (the model "
                                               "waited, preempted or reused its cache)")),
        governor_pressure_episodes(build<Counter>(
            r, "sparkd_governor_pressure_episodes_total",
            "Times the host fell short of memory (MemAvailable below os_reserve, or PSI)")),
        model_loads(build<Counter>(
            r, "sparkd_model_loads_total",
            "Model loads, by outcome: ok, failed, never_fits, timeout (waited for memory)")),
        process_resident_bytes(
            build<Gauge>(r, "sparkd_process_resident_bytes", "The daemon's resident memory (RSS)")),
        pressure_some_avg10(build<Gauge>(
            r, "sparkd_memory_pressure_some_avg10",
            "Share of the last 10 s some task stalled on memory (PSI some avg10 / 100)")),
        pressure_full_avg10(build<Gauge>(
            r, "sparkd_memory_pressure_full_avg10",
            "Share of the last 10 s all tasks stalled on memory (PSI full avg10 / 100)")),
        pressure_stall_seconds(build<Counter>(r, "sparkd_memory_pressure_stall_seconds_total",
                                              "Seconds tasks stalled on memory (PSI total)")),
        connections(build<Gauge>(r, "sparkd_connections", "Open client connections")),
        connections_closed(build<Counter>(
            r, "sparkd_connections_closed_total",
            "Connections the daemon closed for a reason of its own (after telling the client "
            "why), by reason")),
        requests_in_flight(build<Gauge>(r, "sparkd_requests_in_flight",
                                        "Requests accepted and not yet answered")) {}

  // Per model and task, removed when the model goes.
  Family<Gauge>& weights_bytes;
  Family<Gauge>& kv_granted_bytes;
  Family<Gauge>& kv_used_bytes;
  Family<Gauge>& prefix_cache_bytes;
  Family<Gauge>& workspace_bytes;
  Family<Gauge>& kv_min_bytes;
  Family<Gauge>& kv_max_bytes;
  Family<Gauge>& kv_rounding_waste_bytes;
  Family<Gauge>& recurrent_state_bytes;
  Family<Gauge>& waiting_for_memory;
  Family<Gauge>& queue_depth;
  Family<Gauge>& running;
  Family<Gauge>& decode_bandwidth;  // per model only
  // Cumulative: kept after a model goes, so rates over the unload stay right.
  Family<Counter>& preemptions;
  Family<Counter>& prefix_hit_blocks;
  Family<Counter>& prefix_queried_blocks;
  Family<Counter>& prompt_tokens;
  Family<Counter>& generated_tokens;
  Family<Counter>& requests;
  Family<Counter>& evictions;
  Family<Histogram>& queue_seconds;
  Family<Histogram>& ttft_seconds;
  Family<Histogram>& inter_token_seconds;
  Family<Histogram>& request_seconds;
  Family<Histogram>& model_load_seconds;
  // The machine and the daemon.
  Family<Gauge>& memory_available_bytes;
  Family<Gauge>& memory_total_bytes;
  Family<Gauge>& governor_budget_bytes;
  Family<Gauge>& governor_ledger_bytes;
  Family<Gauge>& governor_held_bytes;
  Family<Gauge>& governor_free_bytes;
  Family<Gauge>& governor_baseline_bytes;
  Family<Gauge>& governor_os_reserve_bytes;
  Family<Gauge>& governor_load_reserved_bytes;
  Family<Gauge>& governor_reclaim_pending_bytes;
  Family<Gauge>& governor_under_pressure;
  Family<Counter>& governor_reclaims;
  Family<Counter>& governor_reclaimed_bytes;
  Family<Counter>& governor_grants_refused;
  Family<Counter>& governor_pressure_episodes;
  Family<Counter>& model_loads;
  Family<Gauge>& process_resident_bytes;
  Family<Gauge>& pressure_some_avg10;
  Family<Gauge>& pressure_full_avg10;
  Family<Counter>& pressure_stall_seconds;
  Family<Gauge>& connections;
  Family<Counter>& connections_closed;
  Family<Gauge>& requests_in_flight;
};

// What the exposer scrapes: refreshes the snapshots, then collects the registry.
class Metrics::RefreshingCollectable : public prometheus::Collectable {
 public:
  explicit RefreshingCollectable(Metrics& metrics) : metrics_(metrics) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard lock(metrics_.refresh_mutex_);
    metrics_.refresh_locked();
    return metrics_.registry_->Collect();
  }

 private:
  Metrics& metrics_;
};

Metrics::Metrics(MetricsRefresh refresh)
    : refresh_(std::move(refresh)),
      registry_(std::make_shared<prometheus::Registry>()),
      families_(std::make_unique<Families>(*registry_)),
      collectable_(std::make_shared<RefreshingCollectable>(*this)) {}

Metrics::~Metrics() {
  // Stop serving before the registry and the families go.
  exposer_.reset();
}

Expected<std::unique_ptr<Metrics>> Metrics::start(const std::string& listen,
                                                  MetricsRefresh refresh) {
  SPARKD_ASSIGN_OR_RETURN(const std::string bind_address, to_bind_address(listen));
  std::unique_ptr<Metrics> metrics(new Metrics(std::move(refresh)));
  try {
    // Two threads: a scrape never waits behind a slow one; more buys nothing here.
    metrics->exposer_ = std::make_unique<prometheus::Exposer>(bind_address, 2);
  } catch (const std::exception& error) {
    // civetweb reports a failed bind by throwing from the constructor.
    return Status(StatusCode::kUnavailable, "cannot serve metrics on " + listen + ": " +
                                                error.what() +
                                                " (is the port in use or the address not local?)");
  }
  const std::vector<int> ports = metrics->exposer_->GetListeningPorts();
  if (ports.empty() || ports.front() <= 0 || ports.front() > 65535) {
    return Status(StatusCode::kUnavailable, "metrics server on " + listen + " reports no port");
  }
  metrics->port_ = static_cast<uint16_t>(ports.front());
  metrics->exposer_->RegisterCollectable(metrics->collectable_);
  return metrics;
}

void Metrics::count_request(const std::string& model, const std::string& task,
                            RequestOutcome outcome, const std::string& api) {
  families_->requests
      .Add({{"api", api},
            {"model", model},
            {"task", task},
            {"outcome", request_outcome_label(outcome)}})
      .Increment();
}

void Metrics::observe_request(const RequestObservation& request) {
  const Labels model_task{{"model", request.model}, {"task", request.task}};
  Families& f = *families_;
  f.queue_seconds.Add(model_task, kRequestSecondsBuckets).Observe(request.queue_s);
  f.request_seconds.Add(model_task, kRequestSecondsBuckets).Observe(request.e2e_s);
  if (request.ttft_s)
    f.ttft_seconds.Add(model_task, kTimeToFirstTokenBuckets).Observe(*request.ttft_s);
}

void Metrics::observe_inter_token(const std::string& model, double seconds) {
  families_->inter_token_seconds.Add({{"model", model}}, kInterTokenBuckets).Observe(seconds);
}

void Metrics::observe_model_load(const std::string& model, double seconds, bool ok) {
  families_->model_load_seconds
      .Add({{"model", model}, {"outcome", ok ? "ok" : "error"}}, kModelLoadBuckets)
      .Observe(seconds);
}

void Metrics::count_eviction(const std::string& model, const std::string& reason) {
  families_->evictions.Add({{"model", model}, {"reason", reason}}).Increment();
}

std::string Metrics::render_text() {
  const std::vector<prometheus::MetricFamily> families = collectable_->Collect();
  return prometheus::TextSerializer().Serialize(families);
}

void Metrics::refresh_locked() {
  std::vector<ModelSnapshot> models;
  SystemSnapshot system;
  if (refresh_) {
    try {
      refresh_(models, system);
    } catch (const std::exception& error) {
      // This runs on the exposer's thread: an exception must not end the process. The page
      // keeps the values of the last good refresh.
      std::cerr << "sparkd: metrics refresh failed: " << error.what() << "\n";
      return;
    }
  }
  apply_models_locked(models);
  apply_system_locked(system);
}

void Metrics::apply_models_locked(const std::vector<ModelSnapshot>& models) {
  Families& f = *families_;
  std::set<ModelKey> present;
  std::set<std::string> present_models;
  for (const ModelSnapshot& model : models) {
    const ModelKey key{model.model, model.task};
    present.insert(key);
    present_models.insert(model.model);
    const Labels labels{{"model", model.model}, {"task", model.task}};
    f.weights_bytes.Add(labels).Set(static_cast<double>(model.weights_bytes));
    f.kv_granted_bytes.Add(labels).Set(static_cast<double>(model.kv_granted_bytes));
    f.kv_used_bytes.Add(labels).Set(static_cast<double>(model.kv_used_bytes));
    f.prefix_cache_bytes.Add(labels).Set(static_cast<double>(model.prefix_cached_bytes));
    f.workspace_bytes.Add(labels).Set(static_cast<double>(model.workspace_bytes));
    f.kv_min_bytes.Add(labels).Set(static_cast<double>(model.kv_min_bytes));
    f.kv_max_bytes.Add(labels).Set(static_cast<double>(model.kv_max_bytes));
    f.kv_rounding_waste_bytes.Add(labels).Set(static_cast<double>(model.kv_rounding_waste_bytes));
    f.recurrent_state_bytes.Add(labels).Set(static_cast<double>(model.recurrent_state_bytes));
    f.waiting_for_memory.Add(labels).Set(static_cast<double>(model.waiting_for_memory));
    f.queue_depth.Add(labels).Set(static_cast<double>(model.queue_depth));
    f.running.Add(labels).Set(static_cast<double>(model.running));
    f.decode_bandwidth.Add({{"model", model.model}}).Set(model.decode_bytes_per_second);

    CumulativeSeen& seen = seen_models_[key];  // all zero for a model seen the first time
    auto advance = [&](Family<Counter>& family, uint64_t& previous, uint64_t current) {
      // Add() even for a zero increase, so the series exists from the model's first scrape.
      family.Add(labels).Increment(static_cast<double>(increase_since(previous, current)));
      previous = current;
    };
    advance(f.preemptions, seen.preemptions, model.preemptions_total);
    advance(f.prefix_hit_blocks, seen.prefix_cache_hit_blocks, model.prefix_cache_hit_blocks_total);
    advance(f.prefix_queried_blocks, seen.prefix_cache_queried_blocks,
            model.prefix_cache_queried_blocks_total);
    advance(f.prompt_tokens, seen.prompt_tokens, model.prompt_tokens_total);
    advance(f.generated_tokens, seen.generated_tokens, model.generated_tokens_total);
  }
  // Models that went: their gauges go; their counters stay (cumulative), and what we saw of
  // them is forgotten, so a reload's counts (restarting at 0) are all counted as new.
  for (auto it = seen_models_.begin(); it != seen_models_.end();) {
    if (present.count(it->first) != 0) {
      ++it;
      continue;
    }
    const Labels labels{{"model", it->first.first}, {"task", it->first.second}};
    for (Family<Gauge>* family :
         {&f.weights_bytes, &f.kv_granted_bytes, &f.kv_used_bytes, &f.prefix_cache_bytes,
          &f.workspace_bytes, &f.kv_min_bytes, &f.kv_max_bytes, &f.kv_rounding_waste_bytes,
          &f.recurrent_state_bytes, &f.waiting_for_memory, &f.queue_depth, &f.running}) {
      remove_series(*family, labels);
    }
    if (present_models.count(it->first.first) == 0) {
      remove_series(f.decode_bandwidth, {{"model", it->first.first}});
    }
    it = seen_models_.erase(it);
  }
}

void Metrics::apply_system_locked(const SystemSnapshot& system) {
  Families& f = *families_;
  f.memory_available_bytes.Add({}).Set(static_cast<double>(system.mem_available_bytes));
  f.memory_total_bytes.Add({}).Set(static_cast<double>(system.mem_total_bytes));
  f.governor_budget_bytes.Add({}).Set(static_cast<double>(system.governor_budget_bytes));
  const GovernorSnapshot& g = system.governor;
  f.governor_ledger_bytes.Add({}).Set(static_cast<double>(g.ledger_bytes));
  f.governor_held_bytes.Add({}).Set(static_cast<double>(g.held_bytes));
  f.governor_free_bytes.Add({}).Set(static_cast<double>(g.free_bytes));
  f.governor_baseline_bytes.Add({}).Set(static_cast<double>(g.baseline_bytes));
  f.governor_os_reserve_bytes.Add({}).Set(static_cast<double>(g.os_reserve_bytes));
  f.governor_load_reserved_bytes.Add({}).Set(static_cast<double>(g.load_reserved_bytes));
  f.governor_reclaim_pending_bytes.Add({}).Set(static_cast<double>(g.reclaim_pending_bytes));
  f.governor_under_pressure.Add({}).Set(g.under_pressure ? 1 : 0);
  f.process_resident_bytes.Add({}).Set(static_cast<double>(system.process_resident_bytes));
  auto advance = [&](Family<Counter>& family, const Labels& labels, const std::string& key,
                     uint64_t total) {
    family.Add(labels).Increment(static_cast<double>(increase_since(seen_governor_[key], total)));
    seen_governor_[key] = total;
  };
  // Every kind and outcome exists from the first scrape, at 0 until it happens.
  for (const char* kind : {"prefix_cache", "preempt", "evict"}) {
    const auto count = g.reclaims_total.find(kind);
    const auto bytes = g.reclaimed_bytes_total.find(kind);
    advance(f.governor_reclaims, {{"kind", kind}}, std::string("reclaims/") + kind,
            count == g.reclaims_total.end() ? 0 : count->second);
    advance(f.governor_reclaimed_bytes, {{"kind", kind}}, std::string("bytes/") + kind,
            bytes == g.reclaimed_bytes_total.end() ? 0 : bytes->second);
  }
  for (const char* outcome : {"ok", "failed", "never_fits", "timeout"}) {
    const auto count = g.loads_total.find(outcome);
    advance(f.model_loads, {{"outcome", outcome}}, std::string("loads/") + outcome,
            count == g.loads_total.end() ? 0 : count->second);
  }
  advance(f.governor_grants_refused, {}, "grants_refused", g.grants_refused_total);
  advance(f.governor_pressure_episodes, {}, "pressure_episodes", g.pressure_episodes_total);
  f.connections.Add({}).Set(system.connections);
  f.requests_in_flight.Add({}).Set(system.requests_in_flight);
  for (const auto& [reason, total] : system.connections_closed_total) {
    f.connections_closed.Add({{"reason", reason}})
        .Increment(static_cast<double>(increase_since(seen_connections_closed_[reason], total)));
    seen_connections_closed_[reason] = total;
  }
  if (!system.pressure) {
    // Without PSI the series are omitted, not shown as a misleading 0.
    remove_series(f.pressure_some_avg10, {});
    remove_series(f.pressure_full_avg10, {});
    return;
  }
  constexpr double kPercent = 100.0;
  constexpr double kMicrosecondsPerSecond = 1e6;
  f.pressure_some_avg10.Add({}).Set(system.pressure->some.avg10 / kPercent);
  f.pressure_full_avg10.Add({}).Set(system.pressure->full.avg10 / kPercent);
  // PSI totals only grow while the kernel runs; the first reading counts all since boot.
  const uint64_t some_us = system.pressure->some.total_us;
  const uint64_t full_us = system.pressure->full.total_us;
  f.pressure_stall_seconds.Add({{"kind", "some"}})
      .Increment(static_cast<double>(increase_since(seen_some_stall_us_, some_us)) /
                 kMicrosecondsPerSecond);
  f.pressure_stall_seconds.Add({{"kind", "full"}})
      .Increment(static_cast<double>(increase_since(seen_full_stall_us_, full_us)) /
                 kMicrosecondsPerSecond);
  seen_some_stall_us_ = some_us;
  seen_full_stall_us_ = full_us;
}

}  // namespace sparkd::daemon
