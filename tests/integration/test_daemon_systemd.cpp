// The real daemon as systemd runs it: the sd_notify protocol (STATUS while loading, READY,
// watchdog pings from the loop, RELOADING on SIGHUP, STOPPING on SIGTERM), socket
// activation (a listening socket passed as fd 3) and the socket's mode from the config.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <catch2/catch.hpp>

#include "tests/integration/daemon_test_helpers.h"
#include "tests/support/daemon_process.h"
#include "tests/support/model_copy.h"
#include "tests/support/run_command.h"

namespace {

using namespace sparkd;
using namespace sparkd::testing;

std::filesystem::path unique_socket_path(const std::string& stem) {
  static int counter = 0;
  return std::filesystem::temp_directory_path() /
         (stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".sock");
}

int bound_socket(const std::filesystem::path& path, int type) {
  std::filesystem::remove(path);
  const int fd = ::socket(AF_UNIX, type, 0);
  REQUIRE(fd >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  return fd;
}

// Every datagram that arrives within `wait`, in order.
std::vector<std::string> receive_datagrams(int fd, std::chrono::milliseconds wait) {
  std::vector<std::string> messages;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  char buffer[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n > 0) {
      messages.emplace_back(buffer, static_cast<size_t>(n));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return messages;
}

bool any_starts_with(const std::vector<std::string>& messages, const std::string& prefix) {
  return std::any_of(messages.begin(), messages.end(),
                     [&](const std::string& m) { return m.rfind(prefix, 0) == 0; });
}

}  // namespace

TEST_CASE("Daemon: speaks sd_notify: STATUS, READY, WATCHDOG, RELOADING, STOPPING",
          "[daemon][systemd]") {
  const std::filesystem::path notify_path = unique_socket_path("sparkd-notify");
  const int notify = bound_socket(notify_path, SOCK_DGRAM);
  DaemonLaunch launch;
  launch.environment = {{"NOTIFY_SOCKET", notify_path.string()},
                        {"WATCHDOG_USEC", "100000"},
                        {"WATCHDOG_PID", "$PID"}};
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); }, launch);

  std::vector<std::string> startup = receive_datagrams(notify, std::chrono::milliseconds(400));
  INFO(daemon.log());
  CHECK(any_starts_with(startup, "STATUS=loading embed"));
  CHECK(any_starts_with(startup, "READY=1"));
  CHECK(any_starts_with(startup, "STATUS=serving on"));
  // Half the watchdog interval: several pings in 400 ms.
  CHECK(std::count(startup.begin(), startup.end(), "WATCHDOG=1") >= 2);

  daemon.signal(SIGHUP);
  REQUIRE(daemon.wait_for_log("reloaded:"));
  std::vector<std::string> reload = receive_datagrams(notify, std::chrono::milliseconds(200));
  REQUIRE(any_starts_with(reload, "RELOADING=1\nMONOTONIC_USEC="));
  CHECK(any_starts_with(reload, "READY=1"));

  daemon.signal(SIGTERM);
  CHECK(daemon.wait_exit() == 0);
  CHECK(any_starts_with(receive_datagrams(notify, std::chrono::milliseconds(100)), "STOPPING=1"));
  ::close(notify);
  std::filesystem::remove(notify_path);
}

TEST_CASE("Daemon: serves on the socket systemd passes in (socket activation)",
          "[daemon][systemd]") {
  const std::filesystem::path activated = unique_socket_path("sparkd-activated");
  const int listener = bound_socket(activated, SOCK_STREAM);
  REQUIRE(::listen(listener, 16) == 0);
  DaemonLaunch launch;
  launch.listen_fd = listener;
  launch.environment = {{"LISTEN_FDS", "1"}, {"LISTEN_PID", "$PID"}};
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); }, launch);
  ::close(listener);  // the daemon has its own copy
  INFO(daemon.log());
  CHECK(daemon.log().find("using the socket passed by systemd") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(daemon.socket_path()));  // the config's path is unused
  auto client = api::Client::connect(activated.string());
  REQUIRE(client.has_value());
  CHECK(error_code(call_once(*client, embed_request("embed", {"activated"}))) == v1::OK);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait_exit() == 0);
  std::filesystem::remove(activated);
}

TEST_CASE("Daemon: the socket gets the configured mode", "[daemon][systemd]") {
  DaemonProcess daemon([](const auto& dir) {
    std::string config = fixture_config(dir);
    config.replace(config.find("socket_mode = \"0666\""), 20, "socket_mode = \"0640\"");
    return config;
  });
  struct stat info {};
  REQUIRE(::stat(daemon.socket_path().c_str(), &info) == 0);
  CHECK(S_ISSOCK(info.st_mode));
  CHECK((info.st_mode & 0777) == 0640);
}

TEST_CASE("Daemon: a pinned model that cannot load fails the start, without READY",
          "[daemon][systemd]") {
  ModelCopy broken("bert_embed");
  broken.edit_json("config.json", [](json& config) { config["hidden_size"] = -3; });
  const std::filesystem::path notify_path = unique_socket_path("sparkd-notify");
  const int notify = bound_socket(notify_path, SOCK_DGRAM);
  DaemonLaunch launch;
  launch.environment = {{"NOTIFY_SOCKET", notify_path.string()}};
  launch.wait_until_serving = false;
  DaemonProcess daemon(
      [&](const auto& dir) {
        return fixture_config(
            dir, "", "[[models]]\nname = \"broken\"\npath = \"" + broken.dir().string() + "\"\n");
      },
      launch);
  // Exit 3: the unit's RestartPreventExitStatus keeps systemd from restarting it in a loop.
  CHECK(daemon.wait_exit() == 3);
  INFO(daemon.log());
  CHECK_THAT(daemon.log(), Catch::Contains("cannot start: pinned model 'broken': "));
  CHECK(daemon.log().find("serving on") == std::string::npos);
  const std::vector<std::string> messages =
      receive_datagrams(notify, std::chrono::milliseconds(100));
  CHECK_FALSE(any_starts_with(messages, "READY=1"));
  CHECK(any_starts_with(messages, "STATUS=failed: pinned model 'broken': "));
  CHECK_FALSE(std::filesystem::exists(daemon.socket_path()));
  ::close(notify);
  std::filesystem::remove(notify_path);
}

TEST_CASE("Daemon: Health tells the truth about pinned and on_demand models that fail",
          "[daemon][systemd]") {
  ModelCopy model("bert_embed");
  // An on_demand model that cannot load does not stop the start: it is listed as failed.
  ModelCopy broken("bert_embed");
  broken.edit_json("config.json", [](json& config) { config["hidden_size"] = -3; });
  const std::string models = "[[models]]\nname = \"second\"\npath = \"" + model.dir().string() +
                             "\"\n[[models]]\nname = \"optional\"\nresidency = \"on_demand\"\n" +
                             "path = \"" + broken.dir().string() + "\"\n";
  DaemonProcess daemon([&](const auto& dir) { return fixture_config(dir, "", models); });
  api::Client client = daemon.connect();
  v1::Request health;
  health.mutable_health();
  v1::Response serving = call_once(client, health);
  CHECK(serving.health().status() == "serving");
  CHECK(serving.health().ready());
  CHECK(serving.health().reason().empty());
  v1::Request list;
  list.mutable_list_models();
  bool listed_failed = false;
  const v1::Response listed = call_once(client, list);
  for (const v1::ModelInfo& info : listed.list_models().models()) {
    if (info.name() == "optional") {
      listed_failed = info.state() == "failed" && !info.error().empty();
    }
  }
  CHECK(listed_failed);
  CHECK_THAT(daemon.log(), Catch::Contains("load failed: model 'optional': ") &&
                               Catch::Contains("(on_demand: sparkd serves without it)"));

  // A pinned model that fails on a reload: the daemon serves on, and Health says degraded.
  model.edit_json("config.json", [](json& config) { config["hidden_size"] = -3; });
  std::string changed = fixture_config(daemon.dir(), "",
                                       "[[models]]\nname = \"second\"\nmax_batch_inputs = 8\n"
                                       "path = \"" +
                                           model.dir().string() + "\"\n");
  daemon.write_config(changed);
  v1::Request reload;
  reload.mutable_reload();
  CHECK(error_code(call_once(client, reload)) != v1::OK);
  const v1::Response degraded = call_once(client, health);
  CHECK(degraded.health().status() == "degraded");
  CHECK_FALSE(degraded.health().ready());
  CHECK_THAT(degraded.health().reason(), Catch::StartsWith("model 'second' failed to load: "));
  const RunResult cli = run_command(
      std::string(SPARKCTL_BINARY) + " --socket " + daemon.socket_path() + " health", "");
  CHECK(cli.exit_code == 0);
  REQUIRE(cli.lines.size() == 1);
  CHECK_THAT(cli.lines[0],
             Catch::StartsWith("degraded (not ready): model 'second' failed to load: "));
  // An admin retry that fails again leaves the failure in place: Health still says degraded.
  CHECK(error_code(call_once(client, load_request("second", ""))) != v1::OK);
  CHECK(call_once(client, health).health().status() == "degraded");
  v1::Request status;
  status.mutable_status();
  const v1::Response states = call_once(client, status);
  std::map<std::string, std::string> state_of;
  for (const v1::ModelStatus& m : states.status().models()) state_of[m.name()] = m.state();
  CHECK(state_of["second"] == "failed");
  CHECK(state_of["embed"] == "ready");
  CHECK(error_code(call_once(client, embed_request("embed", {"still serving"}))) == v1::OK);
}
