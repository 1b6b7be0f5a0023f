// Device virtual memory for the paged KV pool (cuda_virtual_memory.cu).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "common/status.h"
#include "engine/backend/backend.h"

namespace sparkd::cuda {

class VirtualMemory {
 public:
  explicit VirtualMemory(int device);
  ~VirtualMemory();
  VirtualMemory(const VirtualMemory&) = delete;
  VirtualMemory& operator=(const VirtualMemory&) = delete;

  // A range of `size_bytes` (whole 2 MiB granules); with VMM nothing is committed yet. Only
  // work queued on `stream` may read it: a decommit (and the range's end) waits for that
  // stream alone, not for other models' work on the device.
  Expected<std::unique_ptr<VirtualRange>> reserve(size_t size_bytes, cudaStream_t stream);

  bool supported() const { return supported_; }
  // Why VMM is not used (empty when it is).
  const std::string& unsupported_reason() const { return unsupported_reason_; }
  size_t granularity_bytes() const { return granularity_bytes_; }

 private:
  struct Driver;
  int device_ = 0;
  bool supported_ = false;
  std::string unsupported_reason_;
  size_t granularity_bytes_ = 0;
  std::unique_ptr<Driver> driver_;
};

}  // namespace sparkd::cuda
