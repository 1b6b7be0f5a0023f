// RecurrentStatePool: the per-sequence recurrent state of a model with linear-attention layers
// (Qwen3.5's Gated DeltaNet), next to its paged KV. A sequence holds one state while it runs,
// of a fixed size whatever its length; the state's memory is granted by the MemoryArbiter on
// the model's KV account before it is allocated, and released with it, so the governor's
// ledger counts every running sequence's state and sees it go when the sequence finishes or
// is preempted.
//
// Each state is its own allocation rounded up to whole granules in the ledger (Qwen3.5-35B-A3B:
// 62.8 MiB of state, 32 granules). Not thread-safe: one model's scheduler owns its pool.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/status.h"
#include "engine/backend/backend.h"
#include "governor/memory_arbiter.h"

namespace sparkd {

// Where the scheduler takes a running sequence's state from.
class RecurrentStateSource {
 public:
  virtual ~RecurrentStateSource() = default;
  // A free state slot, its memory granted and allocated; nullopt when the arbiter refuses it
  // or every slot is taken.
  virtual std::optional<int32_t> acquire_state() = 0;
  virtual void release_state(int32_t slot) = 0;
};

class RecurrentStatePool final : public RecurrentStateSource {
 public:
  // Up to `max_states` states of `state_bytes` each (nothing is granted or allocated yet).
  RecurrentStatePool(Backend& backend, uint64_t state_bytes, int32_t max_states,
                     governor::MemoryArbiter& arbiter, governor::ConsumerId consumer);
  RecurrentStatePool(const RecurrentStatePool&) = delete;
  RecurrentStatePool& operator=(const RecurrentStatePool&) = delete;
  // Frees every state and releases its granules.
  ~RecurrentStatePool() override;

  std::optional<int32_t> acquire_state() override;
  // Releasing a slot that is not held is a bug in the caller: it aborts with a message.
  void release_state(int32_t slot) override;

  // The state of a held slot (backend memory, state_bytes()).
  void* state(int32_t slot) const { return states_[static_cast<size_t>(slot)].data(); }
  uint64_t state_bytes() const { return state_bytes_; }
  // Granules one state takes in the ledger.
  uint64_t granules_per_state() const { return granules_per_state_; }
  int32_t states_in_use() const { return in_use_; }
  // What the states in use hold on the model's account, granule rounding included.
  uint64_t committed_bytes() const {
    return static_cast<uint64_t>(in_use_) * granules_per_state_ * governor::kGranuleBytes;
  }

 private:
  Backend& backend_;
  uint64_t state_bytes_;
  uint64_t granules_per_state_;
  governor::MemoryArbiter& arbiter_;
  governor::ConsumerId consumer_;
  std::vector<Buffer> states_;  // by slot; empty when free
  int32_t in_use_ = 0;
};

}  // namespace sparkd
