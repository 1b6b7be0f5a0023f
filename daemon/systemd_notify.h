// Thin wrappers over sd_notify(3) and sd_listen_fds(3): the daemon's side of Type=notify,
// WatchdogSec= and socket activation. Outside systemd (no NOTIFY_SOCKET, no LISTEN_FDS)
// every call is a harmless no-op, so the daemon runs the same from a shell.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace sparkd::daemon {

// Each call returns true when the message reached systemd, false when there is no
// NOTIFY_SOCKET (not run by systemd) or sending failed; the daemon carries on either way.
class SystemdNotifier {
 public:
  bool ready();                          // READY=1: pinned models are loaded, serving
  bool status(const std::string& text);  // STATUS=<text>, one line (newlines become spaces)
  bool reloading();                      // RELOADING=1 + MONOTONIC_USEC=<now>
  bool stopping();                       // STOPPING=1: draining before exit
  bool watchdog();                       // WATCHDOG=1: the loop is alive
  // How often systemd expects watchdog(), from WATCHDOG_USEC (for this process only,
  // per WATCHDOG_PID); nothing when the watchdog is off. Ping at half of it.
  std::optional<std::chrono::microseconds> watchdog_interval() const;

 private:
  bool send(const std::string& state);
};

// The sockets systemd passed by socket activation (LISTEN_FDS/LISTEN_PID), each checked to
// be a listening AF_UNIX stream socket; empty when none were passed. FAILED_PRECONDITION
// when one is something else (a misconfigured .socket unit). Unsets LISTEN_* so children
// do not inherit them; the descriptors are marked close-on-exec.
Expected<std::vector<int>> systemd_listen_fds();

}  // namespace sparkd::daemon
