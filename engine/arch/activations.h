// Activations: the scratch tensors of one forward pass, in backend memory, freed together;
// carved from the model's Workspace when it has one.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "common/status.h"
#include "engine/backend/backend.h"

namespace sparkd::arch {

// A model's workspace: one allocation, sized at load for its largest forward (max_batch_tokens,
// max_seqs) and made resident then, that every forward carves its activations from. The
// memory governor counts it once, and RSS does not swing with every step.
//
// One forward at a time uses it (the model's runner thread); another forward running
// meanwhile (a test, a tool) allocates its own, as does a forward larger than the workspace
// (counted in overflow_allocations(): the size estimate was short).
class Workspace {
 public:
  static Expected<std::unique_ptr<Workspace>> create(Backend& backend, size_t size_bytes) {
    auto buffer = backend.allocate(std::max<size_t>(size_bytes, 1));
    if (!buffer) return buffer.status();
    auto workspace = std::unique_ptr<Workspace>(new Workspace());
    // Touched now, so the pages are resident from the load on: the ledger's figure is real.
    if (backend.memory_is_host_accessible()) std::memset(buffer->data(), 0, buffer->size_bytes());
    workspace->buffer_ = std::move(buffer).value();
    return workspace;
  }
  size_t size_bytes() const { return buffer_.size_bytes(); }
  uint64_t overflow_allocations() const { return overflows_.load(); }

 private:
  friend class Activations;
  Workspace() = default;
  Buffer buffer_;
  std::atomic<bool> busy_{false};
  std::atomic<uint64_t> overflows_{0};
};

class Activations {
 public:
  explicit Activations(Backend& backend, Workspace* workspace = nullptr) : backend_(backend) {
    if (workspace != nullptr && !workspace->busy_.exchange(true)) workspace_ = workspace;
  }
  ~Activations() {
    if (workspace_ != nullptr) workspace_->busy_.store(false);
  }
  Activations(const Activations&) = delete;
  Activations& operator=(const Activations&) = delete;

  // A new tensor of the backend's activation dtype.
  Expected<Tensor> make(std::vector<int64_t> shape) {
    return make(backend_.activation_dtype(), std::move(shape));
  }
  Expected<Tensor> make(DType dtype, std::vector<int64_t> shape) {
    Tensor tensor(dtype, std::move(shape), nullptr);
    const size_t bytes = std::max<size_t>(tensor.size_bytes(), 1);
    if (workspace_ != nullptr) {
      constexpr size_t kAlignment = 64;  // a cache line: vector loads never straddle two
      const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
      if (rounded <= workspace_->buffer_.size_bytes() - used_) {
        tensor.data = static_cast<char*>(workspace_->buffer_.data()) + used_;
        used_ += rounded;
        return tensor;
      }
      workspace_->overflows_.fetch_add(1);
    }
    auto buffer = backend_.allocate(bytes);
    if (!buffer) return buffer.status();
    tensor.data = buffer->data();
    buffers_.push_back(std::move(buffer).value());
    return tensor;
  }
  // A small host table (token ids' inverse frequencies and the like) copied to the backend.
  Expected<Tensor> upload_f32(const std::vector<float>& values) {
    SPARKD_ASSIGN_OR_RETURN(Tensor tensor,
                            make(DType::kF32, {static_cast<int64_t>(values.size())}));
    backend_.upload(tensor.data, values.data(), values.size() * sizeof(float));
    return tensor;
  }

 private:
  Backend& backend_;
  Workspace* workspace_ = nullptr;  // held (busy) while this object lives
  size_t used_ = 0;
  std::vector<Buffer> buffers_;
};

}  // namespace sparkd::arch
