// The Llama-family decoder: Llama, Mistral, Mixtral, Qwen2, Qwen3, Qwen3-MoE and gpt-oss differ
// only in what ModelSpec says (GQA, rope scaling, q/k/v biases, qk-norm, tied embeddings,
// sliding windows per layer, attention sinks, mixture-of-experts MLPs).
//
// One forward() runs a step for a batch of sequences: each contributes its new tokens (a
// whole prompt for prefill, one token for decode), attends over its cached positions plus
// the new ones, and appends the new keys/values to the KV cache at its placement.
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
  struct ExpertWeights {
    Tensor gate_proj, up_proj, down_proj;
    std::optional<Tensor> gate_bias, up_bias, down_bias;  // gpt-oss
  };
  struct LayerWeights {
    Tensor input_norm, post_attention_norm;
    Tensor q_proj, k_proj, v_proj, o_proj;
    std::optional<Tensor> q_bias, k_bias, v_bias, o_bias;
    std::optional<Tensor> q_norm, k_norm;  // Qwen3
    std::optional<Tensor> sinks;           // gpt-oss: [heads]
    // A dense layer's MLP.
    Tensor gate_proj, up_proj, down_proj;
    std::optional<Tensor> gate_bias, up_bias, down_bias;
    // A sparse layer's (ModelSpec::is_sparse_layer) router [num_experts, hidden] and experts.
    Tensor router;
    std::optional<Tensor> router_bias;  // gpt-oss
    std::vector<ExpertWeights> experts;
  };
  // The scratch a sparse layer uses, allocated once per forward for all of them.
  struct MoeScratch {
    Tensor router_logits;  // [tokens, num_experts]
    Tensor input, gate, up,
        output;  // [tokens, hidden], [tokens, expert_inter] x2, [tokens, hidden]
  };

  DecoderModel(const model::ModelSpec& spec, Backend& backend) : spec_(spec), backend_(backend) {}
  Status bind_weights(const model::ModelWeights& weights);
  Status bind_experts(const model::ModelWeights& weights, const std::string& layer_prefix,
                      LayerWeights& w);
  // x += the mixture of experts' output for `normed` (the post-attention-norm activations).
  void add_experts(const LayerWeights& w, const Tensor& normed, Tensor& x, MoeScratch& scratch);

  model::ModelSpec spec_;
  Backend& backend_;
  Workspace* workspace_ = nullptr;
  Tensor embed_tokens_;
  std::vector<LayerWeights> layers_;
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
