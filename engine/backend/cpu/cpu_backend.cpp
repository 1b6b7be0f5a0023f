// The CPU backend: host memory, shape checks, and dispatch to the kernels of cpu_kernels.h.
//
// Every op checks its tensors before touching them; a mismatch is a bug in the caller, so it
// aborts with a message naming the op and the shapes (see SPARKD_CPU_CHECK).
#include "engine/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "engine/backend/cpu/cpu_kernels.h"

namespace sparkd {
namespace {

using cpu::KernelConfig;

constexpr size_t kAlignmentBytes = 64;  // a cache line, and an AVX-512 register

std::string describe(const Tensor& t) {
  return std::string(dtype_name(t.dtype)) + shape_string(t.shape);
}

void check_f32(const char* op, const char* what, const Tensor& t) {
  SPARKD_CPU_CHECK(t.dtype == DType::kF32, op,
                   std::string(what) + " must be F32 (activations), got " + describe(t));
}

void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  SPARKD_CPU_CHECK(a.numel() == b.numel() && a.cols() == b.cols(), op,
                   "shapes differ: " + describe(a) + " vs " + describe(b));
}

// The sequences of a recurrent op cover rows [0, rows) in order, without gaps.
void check_recurrent_rows(const char* op, std::span<const RecurrentSequence> sequences,
                          int64_t rows) {
  int64_t next = 0;
  for (const RecurrentSequence& seq : sequences) {
    SPARKD_CPU_CHECK(seq.row_begin == next && seq.rows >= 0, op,
                     "sequence rows [" + std::to_string(seq.row_begin) + ", +" +
                         std::to_string(seq.rows) + ") do not follow row " + std::to_string(next));
    next += seq.rows;
  }
  SPARKD_CPU_CHECK(
      next == rows, op,
      "the sequences cover " + std::to_string(next) + " rows of " + std::to_string(rows));
}

bool overlaps(const Tensor& a, const Tensor& b) {
  const char* a_begin = static_cast<const char*>(a.data);
  const char* b_begin = static_cast<const char*>(b.data);
  return a_begin < b_begin + b.size_bytes() && b_begin < a_begin + a.size_bytes();
}

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
  explicit CpuBackend(const CpuBackendOptions& options) {
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
    SPARKD_CPU_CHECK(static_cast<int64_t>(dst.size()) == src.numel(), "download_f32",
                     describe(src) + " into " + std::to_string(dst.size()) + " floats");
    cpu::convert_to_f32(src.data, src.dtype, 0, src.numel(), dst.data());
  }

  // ---- ops ------------------------------------------------------------------------------
  void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) override {
    const int64_t m = x.rows(), k = x.cols(), n = weight.rank() == 2 ? weight.dim(0) : -1;
    const auto shapes = [&] {
      return "x " + describe(x) + ", weight " + describe(weight) + ", bias " +
             (bias ? describe(*bias) : std::string("none")) + ", y " + describe(y);
    };
    check_f32("linear", "x", x);
    check_f32("linear", "y", y);
    SPARKD_CPU_CHECK(weight.rank() == 2 && weight.dim(1) == k && y.rows() == m && y.cols() == n,
                     "linear", "shape mismatch: " + shapes());
    SPARKD_CPU_CHECK(!bias || bias->numel() == n, "linear", "bias shape mismatch: " + shapes());
    std::vector<float> x_copy;
    const float* x_data = x.as<const float>();
    if (overlaps(x, y)) {  // y = x·Wᵀ in place (N == K): read x from a copy
      x_copy.assign(x_data, x_data + x.numel());
      x_data = x_copy.data();
    }
    std::optional<F32Values> bias_f32;
    if (bias) bias_f32.emplace(*bias);
    cpu::linear(config_, x_data, m, k, weight.data, weight.dtype, n,
                bias_f32 ? bias_f32->data() : nullptr, y.as<float>());
  }

  void gather_rows(const Tensor& src, std::span<const int32_t> rows, Tensor& out) override {
    const int64_t cols = src.cols(), src_rows = src.rows();
    SPARKD_CPU_CHECK(
        out.cols() == cols && out.rows() == static_cast<int64_t>(rows.size()), "gather_rows",
        std::to_string(rows.size()) + " rows of " + describe(src) + " into " + describe(out));
    for (int32_t row : rows) {
      SPARKD_CPU_CHECK(row >= 0 && row < src_rows, "gather_rows",
                       "row " + std::to_string(row) + " outside " + describe(src));
    }
    const size_t src_row_bytes = static_cast<size_t>(cols) * dtype_size_bytes(src.dtype);
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
    check_f32("scatter_add_rows", "src", src);
    check_f32("scatter_add_rows", "dst", dst);
    const int64_t cols = dst.cols(), dst_rows = dst.rows();
    SPARKD_CPU_CHECK(src.cols() == cols && src.rows() == static_cast<int64_t>(rows.size()) &&
                         scales.size() == rows.size(),
                     "scatter_add_rows",
                     std::to_string(rows.size()) + " rows (" + std::to_string(scales.size()) +
                         " scales) of " + describe(src) + " into " + describe(dst));
    for (int32_t row : rows) {
      SPARKD_CPU_CHECK(row >= 0 && row < dst_rows, "scatter_add_rows",
                       "row " + std::to_string(row) + " outside " + describe(dst));
    }
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
    check_f32("add", "a", a);
    check_f32("add", "out", out);
    check_same_shape("add", a, out);
    const bool broadcast = b.numel() != a.numel();
    SPARKD_CPU_CHECK(
        (!broadcast && b.cols() == a.cols()) || b.numel() == a.cols(), "add",
        "b " + describe(b) + " is neither a's shape " + describe(a) + " nor one row of it");
    const F32Values b_f32(b);
    cpu::add(config_, a.as<const float>(), b_f32.data(), broadcast, a.rows(), a.cols(),
             out.as<float>());
  }

  void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override {
    check_f32("rms_norm", "x", x);
    check_f32("rms_norm", "out", out);
    check_same_shape("rms_norm", x, out);
    SPARKD_CPU_CHECK(weight.numel() == x.cols(), "rms_norm",
                     "weight " + describe(weight) + " for x " + describe(x));
    const F32Values weight_f32(weight);
    cpu::rms_norm(config_, x.as<const float>(), weight_f32.data(), eps, x.rows(), x.cols(),
                  out.as<float>());
  }

  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                  Tensor& out) override {
    check_f32("layer_norm", "x", x);
    check_f32("layer_norm", "out", out);
    check_same_shape("layer_norm", x, out);
    SPARKD_CPU_CHECK(
        weight.numel() == x.cols() && bias.numel() == x.cols(), "layer_norm",
        "weight " + describe(weight) + ", bias " + describe(bias) + " for x " + describe(x));
    const F32Values weight_f32(weight);
    const F32Values bias_f32(bias);
    cpu::layer_norm(config_, x.as<const float>(), weight_f32.data(), bias_f32.data(), eps, x.rows(),
                    x.cols(), out.as<float>());
  }

  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
    check_f32("silu_mul", "gate", gate);
    check_f32("silu_mul", "up", up);
    check_f32("silu_mul", "out", out);
    check_same_shape("silu_mul", gate, up);
    check_same_shape("silu_mul", gate, out);
    cpu::silu_mul(config_, gate.as<const float>(), up.as<const float>(), gate.numel(),
                  out.as<float>());
  }

  void clamped_swiglu(const Tensor& gate, const Tensor& up, float alpha, float limit,
                      Tensor& out) override {
    check_f32("clamped_swiglu", "gate", gate);
    check_f32("clamped_swiglu", "up", up);
    check_f32("clamped_swiglu", "out", out);
    check_same_shape("clamped_swiglu", gate, up);
    check_same_shape("clamped_swiglu", gate, out);
    cpu::clamped_swiglu(config_, gate.as<const float>(), up.as<const float>(), alpha, limit,
                        gate.numel(), out.as<float>());
  }

  void gelu(const Tensor& x, bool tanh_approximation, Tensor& out) override {
    check_f32("gelu", "x", x);
    check_f32("gelu", "out", out);
    check_same_shape("gelu", x, out);
    cpu::gelu(config_, x.as<const float>(), tanh_approximation, x.numel(), out.as<float>());
  }

  void tanh(const Tensor& x, Tensor& out) override {
    check_f32("tanh", "x", x);
    check_f32("tanh", "out", out);
    check_same_shape("tanh", x, out);
    cpu::tanh(config_, x.as<const float>(), x.numel(), out.as<float>());
  }

  void sigmoid_mul(const Tensor& gate, const Tensor& x, Tensor& out) override {
    check_f32("sigmoid_mul", "gate", gate);
    check_f32("sigmoid_mul", "x", x);
    check_f32("sigmoid_mul", "out", out);
    check_same_shape("sigmoid_mul", gate, x);
    check_same_shape("sigmoid_mul", gate, out);
    cpu::sigmoid_mul(config_, gate.as<const float>(), x.as<const float>(), x.numel(),
                     out.as<float>());
  }

  void split_head_halves(const Tensor& x, Tensor& first, Tensor& second) override {
    check_f32("split_head_halves", "x", x);
    check_f32("split_head_halves", "first", first);
    check_f32("split_head_halves", "second", second);
    check_same_shape("split_head_halves", first, second);
    SPARKD_CPU_CHECK(
        x.rank() == 3 && first.rank() == 3 && x.dim(0) == first.dim(0) &&
            x.dim(1) == first.dim(1) && x.dim(2) == 2 * first.dim(2),
        "split_head_halves",
        "x " + describe(x) + " must be [tokens, heads, 2 d] for halves " + describe(first));
    cpu::split_halves(config_, x.as<const float>(), x.dim(0) * x.dim(1), first.dim(2),
                      first.as<float>(), second.as<float>());
  }

  void rope(Tensor& x, std::span<const int32_t> positions, const Tensor& inv_freq) override {
    check_f32("rope", "x", x);
    SPARKD_CPU_CHECK(x.rank() == 3 && static_cast<int64_t>(positions.size()) == x.dim(0) &&
                         inv_freq.numel() >= 1 && 2 * inv_freq.numel() <= x.dim(2),
                     "rope",
                     "x " + describe(x) + " (want [tokens, heads, head_dim]), " +
                         std::to_string(positions.size()) + " positions, inv_freq " +
                         describe(inv_freq) + " (at most head_dim / 2)");
    const F32Values inv_freq_f32(inv_freq);
    cpu::rope(config_, x.as<float>(), x.dim(0), x.dim(1), x.dim(2), inv_freq.numel(), positions,
              inv_freq_f32.data());
  }

  void causal_conv1d_silu(const Tensor& x, const Tensor& weight,
                          std::span<const RecurrentSequence> sequences, Tensor& out) override {
    check_f32("causal_conv1d_silu", "x", x);
    check_f32("causal_conv1d_silu", "out", out);
    check_same_shape("causal_conv1d_silu", x, out);
    SPARKD_CPU_CHECK(x.rank() == 2 && weight.rank() == 2 && weight.dim(0) == x.dim(1),
                     "causal_conv1d_silu",
                     "x " + describe(x) + " must be [tokens, channels] and weight " +
                         describe(weight) + " [channels, kernel]");
    SPARKD_CPU_CHECK(!overlaps(x, out), "causal_conv1d_silu",
                     "out must not overlap x: later tokens read earlier inputs");
    const int64_t channels = x.dim(1), kernel = weight.dim(1);
    check_recurrent_rows("causal_conv1d_silu", sequences, x.dim(0));
    for (const RecurrentSequence& seq : sequences) {
      check_f32("causal_conv1d_silu", "conv_state", seq.conv_state);
      SPARKD_CPU_CHECK(seq.conv_state.numel() == (kernel - 1) * channels, "causal_conv1d_silu",
                       "conv_state " + describe(seq.conv_state) + " must hold (kernel - 1) x " +
                           std::to_string(channels) + " values");
    }
    const F32Values weight_f32(weight);
    cpu::causal_conv1d_silu(config_, x.as<const float>(), weight_f32.data(), channels, kernel,
                            sequences, out.as<float>());
  }

  void gated_delta_net(const Tensor& qkv, const Tensor& a, const Tensor& b, const Tensor& a_neg,
                       const Tensor& dt_bias, int32_t key_heads, bool value_heads_tiled,
                       std::span<const RecurrentSequence> sequences, Tensor& out) override {
    for (const auto& [what, t] : {std::pair<const char*, const Tensor*>{"qkv", &qkv},
                                  {"a", &a},
                                  {"b", &b},
                                  {"out", &out}}) {
      check_f32("gated_delta_net", what, *t);
    }
    check_same_shape("gated_delta_net", a, b);
    SPARKD_CPU_CHECK(
        out.rank() == 3 && qkv.rank() == 2 && a.rank() == 2 && qkv.dim(0) == out.dim(0) &&
            a.dim(0) == out.dim(0) && a.dim(1) == out.dim(1) && a_neg.numel() == out.dim(1) &&
            dt_bias.numel() == out.dim(1) && key_heads > 0 && out.dim(1) % key_heads == 0,
        "gated_delta_net",
        "out " + describe(out) + " must be [tokens, value_heads, value_head_dim], " + "qkv " +
            describe(qkv) + " [tokens, conv_dim], a and b " + describe(a) +
            " [tokens, value_heads], a_neg and dt_bias [value_heads], key_heads " +
            std::to_string(key_heads) + " dividing value_heads");
    cpu::DeltaNetShape shape;
    shape.key_heads = key_heads;
    shape.value_heads_tiled = value_heads_tiled;
    shape.value_heads = out.dim(1);
    shape.value_head_dim = out.dim(2);
    const int64_t key_channels = qkv.dim(1) - shape.value_heads * shape.value_head_dim;
    SPARKD_CPU_CHECK(key_channels > 0 && key_channels % (2 * key_heads) == 0, "gated_delta_net",
                     "qkv " + describe(qkv) + " leaves no whole q and k heads beside v");
    shape.key_head_dim = key_channels / (2 * key_heads);
    check_recurrent_rows("gated_delta_net", sequences, qkv.dim(0));
    for (const RecurrentSequence& seq : sequences) {
      check_f32("gated_delta_net", "delta_state", seq.delta_state);
      SPARKD_CPU_CHECK(
          seq.delta_state.numel() == shape.value_heads * shape.key_head_dim * shape.value_head_dim,
          "gated_delta_net",
          "delta_state " + describe(seq.delta_state) + " must hold " +
              "value_heads x key_head_dim x value_head_dim values");
    }
    const F32Values a_neg_f32(a_neg), dt_bias_f32(dt_bias);
    cpu::gated_delta_net(config_, qkv.as<const float>(), a.as<const float>(), b.as<const float>(),
                         a_neg_f32.data(), dt_bias_f32.data(), shape, sequences, out.as<float>());
  }

  void store_kv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                const KvLayerView& kv) override {
    check_kv_view("store_kv", kv);
    check_f32("store_kv", "k", k);
    check_f32("store_kv", "v", v);
    const int64_t tokens = static_cast<int64_t>(slots.size());
    const int64_t row_elements = kv.keys.dim(1) * kv.keys.dim(2);
    SPARKD_CPU_CHECK(k.numel() == tokens * row_elements && k.cols() == kv.keys.dim(2) &&
                         v.numel() == k.numel() && v.cols() == k.cols(),
                     "store_kv",
                     "k " + describe(k) + ", v " + describe(v) + ", " + std::to_string(tokens) +
                         " slots, cache " + describe(kv.keys));
    for (int32_t slot : slots) {
      SPARKD_CPU_CHECK(slot >= 0 && slot < kv.keys.dim(0), "store_kv",
                       "slot " + std::to_string(slot) + " outside cache " + describe(kv.keys));
    }
    cpu::store_kv(config_, k.as<const float>(), v.as<const float>(), slots, kv);
  }

  void attention(const Tensor& q, const KvLayerView& kv,
                 std::span<const AttentionSequence> sequences, const AttentionParams& params,
                 Tensor& out) override {
    check_kv_view("attention", kv);
    check_f32("attention", "q", q);
    check_f32("attention", "out", out);
    const int64_t kv_heads = kv.keys.dim(1), head_dim = kv.keys.dim(2);
    SPARKD_CPU_CHECK(
        q.rank() == 3 && q.dim(2) == head_dim && q.dim(1) % kv_heads == 0 && out.shape == q.shape,
        "attention",
        "q " + describe(q) + ", out " + describe(out) + ", cache " + describe(kv.keys) +
            " (want q [tokens, kv_heads * group, head_dim])");
    SPARKD_CPU_CHECK(params.sliding_window >= 0, "attention", "negative sliding_window");
    if (params.sinks != nullptr) {
      check_f32("attention", "sinks", *params.sinks);
      SPARKD_CPU_CHECK(
          params.sinks->numel() == q.dim(1), "attention",
          "sinks " + describe(*params.sinks) + " for q " + describe(q) + " (want one per head)");
    }
    for (const AttentionSequence& sequence : sequences) {
      check_sequence(q.dim(0), kv, sequence);
    }
    cpu::attention(config_, q.as<const float>(), q.dim(1), kv, sequences, params, out.as<float>());
  }

  void mean_rows(const Tensor& x, std::span<const RowSpan> spans, Tensor& out) override {
    check_f32("mean_rows", "x", x);
    check_f32("mean_rows", "out", out);
    SPARKD_CPU_CHECK(
        out.rows() == static_cast<int64_t>(spans.size()) && out.cols() == x.cols(), "mean_rows",
        std::to_string(spans.size()) + " spans of x " + describe(x) + " into " + describe(out));
    for (const RowSpan& span : spans) {
      SPARKD_CPU_CHECK(span.begin >= 0 && span.count > 0 && span.begin + span.count <= x.rows(),
                       "mean_rows",
                       "span [" + std::to_string(span.begin) + ", +" + std::to_string(span.count) +
                           ") of x " + describe(x));
    }
    cpu::mean_rows(config_, x.as<const float>(), x.cols(), spans, out.as<float>());
  }

  void l2_normalize_rows(Tensor& x) override {
    check_f32("l2_normalize_rows", "x", x);
    cpu::l2_normalize_rows(config_, x.as<float>(), x.rows(), x.cols());
  }

 private:
  static void check_kv_view(const char* op, const KvLayerView& kv) {
    SPARKD_CPU_CHECK(kv.keys.rank() == 3 && kv.keys.dim(1) > 0 && kv.keys.dim(2) > 0 &&
                         kv.values.shape == kv.keys.shape && kv.keys.dtype == kv.values.dtype &&
                         kv.block_tokens >= 0,
                     op,
                     "keys " + describe(kv.keys) + ", values " + describe(kv.values) +
                         ", block_tokens " + std::to_string(kv.block_tokens) +
                         " (want equal [slots, kv_heads, head_dim])");
  }

  // The sequence's rows lie inside q and every slot it reads lies inside the cache.
  static void check_sequence(int64_t q_tokens, const KvLayerView& kv,
                             const AttentionSequence& sequence) {
    const int64_t slots = kv.keys.dim(0);
    const auto describe_sequence = [&] {
      return "sequence {query_begin " + std::to_string(sequence.query_begin) + ", query_tokens " +
             std::to_string(sequence.query_tokens) + ", context_tokens " +
             std::to_string(sequence.context_tokens) + ", kv_slot_begin " +
             std::to_string(sequence.kv_slot_begin) + ", " +
             std::to_string(sequence.block_table.size()) + " blocks} with " +
             std::to_string(q_tokens) + " query rows, " + std::to_string(slots) + " slots";
    };
    SPARKD_CPU_CHECK(sequence.query_begin >= 0 && sequence.query_tokens >= 0 &&
                         sequence.query_begin + sequence.query_tokens <= q_tokens &&
                         sequence.context_tokens >= sequence.query_tokens,
                     "attention", describe_sequence());
    if (kv.block_tokens == 0) {
      SPARKD_CPU_CHECK(sequence.kv_slot_begin >= 0 &&
                           sequence.kv_slot_begin + int64_t{sequence.context_tokens} <= slots,
                       "attention", "contiguous slots outside the cache: " + describe_sequence());
      return;
    }
    const int64_t blocks_needed =
        (int64_t{sequence.context_tokens} + kv.block_tokens - 1) / kv.block_tokens;
    SPARKD_CPU_CHECK(static_cast<int64_t>(sequence.block_table.size()) >= blocks_needed,
                     "attention", "block table too short: " + describe_sequence());
    for (int64_t b = 0; b < blocks_needed; ++b) {
      const int64_t block = sequence.block_table[b];
      SPARKD_CPU_CHECK(
          block >= 0 && (block + 1) * kv.block_tokens <= slots, "attention",
          "block " + std::to_string(block) + " outside the cache: " + describe_sequence());
    }
  }

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
