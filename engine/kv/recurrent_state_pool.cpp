#include "engine/kv/recurrent_state_pool.h"

#include <cstdio>
#include <cstdlib>

namespace sparkd {

RecurrentStatePool::RecurrentStatePool(Backend& backend, uint64_t state_bytes, int32_t max_states,
                                       governor::MemoryArbiter& arbiter,
                                       governor::ConsumerId consumer)
    : backend_(backend),
      state_bytes_(state_bytes),
      granules_per_state_((state_bytes + governor::kGranuleBytes - 1) / governor::kGranuleBytes),
      arbiter_(arbiter),
      consumer_(consumer),
      states_(static_cast<size_t>(max_states)) {}

RecurrentStatePool::~RecurrentStatePool() {
  for (size_t slot = 0; slot < states_.size(); ++slot) {
    if (!states_[slot].empty()) release_state(static_cast<int32_t>(slot));
  }
}

std::optional<int32_t> RecurrentStatePool::acquire_state() {
  size_t slot = 0;
  while (slot < states_.size() && !states_[slot].empty()) ++slot;
  if (slot == states_.size()) return std::nullopt;
  // Granted before it exists, as every KV byte is.
  if (!arbiter_.grant_granules(consumer_, granules_per_state_)) return std::nullopt;
  auto buffer = backend_.allocate(state_bytes_);
  if (!buffer) {
    arbiter_.release_granules(consumer_, granules_per_state_);
    return std::nullopt;
  }
  states_[slot] = std::move(buffer).value();
  ++in_use_;
  return static_cast<int32_t>(slot);
}

void RecurrentStatePool::release_state(int32_t slot) {
  if (slot < 0 || static_cast<size_t>(slot) >= states_.size() ||
      states_[static_cast<size_t>(slot)].empty()) {
    std::fprintf(stderr, "sparkd: recurrent state slot %d released but not held\n", slot);
    std::abort();
  }
  states_[static_cast<size_t>(slot)] = Buffer();
  --in_use_;
  arbiter_.release_granules(consumer_, granules_per_state_);
}

}  // namespace sparkd
