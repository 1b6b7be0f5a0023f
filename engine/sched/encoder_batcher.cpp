#include "engine/sched/encoder_batcher.h"

#include <algorithm>

namespace sparkd::sched {

int64_t EncoderBatch::tokens() const {
  int64_t sum = 0;
  for (const EncoderBatchItem& item : items) sum += item.tokens;
  return sum;
}

int64_t EncoderBatch::padded_tokens() const {
  return static_cast<int64_t>(items.size()) * longest_tokens;
}

EncoderBatcher::EncoderBatcher(const EncoderBatcherConfig& config) : config_(config) {}

void EncoderBatcher::add(RequestId id, std::span<const int32_t> input_tokens, int32_t priority) {
  if (input_tokens.empty()) return;
  Pending pending;
  pending.id = id;
  pending.input_tokens.assign(input_tokens.begin(), input_tokens.end());
  waiting_inputs_ += input_tokens.size();
  waiting_[priority].push_back(std::move(pending));
}

EncoderBatch EncoderBatcher::next_batch() {
  EncoderBatch batch;
  const auto max_inputs = static_cast<size_t>(std::max(1, config_.max_batch_inputs));
  for (auto klass = waiting_.begin(); klass != waiting_.end();) {
    std::deque<Pending>& queue = klass->second;
    while (!queue.empty()) {
      Pending& front = queue.front();
      while (front.next_index < static_cast<int32_t>(front.input_tokens.size())) {
        const int32_t tokens = front.input_tokens[front.next_index];
        const int32_t longest = std::max(batch.longest_tokens, tokens);
        const int64_t padded = static_cast<int64_t>(batch.items.size() + 1) * longest;
        // First come, first served: stop at the first input that does not fit rather than
        // let shorter, later inputs overtake it.
        if (!batch.items.empty() &&
            (batch.items.size() >= max_inputs || padded > config_.max_batch_tokens)) {
          return batch;
        }
        batch.items.push_back({front.id, front.next_index, tokens});
        batch.longest_tokens = longest;
        ++front.next_index;
        --waiting_inputs_;
      }
      queue.pop_front();
    }
    klass = waiting_.erase(klass);
  }
  return batch;
}

void EncoderBatcher::remove(RequestId id) {
  for (auto klass = waiting_.begin(); klass != waiting_.end();) {
    std::deque<Pending>& queue = klass->second;
    for (auto it = queue.begin(); it != queue.end();) {
      if (it->id == id) {
        waiting_inputs_ -= it->input_tokens.size() - static_cast<size_t>(it->next_index);
        it = queue.erase(it);
      } else {
        ++it;
      }
    }
    klass = queue.empty() ? waiting_.erase(klass) : std::next(klass);
  }
}

size_t EncoderBatcher::waiting_requests() const {
  size_t count = 0;
  for (const auto& [priority, queue] : waiting_) count += queue.size();
  return count;
}

}  // namespace sparkd::sched
