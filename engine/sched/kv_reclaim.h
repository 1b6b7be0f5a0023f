// Giving KV memory back to the governor: what a model does, between two of its steps, with a
// ReclaimDemand. The decoder runner and the governor's trace simulator (bench/sim) both apply
// demands through these, so the simulator measures the policy the daemon really runs.
#pragma once

#include <cstdint>

#include "engine/kv/kv_block_pool.h"
#include "engine/kv/prefix_cache.h"
#include "engine/kv/recurrent_state_pool.h"
#include "engine/sched/scheduler.h"
#include "governor/memory_arbiter.h"

namespace sparkd::sched {

// Drops unreferenced prefix-cache blocks, least recently used first, until the pool has given
// back `bytes` (or the cache is empty). A block frees memory only once its whole group is
// free, so the loop watches the pool, not the block count. Empty groups a pool keeps
// (KvGroupRelease::kKeepSpareGroup) go first, and any group the drops empty goes at once:
// no cached prefix is dropped for memory a spare could give.
void drop_prefix_cache(KvBlockPool& pool, kv::PrefixCache& cache, uint64_t bytes);

// Spare groups and cache first, then the newest sequences are preempted (re-queued and recomputed,
// so their output does not change) until the model holds no more than the demand's target: the
// pool's committed memory and, for a model with recurrent state, its running sequences' `states`
// (nullptr: none). The caller then reports its usage and tells the arbiter the demand is
// applied.
void apply_reclaim_demand(const governor::ReclaimDemand& demand, KvBlockPool& pool,
                          kv::PrefixCache& cache, Scheduler& scheduler,
                          const RecurrentStatePool* states = nullptr);

}  // namespace sparkd::sched
