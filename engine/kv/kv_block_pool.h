// KvBlockPool: one model's paged KV storage, committed on demand in granules granted by the
// MemoryArbiter and handed back when blocks are no longer used.
//
// Layout. One virtual reservation (Backend::reserve_virtual: PROT_NONE host address space on
// the CPU, a CUDA virtual address range on the GPU; nothing committed) holds 2 x num_layers
// sub-ranges, in the order layer 0 keys, layer 0 values, layer 1 keys, ...; each starts on a
// granule boundary and holds max_blocks blocks back to back, so a sub-range is exactly the
// [max_blocks * block_tokens, kv_heads, head_dim] tensor the attention kernels index with
// slot = block_table[pos / block_tokens] * block_tokens + pos % block_tokens. A block's
// "piece" is its part of one sub-range: block_tokens * kv_heads * head_dim * 4 bytes.
//
// Commit unit. Physical memory is committed per "block group": the fewest consecutive blocks
// whose pieces fill whole granules, i.e. lcm(piece, granule) / piece blocks. A 64 KiB piece
// gives groups of 32 blocks over one granule per sub-range; a 4 MiB piece, groups of one block
// over two granules; a 3 MiB piece, groups of 2 blocks over 3 granules. Pieces are never
// padded (the tensor must stay dense), so groups never share a granule. The last group may
// be partial: it commits only the granules its blocks touch. Committing group g asks the
// arbiter for 2 x num_layers x (granules per sub-range) granules, then commits those ranges
// (resident at once); decommitting gives the memory back to the system (resident memory
// really falls; a stale block table faults instead of reading zeros) and releases the
// granules.
//
// Not thread-safe: one model's scheduler owns its pool.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "common/status.h"
#include "engine/backend/backend.h"
#include "engine/kv/kv_cache.h"
#include "engine/kv/prefix_cache.h"
#include "governor/memory_arbiter.h"

namespace sparkd {

struct KvBlockPoolGeometry {
  int32_t num_layers = 0;
  int32_t kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_tokens = 0;
  int32_t max_blocks = 0;
  DType dtype = DType::kF32;  // the backend's kv_dtype()
};

// When a group whose last block was freed gives its granules back.
enum class KvGroupRelease {
  // In free_block(), at once: the ledger never holds memory no block uses.
  kOnFree,
  // Only in release_unused_groups(): the owner keeps warm groups to avoid commit/decommit
  // churn and returns them when the governor asks.
  kOnRequest,
  // In free_block(), except one empty group kept committed as a spare, so the next request's
  // first blocks are taken without committing: for backends whose commits are costly (CUDA
  // VMM creates, maps and unmaps per granule, and an unmap waits for the model's stream). The
  // spare is on the ledger like any committed group; release_unused_groups() gives it back,
  // and reclaim does that before it drops a cached prefix (sched/kv_reclaim.h).
  kKeepSpareGroup,
};

// What stands behind the blocks.
enum class KvBacking {
  // Real memory: the reservation and committed ranges described above.
  kMemory,
  // Bookkeeping only: the same blocks, groups and granules asked of the arbiter, but no
  // address space and nothing committed, so layer views do not exist. The governor's trace
  // simulator (bench/sim) plays a 128 GB machine's KV with it on any machine.
  kLedgerOnly,
};

class KvBlockPool : public kv::BlockSource {
 public:
  // Reserves the address space (nothing is committed or granted yet) from `backend`, or host
  // address space without one. Errors: INVALID_ARGUMENT for a geometry that is empty or too
  // large to address, RESOURCE_EXHAUSTED when the address space cannot be reserved.
  static Expected<KvBlockPool> create(const KvBlockPoolGeometry& geometry,
                                      governor::MemoryArbiter& arbiter,
                                      governor::ConsumerId consumer,
                                      KvGroupRelease release = KvGroupRelease::kOnFree,
                                      KvBacking backing = KvBacking::kMemory,
                                      Backend* backend = nullptr);

  // The most blocks a pool of `geometry` (its max_blocks ignored) can hold without ever
  // committing more than `bytes`, rounding included: the whole of every sub-range, rounded up
  // to granules, counts. 0 when not even one block fits (each of the 2 x num_layers
  // sub-ranges needs at least a granule).
  static int32_t max_blocks_within(const KvBlockPoolGeometry& geometry, uint64_t bytes);
  // What max_blocks blocks commit at most, rounding included.
  static uint64_t committed_bytes_at_capacity(const KvBlockPoolGeometry& geometry);

  KvBlockPool(KvBlockPool&& other) noexcept;
  KvBlockPool& operator=(KvBlockPool&& other) noexcept;
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;
  // Unmaps everything and releases every granule, live blocks or not.
  ~KvBlockPool();

  // A free block, its memory committed: the lowest free id among committed groups, else the
  // lowest id of the lowest uncommitted group (committing it). Taking low ids keeps live
  // blocks packed so whole groups empty out and can be given back. nullopt when the arbiter
  // refuses the granules (nothing changes) or all max_blocks are in use.
  std::optional<int32_t> allocate_block() override;
  // Returns a block allocate_block() gave. Freeing a block that is not in use is a bug in the
  // caller: it aborts with a message (its memory may already be decommitted or reused).
  void free_block(int32_t block) override;
  // Decommits every committed group without a live block; returns the granules released.
  uint64_t release_unused_groups();
  // Committed groups without a live block (kOnFree: none after any call returns).
  int32_t empty_committed_groups() const { return empty_committed_groups_; }

  // Keys and values of `layer` as [max_blocks * block_tokens, kv_heads, head_dim] tensors
  // over the whole sub-range; only slots of allocated blocks may be touched. A kLedgerOnly
  // pool has none: asking aborts.
  KvLayerView layer_view(int32_t layer) const;
  // Every layer's view as the KvCache the decoder reads and writes through block tables
  // (it owns nothing: the pool must outlive it).
  KvCache cache_view() const;

  const KvBlockPoolGeometry& geometry() const { return geometry_; }
  int32_t blocks_in_use() const { return blocks_in_use_; }
  int32_t committed_groups() const { return committed_groups_; }
  uint64_t committed_bytes() const { return committed_granules_ * governor::kGranuleBytes; }
  // Committed bytes no block can use: the tail of each sub-range's last committed granule
  // when a partial group is committed. Shown by the metrics so rounding is never hidden.
  uint64_t rounding_waste_bytes() const;
  // Bytes of one block over all layers, keys and values.
  uint64_t block_bytes() const {
    return piece_bytes_ * 2 * static_cast<uint64_t>(geometry_.num_layers);
  }
  int32_t blocks_per_group() const { return blocks_per_group_; }
  int32_t num_groups() const { return static_cast<int32_t>(group_live_blocks_.size()); }
  // Bytes of one block in one sub-range (one layer's keys, or its values).
  uint64_t piece_bytes() const { return piece_bytes_; }
  bool block_in_use(int32_t block) const;

 private:
  KvBlockPool() = default;
  // Granules group `group` covers in one sub-range (fewer for a partial last group).
  uint64_t group_granules_per_range(int32_t group) const;
  bool commit_group(int32_t group);
  uint64_t decommit_group(int32_t group);
  uint64_t range_offset(int32_t range) const { return range * range_stride_bytes_; }
  char* range_base(int32_t range) const { return memory_->base() + range_offset(range); }
  void destroy();

  KvBlockPoolGeometry geometry_;
  governor::MemoryArbiter* arbiter_ = nullptr;  // nullptr: moved from (nothing to release)
  governor::ConsumerId consumer_ = 0;
  KvGroupRelease release_ = KvGroupRelease::kOnFree;

  std::unique_ptr<VirtualRange> memory_;  // the reservation (kMemory only)
  uint64_t range_stride_bytes_ = 0;       // distance between sub-ranges, a granule multiple
  uint64_t piece_bytes_ = 0;
  uint64_t group_span_bytes_ = 0;  // a full group's bytes in one sub-range
  int32_t blocks_per_group_ = 0;

  std::vector<uint8_t> block_live_;
  std::vector<int32_t> group_live_blocks_;
  std::vector<uint8_t> group_committed_;
  std::set<int32_t> free_committed_blocks_;  // free blocks of committed groups
  std::set<int32_t> uncommitted_groups_;
  int32_t blocks_in_use_ = 0;
  int32_t committed_groups_ = 0;
  int32_t empty_committed_groups_ = 0;
  uint64_t committed_granules_ = 0;
};

}  // namespace sparkd
