#include "engine/backend/op_checks.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

namespace sparkd {

// The message expression is only evaluated when the check fails: ops run per layer per step.
#define SPARKD_OP_CHECK(condition, op, message) \
  do {                                          \
    if (!(condition)) fail((op), (message));    \
  } while (0)

void OpChecks::fail(const char* op, const std::string& message) const {
  std::fprintf(stderr, "sparkd %s backend: %s: %s\n", backend_.c_str(), op, message.c_str());
  std::fflush(stderr);
  std::abort();
}

std::string OpChecks::describe(const Tensor& t) {
  return std::string(dtype_name(t.dtype)) + shape_string(t.shape);
}

bool OpChecks::overlaps(const Tensor& a, const Tensor& b) {
  const char* a_begin = static_cast<const char*>(a.data);
  const char* b_begin = static_cast<const char*>(b.data);
  return a_begin < b_begin + b.size_bytes() && b_begin < a_begin + a.size_bytes();
}

void OpChecks::check_f32(const char* op, const char* what, const Tensor& t) const {
  SPARKD_OP_CHECK(t.dtype == DType::kF32, op,
                  std::string(what) + " must be F32 (activations), got " + describe(t));
}

void OpChecks::check_same_shape(const char* op, const Tensor& a, const Tensor& b) const {
  SPARKD_OP_CHECK(a.numel() == b.numel() && a.cols() == b.cols(), op,
                  "shapes differ: " + describe(a) + " vs " + describe(b));
}

// The sequences of a recurrent op cover rows [0, rows) in order, without gaps.
void OpChecks::check_recurrent_rows(const char* op, std::span<const RecurrentSequence> sequences,
                                    int64_t rows) const {
  int64_t next = 0;
  for (const RecurrentSequence& seq : sequences) {
    SPARKD_OP_CHECK(seq.row_begin == next && seq.rows >= 0, op,
                    "sequence rows [" + std::to_string(seq.row_begin) + ", +" +
                        std::to_string(seq.rows) + ") do not follow row " + std::to_string(next));
    next += seq.rows;
  }
  SPARKD_OP_CHECK(
      next == rows, op,
      "the sequences cover " + std::to_string(next) + " rows of " + std::to_string(rows));
}

void OpChecks::download_f32(const Tensor& src, size_t dst_floats) const {
  SPARKD_OP_CHECK(static_cast<int64_t>(dst_floats) == src.numel(), "download_f32",
                  describe(src) + " into " + std::to_string(dst_floats) + " floats");
}

void OpChecks::linear(const Tensor& x, const Tensor& weight, const Tensor* bias,
                      const Tensor& y) const {
  const int64_t m = x.rows(), k = x.cols(), n = weight.rank() == 2 ? weight.dim(0) : -1;
  const auto shapes = [&] {
    return "x " + describe(x) + ", weight " + describe(weight) + ", bias " +
           (bias ? describe(*bias) : std::string("none")) + ", y " + describe(y);
  };
  check_f32("linear", "x", x);
  check_f32("linear", "y", y);
  SPARKD_OP_CHECK(weight.rank() == 2 && weight.dim(1) == k && y.rows() == m && y.cols() == n,
                  "linear", "shape mismatch: " + shapes());
  SPARKD_OP_CHECK(!bias || bias->numel() == n, "linear", "bias shape mismatch: " + shapes());
}

void OpChecks::gather_rows(const Tensor& src, std::span<const int32_t> rows,
                           const Tensor& out) const {
  const int64_t cols = src.cols(), src_rows = src.rows();
  SPARKD_OP_CHECK(
      out.cols() == cols && out.rows() == static_cast<int64_t>(rows.size()), "gather_rows",
      std::to_string(rows.size()) + " rows of " + describe(src) + " into " + describe(out));
  for (int32_t row : rows) {
    SPARKD_OP_CHECK(row >= 0 && row < src_rows, "gather_rows",
                    "row " + std::to_string(row) + " outside " + describe(src));
  }
}

void OpChecks::scatter_add_rows(const Tensor& src, std::span<const int32_t> rows,
                                std::span<const float> scales, const Tensor& dst) const {
  check_f32("scatter_add_rows", "src", src);
  check_f32("scatter_add_rows", "dst", dst);
  const int64_t cols = dst.cols(), dst_rows = dst.rows();
  SPARKD_OP_CHECK(src.cols() == cols && src.rows() == static_cast<int64_t>(rows.size()) &&
                      scales.size() == rows.size(),
                  "scatter_add_rows",
                  std::to_string(rows.size()) + " rows (" + std::to_string(scales.size()) +
                      " scales) of " + describe(src) + " into " + describe(dst));
  for (int32_t row : rows) {
    SPARKD_OP_CHECK(row >= 0 && row < dst_rows, "scatter_add_rows",
                    "row " + std::to_string(row) + " outside " + describe(dst));
  }
}

bool OpChecks::add(const Tensor& a, const Tensor& b, const Tensor& out) const {
  check_f32("add", "a", a);
  check_f32("add", "out", out);
  check_same_shape("add", a, out);
  const bool broadcast = b.numel() != a.numel();
  SPARKD_OP_CHECK(
      (!broadcast && b.cols() == a.cols()) || b.numel() == a.cols(), "add",
      "b " + describe(b) + " is neither a's shape " + describe(a) + " nor one row of it");
  return broadcast;
}

void OpChecks::rms_norm(const Tensor& x, const Tensor& weight, const Tensor& out) const {
  check_f32("rms_norm", "x", x);
  check_f32("rms_norm", "out", out);
  check_same_shape("rms_norm", x, out);
  SPARKD_OP_CHECK(weight.numel() == x.cols(), "rms_norm",
                  "weight " + describe(weight) + " for x " + describe(x));
}

void OpChecks::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                          const Tensor& out) const {
  check_f32("layer_norm", "x", x);
  check_f32("layer_norm", "out", out);
  check_same_shape("layer_norm", x, out);
  SPARKD_OP_CHECK(
      weight.numel() == x.cols() && bias.numel() == x.cols(), "layer_norm",
      "weight " + describe(weight) + ", bias " + describe(bias) + " for x " + describe(x));
}

void OpChecks::binary_elementwise(const char* op, const Tensor& a, const Tensor& b,
                                  const Tensor& out) const {
  check_f32(op, "first input", a);
  check_f32(op, "second input", b);
  check_f32(op, "out", out);
  check_same_shape(op, a, b);
  check_same_shape(op, a, out);
}

bool OpChecks::sigmoid_mul(const Tensor& gate, const Tensor& x, const Tensor& out) const {
  check_f32("sigmoid_mul", "gate", gate);
  check_f32("sigmoid_mul", "x", x);
  check_f32("sigmoid_mul", "out", out);
  check_same_shape("sigmoid_mul", x, out);
  const bool per_row = gate.cols() == 1 && x.cols() != 1;
  SPARKD_OP_CHECK(
      per_row ? gate.rows() == x.rows() : gate.numel() == x.numel() && gate.cols() == x.cols(),
      "sigmoid_mul",
      "gate " + describe(gate) + " for x " + describe(x) +
          " (want x's shape, or one column of x's rows)");
  return per_row;
}

void OpChecks::unary_elementwise(const char* op, const Tensor& x, const Tensor& out) const {
  check_f32(op, "x", x);
  check_f32(op, "out", out);
  check_same_shape(op, x, out);
}

void OpChecks::split_head_halves(const Tensor& x, const Tensor& first, const Tensor& second) const {
  check_f32("split_head_halves", "x", x);
  check_f32("split_head_halves", "first", first);
  check_f32("split_head_halves", "second", second);
  check_same_shape("split_head_halves", first, second);
  SPARKD_OP_CHECK(
      x.rank() == 3 && first.rank() == 3 && x.dim(0) == first.dim(0) && x.dim(1) == first.dim(1) &&
          x.dim(2) == 2 * first.dim(2),
      "split_head_halves",
      "x " + describe(x) + " must be [tokens, heads, 2 d] for halves " + describe(first));
}

void OpChecks::rope(const Tensor& x, std::span<const int32_t> positions,
                    const Tensor& inv_freq) const {
  check_f32("rope", "x", x);
  SPARKD_OP_CHECK(x.rank() == 3 && static_cast<int64_t>(positions.size()) == x.dim(0) &&
                      inv_freq.numel() >= 1 && 2 * inv_freq.numel() <= x.dim(2),
                  "rope",
                  "x " + describe(x) + " (want [tokens, heads, head_dim]), " +
                      std::to_string(positions.size()) + " positions, inv_freq " +
                      describe(inv_freq) + " (at most head_dim / 2)");
}

void OpChecks::causal_conv1d_silu(const Tensor& x, const Tensor& weight,
                                  std::span<const RecurrentSequence> sequences,
                                  const Tensor& out) const {
  check_f32("causal_conv1d_silu", "x", x);
  check_f32("causal_conv1d_silu", "out", out);
  check_same_shape("causal_conv1d_silu", x, out);
  SPARKD_OP_CHECK(x.rank() == 2 && weight.rank() == 2 && weight.dim(0) == x.dim(1),
                  "causal_conv1d_silu",
                  "x " + describe(x) + " must be [tokens, channels] and weight " +
                      describe(weight) + " [channels, kernel]");
  SPARKD_OP_CHECK(!overlaps(x, out), "causal_conv1d_silu",
                  "out must not overlap x: later tokens read earlier inputs");
  const int64_t channels = x.dim(1), kernel = weight.dim(1);
  check_recurrent_rows("causal_conv1d_silu", sequences, x.dim(0));
  for (const RecurrentSequence& seq : sequences) {
    check_f32("causal_conv1d_silu", "conv_state", seq.conv_state);
    SPARKD_OP_CHECK(seq.conv_state.numel() == (kernel - 1) * channels, "causal_conv1d_silu",
                    "conv_state " + describe(seq.conv_state) + " must hold (kernel - 1) x " +
                        std::to_string(channels) + " values");
  }
}

DeltaNetShape OpChecks::gated_delta_net(const Tensor& qkv, const Tensor& a, const Tensor& b,
                                        const Tensor& a_neg, const Tensor& dt_bias,
                                        int32_t key_heads, bool value_heads_tiled,
                                        std::span<const RecurrentSequence> sequences,
                                        const Tensor& out) const {
  for (const auto& [what, t] :
       {std::pair<const char*, const Tensor*>{"qkv", &qkv}, {"a", &a}, {"b", &b}, {"out", &out}}) {
    check_f32("gated_delta_net", what, *t);
  }
  check_same_shape("gated_delta_net", a, b);
  SPARKD_OP_CHECK(out.rank() == 3 && qkv.rank() == 2 && a.rank() == 2 && qkv.dim(0) == out.dim(0) &&
                      a.dim(0) == out.dim(0) && a.dim(1) == out.dim(1) &&
                      a_neg.numel() == out.dim(1) && dt_bias.numel() == out.dim(1) &&
                      key_heads > 0 && out.dim(1) % key_heads == 0,
                  "gated_delta_net",
                  "out " + describe(out) + " must be [tokens, value_heads, value_head_dim], " +
                      "qkv " + describe(qkv) + " [tokens, conv_dim], a and b " + describe(a) +
                      " [tokens, value_heads], a_neg and dt_bias [value_heads], key_heads " +
                      std::to_string(key_heads) + " dividing value_heads");
  DeltaNetShape shape;
  shape.key_heads = key_heads;
  shape.value_heads_tiled = value_heads_tiled;
  shape.value_heads = out.dim(1);
  shape.value_head_dim = out.dim(2);
  const int64_t key_channels = qkv.dim(1) - shape.value_heads * shape.value_head_dim;
  SPARKD_OP_CHECK(key_channels > 0 && key_channels % (2 * key_heads) == 0, "gated_delta_net",
                  "qkv " + describe(qkv) + " leaves no whole q and k heads beside v");
  shape.key_head_dim = key_channels / (2 * key_heads);
  check_recurrent_rows("gated_delta_net", sequences, qkv.dim(0));
  for (const RecurrentSequence& seq : sequences) {
    check_f32("gated_delta_net", "delta_state", seq.delta_state);
    SPARKD_OP_CHECK(
        seq.delta_state.numel() == shape.value_heads * shape.key_head_dim * shape.value_head_dim,
        "gated_delta_net",
        "delta_state " + describe(seq.delta_state) + " must hold " +
            "value_heads x key_head_dim x value_head_dim values");
  }
  return shape;
}

void OpChecks::check_kv_view(const char* op, const KvLayerView& kv) const {
  SPARKD_OP_CHECK(kv.keys.rank() == 3 && kv.keys.dim(1) > 0 && kv.keys.dim(2) > 0 &&
                      kv.values.shape == kv.keys.shape && kv.keys.dtype == kv.values.dtype &&
                      kv.block_tokens >= 0,
                  op,
                  "keys " + describe(kv.keys) + ", values " + describe(kv.values) +
                      ", block_tokens " + std::to_string(kv.block_tokens) +
                      " (want equal [slots, kv_heads, head_dim])");
}

void OpChecks::store_kv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                        const KvLayerView& kv) const {
  check_kv_view("store_kv", kv);
  check_f32("store_kv", "k", k);
  check_f32("store_kv", "v", v);
  const int64_t tokens = static_cast<int64_t>(slots.size());
  const int64_t row_elements = kv.keys.dim(1) * kv.keys.dim(2);
  SPARKD_OP_CHECK(k.numel() == tokens * row_elements && k.cols() == kv.keys.dim(2) &&
                      v.numel() == k.numel() && v.cols() == k.cols(),
                  "store_kv",
                  "k " + describe(k) + ", v " + describe(v) + ", " + std::to_string(tokens) +
                      " slots, cache " + describe(kv.keys));
  for (int32_t slot : slots) {
    SPARKD_OP_CHECK(slot >= 0 && slot < kv.keys.dim(0), "store_kv",
                    "slot " + std::to_string(slot) + " outside cache " + describe(kv.keys));
  }
}

// The sequence's rows lie inside q and every slot it reads lies inside the cache.
void OpChecks::check_sequence(int64_t q_tokens, const KvLayerView& kv,
                              const AttentionSequence& sequence) const {
  const int64_t slots = kv.keys.dim(0);
  const auto describe_sequence = [&] {
    return "sequence {query_begin " + std::to_string(sequence.query_begin) + ", query_tokens " +
           std::to_string(sequence.query_tokens) + ", context_tokens " +
           std::to_string(sequence.context_tokens) + ", kv_slot_begin " +
           std::to_string(sequence.kv_slot_begin) + ", " +
           std::to_string(sequence.block_table.size()) + " blocks} with " +
           std::to_string(q_tokens) + " query rows, " + std::to_string(slots) + " slots";
  };
  SPARKD_OP_CHECK(sequence.query_begin >= 0 && sequence.query_tokens >= 0 &&
                      sequence.query_begin + sequence.query_tokens <= q_tokens &&
                      sequence.context_tokens >= sequence.query_tokens,
                  "attention", describe_sequence());
  if (kv.block_tokens == 0) {
    SPARKD_OP_CHECK(sequence.kv_slot_begin >= 0 &&
                        sequence.kv_slot_begin + int64_t{sequence.context_tokens} <= slots,
                    "attention", "contiguous slots outside the cache: " + describe_sequence());
    return;
  }
  const int64_t blocks_needed =
      (int64_t{sequence.context_tokens} + kv.block_tokens - 1) / kv.block_tokens;
  SPARKD_OP_CHECK(static_cast<int64_t>(sequence.block_table.size()) >= blocks_needed, "attention",
                  "block table too short: " + describe_sequence());
  for (int64_t b = 0; b < blocks_needed; ++b) {
    const int64_t block = sequence.block_table[b];
    SPARKD_OP_CHECK(
        block >= 0 && (block + 1) * kv.block_tokens <= slots, "attention",
        "block " + std::to_string(block) + " outside the cache: " + describe_sequence());
  }
}

void OpChecks::attention(const Tensor& q, const KvLayerView& kv,
                         std::span<const AttentionSequence> sequences,
                         const AttentionParams& params, const Tensor& out) const {
  check_kv_view("attention", kv);
  check_f32("attention", "q", q);
  check_f32("attention", "out", out);
  const int64_t kv_heads = kv.keys.dim(1), head_dim = kv.keys.dim(2);
  SPARKD_OP_CHECK(
      q.rank() == 3 && q.dim(2) == head_dim && q.dim(1) % kv_heads == 0 && out.shape == q.shape,
      "attention",
      "q " + describe(q) + ", out " + describe(out) + ", cache " + describe(kv.keys) +
          " (want q [tokens, kv_heads * group, head_dim])");
  SPARKD_OP_CHECK(params.sliding_window >= 0, "attention", "negative sliding_window");
  if (params.sinks != nullptr) {
    check_f32("attention", "sinks", *params.sinks);
    SPARKD_OP_CHECK(
        params.sinks->numel() == q.dim(1), "attention",
        "sinks " + describe(*params.sinks) + " for q " + describe(q) + " (want one per head)");
  }
  for (const AttentionSequence& sequence : sequences) check_sequence(q.dim(0), kv, sequence);
  // Each query row belongs to one sequence at most: kernels that compute a sequence's rows
  // together (the CUDA tiled kernel) would otherwise race on a shared row, and out may be q.
  std::vector<std::pair<int32_t, int32_t>> rows;
  for (const AttentionSequence& sequence : sequences) {
    if (sequence.query_tokens > 0) {
      rows.emplace_back(sequence.query_begin, sequence.query_begin + sequence.query_tokens);
    }
  }
  std::sort(rows.begin(), rows.end());
  for (size_t i = 1; i < rows.size(); ++i) {
    SPARKD_OP_CHECK(rows[i].first >= rows[i - 1].second, "attention",
                    "sequences share query rows: [" + std::to_string(rows[i - 1].first) + ", " +
                        std::to_string(rows[i - 1].second) + ") and [" +
                        std::to_string(rows[i].first) + ", " + std::to_string(rows[i].second) +
                        ")");
  }
}

void OpChecks::moe_route(const Tensor& logits, int32_t top_k, const Tensor& expert_ids,
                         const Tensor& expert_weights) const {
  check_f32("moe_route", "logits", logits);
  check_f32("moe_route", "expert_ids", expert_ids);
  check_f32("moe_route", "expert_weights", expert_weights);
  SPARKD_OP_CHECK(logits.rank() == 2 && top_k >= 1 && top_k <= logits.cols() &&
                      expert_ids.rows() == logits.rows() && expert_ids.cols() == top_k &&
                      expert_weights.shape == expert_ids.shape,
                  "moe_route",
                  "top " + std::to_string(top_k) + " of logits " + describe(logits) + " into " +
                      describe(expert_ids) + " and " + describe(expert_weights));
}

void OpChecks::moe_experts(const Tensor& x, const Tensor& expert_ids, const Tensor& expert_weights,
                           const MoeExperts& experts, const MoeScratch& scratch,
                           const Tensor& residual) const {
  check_f32("moe_experts", "x", x);
  check_f32("moe_experts", "expert_ids", expert_ids);
  check_f32("moe_experts", "expert_weights", expert_weights);
  check_f32("moe_experts", "residual", residual);
  const int64_t tokens = x.rows(), hidden = x.cols();
  const size_t count = experts.gate.size();
  SPARKD_OP_CHECK(residual.rows() == tokens && residual.cols() == hidden &&
                      expert_ids.rows() == tokens && expert_ids.cols() >= 1 &&
                      expert_weights.shape == expert_ids.shape,
                  "moe_experts",
                  "x " + describe(x) + ", residual " + describe(residual) + ", routing " +
                      describe(expert_ids) + " and " + describe(expert_weights));
  SPARKD_OP_CHECK(count > 0 && experts.up.size() == count && experts.down.size() == count &&
                      (experts.gate_bias.empty() || experts.gate_bias.size() == count) &&
                      (experts.up_bias.empty() || experts.up_bias.size() == count) &&
                      (experts.down_bias.empty() || experts.down_bias.size() == count),
                  "moe_experts",
                  std::to_string(count) + " gate, " + std::to_string(experts.up.size()) + " up, " +
                      std::to_string(experts.down.size()) + " down matrices and " +
                      std::to_string(experts.gate_bias.size()) + "/" +
                      std::to_string(experts.up_bias.size()) + "/" +
                      std::to_string(experts.down_bias.size()) + " biases");
  const int64_t inter = experts.gate[0].rows();
  for (size_t e = 0; e < count; ++e) {
    const Tensor& gate = experts.gate[e];
    const Tensor& up = experts.up[e];
    const Tensor& down = experts.down[e];
    SPARKD_OP_CHECK(
        gate.rank() == 2 && gate.rows() == inter && gate.cols() == hidden &&
            up.shape == gate.shape && up.dtype == experts.up[0].dtype &&
            gate.dtype == experts.gate[0].dtype && down.rank() == 2 && down.rows() == hidden &&
            down.cols() == inter && down.dtype == experts.down[0].dtype,
        "moe_experts",
        "expert " + std::to_string(e) + ": gate " + describe(gate) + ", up " + describe(up) +
            ", down " + describe(down) + " for x " + describe(x) + " (all experts alike)");
  }
  // Biases: a float vector per expert of its projection's output width, one dtype per list.
  const auto check_biases = [&](std::span<const Tensor> biases, int64_t width, const char* what) {
    for (const Tensor& bias : biases) {
      SPARKD_OP_CHECK(
          !dtype_is_quantized(bias.dtype) && bias.numel() == width && bias.dtype == biases[0].dtype,
          "moe_experts",
          std::string(what) + " bias " + describe(bias) + " (want " + std::to_string(width) +
              " values of " + describe(biases[0]) + "'s dtype)");
    }
  };
  check_biases(experts.gate_bias, inter, "gate");
  check_biases(experts.up_bias, inter, "up");
  check_biases(experts.down_bias, hidden, "down");
  SPARKD_OP_CHECK(expert_ids.rank() == 2 && expert_ids.cols() <= static_cast<int64_t>(count),
                  "moe_experts",
                  "routing " + describe(expert_ids) + " for " + std::to_string(count) +
                      " experts (want [tokens, top_k], top_k <= experts)");
  const int64_t rows = moe_scratch_rows(tokens, static_cast<int32_t>(expert_ids.cols()));
  const auto fits = [&](const Tensor& t, int64_t cols) {
    return t.dtype == DType::kF32 && t.rows() >= rows && t.cols() == cols;
  };
  SPARKD_OP_CHECK(fits(scratch.input, hidden) && fits(scratch.output, hidden) &&
                      fits(scratch.gate, inter) && fits(scratch.up, inter),
                  "moe_experts",
                  "scratch input " + describe(scratch.input) + ", gate " + describe(scratch.gate) +
                      ", up " + describe(scratch.up) + ", output " + describe(scratch.output) +
                      " (want " + std::to_string(rows) + " rows)");
}

void OpChecks::mean_rows(const Tensor& x, std::span<const RowSpan> spans, const Tensor& out) const {
  check_f32("mean_rows", "x", x);
  check_f32("mean_rows", "out", out);
  SPARKD_OP_CHECK(
      out.rows() == static_cast<int64_t>(spans.size()) && out.cols() == x.cols(), "mean_rows",
      std::to_string(spans.size()) + " spans of x " + describe(x) + " into " + describe(out));
  for (const RowSpan& span : spans) {
    SPARKD_OP_CHECK(span.begin >= 0 && span.count > 0 && span.begin + span.count <= x.rows(),
                    "mean_rows",
                    "span [" + std::to_string(span.begin) + ", +" + std::to_string(span.count) +
                        ") of x " + describe(x));
  }
}

void OpChecks::float_tensor(const char* op, const char* what, const Tensor& t) const {
  SPARKD_OP_CHECK(!dtype_is_quantized(t.dtype), op,
                  std::string(what) + " must be F32, F16 or BF16, got " + describe(t));
}

void OpChecks::l2_normalize_rows(const Tensor& x) const {
  check_f32("l2_normalize_rows", "x", x);
}

}  // namespace sparkd
