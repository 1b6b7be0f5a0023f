// The thread-safe front door of a per-model runner thread: what other threads hand it (new
// requests, cancellations, the order to stop) and the wait for the next of them. Both
// runners (DecoderRunner, EncoderRunner) own one; their work loops stay single-threaded.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "common/status.h"
#include "engine/sched/scheduler.h"

namespace sparkd::sched {

// What a runner that stops answers the requests it still holds, unless told otherwise.
inline Status runner_shutting_down() {
  return Status(StatusCode::kCancelled, "the runner is shutting down");
}

// `Submitted` has `RequestId id` and `std::chrono::steady_clock::time_point submitted_at`,
// both filled in by post().
template <typename Submitted>
class RunnerInbox {
 public:
  struct Mail {
    std::vector<Submitted> intake;
    std::vector<RequestId> cancels;
    bool stopping = false;
  };

  // Thread-safe: queues a request under a new id and wakes the runner.
  RequestId post(Submitted submitted) {
    RequestId id = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      id = next_id_++;
      submitted.id = id;
      submitted.submitted_at = std::chrono::steady_clock::now();
      intake_.push_back(std::move(submitted));
    }
    wake_.notify_one();
    return id;
  }

  void cancel(RequestId id) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cancels_.push_back(id);
    }
    wake_.notify_one();
  }

  // Thread-safe: wakes the runner with no mail (something it watches changed, e.g. the
  // governor wants memory back or has memory for it).
  void poke() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      poked_ = true;
    }
    wake_.notify_one();
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
  }

  // Runner thread: everything that arrived since the last call. When `idle` (the runner has
  // no work it can do now), waits until something arrives, a poke, or `until`.
  Mail take(bool idle, std::optional<std::chrono::steady_clock::time_point> until = std::nullopt) {
    Mail mail;
    std::unique_lock<std::mutex> lock(mutex_);
    if (idle) {
      const auto ready = [&] {
        return stopping_ || poked_ || !intake_.empty() || !cancels_.empty();
      };
      if (until) {
        wake_.wait_until(lock, *until, ready);
      } else {
        wake_.wait(lock, ready);
      }
    }
    poked_ = false;
    mail.intake.swap(intake_);
    mail.cancels.swap(cancels_);
    mail.stopping = stopping_;
    return mail;
  }

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Submitted> intake_;   // guarded by mutex_
  std::vector<RequestId> cancels_;  // guarded by mutex_
  bool stopping_ = false;           // guarded by mutex_
  bool poked_ = false;              // guarded by mutex_
  RequestId next_id_ = 1;           // guarded by mutex_
};

}  // namespace sparkd::sched
