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

enum class DType : uint8_t { kF32, kF16, kBF16 };

constexpr size_t dtype_size_bytes(DType dtype) {
  return dtype == DType::kF32 ? 4 : 2;
}
// "F32", "F16", "BF16": the names safetensors uses.
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
  size_t size_bytes() const { return static_cast<size_t>(numel()) * dtype_size_bytes(dtype); }
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
    return Tensor(dtype, {count, cols()},
                  static_cast<char*>(data) + begin * cols() * dtype_size_bytes(dtype));
  }
};

// "[2, 64]", for error messages.
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace sparkd
