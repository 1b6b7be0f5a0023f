#include "engine/kv/kv_cache.h"

#include <string>
#include <utility>

namespace sparkd {

Expected<KvCache> KvCache::allocate(Backend& backend, int32_t num_layers, int32_t kv_heads,
                                    int32_t head_dim, int32_t num_slots, int32_t block_tokens) {
  KvCache cache;
  cache.num_slots_ = num_slots;
  cache.block_tokens_ = block_tokens;
  const DType dtype = backend.kv_dtype();
  const std::vector<int64_t> shape = {num_slots, kv_heads, head_dim};
  const size_t bytes =
      static_cast<size_t>(num_slots) * kv_heads * head_dim * dtype_size_bytes(dtype);
  for (int32_t l = 0; l < num_layers; ++l) {
    KvLayerView view;
    view.block_tokens = block_tokens;
    for (Tensor* t : {&view.keys, &view.values}) {
      auto buffer = backend.allocate(bytes);
      if (!buffer) {
        return Status(buffer.status().code(), "KV cache (" + std::to_string(num_slots) +
                                                  " slots x " + std::to_string(num_layers) +
                                                  " layers): " + buffer.status().message());
      }
      *t = Tensor(dtype, shape, buffer->data());
      cache.buffers_.push_back(std::move(buffer).value());
    }
    cache.layers_.push_back(view);
  }
  return cache;
}

KvCache KvCache::over(std::vector<KvLayerView> layers, int32_t num_slots, int32_t block_tokens) {
  KvCache cache;
  cache.layers_ = std::move(layers);
  cache.num_slots_ = num_slots;
  cache.block_tokens_ = block_tokens;
  return cache;
}

uint64_t KvCache::size_bytes() const {
  uint64_t total = 0;
  for (const Buffer& b : buffers_) total += b.size_bytes();
  return total;
}

}  // namespace sparkd
