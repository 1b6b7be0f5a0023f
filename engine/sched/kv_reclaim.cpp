#include "engine/sched/kv_reclaim.h"

namespace sparkd::sched {

void drop_prefix_cache(KvBlockPool& pool, kv::PrefixCache& cache, uint64_t bytes) {
  const uint64_t start = pool.committed_bytes();
  const uint64_t target = start > bytes ? start - bytes : 0;
  pool.release_unused_groups();
  while (pool.committed_bytes() > target && cache.cached_unreferenced_blocks() > 0) {
    cache.reclaim(1);
    if (pool.empty_committed_groups() > 0) pool.release_unused_groups();
  }
}

void apply_reclaim_demand(const governor::ReclaimDemand& demand, KvBlockPool& pool,
                          kv::PrefixCache& cache, Scheduler& scheduler,
                          const RecurrentStatePool* states) {
  if (demand.prefix_cache_bytes > 0) drop_prefix_cache(pool, cache, demand.prefix_cache_bytes);
  if (demand.shrink_kv_to_bytes == governor::ReclaimDemand::kNoShrink) return;
  const uint64_t target = demand.shrink_kv_to_bytes;
  // What the model holds on its KV account: the pool's granules and the states'.
  const auto held = [&] {
    return pool.committed_bytes() + (states != nullptr ? states->committed_bytes() : 0);
  };
  while (held() > target) {
    drop_prefix_cache(pool, cache, held() - target);
    if (held() <= target) break;
    if (scheduler.preempt_newest() == 0) break;
  }
}

}  // namespace sparkd::sched
