#include "engine/backend/tensor.h"

namespace sparkd {

const char* dtype_name(DType dtype) {
  return dtype_traits(dtype).name;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

}  // namespace sparkd
