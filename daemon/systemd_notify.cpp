#include "daemon/systemd_notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace sparkd::daemon {

bool SystemdNotifier::send(const std::string& state) {
  // Keep NOTIFY_SOCKET set: the daemon notifies many times over its life.
  return ::sd_notify(0, state.c_str()) > 0;
}

bool SystemdNotifier::ready() {
  return send("READY=1");
}

bool SystemdNotifier::status(const std::string& text) {
  // A newline would start another assignment in the datagram; STATUS= is one line.
  std::string line = text;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return send("STATUS=" + line);
}

bool SystemdNotifier::reloading() {
  // systemd (Type=notify-reload, v253+) matches the reload to its request by this stamp;
  // older versions ignore it.
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const uint64_t now_us =
      static_cast<uint64_t>(now.tv_sec) * 1000000u + static_cast<uint64_t>(now.tv_nsec) / 1000u;
  return send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(now_us));
}

bool SystemdNotifier::stopping() {
  return send("STOPPING=1");
}

bool SystemdNotifier::watchdog() {
  return send("WATCHDOG=1");
}

std::optional<std::chrono::microseconds> SystemdNotifier::watchdog_interval() const {
  uint64_t interval_us = 0;
  if (::sd_watchdog_enabled(0, &interval_us) <= 0 || interval_us == 0) return std::nullopt;
  return std::chrono::microseconds(static_cast<std::chrono::microseconds::rep>(interval_us));
}

Expected<std::vector<int>> systemd_listen_fds() {
  const int count = ::sd_listen_fds(1);
  if (count < 0) {
    return Status(StatusCode::kFailedPrecondition,
                  std::string("LISTEN_FDS from systemd is unusable: ") + std::strerror(-count));
  }
  std::vector<int> fds;
  for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + count; ++fd) {
    const int is_unix_listener = ::sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0);
    if (is_unix_listener <= 0) {
      return Status(
          StatusCode::kFailedPrecondition,
          "socket activation passed fd " + std::to_string(fd) +
              ", which is not a listening AF_UNIX stream socket" +
              (is_unix_listener < 0 ? std::string(" (") + std::strerror(-is_unix_listener) + ")"
                                    : std::string()) +
              "; sparkd.socket must use ListenStream=/path/to/socket");
    }
    fds.push_back(fd);
  }
  return fds;
}

}  // namespace sparkd::daemon
