// sparkctl top: a live view of the governor and the models, redrawn every interval; run in a
// real terminal (tmux) and read back from its screen, and in a pipe for a fixed count.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/daemon_test_helpers.h"
#include "tests/support/daemon_process.h"
#include "tests/support/run_command.h"

namespace {

using namespace sparkd;
using namespace sparkd::testing;
using Catch::Contains;

size_t count_of(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++count;
  }
  return count;
}

TEST_CASE("sparkctl top: a fixed number of frames into a pipe", "[sparkctl][top]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });
  const RunResult run =
      run_command(std::string(SPARKCTL_BINARY) + " --socket " + daemon.socket_path() +
                      " top --iterations 3 --interval 0.05",
                  "");
  const std::string text = run.text();
  INFO(text);
  CHECK(run.exit_code == 0);
  CHECK(count_of(text, "\033[H\033[2J") == 3);  // each frame redraws the screen
  CHECK(count_of(text, "memory budget") == 3);
  CHECK_THAT(text, Contains("TOK/S") && Contains("embed") && Contains("gen") &&
                       Contains("memory pressure") && Contains("reclaims"));
  // For scripts there is `status --json`; top refuses it.
  const RunResult json = run_command(
      std::string(SPARKCTL_BINARY) + " --socket " + daemon.socket_path() + " --json top", "");
  CHECK(json.exit_code == 2);
}

TEST_CASE("sparkctl top: a live terminal view, quit with Ctrl-C", "[sparkctl][top]") {
  DaemonProcess daemon([](const auto& dir) { return fixture_config(dir); });
  // A tmux server of this test's own: a real terminal to draw in, read back with
  // capture-pane.
  const std::string tmux = "tmux -L sparkd-top-" + std::to_string(::getpid()) + " ";
  REQUIRE(run_command(tmux + "new-session -d -s top -x 200 -y 50 '" + SPARKCTL_BINARY +
                          " --socket " + daemon.socket_path() + " top --interval 0.2'",
                      "")
              .exit_code == 0);
  struct Server {
    std::string tmux;
    ~Server() { run_command(tmux + "kill-server 2>/dev/null", ""); }
  } server{tmux};
  auto screen = [&] { return run_command(tmux + "capture-pane -p -t top", "").text(); };
  auto wait_for_screen = [&](auto condition) {
    for (int attempt = 0; attempt < 300; ++attempt) {
      if (condition(screen())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  CHECK(wait_for_screen([](const std::string& s) {
    return s.find("memory budget") != std::string::npos && s.find("gen ") != std::string::npos;
  }));
  // Tokens generated while it watches show up as a rate.
  api::Client client = daemon.connect();
  v1::Request generate = generate_request("gen", "count", 3000);
  generate.mutable_generate()->set_ignore_eos(true);
  std::thread load([&] { call_once(client, generate); });
  const bool rate_seen = wait_for_screen([](const std::string& s) {
    // The gen row's last column, TOK/S.
    const size_t row = s.find("\ngen ");
    if (row == std::string::npos) return false;
    const std::string line = s.substr(row + 1, s.find('\n', row + 1) - row - 1);
    const size_t last = line.find_last_of(' ');
    return last != std::string::npos && std::stod(line.substr(last + 1)) > 0;
  });
  load.join();
  CHECK(rate_seen);
  const std::string shown = screen();
  INFO(shown);
  CHECK_THAT(shown, Contains("MODEL") && Contains("KV_USED") && Contains("Ctrl-C quits"));
  // Ctrl-C ends it (and with it the tmux session).
  run_command(tmux + "send-keys -t top C-c", "");
  bool ended = false;
  for (int attempt = 0; attempt < 100 && !ended; ++attempt) {
    ended = run_command(tmux + "has-session -t top 2>/dev/null", "").exit_code != 0;
    if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(ended);
}

}  // namespace
