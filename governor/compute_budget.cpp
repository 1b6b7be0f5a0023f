#include "governor/compute_budget.h"

#include <algorithm>
#include <vector>

namespace sparkd::governor {

ComputeBudget::ComputeBudget(int total_threads, std::chrono::milliseconds busy_window, Clock clock)
    : total_threads_(std::max(total_threads, 1)),
      busy_window_(busy_window),
      clock_(std::move(clock)) {}

void ComputeBudget::add_model(ConsumerId model, int32_t priority) {
  std::lock_guard<std::mutex> lock(mutex_);
  models_[model].priority = priority;
}

void ComputeBudget::remove_model(ConsumerId model) {
  std::lock_guard<std::mutex> lock(mutex_);
  models_.erase(model);
}

bool ComputeBudget::busy_locked(const Model& model,
                                std::chrono::steady_clock::time_point now) const {
  return model.stepping || (model.last_step_end && now - *model.last_step_end <= busy_window_);
}

int ComputeBudget::share_locked(ConsumerId model, std::chrono::steady_clock::time_point now) const {
  // The busy models, `model` among them, most important first (then by id: deterministic).
  std::vector<std::pair<int32_t, ConsumerId>> busy;
  for (const auto& [id, m] : models_) {
    if (id == model || busy_locked(m, now)) busy.emplace_back(m.priority, id);
  }
  if (models_.count(model) == 0) busy.emplace_back(0, model);
  std::sort(busy.begin(), busy.end());
  const int count = static_cast<int>(busy.size());
  const int base = std::max(total_threads_ / count, 1);
  const int remainder = total_threads_ > count ? total_threads_ % count : 0;
  for (int rank = 0; rank < count; ++rank) {
    if (busy[static_cast<size_t>(rank)].second == model) return base + (rank < remainder ? 1 : 0);
  }
  return base;
}

int ComputeBudget::begin_step(ConsumerId model) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto now = clock_();
  const int threads = share_locked(model, now);
  models_[model].stepping = true;
  return threads;
}

void ComputeBudget::end_step(ConsumerId model) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = models_.find(model);
  if (it == models_.end()) return;
  it->second.stepping = false;
  it->second.last_step_end = clock_();
}

int ComputeBudget::share_of(ConsumerId model) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return share_locked(model, clock_());
}

}  // namespace sparkd::governor
