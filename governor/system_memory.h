// What the machine really has: /proc/meminfo and /proc/pressure/memory (PSI).
//
// On unified-memory machines (DGX Spark: CPU and GPU share one pool) cudaMemGetInfo reports
// MemFree, so page cache looks used, and NVML memory queries are unsupported. MemAvailable
// (what the kernel could hand out without swapping) and PSI (how much time tasks stall
// waiting for memory) are the readings the governor trusts. Pure parsing, no CUDA.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace sparkd::governor {

struct SystemMemory {
  uint64_t total_bytes = 0;      // MemTotal
  uint64_t available_bytes = 0;  // MemAvailable
};

// Parses the text of /proc/meminfo (values in kB, converted to bytes). MemTotal and
// MemAvailable must both be present; other lines are ignored.
Expected<SystemMemory> parse_meminfo(std::string_view text);
Expected<SystemMemory> read_system_memory(const std::string& path = "/proc/meminfo");

// One line of a PSI file: the share of wall time (percent, 0..100, as the kernel prints
// it) some/all tasks were stalled over the last 10/60/300 s, and the cumulative stall time.
struct PressureLine {
  double avg10 = 0, avg60 = 0, avg300 = 0;
  uint64_t total_us = 0;
};
struct MemoryPressure {
  PressureLine some;  // at least one task stalled on memory
  PressureLine full;  // all non-idle tasks stalled at once: the box is thrashing
};

// Parses the text of /proc/pressure/memory: a "some" and a "full" line.
Expected<MemoryPressure> parse_memory_pressure(std::string_view text);
// NOT_FOUND when the kernel has no PSI (containers often don't): callers then omit it.
Expected<MemoryPressure> read_memory_pressure(const std::string& path = "/proc/pressure/memory");

// A PSI trigger on /proc/pressure/memory (Linux 5.2+): the kernel wakes poll() as soon as
// tasks stall on memory for `stall` within `window`, so the governor reacts to pressure at
// once rather than at its next periodic reading. Unprivileged processes need a window that is
// a multiple of 2 s; containers often have no PSI at all (open() then fails and callers
// fall back to periodic readings).
class PressureTrigger {
 public:
  static Expected<PressureTrigger> open(const std::string& path, std::chrono::microseconds stall,
                                        std::chrono::microseconds window);
  PressureTrigger(PressureTrigger&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  PressureTrigger& operator=(PressureTrigger&& other) noexcept;
  PressureTrigger(const PressureTrigger&) = delete;
  PressureTrigger& operator=(const PressureTrigger&) = delete;
  ~PressureTrigger();
  // Waits up to `timeout`; true when the trigger fired.
  bool wait(std::chrono::milliseconds timeout);

 private:
  explicit PressureTrigger(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// The calling process's resident memory (RSS) from /proc/self/statm; 0 when unreadable.
uint64_t process_resident_bytes();

}  // namespace sparkd::governor
