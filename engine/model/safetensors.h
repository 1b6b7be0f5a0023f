// safetensors: the header (a JSON table of tensors) and its validation.
//
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the data area; offsets are
// relative to the start of the data area. Every check a damaged or hostile file can fail is
// made here, before a byte of tensor data is read, and each failure names the file, the
// tensor and what was expected.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "engine/backend/tensor.h"

namespace sparkd::model {

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t file_offset = 0;  // absolute offset of the first byte in the file
  uint64_t size_bytes = 0;
};

// A U8 tensor that is half of a packed quantized weight: gpt-oss's MXFP4 experts are stored
// as "<name>_blocks" (the 4-bit codes) and "<name>_scales" (the E8M0 exponents), both U8.
struct SafetensorsByteTensor {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t file_offset = 0;
  uint64_t size_bytes = 0;
};

struct SafetensorsHeader {
  std::string path;
  uint64_t file_size_bytes = 0;
  uint64_t data_offset = 0;                    // 8 + header length
  std::vector<SafetensorsTensorInfo> tensors;  // in file order (by offset)
  // The U8 tensors named *_blocks or *_scales (see SafetensorsByteTensor), in file order; the
  // loader pairs them. Any other integer tensor is refused (or ignored, below).
  std::vector<SafetensorsByteTensor> byte_tensors;
  std::map<std::string, std::string> metadata;
  // Integer buffers older transformers versions saved with the weights (e.g.
  // "embeddings.position_ids", I64): validated like every tensor, then left out of `tensors`,
  // because no architecture reads them (transformers ignores them on load too).
  std::vector<std::string> ignored_tensors;
};

// Largest header accepted (the reference implementation's limit).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// Parses and validates a header. `prefix` holds the file's first bytes (at least the 8-byte
// length and, if it fits, the whole header); `file_size_bytes` is the size of the whole file,
// so offsets can be checked without reading the data. No file access: the fuzz target's
// entry point. Errors are DATA_LOSS (damaged file) or UNIMPLEMENTED (a dtype we don't run).
Expected<SafetensorsHeader> parse_safetensors_header(std::span<const uint8_t> prefix,
                                                     uint64_t file_size_bytes,
                                                     std::string_view path);

// Reads and validates the header of the file at `path`.
Expected<SafetensorsHeader> read_safetensors_header(const std::string& path);

// A model directory's safetensors files: model.safetensors, or the shards listed by
// model.safetensors.index.json (every tensor of its weight_map must be in the shard it names).
Expected<std::vector<SafetensorsHeader>> read_model_safetensors(const std::string& model_dir);

}  // namespace sparkd::model
