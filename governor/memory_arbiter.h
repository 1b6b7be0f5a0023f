// MemoryArbiter: the one door between the engine and the governor. Every byte of KV memory
// a model commits is granted through it first, in granules, and handed back through it; the
// model reports how much of it is in use, and takes the governor's demands to give some back.
//
// The engine sees only this header (ARCHITECTURE.md: engine -> governor only through
// MemoryArbiter); the daemon decides which implementation stands behind it.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

namespace sparkd::governor {

// Who holds granules: one id per model's KV cache.
using ConsumerId = uint32_t;

// Physical memory is committed and released in granules of this size (2 MiB: a huge page
// on x86 and aarch64, and the CUDA VMM allocation granularity on the GPUs we target).
inline constexpr uint64_t kGranuleBytes = 2ull << 20;

// What the governor wants a model to give back. The model applies it between two of its steps
// (never in the middle of one), then releases the granules it freed.
struct ReclaimDemand {
  // Unreferenced prefix-cache memory to drop, least recently used first.
  uint64_t prefix_cache_bytes = 0;
  // Preempt the newest sequences (they are re-queued and recomputed) until the KV the model
  // holds is at most this; never below its kv_min. kNoShrink: no preemption.
  static constexpr uint64_t kNoShrink = std::numeric_limits<uint64_t>::max();
  uint64_t shrink_kv_to_bytes = kNoShrink;
};

// The model side of a reclaim: implemented by a model's runner. Both calls come from other
// threads (the one that needs memory, or the governor's pressure check), with the arbiter's
// lock held: they must only post the work and wake the runner, never wait for it and never
// call the arbiter.
class KvReclaimTarget {
 public:
  virtual ~KvReclaimTarget() = default;
  virtual void reclaim(const ReclaimDemand& demand) = 0;
  // Memory was released somewhere: a grant refused before may be granted now.
  virtual void memory_available() = 0;
};

class MemoryArbiter {
 public:
  virtual ~MemoryArbiter() = default;

  // Asks for `granules` more for `consumer`: all or nothing. On true the caller may commit
  // that much memory; on false it must make do (free its own cache, preempt, or wait). A
  // refusal may start reclaim elsewhere; the consumer's KvReclaimTarget hears when to retry.
  virtual bool grant_granules(ConsumerId consumer, uint64_t granules) = 0;
  // Hands back granules the consumer has decommitted.
  virtual void release_granules(ConsumerId consumer, uint64_t granules) = 0;
  // What `consumer` holds now.
  virtual uint64_t granted_granules(ConsumerId consumer) const = 0;

  // The consumer's KV in use by sequences and kept as unreferenced prefix cache (both within
  // what it was granted). The governor reclaims cache first because of this figure.
  virtual void report_kv_usage(ConsumerId consumer, uint64_t used_bytes, uint64_t cached_bytes) {
    (void)consumer, (void)used_bytes, (void)cached_bytes;
  }
  // The consumer has applied every demand it received (what it could free is released): the
  // rest of what was asked is not coming, and the governor may plan again at once.
  virtual void reclaim_applied(ConsumerId consumer) { (void)consumer; }
  // Where demands to give memory back go (nullptr: none); the target must outlive its
  // registration.
  virtual void set_reclaim_target(ConsumerId consumer, KvReclaimTarget* target) {
    (void)consumer, (void)target;
  }
  // The consumer has nothing waiting for memory any more: memory freed need not be kept
  // for it.
  virtual void stop_waiting(ConsumerId consumer) { (void)consumer; }
  // The most `consumer` could ever hold, were everything reclaimable reclaimed: a request
  // needing more fails at once instead of waiting for memory that can never come.
  virtual uint64_t max_grantable_granules(ConsumerId consumer) const {
    (void)consumer;
    return std::numeric_limits<uint64_t>::max();
  }
  // Why `granules` more cannot be granted to `consumer`: what it needs, what is free, and
  // what holds the rest, for the error a waiting request finally gets.
  virtual std::string explain_shortage(ConsumerId consumer, uint64_t granules) const {
    (void)consumer;
    return "the memory arbiter refused " + std::to_string(granules * kGranuleBytes) + " bytes";
  }
};

}  // namespace sparkd::governor
