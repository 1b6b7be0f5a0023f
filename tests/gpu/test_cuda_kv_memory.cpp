// The KV pool in CUDA virtual memory: the governor's granules are the device's committed
// bytes, granted and returned exactly, and the mapped blocks hold what attention reads.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/kv/kv_block_pool.h"
#include "governor/fixed_budget_arbiter.h"

namespace {

using sparkd::DType;
using sparkd::KvBlockPool;
using sparkd::KvBlockPoolGeometry;
using sparkd::governor::FixedBudgetArbiter;
using sparkd::governor::kGranuleBytes;

int64_t device_free_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  REQUIRE(cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess);
  return static_cast<int64_t>(free_bytes);
}

}  // namespace

TEST_CASE("cuda: KV grants and releases move the device's committed bytes by the granules",
          "[gpu]") {
  auto made = sparkd::make_cuda_backend();
  REQUIRE(made.has_value());
  auto& backend = **made;
  // 64 KiB pieces: a group of 32 blocks fills one granule per sub-range, 4 sub-ranges.
  const KvBlockPoolGeometry geometry{.num_layers = 2,
                                     .kv_heads = 8,
                                     .head_dim = 128,
                                     .block_tokens = 16,
                                     .max_blocks = 256,
                                     .dtype = DType::kF32};
  FixedBudgetArbiter arbiter(1000);
  auto pool =
      KvBlockPool::create(geometry, arbiter, /*consumer=*/1, sparkd::KvGroupRelease::kOnFree,
                          sparkd::KvBacking::kMemory, &backend);
  REQUIRE(pool.has_value());
  // Everything else first: the buffers below, and one launch of store_kv (CUDA loads kernel
  // modules lazily, into device memory), so that from here on only the pool moves memory.
  const int64_t row = geometry.kv_heads * geometry.head_dim;
  std::vector<float> k(static_cast<size_t>(row), 1.25f), v(static_cast<size_t>(row), -3.0f);
  auto k_buffer = backend.allocate(k.size() * 4);
  auto v_buffer = backend.allocate(v.size() * 4);
  auto scratch_kv = backend.allocate(2 * k.size() * 4);
  REQUIRE((k_buffer && v_buffer && scratch_kv));
  backend.upload(k_buffer->data(), k.data(), k.size() * 4);
  backend.upload(v_buffer->data(), v.data(), v.size() * 4);
  const sparkd::Tensor k_row(DType::kF32, {1, geometry.kv_heads, geometry.head_dim},
                             k_buffer->data());
  const sparkd::Tensor v_row(DType::kF32, {1, geometry.kv_heads, geometry.head_dim},
                             v_buffer->data());
  const sparkd::KvLayerView warm_up{
      sparkd::Tensor(DType::kF32, {1, geometry.kv_heads, geometry.head_dim}, scratch_kv->data()),
      sparkd::Tensor(DType::kF32, {1, geometry.kv_heads, geometry.head_dim},
                     static_cast<float*>(scratch_kv->data()) + row),
      0};
  backend.store_kv(k_row, v_row, std::vector<int32_t>{0}, warm_up);
  backend.synchronize();
  // On an integrated GPU the device's free memory is the machine's, which other processes move.
  cudaDeviceProp prop{};
  REQUIRE(cudaGetDeviceProperties(&prop, 0) == cudaSuccess);
  const int64_t noise = prop.integrated ? int64_t{64} << 20 : 0;
  const int64_t baseline = device_free_bytes();
  const int64_t group_bytes = 4 * static_cast<int64_t>(kGranuleBytes);

  std::vector<int32_t> blocks;
  blocks.push_back(*pool->allocate_block());
  CHECK(pool->committed_bytes() == static_cast<uint64_t>(group_bytes));
  CHECK(std::abs(baseline - device_free_bytes() - group_bytes) <= noise);

  for (int i = 0; i < 40; ++i) blocks.push_back(*pool->allocate_block());  // into group 2
  CHECK(pool->committed_bytes() == static_cast<uint64_t>(2 * group_bytes));
  CHECK(std::abs(baseline - device_free_bytes() - 2 * group_bytes) <= noise);

  // Written and read back through the mapping.
  const sparkd::KvLayerView view = pool->layer_view(1);
  const int32_t slot = blocks.back() * geometry.block_tokens + 3;
  backend.store_kv(
      sparkd::Tensor(DType::kF32, {1, geometry.kv_heads, geometry.head_dim}, k_buffer->data()),
      sparkd::Tensor(DType::kF32, {1, geometry.kv_heads, geometry.head_dim}, v_buffer->data()),
      std::vector<int32_t>{slot}, view);
  std::vector<float> stored(static_cast<size_t>(row));
  backend.download_f32(
      view.values.reshaped({geometry.max_blocks * geometry.block_tokens, row}).row_range(slot, 1),
      stored);
  CHECK(stored[0] == -3.0f);
  CHECK(stored[static_cast<size_t>(row - 1)] == -3.0f);

  // A full reclaim returns to the baseline.
  for (int32_t b : blocks) pool->free_block(b);
  CHECK(pool->committed_bytes() == 0);
  CHECK(arbiter.granted_granules(1) == 0);
  CHECK(std::abs(device_free_bytes() - baseline) <= noise);

  // The runner's policy where commits cost driver calls: the group emptied last stays mapped
  // (and on the ledger), the next allocation takes it without mapping, and releasing unused
  // groups (what reclaim does first) returns to the baseline.
  CHECK(backend.virtual_commit_is_costly());
  auto spare_pool = KvBlockPool::create(geometry, arbiter, /*consumer=*/2,
                                        sparkd::KvGroupRelease::kKeepSpareGroup,
                                        sparkd::KvBacking::kMemory, &backend);
  REQUIRE(spare_pool.has_value());
  blocks.clear();
  for (int i = 0; i < 41; ++i) blocks.push_back(*spare_pool->allocate_block());
  CHECK(std::abs(baseline - device_free_bytes() - 2 * group_bytes) <= noise);
  for (int32_t b : blocks) spare_pool->free_block(b);
  CHECK(spare_pool->committed_bytes() == static_cast<uint64_t>(group_bytes));
  CHECK(arbiter.granted_granules(2) * kGranuleBytes == static_cast<uint64_t>(group_bytes));
  CHECK(std::abs(baseline - device_free_bytes() - group_bytes) <= noise);
  const int32_t again = *spare_pool->allocate_block();
  CHECK(spare_pool->committed_bytes() == static_cast<uint64_t>(group_bytes));
  spare_pool->free_block(again);
  CHECK(spare_pool->release_unused_groups() == 4);
  CHECK(arbiter.granted_granules(2) == 0);
  CHECK(std::abs(device_free_bytes() - baseline) <= noise);
}
