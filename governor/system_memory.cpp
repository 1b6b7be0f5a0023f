#include "governor/system_memory.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>
#include <system_error>

namespace sparkd::governor {
namespace {

constexpr uint64_t kBytesPerKib = 1024;

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

// Calls `visit(line)` for every line of `text`, without the newline.
template <typename Visit>
void for_each_line(std::string_view text, Visit&& visit) {
  while (!text.empty()) {
    const size_t end = text.find('\n');
    visit(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
}

std::optional<uint64_t> parse_u64(std::string_view digits) {
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

std::optional<double> parse_double(std::string_view digits) {
  double value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value,
                                            std::chars_format::fixed);
  if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

// "   24684084 kB" -> bytes.
Expected<uint64_t> parse_meminfo_kib(std::string_view key, std::string_view value_text) {
  std::string_view value = trim(value_text);
  if (value.size() < 3 || value.substr(value.size() - 3) != " kB") {
    return Status(StatusCode::kDataLoss, "meminfo: " + std::string(key) + " is '" +
                                             std::string(value) + "', expected '<number> kB'");
  }
  const auto kib = parse_u64(trim(value.substr(0, value.size() - 3)));
  if (!kib) {
    return Status(StatusCode::kDataLoss, "meminfo: " + std::string(key) + " is '" +
                                             std::string(value) + "', not a whole number of kB");
  }
  if (*kib > UINT64_MAX / kBytesPerKib) {
    return Status(StatusCode::kDataLoss, "meminfo: " + std::string(key) + " = " +
                                             std::to_string(*kib) +
                                             " kB does not fit in 64 bits of bytes");
  }
  return *kib * kBytesPerKib;
}

// "some avg10=0.12 avg60=0.05 avg300=0.00 total=123456" (after the kind word).
Expected<PressureLine> parse_pressure_fields(std::string_view kind, std::string_view fields) {
  PressureLine line;
  bool seen_avg10 = false, seen_avg60 = false, seen_avg300 = false, seen_total = false;
  while (true) {
    fields = trim(fields);
    if (fields.empty()) break;
    const size_t space = fields.find_first_of(" \t");
    const std::string_view field = fields.substr(0, space);
    fields = space == std::string_view::npos ? std::string_view() : fields.substr(space);
    const size_t equals = field.find('=');
    if (equals == std::string_view::npos) {
      return Status(StatusCode::kDataLoss, "memory pressure: '" + std::string(field) + "' on the " +
                                               std::string(kind) + " line is not name=value");
    }
    const std::string_view name = field.substr(0, equals);
    const std::string_view value = field.substr(equals + 1);
    auto bad_value = [&](const char* expected) {
      return Status(StatusCode::kDataLoss, "memory pressure: " + std::string(kind) + " " +
                                               std::string(name) + "='" + std::string(value) +
                                               "' is not " + expected);
    };
    if (name == "total") {
      const auto total = parse_u64(value);
      if (!total) return bad_value("a whole number of microseconds");
      line.total_us = *total;
      seen_total = true;
      continue;
    }
    double* average = name == "avg10"    ? &line.avg10
                      : name == "avg60"  ? &line.avg60
                      : name == "avg300" ? &line.avg300
                                         : nullptr;
    if (average == nullptr) continue;  // a future kernel's extra field: not ours to reject
    const auto percent = parse_double(value);
    if (!percent || *percent < 0.0 || *percent > 100.0) return bad_value("a percentage 0..100");
    *average = *percent;
    (name == "avg10" ? seen_avg10 : name == "avg60" ? seen_avg60 : seen_avg300) = true;
  }
  if (!(seen_avg10 && seen_avg60 && seen_avg300 && seen_total)) {
    return Status(StatusCode::kDataLoss, "memory pressure: the " + std::string(kind) +
                                             " line lacks one of avg10, avg60, avg300, total");
  }
  return line;
}

// Reads a whole /proc file. /proc files report size 0, so read until EOF.
Expected<std::string> read_proc_file(const std::string& path, StatusCode missing_code) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int open_errno = errno;
    return Status(open_errno == ENOENT ? missing_code : StatusCode::kUnavailable,
                  "cannot open " + path + ": " + std::strerror(open_errno));
  }
  std::string text;
  char buffer[4096];
  while (true) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0) {
      if (errno == EINTR) continue;
      const int read_errno = errno;
      ::close(fd);
      // A kernel built with PSI but booted with psi=0 has the file and refuses reads.
      return Status(read_errno == EOPNOTSUPP ? missing_code : StatusCode::kUnavailable,
                    "cannot read " + path + ": " + std::strerror(read_errno));
    }
    if (got == 0) break;
    text.append(buffer, static_cast<size_t>(got));
  }
  ::close(fd);
  return text;
}

}  // namespace

Expected<SystemMemory> parse_meminfo(std::string_view text) {
  std::optional<uint64_t> total_bytes, available_bytes;
  Status error;
  for_each_line(text, [&](std::string_view line) {
    if (!error.is_ok()) return;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return;
    const std::string_view key = line.substr(0, colon);
    std::optional<uint64_t>* target = key == "MemTotal"       ? &total_bytes
                                      : key == "MemAvailable" ? &available_bytes
                                                              : nullptr;
    if (target == nullptr) return;
    auto bytes = parse_meminfo_kib(key, line.substr(colon + 1));
    if (!bytes) {
      error = bytes.status();
      return;
    }
    *target = *bytes;
  });
  if (!error.is_ok()) return error;
  if (!total_bytes) return Status(StatusCode::kDataLoss, "meminfo: no MemTotal line");
  if (!available_bytes) {
    // MemAvailable exists since Linux 3.14; without it the governor would have to guess.
    return Status(StatusCode::kDataLoss,
                  "meminfo: no MemAvailable line (needs Linux 3.14 or later)");
  }
  if (*total_bytes == 0) return Status(StatusCode::kDataLoss, "meminfo: MemTotal is 0 kB");
  return SystemMemory{*total_bytes, *available_bytes};
}

Expected<SystemMemory> read_system_memory(const std::string& path) {
  SPARKD_ASSIGN_OR_RETURN(const std::string text, read_proc_file(path, StatusCode::kUnavailable));
  auto memory = parse_meminfo(text);
  if (!memory) return Status(memory.status().code(), path + ": " + memory.status().message());
  return memory;
}

Expected<MemoryPressure> parse_memory_pressure(std::string_view text) {
  std::optional<PressureLine> some, full;
  Status error;
  for_each_line(text, [&](std::string_view raw_line) {
    const std::string_view line = trim(raw_line);
    if (!error.is_ok() || line.empty()) return;
    const size_t space = line.find_first_of(" \t");
    const std::string_view kind = line.substr(0, space);
    std::optional<PressureLine>* target = kind == "some" ? &some : kind == "full" ? &full : nullptr;
    if (target == nullptr) {
      error = Status(StatusCode::kDataLoss, "memory pressure: unexpected line '" +
                                                std::string(line) + "', expected some/full");
      return;
    }
    if (target->has_value()) {
      error = Status(StatusCode::kDataLoss,
                     "memory pressure: the " + std::string(kind) + " line appears twice");
      return;
    }
    auto parsed = parse_pressure_fields(
        kind, space == std::string_view::npos ? std::string_view() : line.substr(space));
    if (!parsed) {
      error = parsed.status();
      return;
    }
    *target = *parsed;
  });
  if (!error.is_ok()) return error;
  if (!some || !full) {
    return Status(StatusCode::kDataLoss,
                  std::string("memory pressure: no '") + (some ? "full" : "some") + "' line");
  }
  return MemoryPressure{*some, *full};
}

Expected<MemoryPressure> read_memory_pressure(const std::string& path) {
  SPARKD_ASSIGN_OR_RETURN(const std::string text, read_proc_file(path, StatusCode::kNotFound));
  auto pressure = parse_memory_pressure(text);
  if (!pressure) {
    return Status(pressure.status().code(), path + ": " + pressure.status().message());
  }
  return pressure;
}

Expected<PressureTrigger> PressureTrigger::open(const std::string& path,
                                                std::chrono::microseconds stall,
                                                std::chrono::microseconds window) {
  const int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return Status(errno == ENOENT ? StatusCode::kNotFound : StatusCode::kUnavailable,
                  path + ": " + std::strerror(errno));
  }
  const std::string trigger =
      "some " + std::to_string(stall.count()) + " " + std::to_string(window.count());
  // The terminating NUL is part of what the kernel reads.
  if (::write(fd, trigger.c_str(), trigger.size() + 1) < 0) {
    const int error = errno;
    ::close(fd);
    return Status(StatusCode::kUnavailable,
                  path + ": cannot arm the trigger '" + trigger + "': " + std::strerror(error));
  }
  return PressureTrigger(fd);
}

PressureTrigger& PressureTrigger::operator=(PressureTrigger&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

PressureTrigger::~PressureTrigger() {
  if (fd_ >= 0) ::close(fd_);
}

bool PressureTrigger::wait(std::chrono::milliseconds timeout) {
  pollfd event{};
  event.fd = fd_;
  event.events = POLLPRI;
  const int ready = ::poll(&event, 1, static_cast<int>(timeout.count()));
  return ready > 0 && (event.revents & POLLPRI) != 0;
}

uint64_t process_resident_bytes() {
  std::FILE* statm = std::fopen("/proc/self/statm", "r");
  if (statm == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int read = std::fscanf(statm, "%llu %llu", &size, &resident);
  std::fclose(statm);
  if (read != 2) return 0;
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace sparkd::governor
