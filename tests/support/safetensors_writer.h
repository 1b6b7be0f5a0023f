// Builds safetensors files in memory, for tests that write model directories.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sparkd::testing {

// The 8-byte little-endian header length, the header text, the data area.
inline std::string safetensors_bytes(const std::string& header_text, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t length = header_text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return out + header_text + data;
}

struct TensorBytes {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string data;
};

// A well-formed file of `tensors` laid out in the order given, with "__metadata__"
// {"format": "pt"}. Each tensor's data follows a gap of `gap_bytes` unused bytes: an odd gap
// puts tensors at odd offsets, so a reader cannot rely on the file's alignment.
inline std::string safetensors_file(const std::vector<TensorBytes>& tensors, size_t gap_bytes = 0) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const TensorBytes& t : tensors) {
    data.append(gap_bytes, '~');
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.data.size()}}};
    data += t.data;
  }
  header["__metadata__"] = {{"format", "pt"}};
  return safetensors_bytes(header.dump(), data);
}

}  // namespace sparkd::testing
