#include "engine/sched/kv_reclaim.h"

namespace sparkd::sched {

void drop_prefix_cache(KvBlockPool& pool, kv::PrefixCache& cache, uint64_t bytes) {
  const uint64_t start = pool.committed_bytes();
  const uint64_t target = start > bytes ? start - bytes : 0;
  while (pool.committed_bytes() > target && cache.cached_unreferenced_blocks() > 0) {
    cache.reclaim(1);
  }
}

void apply_reclaim_demand(const governor::ReclaimDemand& demand, KvBlockPool& pool,
                          kv::PrefixCache& cache, Scheduler& scheduler) {
  if (demand.prefix_cache_bytes > 0) drop_prefix_cache(pool, cache, demand.prefix_cache_bytes);
  if (demand.shrink_kv_to_bytes == governor::ReclaimDemand::kNoShrink) return;
  const uint64_t target = demand.shrink_kv_to_bytes;
  while (pool.committed_bytes() > target) {
    drop_prefix_cache(pool, cache, pool.committed_bytes() - target);
    if (pool.committed_bytes() <= target) break;
    if (scheduler.preempt_newest() == 0) break;
  }
}

}  // namespace sparkd::sched
