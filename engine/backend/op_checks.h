// The shape and dtype checks every backend runs before an op touches memory.
//
// An op called with inconsistent tensors is a bug in the caller (architecture code), not bad
// input: the check prints the backend, the op and the shapes, and aborts rather than read or
// write out of bounds. Backends share these so that the CPU reference and the GPU refuse
// exactly the same calls. Everything checked here is host-side metadata (shapes, dtypes,
// spans of indices); no tensor's memory is read.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "engine/backend/backend.h"

namespace sparkd {

// Gated DeltaNet's head geometry, derived from the op's tensors.
struct DeltaNetShape {
  int64_t key_heads = 0, key_head_dim = 0, value_heads = 0, value_head_dim = 0;
  bool value_heads_tiled = false;  // value head h reads key head h % key_heads
};

class OpChecks {
 public:
  explicit OpChecks(std::string backend) : backend_(std::move(backend)) {}

  [[noreturn]] void fail(const char* op, const std::string& message) const;

  void download_f32(const Tensor& src, size_t dst_floats) const;
  void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, const Tensor& y) const;
  void gather_rows(const Tensor& src, std::span<const int32_t> rows, const Tensor& out) const;
  void scatter_add_rows(const Tensor& src, std::span<const int32_t> rows,
                        std::span<const float> scales, const Tensor& dst) const;
  // Returns whether b is one row broadcast over a's rows.
  bool add(const Tensor& a, const Tensor& b, const Tensor& out) const;
  void rms_norm(const Tensor& x, const Tensor& weight, const Tensor& out) const;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& out) const;
  // silu_mul, clamped_swiglu, sigmoid_mul: three F32 tensors of one shape.
  void binary_elementwise(const char* op, const Tensor& a, const Tensor& b,
                          const Tensor& out) const;
  // Returns whether gate is one column, a value per row of x.
  bool sigmoid_mul(const Tensor& gate, const Tensor& x, const Tensor& out) const;
  // gelu, tanh: two F32 tensors of one shape.
  void unary_elementwise(const char* op, const Tensor& x, const Tensor& out) const;
  void split_head_halves(const Tensor& x, const Tensor& first, const Tensor& second) const;
  void rope(const Tensor& x, std::span<const int32_t> positions, const Tensor& inv_freq) const;
  void causal_conv1d_silu(const Tensor& x, const Tensor& weight,
                          std::span<const RecurrentSequence> sequences, const Tensor& out) const;
  DeltaNetShape gated_delta_net(const Tensor& qkv, const Tensor& a, const Tensor& b,
                                const Tensor& a_neg, const Tensor& dt_bias, int32_t key_heads,
                                bool value_heads_tiled,
                                std::span<const RecurrentSequence> sequences,
                                const Tensor& out) const;
  void store_kv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                const KvLayerView& kv) const;
  void attention(const Tensor& q, const KvLayerView& kv,
                 std::span<const AttentionSequence> sequences, const AttentionParams& params,
                 const Tensor& out) const;
  void moe_route(const Tensor& logits, int32_t top_k, const Tensor& expert_ids,
                 const Tensor& expert_weights) const;
  // Also the matrices' shapes against x, the residual and each other, and the scratch rows.
  void moe_experts(const Tensor& x, const Tensor& expert_ids, const Tensor& expert_weights,
                   const MoeExperts& experts, const MoeScratch& scratch,
                   const Tensor& residual) const;
  void mean_rows(const Tensor& x, std::span<const RowSpan> spans, const Tensor& out) const;
  void l2_normalize_rows(const Tensor& x) const;
  // A tensor an op reads or writes element by element (norm weights, biases, caches, outputs
  // of gathers) must be F32, F16 or BF16; backends that do not dequantize such tensors check.
  void float_tensor(const char* op, const char* what, const Tensor& t) const;

  // "F32[2, 64]", for messages.
  static std::string describe(const Tensor& t);
  // Whether two tensors' bytes overlap.
  static bool overlaps(const Tensor& a, const Tensor& b);

 private:
  void check_f32(const char* op, const char* what, const Tensor& t) const;
  void check_same_shape(const char* op, const Tensor& a, const Tensor& b) const;
  void check_recurrent_rows(const char* op, std::span<const RecurrentSequence> sequences,
                            int64_t rows) const;
  void check_kv_view(const char* op, const KvLayerView& kv) const;
  void check_sequence(int64_t q_tokens, const KvLayerView& kv,
                      const AttentionSequence& sequence) const;

  std::string backend_;
};

}  // namespace sparkd
