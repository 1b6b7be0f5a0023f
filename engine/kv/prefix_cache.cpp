#include "engine/kv/prefix_cache.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace sparkd::kv {

BlockKey block_key(BlockKey parent, std::span<const int32_t> tokens, uint64_t salt) {
  // The tokens are hashed with a seed that is itself the hash of (parent, salt): a chain, with
  // no allocation (this runs for every block a sequence fills).
  const uint64_t chain[2] = {parent, salt};
  const XXH64_hash_t seed = XXH3_64bits(chain, sizeof chain);
  const BlockKey key = XXH3_64bits_withSeed(tokens.data(), tokens.size_bytes(), seed);
  // kRootBlockKey marks "no parent"; keep real keys distinct from it.
  return key == kRootBlockKey ? 1 : key;
}

PrefixCache::PrefixCache(BlockSource& source, int32_t block_tokens, bool caching_enabled)
    : source_(source), block_tokens_(block_tokens), caching_enabled_(caching_enabled) {}

PrefixCache::~PrefixCache() {
  reclaim(lru_.size());
}

PrefixCache::BlockState& PrefixCache::state(int32_t block) {
  if (block < 0) {
    std::fprintf(stderr, "sparkd prefix cache: negative block id %d\n", block);
    std::abort();
  }
  if (static_cast<size_t>(block) >= blocks_.size()) blocks_.resize(static_cast<size_t>(block) + 1);
  return blocks_[static_cast<size_t>(block)];
}

std::vector<int32_t> PrefixCache::acquire_cached_prefix(std::span<const int32_t> tokens,
                                                        uint64_t salt,
                                                        std::vector<BlockKey>* keys) {
  std::vector<int32_t> found;
  if (!caching_enabled_ || tokens.empty()) return found;
  const size_t full_blocks = (tokens.size() - 1) / static_cast<size_t>(block_tokens_);
  stats_.lookup_blocks += full_blocks;
  BlockKey parent = kRootBlockKey;
  for (size_t b = 0; b < full_blocks; ++b) {
    const auto block_tokens = tokens.subspan(b * block_tokens_, block_tokens_);
    const BlockKey key = block_key(parent, block_tokens, salt);
    const auto it = by_key_.find(key);
    if (it == by_key_.end()) break;
    BlockState& s = state(it->second);
    if (s.parent != parent || s.salt != salt ||
        !std::equal(s.tokens.begin(), s.tokens.end(), block_tokens.begin(), block_tokens.end())) {
      break;  // a hash collision: not our prefix
    }
    ++stats_.hit_blocks;
    if (s.in_lru) {
      lru_.erase(s.lru_position);
      s.in_lru = false;
    }
    if (s.references++ == 0) ++referenced_;
    found.push_back(it->second);
    if (keys) keys->push_back(key);
    parent = key;
  }
  return found;
}

std::optional<int32_t> PrefixCache::allocate_block() {
  std::optional<int32_t> block = source_.allocate_block();
  if (!block && !lru_.empty()) {
    const int32_t victim = lru_.front();
    forget(victim);
    ++stats_.evicted_blocks;
    block = source_.allocate_block();
  }
  if (!block) return std::nullopt;
  BlockState& s = state(*block);
  s = BlockState{};
  s.references = 1;
  ++referenced_;
  return block;
}

BlockKey PrefixCache::register_full_block(int32_t block, BlockKey parent,
                                          std::span<const int32_t> tokens, uint64_t salt) {
  const BlockKey key = block_key(parent, tokens, salt);
  if (!caching_enabled_) return key;
  BlockState& s = state(block);
  if (s.registered || by_key_.count(key) != 0) return key;
  s.registered = true;
  s.key = key;
  s.parent = parent;
  s.salt = salt;
  s.tokens.assign(tokens.begin(), tokens.end());
  by_key_.emplace(key, block);
  return key;
}

void PrefixCache::release_blocks(std::span<const int32_t> blocks) {
  for (int32_t block : blocks) {
    BlockState& s = state(block);
    if (s.references <= 0) {
      std::fprintf(stderr, "sparkd prefix cache: block %d released more often than acquired\n",
                   block);
      std::abort();
    }
    if (--s.references > 0) continue;
    --referenced_;
    if (s.registered) {
      s.lru_position = lru_.insert(lru_.end(), block);
      s.in_lru = true;
    } else {
      source_.free_block(block);
    }
  }
}

void PrefixCache::forget(int32_t block) {
  BlockState& s = state(block);
  if (s.in_lru) lru_.erase(s.lru_position);
  if (s.registered) by_key_.erase(s.key);
  s = BlockState{};
  source_.free_block(block);
}

size_t PrefixCache::reclaim(size_t max_blocks) {
  size_t reclaimed = 0;
  while (reclaimed < max_blocks && !lru_.empty()) {
    forget(lru_.front());
    ++reclaimed;
  }
  stats_.reclaimed_blocks += reclaimed;
  return reclaimed;
}

}  // namespace sparkd::kv
