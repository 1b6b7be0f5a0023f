// ComputeArbiter: the engine's door to the daemon's CPU thread budget. A runner asks before
// each step how many threads it may use and says when the step is done.
#pragma once

#include "governor/memory_arbiter.h"

namespace sparkd::governor {

class ComputeArbiter {
 public:
  virtual ~ComputeArbiter() = default;
  // The threads `model` may use for the step it starts now (at least 1).
  virtual int begin_step(ConsumerId model) = 0;
  virtual void end_step(ConsumerId model) = 0;
};

// Scopes one step: begin in the constructor, end in the destructor (also on an exception).
class ComputeStep {
 public:
  ComputeStep(ComputeArbiter* arbiter, ConsumerId model) : arbiter_(arbiter), model_(model) {
    if (arbiter_ != nullptr) threads_ = arbiter_->begin_step(model_);
  }
  ~ComputeStep() {
    if (arbiter_ != nullptr) arbiter_->end_step(model_);
  }
  ComputeStep(const ComputeStep&) = delete;
  ComputeStep& operator=(const ComputeStep&) = delete;
  // 0 without an arbiter: the backend keeps what it was configured with.
  int threads() const { return threads_; }

 private:
  ComputeArbiter* arbiter_;
  ConsumerId model_;
  int threads_ = 0;
};

}  // namespace sparkd::governor
