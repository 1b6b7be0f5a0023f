#include "engine/model/gguf.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <regex>

#include "engine/model/posix_file.h"

namespace sparkd::model {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxRank = 4;                  // GGML_MAX_DIMS
// A key or tensor name longer than this is damage, not a name (llama.cpp's limit is 64 for
// tensor names; keys are unbounded there, but none is near this).
constexpr uint64_t kMaxNameBytes = 1 << 16;

Status data_loss(const std::string& path, const std::string& message) {
  return Status(StatusCode::kDataLoss, path + ": " + message);
}

std::string in_quotes(const std::string& text) {
  return "'" + text + "'";
}

// Sequential little-endian reads over a GgufByteSource, each one checked against the end of
// the file, with what was being read in the error.
class HeaderReader {
 public:
  HeaderReader(GgufByteSource& source, const std::string& path) : source_(source), path_(path) {}

  uint64_t offset() const { return offset_; }
  uint64_t remaining() const { return source_.size_bytes() - offset_; }

  Status bytes(void* dst, uint64_t count, const std::string& what) {
    if (count > remaining()) {
      return data_loss(path_, "truncated: " + what + " needs " + std::to_string(count) +
                                  " bytes at offset " + std::to_string(offset_) +
                                  " but the file ends at " + std::to_string(source_.size_bytes()));
    }
    SPARKD_RETURN_IF_ERROR(source_.read(offset_, dst, static_cast<size_t>(count)));
    offset_ += count;
    return Status::ok();
  }

  template <typename T>
  Status scalar(T& value, const std::string& what) {
    uint8_t raw[sizeof(T)];
    SPARKD_RETURN_IF_ERROR(bytes(raw, sizeof(T), what));
    std::memcpy(&value, raw, sizeof(T));  // GGUF is little-endian, as every host we run on
    return Status::ok();
  }

  Status string(std::string& value, const std::string& what) {
    uint64_t length = 0;
    SPARKD_RETURN_IF_ERROR(scalar(length, what + " (its length)"));
    if (length > remaining()) {
      return data_loss(path_, "truncated: " + what + " says it is " + std::to_string(length) +
                                  " bytes at offset " + std::to_string(offset_) +
                                  " but the file ends at " + std::to_string(source_.size_bytes()));
    }
    value.resize(static_cast<size_t>(length));
    return bytes(value.data(), length, what);
  }

 private:
  GgufByteSource& source_;
  const std::string& path_;
  uint64_t offset_ = 0;
};

// Bytes a scalar of `type` takes (0 for strings and arrays, whose size varies).
uint64_t scalar_size(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray:
      return 0;
  }
  return 0;
}

bool is_known_type(uint32_t type) {
  return type <= static_cast<uint32_t>(GgufValueType::kFloat64);
}

// A scalar's bytes as the value's integer or number.
void decode_scalar(GgufValueType type, const uint8_t* raw, int64_t& integer, double& number) {
  auto load = [raw](auto value) {
    std::memcpy(&value, raw, sizeof value);
    return value;
  };
  switch (type) {
    case GgufValueType::kUint8:
      integer = load(uint8_t{});
      break;
    case GgufValueType::kInt8:
      integer = load(int8_t{});
      break;
    case GgufValueType::kBool:
      integer = load(uint8_t{}) != 0;
      break;
    case GgufValueType::kUint16:
      integer = load(uint16_t{});
      break;
    case GgufValueType::kInt16:
      integer = load(int16_t{});
      break;
    case GgufValueType::kUint32:
      integer = load(uint32_t{});
      break;
    case GgufValueType::kInt32:
      integer = load(int32_t{});
      break;
    case GgufValueType::kUint64:
      integer = static_cast<int64_t>(load(uint64_t{}));
      break;
    case GgufValueType::kInt64:
      integer = load(int64_t{});
      break;
    case GgufValueType::kFloat32:
      number = load(float{});
      break;
    case GgufValueType::kFloat64:
      number = load(double{});
      break;
    case GgufValueType::kString:
    case GgufValueType::kArray:
      break;
  }
}

Status read_value(HeaderReader& reader, const std::string& path, const std::string& key,
                  GgufValue& value) {
  uint32_t type = 0;
  SPARKD_RETURN_IF_ERROR(reader.scalar(type, "the type of key " + in_quotes(key)));
  if (!is_known_type(type)) {
    return data_loss(path,
                     "key " + in_quotes(key) + " has unknown value type " + std::to_string(type));
  }
  value.type = static_cast<GgufValueType>(type);
  const std::string what = "the value of key " + in_quotes(key);
  if (value.type == GgufValueType::kString) return reader.string(value.text, what);
  if (value.type != GgufValueType::kArray) {
    uint8_t raw[8];
    SPARKD_RETURN_IF_ERROR(reader.bytes(raw, scalar_size(value.type), what));
    decode_scalar(value.type, raw, value.integer, value.number);
    return Status::ok();
  }

  uint32_t element = 0;
  uint64_t count = 0;
  SPARKD_RETURN_IF_ERROR(reader.scalar(element, "the element type of array " + in_quotes(key)));
  if (!is_known_type(element)) {
    return data_loss(
        path, "array " + in_quotes(key) + " has unknown element type " + std::to_string(element));
  }
  value.element_type = static_cast<GgufValueType>(element);
  if (value.element_type == GgufValueType::kArray) {
    return Status(StatusCode::kUnimplemented,
                  path + ": key " + in_quotes(key) + " is an array of arrays, which no model uses");
  }
  SPARKD_RETURN_IF_ERROR(reader.scalar(count, "the length of array " + in_quotes(key)));
  // Every element takes at least one byte (a string at least its 8-byte length): a count
  // the rest of the file cannot hold is damage, caught before anything is allocated for it.
  const uint64_t least =
      value.element_type == GgufValueType::kString ? 8 : scalar_size(value.element_type);
  if (count > reader.remaining() / least) {
    return data_loss(path, "truncated: array " + in_quotes(key) + " says it has " +
                               std::to_string(count) + " elements of at least " +
                               std::to_string(least) + " bytes, but only " +
                               std::to_string(reader.remaining()) + " bytes follow");
  }
  const size_t n = static_cast<size_t>(count);
  if (value.element_type == GgufValueType::kString) {
    value.texts.resize(n);
    for (size_t i = 0; i < n; ++i) {
      SPARKD_RETURN_IF_ERROR(
          reader.string(value.texts[i], "element " + std::to_string(i) + " of " + in_quotes(key)));
    }
    return Status::ok();
  }
  const uint64_t size = scalar_size(value.element_type);
  std::vector<uint8_t> raw(static_cast<size_t>(count * size));
  SPARKD_RETURN_IF_ERROR(reader.bytes(raw.data(), raw.size(), "array " + in_quotes(key)));
  const bool floats = value.element_type == GgufValueType::kFloat32 ||
                      value.element_type == GgufValueType::kFloat64;
  (floats ? value.numbers.resize(n) : value.integers.resize(n));
  for (size_t i = 0; i < n; ++i) {
    int64_t integer = 0;
    double number = 0;
    decode_scalar(value.element_type, raw.data() + i * size, integer, number);
    if (floats) {
      value.numbers[i] = number;
    } else {
      value.integers[i] = integer;
    }
  }
  return Status::ok();
}

// The overflow-checked product of `dims`, or nullopt.
std::optional<int64_t> element_count(const std::vector<int64_t>& dims) {
  int64_t count = 1;
  for (int64_t dim : dims) {
    if (dim <= 0 || count > std::numeric_limits<int64_t>::max() / dim) return std::nullopt;
    count *= dim;
  }
  return count;
}

Status read_tensor_info(HeaderReader& reader, const std::string& path, size_t index,
                        GgufTensorInfo& info, uint64_t& relative_offset) {
  const std::string which = "tensor " + std::to_string(index);
  SPARKD_RETURN_IF_ERROR(reader.string(info.name, "the name of " + which));
  if (info.name.empty() || info.name.size() > kMaxNameBytes) {
    return data_loss(path, which + " has a name of " + std::to_string(info.name.size()) + " bytes");
  }
  const std::string tensor = "tensor " + in_quotes(info.name);
  uint32_t rank = 0;
  SPARKD_RETURN_IF_ERROR(reader.scalar(rank, "the rank of " + tensor));
  if (rank == 0 || rank > kMaxRank) {
    return data_loss(path, tensor + " has rank " + std::to_string(rank) + " (1 to " +
                               std::to_string(kMaxRank) + " allowed)");
  }
  std::vector<int64_t> innermost_first(rank);
  for (uint32_t d = 0; d < rank; ++d) {
    uint64_t dim = 0;
    SPARKD_RETURN_IF_ERROR(reader.scalar(dim, "the dimensions of " + tensor));
    if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return data_loss(
          path, tensor + " has dimension " + std::to_string(d) + " of " + std::to_string(dim));
    }
    innermost_first[d] = static_cast<int64_t>(dim);
  }
  info.shape.assign(innermost_first.rbegin(), innermost_first.rend());
  uint32_t ggml_type = 0;
  SPARKD_RETURN_IF_ERROR(reader.scalar(ggml_type, "the type of " + tensor));
  SPARKD_RETURN_IF_ERROR(reader.scalar(relative_offset, "the offset of " + tensor));

  const std::optional<DType> dtype = dtype_of_ggml_type(ggml_type);
  if (!dtype) {
    return Status(StatusCode::kUnimplemented,
                  path + ": " + tensor + " has type " + ggml_type_name(ggml_type) + " (" +
                      std::to_string(ggml_type) +
                      "), which sparkd does not run; supported: " + supported_ggml_types());
  }
  info.dtype = *dtype;
  const std::optional<int64_t> numel = element_count(info.shape);
  const DTypeTraits traits = dtype_traits(info.dtype);
  if (!numel ||
      *numel / traits.block_elements > std::numeric_limits<int64_t>::max() / traits.block_bytes) {
    return data_loss(path, tensor + " of shape " + shape_string(info.shape) + " is too large");
  }
  if (info.shape.back() % traits.block_elements != 0) {
    return data_loss(path, tensor + " has rows of " + std::to_string(info.shape.back()) +
                               " values, not a multiple of " + dtype_name(info.dtype) +
                               "'s block of " + std::to_string(traits.block_elements));
  }
  info.size_bytes = static_cast<uint64_t>(*numel / traits.block_elements) * traits.block_bytes;
  return Status::ok();
}

// Tensors are in the data section, aligned, within the file and not overlapping.
Status check_tensor_placement(GgufFile& file, const std::vector<uint64_t>& relative_offsets) {
  const std::string& path = file.path;
  std::vector<size_t> by_offset(file.tensors.size());
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    GgufTensorInfo& info = file.tensors[i];
    by_offset[i] = i;
    const uint64_t relative = relative_offsets[i];
    const std::string tensor = "tensor " + in_quotes(info.name);
    if (relative % file.alignment != 0) {
      return data_loss(path, tensor + " starts at data offset " + std::to_string(relative) +
                                 ", not a multiple of the alignment " +
                                 std::to_string(file.alignment));
    }
    const uint64_t data_bytes = file.file_size_bytes - file.data_offset;
    if (relative > data_bytes || info.size_bytes > data_bytes - relative) {
      return data_loss(path, tensor + " needs bytes [" +
                                 std::to_string(file.data_offset + relative) + ", " +
                                 std::to_string(file.data_offset + relative + info.size_bytes) +
                                 ") but the file ends at " + std::to_string(file.file_size_bytes));
    }
    info.file_offset = file.data_offset + relative;
  }
  std::sort(by_offset.begin(), by_offset.end(), [&](size_t a, size_t b) {
    return file.tensors[a].file_offset < file.tensors[b].file_offset;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& before = file.tensors[by_offset[i - 1]];
    const GgufTensorInfo& after = file.tensors[by_offset[i]];
    if (before.file_offset + before.size_bytes > after.file_offset) {
      return data_loss(path, "tensor " + in_quotes(before.name) + " (bytes [" +
                                 std::to_string(before.file_offset) + ", " +
                                 std::to_string(before.file_offset + before.size_bytes) +
                                 ")) overlaps tensor " + in_quotes(after.name) + " (from byte " +
                                 std::to_string(after.file_offset) + ")");
    }
  }
  return Status::ok();
}

class MemorySource final : public GgufByteSource {
 public:
  explicit MemorySource(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  uint64_t size_bytes() const override { return bytes_.size(); }
  Status read(uint64_t offset, void* dst, size_t count) override {
    std::memcpy(dst, bytes_.data() + offset, count);
    return Status::ok();
  }

 private:
  std::span<const uint8_t> bytes_;
};

// A file read through a window of kWindowBytes: the header's many small reads become a few
// large preads.
class FileSource final : public GgufByteSource {
 public:
  FileSource(FileDescriptor fd, uint64_t size, std::string path)
      : fd_(std::move(fd)), size_(size), path_(std::move(path)) {}
  uint64_t size_bytes() const override { return size_; }
  Status read(uint64_t offset, void* dst, size_t count) override {
    auto* out = static_cast<uint8_t*>(dst);
    while (count > 0) {
      if (offset < window_begin_ || offset >= window_begin_ + window_.size()) {
        SPARKD_RETURN_IF_ERROR(fill(offset));
      }
      const size_t take =
          std::min<size_t>(count, static_cast<size_t>(window_begin_ + window_.size() - offset));
      std::memcpy(out, window_.data() + (offset - window_begin_), take);
      out += take;
      offset += take;
      count -= take;
    }
    return Status::ok();
  }

 private:
  static constexpr size_t kWindowBytes = 1 << 20;

  Status fill(uint64_t offset) {
    window_.resize(static_cast<size_t>(std::min<uint64_t>(kWindowBytes, size_ - offset)));
    size_t done = 0;
    while (done < window_.size()) {
      const ssize_t got = ::pread(fd_.get(), window_.data() + done, window_.size() - done,
                                  static_cast<off_t>(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        window_.clear();
        return data_loss(path_, "read failed at byte " + std::to_string(offset + done) + ": " +
                                    (got < 0 ? std::strerror(errno) : "the file got shorter"));
      }
      done += static_cast<size_t>(got);
    }
    window_begin_ = offset;
    return Status::ok();
  }

  FileDescriptor fd_;
  uint64_t size_;
  std::string path_;
  std::vector<uint8_t> window_;
  uint64_t window_begin_ = 0;
};

// "-00001-of-00003.gguf" at the end of a split part's name.
const std::regex& split_part_pattern() {
  static const std::regex pattern(R"(^(.*)-([0-9]{5})-of-([0-9]{5})\.gguf$)");
  return pattern;
}

std::string split_part_path(const std::string& prefix, int part, int count) {
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "-%05d-of-%05d.gguf", part, count);
  return prefix + suffix;
}

Expected<GgufFile> read_gguf_file(const std::string& path) {
  auto file = open_regular_file(path);
  if (!file) return file.status();
  const uint64_t size = file->size_bytes;
  FileSource source(std::move(file->fd), size, path);
  return parse_gguf(source, path);
}

}  // namespace

const char* gguf_value_type_name(GgufValueType type) {
  static constexpr std::array<const char*, 13> kNames = {
      "uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
      "bool",  "string", "array",  "uint64", "int64",  "float64"};
  const auto index = static_cast<size_t>(type);
  return index < kNames.size() ? kNames[index] : "?";
}

bool GgufValue::is_integer() const {
  return type != GgufValueType::kArray && type != GgufValueType::kString &&
         type != GgufValueType::kFloat32 && type != GgufValueType::kFloat64;
}

bool GgufValue::is_number() const {
  return is_integer() || type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64;
}

size_t GgufValue::array_size() const {
  return integers.size() + numbers.size() + texts.size();
}

const GgufValue* GgufMetadata::find(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

Status GgufMetadata::wrong_type(const std::string& key, const char* wanted) const {
  const GgufValue& value = values_.at(key);
  std::string found = gguf_value_type_name(value.type);
  if (value.type == GgufValueType::kArray) {
    found += std::string(" of ") + gguf_value_type_name(value.element_type);
  }
  return Status(StatusCode::kDataLoss,
                source_ + ": metadata key " + in_quotes(key) + " is " + found + ", not " + wanted);
}

Expected<std::optional<int64_t>> GgufMetadata::optional_integer(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return std::optional<int64_t>();
  if (!value->is_integer()) return wrong_type(key, "an integer");
  return std::optional<int64_t>(value->integer);
}

Expected<std::optional<double>> GgufMetadata::optional_number(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return std::optional<double>();
  if (!value->is_number()) return wrong_type(key, "a number");
  return std::optional<double>(value->is_integer() ? static_cast<double>(value->integer)
                                                   : value->number);
}

Expected<std::optional<std::string>> GgufMetadata::optional_string(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return std::optional<std::string>();
  if (value->type != GgufValueType::kString) return wrong_type(key, "a string");
  return std::optional<std::string>(value->text);
}

Expected<std::optional<bool>> GgufMetadata::optional_bool(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return std::optional<bool>();
  if (!value->is_integer()) return wrong_type(key, "a bool");
  return std::optional<bool>(value->integer != 0);
}

Expected<int64_t> GgufMetadata::integer(const std::string& key) const {
  SPARKD_ASSIGN_OR_RETURN(auto value, optional_integer(key));
  if (!value) {
    return Status(StatusCode::kDataLoss,
                  source_ + ": metadata key " + in_quotes(key) + " is missing");
  }
  return *value;
}

Expected<std::string> GgufMetadata::string(const std::string& key) const {
  SPARKD_ASSIGN_OR_RETURN(auto value, optional_string(key));
  if (!value) {
    return Status(StatusCode::kDataLoss,
                  source_ + ": metadata key " + in_quotes(key) + " is missing");
  }
  return *value;
}

Expected<const std::vector<std::string>*> GgufMetadata::string_array(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return static_cast<const std::vector<std::string>*>(nullptr);
  if (!value->is_array_of(GgufValueType::kString)) return wrong_type(key, "an array of strings");
  return &value->texts;
}

Expected<const std::vector<int64_t>*> GgufMetadata::integer_array(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return static_cast<const std::vector<int64_t>*>(nullptr);
  if (value->type != GgufValueType::kArray || value->element_type == GgufValueType::kString ||
      value->element_type == GgufValueType::kFloat32 ||
      value->element_type == GgufValueType::kFloat64) {
    return wrong_type(key, "an array of integers");
  }
  return &value->integers;
}

Expected<const std::vector<double>*> GgufMetadata::number_array(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return static_cast<const std::vector<double>*>(nullptr);
  if (!value->is_array_of(GgufValueType::kFloat32) &&
      !value->is_array_of(GgufValueType::kFloat64)) {
    return wrong_type(key, "an array of floats");
  }
  return &value->numbers;
}

const char* ggml_type_name(uint32_t ggml_type) {
  static constexpr std::array<const char*, 42> kNames = {
      "F32",   "F16",        "Q4_0",       "Q4_1",       "Q4_2",     "Q4_3",     "Q5_0",
      "Q5_1",  "Q8_0",       "Q8_1",       "Q2_K",       "Q3_K",     "Q4_K",     "Q5_K",
      "Q6_K",  "Q8_K",       "IQ2_XXS",    "IQ2_XS",     "IQ3_XXS",  "IQ1_S",    "IQ4_NL",
      "IQ3_S", "IQ2_S",      "IQ4_XS",     "I8",         "I16",      "I32",      "I64",
      "F64",   "IQ1_M",      "BF16",       "Q4_0_4_4",   "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",
      "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",    "NVFP4",    "Q1_0"};
  return ggml_type < kNames.size() ? kNames[ggml_type] : "unknown";
}

std::optional<DType> dtype_of_ggml_type(uint32_t ggml_type) {
  switch (ggml_type) {
    case 0:
      return DType::kF32;
    case 1:
      return DType::kF16;
    case 2:
      return DType::kQ4_0;
    case 3:
      return DType::kQ4_1;
    case 6:
      return DType::kQ5_0;
    case 7:
      return DType::kQ5_1;
    case 8:
      return DType::kQ8_0;
    case 10:
      return DType::kQ2_K;
    case 11:
      return DType::kQ3_K;
    case 12:
      return DType::kQ4_K;
    case 13:
      return DType::kQ5_K;
    case 14:
      return DType::kQ6_K;
    case 30:
      return DType::kBF16;
    case 39:
      return DType::kMXFP4;
    default:
      return std::nullopt;
  }
}

std::string supported_ggml_types() {
  std::string names;
  for (int i = 0; i < kDTypeCount; ++i) {
    if (!names.empty()) names += ", ";
    names += dtype_name(static_cast<DType>(i));
  }
  return names;
}

Expected<GgufFile> parse_gguf(GgufByteSource& source, const std::string& path) {
  GgufFile file;
  file.path = path;
  file.file_size_bytes = source.size_bytes();
  file.metadata = GgufMetadata(path);
  HeaderReader reader(source, path);

  uint32_t magic = 0;
  SPARKD_RETURN_IF_ERROR(reader.scalar(magic, "the magic number"));
  if (magic != kGgufMagic) {
    char shown[5] = {};
    std::memcpy(shown, &magic, 4);
    for (char& c : shown) {
      if (c != 0 && (c < 0x20 || c > 0x7e)) c = '?';
    }
    return data_loss(
        path, std::string("not a GGUF file: it starts with \"") + shown + "\", not \"GGUF\"");
  }
  SPARKD_RETURN_IF_ERROR(reader.scalar(file.version, "the version"));
  if (file.version != 2 && file.version != 3) {
    return Status(StatusCode::kUnimplemented, path + ": GGUF version " +
                                                  std::to_string(file.version) +
                                                  " (sparkd reads versions 2 and 3)");
  }
  uint64_t tensor_count = 0, metadata_count = 0;
  SPARKD_RETURN_IF_ERROR(reader.scalar(tensor_count, "the tensor count"));
  SPARKD_RETURN_IF_ERROR(reader.scalar(metadata_count, "the metadata count"));
  // A key-value pair takes at least 13 bytes, a tensor info at least 29.
  if (metadata_count > reader.remaining() / 13 || tensor_count > reader.remaining() / 29) {
    return data_loss(path, "truncated: the header says " + std::to_string(metadata_count) +
                               " metadata keys and " + std::to_string(tensor_count) +
                               " tensors, more than the file's " +
                               std::to_string(file.file_size_bytes) + " bytes can hold");
  }

  auto& values = file.metadata.mutable_values();
  for (uint64_t i = 0; i < metadata_count; ++i) {
    std::string key;
    SPARKD_RETURN_IF_ERROR(reader.string(key, "metadata key " + std::to_string(i)));
    if (key.empty() || key.size() > kMaxNameBytes) {
      return data_loss(path, "metadata key " + std::to_string(i) + " has a name of " +
                                 std::to_string(key.size()) + " bytes");
    }
    GgufValue value;
    SPARKD_RETURN_IF_ERROR(read_value(reader, path, key, value));
    if (!values.emplace(key, std::move(value)).second) {
      return data_loss(path, "metadata key " + in_quotes(key) + " appears twice");
    }
  }
  SPARKD_ASSIGN_OR_RETURN(auto alignment, file.metadata.optional_integer("general.alignment"));
  if (alignment) {
    if (*alignment <= 0 || *alignment > (1 << 30) || (*alignment & (*alignment - 1)) != 0) {
      return data_loss(
          path, "general.alignment is " + std::to_string(*alignment) + ", not a power of two");
    }
    file.alignment = static_cast<uint64_t>(*alignment);
  }

  file.tensors.resize(static_cast<size_t>(tensor_count));
  std::vector<uint64_t> relative_offsets(file.tensors.size());
  std::map<std::string_view, size_t> seen;
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    SPARKD_RETURN_IF_ERROR(read_tensor_info(reader, path, i, file.tensors[i], relative_offsets[i]));
  }
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    if (!seen.emplace(file.tensors[i].name, i).second) {
      return data_loss(path, "tensor " + in_quotes(file.tensors[i].name) + " appears twice");
    }
  }
  const uint64_t header_end = reader.offset();
  file.data_offset = (header_end + file.alignment - 1) / file.alignment * file.alignment;
  if (file.data_offset > file.file_size_bytes) {
    if (!file.tensors.empty()) {
      return data_loss(path, "truncated: the data section would start at byte " +
                                 std::to_string(file.data_offset) + " but the file ends at " +
                                 std::to_string(file.file_size_bytes));
    }
    file.data_offset = file.file_size_bytes;
  }
  SPARKD_RETURN_IF_ERROR(check_tensor_placement(file, relative_offsets));
  return file;
}

Expected<GgufFile> parse_gguf_bytes(std::span<const uint8_t> bytes, const std::string& path) {
  MemorySource source(bytes);
  return parse_gguf(source, path);
}

std::map<std::string, const GgufTensorInfo*> GgufModel::tensors() const {
  std::map<std::string, const GgufTensorInfo*> all;
  for (const GgufFile& part : parts) {
    for (const GgufTensorInfo& info : part.tensors) all.emplace(info.name, &info);
  }
  return all;
}

uint64_t GgufModel::file_bytes() const {
  uint64_t total = 0;
  for (const GgufFile& part : parts) total += part.file_size_bytes;
  return total;
}

bool is_gguf_path(std::string_view path) {
  return path.size() > 5 && path.substr(path.size() - 5) == ".gguf";
}

Expected<GgufModel> read_gguf_model(const std::string& path) {
  GgufModel model;
  std::smatch match;
  const std::string name = std::filesystem::path(path).filename().string();
  if (!std::regex_match(name, match, split_part_pattern())) {
    SPARKD_ASSIGN_OR_RETURN(auto file, read_gguf_file(path));
    if (file.metadata.contains("split.count")) {
      SPARKD_ASSIGN_OR_RETURN(int64_t count, file.metadata.integer("split.count"));
      if (count > 1) {
        return Status(StatusCode::kFailedPrecondition,
                      path + " is part of a split model of " + std::to_string(count) +
                          " parts, but its name does not end in " +
                          split_part_path("", 1, static_cast<int>(count)) +
                          " as gguf-split names the parts");
      }
    }
    model.parts.push_back(std::move(file));
    return model;
  }

  const int count = std::stoi(match[3].str());
  const std::string prefix = (std::filesystem::path(path).parent_path() / match[1].str()).string();
  if (count < 1) return data_loss(path, "a split set of 0 parts");
  uint64_t tensors = 0;
  std::map<std::string, std::string> owners;  // tensor name -> part path
  for (int part = 1; part <= count; ++part) {
    const std::string part_path = split_part_path(prefix, part, count);
    auto file = read_gguf_file(part_path);
    if (!file) {
      if (file.status().code() == StatusCode::kNotFound) {
        return Status(StatusCode::kNotFound,
                      "split model " + path + ": part " + std::to_string(part) + " of " +
                          std::to_string(count) + " is missing (" + part_path + ")");
      }
      return file.status();
    }
    SPARKD_ASSIGN_OR_RETURN(auto number, file->metadata.optional_integer("split.no"));
    SPARKD_ASSIGN_OR_RETURN(auto parts, file->metadata.optional_integer("split.count"));
    if (!number || !parts || *number != part - 1 || *parts != count) {
      return data_loss(part_path, "its split.no / split.count (" +
                                      (number ? std::to_string(*number) : "absent") + " / " +
                                      (parts ? std::to_string(*parts) : "absent") +
                                      ") do not say part " + std::to_string(part - 1) + " of " +
                                      std::to_string(count));
    }
    for (GgufTensorInfo& info : file->tensors) {
      info.part = static_cast<uint32_t>(part - 1);
      auto [it, added] = owners.emplace(info.name, part_path);
      if (!added) {
        return data_loss(part_path, "tensor " + in_quotes(info.name) + " is also in " + it->second);
      }
    }
    tensors += file->tensors.size();
    model.parts.push_back(std::move(*file));
  }
  SPARKD_ASSIGN_OR_RETURN(auto expected, model.metadata().optional_integer("split.tensors.count"));
  if (expected && static_cast<uint64_t>(*expected) != tensors) {
    return data_loss(model.parts.front().path, "split.tensors.count says " +
                                                   std::to_string(*expected) +
                                                   " tensors, but the " + std::to_string(count) +
                                                   " parts hold " + std::to_string(tensors));
  }
  return model;
}

}  // namespace sparkd::model
