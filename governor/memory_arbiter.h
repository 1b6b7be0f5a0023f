// MemoryArbiter: the one door between the engine and the governor. Every byte of KV memory
// a model commits is granted through it first, in granules, and handed back through it.
//
// The engine sees only this interface (ARCHITECTURE.md: engine -> governor only through
// MemoryArbiter); the daemon decides which implementation stands behind it.
#pragma once

#include <cstdint>

namespace sparkd::governor {

// Who holds granules: one id per model's KV cache.
using ConsumerId = uint32_t;

// Physical memory is committed and released in granules of this size (2 MiB: a huge page
// on x86 and aarch64, and the CUDA VMM allocation granularity on the GPUs we target).
inline constexpr uint64_t kGranuleBytes = 2ull << 20;

class MemoryArbiter {
 public:
  virtual ~MemoryArbiter() = default;

  // Asks for `granules` more for `consumer`: all or nothing. On true the caller may commit
  // that much memory; on false it must make do (free its own cache, preempt, or wait).
  virtual bool grant_granules(ConsumerId consumer, uint64_t granules) = 0;
  // Hands back granules the consumer has decommitted.
  virtual void release_granules(ConsumerId consumer, uint64_t granules) = 0;
  // What `consumer` holds now.
  virtual uint64_t granted_granules(ConsumerId consumer) const = 0;
};

}  // namespace sparkd::governor
