// Activations: the scratch tensors of one forward pass, in backend memory, freed together.
#pragma once

#include <algorithm>
#include <utility>
#include <vector>

#include "common/status.h"
#include "engine/backend/backend.h"

namespace sparkd::arch {

class Activations {
 public:
  explicit Activations(Backend& backend) : backend_(backend) {}

  // A new tensor of the backend's activation dtype.
  Expected<Tensor> make(std::vector<int64_t> shape) {
    return make(backend_.activation_dtype(), std::move(shape));
  }
  Expected<Tensor> make(DType dtype, std::vector<int64_t> shape) {
    Tensor tensor(dtype, std::move(shape), nullptr);
    auto buffer = backend_.allocate(std::max<size_t>(tensor.size_bytes(), 1));
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
  std::vector<Buffer> buffers_;
};

}  // namespace sparkd::arch
