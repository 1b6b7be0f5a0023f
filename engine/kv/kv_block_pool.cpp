#include "engine/kv/kv_block_pool.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

namespace sparkd {
namespace {

using governor::kGranuleBytes;
static_assert(kGranuleBytes == kVirtualGranuleBytes, "KV granules are backend granules");

uint64_t round_up_to_granule(uint64_t bytes) {
  return (bytes + kGranuleBytes - 1) / kGranuleBytes * kGranuleBytes;
}

std::string describe(const KvBlockPoolGeometry& g) {
  return std::to_string(g.num_layers) + " layers x " + std::to_string(g.kv_heads) + " kv heads x " +
         std::to_string(g.head_dim) + " head dim, " + std::to_string(g.block_tokens) +
         " tokens per block, " + std::to_string(g.max_blocks) + " blocks, " + dtype_name(g.dtype);
}

}  // namespace

Expected<KvBlockPool> KvBlockPool::create(const KvBlockPoolGeometry& geometry,
                                          governor::MemoryArbiter& arbiter,
                                          governor::ConsumerId consumer, KvGroupRelease release,
                                          KvBacking backing, Backend* backend) {
  if (geometry.num_layers <= 0 || geometry.kv_heads <= 0 || geometry.head_dim <= 0 ||
      geometry.block_tokens <= 0 || geometry.max_blocks <= 0) {
    return Status(StatusCode::kInvalidArgument,
                  "KV block pool: every dimension must be positive (" + describe(geometry) + ")");
  }
  // Slots are int32 in block tables and kernels; the reservation must fit the address space
  // (2^46 bytes leaves room on every 48-bit VA machine). Checked by division so that the
  // checks cannot overflow themselves.
  constexpr uint64_t kMaxReservationBytes = uint64_t{1} << 46;
  const auto u64 = [](int32_t v) { return static_cast<uint64_t>(v); };
  const uint64_t slots = u64(geometry.max_blocks) * u64(geometry.block_tokens);
  // < 2^31 * 2^31 * 4: fits.
  const uint64_t row_bytes =
      u64(geometry.kv_heads) * u64(geometry.head_dim) * dtype_size_bytes(geometry.dtype);
  bool too_large =
      slots > u64(std::numeric_limits<int32_t>::max()) || row_bytes > kMaxReservationBytes / slots;
  const uint64_t range_bytes = too_large ? 0 : round_up_to_granule(row_bytes * slots);
  too_large = too_large || 2 * u64(geometry.num_layers) > kMaxReservationBytes / range_bytes;
  if (too_large) {
    return Status(StatusCode::kInvalidArgument, "KV block pool too large to address (" +
                                                    describe(geometry) +
                                                    "): lower max_blocks or block_tokens");
  }
  const uint64_t piece_bytes = row_bytes * u64(geometry.block_tokens);
  const uint64_t reservation_bytes = range_bytes * 2 * u64(geometry.num_layers);

  KvBlockPool pool;
  pool.geometry_ = geometry;
  pool.arbiter_ = &arbiter;
  pool.consumer_ = consumer;
  pool.release_ = release;
  pool.piece_bytes_ = piece_bytes;
  pool.range_stride_bytes_ = range_bytes;
  // lcm(piece, granule) / piece = granule / gcd: the fewest blocks that end on a granule.
  pool.blocks_per_group_ =
      static_cast<int32_t>(kGranuleBytes / std::gcd(piece_bytes, kGranuleBytes));
  pool.group_span_bytes_ = piece_bytes * static_cast<uint64_t>(pool.blocks_per_group_);

  if (backing == KvBacking::kMemory) {
    auto reserved = backend != nullptr ? backend->reserve_virtual(reservation_bytes)
                                       : reserve_host_virtual(reservation_bytes);
    if (!reserved) {
      return Status(StatusCode::kResourceExhausted,
                    "KV block pool (" + describe(geometry) + "): " + reserved.status().message());
    }
    pool.memory_ = std::move(reserved).value();
  }

  const int32_t num_groups =
      (geometry.max_blocks + pool.blocks_per_group_ - 1) / pool.blocks_per_group_;
  pool.block_live_.assign(static_cast<size_t>(geometry.max_blocks), 0);
  pool.group_live_blocks_.assign(static_cast<size_t>(num_groups), 0);
  pool.group_committed_.assign(static_cast<size_t>(num_groups), 0);
  for (int32_t g = 0; g < num_groups; ++g) pool.uncommitted_groups_.insert(g);
  return pool;
}

int32_t KvBlockPool::max_blocks_within(const KvBlockPoolGeometry& geometry, uint64_t bytes) {
  if (geometry.num_layers <= 0 || geometry.kv_heads <= 0 || geometry.head_dim <= 0 ||
      geometry.block_tokens <= 0) {
    return 0;
  }
  const uint64_t ranges = 2 * static_cast<uint64_t>(geometry.num_layers);
  // Every sub-range commits whole granules: what one sub-range may hold, in granules.
  const uint64_t range_bytes = bytes / ranges / kGranuleBytes * kGranuleBytes;
  const uint64_t piece = static_cast<uint64_t>(geometry.block_tokens) * geometry.kv_heads *
                         geometry.head_dim * dtype_size_bytes(geometry.dtype);
  const uint64_t blocks = range_bytes / piece;
  return static_cast<int32_t>(
      std::min<uint64_t>(blocks, static_cast<uint64_t>(std::numeric_limits<int32_t>::max())));
}

uint64_t KvBlockPool::committed_bytes_at_capacity(const KvBlockPoolGeometry& geometry) {
  const uint64_t piece = static_cast<uint64_t>(geometry.block_tokens) * geometry.kv_heads *
                         geometry.head_dim * dtype_size_bytes(geometry.dtype);
  return round_up_to_granule(piece * static_cast<uint64_t>(geometry.max_blocks)) * 2 *
         static_cast<uint64_t>(geometry.num_layers);
}

uint64_t KvBlockPool::rounding_waste_bytes() const {
  uint64_t usable_blocks = 0;
  for (int32_t g = 0; g < num_groups(); ++g) {
    if (!group_committed_[g]) continue;
    const int32_t first = g * blocks_per_group_;
    usable_blocks +=
        static_cast<uint64_t>(std::min(blocks_per_group_, geometry_.max_blocks - first));
  }
  return committed_bytes() - usable_blocks * block_bytes();
}

KvBlockPool::KvBlockPool(KvBlockPool&& other) noexcept {
  *this = std::move(other);
}

KvBlockPool& KvBlockPool::operator=(KvBlockPool&& other) noexcept {
  if (this == &other) return *this;
  destroy();
  geometry_ = other.geometry_;
  arbiter_ = std::exchange(other.arbiter_, nullptr);
  consumer_ = other.consumer_;
  release_ = other.release_;
  memory_ = std::move(other.memory_);
  range_stride_bytes_ = other.range_stride_bytes_;
  piece_bytes_ = other.piece_bytes_;
  group_span_bytes_ = other.group_span_bytes_;
  blocks_per_group_ = other.blocks_per_group_;
  block_live_ = std::move(other.block_live_);
  group_live_blocks_ = std::move(other.group_live_blocks_);
  group_committed_ = std::move(other.group_committed_);
  free_committed_blocks_ = std::move(other.free_committed_blocks_);
  uncommitted_groups_ = std::move(other.uncommitted_groups_);
  blocks_in_use_ = std::exchange(other.blocks_in_use_, 0);
  committed_groups_ = std::exchange(other.committed_groups_, 0);
  empty_committed_groups_ = std::exchange(other.empty_committed_groups_, 0);
  // The moved-from pool must not release these granules a second time.
  committed_granules_ = std::exchange(other.committed_granules_, 0);
  return *this;
}

KvBlockPool::~KvBlockPool() {
  destroy();
}

void KvBlockPool::destroy() {
  if (arbiter_ == nullptr) return;
  memory_.reset();  // unmaps committed memory with the reservation
  if (committed_granules_ > 0) arbiter_->release_granules(consumer_, committed_granules_);
  arbiter_ = nullptr;
  committed_granules_ = 0;
  committed_groups_ = 0;
  empty_committed_groups_ = 0;
  blocks_in_use_ = 0;
}

std::optional<int32_t> KvBlockPool::allocate_block() {
  if (free_committed_blocks_.empty()) {
    if (uncommitted_groups_.empty()) return std::nullopt;
    if (!commit_group(*uncommitted_groups_.begin())) return std::nullopt;
  }
  const int32_t block = *free_committed_blocks_.begin();
  free_committed_blocks_.erase(free_committed_blocks_.begin());
  block_live_[block] = 1;
  if (group_live_blocks_[block / blocks_per_group_]++ == 0) --empty_committed_groups_;
  ++blocks_in_use_;
  return block;
}

void KvBlockPool::free_block(int32_t block) {
  if (!block_in_use(block)) {
    std::fprintf(stderr,
                 "sparkd: KvBlockPool: free_block(%" PRId32 ") of a block not in use (%" PRId32
                 " blocks)\n",
                 block, geometry_.max_blocks);
    std::abort();
  }
  block_live_[block] = 0;
  const int32_t group = block / blocks_per_group_;
  --group_live_blocks_[group];
  --blocks_in_use_;
  free_committed_blocks_.insert(block);
  if (group_live_blocks_[group] > 0) return;
  ++empty_committed_groups_;
  if (release_ == KvGroupRelease::kOnFree ||
      (release_ == KvGroupRelease::kKeepSpareGroup && empty_committed_groups_ > 1)) {
    decommit_group(group);
  }
}

uint64_t KvBlockPool::release_unused_groups() {
  uint64_t released = 0;
  for (int32_t g = 0; g < num_groups(); ++g) {
    if (group_committed_[g] && group_live_blocks_[g] == 0) released += decommit_group(g);
  }
  return released;
}

bool KvBlockPool::block_in_use(int32_t block) const {
  return block >= 0 && block < geometry_.max_blocks && block_live_[block] != 0;
}

KvCache KvBlockPool::cache_view() const {
  std::vector<KvLayerView> layers;
  for (int32_t l = 0; l < geometry_.num_layers; ++l) layers.push_back(layer_view(l));
  return KvCache::over(std::move(layers), geometry_.max_blocks * geometry_.block_tokens,
                       geometry_.block_tokens);
}

KvLayerView KvBlockPool::layer_view(int32_t layer) const {
  if (memory_ == nullptr) {
    std::fprintf(stderr, "sparkd: KvBlockPool: layer_view of a ledger-only pool\n");
    std::abort();
  }
  const std::vector<int64_t> shape = {int64_t{geometry_.max_blocks} * geometry_.block_tokens,
                                      geometry_.kv_heads, geometry_.head_dim};
  KvLayerView view;
  view.keys = Tensor(geometry_.dtype, shape, range_base(2 * layer));
  view.values = Tensor(geometry_.dtype, shape, range_base(2 * layer + 1));
  view.block_tokens = geometry_.block_tokens;
  return view;
}

uint64_t KvBlockPool::group_granules_per_range(int32_t group) const {
  const int32_t first = group * blocks_per_group_;
  const int32_t blocks = std::min(blocks_per_group_, geometry_.max_blocks - first);
  return round_up_to_granule(piece_bytes_ * static_cast<uint64_t>(blocks)) / kGranuleBytes;
}

bool KvBlockPool::commit_group(int32_t group) {
  const int32_t ranges = 2 * geometry_.num_layers;
  const uint64_t granules_per_range = group_granules_per_range(group);
  const uint64_t granules = granules_per_range * static_cast<uint64_t>(ranges);
  if (!arbiter_->grant_granules(consumer_, granules)) return false;
  const uint64_t offset = static_cast<uint64_t>(group) * group_span_bytes_;
  const size_t bytes = granules_per_range * kGranuleBytes;
  for (int32_t r = 0; r < ranges && memory_ != nullptr; ++r) {
    const Status committed = memory_->commit(range_offset(r) + offset, bytes);
    if (!committed.is_ok()) {
      // Out of mappings or device memory: a refusal, so the caller preempts or waits.
      std::fprintf(stderr, "sparkd: KvBlockPool: cannot commit block group %" PRId32 ": %s\n",
                   group, committed.message().c_str());
      for (int32_t undo = 0; undo < r; ++undo) {
        static_cast<void>(memory_->decommit(range_offset(undo) + offset, bytes));
      }
      arbiter_->release_granules(consumer_, granules);
      return false;
    }
  }
  group_committed_[group] = 1;
  ++empty_committed_groups_;
  uncommitted_groups_.erase(group);
  const int32_t first = group * blocks_per_group_;
  const int32_t end = std::min(first + blocks_per_group_, geometry_.max_blocks);
  for (int32_t b = first; b < end; ++b) free_committed_blocks_.insert(b);
  ++committed_groups_;
  committed_granules_ += granules;
  return true;
}

uint64_t KvBlockPool::decommit_group(int32_t group) {
  const int32_t ranges = 2 * geometry_.num_layers;
  const uint64_t granules_per_range = group_granules_per_range(group);
  const uint64_t offset = static_cast<uint64_t>(group) * group_span_bytes_;
  const size_t bytes = granules_per_range * kGranuleBytes;
  for (int32_t r = 0; r < ranges && memory_ != nullptr; ++r) {
    // A failure leaves at worst a committed range nothing uses: logged, not fatal.
    const Status decommitted = memory_->decommit(range_offset(r) + offset, bytes);
    if (!decommitted.is_ok()) {
      std::fprintf(stderr, "sparkd: KvBlockPool: decommit of block group %" PRId32 ": %s\n", group,
                   decommitted.message().c_str());
    }
  }
  const int32_t first = group * blocks_per_group_;
  const int32_t end = std::min(first + blocks_per_group_, geometry_.max_blocks);
  for (int32_t b = first; b < end; ++b) free_committed_blocks_.erase(b);
  group_committed_[group] = 0;
  --empty_committed_groups_;  // only groups without a live block are decommitted
  uncommitted_groups_.insert(group);
  const uint64_t granules = granules_per_range * static_cast<uint64_t>(ranges);
  --committed_groups_;
  committed_granules_ -= granules;
  arbiter_->release_granules(consumer_, granules);
  return granules;
}

}  // namespace sparkd
