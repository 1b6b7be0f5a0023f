// The Backend interface: the only way architecture code touches memory and kernels.
//
// Architectures (engine/arch/) are written once against these ops; a backend (cpu/, cuda/)
// owns its memory and kernels. Activations are in the backend's activation_dtype(); weights
// may be F32, F16 or BF16 as stored in the model file. Unless an op says otherwise, every
// tensor is row-major and contiguous, "rows" are all leading dimensions flattened, and
// `out` may alias an input of the same shape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/backend/tensor.h"

namespace sparkd {

// Where one layer's keys and values live. Slots are token positions of some sequence; a
// sequence's slots are either contiguous (block_tokens == 0: slot = kv_slot_begin + pos)
// or paged (slot = block_table[pos / block_tokens] * block_tokens + pos % block_tokens).
struct KvLayerView {
  Tensor keys;    // [slots, kv_heads, head_dim]
  Tensor values;  // [slots, kv_heads, head_dim]
  int32_t block_tokens = 0;
};

// One sequence's part of a batched attention call.
struct AttentionSequence {
  int32_t query_begin = 0;     // first row of this sequence in q and out
  int32_t query_tokens = 0;    // its rows: the tokens of this step
  int32_t context_tokens = 0;  // keys it attends to, this step's included (they are the last)
  int32_t kv_slot_begin = 0;   // contiguous layout: the slot of position 0
  std::span<const int32_t> block_table;  // paged layout
};

// The routed experts of one mixture-of-experts layer: per expert its gate and up [inter,
// hidden] and down [hidden, inter] matrices (all experts' matrices of a projection share a
// dtype), biases empty or one per expert (gpt-oss), and the activation between them.
struct MoeExperts {
  std::span<const Tensor> gate, up, down;
  std::span<const Tensor> gate_bias, up_bias, down_bias;
  bool clamped_swiglu = false;  // gpt-oss's; otherwise silu(gate) * up
  float swiglu_alpha = 0.0f, swiglu_limit = 0.0f;
};

// Tokens up to which a backend may compute every (token, expert) assignment of a
// moe_experts call at once (decode); above it, the experts run one at a time over their
// tokens (prefill), each expert's matrices read once.
inline constexpr int64_t kMoeAssignmentTokens = 16;
// Rows of each MoeScratch tensor a moe_experts call over `tokens` tokens needs.
inline int64_t moe_scratch_rows(int64_t tokens, int32_t top_k) {
  const int64_t assigned = (tokens < kMoeAssignmentTokens ? tokens : kMoeAssignmentTokens) * top_k;
  return tokens > assigned ? tokens : assigned;
}
// F32 scratch of moe_experts, moe_scratch_rows() rows each: input and output [rows, hidden],
// gate and up [rows, inter].
struct MoeScratch {
  Tensor input, gate, up, output;
};

struct AttentionParams {
  float scale = 1.0f;  // applied to q·k, usually 1/sqrt(head_dim)
  // Causal: query i of a sequence sits at position context_tokens - query_tokens + i and sees
  // keys at positions <= its own. Bidirectional (encoders): every query sees every key.
  bool causal = true;
  // When > 0 (causal only), a query at position p sees keys at positions > p - sliding_window.
  int32_t sliding_window = 0;
  // Learned per-head "sink" logits (gpt-oss), F32 [heads], or none: each softmax row gets one
  // more logit, sinks[head], whose value vector is zero, so a head may attend to nothing.
  const Tensor* sinks = nullptr;
};

// One sequence's rows of a batched step and its recurrent state in one linear-attention
// (Gated DeltaNet) layer. The state carries the sequence from step to step: zero it before
// the sequence's first token.
struct RecurrentSequence {
  int32_t row_begin = 0;  // first row of this sequence in the step's inputs and outputs
  int32_t rows = 0;       // its rows: the tokens of this step, in order
  Tensor conv_state;      // F32 [kernel - 1, channels]: its last inputs to the convolution
  Tensor delta_state;     // F32 [value_heads, key_head_dim, value_head_dim]: the matrix S
};

// A run of rows [begin, begin + count) that belongs to one sequence (for pooling).
struct RowSpan {
  int32_t begin = 0;
  int32_t count = 0;
};

// The unit of VirtualRange: offsets and sizes committed or decommitted are multiples of it,
// and a range's base is aligned to it. The governor's granule (governor::kGranuleBytes), and
// the allocation granularity CUDA reports on every GPU we target.
inline constexpr size_t kVirtualGranuleBytes = size_t{2} << 20;

// Address space reserved at once and backed by memory piece by piece: the paged KV pool
// commits granules as the governor grants them and decommits them when it reclaims, while
// block ids (offsets into the range) stay fixed. Touching an uncommitted part is a fault.
class VirtualRange {
 public:
  virtual ~VirtualRange() = default;
  char* base() const { return base_; }
  size_t size_bytes() const { return size_bytes_; }
  // Backs [offset, offset + bytes) with memory the backend's ops may read and write, resident
  // now: what the governor granted is what the process holds, and a machine short of memory
  // fails here, where a refusal is handled, not in the middle of a forward.
  virtual Status commit(size_t offset, size_t bytes) = 0;
  // Gives that memory back to the system; the addresses stay reserved.
  virtual Status decommit(size_t offset, size_t bytes) = 0;

 protected:
  char* base_ = nullptr;
  size_t size_bytes_ = 0;
};

// Host address space (mmap PROT_NONE; commit maps read/write and faults the pages in,
// decommit drops them with MADV_DONTNEED): the CPU backend's KV memory.
Expected<std::unique_ptr<VirtualRange>> reserve_host_virtual(size_t size_bytes);

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  // The dtype this backend computes activations in (F32 on the CPU).
  virtual DType activation_dtype() const = 0;
  // The dtype of the KV caches it keeps (store_kv converts to it, attention reads it): the
  // activation dtype unless the backend halves KV memory and bandwidth with a 16-bit one.
  virtual DType kv_dtype() const { return activation_dtype(); }

  // ---- memory -------------------------------------------------------------------------
  virtual Expected<Buffer> allocate(size_t size_bytes) = 0;
  // True when the CPU may write allocate()d memory directly (CPU backend, unified memory);
  // model loading then reads files straight into it instead of staging.
  virtual bool memory_is_host_accessible() const = 0;
  // `size_bytes` (a multiple of kVirtualGranuleBytes) of address space to commit later; host
  // address space unless the backend's kernels need other memory.
  virtual Expected<std::unique_ptr<VirtualRange>> reserve_virtual(size_t size_bytes) {
    return reserve_host_virtual(size_bytes);
  }
  // Whether committing and decommitting its virtual memory costs enough (driver calls per
  // granule, a wait for queued work) that a KV pool should keep a spare group committed
  // rather than decommit each group the moment it empties. Host mmap: no.
  virtual bool virtual_commit_is_costly() const { return false; }
  // Raw bytes from host memory into backend memory.
  virtual void upload(void* dst, const void* src_host, size_t size_bytes) = 0;
  // Zeroes backend memory (a sequence's recurrent state before its first token).
  virtual void fill_zero(void* dst, size_t size_bytes) = 0;
  // `src` converted to F32 into host memory (dst.size() == src.numel()).
  virtual void download_f32(const Tensor& src, std::span<float> dst) = 0;
  // Waits for queued work (a no-op where ops run synchronously).
  virtual void synchronize() {}
  // The CPU threads the next ops may use (the daemon's compute budget sets it before each
  // step); <= 0: all the backend was configured with. Called only by the thread that runs
  // this backend's ops.
  virtual void set_compute_threads(int threads) { (void)threads; }

  // ---- ops ----------------------------------------------------------------------------
  // y[M, N] = x[M, K] · weight[N, K]ᵀ (+ bias[N]); weight is laid out as PyTorch's Linear.
  virtual void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) = 0;
  // out[i, :] = src[rows[i], :], converted to out's dtype (embedding lookup, pooling of one
  // token per sequence, picking the rows whose logits are wanted).
  virtual void gather_rows(const Tensor& src, std::span<const int32_t> rows, Tensor& out) = 0;
  // dst[rows[i], :] += scales[i] * src[i, :], F32; rows are distinct. A mixture-of-experts
  // layer adds each expert's output, weighted by its router probability, into the residual
  // rows of the tokens routed to it.
  virtual void scatter_add_rows(const Tensor& src, std::span<const int32_t> rows,
                                std::span<const float> scales, Tensor& dst) = 0;
  // Mixture-of-experts routing, as transformers' Qwen3-MoE and Mixtral blocks route: per
  // token (a row of logits [tokens, experts]), softmax over all experts in F32, the top_k
  // largest probabilities (equal ones in expert order), divided by their sum when
  // `normalize`. Written per token in ascending expert order: expert_ids [tokens, top_k] (F32
  // holding the ids, exact below 2^24) and expert_weights [tokens, top_k]. On the host:
  // route_on_host (moe.h); a GPU backend keeps it on the device.
  virtual void moe_route(const Tensor& logits, int32_t top_k, bool normalize, Tensor& expert_ids,
                         Tensor& expert_weights);
  // residual[t] += sum over token t's routed experts e, in ascending order, of expert_weights
  // times down_e(act(gate_e(x[t]), up_e(x[t]))). Returns how many expert matrix sets it read:
  // a set read once for several tokens counts once, one read per (token, expert) as many
  // times (a GPU's decode path). On the host: experts one at a time over their tokens through
  // this backend's own ops (run_experts_by_expert, moe.h).
  virtual int64_t moe_experts(const Tensor& x, const Tensor& expert_ids,
                              const Tensor& expert_weights, const MoeExperts& experts,
                              const MoeScratch& scratch, Tensor& residual);
  // out = a + b, elementwise; b may also be a single row [cols] broadcast over a's rows.
  virtual void add(const Tensor& a, const Tensor& b, Tensor& out) = 0;
  // Per row: x / sqrt(mean(x²) + eps) * weight[cols].
  virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;
  // Per row: (x - mean) / sqrt(var + eps) * weight + bias.
  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                          Tensor& out) = 0;
  // out = silu(gate) * up: the SwiGLU of Llama-family MLPs.
  virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  // gpt-oss's expert activation: out = (clamp(up, -limit, limit) + 1) · g · sigmoid(alpha · g)
  // with g = min(gate, limit).
  virtual void clamped_swiglu(const Tensor& gate, const Tensor& up, float alpha, float limit,
                              Tensor& out) = 0;
  // GELU, exact (erf) or the tanh approximation ("gelu_new", "gelu_pytorch_tanh").
  virtual void gelu(const Tensor& x, bool tanh_approximation, Tensor& out) = 0;
  virtual void tanh(const Tensor& x, Tensor& out) = 0;
  // out = x * sigmoid(gate), elementwise (Qwen3.5's gated attention output); gate may also be
  // one column [rows, 1], each value gating its row of x (Qwen3.5's shared expert).
  virtual void sigmoid_mul(const Tensor& gate, const Tensor& x, Tensor& out) = 0;
  // x [tokens, heads, 2 * d] split per head: first[t, h] = x[t, h, :d], second[t, h] =
  // x[t, h, d:] (Qwen3.5's q_proj yields each head's query and its output gate side by side).
  virtual void split_head_halves(const Tensor& x, Tensor& first, Tensor& second) = 0;
  // Rotary embedding in place on x[tokens, heads, head_dim], rotating the two halves of the
  // first 2 * r dimensions of each head (r = inv_freq's length, at most head_dim / 2; the rest
  // are left alone: partial rotary) as transformers' rotate_half does: angle(t, i) =
  // positions[t] * inv_freq[i], inv_freq F32 (the architecture folds rope scaling into it).
  virtual void rope(Tensor& x, std::span<const int32_t> positions, const Tensor& inv_freq) = 0;
  // Gated DeltaNet's causal depthwise convolution, then SiLU, per sequence: out[t, c] =
  // silu(sum_j weight[c, j] * x[t - kernel + 1 + j, c]), the rows before the sequence's first
  // taken from its conv_state, which then holds its last kernel - 1 inputs. x, out:
  // [tokens, channels] F32; weight: [channels, kernel] (conv1d's [channels, 1, kernel]).
  virtual void causal_conv1d_silu(const Tensor& x, const Tensor& weight,
                                  std::span<const RecurrentSequence> sequences, Tensor& out) = 0;
  // Gated DeltaNet's recurrence, per sequence in token order and per value head h (which reads
  // key head h / (value_heads / key_heads), or h % key_heads when value_heads_tiled), in F32:
  //   q, k L2-normalised (eps 1e-6), q scaled by key_head_dim^-1/2,
  //   g = a_neg[h] * softplus(a[t, h] + dt_bias[h]),  beta = sigmoid(b[t, h]),
  //   S = exp(g) S;  S += k ⊗ beta (v - Sᵀk);  out[t, h] = Sᵀq
  // with S the sequence's delta_state[h] [key_head_dim, value_head_dim]. qkv: the
  // convolution's output [tokens, 2 * key_heads * key_head_dim + value_heads * value_head_dim]
  // (q, then k, then v); a, b: [tokens, value_heads]; a_neg (-exp(A_log)), dt_bias:
  // [value_heads] F32; out: [tokens, value_heads, value_head_dim].
  virtual void gated_delta_net(const Tensor& qkv, const Tensor& a, const Tensor& b,
                               const Tensor& a_neg, const Tensor& dt_bias, int32_t key_heads,
                               bool value_heads_tiled, std::span<const RecurrentSequence> sequences,
                               Tensor& out) = 0;
  // Writes this step's k, v [tokens, kv_heads, head_dim] into the slots given per token.
  virtual void store_kv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                        const KvLayerView& kv) = 0;
  // Scaled-dot-product attention of q [tokens, heads, head_dim] over the keys and values in
  // kv, per sequence; heads share kv heads in groups (GQA: heads / kv_heads queries per kv
  // head). out: [tokens, heads, head_dim].
  virtual void attention(const Tensor& q, const KvLayerView& kv,
                         std::span<const AttentionSequence> sequences,
                         const AttentionParams& params, Tensor& out) = 0;
  // out[s, :] = mean of x's rows in spans[s].
  virtual void mean_rows(const Tensor& x, std::span<const RowSpan> spans, Tensor& out) = 0;
  // Each row scaled to unit L2 norm (rows of zeros stay zero).
  virtual void l2_normalize_rows(Tensor& x) = 0;
};

}  // namespace sparkd
