// The CUDA backend: device memory, the op stream, the small host tables each op needs, shape
// checks (op_checks.h, the CPU's own) and dispatch to the kernels of cuda_kernels.h.
//
// One stream per backend (a backend serves one model runner); ops are queued on it and the
// host waits only where the interface hands data back (download_f32, synchronize) or takes
// host memory the caller may reuse at once (upload).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_common.cuh"
#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/cuda_virtual_memory.h"
#include "engine/backend/moe.h"
#include "engine/backend/op_checks.h"

namespace sparkd {
namespace {

using cuda::AttentionSequenceArgs;
using cuda::RecurrentSequenceArgs;

// Tables of indices (rows, positions, slots, block tables, sequence descriptors) reach the
// GPU in stream order: appended to a pinned host ring and copied with cudaMemcpyAsync into the
// same offset of a device ring. The ring is cut into segments; the host side of a segment is
// written again only after the event recorded when the ring last left it has completed, so no
// queued copy reads bytes already overwritten. (The device side needs no wait: its next copy
// is queued after every kernel that read it.) A table larger than a segment makes a larger
// ring; the old one is kept until the stream is next known idle (release_retired), because
// tables pushed earlier for the same op still point into it.
class ArgumentRing {
 public:
  static constexpr int kSegments = 8;

  ~ArgumentRing() {
    release_retired();
    release(current_);
  }

  void init(size_t segment_bytes) {
    segment_bytes_ = segment_bytes;
    segment_ = 0;
    used_ = 0;
    std::fill(std::begin(pending_), std::end(pending_), false);
    SPARKD_CUDA_CHECK(cudaMallocHost(&current_.host, kSegments * segment_bytes_));
    SPARKD_CUDA_CHECK(cudaMalloc(&current_.device, kSegments * segment_bytes_));
    for (cudaEvent_t& event : current_.left) {
      SPARKD_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    }
  }

  // Frees rings replaced by larger ones; call only when the stream has no queued work.
  void release_retired() {
    for (Memory& memory : retired_) release(memory);
    retired_.clear();
  }

  // The values, in device memory once the stream gets there; nullptr when empty.
  template <typename T>
  const T* push(const T* values, size_t count, cudaStream_t stream) {
    if (count == 0) return nullptr;
    const size_t bytes = (count * sizeof(T) + 15) / 16 * 16;
    if (bytes > segment_bytes_) grow(bytes);
    if (used_ + bytes > segment_bytes_) {
      SPARKD_CUDA_CHECK(cudaEventRecord(current_.left[segment_], stream));
      pending_[segment_] = true;
      segment_ = (segment_ + 1) % kSegments;
      used_ = 0;
      if (pending_[segment_]) {
        SPARKD_CUDA_CHECK(cudaEventSynchronize(current_.left[segment_]));
        pending_[segment_] = false;
      }
    }
    const size_t offset = segment_ * segment_bytes_ + used_;
    std::memcpy(current_.host + offset, values, count * sizeof(T));
    SPARKD_CUDA_CHECK(cudaMemcpyAsync(current_.device + offset, current_.host + offset, bytes,
                                      cudaMemcpyHostToDevice, stream));
    used_ += bytes;
    return reinterpret_cast<const T*>(current_.device + offset);
  }
  template <typename T>
  const T* push(const std::vector<T>& values, cudaStream_t stream) {
    return push(values.data(), values.size(), stream);
  }
  template <typename T>
  const T* push(std::span<const T> values, cudaStream_t stream) {
    return push(values.data(), values.size(), stream);
  }

 private:
  struct Memory {
    char* host = nullptr;
    char* device = nullptr;
    cudaEvent_t left[kSegments] = {};  // recorded when the ring last left each segment
  };

  // A table larger than a segment: a new ring, large enough; the old one is retired.
  void grow(size_t bytes) {
    retired_.push_back(current_);
    current_ = Memory();
    size_t segment = segment_bytes_;
    while (segment < bytes) segment *= 2;
    init(segment);
  }

  static void release(Memory& memory) {
    if (memory.host != nullptr) cudaFreeHost(memory.host);
    if (memory.device != nullptr) cudaFree(memory.device);
    for (cudaEvent_t& event : memory.left) {
      if (event != nullptr) cudaEventDestroy(event);
    }
    memory = Memory();
  }

  Memory current_;
  std::vector<Memory> retired_;
  size_t segment_bytes_ = 0;
  int segment_ = 0;
  size_t used_ = 0;
  bool pending_[kSegments] = {};  // whether current_.left[s] was recorded and not yet waited
};

class CudaBackend final : public Backend {
 public:
  static Expected<std::unique_ptr<Backend>> create(const CudaBackendOptions& options) {
    int count = 0;
    cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess) {
      return Status(StatusCode::kUnavailable,
                    std::string("no CUDA device: ") + cudaGetErrorString(error));
    }
    if (options.device < 0 || options.device >= count) {
      return Status(StatusCode::kUnavailable, "no CUDA device " + std::to_string(options.device) +
                                                  " (this machine has " + std::to_string(count) +
                                                  ")");
    }
    cudaDeviceProp prop{};
    error = cudaGetDeviceProperties(&prop, options.device);
    if (error == cudaSuccess) error = cudaSetDevice(options.device);
    if (error != cudaSuccess) {
      return Status(StatusCode::kUnavailable, "CUDA device " + std::to_string(options.device) +
                                                  ": " + cudaGetErrorString(error));
    }
    auto blas = cuda::load_cublas();
    if (!blas) return blas.status();
    // Host-writable managed memory only where the CPU may touch it while kernels run.
    int concurrent_managed = 0;
    cudaDeviceGetAttribute(&concurrent_managed, cudaDevAttrConcurrentManagedAccess, options.device);
    const bool host_accessible = prop.integrated != 0 && concurrent_managed != 0;
    cuda::AttentionTiling tiling;
    if (Status launches = cuda::check_attention_launches(prop, &tiling); !launches.is_ok()) {
      return launches;
    }
    if (options.attention_tiling < 0) tiling.max_head_dim = 0;
    auto backend = std::unique_ptr<CudaBackend>(
        new CudaBackend(options, *blas, host_accessible, prop.multiProcessorCount, tiling));
    // cuBLAS picks its algorithms per device and shape: one product checked against our own
    // kernel before any model trusts it. So is the tiled attention kernel, against the
    // per-row one.
    if (Status gemm = cuda::check_gemm(backend->linear_context_); !gemm.is_ok()) return gemm;
    if (Status tiled = cuda::check_attention_tiling(tiling, backend->stream_); !tiled.is_ok()) {
      return tiled;
    }
    return std::unique_ptr<Backend>(std::move(backend));
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    for (int i = 0; i < 2; ++i) {
      if (staging_[i] != nullptr) cudaFreeHost(staging_[i]);
      if (staging_done_[i] != nullptr) cudaEventDestroy(staging_done_[i]);
    }
    blas_->destroy(cublas_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda:" + std::to_string(device_); }
  DType activation_dtype() const override { return DType::kF32; }
  DType kv_dtype() const override { return kv_dtype_; }

  // ---- memory ---------------------------------------------------------------------------
  Expected<Buffer> allocate(size_t size_bytes) override {
    use_device();
    void* data = nullptr;
    const size_t bytes = std::max<size_t>(size_bytes, 1);
    // Integrated GPUs (GB10) share the host's memory: managed memory lets model loading
    // read files straight into it, and it is counted in /proc/meminfo like any other.
    const cudaError_t error =
        host_accessible_ ? cudaMallocManaged(&data, bytes) : cudaMalloc(&data, bytes);
    if (error != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error state
      return Status(StatusCode::kResourceExhausted, name() + " backend: cannot allocate " +
                                                        std::to_string(size_bytes) +
                                                        " bytes: " + cudaGetErrorString(error));
    }
    return Buffer(data, size_bytes, [](void* p) { cudaFree(p); });
  }
  bool memory_is_host_accessible() const override { return host_accessible_; }
  Expected<std::unique_ptr<VirtualRange>> reserve_virtual(size_t size_bytes) override {
    use_device();
    // Only this backend's stream reads the range: a decommit waits for it alone.
    return virtual_memory_.reserve(size_bytes, stream_);
  }
  bool virtual_commit_is_costly() const override { return virtual_memory_.supported(); }
  void upload(void* dst, const void* src_host, size_t size_bytes) override {
    if (size_bytes == 0) return;
    use_device();
    if (size_bytes <= kDirectUploadBytes) {
      SPARKD_CUDA_CHECK(
          cudaMemcpyAsync(dst, src_host, size_bytes, cudaMemcpyHostToDevice, stream_));
    } else {
      upload_staged(static_cast<char*>(dst), static_cast<const char*>(src_host), size_bytes);
    }
    // The caller may reuse its host memory as soon as this returns.
    stream_idle();
  }
  void fill_zero(void* dst, size_t size_bytes) override {
    if (size_bytes == 0) return;
    use_device();
    SPARKD_CUDA_CHECK(cudaMemsetAsync(dst, 0, size_bytes, stream_));
  }
  void download_f32(const Tensor& src, std::span<float> dst) override {
    checks_.download_f32(src, dst.size());
    if (dst.empty()) return;
    use_device();
    const void* from = src.data;
    if (src.dtype != DType::kF32) {
      void* converted = download_scratch_.get(dst.size() * sizeof(float));
      cuda::gather_rows(src.data, src.dtype, src.cols(), nullptr, src.rows(), converted,
                        DType::kF32, stream_);
      from = converted;
    }
    SPARKD_CUDA_CHECK(cudaMemcpyAsync(dst.data(), from, dst.size() * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_));
    stream_idle();
  }
  void synchronize() override {
    use_device();
    stream_idle();
  }

  // ---- ops ------------------------------------------------------------------------------
  void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) override {
    checks_.linear(x, weight, bias, y);
    if (bias) checks_.float_tensor("linear", "bias", *bias);
    use_device();
    cuda::linear(linear_context_, x.as<const float>(), x.rows(), x.cols(), weight.data,
                 weight.dtype, weight.dim(0), bias ? bias->data : nullptr,
                 bias ? bias->dtype : DType::kF32, y.as<float>());
  }

  void gather_rows(const Tensor& src, std::span<const int32_t> rows, Tensor& out) override {
    checks_.gather_rows(src, rows, out);
    checks_.float_tensor("gather_rows", "out", out);
    use_device();
    cuda::gather_rows(src.data, src.dtype, src.cols(), arguments_.push(rows, stream_),
                      static_cast<int64_t>(rows.size()), out.data, out.dtype, stream_);
  }

  void scatter_add_rows(const Tensor& src, std::span<const int32_t> rows,
                        std::span<const float> scales, Tensor& dst) override {
    checks_.scatter_add_rows(src, rows, scales, dst);
    use_device();
    const int32_t* device_rows = arguments_.push(rows, stream_);
    const float* device_scales = arguments_.push(scales, stream_);
    cuda::scatter_add_rows(src.as<const float>(), device_rows, device_scales,
                           static_cast<int64_t>(rows.size()), dst.cols(), dst.as<float>(), stream_);
  }

  void add(const Tensor& a, const Tensor& b, Tensor& out) override {
    const bool broadcast = checks_.add(a, b, out);
    checks_.float_tensor("add", "b", b);
    use_device();
    cuda::add(a.as<const float>(), b.data, b.dtype, broadcast, a.rows(), a.cols(), out.as<float>(),
              stream_);
  }

  void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override {
    checks_.rms_norm(x, weight, out);
    checks_.float_tensor("rms_norm", "weight", weight);
    use_device();
    cuda::rms_norm(x.as<const float>(), weight.data, weight.dtype, eps, x.rows(), x.cols(),
                   out.as<float>(), stream_);
  }

  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                  Tensor& out) override {
    checks_.layer_norm(x, weight, bias, out);
    checks_.float_tensor("layer_norm", "weight", weight);
    checks_.float_tensor("layer_norm", "bias", bias);
    use_device();
    cuda::layer_norm(x.as<const float>(), weight.data, weight.dtype, bias.data, bias.dtype, eps,
                     x.rows(), x.cols(), out.as<float>(), stream_);
  }

  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
    checks_.binary_elementwise("silu_mul", gate, up, out);
    pointwise(cuda::Pointwise::kSiluMul, gate, &up, 0.0f, 0.0f, out);
  }

  void clamped_swiglu(const Tensor& gate, const Tensor& up, float alpha, float limit,
                      Tensor& out) override {
    checks_.binary_elementwise("clamped_swiglu", gate, up, out);
    pointwise(cuda::Pointwise::kClampedSwiglu, gate, &up, alpha, limit, out);
  }

  void gelu(const Tensor& x, bool tanh_approximation, Tensor& out) override {
    checks_.unary_elementwise("gelu", x, out);
    pointwise(tanh_approximation ? cuda::Pointwise::kGeluTanh : cuda::Pointwise::kGeluErf, x,
              nullptr, 0.0f, 0.0f, out);
  }

  void tanh(const Tensor& x, Tensor& out) override {
    checks_.unary_elementwise("tanh", x, out);
    pointwise(cuda::Pointwise::kTanh, x, nullptr, 0.0f, 0.0f, out);
  }

  void sigmoid_mul(const Tensor& gate, const Tensor& x, Tensor& out) override {
    if (!checks_.sigmoid_mul(gate, x, out)) {
      pointwise(cuda::Pointwise::kSigmoidMul, gate, &x, 0.0f, 0.0f, out);
      return;
    }
    use_device();
    cuda::sigmoid_mul_rows(gate.as<const float>(), x.as<const float>(), x.numel(), x.cols(),
                           out.as<float>(), stream_);
  }

  void split_head_halves(const Tensor& x, Tensor& first, Tensor& second) override {
    checks_.split_head_halves(x, first, second);
    use_device();
    cuda::split_head_halves(x.as<const float>(), x.dim(0) * x.dim(1), first.dim(2),
                            first.as<float>(), second.as<float>(), stream_);
  }

  void rope(Tensor& x, std::span<const int32_t> positions, const Tensor& inv_freq) override {
    checks_.rope(x, positions, inv_freq);
    checks_.float_tensor("rope", "inv_freq", inv_freq);
    use_device();
    cuda::rope(x.as<float>(), x.dim(0), x.dim(1), x.dim(2), inv_freq.numel(),
               arguments_.push(positions, stream_), inv_freq.data, inv_freq.dtype, stream_);
  }

  void causal_conv1d_silu(const Tensor& x, const Tensor& weight,
                          std::span<const RecurrentSequence> sequences, Tensor& out) override {
    checks_.causal_conv1d_silu(x, weight, sequences, out);
    checks_.float_tensor("causal_conv1d_silu", "weight", weight);
    use_device();
    const std::vector<RecurrentSequenceArgs> args = recurrent_args(sequences);
    cuda::causal_conv1d_silu(x.as<const float>(), weight.data, weight.dtype, x.dim(1),
                             weight.dim(1), arguments_.push(args, stream_),
                             static_cast<int64_t>(args.size()), out.as<float>(), stream_);
  }

  void gated_delta_net(const Tensor& qkv, const Tensor& a, const Tensor& b, const Tensor& a_neg,
                       const Tensor& dt_bias, int32_t key_heads, bool value_heads_tiled,
                       std::span<const RecurrentSequence> sequences, Tensor& out) override {
    const DeltaNetShape shape = checks_.gated_delta_net(qkv, a, b, a_neg, dt_bias, key_heads,
                                                        value_heads_tiled, sequences, out);
    checks_.float_tensor("gated_delta_net", "a_neg", a_neg);
    checks_.float_tensor("gated_delta_net", "dt_bias", dt_bias);
    use_device();
    const std::vector<RecurrentSequenceArgs> args = recurrent_args(sequences);
    cuda::gated_delta_net(qkv.as<const float>(), a.as<const float>(), b.as<const float>(),
                          a_neg.data, a_neg.dtype, dt_bias.data, dt_bias.dtype, shape,
                          arguments_.push(args, stream_), static_cast<int64_t>(args.size()),
                          out.as<float>(), stream_);
  }

  void store_kv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                const KvLayerView& kv) override {
    checks_.store_kv(k, v, slots, kv);
    checks_.float_tensor("store_kv", "the cache", kv.keys);
    use_device();
    cuda::store_kv(k.as<const float>(), v.as<const float>(), arguments_.push(slots, stream_),
                   static_cast<int64_t>(slots.size()), kv.keys.dim(1) * kv.keys.dim(2),
                   kv.keys.data, kv.values.data, kv.keys.dtype, stream_);
  }

  void attention(const Tensor& q, const KvLayerView& kv,
                 std::span<const AttentionSequence> sequences, const AttentionParams& params,
                 Tensor& out) override {
    checks_.attention(q, kv, sequences, params, out);
    checks_.float_tensor("attention", "the cache", kv.keys);
    use_device();
    std::vector<AttentionSequenceArgs> args;
    std::vector<int32_t> row_sequence(static_cast<size_t>(q.dim(0)), 0);
    std::vector<int32_t> block_tables;
    for (size_t s = 0; s < sequences.size(); ++s) {
      const AttentionSequence& seq = sequences[s];
      args.push_back({seq.query_begin, seq.query_tokens, seq.context_tokens, seq.kv_slot_begin,
                      static_cast<int32_t>(block_tables.size())});
      block_tables.insert(block_tables.end(), seq.block_table.begin(), seq.block_table.end());
      for (int32_t r = 0; r < seq.query_tokens; ++r) {
        row_sequence[static_cast<size_t>(seq.query_begin + r)] = static_cast<int32_t>(s);
      }
    }
    // Rows no sequence owns are left alone, as on the CPU: only owned rows are launched.
    cuda::AttentionLaunch launch;
    launch.q = q.as<const float>();
    launch.out = out.as<float>();
    launch.heads = static_cast<int32_t>(q.dim(1));
    launch.kv_heads = static_cast<int32_t>(kv.keys.dim(1));
    launch.head_dim = static_cast<int32_t>(kv.keys.dim(2));
    launch.keys = kv.keys.data;
    launch.values = kv.values.data;
    launch.kv_type = kv.keys.dtype;
    launch.block_tokens = kv.block_tokens;
    launch.params = params;
    launch.params.sinks = nullptr;  // host metadata; the kernel reads launch.sinks
    launch.sinks = params.sinks != nullptr ? params.sinks->as<const float>() : nullptr;
    launch.sequences = arguments_.push(args, stream_);
    launch.block_tables = arguments_.push(block_tables, stream_);
    // Prefill sequences through the tiled kernel (one launch), the rest row by row: one
    // launch per contiguous run of their rows, which keeps rows no sequence owns untouched.
    const std::vector<uint8_t> tiled = plan_tiles(launch, sequences);
    if (launch.tile_count > 0) cuda::attention(launch, stream_);
    launch.tiles = nullptr;
    launch.tile_count = 0;
    std::vector<uint8_t> per_row(static_cast<size_t>(q.dim(0)), 0);
    for (size_t s = 0; s < sequences.size(); ++s) {
      if (!tiled[s])
        std::fill_n(per_row.begin() + sequences[s].query_begin, sequences[s].query_tokens, 1);
    }
    const int32_t* device_rows = nullptr;
    for (int64_t begin = 0; begin < q.dim(0);) {
      if (!per_row[static_cast<size_t>(begin)]) {
        ++begin;
        continue;
      }
      int64_t end = begin;
      while (end < q.dim(0) && per_row[static_cast<size_t>(end)]) ++end;
      if (device_rows == nullptr) device_rows = arguments_.push(row_sequence, stream_);
      cuda::AttentionLaunch part = launch;
      part.row_sequence = device_rows;
      part.first_row = begin;
      part.rows = end - begin;
      plan_split(part, sequences);
      cuda::attention(part, stream_);
      begin = end;
    }
  }

  // ---- mixture of experts --------------------------------------------------------------
  void moe_route(const Tensor& logits, int32_t top_k, bool normalize, Tensor& expert_ids,
                 Tensor& expert_weights) override {
    checks_.moe_route(logits, top_k, expert_ids, expert_weights);
    if (logits.cols() > cuda::kMaxRoutedExperts || top_k > cuda::kMaxRoutedTopK) {
      route_on_host(*this, logits, top_k, normalize, expert_ids, expert_weights);
      return;
    }
    use_device();
    cuda::moe_route(logits.as<const float>(), logits.rows(), static_cast<int32_t>(logits.cols()),
                    top_k, normalize, expert_ids.as<float>(), expert_weights.as<float>(), stream_);
  }

  int64_t moe_experts(const Tensor& x, const Tensor& expert_ids, const Tensor& expert_weights,
                      const MoeExperts& experts, const MoeScratch& scratch,
                      Tensor& residual) override {
    checks_.moe_experts(x, expert_ids, expert_weights, experts, scratch, residual);
    const int64_t tokens = x.rows();
    const auto top_k = static_cast<int32_t>(expert_ids.cols());
    // Many tokens: each expert once over all of its tokens (GEMMs), which needs the routing
    // on the host.
    if (tokens > kMoeAssignmentTokens) {
      return run_experts_by_expert(*this, x, expert_ids, expert_weights, experts, scratch,
                                   residual);
    }
    use_device();
    cuda::moe_experts_assigned(device_experts(experts), x.as<const float>(), tokens, top_k,
                               expert_ids.as<const float>(), expert_weights.as<const float>(),
                               scratch.gate.as<float>(), scratch.up.as<float>(),
                               scratch.output.as<float>(), residual.as<float>(), stream_);
    return tokens * top_k;
  }

  void mean_rows(const Tensor& x, std::span<const RowSpan> spans, Tensor& out) override {
    checks_.mean_rows(x, spans, out);
    use_device();
    cuda::mean_rows(x.as<const float>(), x.cols(), arguments_.push(spans, stream_),
                    static_cast<int64_t>(spans.size()), out.as<float>(), stream_);
  }

  void l2_normalize_rows(Tensor& x) override {
    checks_.l2_normalize_rows(x);
    use_device();
    cuda::l2_normalize_rows(x.as<float>(), x.rows(), x.cols(), stream_);
  }

 private:
  CudaBackend(const CudaBackendOptions& options, const cuda::Cublas* blas, bool host_accessible,
              int multiprocessors, const cuda::AttentionTiling& tiling)
      : device_(options.device),
        host_accessible_(host_accessible),
        multiprocessors_(multiprocessors),
        attention_split_keys_(options.attention_split_keys),
        attention_tiling_(options.attention_tiling),
        tiling_(tiling),
        kv_dtype_(options.f32_kv ? DType::kF32 : kCudaKvDtype),
        checks_("cuda"),
        virtual_memory_(options.device),
        blas_(blas) {
    SPARKD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    SPARKD_CUBLAS_CHECK(blas_->create(&cublas_));
    SPARKD_CUBLAS_CHECK(blas_->set_stream(cublas_, stream_));
    arguments_.init(size_t{1} << 20);
    linear_context_.stream = stream_;
    linear_context_.blas = blas_;
    linear_context_.cublas = cublas_;
    linear_context_.x_scratch = &gemm_x_scratch_;
    linear_context_.weight_scratch = &gemm_weight_scratch_;
    linear_context_.input_copy = &input_copy_scratch_;
    linear_context_.f32_gemm = options.f32_gemm;
  }

  // Large uploads (weights) go through two pinned buffers: while one is copied to the device
  // by DMA, the CPU fills the other, so the copy runs at the link's speed instead of the
  // driver's pageable-memory path.
  static constexpr size_t kDirectUploadBytes = size_t{1} << 20;
  static constexpr size_t kStagingBytes = size_t{32} << 20;

  void upload_staged(char* dst, const char* src, size_t size_bytes) {
    if (staging_[0] == nullptr) {
      for (int i = 0; i < 2; ++i) {
        SPARKD_CUDA_CHECK(cudaMallocHost(&staging_[i], kStagingBytes));
        SPARKD_CUDA_CHECK(cudaEventCreateWithFlags(&staging_done_[i], cudaEventDisableTiming));
      }
    }
    bool in_flight[2] = {false, false};
    int next = 0;
    for (size_t offset = 0; offset < size_bytes; offset += kStagingBytes, next ^= 1) {
      const size_t bytes = std::min(kStagingBytes, size_bytes - offset);
      if (in_flight[next]) SPARKD_CUDA_CHECK(cudaEventSynchronize(staging_done_[next]));
      std::memcpy(staging_[next], src + offset, bytes);
      SPARKD_CUDA_CHECK(
          cudaMemcpyAsync(dst + offset, staging_[next], bytes, cudaMemcpyHostToDevice, stream_));
      SPARKD_CUDA_CHECK(cudaEventRecord(staging_done_[next], stream_));
      in_flight[next] = true;
    }
  }

  // Waits for the stream; what only queued work could still use is freed then.
  void stream_idle() {
    SPARKD_CUDA_CHECK(cudaStreamSynchronize(stream_));
    arguments_.release_retired();
  }

  // Ops may be called from any thread (a runner's); the CUDA runtime's current device is
  // per thread.
  void use_device() const { SPARKD_CUDA_CHECK(cudaSetDevice(device_)); }

  void pointwise(cuda::Pointwise op, const Tensor& a, const Tensor* b, float alpha, float limit,
                 Tensor& out) {
    use_device();
    cuda::pointwise(op, a.as<const float>(), b != nullptr ? b->as<const float>() : nullptr, alpha,
                    limit, a.numel(), out.as<float>(), stream_);
  }

  // The sequences the tiled kernel takes, flagged, with their tiles of up to
  // kAttentionTileRows rows set on `launch`. Left to the per-row kernel: sequences of fewer
  // than kMinTiledRows rows (decode rows, whose long contexts want split-KV), and every
  // sequence when the tiles would leave most of the GPU idle over a long context (a short
  // chunk after a long prompt: split-KV fills the GPU; tiles would not). The options may
  // force either way.
  std::vector<uint8_t> plan_tiles(cuda::AttentionLaunch& launch,
                                  std::span<const AttentionSequence> sequences) {
    constexpr int32_t kMinTiledRows = 8;
    constexpr int64_t kLongContext = 512;
    std::vector<uint8_t> tiled(sequences.size(), 0);
    // (attention_tiling < 0 left max_head_dim at 0 at creation.)
    if (launch.head_dim > tiling_.max_head_dim) return tiled;
    std::vector<cuda::AttentionTile> tiles;
    int64_t longest = 0;
    for (size_t s = 0; s < sequences.size(); ++s) {
      const AttentionSequence& seq = sequences[s];
      if (seq.query_tokens == 0 || (attention_tiling_ == 0 && seq.query_tokens < kMinTiledRows)) {
        continue;
      }
      tiled[s] = 1;
      longest = std::max<int64_t>(longest, seq.context_tokens);
      for (int32_t row = 0; row < seq.query_tokens; row += cuda::kAttentionTileRows) {
        tiles.push_back({static_cast<int32_t>(s), seq.query_begin + row,
                         std::min(cuda::kAttentionTileRows, seq.query_tokens - row)});
      }
    }
    const int64_t blocks = static_cast<int64_t>(tiles.size()) * launch.heads;
    if (attention_tiling_ == 0 && blocks < 2 * int64_t{multiprocessors_} &&
        longest >= kLongContext) {
      std::fill(tiled.begin(), tiled.end(), 0);
      return tiled;
    }
    if (!tiles.empty()) {
      launch.tiles = arguments_.push(tiles, stream_);
      launch.tile_count = static_cast<int32_t>(tiles.size());
    }
    return tiled;
  }

  // Split-KV for a launch whose (row, head) blocks would not fill the GPU: key chunks of at
  // least kMinSplitKeys, enough of them for about two blocks per multiprocessor.
  void plan_split(cuda::AttentionLaunch& launch, std::span<const AttentionSequence> sequences) {
    constexpr int64_t kMinSplitKeys = 256;
    int64_t longest = 0;
    for (const AttentionSequence& seq : sequences) {
      if (seq.query_begin < launch.first_row + launch.rows &&
          seq.query_begin + seq.query_tokens > launch.first_row) {
        longest = std::max<int64_t>(longest, seq.context_tokens);
      }
    }
    int64_t split_keys = 0;
    if (attention_split_keys_ > 0) {
      split_keys = attention_split_keys_;
    } else if (attention_split_keys_ == 0) {
      const int64_t blocks = launch.rows * launch.heads;
      const int64_t wanted_chunks = (2 * int64_t{multiprocessors_} + blocks - 1) / blocks;
      if (wanted_chunks > 1 && longest >= 2 * kMinSplitKeys) {
        split_keys = std::max(kMinSplitKeys, (longest + wanted_chunks - 1) / wanted_chunks);
      }
    }
    // At most kMaxChunks chunks (a grid dimension, and scratch per row and head).
    constexpr int64_t kMaxChunks = 1024;
    split_keys = std::max(split_keys, (longest + kMaxChunks - 1) / kMaxChunks);
    if (split_keys <= 0 || longest <= split_keys) return;
    launch.split_keys = static_cast<int32_t>(split_keys);
    launch.chunks = static_cast<int32_t>((longest + split_keys - 1) / split_keys);
    const size_t floats =
        cuda::attention_partial_floats(launch.rows, launch.heads, launch.head_dim, launch.chunks);
    auto* partial = static_cast<float*>(attention_scratch_.get(floats * sizeof(float)));
    const size_t parts = static_cast<size_t>(launch.rows) * launch.heads * launch.chunks;
    launch.partial_acc = partial;
    launch.partial_max = partial + parts * launch.head_dim;
    launch.partial_sum = launch.partial_max + parts;
  }

  // A MoE layer's experts as the device reads them: their pointers (gate, up, down, then each
  // bias list present) pushed through the argument ring with this call's other tables.
  cuda::MoeDeviceExperts device_experts(const MoeExperts& experts) {
    const size_t count = experts.gate.size();
    std::vector<const void*> pointers;
    for (std::span<const Tensor> list : {experts.gate, experts.up, experts.down, experts.gate_bias,
                                         experts.up_bias, experts.down_bias}) {
      for (const Tensor& t : list) pointers.push_back(t.data);
    }
    const void* const* base = arguments_.push(pointers, stream_);
    cuda::MoeDeviceExperts table;
    table.count = static_cast<int32_t>(count);
    table.hidden = experts.gate[0].cols();
    table.inter = experts.gate[0].rows();
    size_t next_bias = 3 * count;
    const auto projection = [&](std::span<const Tensor> matrices, size_t at,
                                std::span<const Tensor> biases) {
      cuda::MoeDeviceProjection p;
      p.weights = base + at;
      p.type = matrices[0].dtype;
      p.aligned = std::all_of(matrices.begin(), matrices.end(), [](const Tensor& t) {
        return reinterpret_cast<uintptr_t>(t.data) % 16 == 0;
      });
      if (!biases.empty()) {
        p.biases = base + next_bias;
        p.bias_type = biases[0].dtype;
        next_bias += count;
      }
      return p;
    };
    table.gate = projection(experts.gate, 0, experts.gate_bias);
    table.up = projection(experts.up, count, experts.up_bias);
    table.down = projection(experts.down, 2 * count, experts.down_bias);
    table.clamped_swiglu = experts.clamped_swiglu;
    table.swiglu_alpha = experts.swiglu_alpha;
    table.swiglu_limit = experts.swiglu_limit;
    return table;
  }

  static std::vector<RecurrentSequenceArgs> recurrent_args(
      std::span<const RecurrentSequence> sequences) {
    std::vector<RecurrentSequenceArgs> args;
    args.reserve(sequences.size());
    for (const RecurrentSequence& seq : sequences) {
      args.push_back(
          {seq.row_begin, seq.rows, seq.conv_state.as<float>(), seq.delta_state.as<float>()});
    }
    return args;
  }

  int device_ = 0;
  // Integrated GPUs (GB10) whose memory the CPU may write while kernels run: allocations are
  // managed memory, which model loading fills straight from file reads.
  bool host_accessible_ = false;
  int multiprocessors_ = 1;
  int attention_split_keys_ = 0;  // CudaBackendOptions::attention_split_keys
  int attention_tiling_ = 0;      // CudaBackendOptions::attention_tiling
  cuda::AttentionTiling tiling_;  // what the tiled kernel takes on this device
  DType kv_dtype_ = kCudaKvDtype;
  const OpChecks checks_;
  cuda::VirtualMemory virtual_memory_;
  cudaStream_t stream_ = nullptr;
  const cuda::Cublas* blas_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  ArgumentRing arguments_;
  cuda::DeviceScratch gemm_x_scratch_, gemm_weight_scratch_, input_copy_scratch_, download_scratch_,
      attention_scratch_;
  cuda::LinearContext linear_context_;
  void* staging_[2] = {nullptr, nullptr};  // pinned, for upload_staged
  cudaEvent_t staging_done_[2] = {nullptr, nullptr};
};

}  // namespace

Expected<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options) {
  return CudaBackend::create(options);
}

}  // namespace sparkd
