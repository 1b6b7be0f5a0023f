// ComputeBudget: one CPU thread budget for the whole daemon. Models stepping at the same
// moment share the cores instead of each running an OpenMP team over all of them (two teams
// of N threads on N cores spin against each other and both slow down).
//
// Policy: the models that are busy now (in a step, or ended one within the last `busy_window`:
// a continuous-batching loop steps back to back) split the threads evenly; the threads that
// do not divide evenly go to the more important models (lower priority value) first; every
// busy model gets at least one. A model alone gets them all. Shares are taken at the start of
// each step, so they follow the load within one step.
//
// The engine sees only ComputeArbiter (compute_arbiter.h). Thread-safe; deterministic under
// the injected clock, like the memory governor.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

#include "governor/compute_arbiter.h"

namespace sparkd::governor {

class ComputeBudget final : public ComputeArbiter {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  explicit ComputeBudget(
      int total_threads, std::chrono::milliseconds busy_window = std::chrono::milliseconds(50),
      Clock clock = [] { return std::chrono::steady_clock::now(); });

  // A model that may step (its priority orders the remainder threads).
  void add_model(ConsumerId model, int32_t priority);
  void remove_model(ConsumerId model);

  int begin_step(ConsumerId model) override;
  void end_step(ConsumerId model) override;

  // What `model` would get if it started a step now (for status and tests).
  int share_of(ConsumerId model) const;

 private:
  struct Model {
    int32_t priority = 0;
    bool stepping = false;
    std::optional<std::chrono::steady_clock::time_point> last_step_end;  // none: never stepped
  };
  bool busy_locked(const Model& model, std::chrono::steady_clock::time_point now) const;
  int share_locked(ConsumerId model, std::chrono::steady_clock::time_point now) const;

  const int total_threads_;
  const std::chrono::milliseconds busy_window_;
  Clock clock_;
  mutable std::mutex mutex_;
  std::map<ConsumerId, Model> models_;  // guarded by mutex_
};

}  // namespace sparkd::governor
