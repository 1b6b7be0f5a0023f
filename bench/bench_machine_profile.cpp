// bench_machine_profile: measures this machine for the governor's trace simulator and prints
// its profile (bench/profiles/*.toml) on stdout.
//
//   bench_machine_profile [--name NAME] [--threads N] [--load-file-mib MIB] [--dir DIR]
//
// - bandwidth_gbs: the read bandwidth of a multi-threaded sum over 1 GiB (bench/probes.h),
//   the decode roofline;
// - compute_tflops: the CPU backend's linear on BF16 weights at a prefill shape
//   (512 x 2048 x 2048), the FLOPs prefill sustains; small_step_tflops the same at 16 rows,
//   what decode steps of up to 64 tokens get (small products run well below the large ones);
// - overlap = false: two cores stream and compute in turn, not at once;
// - load_gbs: a --load-file-mib file written to --dir, dropped from the page cache
//   (posix_fadvise DONTNEED after fsync), and read back with large preads, as loads read;
// - memory_gib / os_gib: MemTotal, and MemTotal - MemAvailable now (what everything else
//   holds).
// step_overhead_ms is not measured here: the cost-model validation against bench_batching
// (bench/README.md) calibrates it; the printed value is a placeholder it says so.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench/probes.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "governor/system_memory.h"

namespace {

using sparkd::DType;
using sparkd::Tensor;
using sparkd::bench::Clock;
using sparkd::bench::seconds_since;

// The CPU backend's linear on BF16 weights with m tokens (rows of x).
double measure_gemm_tflops(sparkd::Backend& backend, int64_t m) {
  sparkd::bench::Memory memory(backend);
  constexpr int64_t n = 2048, k = 2048;
  const Tensor x = memory.random(DType::kF32, {m, k}, 1);
  const Tensor w = memory.random(DType::kBF16, {n, k}, 2);
  Tensor y = memory.make(DType::kF32, {m, n});
  const double seconds =
      sparkd::bench::time_per_call(1.0, [&](int) { backend.linear(x, w, nullptr, y); });
  return 2.0 * double(m * n * k) / seconds / 1e12;
}

double measure_load_gbs(const std::string& dir, int64_t mib) {
  const std::string path = dir + "/sparkd-load-probe-" + std::to_string(getpid());
  const size_t chunk = size_t{64} << 20;
  std::vector<char> buffer(chunk, 1);
  const int out = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
  if (out < 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  for (int64_t written = 0; written < mib; written += 64) {
    if (write(out, buffer.data(), chunk) != static_cast<ssize_t>(chunk)) {
      std::perror("write");
      std::exit(1);
    }
  }
  fsync(out);
  posix_fadvise(out, 0, 0, POSIX_FADV_DONTNEED);
  close(out);
  const int in = open(path.c_str(), O_RDONLY);
  posix_fadvise(in, 0, 0, POSIX_FADV_DONTNEED);
  const Clock::time_point start = Clock::now();
  uint64_t total = 0;
  for (;;) {
    const ssize_t got = pread(in, buffer.data(), chunk, static_cast<off_t>(total));
    if (got <= 0) break;
    total += static_cast<uint64_t>(got);
  }
  const double seconds = seconds_since(start);
  close(in);
  std::filesystem::remove(path);
  return double(total) / seconds / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  std::string name = "this-machine";
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  int64_t load_mib = 1024;
  std::string dir = std::filesystem::temp_directory_path().string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--name") {
      name = argv[i + 1];
    } else if (arg == "--threads") {
      threads = std::atoi(argv[i + 1]);
    } else if (arg == "--load-file-mib") {
      load_mib = std::atoll(argv[i + 1]);
    } else if (arg == "--dir") {
      dir = argv[i + 1];
    } else {
      std::fprintf(stderr, "bench_machine_profile: unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  auto memory = sparkd::governor::read_system_memory("/proc/meminfo");
  if (!memory) {
    std::fprintf(stderr, "%s\n", memory.status().to_string().c_str());
    return 1;
  }
  sparkd::CpuBackendOptions backend_options;
  backend_options.num_threads = threads;
  const std::unique_ptr<sparkd::Backend> backend = sparkd::make_cpu_backend(backend_options);
  const double bandwidth = sparkd::bench::measure_read_gbs(threads, 1.0);
  const double tflops = measure_gemm_tflops(*backend, 512);
  const double small_tflops = measure_gemm_tflops(*backend, 16);
  const double load = measure_load_gbs(dir, load_mib);
  const double gib = double(1ull << 30);
  std::printf(
      "# Measured by bench_machine_profile (%d threads) on this machine.\n"
      "name = \"%s\"\n"
      "# Read bandwidth: a %d-thread sum over 1 GiB (best of >= 1 s).\n"
      "bandwidth_gbs = %.2f\n"
      "# The CPU backend's linear, 512 x 2048 x 2048 on BF16 weights (best of >= 1 s).\n"
      "compute_tflops = %.4f\n"
      "# The same at 16 rows: decode steps of up to 64 tokens; a CPU streams, then computes.\n"
      "small_step_tokens = 64\n"
      "small_step_tflops = %.4f\n"
      "overlap = false\n"
      "# MemTotal; MemTotal - MemAvailable when measured.\n"
      "memory_gib = %.2f\n"
      "os_gib = %.2f\n"
      "# %lld MiB written, dropped from the page cache, read back with 64 MiB preads.\n"
      "load_gbs = %.2f\n"
      "# Not measured here: the cost-model validation against bench_batching calibrates it.\n"
      "step_overhead_ms = 1\n",
      threads, name.c_str(), threads, bandwidth, tflops, small_tflops,
      double(memory->total_bytes) / gib,
      double(memory->total_bytes - memory->available_bytes) / gib, static_cast<long long>(load_mib),
      load);
  return 0;
}
