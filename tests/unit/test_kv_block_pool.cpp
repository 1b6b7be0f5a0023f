// KvBlockPool: low-id allocation, group commit/decommit through the MemoryArbiter with an
// exact ledger (and a spare group where commits are costly, released before any cached
// prefix), resident memory that really falls on release, and attention over paged blocks
// that matches a contiguous KvCache bit for bit.

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/kv/kv_block_pool.h"
#include "engine/kv/kv_cache.h"
#include "engine/kv/prefix_cache.h"
#include "engine/sched/kv_reclaim.h"
#include "governor/fixed_budget_arbiter.h"
#include "tests/support/check_aborts.h"

namespace {

using sparkd::AttentionParams;
using sparkd::AttentionSequence;
using sparkd::DType;
using sparkd::KvBlockPool;
using sparkd::KvBlockPoolGeometry;
using sparkd::KvGroupRelease;
using sparkd::KvLayerView;
using sparkd::StatusCode;
using sparkd::Tensor;
using sparkd::governor::FixedBudgetArbiter;
using sparkd::governor::kGranuleBytes;

constexpr sparkd::governor::ConsumerId kConsumer = 3;

// 16 tokens x 8 kv heads x 128 dims x 4 bytes = 64 KiB per piece: 32 blocks per group, and a
// group costs 2 layers x (K, V) x 1 granule = 4 granules.
KvBlockPoolGeometry small_geometry(int32_t max_blocks) {
  return {.num_layers = 2,
          .kv_heads = 8,
          .head_dim = 128,
          .block_tokens = 16,
          .max_blocks = max_blocks,
          .dtype = DType::kF32};
}

KvBlockPool make_pool(const KvBlockPoolGeometry& geometry, FixedBudgetArbiter& arbiter,
                      KvGroupRelease release = KvGroupRelease::kOnFree) {
  auto pool = KvBlockPool::create(geometry, arbiter, kConsumer, release);
  if (!pool) FAIL(pool.status().to_string());
  return std::move(pool).value();
}

int32_t must_allocate(KvBlockPool& pool) {
  const std::optional<int32_t> block = pool.allocate_block();
  REQUIRE(block.has_value());
  return *block;
}

// The ledger and the pool agree to the granule.
void check_ledger(const KvBlockPool& pool, const FixedBudgetArbiter& arbiter) {
  CHECK(pool.committed_bytes() % kGranuleBytes == 0);
  CHECK(arbiter.granted_granules(kConsumer) == pool.committed_bytes() / kGranuleBytes);
}

// A block's piece of one sub-range (one layer's keys or values), as raw bytes.
char* piece(const KvBlockPool& pool, const Tensor& range, int32_t block) {
  return static_cast<char*>(range.data) + static_cast<uint64_t>(block) * pool.piece_bytes();
}

// Anonymous resident memory of this process, in KiB.
int64_t rss_anon_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stoll(line.substr(8));
  }
  FAIL("no RssAnon in /proc/self/status");
  return 0;
}

TEST_CASE("kv block pool: allocation prefers low ids and reuses a freed low id first",
          "[kv_pool]") {
  FixedBudgetArbiter arbiter(1000);
  KvBlockPool pool = make_pool(small_geometry(128), arbiter);
  for (int32_t want = 0; want < 6; ++want) CHECK(must_allocate(pool) == want);
  pool.free_block(4);
  pool.free_block(1);
  CHECK(must_allocate(pool) == 1);
  CHECK(must_allocate(pool) == 4);
  CHECK(must_allocate(pool) == 6);
  CHECK(pool.blocks_in_use() == 7);
  CHECK(pool.block_in_use(6));
  CHECK_FALSE(pool.block_in_use(7));
}

TEST_CASE("kv block pool: groups commit on demand and the ledger matches committed bytes",
          "[kv_pool]") {
  FixedBudgetArbiter arbiter(1000);
  KvBlockPool pool = make_pool(small_geometry(100), arbiter);
  REQUIRE(pool.piece_bytes() == 64 * 1024);
  REQUIRE(pool.blocks_per_group() == 32);
  REQUIRE(pool.num_groups() == 4);  // the last one partial: blocks 96..99
  // Reserving commits nothing.
  CHECK(pool.committed_groups() == 0);
  CHECK(pool.committed_bytes() == 0);
  check_ledger(pool, arbiter);

  must_allocate(pool);
  CHECK(pool.committed_groups() == 1);
  CHECK(pool.committed_bytes() == 4 * kGranuleBytes);
  check_ledger(pool, arbiter);
  for (int i = 1; i < 32; ++i) must_allocate(pool);
  CHECK(pool.committed_groups() == 1);  // block 31 still fits the first group
  must_allocate(pool);
  CHECK(pool.committed_groups() == 2);
  CHECK(pool.committed_bytes() == 8 * kGranuleBytes);
  check_ledger(pool, arbiter);
  while (pool.blocks_in_use() < 100) must_allocate(pool);
  // 4 blocks x 64 KiB still round up to one granule per sub-range.
  CHECK(pool.committed_groups() == 4);
  CHECK(pool.committed_bytes() == 16 * kGranuleBytes);
  check_ledger(pool, arbiter);
  CHECK_FALSE(pool.allocate_block().has_value());  // all max_blocks in use
  check_ledger(pool, arbiter);
  CHECK(arbiter.total_granted_granules() == 16);
}

TEST_CASE("kv block pool: a refused grant gives nullopt and leaks nothing", "[kv_pool]") {
  SECTION("refused before anything is committed") {
    FixedBudgetArbiter arbiter(3);  // a group needs 4
    KvBlockPool pool = make_pool(small_geometry(64), arbiter);
    CHECK_FALSE(pool.allocate_block().has_value());
    CHECK(pool.blocks_in_use() == 0);
    CHECK(pool.committed_groups() == 0);
    CHECK(arbiter.total_granted_granules() == 0);
  }
  SECTION("refused for the second group") {
    FixedBudgetArbiter arbiter(6);
    KvBlockPool pool = make_pool(small_geometry(64), arbiter);
    for (int i = 0; i < 32; ++i) must_allocate(pool);
    CHECK_FALSE(pool.allocate_block().has_value());
    CHECK(pool.blocks_in_use() == 32);
    CHECK(pool.committed_groups() == 1);
    check_ledger(pool, arbiter);
    CHECK(arbiter.total_granted_granules() == 4);
    // A freed block of a committed group is still there to take, without a new grant.
    pool.free_block(17);
    CHECK(must_allocate(pool) == 17);
    check_ledger(pool, arbiter);
  }
}

TEST_CASE("kv block pool: freeing every block returns every granule", "[kv_pool]") {
  FixedBudgetArbiter arbiter(1000);
  SECTION("kOnRequest keeps empty groups until release_unused_groups") {
    KvBlockPool pool = make_pool(small_geometry(128), arbiter, KvGroupRelease::kOnRequest);
    std::vector<int32_t> blocks;
    for (int i = 0; i < 100; ++i) blocks.push_back(must_allocate(pool));
    REQUIRE(arbiter.granted_granules(kConsumer) == 16);
    // Empty groups 0 and 2; groups 1 and 3 keep a live block.
    for (int32_t b : blocks) {
      if (b != 40 && b != 99) pool.free_block(b);
    }
    CHECK(pool.committed_groups() == 4);  // nothing released yet
    CHECK(pool.release_unused_groups() == 8);
    CHECK(pool.committed_groups() == 2);
    check_ledger(pool, arbiter);
    // The lowest free block of a committed group comes before recommitting group 0.
    CHECK(must_allocate(pool) == 32);
    pool.free_block(32);
    pool.free_block(40);
    pool.free_block(99);
    CHECK(pool.blocks_in_use() == 0);
    CHECK(pool.release_unused_groups() == 8);
    CHECK(pool.release_unused_groups() == 0);
    CHECK(pool.committed_groups() == 0);
    CHECK(pool.committed_bytes() == 0);
    CHECK(arbiter.total_granted_granules() == 0);
  }
  SECTION("kOnFree gives a group back as its last block is freed") {
    KvBlockPool pool = make_pool(small_geometry(128), arbiter, KvGroupRelease::kOnFree);
    std::vector<int32_t> blocks;
    for (int i = 0; i < 70; ++i) blocks.push_back(must_allocate(pool));
    REQUIRE(arbiter.granted_granules(kConsumer) == 12);
    for (int32_t b = 64; b < 70; ++b) pool.free_block(b);
    CHECK(pool.committed_groups() == 2);
    check_ledger(pool, arbiter);
    for (int32_t b = 0; b < 64; ++b) pool.free_block(b);
    CHECK(pool.committed_groups() == 0);
    CHECK(pool.release_unused_groups() == 0);
    CHECK(arbiter.total_granted_granules() == 0);
  }
}

TEST_CASE("kv block pool: kKeepSpareGroup keeps one emptied group, on the ledger, for reuse",
          "[kv_pool]") {
  FixedBudgetArbiter arbiter(1000);
  KvBlockPool pool = make_pool(small_geometry(128), arbiter, KvGroupRelease::kKeepSpareGroup);
  std::vector<int32_t> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(must_allocate(pool));  // groups 0 … 3
  REQUIRE(arbiter.granted_granules(kConsumer) == 16);
  CHECK(pool.empty_committed_groups() == 0);
  // Group 3 empties first and stays; group 2 empties next and goes, so do 0 and 1.
  for (int32_t b = 99; b >= 0; --b) pool.free_block(b);
  CHECK(pool.blocks_in_use() == 0);
  CHECK(pool.committed_groups() == 1);
  CHECK(pool.empty_committed_groups() == 1);
  check_ledger(pool, arbiter);
  CHECK(arbiter.granted_granules(kConsumer) == 4);
  // The next request's first block comes from the spare: nothing new is granted.
  const int32_t reused = must_allocate(pool);
  CHECK(reused == 96);
  CHECK(pool.empty_committed_groups() == 0);
  CHECK(arbiter.granted_granules(kConsumer) == 4);
  // Past the spare, groups commit as usual; freeing all leaves one spare again.
  std::vector<int32_t> more;
  for (int i = 0; i < 70; ++i) more.push_back(must_allocate(pool));  // 3's rest, 0, part of 1
  CHECK(pool.committed_groups() == 3);
  CHECK(arbiter.granted_granules(kConsumer) == 12);
  pool.free_block(reused);
  for (int32_t b : more) pool.free_block(b);
  CHECK(pool.committed_groups() == 1);
  check_ledger(pool, arbiter);
  // What the governor's reclaim does first: the spare goes back.
  CHECK(pool.release_unused_groups() == 4);
  CHECK(pool.empty_committed_groups() == 0);
  CHECK(arbiter.total_granted_granules() == 0);
}

TEST_CASE("kv reclaim: a spare group goes back before any cached prefix is dropped", "[kv_pool]") {
  FixedBudgetArbiter arbiter(1000);
  KvBlockPool pool = make_pool(small_geometry(128), arbiter, KvGroupRelease::kKeepSpareGroup);
  sparkd::kv::PrefixCache cache(pool, /*block_tokens=*/16);
  // Group 0: 32 cached, unreferenced blocks (a chain of one prompt's blocks).
  std::vector<int32_t> cached;
  sparkd::kv::BlockKey parent = sparkd::kv::kRootBlockKey;
  for (int32_t i = 0; i < 32; ++i) {
    const int32_t block = *cache.allocate_block();
    std::vector<int32_t> tokens(16, i + 1);
    parent = cache.register_full_block(block, parent, tokens, /*salt=*/0);
    cached.push_back(block);
  }
  cache.release_blocks(cached);
  // Group 1: a finished request's private blocks, now the pool's spare.
  std::vector<int32_t> private_blocks;
  for (int i = 0; i < 32; ++i) private_blocks.push_back(*cache.allocate_block());
  cache.release_blocks(private_blocks);
  REQUIRE(pool.committed_groups() == 2);
  REQUIRE(pool.empty_committed_groups() == 1);
  REQUIRE(cache.cached_unreferenced_blocks() == 32);

  const uint64_t group_bytes = 4 * kGranuleBytes;
  sparkd::sched::drop_prefix_cache(pool, cache, group_bytes);
  CHECK(pool.committed_bytes() == group_bytes);
  CHECK(cache.cached_unreferenced_blocks() == 32);  // the spare paid
  check_ledger(pool, arbiter);
  // Asked for more, the cache goes too, and the group it empties is given back at once.
  sparkd::sched::drop_prefix_cache(pool, cache, group_bytes);
  CHECK(pool.committed_bytes() == 0);
  CHECK(cache.cached_unreferenced_blocks() == 0);
  CHECK(arbiter.total_granted_granules() == 0);
}

TEST_CASE("kv block pool: the destructor releases every granule and a move hands them over",
          "[kv_pool]") {
  FixedBudgetArbiter arbiter(1000);
  {
    KvBlockPool first = make_pool(small_geometry(128), arbiter);
    for (int i = 0; i < 40; ++i) must_allocate(first);
    KvBlockPool second = std::move(first);
    CHECK(second.blocks_in_use() == 40);
    CHECK(second.committed_groups() == 2);
    check_ledger(second, arbiter);
    KvBlockPool third = make_pool(small_geometry(8), arbiter);
    must_allocate(third);
    REQUIRE(arbiter.granted_granules(kConsumer) == 12);
    third = std::move(second);  // third's own group is released, second's moves in
    CHECK(arbiter.granted_granules(kConsumer) == 8);
    check_ledger(third, arbiter);
  }
  CHECK(arbiter.total_granted_granules() == 0);
}

TEST_CASE("kv block pool: pieces larger than a granule", "[kv_pool]") {
  FixedBudgetArbiter arbiter(1000);
  SECTION("3 MiB pieces: groups of 2 blocks over 3 granules, a partial last group") {
    // 768 tokens x 8 x 128 x 4 bytes = 3 MiB.
    KvBlockPool pool = make_pool(
        {.num_layers = 1, .kv_heads = 8, .head_dim = 128, .block_tokens = 768, .max_blocks = 3},
        arbiter);
    CHECK(pool.blocks_per_group() == 2);
    must_allocate(pool);
    CHECK(arbiter.granted_granules(kConsumer) == 6);  // K and V, 3 granules each
    must_allocate(pool);
    CHECK(arbiter.granted_granules(kConsumer) == 6);
    const int32_t last = must_allocate(pool);
    CHECK(arbiter.granted_granules(kConsumer) == 10);  // 1 block of 3 MiB: 2 granules each
    check_ledger(pool, arbiter);
    // Every byte of the partial group's block is committed.
    const KvLayerView view = pool.layer_view(0);
    std::memset(piece(pool, view.values, last), 0x5a, pool.piece_bytes());
    CHECK(piece(pool, view.values, last)[pool.piece_bytes() - 1] == 0x5a);
  }
  SECTION("4 MiB pieces: one block per group, 2 granules per piece") {
    KvBlockPool pool = make_pool(
        {.num_layers = 2, .kv_heads = 8, .head_dim = 128, .block_tokens = 1024, .max_blocks = 4},
        arbiter);
    CHECK(pool.blocks_per_group() == 1);
    CHECK(pool.num_groups() == 4);
    must_allocate(pool);
    must_allocate(pool);
    CHECK(pool.committed_groups() == 2);
    CHECK(arbiter.granted_granules(kConsumer) == 16);  // 2 blocks x 2 layers x (K, V) x 2
    check_ledger(pool, arbiter);
    pool.free_block(0);
    CHECK(arbiter.granted_granules(kConsumer) == 8);
  }
}

TEST_CASE("kv block pool: writes through layer_view read back at the right slots", "[kv_pool]") {
  FixedBudgetArbiter arbiter(1000);
  const KvBlockPoolGeometry geometry = {
      .num_layers = 3, .kv_heads = 4, .head_dim = 64, .block_tokens = 16, .max_blocks = 200};
  KvBlockPool pool = make_pool(geometry, arbiter);
  // 16 x 4 x 64 x 4 = 16 KiB pieces: 128 blocks per group, so 150 blocks span two groups.
  REQUIRE(pool.blocks_per_group() == 128);
  std::vector<int32_t> blocks;
  for (int i = 0; i < 150; ++i) blocks.push_back(must_allocate(pool));
  // Free some in the middle so live ids are not one run.
  for (int32_t b = 20; b < 60; b += 3) pool.free_block(b);
  std::erase_if(blocks, [&](int32_t b) { return !pool.block_in_use(b); });

  const int64_t row = int64_t{geometry.kv_heads} * geometry.head_dim;
  const int64_t slots = int64_t{geometry.max_blocks} * geometry.block_tokens;
  // A value unique to (layer, K or V, slot, element); exact in float below 2^24.
  const auto value = [&](int32_t layer, int kv, int64_t slot, int64_t element) {
    return static_cast<float>(((layer * 2 + kv) * slots + slot) * row + element);
  };
  for (int32_t layer = 0; layer < geometry.num_layers; ++layer) {
    const KvLayerView view = pool.layer_view(layer);
    REQUIRE(view.keys.shape == std::vector<int64_t>{slots, geometry.kv_heads, geometry.head_dim});
    REQUIRE(view.values.shape == view.keys.shape);
    REQUIRE(view.block_tokens == geometry.block_tokens);
    for (int32_t b : blocks) {
      for (int64_t t = 0; t < geometry.block_tokens; ++t) {
        const int64_t slot = int64_t{b} * geometry.block_tokens + t;
        for (int64_t e = 0; e < row; ++e) {
          view.keys.as<float>()[slot * row + e] = value(layer, 0, slot, e);
          view.values.as<float>()[slot * row + e] = value(layer, 1, slot, e);
        }
      }
    }
  }
  int64_t mismatches = 0;
  for (int32_t layer = 0; layer < geometry.num_layers; ++layer) {
    const KvLayerView view = pool.layer_view(layer);
    for (int32_t b : blocks) {
      for (int64_t t = 0; t < geometry.block_tokens; ++t) {
        const int64_t slot = int64_t{b} * geometry.block_tokens + t;
        for (int64_t e = 0; e < row; ++e) {
          mismatches += view.keys.as<float>()[slot * row + e] != value(layer, 0, slot, e);
          mismatches += view.values.as<float>()[slot * row + e] != value(layer, 1, slot, e);
        }
      }
    }
  }
  CHECK(mismatches == 0);
  // Sub-ranges are granule-aligned, also in absolute address terms.
  for (int32_t layer = 0; layer < geometry.num_layers; ++layer) {
    const KvLayerView view = pool.layer_view(layer);
    CHECK(reinterpret_cast<uintptr_t>(view.keys.data) % kGranuleBytes == 0);
    CHECK(reinterpret_cast<uintptr_t>(view.values.data) % kGranuleBytes == 0);
  }
}

TEST_CASE("kv block pool: resident memory falls when blocks are freed and released", "[kv_pool]") {
  FixedBudgetArbiter arbiter(1000);
  // 4 granules (8 MiB) per group of 32 blocks; 512 blocks are 16 groups = 128 MiB.
  KvBlockPool pool = make_pool(small_geometry(1024), arbiter, KvGroupRelease::kOnRequest);
  const int64_t before_kib = rss_anon_kib();
  std::vector<int32_t> blocks;
  for (int i = 0; i < 512; ++i) blocks.push_back(must_allocate(pool));
  const int64_t touched_kib = static_cast<int64_t>(pool.committed_bytes() / 1024);
  REQUIRE(touched_kib == 128 * 1024);
  for (int32_t layer = 0; layer < 2; ++layer) {
    const KvLayerView view = pool.layer_view(layer);
    for (int32_t b : blocks) {
      std::memset(piece(pool, view.keys, b), 1, pool.piece_bytes());
      std::memset(piece(pool, view.values, b), 2, pool.piece_bytes());
    }
  }
  const int64_t touched_rss_kib = rss_anon_kib();
  for (int32_t b : blocks) pool.free_block(b);
  CHECK(pool.release_unused_groups() == 64);
  const int64_t released_rss_kib = rss_anon_kib();
  INFO("RssAnon before " << before_kib << " KiB, after touching " << touched_rss_kib
                         << " KiB, after release " << released_rss_kib << " KiB; touched "
                         << touched_kib << " KiB");
  CHECK(touched_rss_kib - before_kib >= touched_kib * 3 / 4);
  CHECK(touched_rss_kib - released_rss_kib >= touched_kib * 3 / 4);
  CHECK(arbiter.total_granted_granules() == 0);
}

TEST_CASE("kv block pool: attention over non-contiguous blocks matches a contiguous cache",
          "[kv_pool]") {
  auto backend = sparkd::make_cpu_backend();
  FixedBudgetArbiter arbiter(1000);
  const KvBlockPoolGeometry geometry = {.num_layers = 2,
                                        .kv_heads = 2,
                                        .head_dim = 32,
                                        .block_tokens = 16,
                                        .max_blocks = 1024,
                                        .dtype = backend->activation_dtype()};
  KvBlockPool pool = make_pool(geometry, arbiter);
  // 4 KiB pieces: 512 blocks per group; take 600 so the table spans both groups.
  for (int i = 0; i < 600; ++i) must_allocate(pool);
  REQUIRE(pool.committed_groups() == 2);
  const std::vector<int32_t> block_table = {517, 3, 260, 599, 42};

  constexpr int32_t kHeads = 4, kContext = 75, kQueries = 7;
  const int64_t kv_row = int64_t{geometry.kv_heads} * geometry.head_dim;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  const auto random_vector = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = uniform(rng);
    return v;
  };
  std::vector<float> k = random_vector(kContext * kv_row);
  std::vector<float> v = random_vector(kContext * kv_row);
  std::vector<float> q = random_vector(int64_t{kQueries} * kHeads * geometry.head_dim);
  const Tensor k_t(DType::kF32, {kContext, geometry.kv_heads, geometry.head_dim}, k.data());
  const Tensor v_t(DType::kF32, {kContext, geometry.kv_heads, geometry.head_dim}, v.data());
  const Tensor q_t(DType::kF32, {kQueries, kHeads, geometry.head_dim}, q.data());

  auto cache = sparkd::KvCache::allocate(*backend, geometry.num_layers, geometry.kv_heads,
                                         geometry.head_dim, kContext);
  REQUIRE(cache.has_value());
  const sparkd::KvPlacement contiguous_placement{.kv_slot_begin = 0, .block_table = {}};
  std::vector<int32_t> paged_slots, contiguous_slots;
  for (int32_t p = 0; p < kContext; ++p) {
    paged_slots.push_back(block_table[p / geometry.block_tokens] * geometry.block_tokens +
                          p % geometry.block_tokens);
    contiguous_slots.push_back(cache->slot(contiguous_placement, p));
  }

  // Layer 1, so a wrong sub-range offset would show.
  constexpr int32_t kLayer = 1;
  const KvLayerView paged_view = pool.layer_view(kLayer);
  backend->store_kv(k_t, v_t, paged_slots, paged_view);
  backend->store_kv(k_t, v_t, contiguous_slots, cache->layer(kLayer));
  // The rows landed in the pool where the block table says.
  for (int32_t p = 0; p < kContext; p += 11) {
    CHECK(std::memcmp(paged_view.keys.as<float>() + paged_slots[p] * kv_row, k.data() + p * kv_row,
                      static_cast<size_t>(kv_row) * sizeof(float)) == 0);
  }

  AttentionSequence paged;
  paged.query_tokens = kQueries;
  paged.context_tokens = kContext;
  paged.block_table = block_table;
  AttentionSequence contiguous;
  contiguous.query_tokens = kQueries;
  contiguous.context_tokens = kContext;
  contiguous.kv_slot_begin = 0;
  AttentionParams params;
  params.scale = 1.0f / std::sqrt(static_cast<float>(geometry.head_dim));

  std::vector<float> paged_out(q.size()), contiguous_out(q.size());
  Tensor paged_out_t(DType::kF32, {kQueries, kHeads, geometry.head_dim}, paged_out.data());
  Tensor contiguous_out_t(DType::kF32, {kQueries, kHeads, geometry.head_dim},
                          contiguous_out.data());
  backend->attention(q_t, paged_view, {&paged, 1}, params, paged_out_t);
  backend->attention(q_t, cache->layer(kLayer), {&contiguous, 1}, params, contiguous_out_t);
  // Same keys in the same order: bit for bit.
  CHECK(paged_out == contiguous_out);
  float magnitude = 0.0f;
  for (float x : paged_out) magnitude += std::abs(x);
  CHECK(magnitude > 0.0f);  // the comparison was not of two zero buffers
}

TEST_CASE("kv block pool: geometry errors are INVALID_ARGUMENT", "[kv_pool]") {
  FixedBudgetArbiter arbiter(10);
  KvBlockPoolGeometry geometry = small_geometry(16);
  geometry.head_dim = 0;
  auto empty = KvBlockPool::create(geometry, arbiter, kConsumer);
  REQUIRE_FALSE(empty.has_value());
  CHECK(empty.status().code() == StatusCode::kInvalidArgument);

  geometry = small_geometry(1 << 30);  // 2^34 slots: beyond int32 slot indices
  auto too_many_slots = KvBlockPool::create(geometry, arbiter, kConsumer);
  REQUIRE_FALSE(too_many_slots.has_value());
  CHECK(too_many_slots.status().code() == StatusCode::kInvalidArgument);

  geometry = small_geometry(1 << 20);
  geometry.num_layers = 1 << 20;  // 2^20 layers x 2 x 64 GiB: beyond the address space
  auto too_many_bytes = KvBlockPool::create(geometry, arbiter, kConsumer);
  REQUIRE_FALSE(too_many_bytes.has_value());
  CHECK(too_many_bytes.status().code() == StatusCode::kInvalidArgument);
  CHECK(too_many_bytes.status().message().find("too large") != std::string::npos);
}

TEST_CASE("kv block pool: freeing a block not in use aborts with a message", "[kv_pool]") {
  FixedBudgetArbiter arbiter(10);
  KvBlockPool pool = make_pool(small_geometry(16), arbiter);
  must_allocate(pool);
  sparkd::testing::check_aborts([&] { pool.free_block(5); }, "free_block(5) of a block not in use");
}

TEST_CASE("kv block pool: a ledger-only pool asks the arbiter for exactly what a real one does",
          "[kv_pool]") {
  // 120 GiB of KV at capacity (1 GiB x 60 layers x K, V): far more than this machine could
  // commit, which is the point.
  KvBlockPoolGeometry geometry = small_geometry(1 << 14);
  geometry.num_layers = 60;
  FixedBudgetArbiter real_arbiter(1000);
  FixedBudgetArbiter ledger_arbiter(1000);
  KvBlockPool real = make_pool(small_geometry(96), real_arbiter);
  auto ledger_only = KvBlockPool::create(small_geometry(96), ledger_arbiter, kConsumer,
                                         KvGroupRelease::kOnFree, sparkd::KvBacking::kLedgerOnly);
  REQUIRE(ledger_only.has_value());
  std::vector<int32_t> real_blocks;
  std::vector<int32_t> ledger_blocks;
  for (int i = 0; i < 70; ++i) {
    real_blocks.push_back(must_allocate(real));
    ledger_blocks.push_back(must_allocate(*ledger_only));
    CHECK(ledger_blocks.back() == real_blocks.back());
    CHECK(ledger_arbiter.granted_granules(kConsumer) == real_arbiter.granted_granules(kConsumer));
  }
  CHECK(ledger_only->committed_bytes() == real.committed_bytes());
  CHECK(ledger_only->rounding_waste_bytes() == real.rounding_waste_bytes());
  for (int i = 69; i >= 0; --i) {
    real.free_block(real_blocks[i]);
    ledger_only->free_block(ledger_blocks[i]);
    CHECK(ledger_arbiter.granted_granules(kConsumer) == real_arbiter.granted_granules(kConsumer));
  }
  CHECK(ledger_arbiter.total_granted_granules() == 0);

  FixedBudgetArbiter big_arbiter(1 << 20);
  auto big = KvBlockPool::create(geometry, big_arbiter, kConsumer, KvGroupRelease::kOnFree,
                                 sparkd::KvBacking::kLedgerOnly);
  REQUIRE(big.has_value());
  std::vector<int32_t> all;
  while (auto block = big->allocate_block()) all.push_back(*block);
  CHECK(all.size() == size_t{1} << 14);
  CHECK(big->committed_bytes() == KvBlockPool::committed_bytes_at_capacity(geometry));
  CHECK(big->committed_bytes() == 120ull << 30);
  sparkd::testing::check_aborts([&] { (void)big->layer_view(0); },
                                "layer_view of a ledger-only pool");
  {
    // A move hands the granules over once; the destructor gives them back.
    const KvBlockPool moved = std::move(big).value();
    CHECK(big_arbiter.total_granted_granules() == (120ull << 30) / kGranuleBytes);
  }
  CHECK(big_arbiter.total_granted_granules() == 0);
}

}  // namespace

namespace {

TEST_CASE("kv block pool: max_blocks_within keeps every byte, rounding included, under the cap",
          "[kv_pool]") {
  // 3 layers of 2 x 32 F32 heads: a 4 KiB piece, 512 blocks per granule, 6 sub-ranges.
  KvBlockPoolGeometry g{.num_layers = 3,
                        .kv_heads = 2,
                        .head_dim = 32,
                        .block_tokens = 16,
                        .max_blocks = 0,
                        .dtype = DType::kF32};
  // 64 MiB: 10 MiB (5 granules) per sub-range, 2560 blocks, 60 MiB committed when full. The
  // old sizing (64 MiB / block bytes = 2730 blocks) committed 6 granules per range: 72 MiB.
  g.max_blocks = KvBlockPool::max_blocks_within(g, 64ull << 20);
  CHECK(g.max_blocks == 2560);
  CHECK(KvBlockPool::committed_bytes_at_capacity(g) == 60ull << 20);
  for (uint64_t cap : {12ull << 20, 13ull << 20, 100ull << 20, 1ull << 30}) {
    INFO(cap);
    g.max_blocks = KvBlockPool::max_blocks_within(g, cap);
    CHECK(KvBlockPool::committed_bytes_at_capacity(g) <= cap);
    // One more block would go over.
    g.max_blocks += 1;
    CHECK(KvBlockPool::committed_bytes_at_capacity(g) > cap);
  }
  // Below one granule per sub-range nothing fits.
  CHECK(KvBlockPool::max_blocks_within(g, 11ull << 20) == 0);

  // A full pool of that size really commits no more, and reports no rounding waste.
  FixedBudgetArbiter arbiter(1024);
  g.max_blocks = KvBlockPool::max_blocks_within(g, 64ull << 20);
  KvBlockPool pool = make_pool(g, arbiter);
  while (pool.allocate_block()) {
  }
  CHECK(pool.blocks_in_use() == 2560);
  CHECK(pool.committed_bytes() == 60ull << 20);
  CHECK(pool.rounding_waste_bytes() == 0);
}

TEST_CASE("kv block pool: a partial last group's unusable bytes are rounding waste", "[kv_pool]") {
  FixedBudgetArbiter arbiter(1024);
  // 100 blocks of a 4 KiB piece per sub-range: 400 KiB used of a 2 MiB granule in each of 4.
  KvBlockPool pool = make_pool({.num_layers = 2,
                                .kv_heads = 2,
                                .head_dim = 32,
                                .block_tokens = 16,
                                .max_blocks = 100,
                                .dtype = DType::kF32},
                               arbiter);
  must_allocate(pool);
  CHECK(pool.committed_bytes() == 4 * kGranuleBytes);
  CHECK(pool.rounding_waste_bytes() == 4 * (kGranuleBytes - 100 * 4096));
}

}  // namespace
