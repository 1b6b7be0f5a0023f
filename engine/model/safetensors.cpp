// safetensors headers: parsing, validation and the model directory's file list.
//
// Everything a file claims is checked against the file's real size before any tensor data
// is read, with 64-bit overflow checks on every product and sum: the header is untrusted
// input (the fuzz target feeds it arbitrary bytes).

#include "engine/model/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>
#include <utility>

#include "common/quoted.h"
#include "engine/model/posix_file.h"
#include "engine/model/untrusted_json.h"

namespace sparkd::model {

namespace {

using nlohmann::json;

// More dimensions than any weight has; bounds the work a hostile shape can ask for.
constexpr size_t kMaxTensorRank = 8;
// model.safetensors.index.json lists one line per tensor: a few MiB for the largest models.
constexpr uint64_t kMaxIndexBytes = 64ull << 20;

Status data_loss(std::string_view path, std::string_view message) {
  return Status(StatusCode::kDataLoss, std::string(path) + ": " + std::string(message));
}

std::string in_quotes(std::string_view text) {
  return quoted(text, '\'');
}

uint64_t read_u64_le(const uint8_t* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = value << 8 | bytes[i];
  return value;
}

// Every dtype the safetensors format defines: the ones sparkd computes with map to a DType;
// the others are recognised so a file using them gets "unsupported", not "unknown".
struct DtypeEntry {
  std::string_view name;
  uint32_t bits;
  bool supported;
  DType dtype;
  bool integer;
};

constexpr DtypeEntry kDtypes[] = {
    {"F32", 32, true, DType::kF32, false},     {"F16", 16, true, DType::kF16, false},
    {"BF16", 16, true, DType::kBF16, false},   {"F64", 64, false, DType::kF32, false},
    {"C64", 64, false, DType::kF32, false},    {"F8_E4M3", 8, false, DType::kF32, false},
    {"F8_E5M2", 8, false, DType::kF32, false}, {"F8_E8M0", 8, false, DType::kF32, false},
    {"F6_E2M3", 6, false, DType::kF32, false}, {"F6_E3M2", 6, false, DType::kF32, false},
    {"F4", 4, false, DType::kF32, false},      {"I64", 64, false, DType::kF32, true},
    {"U64", 64, false, DType::kF32, true},     {"I32", 32, false, DType::kF32, true},
    {"U32", 32, false, DType::kF32, true},     {"I16", 16, false, DType::kF32, true},
    {"U16", 16, false, DType::kF32, true},     {"I8", 8, false, DType::kF32, true},
    {"U8", 8, false, DType::kF32, true},       {"BOOL", 8, false, DType::kF32, true},
};

const DtypeEntry* find_dtype(std::string_view name) {
  for (const DtypeEntry& entry : kDtypes) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

// Integer buffers transformers < 4.31 saved as persistent state; never weights.
bool is_ignorable_buffer(std::string_view name, const DtypeEntry& dtype) {
  if (!dtype.integer) return false;
  const size_t dot = name.rfind('.');
  const std::string_view leaf = dot == std::string_view::npos ? name : name.substr(dot + 1);
  return leaf == "position_ids" || leaf == "token_type_ids";
}

// Half of a packed quantized weight (SafetensorsByteTensor).
bool is_packed_weight_part(std::string_view name, const DtypeEntry& dtype) {
  const auto ends_with = [&](std::string_view tail) {
    return name.size() > tail.size() && name.substr(name.size() - tail.size()) == tail;
  };
  return dtype.name == "U8" && (ends_with("_blocks") || ends_with("_scales"));
}

// A validated entry, before the unsupported-dtype and overlap checks.
struct ParsedEntry {
  std::string name;
  const DtypeEntry* dtype = nullptr;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // relative to the data area
  uint64_t end = 0;
};

// Parses one tensor entry; the error names the tensor.
Expected<ParsedEntry> parse_entry(const std::string& name, const json& entry,
                                  uint64_t data_size_bytes, std::string_view path) {
  const std::string who = "tensor " + in_quotes(name);
  if (!entry.is_object()) {
    return data_loss(path, who + ": entry must be an object {dtype, shape, data_offsets}, got " +
                               describe_untrusted_json(entry));
  }
  ParsedEntry out;
  out.name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) return data_loss(path, who + ": missing \"dtype\"");
  if (!dtype_it->is_string()) {
    return data_loss(
        path, who + ": \"dtype\" must be a string, got " + describe_untrusted_json(*dtype_it));
  }
  const std::string& dtype_name_text = dtype_it->get_ref<const std::string&>();
  out.dtype = find_dtype(dtype_name_text);
  if (out.dtype == nullptr) {
    return data_loss(path, who + ": unknown dtype " + describe_untrusted_json(*dtype_it) +
                               " (supported: F32, F16, BF16)");
  }

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) return data_loss(path, who + ": missing \"shape\"");
  if (!shape_it->is_array()) {
    return data_loss(path, who + ": \"shape\" must be an array of dimensions, got " +
                               describe_untrusted_json(*shape_it));
  }
  if (shape_it->size() > kMaxTensorRank) {
    return data_loss(path, who + ": shape has " + std::to_string(shape_it->size()) +
                               " dimensions; at most " + std::to_string(kMaxTensorRank) +
                               " are supported");
  }
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& dim : *shape_it) {
    if (!dim.is_number_integer()) {
      return data_loss(path, who + ": shape dimension " + describe_untrusted_json(dim) +
                                 " is not an integer (dimensions are non-negative integers)");
    }
    if (!dim.is_number_unsigned()) {
      return data_loss(
          path, who + ": shape has a negative dimension " + std::to_string(dim.get<int64_t>()));
    }
    const uint64_t value = dim.get<uint64_t>();
    if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return data_loss(path, who + ": shape dimension " + std::to_string(value) +
                                 " does not fit in a signed 64-bit integer");
    }
    out.shape.push_back(static_cast<int64_t>(value));
    overflow = overflow || __builtin_mul_overflow(numel, value, &numel);
  }
  uint64_t size_bits = 0;
  if (overflow || __builtin_mul_overflow(numel, uint64_t{out.dtype->bits}, &size_bits)) {
    return data_loss(path, who + ": shape " + shape_string(out.shape) + " of " +
                               std::string(out.dtype->name) +
                               " has more bytes than a 64-bit size can hold");
  }
  if (size_bits % 8 != 0) {
    return data_loss(path, who + ": shape " + shape_string(out.shape) + " of " +
                               std::string(out.dtype->name) + " is not a whole number of bytes");
  }
  const uint64_t size_bytes = size_bits / 8;

  auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end()) return data_loss(path, who + ": missing \"data_offsets\"");
  const json& offsets = *offsets_it;
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    std::string got = describe_untrusted_json(offsets);
    if (offsets.is_array() && offsets.size() == 2) {
      got = "[" + describe_untrusted_json(offsets[0]) + ", " + describe_untrusted_json(offsets[1]) +
            "]";
    }
    return data_loss(path, who + ": \"data_offsets\" must be [begin, end], two non-negative " +
                               "integers, got " + got);
  }
  out.begin = offsets[0].get<uint64_t>();
  out.end = offsets[1].get<uint64_t>();
  const std::string span_text =
      "[" + std::to_string(out.begin) + ", " + std::to_string(out.end) + "]";
  if (out.begin > out.end) {
    return data_loss(path, who + ": data_offsets " + span_text + " begin after they end");
  }
  if (out.end - out.begin != size_bytes) {
    return data_loss(path, who + ": shape " + shape_string(out.shape) + " of " +
                               std::string(out.dtype->name) + " needs " +
                               std::to_string(size_bytes) + " bytes but data_offsets " + span_text +
                               " span " + std::to_string(out.end - out.begin));
  }
  if (out.end > data_size_bytes) {
    return data_loss(path, "truncated file: " + who + " ends at byte " + std::to_string(out.end) +
                               " of the data area but the file holds only " +
                               std::to_string(data_size_bytes) + " bytes of data");
  }
  return out;
}

// Reads up to `size` bytes at `offset`; fewer only at the end of the file.
Expected<size_t> read_at(int fd, uint8_t* dst, size_t size, uint64_t offset,
                         const std::string& path) {
  size_t done = 0;
  while (done < size) {
    const ssize_t got = ::pread(fd, dst + done, size - done, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return data_loss(path, "read failed at byte " + std::to_string(offset + done) + ": " +
                                 std::strerror(errno));
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

Expected<std::string> read_small_file(const std::string& path, uint64_t max_bytes) {
  auto file = open_regular_file(path);
  if (!file) return file.status();
  const uint64_t size = file->size_bytes;
  if (size > max_bytes) {
    return data_loss(path, "file is " + std::to_string(size) + " bytes, more than the " +
                               std::to_string(max_bytes) + "-byte limit for this file");
  }
  std::string text(size, '\0');
  auto got = read_at(file->fd.get(), reinterpret_cast<uint8_t*>(text.data()), text.size(), 0, path);
  if (!got) return got.status();
  text.resize(*got);
  return text;
}

// A shard file name from the index: a plain name in the model directory, never a path.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

}  // namespace

Expected<SafetensorsHeader> parse_safetensors_header(std::span<const uint8_t> prefix,
                                                     uint64_t file_size_bytes,
                                                     std::string_view path) {
  if (file_size_bytes < 8) {
    return data_loss(path, "file is " + std::to_string(file_size_bytes) +
                               " bytes, shorter than the 8-byte header length every "
                               "safetensors file starts with (truncated, or not safetensors)");
  }
  if (prefix.size() < 8) {
    return data_loss(path, "only " + std::to_string(prefix.size()) +
                               " bytes could be read, fewer than the 8-byte header length");
  }
  const uint64_t header_bytes = read_u64_le(prefix.data());
  if (header_bytes > file_size_bytes - 8) {
    return data_loss(path, "header length " + std::to_string(header_bytes) +
                               " bytes runs past the end of the file (" +
                               std::to_string(file_size_bytes) +
                               " bytes): the file is truncated or not a safetensors file");
  }
  if (header_bytes > kMaxSafetensorsHeaderBytes) {
    return data_loss(path, "header length " + std::to_string(header_bytes) +
                               " bytes exceeds the limit of " +
                               std::to_string(kMaxSafetensorsHeaderBytes) +
                               " bytes: not a safetensors file, or a damaged one");
  }
  if (prefix.size() - 8 < header_bytes) {
    return data_loss(path, "header is " + std::to_string(header_bytes) + " bytes but only " +
                               std::to_string(prefix.size() - 8) + " could be read");
  }

  SafetensorsHeader header;
  header.path = std::string(path);
  header.file_size_bytes = file_size_bytes;
  header.data_offset = 8 + header_bytes;
  const uint64_t data_size_bytes = file_size_bytes - header.data_offset;

  json root;
  try {
    const char* text = reinterpret_cast<const char*>(prefix.data() + 8);
    root = json::parse(text, text + header_bytes);
  } catch (const json::exception& error) {
    return data_loss(path, "header is not valid JSON (" + json_error_text(error) +
                               "): the file is damaged or not a safetensors file");
  }
  if (!root.is_object()) {
    return data_loss(
        path, "header must be a JSON object of tensors, got " + describe_untrusted_json(root));
  }

  std::vector<ParsedEntry> entries;
  entries.reserve(root.size());
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) {
        return data_loss(path, "\"__metadata__\" must be an object of strings, got " +
                                   describe_untrusted_json(*it));
      }
      for (auto meta = it->begin(); meta != it->end(); ++meta) {
        if (!meta->is_string()) {
          return data_loss(path, "\"__metadata__\" entry " + in_quotes(meta.key()) +
                                     " must be a string, got " + describe_untrusted_json(*meta));
        }
        header.metadata[meta.key()] = meta->get<std::string>();
      }
      continue;
    }
    auto entry = parse_entry(it.key(), *it, data_size_bytes, path);
    if (!entry) return entry.status();
    entries.push_back(std::move(*entry));
  }

  // Overlaps, in offset order: each non-empty tensor must start at or after the furthest
  // end seen so far. Empty tensors own no bytes and cannot overlap anything.
  std::vector<const ParsedEntry*> by_offset;
  by_offset.reserve(entries.size());
  for (const ParsedEntry& entry : entries) by_offset.push_back(&entry);
  std::sort(by_offset.begin(), by_offset.end(), [](const ParsedEntry* a, const ParsedEntry* b) {
    return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
  });
  const ParsedEntry* furthest = nullptr;
  for (const ParsedEntry* entry : by_offset) {
    if (entry->begin == entry->end) continue;
    if (furthest != nullptr && entry->begin < furthest->end) {
      auto span = [](const ParsedEntry* e) {
        std::string text = "[";  // appended: see common/quoted.h
        text += std::to_string(e->begin);
        text += ", ";
        text += std::to_string(e->end);
        text += ')';
        return text;
      };
      return data_loss(path, "tensors " + in_quotes(furthest->name) + " and " +
                                 in_quotes(entry->name) + " overlap: " + in_quotes(furthest->name) +
                                 " spans bytes " + span(furthest) + " of the data area and " +
                                 in_quotes(entry->name) + " spans " + span(entry));
    }
    if (furthest == nullptr || entry->end > furthest->end) furthest = entry;
  }

  for (const ParsedEntry* entry : by_offset) {
    if (entry->dtype->supported) {
      SafetensorsTensorInfo info;
      info.name = entry->name;
      info.dtype = entry->dtype->dtype;
      info.shape = entry->shape;
      info.file_offset = header.data_offset + entry->begin;
      info.size_bytes = entry->end - entry->begin;
      header.tensors.push_back(std::move(info));
    } else if (is_ignorable_buffer(entry->name, *entry->dtype)) {
      header.ignored_tensors.push_back(entry->name);
    } else if (is_packed_weight_part(entry->name, *entry->dtype)) {
      header.byte_tensors.push_back({entry->name, entry->shape, header.data_offset + entry->begin,
                                     entry->end - entry->begin});
    } else {
      return Status(StatusCode::kUnimplemented,
                    std::string(path) + ": tensor " + in_quotes(entry->name) +
                        ": unsupported dtype " + std::string(entry->dtype->name) +
                        " (sparkd runs F32, F16 and BF16 weights; quantized or integer "
                        "checkpoints are not supported)");
    }
  }
  std::sort(header.ignored_tensors.begin(), header.ignored_tensors.end());
  return header;
}

Expected<SafetensorsHeader> read_safetensors_header(const std::string& path) {
  auto file = open_regular_file(path);
  if (!file) return file.status();
  const int fd = file->fd.get();
  const uint64_t file_size_bytes = file->size_bytes;

  std::vector<uint8_t> prefix(8);
  auto got = read_at(fd, prefix.data(), prefix.size(), 0, path);
  if (!got) return got.status();
  prefix.resize(*got);
  if (prefix.size() == 8) {
    const uint64_t header_bytes = read_u64_le(prefix.data());
    // Read the header only when it is plausible; otherwise the parser reports why not.
    if (file_size_bytes >= 8 && header_bytes <= file_size_bytes - 8 &&
        header_bytes <= kMaxSafetensorsHeaderBytes) {
      prefix.resize(8 + header_bytes);
      got = read_at(fd, prefix.data() + 8, header_bytes, 8, path);
      if (!got) return got.status();
      prefix.resize(8 + *got);
    }
  }
  return parse_safetensors_header(prefix, file_size_bytes, path);
}

Expected<std::vector<SafetensorsHeader>> read_model_safetensors(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  const fs::path single = dir / "model.safetensors";
  const fs::path index_path = dir / "model.safetensors.index.json";
  std::error_code error;

  // transformers' order: a single model.safetensors wins over an index.
  if (fs::exists(single, error)) {
    auto header = read_safetensors_header(single.string());
    if (!header) return header.status();
    std::vector<SafetensorsHeader> headers;
    headers.push_back(std::move(*header));
    return headers;
  }
  if (!fs::exists(index_path, error)) {
    if (!fs::is_directory(dir, error)) {
      return Status(StatusCode::kNotFound,
                    model_dir + ": model directory does not exist or is not a directory");
    }
    std::string message = model_dir + ": no model.safetensors or model.safetensors.index.json";
    if (fs::exists(dir / "pytorch_model.bin", error) ||
        fs::exists(dir / "pytorch_model.bin.index.json", error)) {
      message +=
          " (found pytorch_model.bin: sparkd reads safetensors only; convert the checkpoint, "
          "e.g. with transformers' save_pretrained(safe_serialization=True))";
    }
    return Status(StatusCode::kNotFound, message);
  }

  const std::string index_name = index_path.string();
  auto index_text = read_small_file(index_name, kMaxIndexBytes);
  if (!index_text) return index_text.status();
  json index;
  try {
    index = json::parse(*index_text);
  } catch (const json::exception& parse_error) {
    return data_loss(index_name, "not valid JSON (" + json_error_text(parse_error) + ")");
  }
  const json* weight_map = nullptr;
  if (index.is_object()) {
    auto it = index.find("weight_map");
    if (it != index.end()) weight_map = &*it;
  }
  if (weight_map == nullptr || !weight_map->is_object()) {
    return data_loss(index_name, "missing \"weight_map\" object (tensor name -> shard file)");
  }
  if (weight_map->empty()) return data_loss(index_name, "\"weight_map\" lists no tensors");

  // Shard name -> tensors the index places there; std::map keeps the shards in name order
  // (model-00001-of-00004, ...), which is also the order they are read in.
  std::map<std::string, std::vector<std::string>> listed;
  for (auto it = weight_map->begin(); it != weight_map->end(); ++it) {
    if (!it->is_string() || !is_plain_file_name(it->get_ref<const std::string&>())) {
      return data_loss(index_name, "\"weight_map\" entry for tensor " + in_quotes(it.key()) +
                                       " must name a shard file in the model directory, got " +
                                       describe_untrusted_json(*it));
    }
    listed[it->get<std::string>()].push_back(it.key());
  }

  std::vector<SafetensorsHeader> headers;
  std::map<std::string, std::string> shard_of;  // tensor -> the shard that holds it
  for (const auto& listed_shard : listed) {
    const std::string& shard = listed_shard.first;
    auto header = read_safetensors_header((dir / shard).string());
    if (!header) {
      const Status& status = header.status();
      return Status(status.code(), status.message() + " (a shard named by " + index_name + ")");
    }
    auto record = [&](const std::string& tensor) -> Status {
      auto [it, inserted] = shard_of.emplace(tensor, shard);
      if (!inserted) {
        return data_loss(index_name, "tensor " + in_quotes(tensor) + " is in two shards, " +
                                         in_quotes(it->second) + " and " + in_quotes(shard));
      }
      return Status::ok();
    };
    for (const SafetensorsTensorInfo& tensor : header->tensors) {
      Status status = record(tensor.name);
      if (!status.is_ok()) return status;
    }
    for (const std::string& tensor : header->ignored_tensors) {
      Status status = record(tensor);
      if (!status.is_ok()) return status;
    }
    for (const SafetensorsByteTensor& tensor : header->byte_tensors) {
      Status status = record(tensor.name);
      if (!status.is_ok()) return status;
    }
    headers.push_back(std::move(*header));
  }
  for (const auto& [shard, names] : listed) {
    for (const std::string& tensor : names) {
      auto it = shard_of.find(tensor);
      if (it == shard_of.end()) {
        return data_loss(index_name, "tensor " + in_quotes(tensor) + " is listed in shard " +
                                         in_quotes(shard) + " but no shard contains it");
      }
      if (it->second != shard) {
        return data_loss(index_name, "tensor " + in_quotes(tensor) + " is listed in shard " +
                                         in_quotes(shard) + " but it is in " +
                                         in_quotes(it->second));
      }
    }
  }
  return headers;
}

}  // namespace sparkd::model
