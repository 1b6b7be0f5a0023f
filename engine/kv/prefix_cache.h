// Prefix caching over KV blocks: which block ids hold which tokens, who references them,
// and which unreferenced ones may be reused or reclaimed.
//
// Pure bookkeeping (no tensors): a full block is keyed by a hash chain (its parent block's
// key, its token ids, and an optional per-request salt, hashed with xxHash), so a block is
// found only when its whole prefix matches. Blocks are reference counted; a cached block
// nobody references stays in an LRU list until a new block is needed and the block source
// is empty, or the governor reclaims it. This list plus the key -> block map is the whole
// prefix cache (vLLM v1's BlockPool in miniature).
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace sparkd::kv {

using BlockKey = uint64_t;
// The key of the first block's parent.
inline constexpr BlockKey kRootBlockKey = 0;

// The key of a full block: xxHash3 of its token ids, seeded with the hash of (parent key,
// salt).
BlockKey block_key(BlockKey parent, std::span<const int32_t> tokens, uint64_t salt);

// Where fresh block ids come from (the KV block pool, which owns the memory).
class BlockSource {
 public:
  virtual ~BlockSource() = default;
  virtual std::optional<int32_t> allocate_block() = 0;
  virtual void free_block(int32_t block) = 0;
};

struct PrefixCacheStats {
  uint64_t lookup_blocks = 0;  // full prompt blocks that a hit could have served
  uint64_t hit_blocks = 0;     // of which were found
  uint64_t evicted_blocks = 0;
  uint64_t reclaimed_blocks = 0;
};

class PrefixCache {
 public:
  PrefixCache(BlockSource& source, int32_t block_tokens, bool caching_enabled = true);
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;
  // Returns every cached block to the source.
  ~PrefixCache();

  int32_t block_tokens() const { return block_tokens_; }

  // The blocks holding the longest cached prefix of `tokens`, in order, each now referenced
  // by the caller. Only full blocks count, and at least one token is always left to
  // compute (the step that produces the next token needs a query).
  // `keys`, when given, receives their keys (to continue the chain from the last one).
  std::vector<int32_t> acquire_cached_prefix(std::span<const int32_t> tokens, uint64_t salt,
                                             std::vector<BlockKey>* keys = nullptr);

  // A fresh block for a sequence, referenced once. When the source is empty the least
  // recently used unreferenced cached block is evicted and reused; nullopt when neither
  // has one.
  std::optional<int32_t> allocate_block();

  // Block `block` (referenced by the caller) is now full of `tokens`, the block after the
  // one keyed `parent`: it becomes findable under the returned key. When another block
  // already holds the same key, that one stays the cached copy and this one stays private.
  BlockKey register_full_block(int32_t block, BlockKey parent, std::span<const int32_t> tokens,
                               uint64_t salt);

  // Drops one reference to each block. Blocks that reach zero go back to the source, or,
  // when registered, to the end of the LRU list (release a sequence's blocks last-first,
  // so its tail is evicted before its head).
  void release_blocks(std::span<const int32_t> blocks);

  // Returns up to `max_blocks` unreferenced cached blocks to the source, least recently
  // used first; how many were returned.
  size_t reclaim(size_t max_blocks);

  size_t cached_unreferenced_blocks() const { return lru_.size(); }
  size_t referenced_blocks() const { return referenced_; }
  const PrefixCacheStats& stats() const { return stats_; }

 private:
  struct BlockState {
    int32_t references = 0;
    bool registered = false;
    BlockKey key = 0;
    // What the key stands for, checked on every hit so a hash collision is never served.
    BlockKey parent = 0;
    uint64_t salt = 0;
    std::vector<int32_t> tokens;
    std::list<int32_t>::iterator lru_position;
    bool in_lru = false;
  };

  BlockState& state(int32_t block);
  void forget(int32_t block);  // unregisters and returns to the source

  BlockSource& source_;
  int32_t block_tokens_;
  bool caching_enabled_;
  std::vector<BlockState> blocks_;                // by block id
  std::unordered_map<BlockKey, int32_t> by_key_;  // registered blocks
  std::list<int32_t> lru_;                        // unreferenced registered blocks, oldest first
  size_t referenced_ = 0;
  PrefixCacheStats stats_;
};

}  // namespace sparkd::kv
