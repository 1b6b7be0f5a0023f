// GGUF: the single-file model format of llama.cpp, Ollama and LM Studio; its parsing and
// validation.
//
// Format (v2 and v3; all integers little-endian):
//   "GGUF", u32 version, u64 tensor count, u64 metadata count;
//   metadata: key (u64 length + bytes), u32 value type, value (arrays: u32 element type,
//             u64 count, elements; strings: u64 length + bytes);
//   tensor infos: name, u32 rank, u64 dims (innermost first), u32 ggml type, u64 offset
//             relative to the data section;
//   padding to general.alignment (default 32), then the data section.
// A model may be split into "NAME-00001-of-00003.gguf" parts (llama.cpp's gguf-split); each
// part is a GGUF file, the first holds the metadata, and split.no / split.count say which
// part it is.
//
// Every check a damaged or hostile file can fail is made here, before a byte of tensor data
// is read; each failure names the file, the tensor or key, and the numbers that disagree.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "engine/backend/tensor.h"

namespace sparkd::model {

enum class GgufValueType : uint32_t {
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
const char* gguf_value_type_name(GgufValueType type);

// One metadata value. Integers and bools are held as int64 (a u64 above INT64_MAX wraps:
// no key we read holds one), floats as double, strings as bytes. An array keeps its
// elements in the vector of their kind; nested arrays are refused at parse.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  GgufValueType element_type = GgufValueType::kUint8;  // arrays only
  int64_t integer = 0;
  double number = 0;
  std::string text;
  std::vector<int64_t> integers;
  std::vector<double> numbers;
  std::vector<std::string> texts;

  bool is_integer() const;  // any integer type or bool
  bool is_number() const;   // an integer or a float
  bool is_array_of(GgufValueType element) const {
    return type == GgufValueType::kArray && element_type == element;
  }
  size_t array_size() const;
};

// The key-value metadata, with typed accessors whose errors name the key and the file.
class GgufMetadata {
 public:
  GgufMetadata() = default;
  explicit GgufMetadata(std::string source) : source_(std::move(source)) {}

  const GgufValue* find(const std::string& key) const;
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  const std::map<std::string, GgufValue>& values() const { return values_; }
  std::map<std::string, GgufValue>& mutable_values() { return values_; }
  const std::string& source() const { return source_; }

  // Absent keys give nullopt; a key of the wrong type is an error.
  Expected<std::optional<int64_t>> optional_integer(const std::string& key) const;
  Expected<std::optional<double>> optional_number(const std::string& key) const;
  Expected<std::optional<std::string>> optional_string(const std::string& key) const;
  Expected<std::optional<bool>> optional_bool(const std::string& key) const;
  // Required keys: an absent key is an error too.
  Expected<int64_t> integer(const std::string& key) const;
  Expected<std::string> string(const std::string& key) const;
  // Arrays: a pointer to the elements (nullptr when absent), an error for another type.
  Expected<const std::vector<std::string>*> string_array(const std::string& key) const;
  Expected<const std::vector<int64_t>*> integer_array(const std::string& key) const;
  Expected<const std::vector<double>*> number_array(const std::string& key) const;

 private:
  Status wrong_type(const std::string& key, const char* wanted) const;

  std::string source_;
  std::map<std::string, GgufValue> values_;
};

// ggml's type ids: every one a file may carry, for names in error messages.
const char* ggml_type_name(uint32_t ggml_type);
// The DType of a ggml type id sparkd runs, or nullopt.
std::optional<DType> dtype_of_ggml_type(uint32_t ggml_type);
// "F32, F16, BF16, Q4_0, ...": what sparkd runs, for "unsupported type" errors.
std::string supported_ggml_types();

struct GgufTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  // Row-major, outermost first (GGUF lists dims innermost first: this is them reversed), so a
  // [out, in] linear weight reads as PyTorch's.
  std::vector<int64_t> shape;
  uint64_t file_offset = 0;  // absolute, in its file
  uint64_t size_bytes = 0;
  uint32_t part = 0;  // index of the file (split part) that holds it
};

struct GgufFile {
  std::string path;
  uint32_t version = 0;
  uint64_t file_size_bytes = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // where the data section starts
  GgufMetadata metadata;
  std::vector<GgufTensorInfo> tensors;  // in the order the file lists them
};

// Something to parse from: the bytes of a file, however they are fetched.
class GgufByteSource {
 public:
  virtual ~GgufByteSource() = default;
  virtual uint64_t size_bytes() const = 0;
  // Exactly `count` bytes at `offset` (the parser has checked they are within size_bytes()).
  virtual Status read(uint64_t offset, void* dst, size_t count) = 0;
};

// Parses and validates one GGUF file's header from `source`, named `path` in errors. No
// tensor data is read. The fuzz target's entry point (with the bytes in memory). Errors:
// DATA_LOSS for a damaged file, UNIMPLEMENTED for a version or tensor type sparkd does not
// run.
Expected<GgufFile> parse_gguf(GgufByteSource& source, const std::string& path);
// The same, over bytes in memory.
Expected<GgufFile> parse_gguf_bytes(std::span<const uint8_t> bytes, const std::string& path);

// A model in one GGUF file or a split set, every part parsed; tensors of all parts.
struct GgufModel {
  std::vector<GgufFile> parts;  // parts[0] holds the metadata
  const GgufMetadata& metadata() const { return parts.front().metadata; }
  // Every tensor of every part, by name.
  std::map<std::string, const GgufTensorInfo*> tensors() const;
  uint64_t file_bytes() const;
};

// True for a path ending in ".gguf".
bool is_gguf_path(std::string_view path);
// Reads the GGUF model at `path`: a single file, or any part of a split set (all parts are
// read, from -00001-of-N on). NOT_FOUND names a missing part.
Expected<GgufModel> read_gguf_model(const std::string& path);

}  // namespace sparkd::model
