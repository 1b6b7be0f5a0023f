// ModelWeights: reads every tensor of a model directory into one backend's memory.
//
// Each tensor gets its own allocation: safetensors data offsets are not aligned, and the
// kernels want every tensor at least 64-byte aligned. Files are read front to back with
// large preads (sequential I/O is what storage and the page cache's read-ahead are fast
// at), straight into the allocation when the CPU can write it, through a host staging
// buffer otherwise; pages already read are dropped from the page cache as the load goes,
// because on a unified-memory machine cached file pages compete with the weights.

#include "engine/model/weights.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <utility>

#include "engine/backend/half.h"
#include "engine/backend/quantize.h"
#include "engine/model/gguf_model.h"
#include "engine/model/gpt_oss_experts.h"
#include "engine/model/posix_file.h"

namespace sparkd::model {

namespace {

// One pread's size: large enough to reach the storage's full bandwidth, small enough that
// the staging buffer stays modest.
constexpr uint64_t kReadChunkBytes = 64ull << 20;
// Source bytes converted per step when widening a vector to F32 (its F32 copy is 2x).
constexpr uint64_t kConvertChunkBytes = 16ull << 20;
// How much read data may sit in the page cache before it is dropped.
constexpr uint64_t kDropBehindBytes = 256ull << 20;
constexpr uintptr_t kTensorAlignmentBytes = 64;

Status data_loss(const std::string& path, const std::string& message) {
  return Status(StatusCode::kDataLoss, path + ": " + message);
}

std::string in_quotes(const std::string& text) {
  return "'" + text + "'";
}

// One open safetensors file being read front to back.
class WeightFile {
 public:
  WeightFile() = default;
  WeightFile(const WeightFile&) = delete;
  WeightFile& operator=(const WeightFile&) = delete;
  ~WeightFile() {
    if (fd_.is_open()) drop_cache_behind(/*force=*/true);
  }

  // Opens the file whose header said it holds `expected_size_bytes`.
  Status open(const std::string& path, uint64_t expected_size_bytes) {
    path_ = path;
    auto file = open_regular_file(path);
    if (!file) return file.status();
    // A file replaced between the header check and now would be read as if it were the old.
    if (file->size_bytes != expected_size_bytes) {
      return data_loss(path, "file changed while loading: it was " +
                                 std::to_string(expected_size_bytes) +
                                 " bytes when its header was checked and is " +
                                 std::to_string(file->size_bytes) + " now");
    }
    fd_ = std::move(file->fd);
    (void)::posix_fadvise(fd_.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    return Status::ok();
  }

  // Reads exactly `size` bytes at `offset` into `dst`; a file that ends early is DATA_LOSS
  // (it changed or was truncated after its header was checked).
  Status read_exact(void* dst, uint64_t size, uint64_t offset, const std::string& tensor) {
    auto* out = static_cast<uint8_t*>(dst);
    uint64_t done = 0;
    while (done < size) {
      const size_t want = static_cast<size_t>(std::min(size - done, kReadChunkBytes));
      const ssize_t got = ::pread(fd_.get(), out + done, want, static_cast<off_t>(offset + done));
      if (got < 0) {
        if (errno == EINTR) continue;
        return data_loss(path_, "read failed at byte " + std::to_string(offset + done) +
                                    " (tensor " + in_quotes(tensor) + "): " + std::strerror(errno));
      }
      if (got == 0) {
        return data_loss(path_, "short read: tensor " + in_quotes(tensor) + " needs bytes [" +
                                    std::to_string(offset) + ", " + std::to_string(offset + size) +
                                    ") but the file ends at byte " + std::to_string(offset + done) +
                                    "; it changed or was truncated after its header was checked");
      }
      done += static_cast<uint64_t>(got);
      bytes_read_ += static_cast<uint64_t>(got);
      read_end_ = std::max(read_end_, offset + done);
      drop_cache_behind(/*force=*/false);
    }
    return Status::ok();
  }

  uint64_t bytes_read() const { return bytes_read_; }

 private:
  void drop_cache_behind(bool force) {
    if (read_end_ > dropped_end_ && (force || read_end_ - dropped_end_ >= kDropBehindBytes)) {
      (void)::posix_fadvise(fd_.get(), static_cast<off_t>(dropped_end_),
                            static_cast<off_t>(read_end_ - dropped_end_), POSIX_FADV_DONTNEED);
      dropped_end_ = read_end_;
    }
  }

  std::string path_;
  FileDescriptor fd_;
  uint64_t bytes_read_ = 0;
  uint64_t read_end_ = 0;
  uint64_t dropped_end_ = 0;
};

// Widens `count` F16/BF16 values to F32.
void widen_to_f32(DType dtype, const uint8_t* src, float* dst, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + 2 * i, sizeof bits);
    dst[i] = dtype == DType::kBF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
  }
}

}  // namespace

std::optional<DType> load_quantization(const std::string& name, const std::vector<int64_t>& shape,
                                       DType dtype, std::optional<DType> target) {
  if (!target || shape.size() != 2 || dtype_is_quantized(dtype)) return std::nullopt;
  if (name.find("embed") != std::string::npos) return std::nullopt;  // embedding tables
  if (shape[1] % dtype_traits(*target).block_elements != 0) return std::nullopt;
  return target;
}

std::optional<DType> derived_quantization(const std::vector<int64_t>& shape, DType dtype,
                                          std::optional<DType> target) {
  if (!target || shape.size() != 3 || dtype_is_quantized(dtype)) return std::nullopt;
  if (shape.back() % dtype_traits(*target).block_elements != 0) return std::nullopt;
  return target;
}

// Backend memory for a tensor of `size_bytes` (none for an empty one), aligned for the kernels.
Expected<Buffer> allocate_tensor(Backend& backend, uint64_t size_bytes, const std::string& name,
                                 const std::string& path) {
  if (size_bytes == 0) return Buffer();
  auto allocated = backend.allocate(static_cast<size_t>(size_bytes));
  if (!allocated) {
    const Status& error = allocated.status();
    return Status(error.code(), "allocating " + std::to_string(size_bytes) + " bytes for tensor " +
                                    in_quotes(name) + " of " + path + ": " + error.message());
  }
  if (reinterpret_cast<uintptr_t>(allocated->data()) % kTensorAlignmentBytes != 0) {
    return Status(StatusCode::kInternal,
                  backend.name() + " backend returned memory for tensor " + in_quotes(name) +
                      " that is not " + std::to_string(kTensorAlignmentBytes) + "-byte aligned");
  }
  return std::move(*allocated);
}

// One tensor to read: where it is in its file, what it becomes.
struct PlannedTensor {
  std::string name;  // as the architectures ask for it
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t file_offset = 0;
  uint64_t size_bytes = 0;
  // Row r of the loaded tensor is row row_permutation[r] of the file's (empty: as stored).
  std::vector<int64_t> row_permutation;
  // Quantized to this type as it is read (a float matrix; see load_quantization).
  std::optional<DType> quantize_to;
};

struct PlannedFile {
  std::string path;
  uint64_t size_bytes = 0;  // as its header was read
  std::vector<PlannedTensor> tensors;
};

Expected<ModelWeights> ModelWeights::load_planned(const std::vector<PlannedFile>& files,
                                                  const std::vector<DerivedTensors>& derived,
                                                  Backend& backend,
                                                  const WeightLoadOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const bool host_writes = backend.memory_is_host_accessible();
  ModelWeights weights;
  std::vector<uint8_t> staging;   // raw file bytes on their way to non-host memory
  std::vector<float> widened;     // F32 copies of vectors on their way to any memory
  std::vector<uint8_t> permuted;  // a tensor's rows in their loaded order
  // Copies host bytes to backend memory at `dst`.
  auto store = [&](void* dst, const void* src, size_t size_bytes) {
    if (host_writes) {
      std::memcpy(dst, src, size_bytes);
    } else {
      backend.upload(dst, src, size_bytes);
    }
  };

  for (const PlannedFile& planned : files) {
    WeightFile file;
    Status status = file.open(planned.path, planned.size_bytes);
    if (!status.is_ok()) return status;

    for (const PlannedTensor& info : planned.tensors) {
      const bool widen =
          options.vectors_as_f32 && info.shape.size() == 1 && info.dtype != DType::kF32;
      if (widen && dtype_is_quantized(info.dtype)) {
        return Status(StatusCode::kUnimplemented,
                      planned.path + ": tensor " + in_quotes(info.name) + " is a " +
                          dtype_name(info.dtype) + " vector; sparkd reads vectors as floats");
      }
      const DType dtype = info.quantize_to ? *info.quantize_to : widen ? DType::kF32 : info.dtype;
      const uint64_t size_bytes = info.quantize_to ? dtype_row_bytes(dtype, info.shape.back()) *
                                                         static_cast<uint64_t>(info.shape[0])
                                  : widen ? info.size_bytes / dtype_size_bytes(info.dtype) * 4
                                          : info.size_bytes;

      SPARKD_ASSIGN_OR_RETURN(Buffer buffer,
                              allocate_tensor(backend, size_bytes, info.name, planned.path));
      auto* dst = static_cast<uint8_t*>(buffer.data());

      if (info.quantize_to) {
        // Row by row: float row -> F32 -> blocks, into a host copy of the whole tensor.
        const int64_t rows = info.shape[0], cols = info.shape[1];
        const uint64_t source_row_bytes =
            static_cast<uint64_t>(cols) * dtype_size_bytes(info.dtype);
        staging.resize(std::max<size_t>(staging.size(), static_cast<size_t>(source_row_bytes)));
        widened.resize(std::max(widened.size(), static_cast<size_t>(cols)));
        permuted.resize(static_cast<size_t>(size_bytes));
        const size_t quantized_row_bytes = dtype_row_bytes(dtype, cols);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t source_row =
              info.row_permutation.empty() ? r : info.row_permutation[static_cast<size_t>(r)];
          status = file.read_exact(
              staging.data(), source_row_bytes,
              info.file_offset + static_cast<uint64_t>(source_row) * source_row_bytes, info.name);
          if (!status.is_ok()) return status;
          if (info.dtype == DType::kF32) {
            std::memcpy(widened.data(), staging.data(), static_cast<size_t>(source_row_bytes));
          } else {
            widen_to_f32(info.dtype, staging.data(), widened.data(), static_cast<size_t>(cols));
          }
          quant::quantize_row(widened.data(), cols, dtype,
                              permuted.data() + static_cast<size_t>(r) * quantized_row_bytes);
        }
        store(dst, permuted.data(), static_cast<size_t>(size_bytes));
      } else if (!info.row_permutation.empty()) {
        // Whole tensor through host memory: rows are moved, never their contents, so a
        // quantized row (whole blocks) moves as it is.
        const uint64_t rows = info.row_permutation.size();
        const uint64_t row_bytes = info.size_bytes / rows;
        staging.resize(std::max<size_t>(staging.size(), static_cast<size_t>(info.size_bytes)));
        status = file.read_exact(staging.data(), info.size_bytes, info.file_offset, info.name);
        if (!status.is_ok()) return status;
        permuted.resize(static_cast<size_t>(info.size_bytes));
        for (uint64_t r = 0; r < rows; ++r) {
          std::memcpy(permuted.data() + r * row_bytes,
                      staging.data() + static_cast<uint64_t>(info.row_permutation[r]) * row_bytes,
                      static_cast<size_t>(row_bytes));
        }
        if (widen) {
          const size_t count = static_cast<size_t>(info.size_bytes / dtype_size_bytes(info.dtype));
          widened.resize(std::max(widened.size(), count));
          widen_to_f32(info.dtype, permuted.data(), widened.data(), count);
          store(dst, widened.data(), count * sizeof(float));
        } else {
          store(dst, permuted.data(), static_cast<size_t>(info.size_bytes));
        }
      } else if (widen) {
        // Chunk by chunk, so even a hostile multi-gigabyte "vector" needs bounded staging.
        const uint64_t chunk = std::min(info.size_bytes, kConvertChunkBytes);
        staging.resize(std::max<size_t>(staging.size(), static_cast<size_t>(chunk)));
        widened.resize(std::max<size_t>(widened.size(), static_cast<size_t>(chunk / 2)));
        for (uint64_t done = 0; done < info.size_bytes; done += chunk) {
          const uint64_t part = std::min(chunk, info.size_bytes - done);
          status = file.read_exact(staging.data(), part, info.file_offset + done, info.name);
          if (!status.is_ok()) return status;
          const size_t count = static_cast<size_t>(part / 2);
          widen_to_f32(info.dtype, staging.data(), widened.data(), count);
          store(dst + done * 2, widened.data(), count * sizeof(float));
        }
      } else if (host_writes) {
        status = file.read_exact(dst, info.size_bytes, info.file_offset, info.name);
        if (!status.is_ok()) return status;
      } else {
        const uint64_t chunk = std::min(info.size_bytes, kReadChunkBytes);
        staging.resize(std::max<size_t>(staging.size(), static_cast<size_t>(chunk)));
        for (uint64_t done = 0; done < info.size_bytes; done += chunk) {
          const uint64_t part = std::min(chunk, info.size_bytes - done);
          status = file.read_exact(staging.data(), part, info.file_offset + done, info.name);
          if (!status.is_ok()) return status;
          store(dst + done, staging.data(), static_cast<size_t>(part));
        }
      }

      weights.tensors_.emplace(info.name, Tensor(dtype, info.shape, buffer.data()));
      if (!buffer.empty()) weights.buffers_.push_back(std::move(buffer));
    }
    weights.stats_.bytes_read += file.bytes_read();
  }

  // Derived tensors: sources whole into host memory, outputs built on the host (straight in
  // the backend's memory when the CPU can write it).
  std::vector<std::vector<uint8_t>> sources;
  std::vector<std::vector<uint8_t>> host_outputs;
  for (const DerivedTensors& plan : derived) {
    sources.resize(plan.sources.size());
    std::vector<const uint8_t*> source_bytes;
    for (size_t i = 0; i < plan.sources.size(); ++i) {
      const StoredTensor& source = plan.sources[i];
      WeightFile file;
      Status status = file.open(source.path, source.file_size_bytes);
      if (!status.is_ok()) return status;
      sources[i].resize(static_cast<size_t>(source.size_bytes));
      status =
          file.read_exact(sources[i].data(), source.size_bytes, source.file_offset, source.name);
      if (!status.is_ok()) return status;
      weights.stats_.bytes_read += file.bytes_read();
      source_bytes.push_back(sources[i].data());
    }
    std::vector<Buffer> buffers;
    std::vector<uint8_t*> output_bytes;
    std::vector<DType> held;  // each output's type in memory: as derived, or quantized
    host_outputs.resize(plan.outputs.size());
    for (size_t i = 0; i < plan.outputs.size(); ++i) {
      const DerivedTensor& output = plan.outputs[i];
      held.push_back(derived_quantization(output.shape, output.dtype, options.quantize)
                         .value_or(output.dtype));
      const Tensor derived_shape(output.dtype, output.shape, nullptr);
      const Tensor held_shape(held[i], output.shape, nullptr);
      SPARKD_ASSIGN_OR_RETURN(Buffer buffer,
                              allocate_tensor(backend, held_shape.size_bytes(), output.name,
                                              plan.sources.front().path));
      if (host_writes && held[i] == output.dtype) {
        output_bytes.push_back(static_cast<uint8_t*>(buffer.data()));
      } else {
        host_outputs[i].resize(derived_shape.size_bytes());
        output_bytes.push_back(host_outputs[i].data());
      }
      buffers.push_back(std::move(buffer));
    }
    plan.derive(source_bytes, output_bytes);
    for (size_t i = 0; i < plan.outputs.size(); ++i) {
      const DerivedTensor& output = plan.outputs[i];
      const Tensor derived_shape(output.dtype, output.shape, nullptr);
      if (held[i] != output.dtype) {
        // Quantized row by row, as safetensors matrices are with `quantize`.
        const int64_t rows = derived_shape.rows(), cols = derived_shape.cols();
        const size_t source_row_bytes = derived_shape.row_bytes();
        const size_t quantized_row_bytes = dtype_row_bytes(held[i], cols);
        widened.resize(std::max(widened.size(), static_cast<size_t>(cols)));
        permuted.resize(static_cast<size_t>(rows) * quantized_row_bytes);
        for (int64_t r = 0; r < rows; ++r) {
          const uint8_t* row = host_outputs[i].data() + static_cast<size_t>(r) * source_row_bytes;
          if (output.dtype == DType::kF32) {
            std::memcpy(widened.data(), row, source_row_bytes);
          } else {
            widen_to_f32(output.dtype, row, widened.data(), static_cast<size_t>(cols));
          }
          quant::quantize_row(widened.data(), cols, held[i],
                              permuted.data() + static_cast<size_t>(r) * quantized_row_bytes);
        }
        store(buffers[i].data(), permuted.data(), permuted.size());
      } else if (!host_writes) {
        backend.upload(buffers[i].data(), output_bytes[i], host_outputs[i].size());
      }
      weights.tensors_.emplace(output.name, Tensor(held[i], output.shape, buffers[i].data()));
      if (!buffers[i].empty()) weights.buffers_.push_back(std::move(buffers[i]));
    }
  }
  backend.synchronize();
  weights.stats_.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return weights;
}

Expected<ModelWeights> ModelWeights::load(const std::string& model_dir, Backend& backend,
                                          const WeightLoadOptions& options) {
  auto headers = read_model_safetensors(model_dir);
  if (!headers) return headers.status();
  SPARKD_ASSIGN_OR_RETURN(std::vector<DerivedTensors> derived, plan_gpt_oss_experts(*headers));
  std::vector<PlannedFile> files;
  for (const SafetensorsHeader& header : *headers) {
    PlannedFile& file = files.emplace_back();
    file.path = header.path;
    file.size_bytes = header.file_size_bytes;
    for (const SafetensorsTensorInfo& info : header.tensors) {
      std::vector<int64_t> order;
      if (options.row_order && info.shape.size() == 2) {
        order = options.row_order(info.name, info.shape.front());
      }
      file.tensors.push_back(
          {info.name, info.dtype, info.shape, info.file_offset, info.size_bytes, std::move(order),
           load_quantization(info.name, info.shape, info.dtype, options.quantize)});
    }
  }
  return load_planned(files, derived, backend, options);
}

Expected<ModelWeights> ModelWeights::load_gguf(const GgufModel& model, const ModelSpec& spec,
                                               Backend& backend, const WeightLoadOptions& options) {
  if (options.quantize) {
    return Status(StatusCode::kInvalidArgument,
                  model.parts.front().path +
                      ": `quantize` applies to safetensors models; a GGUF file is loaded with "
                      "the types it holds");
  }
  std::vector<PlannedFile> files;
  for (const GgufFile& part : model.parts) {
    PlannedFile& file = files.emplace_back();
    file.path = part.path;
    file.size_bytes = part.file_size_bytes;
    for (const GgufTensorInfo& info : part.tensors) {
      std::string name = hf_tensor_name(spec.family, info.name);
      std::vector<int64_t> permutation = llama_row_permutation(spec, name, info.shape.front());
      file.tensors.push_back({std::move(name), info.dtype, info.shape, info.file_offset,
                              info.size_bytes, std::move(permutation), std::nullopt});
    }
    // Front to back: the reads stay sequential.
    std::sort(file.tensors.begin(), file.tensors.end(),
              [](const PlannedTensor& a, const PlannedTensor& b) {
                return a.file_offset < b.file_offset;
              });
  }
  return load_planned(files, {}, backend, options);
}

Expected<Tensor> ModelWeights::get(const std::string& name,
                                   const std::vector<int64_t>& expected_shape) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::string message = "model is missing tensor " + in_quotes(name) + " (expected shape " +
                          shape_string(expected_shape) + ")";
    // A different prefix ("model.", "bert.") is the usual reason: point at the near miss.
    auto ends_with_part = [](const std::string& text, const std::string& tail) {
      return text.size() > tail.size() && text[text.size() - tail.size() - 1] == '.' &&
             text.compare(text.size() - tail.size(), tail.size(), tail) == 0;
    };
    for (const auto& [candidate, tensor] : tensors_) {
      if (ends_with_part(candidate, name) || ends_with_part(name, candidate)) {
        message += "; the file has " + in_quotes(candidate);
        break;
      }
    }
    return Status(StatusCode::kNotFound, message);
  }
  if (it->second.shape != expected_shape) {
    return Status(StatusCode::kInvalidArgument,
                  "tensor " + in_quotes(name) + " has shape " + shape_string(it->second.shape) +
                      " but the model config needs " + shape_string(expected_shape));
  }
  return it->second;
}

uint64_t ModelWeights::size_bytes() const {
  uint64_t total = 0;
  for (const auto& [name, tensor] : tensors_) total += tensor.size_bytes();
  return total;
}

}  // namespace sparkd::model
