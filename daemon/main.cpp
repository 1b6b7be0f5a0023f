// sparkd: the serving daemon. Reads and validates the config, loads the configured models,
// then serves them on the Unix socket until SIGTERM; SIGHUP re-reads the config. Runs under
// systemd (Type=notify, watchdog, socket activation) or by hand.
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include "api/http/api_router.h"
#include "api/http/http_server.h"
#include "api/server/server.h"
#include "daemon/config.h"
#include "daemon/metrics.h"
#include "daemon/plan.h"
#include "daemon/service.h"
#include "daemon/systemd_notify.h"
#include "governor/system_memory.h"

namespace {

using sparkd::Status;
using namespace sparkd::daemon;

// One line per event on stderr; journald adds the time and the unit.
void log_line(const std::string& text) {
  std::cerr << "sparkd: " << text << std::endl;
}

void usage() {
  std::cerr << "usage: sparkd [--config PATH] [--check-config] [--version]\n"
               "       sparkd plan [--config PATH] [--json]\n"
               "  --config PATH    the configuration file (default /etc/sparkd/config.toml)\n"
               "  --check-config   validate the file and exit (0 when valid)\n"
               "  plan             what the config would hold on this machine, from the model\n"
               "                   files' headers (no weights read); exit 1 when the pinned\n"
               "                   models cannot fit\n";
}

// sparkd plan: exit 0 when the pinned models fit, 1 when they do not, 2 for a bad config.
int run_plan(const std::string& config_path, bool json) {
  auto config = load_config(config_path);
  if (!config) {
    std::cerr << "sparkd: " << config.status().message() << "\n";
    return 2;
  }
  sparkd::governor::ProcMemorySource machine(config->governor.meminfo_path,
                                             config->governor.pressure_path);
  // This process before it reads any model is what a starting daemon holds: the baseline.
  const Plan plan = make_plan(*config, machine, sparkd::governor::process_resident_bytes());
  std::cout << (json ? plan_json(plan) + "\n" : plan_text(plan));
  return plan.pinned_fit ? 0 : 1;
}

sparkd::api::RequestLimits request_limits(const DaemonConfig& config) {
  sparkd::api::RequestLimits limits;
  limits.max_inputs = config.max_inputs_per_request;
  limits.max_text_bytes = config.max_text_bytes;
  return limits;
}

std::chrono::milliseconds milliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

sparkd::api::Server::Limits server_limits(const DaemonConfig& config) {
  sparkd::api::Server::Limits limits;
  limits.max_frame_bytes = config.server.max_frame_bytes;
  limits.max_connections = config.server.max_connections;
  limits.max_inflight_per_connection = config.server.max_inflight_per_connection;
  limits.max_write_buffer_bytes = config.server.max_write_buffer_bytes;
  limits.frame_timeout = milliseconds(config.server.frame_timeout_s);
  limits.idle_timeout = milliseconds(config.server.idle_timeout_s);
  limits.requests = request_limits(config);
  return limits;
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", seconds);
  return text;
}

// Exit statuses besides 0 and 1: systemd's unit keeps these from restarting in a loop
// (RestartPreventExitStatus), since starting again cannot fix them.
constexpr int kExitBadConfig = 2;
constexpr int kExitPinnedModelFailed = 3;

std::optional<gid_t> group_id(const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (const group* g = ::getgrnam(name.c_str())) return g->gr_gid;
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "/etc/sparkd/config.toml";
  bool check_only = false;
  bool plan = false;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i == 1 && arg == "plan") {
      plan = true;
    } else if (plan && arg == "--json") {
      json = true;
    } else if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--version") {
      std::cout << "sparkd " << SPARKD_VERSION << "\n";
      return 0;
    } else {
      usage();
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }

  if (plan) return run_plan(config_path, json);

  // Signals are taken by one thread with sigwait: block them before any thread starts, so
  // every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto config = load_config(config_path);
  if (!config) {
    std::cerr << "sparkd: " << config.status().message() << "\n";
    return kExitBadConfig;
  }
  if (check_only) {
    std::cout << config_path << ": OK (" << config->models.size() << " models)\n";
    return 0;
  }

  SystemdNotifier notifier;
  std::optional<gid_t> socket_gid = group_id(config->server.socket_group);
  if (!config->server.socket_group.empty() && !socket_gid) {
    log_line(
        "server.socket_group '" + config->server.socket_group +
        "' does not exist (create it, e.g. with systemd-sysusers, or set socket_group = \"\")");
    return kExitBadConfig;
  }
  ServiceOptions service_options;
  service_options.config = *config;
  service_options.admin_gid = group_id(config->server.admin_group);
  service_options.baseline_bytes = sparkd::governor::process_resident_bytes();
  service_options.log = log_line;
  Service service(service_options);
  {
    const auto ledger = service.ledger();
    log_line("memory budget " + std::to_string(ledger.budget_bytes >> 20) + " MiB (" +
             (config->governor.budget_bytes > 0 ? "governor.budget" : "auto") + ", MemAvailable " +
             std::to_string(ledger.mem_available_bytes >> 20) + " MiB, os_reserve " +
             std::to_string(ledger.os_reserve_bytes >> 20) + " MiB, baseline " +
             std::to_string(ledger.baseline_bytes >> 20) + " MiB)");
  }

  std::unique_ptr<Metrics> metrics;
  if (config->metrics.enabled) {
    auto started =
        Metrics::start(config->metrics.listen,
                       [&service](std::vector<ModelSnapshot>& models, SystemSnapshot& system) {
                         service.snapshot(models, system);
                       });
    if (!started) {
      log_line("metrics: " + started.status().message());
      return 1;
    }
    metrics = std::move(started).value();
    service.set_metrics(metrics.get());
    const std::string& listen = config->metrics.listen;
    log_line("metrics on http://" + listen.substr(0, listen.rfind(':')) + ":" +
             std::to_string(metrics->port()) + "/metrics");
  }

  sparkd::api::ServerOptions server_options;
  server_options.socket_path = config->server.socket_path;
  server_options.socket_mode = config->server.socket_mode;
  server_options.socket_group = socket_gid;
  server_options.max_frame_bytes = config->server.max_frame_bytes;
  server_options.max_connections = config->server.max_connections;
  server_options.max_inflight_per_connection = config->server.max_inflight_per_connection;
  server_options.max_write_buffer_bytes = config->server.max_write_buffer_bytes;
  server_options.frame_timeout = milliseconds(config->server.frame_timeout_s);
  server_options.idle_timeout = milliseconds(config->server.idle_timeout_s);
  server_options.limits = request_limits(*config);
  auto activated = systemd_listen_fds();
  if (!activated) {
    log_line(activated.status().message());
    return 1;
  }
  if (!activated->empty()) {
    server_options.listen_fd = activated->front();
    log_line("using the socket passed by systemd");
  }

  // Models load before the socket opens: a client never sees a half-loaded daemon. A pinned
  // model is required: without it the start fails (no READY=1), and systemd says why.
  if (Status loaded = service.load_configured_models([&](const std::string& step) {
        log_line(step);
        notifier.status(step);
      });
      !loaded.is_ok()) {
    log_line("cannot start: " + loaded.message());
    notifier.status("failed: " + loaded.message());
    return kExitPinnedModelFailed;
  }

  auto server = sparkd::api::Server::create(server_options, service);
  if (!server) {
    log_line(server.status().message());
    return 1;
  }
  sparkd::api::Server& srv = **server;
  // The HTTP front end runs on the same loop, through the same service.
  sparkd::http::ApiRouter router(SPARKD_VERSION);
  std::unique_ptr<sparkd::http::HttpServer> http;
  if (config->http.enabled) {
    sparkd::http::HttpServerOptions http_options;
    http_options.listen = config->http.listen;
    http_options.unix_socket_mode = config->server.socket_mode;
    http_options.unix_socket_group = socket_gid;
    http_options.api_keys = config->http.api_keys;
    http_options.cors_allow_origins = config->http.cors_allow_origins;
    http_options.limits.max_body_bytes = config->http.max_body_bytes;
    http_options.limits.max_header_bytes = config->http.max_header_bytes;
    http_options.max_connections = config->http.max_connections;
    http_options.max_write_buffer_bytes = config->server.max_write_buffer_bytes;
    http_options.request_timeout = milliseconds(config->http.request_timeout_s);
    http_options.idle_timeout = milliseconds(config->http.idle_timeout_s);
    http_options.request_limits = request_limits(*config);
    auto started = sparkd::http::HttpServer::create(http_options, srv, service, router);
    if (!started) {
      log_line(started.status().message());
      return 1;
    }
    http = std::move(started).value();
    for (const std::string& address : http->addresses()) {
      log_line("HTTP (OpenAI, Ollama) on " +
               (address.rfind("unix:", 0) == 0 ? address : "http://" + address));
    }
  }
  // Connections and requests in flight count both front ends.
  std::function<sparkd::http::HttpServerStats()> http_stats;
  if (http) http_stats = http->stats_source();
  service.set_server_stats_source([&srv, http_stats] {
    sparkd::api::ServerStats stats = srv.stats();
    if (http_stats) {
      const sparkd::http::HttpServerStats h = http_stats();
      stats.connections += h.connections;
      stats.requests_in_flight += h.requests_in_flight;
      stats.connections_total += h.connections_total;
      stats.requests_total += h.requests_total;
      stats.refused_connections_total += h.refused_connections_total;
      stats.request_timeouts_total = h.request_timeouts_total;
    }
    return stats;
  });
  service.set_config_observer(
      [&srv](const DaemonConfig& fresh) { srv.set_limits(server_limits(fresh)); });
  if (auto interval = notifier.watchdog_interval()) {
    // Pinged from the loop thread: a wedged loop stops the pings and systemd restarts us.
    srv.every(std::chrono::duration_cast<std::chrono::milliseconds>(*interval / 2),
              [&notifier] { notifier.watchdog(); });
  }

  const auto drain_timeout = milliseconds(config->server.drain_timeout_s);
  std::thread signal_thread([&] {
    for (;;) {
      int signal_number = 0;
      if (sigwait(&signals, &signal_number) != 0) continue;
      if (signal_number == SIGHUP) {
        notifier.reloading();
        service.reload_from_signal();  // logs what it did
        notifier.ready();
        continue;
      }
      log_line(std::string(strsignal(signal_number)) + ": draining (up to " +
               seconds_text(config->server.drain_timeout_s) + " s)");
      notifier.stopping();
      service.set_draining();
      srv.shutdown(drain_timeout);
      return;
    }
  });

  notifier.ready();
  notifier.status("serving on " + srv.socket_path());
  log_line("serving on " + srv.socket_path());
  srv.run();
  signal_thread.join();
  // Runners stop while the metrics they report to still exist (they are destroyed first).
  service.stop_models();
  log_line("stopped");
  return 0;
}
