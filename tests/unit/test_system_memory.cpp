// /proc/meminfo and /proc/pressure/memory: parsing real kernel text, refusing malformed text
// with messages that say what was wrong, and reading this machine's own files.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "governor/system_memory.h"

namespace {

using sparkd::StatusCode;
using sparkd::governor::parse_meminfo;
using sparkd::governor::parse_memory_pressure;
using sparkd::governor::read_memory_pressure;
using sparkd::governor::read_system_memory;

// The head of a DGX Spark's /proc/meminfo (Linux 6.11), as the kernel prints it.
constexpr const char* kSparkMeminfo =
    "MemTotal:       127535604 kB\n"
    "MemFree:         3571496 kB\n"
    "MemAvailable:   119263880 kB\n"
    "Buffers:           36264 kB\n"
    "Cached:        115043124 kB\n"
    "SwapCached:            0 kB\n"
    "Active:          6118060 kB\n"
    "HugePages_Total:       0\n"
    "Hugepagesize:       2048 kB\n";

TEST_CASE("meminfo: MemTotal and MemAvailable in kB become bytes", "[system_memory]") {
  const auto memory = parse_meminfo(kSparkMeminfo);
  REQUIRE(memory.has_value());
  CHECK(memory->total_bytes == 127535604ull * 1024);
  // MemAvailable, not MemFree: the page cache is reclaimable and counts as available.
  CHECK(memory->available_bytes == 119263880ull * 1024);
}

TEST_CASE("meminfo: order does not matter and unknown lines are ignored", "[system_memory]") {
  const auto memory =
      parse_meminfo("Zswap:                 0 kB\nMemAvailable:  2 kB\nNoUnit: 7\nMemTotal: 4 kB");
  REQUIRE(memory.has_value());
  CHECK(memory->total_bytes == 4096);
  CHECK(memory->available_bytes == 2048);
}

TEST_CASE("meminfo: malformed text is refused with a clear error", "[system_memory]") {
  SECTION("no MemAvailable (kernels before 3.14)") {
    const auto memory = parse_meminfo("MemTotal: 1000 kB\nMemFree: 10 kB\n");
    REQUIRE_FALSE(memory.has_value());
    CHECK(memory.status().code() == StatusCode::kDataLoss);
    CHECK_THAT(memory.status().message(), Catch::Contains("no MemAvailable"));
  }
  SECTION("no MemTotal") {
    const auto memory = parse_meminfo("MemAvailable: 10 kB\n");
    REQUIRE_FALSE(memory.has_value());
    CHECK_THAT(memory.status().message(), Catch::Contains("no MemTotal"));
  }
  SECTION("a value without its unit") {
    const auto memory = parse_meminfo("MemTotal: 1000\nMemAvailable: 10 kB\n");
    REQUIRE_FALSE(memory.has_value());
    CHECK_THAT(memory.status().message(), Catch::Contains("MemTotal is '1000'"));
  }
  SECTION("a value that is not a number") {
    const auto memory = parse_meminfo("MemTotal: 1000 kB\nMemAvailable: lots kB\n");
    REQUIRE_FALSE(memory.has_value());
    CHECK_THAT(memory.status().message(), Catch::Contains("MemAvailable is 'lots kB'"));
  }
  SECTION("a negative value") {
    const auto memory = parse_meminfo("MemTotal: 1000 kB\nMemAvailable: -5 kB\n");
    REQUIRE_FALSE(memory.has_value());
    CHECK_THAT(memory.status().message(), Catch::Contains("not a whole number"));
  }
  SECTION("a value whose bytes overflow 64 bits") {
    const auto memory = parse_meminfo("MemTotal: 18014398509481984 kB\nMemAvailable: 1 kB\n");
    REQUIRE_FALSE(memory.has_value());
    CHECK_THAT(memory.status().message(), Catch::Contains("does not fit"));
  }
  SECTION("empty text") {
    CHECK_FALSE(parse_meminfo("").has_value());
  }
}

TEST_CASE("meminfo: this machine's /proc/meminfo reads as sane numbers", "[system_memory]") {
  const auto memory = read_system_memory();
  REQUIRE(memory.has_value());
  CHECK(memory->total_bytes > 0);
  CHECK(memory->available_bytes > 0);
  CHECK(memory->available_bytes <= memory->total_bytes);
}

TEST_CASE("meminfo: a missing file is an error that names it", "[system_memory]") {
  const auto memory = read_system_memory("/nonexistent/sparkd/meminfo");
  REQUIRE_FALSE(memory.has_value());
  CHECK_THAT(memory.status().message(), Catch::Contains("/nonexistent/sparkd/meminfo"));
}

TEST_CASE("memory pressure: the kernel's two PSI lines", "[system_memory]") {
  // A box under memory pressure (Linux 6.x format).
  const auto pressure = parse_memory_pressure(
      "some avg10=12.34 avg60=5.06 avg300=1.00 total=987654321\n"
      "full avg10=3.50 avg60=0.75 avg300=0.00 total=123456\n");
  REQUIRE(pressure.has_value());
  CHECK(pressure->some.avg10 == Approx(12.34));
  CHECK(pressure->some.avg60 == Approx(5.06));
  CHECK(pressure->some.avg300 == Approx(1.00));
  CHECK(pressure->some.total_us == 987654321u);
  CHECK(pressure->full.avg10 == Approx(3.50));
  CHECK(pressure->full.avg60 == Approx(0.75));
  CHECK(pressure->full.avg300 == 0.0);
  CHECK(pressure->full.total_us == 123456u);
}

TEST_CASE("memory pressure: malformed text is refused with a clear error", "[system_memory]") {
  SECTION("no full line") {
    const auto pressure = parse_memory_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    REQUIRE_FALSE(pressure.has_value());
    CHECK(pressure.status().code() == StatusCode::kDataLoss);
    CHECK_THAT(pressure.status().message(), Catch::Contains("no 'full' line"));
  }
  SECTION("a field missing") {
    const auto pressure = parse_memory_pressure(
        "some avg10=0.00 avg60=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    REQUIRE_FALSE(pressure.has_value());
    CHECK_THAT(pressure.status().message(), Catch::Contains("some line lacks"));
  }
  SECTION("a percentage out of range") {
    const auto pressure = parse_memory_pressure(
        "some avg10=100.50 avg60=0.00 avg300=0.00 total=0\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    REQUIRE_FALSE(pressure.has_value());
    CHECK_THAT(pressure.status().message(), Catch::Contains("some avg10='100.50'"));
  }
  SECTION("a total that is not a number") {
    const auto pressure = parse_memory_pressure(
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=1e9\n");
    REQUIRE_FALSE(pressure.has_value());
    CHECK_THAT(pressure.status().message(), Catch::Contains("full total='1e9'"));
  }
  SECTION("a line that is neither some nor full") {
    const auto pressure = parse_memory_pressure("cpu avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    REQUIRE_FALSE(pressure.has_value());
    CHECK_THAT(pressure.status().message(), Catch::Contains("unexpected line"));
  }
  SECTION("a line twice") {
    const auto pressure = parse_memory_pressure(
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    REQUIRE_FALSE(pressure.has_value());
    CHECK_THAT(pressure.status().message(), Catch::Contains("appears twice"));
  }
  SECTION("not name=value") {
    const auto pressure = parse_memory_pressure("some avg10 0.00\nfull total=0\n");
    REQUIRE_FALSE(pressure.has_value());
    CHECK_THAT(pressure.status().message(), Catch::Contains("not name=value"));
  }
}

TEST_CASE("memory pressure: no PSI file is NOT_FOUND, so callers omit it", "[system_memory]") {
  const auto pressure = read_memory_pressure("/nonexistent/sparkd/pressure/memory");
  REQUIRE_FALSE(pressure.has_value());
  CHECK(pressure.status().code() == StatusCode::kNotFound);
}

TEST_CASE("memory pressure: a file read from disk parses like the kernel's", "[system_memory]") {
  const auto path =
      std::filesystem::temp_directory_path() / ("sparkd-test-psi-" + std::to_string(::getpid()));
  std::ofstream(path) << "some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n"
                         "full avg10=0.50 avg60=0.25 avg300=0.125 total=2\n";
  const auto pressure = read_memory_pressure(path.string());
  std::filesystem::remove(path);
  REQUIRE(pressure.has_value());
  CHECK(pressure->some.avg300 == 3.0);
  CHECK(pressure->full.total_us == 2u);
}

TEST_CASE("memory pressure: this machine's PSI, where the kernel has it", "[system_memory]") {
  const auto pressure = read_memory_pressure();
  if (!pressure.has_value()) {
    // Containers often run without PSI; that must be NOT_FOUND, never a parse failure.
    CHECK(pressure.status().code() == StatusCode::kNotFound);
    WARN("no PSI here: " << pressure.status().message());
    return;
  }
  CHECK(pressure->some.avg10 >= 0.0);
  CHECK(pressure->some.avg10 <= 100.0);
  // All tasks stalled implies some stalled: full time never exceeds some time.
  CHECK(pressure->full.total_us <= pressure->some.total_us);
}

}  // namespace

TEST_CASE("a PSI trigger on a path without PSI fails cleanly", "[governor][system_memory]") {
  auto trigger = sparkd::governor::PressureTrigger::open("/nonexistent/sparkd/pressure/memory",
                                                         std::chrono::milliseconds(100),
                                                         std::chrono::seconds(2));
  REQUIRE_FALSE(trigger.has_value());
  CHECK(trigger.status().code() == sparkd::StatusCode::kNotFound);
}
