// The prefix cache's bookkeeping: hash-chained block keys, reference counts, LRU eviction
// and reclaim, over a block source that hands out the lowest free id (as the KV block pool
// does).
#include <catch2/catch.hpp>
#include <numeric>
#include <optional>
#include <set>
#include <vector>

#include "engine/kv/prefix_cache.h"
#include "tests/support/lowest_first_block_source.h"

namespace {

using sparkd::kv::kRootBlockKey;
using sparkd::kv::PrefixCache;
using sparkd::testing::LowestFirstSource;

constexpr int32_t kBlockTokens = 4;

std::vector<int32_t> tokens_from(int32_t first, size_t count) {
  std::vector<int32_t> t(count);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// A sequence's prefill as the scheduler will do it: reuse the cached prefix, allocate the
// rest, register every full block. Returns the sequence's block table.
std::vector<int32_t> prefill(PrefixCache& cache, const std::vector<int32_t>& prompt,
                             uint64_t salt = 0) {
  std::vector<int32_t> table = cache.acquire_cached_prefix(prompt, salt);
  const size_t needed = (prompt.size() + kBlockTokens - 1) / kBlockTokens;
  while (table.size() < needed) {
    auto block = cache.allocate_block();
    REQUIRE(block.has_value());
    table.push_back(*block);
  }
  sparkd::kv::BlockKey parent = kRootBlockKey;
  for (size_t b = 0; b < prompt.size() / kBlockTokens; ++b) {
    parent = cache.register_full_block(
        table[b], parent, std::span(prompt).subspan(b * kBlockTokens, kBlockTokens), salt);
  }
  return table;
}

void release(PrefixCache& cache, std::vector<int32_t> table) {
  std::reverse(table.begin(), table.end());  // tail first, so it is evicted first
  cache.release_blocks(table);
}

}  // namespace

TEST_CASE("a shared prompt prefix is served from the cache", "[prefix_cache]") {
  LowestFirstSource source(16);
  PrefixCache cache(source, kBlockTokens);
  const std::vector<int32_t> system = tokens_from(100, 12);  // 3 full blocks
  std::vector<int32_t> first = system, second = system;
  first.insert(first.end(), {1, 2, 3});
  second.insert(second.end(), {7, 8});

  const auto table1 = prefill(cache, first);
  CHECK(cache.stats().hit_blocks == 0);
  const auto table2 = prefill(cache, second);
  CHECK(cache.stats().hit_blocks == 3);
  CHECK(std::vector<int32_t>(table2.begin(), table2.begin() + 3) ==
        std::vector<int32_t>(table1.begin(), table1.begin() + 3));
  CHECK(table2[3] != table1[3]);          // the differing tail is private
  CHECK(cache.referenced_blocks() == 5);  // 3 shared + 1 tail each

  release(cache, table1);
  CHECK(cache.referenced_blocks() == 4);  // the shared blocks are still held by `second`
  release(cache, table2);
  CHECK(cache.referenced_blocks() == 0);
  CHECK(cache.cached_unreferenced_blocks() == 3);  // the full blocks stay cached
  CHECK(cache.reclaim(100) == 3);
  CHECK(source.free_blocks() == 16);  // every block is back
}

TEST_CASE("a hit always leaves at least one token to compute", "[prefix_cache]") {
  LowestFirstSource source(8);
  PrefixCache cache(source, kBlockTokens);
  const std::vector<int32_t> prompt = tokens_from(0, 8);  // exactly two full blocks
  release(cache, prefill(cache, prompt));
  auto again = cache.acquire_cached_prefix(prompt, 0);
  CHECK(again.size() == 1);
  cache.release_blocks(again);
}

TEST_CASE("the hash chain: a block matches only after the same whole prefix and salt",
          "[prefix_cache]") {
  LowestFirstSource source(16);
  PrefixCache cache(source, kBlockTokens);
  std::vector<int32_t> a = tokens_from(0, 13);
  std::vector<int32_t> b = a;
  b[5] = 999;  // differs in block 1 only; block 2 is identical
  release(cache, prefill(cache, a));

  auto hit = cache.acquire_cached_prefix(b, 0);
  CHECK(hit.size() == 1);  // block 0 only: block 2's key depends on block 1
  cache.release_blocks(hit);

  auto salted = cache.acquire_cached_prefix(a, 42);
  CHECK(salted.empty());  // another tenant's salt never sees these blocks
  auto same = cache.acquire_cached_prefix(a, 0);
  CHECK(same.size() == 3);
  cache.release_blocks(same);
}

TEST_CASE("when the source is empty the least recently used cached block is evicted",
          "[prefix_cache]") {
  LowestFirstSource source(4);
  PrefixCache cache(source, kBlockTokens);
  const auto old_prompt = tokens_from(0, 9);    // blocks 0, 1 full; 2 partial
  const auto new_prompt = tokens_from(50, 4);   // 1 full block
  auto old_table = prefill(cache, old_prompt);  // uses 0, 1, 2
  release(cache, old_table);                    // 2 back to the source; 1 then 0 to the LRU
  auto new_table = prefill(cache, new_prompt);  // gets block 2 (lowest free)
  CHECK(new_table == std::vector<int32_t>{2});
  auto filler = cache.allocate_block();  // block 3
  REQUIRE(filler.has_value());
  // The source is empty: the next block comes from the LRU list, tail first (block 1).
  auto evicted = cache.allocate_block();
  REQUIRE(evicted.has_value());
  CHECK(*evicted == 1);
  CHECK(cache.stats().evicted_blocks == 1);
  // Block 0 is still cached and still found; block 1's content is gone.
  auto hit = cache.acquire_cached_prefix(old_prompt, 0);
  CHECK(hit == std::vector<int32_t>{0});
  cache.release_blocks(hit);
  // Everything referenced: nothing left to evict.
  auto last = cache.allocate_block();
  REQUIRE(last.has_value());
  CHECK_FALSE(cache.allocate_block().has_value());
  cache.release_blocks(std::vector<int32_t>{*filler, *evicted, *last});
  release(cache, new_table);
  cache.reclaim(100);
  CHECK(source.free_blocks() == 4);
}

TEST_CASE("a second block with a key already cached stays private", "[prefix_cache]") {
  LowestFirstSource source(8);
  PrefixCache cache(source, kBlockTokens);
  const auto prompt = tokens_from(0, 5);
  // Two sequences prefill the same prompt concurrently (neither saw the other's blocks).
  auto t1 = cache.acquire_cached_prefix(prompt, 0);
  auto t2 = cache.acquire_cached_prefix(prompt, 0);
  REQUIRE(t1.empty());
  REQUIRE(t2.empty());
  auto b1 = cache.allocate_block(), b2 = cache.allocate_block();
  cache.register_full_block(*b1, kRootBlockKey, std::span(prompt).first(kBlockTokens), 0);
  cache.register_full_block(*b2, kRootBlockKey, std::span(prompt).first(kBlockTokens), 0);
  cache.release_blocks(std::vector<int32_t>{*b1, *b2});
  CHECK(cache.cached_unreferenced_blocks() == 1);  // b1 cached, b2 back to the source
  CHECK(source.free_blocks() == 7);
}

TEST_CASE("with caching disabled nothing is ever found or kept", "[prefix_cache]") {
  LowestFirstSource source(8);
  PrefixCache cache(source, kBlockTokens, /*caching_enabled=*/false);
  const auto prompt = tokens_from(0, 9);
  release(cache, prefill(cache, prompt));
  CHECK(cache.acquire_cached_prefix(prompt, 0).empty());
  CHECK(cache.cached_unreferenced_blocks() == 0);
  CHECK(source.free_blocks() == 8);
}
