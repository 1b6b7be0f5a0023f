// The Llama-family decoder: Llama, Mistral, Mixtral, Qwen2, Qwen3, Qwen3-MoE, gpt-oss and
// Qwen3.5 differ only in what ModelSpec says (GQA, rope scaling, q/k/v biases, qk-norm, tied
// embeddings, sliding windows per layer, attention sinks, mixture-of-experts MLPs, shared
// experts, gated attention, partial rotary, Gated DeltaNet layers).
//
// One forward() runs a step for a batch of sequences: each contributes its new tokens (a
// whole prompt for prefill, one token for decode), attends over its cached positions plus
// the new ones, and appends the new keys/values to the KV cache at its placement. Qwen3.5's
// linear-attention layers have no KV: each sequence brings its recurrent state instead (a
// fixed number of bytes, whatever its length), which the step reads and advances.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/arch/activations.h"
#include "engine/backend/backend.h"
#include "engine/kv/kv_block_pool.h"
#include "engine/kv/kv_cache.h"
#include "engine/model/model_spec.h"
#include "engine/model/weights.h"

namespace sparkd::arch {

// Which of a sequence's new tokens get logits in a step.
enum class StepLogits {
  kLast,  // the next-token distribution (decode, a prompt's last chunk)
  kAll,   // every new token (scoring a prompt)
  kNone,  // none: a prefill chunk that does not reach the end of its prompt
};

struct DecoderStepSequence {
  std::span<const int32_t> tokens;  // this step's new tokens
  int32_t past_tokens = 0;          // tokens of this sequence already in the KV cache
  KvPlacement kv;
  StepLogits logits = StepLogits::kLast;
  // Models with linear-attention layers (DecoderModel::recurrent_state_bytes() > 0): this
  // sequence's recurrent state, that many bytes of backend memory kept from step to step.
  // The step zeroes it when past_tokens is 0 (a new or recomputed sequence).
  void* recurrent_state = nullptr;
};

// Recurrent state for a few sequences in one allocation, for callers without a runner (one
// generation, tests); the runner takes each sequence's from the governor instead.
class RecurrentStates {
 public:
  RecurrentStates() = default;
  RecurrentStates(Buffer buffer, uint64_t bytes_per_sequence)
      : buffer_(std::move(buffer)), bytes_per_sequence_(bytes_per_sequence) {}
  // nullptr when the model has no recurrent state.
  void* sequence(int32_t index) const {
    if (bytes_per_sequence_ == 0) return nullptr;
    return static_cast<char*>(buffer_.data()) + index * bytes_per_sequence_;
  }

 private:
  Buffer buffer_;
  uint64_t bytes_per_sequence_ = 0;
};

class DecoderModel {
 public:
  // Checks that `weights` hold every tensor the spec implies, with the right shapes.
  static Expected<std::unique_ptr<DecoderModel>> create(const model::ModelSpec& spec,
                                                        const model::ModelWeights& weights,
                                                        Backend& backend);

  const model::ModelSpec& spec() const { return spec_; }
  Backend& backend() const { return backend_; }
  Expected<KvCache> allocate_kv_cache(int32_t num_slots, int32_t block_tokens = 0) const;
  // Bytes of one sequence's recurrent state: every linear-attention layer's convolution
  // history and delta-rule matrices, F32 (0: the model keeps only KV).
  uint64_t recurrent_state_bytes() const {
    return spec_.linear_attention.state_bytes_per_sequence();
  }
  Expected<RecurrentStates> allocate_recurrent_states(int32_t sequences) const;
  // The shape of a paged KV block pool for this model.
  KvBlockPoolGeometry kv_pool_geometry(int32_t block_tokens, int32_t max_blocks) const;

  // One step. Returns the logits (host F32, [rows, vocab_size]) of each sequence's last new
  // token, of all its new tokens (kAll) or of none (kNone): rows in batch order.
  Expected<std::vector<float>> forward(std::span<const DecoderStepSequence> batch,
                                       const KvCache& kv);

  // The same step up to the final norm: the hidden states of every new token [tokens,
  // hidden_size], in `activations` memory (decoders used as embedding models pool these).
  Expected<Tensor> forward_hidden(std::span<const DecoderStepSequence> batch, const KvCache& kv,
                                  Activations& activations);

  // Forwards carve their activations from `workspace` (owned by the caller, nullptr: none)
  // while no other forward uses it.
  void set_workspace(Workspace* workspace) { workspace_ = workspace; }

  // The weight bytes the last forward read: every matrix and norm once (a mixture of experts'
  // routed experts once each, the others not at all), the embedding rows it gathered, and the
  // lm_head when it made logits. Read on the thread that ran the forward. Decode's bandwidth
  // is this over the step's time.
  uint64_t last_forward_weight_bytes() const { return last_forward_weight_bytes_; }

 private:
  // A sparse layer's routed experts, one entry per expert (MoeExperts' spans view them).
  struct ExpertTable {
    std::vector<Tensor> gate, up, down;
    std::vector<Tensor> gate_bias, up_bias, down_bias;  // gpt-oss; else empty
    bool empty() const { return gate.empty(); }
  };
  // A linear-attention (Gated DeltaNet) layer's mixer, in place of q/k/v/o.
  struct LinearAttentionWeights {
    int32_t state_index = 0;  // its place among the layers in a sequence's recurrent state
    Tensor in_proj_qkv, in_proj_z, in_proj_b, in_proj_a;
    Tensor conv;            // [conv_dim, kernel]
    Tensor dt_bias, a_neg;  // [value_heads]; a_neg = -exp(A_log)
    Tensor norm;            // the gated RMSNorm's [value_head_dim]
    Tensor out_proj;
  };
  struct LayerWeights {
    Tensor input_norm, post_attention_norm;
    std::optional<LinearAttentionWeights> linear;  // Qwen3.5's linear-attention layers
    // Attention (q_proj is [heads * 2 * head_dim, hidden] with the output gate).
    Tensor q_proj, k_proj, v_proj, o_proj;
    std::optional<Tensor> q_bias, k_bias, v_bias, o_bias;
    std::optional<Tensor> q_norm, k_norm;  // Qwen3
    std::optional<Tensor> sinks;           // gpt-oss: [heads]
    // A dense layer's MLP (Qwen3.5: a sparse layer's shared expert).
    Tensor gate_proj, up_proj, down_proj;
    std::optional<Tensor> shared_expert_gate;  // Qwen3.5: [1, hidden]
    std::optional<Tensor> gate_bias, up_bias, down_bias;
    // A sparse layer's (ModelSpec::is_sparse_layer) router [num_experts, hidden] and experts.
    Tensor router;
    std::optional<Tensor> router_bias;  // gpt-oss
    ExpertTable experts;
  };
  // The scratch a sparse layer uses, allocated once per forward for all of them.
  struct MoeScratch {
    Tensor router_logits;               // [tokens, num_experts]
    Tensor expert_ids, expert_weights;  // [tokens, experts_per_token]: the routing
    sparkd::MoeScratch experts;         // moe_scratch_rows() rows each
    Tensor shared_gate;                 // [tokens, 1]: the shared expert's gate logits (Qwen3.5)
  };

  // The scratch a linear-attention layer uses, allocated once per forward for all of them.
  struct LinearScratch {
    Tensor mixed, convolved;  // [tokens, conv_dim]: in_proj_qkv's output, then the conv's
    Tensor z, core;           // [tokens, value_heads * value_head_dim]
    Tensor a, b;              // [tokens, value_heads]
  };

  DecoderModel(const model::ModelSpec& spec, Backend& backend) : spec_(spec), backend_(backend) {}
  Status bind_weights(const model::ModelWeights& weights);
  Status bind_linear_attention(const model::ModelWeights& weights, int32_t layer,
                               const std::string& layer_prefix, LayerWeights& w);
  // A small vector weight as F32 in memory this model owns, each value passed through
  // `transform` (the +1 of zero-centred RMSNorm weights, -exp(A_log)).
  Expected<Tensor> transformed_vector(const Tensor& weight, float (*transform)(float));
  // An RMSNorm weight as the norm multiplies by it: 1 + weight when spec_.zero_centred_norms.
  Expected<Tensor> norm_weight(const Tensor& weight);
  // x += the linear-attention layer's output for `normed`, advancing each sequence's state of
  // this layer (`sequences`: the batch's rows, pointed here at this layer's state).
  void add_linear_attention(const LinearAttentionWeights& w, const Tensor& normed,
                            std::span<const DecoderStepSequence> batch,
                            std::span<RecurrentSequence> sequences, Tensor& x,
                            LinearScratch& scratch, Tensor& projected);
  // A SwiGLU MLP's three projections under `prefix` (a dense layer's "mlp.", Qwen3.5's shared
  // expert), `width` wide, with biases when `biased`.
  Status bind_mlp(const model::ModelWeights& weights, const std::string& prefix, int64_t width,
                  bool biased, LayerWeights& w);
  Status bind_experts(const model::ModelWeights& weights, const std::string& layer_prefix,
                      LayerWeights& w);
  // x += the mixture of experts' output for `normed` (the post-attention-norm activations).
  void add_experts(const LayerWeights& w, const Tensor& normed, Tensor& x, MoeScratch& scratch);
  // x += sigmoid(shared_expert_gate · normed) * shared_output, per token (shared_output is
  // overwritten on the way).
  void add_shared_expert(const LayerWeights& w, const Tensor& shared_output, const Tensor& normed,
                         Tensor& x, MoeScratch& scratch);

  model::ModelSpec spec_;
  Backend& backend_;
  Workspace* workspace_ = nullptr;
  Tensor embed_tokens_;
  std::vector<LayerWeights> layers_;
  // Each attention layer's index among the KV cache's layers (-1: a linear-attention layer).
  std::vector<int32_t> kv_layer_;
  std::vector<Buffer> owned_vectors_;  // transformed_vector()'s memory
  // What every forward reads of the layers (all but the experts); one expert's three matrices.
  uint64_t layers_fixed_bytes_ = 0;
  uint64_t expert_bytes_ = 0;
  uint64_t last_forward_weight_bytes_ = 0;
  Tensor final_norm_;
  Tensor lm_head_;  // embed_tokens_ itself when the embeddings are tied
  Buffer inv_freq_buffer_;
  Tensor inv_freq_;
};

}  // namespace sparkd::arch
