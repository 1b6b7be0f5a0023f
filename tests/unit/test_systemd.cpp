// systemd integration: the exact sd_notify datagrams, the watchdog interval, sockets passed by
// socket activation, the unit files (systemd-analyze verify and security) and where
// `cmake --install` puts the systemd files.

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/systemd_notify.h"
#include "tests/support/run_command.h"

namespace {

namespace fs = std::filesystem;
using sparkd::StatusCode;
using sparkd::daemon::systemd_listen_fds;
using sparkd::daemon::SystemdNotifier;

// Sets environment variables for one test and puts the old values back afterwards.
class ScopedEnvironment {
 public:
  ScopedEnvironment() {
    for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                             "LISTEN_PID", "LISTEN_FDNAMES"}) {
      const char* value = std::getenv(name);
      saved_[name] = value ? std::optional<std::string>(value) : std::nullopt;
      ::unsetenv(name);
    }
  }
  ~ScopedEnvironment() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }
  void set(const char* name, const std::string& value) { ::setenv(name, value.c_str(), 1); }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

fs::path unique_temp_path(const std::string& what) {
  static int counter = 0;
  return fs::temp_directory_path() / ("sparkd-test-" + what + "-" + std::to_string(::getpid()) +
                                      "-" + std::to_string(counter++));
}

// A datagram socket standing in for systemd's notification socket.
class FakeNotifySocket {
 public:
  FakeNotifySocket() : path_(unique_temp_path("notify")) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path_.string().size() < sizeof address.sun_path);
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path_.c_str());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  }
  ~FakeNotifySocket() {
    ::close(fd_);
    fs::remove(path_);
  }
  const fs::path& path() const { return path_; }
  // The next datagram; sd_notify has sent it by the time it returns, so it is queued.
  std::string receive() {
    char buffer[4096];
    const ssize_t got = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
    REQUIRE(got >= 0);
    return std::string(buffer, static_cast<size_t>(got));
  }
  bool empty() {
    char byte;
    return ::recv(fd_, &byte, 1, MSG_DONTWAIT | MSG_PEEK) < 0;
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

uint64_t monotonic_now_us() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000u + static_cast<uint64_t>(now.tv_nsec) / 1000u;
}

TEST_CASE("systemd notify: each call sends its exact datagram", "[systemd]") {
  ScopedEnvironment environment;
  FakeNotifySocket systemd;
  environment.set("NOTIFY_SOCKET", systemd.path().string());
  SystemdNotifier notifier;

  CHECK(notifier.ready());
  CHECK(systemd.receive() == "READY=1");
  CHECK(notifier.status("loading qwen3-8b (2 of 3)"));
  CHECK(systemd.receive() == "STATUS=loading qwen3-8b (2 of 3)");
  // A newline would smuggle a second assignment (here READY=1) into the datagram.
  CHECK(notifier.status("bad\nREADY=1"));
  CHECK(systemd.receive() == "STATUS=bad READY=1");
  CHECK(notifier.stopping());
  CHECK(systemd.receive() == "STOPPING=1");
  CHECK(notifier.watchdog());
  CHECK(systemd.receive() == "WATCHDOG=1");

  const uint64_t before_us = monotonic_now_us();
  CHECK(notifier.reloading());
  const uint64_t after_us = monotonic_now_us();
  const std::string reloading = systemd.receive();
  std::smatch match;
  REQUIRE(std::regex_match(reloading, match, std::regex("RELOADING=1\nMONOTONIC_USEC=([0-9]+)")));
  const uint64_t stamp_us = std::stoull(match[1].str());
  CHECK(stamp_us >= before_us);
  CHECK(stamp_us <= after_us);
  CHECK(systemd.empty());
}

TEST_CASE("systemd notify: outside systemd every call is a no-op", "[systemd]") {
  ScopedEnvironment environment;  // NOTIFY_SOCKET unset
  SystemdNotifier notifier;
  CHECK_FALSE(notifier.ready());
  CHECK_FALSE(notifier.status("x"));
  CHECK_FALSE(notifier.reloading());
  CHECK_FALSE(notifier.stopping());
  CHECK_FALSE(notifier.watchdog());
  CHECK_FALSE(notifier.watchdog_interval().has_value());
}

TEST_CASE("systemd notify: a socket nobody listens on is a failed send", "[systemd]") {
  ScopedEnvironment environment;
  environment.set("NOTIFY_SOCKET", unique_temp_path("no-listener").string());
  CHECK_FALSE(SystemdNotifier().ready());
}

TEST_CASE("systemd watchdog: the interval is WATCHDOG_USEC, for this process only", "[systemd]") {
  ScopedEnvironment environment;
  environment.set("WATCHDOG_USEC", "30000000");
  environment.set("WATCHDOG_PID", std::to_string(::getpid()));
  const auto interval = SystemdNotifier().watchdog_interval();
  REQUIRE(interval.has_value());
  CHECK(*interval == std::chrono::seconds(30));

  // Meant for another process (a parent that exec'd us without clearing it).
  environment.set("WATCHDOG_PID", std::to_string(::getpid() + 1));
  CHECK_FALSE(SystemdNotifier().watchdog_interval().has_value());

  environment.set("WATCHDOG_PID", std::to_string(::getpid()));
  environment.set("WATCHDOG_USEC", "not-a-number");
  CHECK_FALSE(SystemdNotifier().watchdog_interval().has_value());
}

// Puts `fd` at descriptor 3 (SD_LISTEN_FDS_START) for one test, and whatever was there back.
class ScopedFd3 {
 public:
  explicit ScopedFd3(int fd) {
    REQUIRE(fd >= 0);
    if (fd == 3) return;  // 3 was free when `fd` was opened: nothing to save
    saved_ = ::fcntl(3, F_GETFD) == -1 ? -1 : ::fcntl(3, F_DUPFD_CLOEXEC, 10);
    REQUIRE(::dup2(fd, 3) == 3);
    ::close(fd);
  }
  ~ScopedFd3() {
    ::close(3);
    if (saved_ >= 0) {
      ::dup2(saved_, 3);
      ::close(saved_);
    }
  }

 private:
  int saved_ = -1;
};

// Removes a socket file when the test ends, also when a REQUIRE ends it early.
struct RemoveOnExit {
  fs::path path;
  ~RemoveOnExit() { fs::remove(path); }
};

int listening_unix_socket(const fs::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  return fd;
}

TEST_CASE("systemd socket activation: a passed listening unix socket is returned", "[systemd]") {
  ScopedEnvironment environment;
  const fs::path socket_path = unique_temp_path("activation");
  const RemoveOnExit remove_socket{socket_path};
  {
    ScopedFd3 passed(listening_unix_socket(socket_path));
    environment.set("LISTEN_FDS", "1");
    environment.set("LISTEN_PID", std::to_string(::getpid()));
    const auto fds = systemd_listen_fds();
    REQUIRE(fds.has_value());
    CHECK(*fds == std::vector<int>{3});
    // Consumed: children the daemon starts must not think they were passed sockets.
    CHECK(std::getenv("LISTEN_FDS") == nullptr);
    CHECK(std::getenv("LISTEN_PID") == nullptr);
    CHECK((::fcntl(3, F_GETFD) & FD_CLOEXEC) != 0);
  }
}

TEST_CASE("systemd socket activation: none passed, or passed to another process, is empty",
          "[systemd]") {
  ScopedEnvironment environment;
  auto fds = systemd_listen_fds();
  REQUIRE(fds.has_value());
  CHECK(fds->empty());

  const fs::path socket_path = unique_temp_path("activation-other");
  const RemoveOnExit remove_socket{socket_path};
  {
    ScopedFd3 passed(listening_unix_socket(socket_path));
    environment.set("LISTEN_FDS", "1");
    environment.set("LISTEN_PID", std::to_string(::getpid() + 1));
    fds = systemd_listen_fds();
    REQUIRE(fds.has_value());
    CHECK(fds->empty());
  }
}

TEST_CASE("systemd socket activation: a passed fd that is no unix listener is an error",
          "[systemd]") {
  ScopedEnvironment environment;
  SECTION("a datagram socket") {
    ScopedFd3 passed(::socket(AF_UNIX, SOCK_DGRAM, 0));
    environment.set("LISTEN_FDS", "1");
    environment.set("LISTEN_PID", std::to_string(::getpid()));
    const auto fds = systemd_listen_fds();
    REQUIRE_FALSE(fds.has_value());
    CHECK(fds.status().code() == StatusCode::kFailedPrecondition);
    CHECK_THAT(fds.status().message(), Catch::Contains("fd 3"));
    CHECK_THAT(fds.status().message(), Catch::Contains("ListenStream="));
  }
  SECTION("a TCP socket") {
    ScopedFd3 passed(::socket(AF_INET, SOCK_STREAM, 0));
    environment.set("LISTEN_FDS", "1");
    environment.set("LISTEN_PID", std::to_string(::getpid()));
    CHECK_FALSE(systemd_listen_fds().has_value());
  }
  SECTION("a pipe") {
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    ::close(pipe_fds[1]);
    ScopedFd3 passed(pipe_fds[0]);
    environment.set("LISTEN_FDS", "1");
    environment.set("LISTEN_PID", std::to_string(::getpid()));
    CHECK_FALSE(systemd_listen_fds().has_value());
  }
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void replace_once(std::string& text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
}

std::string joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  return text;
}

// The repository's units in a temporary directory, ExecStart= pointing at the built daemon.
fs::path units_for_built_daemon() {
  INFO("the daemon binary " << SPARKD_DAEMON_BINARY
                            << " must be built (cmake --build <dir> --target sparkd)");
  REQUIRE(fs::exists(SPARKD_DAEMON_BINARY));
  const fs::path dir = unique_temp_path("units");
  fs::create_directories(dir);
  std::string service = read_text(fs::path(SPARKD_SOURCE_DIR) / "systemd/sparkd.service");
  replace_once(service, "ExecStart=/usr/sbin/sparkd ",
               std::string("ExecStart=") + SPARKD_DAEMON_BINARY + " ");
  std::ofstream(dir / "sparkd.service") << service;
  fs::copy_file(fs::path(SPARKD_SOURCE_DIR) / "systemd/sparkd.socket", dir / "sparkd.socket");
  return dir;
}

TEST_CASE("systemd units: systemd-analyze verify finds nothing to warn about", "[systemd]") {
  const fs::path dir = units_for_built_daemon();
  // It exits 0 even for unknown keys; the warnings go to stderr, hence 2>&1 and no output.
  // --man=no: Documentation= man pages are not installed in containers.
  const auto result = sparkd::testing::run_command("systemd-analyze verify --man=no " +
                                                       (dir / "sparkd.service").string() + " " +
                                                       (dir / "sparkd.socket").string() + " 2>&1",
                                                   "");
  fs::remove_all(dir);
  INFO(joined(result.lines));
  CHECK(result.exit_code == 0);
  CHECK(result.lines.empty());
}

TEST_CASE("systemd units: systemd-analyze security rates the service OK or better", "[systemd]") {
  const fs::path dir = units_for_built_daemon();
  const auto result =
      sparkd::testing::run_command("systemd-analyze security --offline=true --no-pager " +
                                       (dir / "sparkd.service").string() + " 2>&1",
                                   "");
  fs::remove_all(dir);
  INFO(joined(result.lines));
  REQUIRE(result.exit_code == 0);
  std::optional<double> exposure;
  std::string level;
  const std::regex overall("Overall exposure level for sparkd.service: ([0-9.]+) ([A-Z]+).*");
  for (const std::string& line : result.lines) {
    std::smatch match;
    if (std::regex_search(line, match, overall)) {
      exposure = std::stod(match[1].str());
      level = match[2].str();
      WARN(line.substr(static_cast<size_t>(match.position(0))));
    }
  }
  REQUIRE(exposure.has_value());
  // systemd's scale: PERFECT 0, SAFE < 1, OK < 5, then MEDIUM, EXPOSED, UNSAFE, DANGEROUS.
  CHECK(*exposure < 5.0);
  CHECK((level == "OK" || level == "SAFE" || level == "PERFECT"));
}

// `cmake --install <build> --component systemd` into a temporary DESTDIR.
fs::path install_systemd_component(const std::string& prefix, const fs::path& destdir) {
  const auto result = sparkd::testing::run_command(
      "DESTDIR=" + destdir.string() + " cmake --install " + SPARKD_BINARY_DIR +
          " --component systemd --prefix " + prefix + " 2>&1",
      "");
  INFO(joined(result.lines));
  REQUIRE(result.exit_code == 0);
  return destdir;
}

TEST_CASE("systemd install: cmake --install puts every systemd file where systemd looks",
          "[systemd]") {
  const fs::path destdir = unique_temp_path("destdir");
  install_systemd_component("/usr", destdir);
  const fs::path units = destdir / "usr/lib/systemd/system";
  const fs::path source = fs::path(SPARKD_SOURCE_DIR) / "systemd";

  // The service is the repository's, ExecStart= unchanged for prefix /usr.
  CHECK(read_text(units / "sparkd.service") == read_text(source / "sparkd.service"));
  CHECK(read_text(units / "sparkd.socket") == read_text(source / "sparkd.socket"));
  CHECK(read_text(destdir / "usr/lib/sysusers.d/sparkd.conf") ==
        read_text(source / "sparkd.sysusers"));
  CHECK(read_text(destdir / "usr/lib/tmpfiles.d/sparkd.conf") ==
        read_text(source / "sparkd.tmpfiles"));

  // The installed configuration is config.toml set up for a system service.
  const std::string config = read_text(destdir / "etc/sparkd/config.toml");
  CHECK_THAT(config, Catch::Contains("\nsocket = \"/run/sparkd/sparkd.sock\"\n"));
  CHECK_THAT(config, Catch::Contains("\nsocket_group = \"sparkd\"\n"));
  CHECK_THAT(config, Catch::Contains("\nos_reserve = \"8GiB\"\n"));
  CHECK_THAT(config, !Catch::Contains("\nsocket = \"build/"));
  // Every model's path points into /var/lib/sparkd/models/<name>, none stays relative.
  const std::string source_config = read_text(fs::path(SPARKD_SOURCE_DIR) / "config.toml");
  const std::regex name_line("\nname = \"([^\"]+)\"");
  int models = 0;
  for (auto it = std::sregex_iterator(source_config.begin(), source_config.end(), name_line);
       it != std::sregex_iterator(); ++it, ++models) {
    CHECK_THAT(config,
               Catch::Contains("\npath = \"/var/lib/sparkd/models/" + (*it)[1].str() + "\"\n"));
  }
  CHECK(models > 0);
  CHECK_THAT(config, !Catch::Matches("[\\s\\S]*\npath = \"[^/][\\s\\S]*"));

  // Installing again keeps the administrator's edits and puts the new file beside them.
  std::ofstream(destdir / "etc/sparkd/config.toml", std::ios::app) << "# edited by the admin\n";
  install_systemd_component("/usr", destdir);
  CHECK_THAT(read_text(destdir / "etc/sparkd/config.toml"), Catch::EndsWith("the admin\n"));
  CHECK(read_text(destdir / "etc/sparkd/config.toml.dist") == config);
  fs::remove_all(destdir);
}

TEST_CASE("systemd install: another prefix starts the daemon installed there", "[systemd]") {
  const fs::path destdir = unique_temp_path("destdir-opt");
  install_systemd_component("/opt/sparkd", destdir);
  const std::string service = read_text(destdir / "opt/sparkd/lib/systemd/system/sparkd.service");
  CHECK_THAT(service, Catch::Contains("\nExecStart=/opt/sparkd/sbin/sparkd --config "
                                      "/etc/sparkd/config.toml\n"));
  CHECK(fs::exists(destdir / "opt/sparkd/lib/sysusers.d/sparkd.conf"));
  CHECK(fs::exists(destdir / "opt/sparkd/lib/tmpfiles.d/sparkd.conf"));
  CHECK(fs::exists(destdir / "etc/sparkd/config.toml"));
  fs::remove_all(destdir);
}

}  // namespace
