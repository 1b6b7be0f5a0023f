// The real sparkd daemon as a child process, for integration tests: a temporary directory
// with its config (socket and metrics port of its own), start, readiness, signals, exit
// status, its log and its resident memory.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api/client/client.h"
#include "tests/support/loaded_fixture.h"

namespace sparkd::testing {

// A config with the three tiny fixture models: "embed" (bert_embed), "rerank" (bert_rerank)
// and "gen" (qwen3_f32). `extra_server` lines go into [server].
inline std::string fixture_config(const std::filesystem::path& dir,
                                  const std::string& extra_server = "",
                                  const std::string& extra_models = "") {
  std::ostringstream toml;
  toml << "[server]\n"
       << "socket = \"" << (dir / "sparkd.sock").string() << "\"\n"
       << "socket_mode = \"0666\"\n"
       << "socket_group = \"\"\n"
       << "drain_timeout_s = 60\n"
       << extra_server << "\n"
       << "[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n"
       << "[engine]\nthreads = 1\n"
       << "[governor]\nbudget = \"1GiB\"\n"
       << "[[models]]\nname = \"embed\"\npath = \"" << fixture_model_dir("bert_embed") << "\"\n"
       << "max_batch_tokens = 4096\n"
       << "[[models]]\nname = \"rerank\"\npath = \"" << fixture_model_dir("bert_rerank") << "\"\n"
       << "[[models]]\nname = \"gen\"\npath = \"" << fixture_model_dir("qwen3_f32") << "\"\n"
       << "kv_max = \"16MiB\"\nmax_batch_tokens = 1024\nmax_seqs = 64\n"
       << extra_models;
  return toml.str();
}

// fixture_config with the HTTP front end on a free loopback port; `extra_http` lines go into
// [http].
inline std::string http_fixture_config(const std::filesystem::path& dir,
                                       const std::string& extra_http = "") {
  return fixture_config(dir) + "\n[http]\nlisten = [\"127.0.0.1:0\"]\n" + extra_http;
}

// How the daemon is started, beyond its config: what systemd would hand it.
struct DaemonLaunch {
  // Set in the daemon's environment; "$PID" in a value becomes the daemon's pid (LISTEN_PID,
  // WATCHDOG_PID name the process they are meant for).
  std::vector<std::pair<std::string, std::string>> environment;
  int listen_fd = -1;  // passed as fd 3 (socket activation)
  bool wait_until_serving = true;
};

class DaemonProcess {
 public:
  explicit DaemonProcess(const std::function<std::string(const std::filesystem::path&)>& config,
                         DaemonLaunch launch = {})
      : launch_(std::move(launch)) {
    static int counter = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("sparkd-it-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    config_path_ = dir_ / "config.toml";
    log_path_ = dir_ / "sparkd.log";
    socket_path_ = (dir_ / "sparkd.sock").string();
    write_config(config(dir_));
    start();
  }
  ~DaemonProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  void write_config(const std::string& text) { std::ofstream(config_path_) << text; }
  const std::string& socket_path() const { return socket_path_; }
  const std::filesystem::path& dir() const { return dir_; }
  pid_t pid() const { return pid_; }

  std::string log() const {
    std::ifstream in(log_path_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // Waits until `pattern` appears in the log (true) or the daemon exits / time runs out.
  bool wait_for_log(const std::string& pattern,
                    std::chrono::seconds timeout = std::chrono::seconds(120)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (log().find(pattern) != std::string::npos) return true;
      if (pid_ > 0 && ::waitpid(pid_, &exit_status_, WNOHANG) == pid_) {
        pid_ = -1;
        return log().find(pattern) != std::string::npos;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  api::Client connect() {
    auto client = api::Client::connect(socket_path_);
    INFO(log());
    REQUIRE(client.has_value());
    return std::move(client).value();
  }

  uint16_t metrics_port() const {
    std::smatch match;
    const std::string text = log();
    static const std::regex pattern(R"(metrics on http://[^:]+:(\d+)/metrics)");
    REQUIRE(std::regex_search(text, match, pattern));
    return static_cast<uint16_t>(std::stoi(match[1]));
  }

  // The port of the first TCP address the HTTP front end listens on ([http] listen).
  uint16_t http_port() const {
    std::smatch match;
    const std::string text = log();
    static const std::regex pattern(R"(HTTP \(OpenAI, Ollama\) on http://[^ ]+:(\d+))");
    INFO(text);
    REQUIRE(std::regex_search(text, match, pattern));
    return static_cast<uint16_t>(std::stoi(match[1]));
  }

  void signal(int number) { REQUIRE(::kill(pid_, number) == 0); }

  // The exit code once the daemon has exited, or -1 after the timeout.
  int wait_exit(std::chrono::seconds timeout = std::chrono::seconds(120)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, &exit_status_, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (pid_ > 0) return -1;
    return WIFEXITED(exit_status_) ? WEXITSTATUS(exit_status_) : 128 + WTERMSIG(exit_status_);
  }

  // Resident memory of the daemon in KiB (/proc/PID/status VmRSS).
  long rss_kib() const {
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
  }

 private:
  void start() {
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      if (launch_.listen_fd >= 0) ::dup2(launch_.listen_fd, 3);
      const std::string pid = std::to_string(::getpid());
      for (const auto& [name, value] : launch_.environment) {
        ::setenv(name.c_str(), value == "$PID" ? pid.c_str() : value.c_str(), 1);
      }
      ::execl(SPARKD_DAEMON_BINARY, SPARKD_DAEMON_BINARY, "--config", config_path_.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (launch_.wait_until_serving) {
      INFO(log());
      REQUIRE(wait_for_log("serving on"));
    }
  }

  DaemonLaunch launch_;
  std::filesystem::path dir_, config_path_, log_path_;
  std::string socket_path_;
  pid_t pid_ = -1;
  int exit_status_ = 0;
};

}  // namespace sparkd::testing
