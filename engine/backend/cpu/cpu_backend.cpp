// The CPU backend: host memory, shape checks, and dispatch to the kernels of cpu_kernels.h.
//
// Every op checks its tensors before touching them (engine/backend/op_checks.h, shared with the
// CUDA backend); a mismatch is a bug in the caller, so it aborts with a message naming the op
// and the shapes.
#include "engine/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "engine/backend/cpu/cpu_kernels.h"
#include "engine/backend/op_checks.h"

namespace sparkd {
namespace {

using cpu::KernelConfig;

constexpr size_t kAlignmentBytes = 64;  // a cache line, and an AVX-512 register

// A small tensor (weights of norms, biases, inv_freq) as F32: the tensor's own memory when
// it already is F32, a converted copy otherwise.
class F32Values {
 public:
  explicit F32Values(const Tensor& t) {
    if (t.dtype == DType::kF32) {
      data_ = t.as<const float>();
    } else {
      copy_.resize(static_cast<size_t>(t.numel()));
      cpu::convert_to_f32(t.data, t.dtype, 0, t.numel(), copy_.data());
      data_ = copy_.data();
    }
  }
  const float* data() const { return data_; }

 private:
  const float* data_ = nullptr;
  std::vector<float> copy_;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options) : kv_dtype_(options.kv_dtype) {
    config_.num_threads = options.num_threads;
    if (config_.num_threads <= 0) {
#if defined(_OPENMP)
      config_.num_threads = omp_get_max_threads();
#else
      config_.num_threads = 1;
#endif
    }
    max_threads_ = config_.num_threads;
    const cpu::SimdLevel widest = cpu::detected_simd_level();
    switch (options.kernels) {
      case CpuKernels::kWidest:
        config_.simd = widest;
        break;
      case CpuKernels::kAvx2:
        config_.simd = std::min(widest, cpu::SimdLevel::kAvx2);
        break;
      case CpuKernels::kPortable:
        config_.simd = cpu::SimdLevel::kPortable;
        break;
    }
    config_.avx512_vnni = config_.simd == cpu::SimdLevel::kAvx512 && cpu::detected_avx512_vnni();
    config_.arm_dotprod = options.kernels != CpuKernels::kPortable && cpu::detected_arm_dotprod();
    config_.arm_i8mm =
        config_.arm_dotprod && options.kernels == CpuKernels::kWidest && cpu::detected_arm_i8mm();
  }

  std::string name() const override {
    return "cpu";
  }
  void set_compute_threads(int threads) override {
    config_.num_threads = threads <= 0 ? max_threads_ : std::min(threads, max_threads_);
  }
  DType activation_dtype() const override {
    return DType::kF32;
  }
  DType kv_dtype() const override {
    return kv_dtype_;
  }

  // ---- memory ---------------------------------------------------------------------------
  Expected<Buffer> allocate(size_t size_bytes) override {
    // aligned_alloc wants a multiple of the alignment; a zero-byte request still gets memory
    // so that data() is never null for a live buffer.
    const size_t rounded_bytes =
        (std::max<size_t>(size_bytes, 1) + kAlignmentBytes - 1) / kAlignmentBytes * kAlignmentBytes;
    void* data = std::aligned_alloc(kAlignmentBytes, rounded_bytes);
    if (data == nullptr) {
      return Status(
          StatusCode::kResourceExhausted,
          "cpu backend: cannot allocate " + std::to_string(size_bytes) + " bytes of host memory");
    }
    return Buffer(data, size_bytes, [](void* p) { std::free(p); });
  }
  bool memory_is_host_accessible() const override {
    return true;
  }
  void upload(void* dst, const void* src_host, size_t size_bytes) override {
    if (size_bytes != 0) std::memcpy(dst, src_host, size_bytes);
  }
  void fill_zero(void* dst, size_t size_bytes) override {
    if (size_bytes != 0) std::memset(dst, 0, size_bytes);
  }
  void download_f32(const Tensor& src, std::span<float> dst) override {
    checks_.download_f32(src, dst.size());
    cpu::convert_to_f32(src.data, src.dtype, 0, src.numel(), dst.data());
  }

  // ---- ops ------------------------------------------------------------------------------
  void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) override {
    checks_.linear(x, weight, bias, y);
    std::vector<float> x_copy;
    const float* x_data = x.as<const float>();
    if (OpChecks::overlaps(x, y)) {  // y = x·Wᵀ in place (N == K): read x from a copy
      x_copy.assign(x_data, x_data + x.numel());
      x_data = x_copy.data();
    }
    std::optional<F32Values> bias_f32;
    if (bias) bias_f32.emplace(*bias);
    cpu::linear(config_, x_data, x.rows(), x.cols(), weight.data, weight.dtype, weight.dim(0),
                bias_f32 ? bias_f32->data() : nullptr, y.as<float>());
  }

  void gather_rows(const Tensor& src, std::span<const int32_t> rows, Tensor& out) override {
    checks_.gather_rows(src, rows, out);
    const int64_t cols = src.cols();
    const size_t src_row_bytes = src.row_bytes();
    cpu::parallel_for(config_, static_cast<int64_t>(rows.size()), cols, [&](int64_t i) {
      const int64_t row = rows[i];
      if (src.dtype == out.dtype) {
        std::memcpy(static_cast<char*>(out.data) + i * src_row_bytes,
                    static_cast<const char*>(src.data) + row * src_row_bytes, src_row_bytes);
        return;
      }
      float* row_f32 = cpu::thread_scratch(0, static_cast<size_t>(cols));
      cpu::convert_to_f32(src.data, src.dtype, row * cols, cols, row_f32);
      cpu::convert_from_f32(row_f32, cols, out.dtype, out.data, i * cols);
    });
  }

  void scatter_add_rows(const Tensor& src, std::span<const int32_t> rows,
                        std::span<const float> scales, Tensor& dst) override {
    checks_.scatter_add_rows(src, rows, scales, dst);
    const int64_t cols = dst.cols();
    const float* in = src.as<const float>();
    float* out = dst.as<float>();
    // Rows are distinct, so rows can go to threads independently.
    cpu::parallel_for(config_, static_cast<int64_t>(rows.size()), cols, [&](int64_t i) {
      const float scale = scales[i];
      const float* from = in + i * cols;
      float* to = out + static_cast<int64_t>(rows[i]) * cols;
      for (int64_t c = 0; c < cols; ++c) to[c] += scale * from[c];
    });
  }

  void add(const Tensor& a, const Tensor& b, Tensor& out) override {
    const bool broadcast = checks_.add(a, b, out);
    const F32Values b_f32(b);
    cpu::add(config_, a.as<const float>(), b_f32.data(), broadcast, a.rows(), a.cols(),
             out.as<float>());
  }

  void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override {
    checks_.rms_norm(x, weight, out);
    const F32Values weight_f32(weight);
    cpu::rms_norm(config_, x.as<const float>(), weight_f32.data(), eps, x.rows(), x.cols(),
                  out.as<float>());
  }

  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                  Tensor& out) override {
    checks_.layer_norm(x, weight, bias, out);
    const F32Values weight_f32(weight);
    const F32Values bias_f32(bias);
    cpu::layer_norm(config_, x.as<const float>(), weight_f32.data(), bias_f32.data(), eps, x.rows(),
                    x.cols(), out.as<float>());
  }

  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
    checks_.binary_elementwise("silu_mul", gate, up, out);
    cpu::silu_mul(config_, gate.as<const float>(), up.as<const float>(), gate.numel(),
                  out.as<float>());
  }

  void clamped_swiglu(const Tensor& gate, const Tensor& up, float alpha, float limit,
                      Tensor& out) override {
    checks_.binary_elementwise("clamped_swiglu", gate, up, out);
    cpu::clamped_swiglu(config_, gate.as<const float>(), up.as<const float>(), alpha, limit,
                        gate.numel(), out.as<float>());
  }

  void gelu(const Tensor& x, bool tanh_approximation, Tensor& out) override {
    checks_.unary_elementwise("gelu", x, out);
    cpu::gelu(config_, x.as<const float>(), tanh_approximation, x.numel(), out.as<float>());
  }

  void tanh(const Tensor& x, Tensor& out) override {
    checks_.unary_elementwise("tanh", x, out);
    cpu::tanh(config_, x.as<const float>(), x.numel(), out.as<float>());
  }

  void sigmoid_mul(const Tensor& gate, const Tensor& x, Tensor& out) override {
    const bool per_row = checks_.sigmoid_mul(gate, x, out);
    cpu::sigmoid_mul(config_, gate.as<const float>(), x.as<const float>(), x.numel(),
                     per_row ? x.cols() : 1, out.as<float>());
  }

  void split_head_halves(const Tensor& x, Tensor& first, Tensor& second) override {
    checks_.split_head_halves(x, first, second);
    cpu::split_halves(config_, x.as<const float>(), x.dim(0) * x.dim(1), first.dim(2),
                      first.as<float>(), second.as<float>());
  }

  void rope(Tensor& x, std::span<const int32_t> positions, const Tensor& inv_freq) override {
    checks_.rope(x, positions, inv_freq);
    const F32Values inv_freq_f32(inv_freq);
    cpu::rope(config_, x.as<float>(), x.dim(0), x.dim(1), x.dim(2), inv_freq.numel(), positions,
              inv_freq_f32.data());
  }

  void causal_conv1d_silu(const Tensor& x, const Tensor& weight,
                          std::span<const RecurrentSequence> sequences, Tensor& out) override {
    checks_.causal_conv1d_silu(x, weight, sequences, out);
    const F32Values weight_f32(weight);
    cpu::causal_conv1d_silu(config_, x.as<const float>(), weight_f32.data(), x.dim(1),
                            weight.dim(1), sequences, out.as<float>());
  }

  void gated_delta_net(const Tensor& qkv, const Tensor& a, const Tensor& b, const Tensor& a_neg,
                       const Tensor& dt_bias, int32_t key_heads, bool value_heads_tiled,
                       std::span<const RecurrentSequence> sequences, Tensor& out) override {
    const DeltaNetShape shape = checks_.gated_delta_net(qkv, a, b, a_neg, dt_bias, key_heads,
                                                        value_heads_tiled, sequences, out);
    const F32Values a_neg_f32(a_neg), dt_bias_f32(dt_bias);
    cpu::gated_delta_net(config_, qkv.as<const float>(), a.as<const float>(), b.as<const float>(),
                         a_neg_f32.data(), dt_bias_f32.data(), shape, sequences, out.as<float>());
  }

  void store_kv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                const KvLayerView& kv) override {
    checks_.store_kv(k, v, slots, kv);
    cpu::store_kv(config_, k.as<const float>(), v.as<const float>(), slots, kv);
  }

  void attention(const Tensor& q, const KvLayerView& kv,
                 std::span<const AttentionSequence> sequences, const AttentionParams& params,
                 Tensor& out) override {
    checks_.attention(q, kv, sequences, params, out);
    cpu::attention(config_, q.as<const float>(), q.dim(1), kv, sequences, params, out.as<float>());
  }

  void mean_rows(const Tensor& x, std::span<const RowSpan> spans, Tensor& out) override {
    checks_.mean_rows(x, spans, out);
    cpu::mean_rows(config_, x.as<const float>(), x.cols(), spans, out.as<float>());
  }

  void l2_normalize_rows(Tensor& x) override {
    checks_.l2_normalize_rows(x);
    cpu::l2_normalize_rows(config_, x.as<float>(), x.rows(), x.cols());
  }

 private:
  const OpChecks checks_{"cpu"};
  DType kv_dtype_ = DType::kF32;
  KernelConfig config_;
  int max_threads_ = 1;  // what it was configured with: set_compute_threads never exceeds it
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

std::vector<std::string> detected_cpu_kernel_features() {
  std::vector<std::string> features;
  const cpu::SimdLevel simd = cpu::detected_simd_level();
  if (simd == cpu::SimdLevel::kAvx512) features.push_back("avx512");
  if (simd == cpu::SimdLevel::kAvx512 && cpu::detected_avx512_vnni()) {
    features.push_back("avx512_vnni");
  }
  if (simd >= cpu::SimdLevel::kAvx2) features.push_back("avx2");
  if (cpu::detected_arm_dotprod() && cpu::detected_arm_i8mm()) features.push_back("arm_i8mm");
  if (cpu::detected_arm_dotprod()) features.push_back("arm_dotprod");
  return features;
}

}  // namespace sparkd
