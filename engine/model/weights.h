// ModelWeights: every tensor of a model (a safetensors directory or a GGUF file), read into one
// backend's memory.
//
// Files are read with large sequential reads straight into the backend's allocation (or
// through a staging buffer when the backend's memory is not host-accessible). Not mmap: on
// the DGX Spark mmap loading was measured 10x slower than sequential reads.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/backend/backend.h"
#include "engine/model/gguf.h"
#include "engine/model/model_spec.h"
#include "engine/model/safetensors.h"

namespace sparkd::model {

struct LoadStats {
  uint64_t bytes_read = 0;
  double seconds = 0.0;
  double gigabytes_per_second() const {
    return seconds > 0 ? static_cast<double>(bytes_read) / seconds / 1e9 : 0.0;
  }
};

struct WeightLoadOptions {
  // Tensors of rank 1 (norm weights, biases) are converted to F32 at load: they are tiny,
  // and every backend's elementwise ops then read one dtype.
  bool vectors_as_f32 = true;
  // Quantize float matrices to this type as they are read (safetensors only; config.toml's
  // `quantize`). Which tensors: load_quantization().
  std::optional<DType> quantize;
  // Safetensors only: rows to regroup as they are read, row r of tensor `name` (of `rows` rows)
  // being row row_order(name, rows)[r] of the file's (empty: as stored). The model's spec
  // decides (LoadedModel sets Qwen3-Next's qwen3_next_row_order).
  std::function<std::vector<int64_t>(const std::string& name, int64_t rows)> row_order;
};

// The type tensor `name` of `shape` and `dtype` is held in when `target` is asked for: the
// target for float matrices whose rows are whole blocks of it, except embedding tables
// (looked up row by row, they keep their precision, as llama-quantize keeps them by
// default); nullopt keeps the tensor as stored.
std::optional<DType> load_quantization(const std::string& name, const std::vector<int64_t>& shape,
                                       DType dtype, std::optional<DType> target);

// The same for a tensor the loader derives on the host (gpt-oss's fused experts, split into
// [experts, out, in] matrices): float stacked matrices (rank 3, never the [experts, out]
// biases) whose rows are whole blocks.
std::optional<DType> derived_quantization(const std::vector<int64_t>& shape, DType dtype,
                                          std::optional<DType> target);

struct PlannedFile;
struct DerivedTensors;

class ModelWeights {
 public:
  // Loads every tensor of model_dir's safetensors file(s) into `backend` memory (gpt-oss's
  // fused experts as the decoder binds them: engine/model/gpt_oss_experts.h).
  static Expected<ModelWeights> load(const std::string& model_dir, Backend& backend,
                                     const WeightLoadOptions& options = {});
  // Loads every tensor of a GGUF model (all parts of a split set), named as the
  // architectures ask for them (hf_tensor_name) and with llama's q/k rows in transformers'
  // order (llama_row_permutation). Quantized tensors stay quantized.
  static Expected<ModelWeights> load_gguf(const GgufModel& model, const ModelSpec& spec,
                                          Backend& backend, const WeightLoadOptions& options = {});

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // The tensor called `name`, which must have `expected_shape`; otherwise NOT_FOUND or
  // INVALID_ARGUMENT naming the tensor, the expected and the found shape.
  Expected<Tensor> get(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  const std::map<std::string, Tensor>& tensors() const { return tensors_; }
  const LoadStats& stats() const { return stats_; }
  uint64_t size_bytes() const;

 private:
  static Expected<ModelWeights> load_planned(const std::vector<PlannedFile>& files,
                                             const std::vector<DerivedTensors>& derived,
                                             Backend& backend, const WeightLoadOptions& options);

  std::vector<Buffer> buffers_;
  std::map<std::string, Tensor> tensors_;
  LoadStats stats_;
};

}  // namespace sparkd::model
