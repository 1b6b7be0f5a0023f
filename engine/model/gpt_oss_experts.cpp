#include "engine/model/gpt_oss_experts.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <utility>

#include "common/quoted.h"
#include "engine/backend/half.h"
#include "engine/backend/quant_blocks.h"

namespace sparkd::model {

namespace {

constexpr std::string_view kExperts = "mlp.experts.";

bool ends_with(std::string_view text, std::string_view tail) {
  return text.size() >= tail.size() && text.substr(text.size() - tail.size()) == tail;
}

// Tensor names come from the file: quoted with their control characters escaped.
std::string in_quotes(const std::string& text) {
  return quoted(text, '\'');
}

Status bad_shape(const std::string& path, const std::string& name,
                 const std::vector<int64_t>& shape, const std::string& want) {
  return Status(StatusCode::kDataLoss, path + ": tensor " + in_quotes(name) + " has shape " +
                                           shape_string(shape) + "; gpt-oss's layout is " + want);
}

float to_f32(DType dtype, const uint8_t* values, int64_t index) {
  if (dtype == DType::kF32) {
    float value;
    std::memcpy(&value, values + 4 * index, sizeof value);
    return value;
  }
  uint16_t bits;
  std::memcpy(&bits, values + 2 * index, sizeof bits);
  return dtype == DType::kBF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
}

// gate_up [experts, hidden, 2·inter] (x @ W, gate and up interleaved) -> gate and up
// [experts, inter, hidden], element for element in the stored dtype.
void split_gate_up(size_t element_bytes, const uint8_t* gate_up, int64_t experts, int64_t hidden,
                   int64_t inter, uint8_t* gate, uint8_t* up) {
  const size_t es = element_bytes;
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t h = 0; h < hidden; ++h) {
      const uint8_t* row = gate_up + static_cast<size_t>((e * hidden + h) * 2 * inter) * es;
      for (int64_t i = 0; i < inter; ++i) {
        const size_t out = static_cast<size_t>((e * inter + i) * hidden + h) * es;
        std::memcpy(gate + out, row + static_cast<size_t>(2 * i) * es, es);
        std::memcpy(up + out, row + static_cast<size_t>(2 * i + 1) * es, es);
      }
    }
  }
}

// down [experts, inter, hidden] (x @ W) -> [experts, hidden, inter].
void transpose_down(size_t element_bytes, const uint8_t* down, int64_t experts, int64_t inter,
                    int64_t hidden, uint8_t* out) {
  const size_t es = element_bytes;
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t i = 0; i < inter; ++i) {
      const uint8_t* row = down + static_cast<size_t>((e * inter + i) * hidden) * es;
      for (int64_t h = 0; h < hidden; ++h) {
        std::memcpy(out + static_cast<size_t>((e * hidden + h) * inter + i) * es,
                    row + static_cast<size_t>(h) * es, es);
      }
    }
  }
}

// Rows first_row, first_row + row_stride, ... (out_rows of them per expert) of an MXFP4
// blocks/scales pair [experts, rows, groups(, 16)] as ggml MXFP4 blocks.
void repack_mxfp4(const uint8_t* blocks, const uint8_t* scales, int64_t experts, int64_t rows,
                  int64_t groups, int64_t first_row, int64_t row_stride, int64_t out_rows,
                  quant::BlockMXFP4* out) {
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t r = 0; r < out_rows; ++r) {
      const int64_t source_row = e * rows + first_row + r * row_stride;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t source = source_row * groups + g;
        const uint8_t* codes = blocks + source * 16;
        // Value k of the block: byte k / 2, low nibble for even k.
        const auto code = [&](int k) {
          return k % 2 == 0 ? codes[k / 2] & 0xF : codes[k / 2] >> 4;
        };
        quant::BlockMXFP4& block = *out++;
        block.e = scales[source];
        for (int j = 0; j < 16; ++j) {
          block.qs[j] = static_cast<uint8_t>(code(j) | (code(j + 16) << 4));
        }
      }
    }
  }
}

struct Found {
  const SafetensorsHeader* header;
  const std::vector<int64_t>* shape;
  DType dtype;  // float tensors
  uint64_t file_offset;
  uint64_t size_bytes;

  StoredTensor stored(const std::string& name) const {
    return {header->path, header->file_size_bytes, name, file_offset, size_bytes};
  }
};

}  // namespace

Expected<std::vector<DerivedTensors>> plan_gpt_oss_experts(
    std::vector<SafetensorsHeader>& headers) {
  std::map<std::string, Found> floats, bytes;
  for (const SafetensorsHeader& header : headers) {
    for (const SafetensorsTensorInfo& info : header.tensors) {
      const size_t at = info.name.rfind(kExperts);
      if (at == std::string::npos) continue;
      const std::string_view leaf = std::string_view(info.name).substr(at + kExperts.size());
      if (leaf == "gate_up_proj" || leaf == "gate_up_proj_bias" || leaf == "down_proj" ||
          leaf == "down_proj_bias") {
        floats.emplace(info.name,
                       Found{&header, &info.shape, info.dtype, info.file_offset, info.size_bytes});
      }
    }
    for (const SafetensorsByteTensor& info : header.byte_tensors) {
      bytes.emplace(info.name,
                    Found{&header, &info.shape, DType::kF32, info.file_offset, info.size_bytes});
    }
  }

  std::vector<DerivedTensors> plans;
  std::set<std::string> consumed;
  for (const auto& [name, found] : floats) {
    const std::string base = name.substr(0, name.rfind(kExperts) + kExperts.size());
    const std::string leaf = name.substr(base.size());
    const std::string& path = found.header->path;
    const std::vector<int64_t>& shape = *found.shape;
    const DType dtype = found.dtype;
    const size_t es = dtype_size_bytes(dtype);
    DerivedTensors plan;
    plan.sources.push_back(found.stored(name));
    if (leaf == "gate_up_proj") {
      if (shape.size() != 3 || shape[2] % 2 != 0) {
        return bad_shape(path, name, shape, "[experts, hidden, 2 * intermediate]");
      }
      const int64_t experts = shape[0], hidden = shape[1], inter = shape[2] / 2;
      plan.outputs = {{base + "gate_proj.weight", dtype, {experts, inter, hidden}},
                      {base + "up_proj.weight", dtype, {experts, inter, hidden}}};
      plan.derive = [=](std::span<const uint8_t* const> in, std::span<uint8_t* const> out) {
        split_gate_up(es, in[0], experts, hidden, inter, out[0], out[1]);
      };
    } else if (leaf == "down_proj") {
      if (shape.size() != 3) return bad_shape(path, name, shape, "[experts, intermediate, hidden]");
      const int64_t experts = shape[0], inter = shape[1], hidden = shape[2];
      plan.outputs = {{base + "down_proj.weight", dtype, {experts, hidden, inter}}};
      plan.derive = [=](std::span<const uint8_t* const> in, std::span<uint8_t* const> out) {
        transpose_down(es, in[0], experts, inter, hidden, out[0]);
      };
    } else if (leaf == "gate_up_proj_bias") {
      if (shape.size() != 2 || shape[1] % 2 != 0) {
        return bad_shape(path, name, shape, "[experts, 2 * intermediate]");
      }
      const int64_t experts = shape[0], inter = shape[1] / 2;
      plan.outputs = {{base + "gate_proj.bias", DType::kF32, {experts, inter}},
                      {base + "up_proj.bias", DType::kF32, {experts, inter}}};
      plan.derive = [=](std::span<const uint8_t* const> in, std::span<uint8_t* const> out) {
        auto* gate = reinterpret_cast<float*>(out[0]);
        auto* up = reinterpret_cast<float*>(out[1]);
        for (int64_t i = 0; i < experts * inter; ++i) {
          gate[i] = to_f32(dtype, in[0], 2 * i);
          up[i] = to_f32(dtype, in[0], 2 * i + 1);
        }
      };
    } else {  // down_proj_bias
      if (shape.size() != 2) return bad_shape(path, name, shape, "[experts, hidden]");
      const int64_t count = shape[0] * shape[1];
      plan.outputs = {{base + "down_proj.bias", DType::kF32, shape}};
      plan.derive = [=](std::span<const uint8_t* const> in, std::span<uint8_t* const> out) {
        auto* bias = reinterpret_cast<float*>(out[0]);
        for (int64_t i = 0; i < count; ++i) bias[i] = to_f32(dtype, in[0], i);
      };
    }
    consumed.insert(name);
    plans.push_back(std::move(plan));
  }

  for (const auto& [name, blocks] : bytes) {
    if (!ends_with(name, "_blocks")) continue;
    const std::string matrix = name.substr(0, name.size() - 7);
    const size_t at = matrix.rfind(kExperts);
    const std::string leaf = at == std::string::npos ? "" : matrix.substr(at + kExperts.size());
    if (leaf != "gate_up_proj" && leaf != "down_proj") continue;  // refused below
    const std::string& path = blocks.header->path;
    auto scales_it = bytes.find(matrix + "_scales");
    if (scales_it == bytes.end()) {
      return Status(StatusCode::kDataLoss, path + ": tensor " + in_quotes(name) + " has no " +
                                               in_quotes(matrix + "_scales") +
                                               ": MXFP4 weights need both halves");
    }
    const Found& scales = scales_it->second;
    const std::vector<int64_t>& shape = *blocks.shape;
    const std::vector<int64_t>& scale_shape = *scales.shape;
    if (shape.size() != 4 || shape[3] != 16 ||
        scale_shape != std::vector<int64_t>{shape[0], shape[1], shape[2]} ||
        (leaf == "gate_up_proj" && shape[1] % 2 != 0)) {
      return Status(StatusCode::kDataLoss,
                    path + ": MXFP4 tensors " + in_quotes(name) + " " + shape_string(shape) +
                        " and " + in_quotes(matrix + "_scales") + " " + shape_string(scale_shape) +
                        " do not pair: gpt-oss's layout is blocks [experts, rows, groups, 16] and "
                        "scales [experts, rows, groups]" +
                        (leaf == "gate_up_proj" ? " with an even number of rows" : ""));
    }
    const int64_t experts = shape[0], rows = shape[1], groups = shape[2];
    const std::string base = matrix.substr(0, at + kExperts.size());
    DerivedTensors plan;
    plan.sources = {blocks.stored(name), scales.stored(matrix + "_scales")};
    if (leaf == "gate_up_proj") {
      const int64_t inter = rows / 2;
      plan.outputs = {{base + "gate_proj.weight", DType::kMXFP4, {experts, inter, groups * 32}},
                      {base + "up_proj.weight", DType::kMXFP4, {experts, inter, groups * 32}}};
      plan.derive = [=](std::span<const uint8_t* const> in, std::span<uint8_t* const> out) {
        for (int64_t half = 0; half < 2; ++half) {  // even rows: gate; odd rows: up
          repack_mxfp4(in[0], in[1], experts, rows, groups, half, 2, inter,
                       reinterpret_cast<quant::BlockMXFP4*>(out[half]));
        }
      };
    } else {
      plan.outputs = {{base + "down_proj.weight", DType::kMXFP4, {experts, rows, groups * 32}}};
      plan.derive = [=](std::span<const uint8_t* const> in, std::span<uint8_t* const> out) {
        repack_mxfp4(in[0], in[1], experts, rows, groups, 0, 1, rows,
                     reinterpret_cast<quant::BlockMXFP4*>(out[0]));
      };
    }
    consumed.insert(name);
    consumed.insert(matrix + "_scales");
    plans.push_back(std::move(plan));
  }

  for (const auto& [name, found] : bytes) {
    if (consumed.count(name) == 0) {
      return Status(StatusCode::kUnimplemented,
                    found.header->path + ": tensor " + in_quotes(name) +
                        ": unsupported dtype U8 (sparkd reads U8 tensors only as gpt-oss's MXFP4 "
                        "expert blocks and scales, mlp.experts.{gate_up,down}_proj_{blocks,"
                        "scales})");
    }
  }
  for (SafetensorsHeader& header : headers) {
    std::erase_if(header.tensors, [&](const SafetensorsTensorInfo& info) {
      return consumed.count(info.name) != 0;
    });
    header.byte_tensors.clear();
  }
  return plans;
}

}  // namespace sparkd::model
