// The daemon's request handling: the resident models (each with its runner thread) and the
// answer to every sparkd.v1 request kind. The socket server calls handle() on its loop
// thread; nothing here blocks it: model work goes to the model's runner, tokenization to a
// worker, loads and unloads to the admin worker, and answers go back through api::Call.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "api/server/server.h"
#include "daemon/config.h"
#include "daemon/metrics.h"
#include "daemon/work_queue.h"
#include "governor/fixed_budget_arbiter.h"

namespace sparkd::daemon {

struct ModelEntry;  // one configured model and its runner (service.cpp)

struct ServiceOptions {
  DaemonConfig config;
  std::optional<gid_t> admin_gid;  // peers in it may call load/unload/reload
  uint64_t kv_budget_bytes = 0;    // what the KV arbiter may grant, all models together
};

class Service : public api::RequestHandler {
 public:
  explicit Service(ServiceOptions options);
  ~Service() override;  // stops every runner: requests still running are answered CANCELLED

  // Loads every configured model, one after the other, reporting progress through
  // `progress` ("loading minilm (1/3)"). A model that fails to load is marked failed (with
  // its error in ListModels) and the others still load; the failures are returned.
  std::vector<Status> load_configured_models(
      const std::function<void(const std::string&)>& progress);

  // Re-reads the config file (SIGHUP, admin Reload): a bad file is refused and the running
  // config kept; otherwise removed models unload, added ones load, changed ones reload.
  // Runs on the calling thread (blocking); returns what changed.
  Expected<std::string> reload_config();

  // Called (on the reloading thread) with each config a reload applied: the parts the
  // service does not own (the server's limits) follow it there.
  void set_config_observer(std::function<void(const DaemonConfig&)> observer) {
    config_observer_ = std::move(observer);
  }

  void handle(const v1::Request& request, std::shared_ptr<api::Call> call) override;

  // The socket server's counters, shown in Status and metrics.
  void set_server_stats_source(std::function<api::ServerStats()> source);
  void set_metrics(Metrics* metrics) { metrics_ = metrics; }
  // Snapshots for the metrics page (thread-safe).
  void snapshot(std::vector<ModelSnapshot>& models, SystemSnapshot& system);
  // Every pinned model is loaded.
  bool ready() const;
  void set_draining() { draining_ = true; }

 private:
  std::shared_ptr<ModelEntry> find(const std::string& name) const;
  Status load_model(const ModelConfig& config);  // admin thread / startup
  Status unload_model(const std::string& name);  // admin thread
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
  void observe(const std::string& model, const std::string& task, const Status& status,
               double queue_s, double e2e_s, std::optional<double> ttft_s, uint64_t prompt_tokens,
               uint64_t completion_tokens);

  ServiceOptions options_;
  std::chrono::steady_clock::time_point started_at_;
  governor::FixedBudgetArbiter arbiter_;
  mutable std::shared_mutex models_mutex_;
  std::map<std::string, std::shared_ptr<ModelEntry>> models_;  // guarded by models_mutex_
  governor::ConsumerId next_consumer_ = 1;                     // guarded by models_mutex_
  std::function<api::ServerStats()> server_stats_;
  Metrics* metrics_ = nullptr;
  std::function<void(const DaemonConfig&)> config_observer_;
  std::atomic<bool> draining_{false};
  // Declared last: destroyed first, so no task runs against a half-destroyed service.
  std::unique_ptr<WorkQueue> tokenize_worker_;
  std::unique_ptr<WorkQueue> admin_worker_;
};

}  // namespace sparkd::daemon
