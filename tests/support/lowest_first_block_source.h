// A block source that hands out the lowest free id, as the KV block pool does, with no
// memory behind it: for bookkeeping tests of the prefix cache and the scheduler.
#pragma once

#include <catch2/catch.hpp>
#include <optional>
#include <set>

#include "engine/kv/prefix_cache.h"

namespace sparkd::testing {

class LowestFirstSource : public kv::BlockSource {
 public:
  explicit LowestFirstSource(int32_t blocks) {
    for (int32_t b = 0; b < blocks; ++b) free_.insert(b);
  }
  std::optional<int32_t> allocate_block() override {
    if (free_.empty()) return std::nullopt;
    const int32_t block = *free_.begin();
    free_.erase(free_.begin());
    return block;
  }
  void free_block(int32_t block) override {
    REQUIRE(free_.insert(block).second);  // never freed twice
  }
  size_t free_blocks() const { return free_.size(); }

 private:
  std::set<int32_t> free_;
};

}  // namespace sparkd::testing
