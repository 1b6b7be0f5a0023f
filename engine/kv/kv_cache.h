// KvCache: every layer's keys and values for a number of token slots, in backend memory.
//
// This cache gives each sequence a contiguous run of slots (KvPlacement with an
// empty block table). The layout is already the paged one (slot = block * block_tokens +
// offset), so the block pool of the paged cache allocates from the same storage.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/backend/backend.h"

namespace sparkd {

// Where one sequence's KV lives: contiguous from kv_slot_begin, or paged by block_table.
struct KvPlacement {
  int32_t kv_slot_begin = 0;
  std::span<const int32_t> block_table;
};

class KvCache {
 public:
  static Expected<KvCache> allocate(Backend& backend, int32_t num_layers, int32_t kv_heads,
                                    int32_t head_dim, int32_t num_slots, int32_t block_tokens = 0);

  // A cache over memory someone else owns (a KvBlockPool's layer views): nothing is freed
  // when it goes.
  static KvCache over(std::vector<KvLayerView> layers, int32_t num_slots, int32_t block_tokens);

  const KvLayerView& layer(int32_t index) const { return layers_[index]; }
  int32_t num_layers() const { return static_cast<int32_t>(layers_.size()); }
  int32_t num_slots() const { return num_slots_; }
  int32_t block_tokens() const { return block_tokens_; }
  uint64_t size_bytes() const;
  // The slot that holds `position` of a sequence placed at `placement`.
  int32_t slot(const KvPlacement& placement, int32_t position) const {
    if (placement.block_table.empty()) return placement.kv_slot_begin + position;
    return placement.block_table[position / block_tokens_] * block_tokens_ +
           position % block_tokens_;
  }

 private:
  std::vector<Buffer> buffers_;
  std::vector<KvLayerView> layers_;
  int32_t num_slots_ = 0;
  int32_t block_tokens_ = 0;
};

}  // namespace sparkd
