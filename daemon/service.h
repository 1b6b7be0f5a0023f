// The daemon's request handling: the resident models (each with its runner thread) and the
// answer to every sparkd.v1 request kind. The socket server calls handle() on its loop
// thread; nothing here blocks it: model work goes to the model's runner, tokenization to a
// worker, loads and unloads to the admin worker, and answers go back through api::Call.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/server/server.h"
#include "daemon/config.h"
#include "daemon/metrics.h"
#include "daemon/work_queue.h"
#include "governor/compute_budget.h"
#include "governor/memory_governor.h"

namespace sparkd::daemon {

struct ModelEntry;  // one configured model and its runner (service.cpp)
class ModelUse;     // a request's hold on its model (service.cpp)

// Where a model's definition comes from: config.toml (a reload manages it) or an admin Load
// request with a path (it stays until unloaded, whatever reloads do).
enum class ModelSource { kConfig, kAdmin };

struct ServiceOptions {
  DaemonConfig config;
  std::optional<gid_t> admin_gid;  // peers in it may call load/unload/reload
  // What the process held before any model (its RSS at start): the ledger's baseline.
  uint64_t baseline_bytes = 0;
  // One line per event (admin actions, reloads, load failures); the daemon's log.
  std::function<void(const std::string&)> log;
};

class Service : public api::RequestHandler, public governor::ModelEvictor {
 public:
  explicit Service(ServiceOptions options);
  ~Service() override;  // stops every runner: requests still running are answered CANCELLED

  // Loads every pinned model of the config, one after the other, reporting progress through
  // `progress` ("loading minilm (1/3)"); the first that fails ends the loading with its error
  // (the daemon must not start). on_demand models are listed as unloaded: their first
  // request loads them.
  Status load_configured_models(const std::function<void(const std::string&)>& progress);

  // governor::ModelEvictor: unloads an idle on_demand model (on the admin worker), or under
  // host pressure a busy one, its requests answered UNAVAILABLE.
  bool evict(governor::ConsumerId account, const std::string& reason, bool busy) override;
  // The governor's ledger (thread-safe).
  governor::LedgerSnapshot ledger() const { return governor_.snapshot(); }

  // What a reload did: the changes, the loads that failed, the keys that need a restart.
  struct ReloadReport {
    std::vector<std::string> changes;  // "loaded x", "unloaded y", "reloaded z"
    std::vector<Status> failures;      // a model of the new config that failed to load
    std::vector<std::string> need_restart;
    std::string summary() const;  // changes and restart keys, for people
    // OK, or the first failure's code with every failure and what was applied.
    Status status() const;
  };

  // SIGHUP: the same reload as an admin Reload, run on the admin worker (so it never races an
  // admin call) and logged; blocks until done.
  Expected<ReloadReport> reload_from_signal();

  // Called (on the reloading thread) with each config a reload applied: the parts the
  // service does not own (the server's limits) follow it there.
  void set_config_observer(std::function<void(const DaemonConfig&)> observer) {
    config_observer_ = std::move(observer);
  }

  void handle(const v1::Request& request, std::shared_ptr<api::Call> call) override;
  // Counts every answered request (sparkd_requests_total) with its outcome.
  void answered(const api::AnsweredRequest& request) override;

  // The socket server's counters, shown in Status and metrics.
  void set_server_stats_source(std::function<api::ServerStats()> source);
  void set_metrics(Metrics* metrics) { metrics_ = metrics; }
  // Snapshots for the metrics page (thread-safe).
  void snapshot(std::vector<ModelSnapshot>& models, SystemSnapshot& system);
  // What Health says: "serving", "loading", "degraded" (a pinned model failed to load) or
  // "draining", with the reason unless serving.
  struct Health {
    bool ready = false;  // every pinned model is loaded and the daemon is not draining
    std::string status;
    std::string reason;
  };
  Health health() const;
  void set_draining() { draining_ = true; }
  // Stops every runner now (their requests are answered CANCELLED), while what they report to
  // (metrics) still exists. The destructor does it too.
  void stop_models();

 private:
  std::shared_ptr<ModelEntry> find(const std::string& name) const;
  // Admin worker / start-up. `residency` is the one in effect (an admin Load may override the
  // definition's). A failed load leaves a "failed" entry when `keep_failed_entry` (config
  // models: ListModels and Health show why), otherwise nothing of its own (admin loads; a
  // failed entry it retried is put back).
  Status load_model(const ModelConfig& config, ModelSource source, Residency residency,
                    bool keep_failed_entry);
  // A model of the config: pinned ones load now, on_demand ones are listed as unloaded.
  Status add_configured_model(const ModelConfig& model);
  // Admin worker: loads `entry` (in state loading, not yet read by anyone else) in place,
  // under a governor reservation. On success `hold` keeps the model busy (never evicted)
  // until the caller drops it.
  Status load_into(const std::shared_ptr<ModelEntry>& entry, std::shared_ptr<ModelUse>* hold);
  // Admin worker: loads the on_demand model `name` that requests are waiting for, then
  // answers them.
  void load_on_demand(const std::string& name);
  // A request that lost its model to an eviction: queued for its load again, or UNAVAILABLE.
  void defer_or_fail(const std::string& name, const v1::Request& request,
                     const std::shared_ptr<api::Call>& call);
  // Stops the runner and closes its governor account (the weights go with the entry).
  // Stops the model's runners (what they hold is answered with `reason`) and closes its
  // account.
  void release(ModelEntry& entry, const Status& reason);
  // A fresh unloaded entry with `entry`'s definition, to list in its place.
  std::shared_ptr<ModelEntry> unloaded_copy(const ModelEntry& entry) const;
  // `keep_listed`: an on_demand model of the config stays listed as unloaded.
  Status unload_model(const std::string& name, bool keep_listed = false);  // admin worker
  // Queues `request` until its on_demand model is loaded, starting the load; false when the
  // model is not one that loads on demand now.
  bool defer_until_loaded(const std::string& name, const v1::Request& request,
                          const std::shared_ptr<api::Call>& call);
  // The governor's clock: refresh every 250 ms, and keep_alive expiry.
  void governor_loop();
  Expected<std::string> admin_load(const v1::LoadRequest& load);  // admin worker
  Expected<std::string> admin_unload(const std::string& name);    // admin worker
  // Re-reads the config file: a bad file is refused and the running config kept; otherwise
  // removed models unload, added ones load, and changed ones and ones that failed to load are
  // loaded again. A model an admin loaded from a path stays, unless the config now defines its
  // name. Runs on the admin worker only (SIGHUP and admin Reload both go through it).
  Expected<ReloadReport> reload_config();
  void log_reload(const Expected<ReloadReport>& report);
  void log(const std::string& line) const;
  // handle(), and the second try of a request that waited for its model's load
  // (`may_defer` false: it is answered whatever the load did).
  void dispatch(const v1::Request& request, std::shared_ptr<api::Call> call, bool may_defer);
  // A request's keep_alive_s (Ollama's keep_alive) for its on_demand model, from now on.
  void set_keep_alive(const ModelEntry& model, double seconds);
  void handle_embed(const v1::Request& request, std::shared_ptr<api::Call> call);
  void handle_rerank(const v1::Request& request, std::shared_ptr<api::Call> call);
  void handle_generate(const v1::Request& request, std::shared_ptr<api::Call> call);
  void handle_tokenize(const v1::Request& request, std::shared_ptr<api::Call> call);
  void handle_detokenize(const v1::Request& request, std::shared_ptr<api::Call> call);
  void handle_admin(const v1::Request& request, std::shared_ptr<api::Call> call);
  v1::Response list_models() const;
  v1::Response status() const;
  // The ready model `name`, able to do `task` (nullptr: any task); otherwise the error a
  // client should see (NOT_FOUND, UNAVAILABLE while loading or failed, FAILED_PRECONDITION).
  Expected<std::shared_ptr<ModelEntry>> resolve(const std::string& name, const char* task) const;
  // The latency histograms of a request its model ran (answered() counts it).
  void observe(const std::string& model, const std::string& task, double queue_s, double e2e_s,
               std::optional<double> ttft_s, uint64_t prompt_tokens, uint64_t completion_tokens);

  ServiceOptions options_;
  std::chrono::steady_clock::time_point started_at_;
  governor::ProcMemorySource machine_;
  governor::MemoryGovernor governor_;
  governor::ComputeBudget compute_;  // the CPU threads all models share
  mutable std::shared_mutex models_mutex_;
  std::map<std::string, std::shared_ptr<ModelEntry>> models_;  // guarded by models_mutex_
  std::function<api::ServerStats()> server_stats_;
  Metrics* metrics_ = nullptr;
  std::function<void(const DaemonConfig&)> config_observer_;
  std::atomic<bool> draining_{false};
  // Declared last: destroyed first, so no task runs against a half-destroyed service.
  std::unique_ptr<WorkQueue> tokenize_worker_;
  std::unique_ptr<WorkQueue> admin_worker_;
  // Requests waiting for an on_demand model's load, by model name.
  struct PendingLoad {
    std::vector<std::function<void()>> waiting;
    bool queued = false;  // a load_on_demand is posted
  };
  std::mutex pending_mutex_;
  std::map<std::string, PendingLoad> pending_loads_;  // guarded by pending_mutex_
  // Evictions run here, never on the admin worker (a load waiting for their memory may hold it)
  // nor on a runner thread.
  std::mutex evict_mutex_;
  std::unique_ptr<WorkQueue> evict_worker_;  // guarded by evict_mutex_
  std::set<governor::ConsumerId> evicting_;  // guarded by evict_mutex_
  std::mutex governor_loop_mutex_;
  std::condition_variable governor_loop_wake_;
  bool governor_loop_stop_ = false;  // guarded by governor_loop_mutex_
  std::thread governor_thread_;
};

}  // namespace sparkd::daemon
