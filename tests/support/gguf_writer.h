// GGUF bytes built field by field, so tests can write valid files and break them exactly
// where they mean to (a wrong count, a misaligned offset, a truncated array).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace sparkd::testing {

class GgufBytes {
 public:
  enum ValueType : uint32_t {
    kUint8 = 0,
    kInt8 = 1,
    kUint16 = 2,
    kInt16 = 3,
    kUint32 = 4,
    kInt32 = 5,
    kFloat32 = 6,
    kBool = 7,
    kString = 8,
    kArray = 9,
    kUint64 = 10,
    kInt64 = 11,
    kFloat64 = 12,
  };

  template <typename T>
  GgufBytes& scalar(T value) {
    const size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &value, sizeof(T));
    return *this;
  }
  GgufBytes& string(const std::string& text) {
    scalar<uint64_t>(text.size());
    bytes.insert(bytes.end(), text.begin(), text.end());
    return *this;
  }
  // "GGUF", version, tensor count, metadata count.
  GgufBytes& header(uint32_t version, uint64_t tensors, uint64_t keys) {
    bytes.insert(bytes.end(), {'G', 'G', 'U', 'F'});
    return scalar(version).scalar(tensors).scalar(keys);
  }
  GgufBytes& key_u32(const std::string& key, uint32_t value) {
    return string(key).scalar<uint32_t>(kUint32).scalar(value);
  }
  GgufBytes& key_string(const std::string& key, const std::string& value) {
    return string(key).scalar<uint32_t>(kString).string(value);
  }
  GgufBytes& key_strings(const std::string& key, const std::vector<std::string>& values) {
    string(key).scalar<uint32_t>(kArray).scalar<uint32_t>(kString).scalar<uint64_t>(values.size());
    for (const std::string& value : values) string(value);
    return *this;
  }
  // A tensor info: name, dims innermost first (as GGUF stores them), ggml type, offset.
  GgufBytes& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t ggml_type,
                    uint64_t offset) {
    string(name).scalar<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (uint64_t dim : dims) scalar(dim);
    return scalar(ggml_type).scalar(offset);
  }
  // Zero padding up to a multiple of `alignment`, then `count` data bytes of `fill`.
  GgufBytes& data(size_t alignment, size_t count, uint8_t fill = 0) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
    bytes.insert(bytes.end(), count, fill);
    return *this;
  }

  std::vector<uint8_t> bytes;
};

}  // namespace sparkd::testing
