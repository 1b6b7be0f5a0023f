// Element types, owned memory and tensor views shared by every backend.
//
// A Tensor is a non-owning, row-major, contiguous view: a dtype, a shape and a pointer into
// memory some Backend allocated. Ownership stays with the Buffer the memory came from, so
// views are cheap to pass around and to reshape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace sparkd {

// Element types. Besides the float types, weights may be block-quantized in ggml's formats
// (the types GGUF files carry): a row is a sequence of blocks, each of block_elements values
// stored in block_bytes (scales and packed integers; layouts in engine/backend/quant_blocks.h).
// Activations and KV caches are always float types.
enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ8_0,
  kQ2_K,
  kQ3_K,
  kQ4_K,
  kQ5_K,
  kQ6_K,
  kMXFP4,
};
inline constexpr int kDTypeCount = static_cast<int>(DType::kMXFP4) + 1;

struct DTypeTraits {
  const char* name;  // safetensors' names for float types, ggml's for quantized ones
  int32_t block_elements;
  int32_t block_bytes;
};

constexpr DTypeTraits dtype_traits(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return {"F32", 1, 4};
    case DType::kF16:
      return {"F16", 1, 2};
    case DType::kBF16:
      return {"BF16", 1, 2};
    case DType::kQ4_0:
      return {"Q4_0", 32, 18};
    case DType::kQ4_1:
      return {"Q4_1", 32, 20};
    case DType::kQ5_0:
      return {"Q5_0", 32, 22};
    case DType::kQ5_1:
      return {"Q5_1", 32, 24};
    case DType::kQ8_0:
      return {"Q8_0", 32, 34};
    case DType::kQ2_K:
      return {"Q2_K", 256, 84};
    case DType::kQ3_K:
      return {"Q3_K", 256, 110};
    case DType::kQ4_K:
      return {"Q4_K", 256, 144};
    case DType::kQ5_K:
      return {"Q5_K", 256, 176};
    case DType::kQ6_K:
      return {"Q6_K", 256, 210};
    case DType::kMXFP4:
      return {"MXFP4", 32, 17};
  }
  return {"?", 1, 1};
}

constexpr bool dtype_is_quantized(DType dtype) {
  return dtype_traits(dtype).block_elements > 1;
}
// Bytes per element of a float type (never called for a quantized one: use dtype_row_bytes).
constexpr size_t dtype_size_bytes(DType dtype) {
  return static_cast<size_t>(dtype_traits(dtype).block_bytes);
}
// Bytes of `elements` consecutive values; for quantized types `elements` is a whole number
// of blocks (rows of quantized tensors always are: the loader checks it).
constexpr size_t dtype_row_bytes(DType dtype, int64_t elements) {
  const DTypeTraits traits = dtype_traits(dtype);
  return static_cast<size_t>(elements / traits.block_elements) *
         static_cast<size_t>(traits.block_bytes);
}
const char* dtype_name(DType dtype);

// Memory a backend allocated, freed by the backend's deleter when the Buffer dies.
class Buffer {
 public:
  using Deleter = std::function<void(void*)>;

  Buffer() = default;
  Buffer(void* data, size_t size_bytes, Deleter deleter)
      : data_(data), size_bytes_(size_bytes), deleter_(std::move(deleter)) {}
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_bytes_ = std::exchange(other.size_bytes_, 0);
      deleter_ = std::move(other.deleter_);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  void* data() const { return data_; }
  size_t size_bytes() const { return size_bytes_; }
  bool empty() const { return data_ == nullptr; }

 private:
  void release() {
    if (data_ && deleter_) deleter_(data_);
    data_ = nullptr;
  }
  void* data_ = nullptr;
  size_t size_bytes_ = 0;
  Deleter deleter_;
};

struct Tensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  void* data = nullptr;

  Tensor() = default;
  Tensor(DType type, std::vector<int64_t> dims, void* ptr)
      : dtype(type), shape(std::move(dims)), data(ptr) {}

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t size_bytes() const { return static_cast<size_t>(rows()) * row_bytes(); }
  size_t row_bytes() const { return dtype_row_bytes(dtype, cols()); }
  int rank() const { return static_cast<int>(shape.size()); }
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  // The last dimension, and the product of all the others: every op here works on rows.
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }

  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  // The same memory seen with another shape of equal element count.
  Tensor reshaped(std::vector<int64_t> dims) const { return Tensor(dtype, std::move(dims), data); }
  // Rows [begin, begin + count) of the [rows, cols] view.
  Tensor row_range(int64_t begin, int64_t count) const {
    return Tensor(dtype, {count, cols()}, static_cast<char*>(data) + begin * row_bytes());
  }
};

// "[2, 64]", for error messages.
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace sparkd
