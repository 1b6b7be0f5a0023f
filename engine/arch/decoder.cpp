#include "engine/arch/decoder.h"

#include <cmath>
#include <string>
#include <utility>

#include "engine/arch/moe_routing.h"
#include "engine/arch/rope.h"

namespace sparkd::arch {

namespace {

// Tensor `name` with `shape`, or the loader's error naming both.
Status bind(const model::ModelWeights& weights, const std::string& name, std::vector<int64_t> shape,
            Tensor& out) {
  SPARKD_ASSIGN_OR_RETURN(out, weights.get(name, shape));
  return Status::ok();
}

Status bind_optional(const model::ModelWeights& weights, bool present, const std::string& name,
                     std::vector<int64_t> shape, std::optional<Tensor>& out) {
  if (!present) return Status::ok();
  SPARKD_ASSIGN_OR_RETURN(out, weights.get(name, shape));
  return Status::ok();
}

const Tensor* ptr(const std::optional<Tensor>& t) {
  return t ? &*t : nullptr;
}

// Expert `e`'s [rows, cols] matrix of a stacked [experts, rows, cols] tensor (GGUF's *_exps):
// contiguous, whatever the block-quantized type.
Tensor expert_slice(const Tensor& stacked, int64_t e) {
  const int64_t rows = stacked.shape[1], cols = stacked.shape[2];
  const size_t bytes = static_cast<size_t>(rows) * dtype_row_bytes(stacked.dtype, cols);
  return Tensor(stacked.dtype, {rows, cols}, static_cast<char*>(stacked.data) + e * bytes);
}

}  // namespace

Expected<std::unique_ptr<DecoderModel>> DecoderModel::create(const model::ModelSpec& spec,
                                                             const model::ModelWeights& weights,
                                                             Backend& backend) {
  std::unique_ptr<DecoderModel> decoder(new DecoderModel(spec, backend));
  SPARKD_RETURN_IF_ERROR(decoder->bind_weights(weights));
  std::vector<float> inv_freq = rope_inv_freq(spec.rope, spec.head_dim);
  if (spec.rope_freq_factors) {  // GGUF llama-3 scaling: per-frequency divisors
    const int64_t half = spec.head_dim / 2;
    SPARKD_ASSIGN_OR_RETURN(Tensor factors, weights.get("rope_freqs.weight", {half}));
    std::vector<float> host(static_cast<size_t>(half));
    backend.download_f32(factors, host);
    for (int64_t i = 0; i < half; ++i) inv_freq[i] /= host[i];
  }
  SPARKD_ASSIGN_OR_RETURN(decoder->inv_freq_buffer_,
                          backend.allocate(inv_freq.size() * sizeof(float)));
  backend.upload(decoder->inv_freq_buffer_.data(), inv_freq.data(),
                 inv_freq.size() * sizeof(float));
  decoder->inv_freq_ = Tensor(DType::kF32, {static_cast<int64_t>(inv_freq.size())},
                              decoder->inv_freq_buffer_.data());
  return decoder;
}

Status DecoderModel::bind_weights(const model::ModelWeights& weights) {
  const int64_t hidden = spec_.hidden_size;
  const int64_t q_dim = int64_t{spec_.num_heads} * spec_.head_dim;
  const int64_t kv_dim = int64_t{spec_.num_kv_heads} * spec_.head_dim;
  const int64_t inter = spec_.intermediate_size;
  // Causal LMs nest the decoder under "model."; a bare decoder saved as an embedding model
  // (Qwen3-Embedding) has no prefix.
  const std::string prefix = weights.contains("model.embed_tokens.weight") ? "model." : "";

  SPARKD_RETURN_IF_ERROR(
      bind(weights, prefix + "embed_tokens.weight", {spec_.vocab_size, hidden}, embed_tokens_));
  SPARKD_RETURN_IF_ERROR(bind(weights, prefix + "norm.weight", {hidden}, final_norm_));
  if (spec_.task == model::ModelTask::kGenerate) {
    if (spec_.tie_word_embeddings) {
      lm_head_ = embed_tokens_;
    } else {
      SPARKD_RETURN_IF_ERROR(bind(weights, "lm_head.weight", {spec_.vocab_size, hidden}, lm_head_));
    }
  }
  layers_.resize(spec_.num_layers);
  for (int32_t i = 0; i < spec_.num_layers; ++i) {
    const std::string p = prefix + "layers." + std::to_string(i) + ".";
    LayerWeights& w = layers_[i];
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "input_layernorm.weight", {hidden}, w.input_norm));
    SPARKD_RETURN_IF_ERROR(
        bind(weights, p + "post_attention_layernorm.weight", {hidden}, w.post_attention_norm));
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "self_attn.q_proj.weight", {q_dim, hidden}, w.q_proj));
    SPARKD_RETURN_IF_ERROR(
        bind(weights, p + "self_attn.k_proj.weight", {kv_dim, hidden}, w.k_proj));
    SPARKD_RETURN_IF_ERROR(
        bind(weights, p + "self_attn.v_proj.weight", {kv_dim, hidden}, w.v_proj));
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "self_attn.o_proj.weight", {hidden, q_dim}, w.o_proj));
    const bool qkv_bias = spec_.attention_qkv_bias;
    SPARKD_RETURN_IF_ERROR(
        bind_optional(weights, qkv_bias, p + "self_attn.q_proj.bias", {q_dim}, w.q_bias));
    SPARKD_RETURN_IF_ERROR(
        bind_optional(weights, qkv_bias, p + "self_attn.k_proj.bias", {kv_dim}, w.k_bias));
    SPARKD_RETURN_IF_ERROR(
        bind_optional(weights, qkv_bias, p + "self_attn.v_proj.bias", {kv_dim}, w.v_bias));
    SPARKD_RETURN_IF_ERROR(bind_optional(weights, spec_.attention_out_bias,
                                         p + "self_attn.o_proj.bias", {hidden}, w.o_bias));
    SPARKD_RETURN_IF_ERROR(bind_optional(weights, spec_.qk_norm, p + "self_attn.q_norm.weight",
                                         {spec_.head_dim}, w.q_norm));
    SPARKD_RETURN_IF_ERROR(bind_optional(weights, spec_.qk_norm, p + "self_attn.k_norm.weight",
                                         {spec_.head_dim}, w.k_norm));
    if (spec_.attention_sinks) {
      SPARKD_RETURN_IF_ERROR(
          bind(weights, p + "self_attn.sinks", {spec_.num_heads}, w.sinks.emplace()));
    }
    if (spec_.is_sparse_layer(i)) {
      SPARKD_RETURN_IF_ERROR(bind_experts(weights, p, w));
      continue;
    }
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "mlp.gate_proj.weight", {inter, hidden}, w.gate_proj));
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "mlp.up_proj.weight", {inter, hidden}, w.up_proj));
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "mlp.down_proj.weight", {hidden, inter}, w.down_proj));
    const bool mlp_bias = spec_.mlp_bias;
    SPARKD_RETURN_IF_ERROR(
        bind_optional(weights, mlp_bias, p + "mlp.gate_proj.bias", {inter}, w.gate_bias));
    SPARKD_RETURN_IF_ERROR(
        bind_optional(weights, mlp_bias, p + "mlp.up_proj.bias", {inter}, w.up_bias));
    SPARKD_RETURN_IF_ERROR(
        bind_optional(weights, mlp_bias, p + "mlp.down_proj.bias", {hidden}, w.down_bias));
  }
  // What every forward reads of the layers (all but the experts), for
  // last_forward_weight_bytes().
  layers_fixed_bytes_ = 0;
  for (const LayerWeights& w : layers_) {
    for (const Tensor* t : {&w.input_norm, &w.post_attention_norm, &w.q_proj, &w.k_proj, &w.v_proj,
                            &w.o_proj, &w.gate_proj, &w.up_proj, &w.down_proj, &w.router}) {
      if (t->data != nullptr) layers_fixed_bytes_ += t->size_bytes();
    }
    for (const std::optional<Tensor>* t :
         {&w.q_bias, &w.k_bias, &w.v_bias, &w.o_bias, &w.q_norm, &w.k_norm, &w.sinks, &w.gate_bias,
          &w.up_bias, &w.down_bias, &w.router_bias}) {
      if (t->has_value()) layers_fixed_bytes_ += (*t)->size_bytes();
    }
    if (!w.experts.empty()) {
      const ExpertWeights& e = w.experts.front();
      expert_bytes_ = e.gate_proj.size_bytes() + e.up_proj.size_bytes() + e.down_proj.size_bytes();
      for (const std::optional<Tensor>* t : {&e.gate_bias, &e.up_bias, &e.down_bias}) {
        if (t->has_value()) expert_bytes_ += (*t)->size_bytes();
      }
    }
  }
  return Status::ok();
}

Status DecoderModel::bind_experts(const model::ModelWeights& weights, const std::string& p,
                                  LayerWeights& w) {
  const model::MoeSpec& moe = spec_.moe;
  const int64_t hidden = spec_.hidden_size;
  const int64_t experts = moe.num_experts;
  const int64_t expert_inter = moe.expert_intermediate_size;
  // Qwen3-MoE: mlp.gate, mlp.experts.E.{gate,up,down}_proj; Mixtral keeps the original
  // release's block_sparse_moe.gate, block_sparse_moe.experts.E.{w1,w3,w2}; gpt-oss has
  // mlp.router and its experts stacked (the loader has split gate_up_proj into gate_proj and
  // up_proj, [experts, rows, cols] like nn.Linear's, as GGUF's *_exps are too).
  const bool mixtral = spec_.architecture == "MixtralForCausalLM";
  const bool gpt_oss = spec_.family == model::ModelFamily::kGptOss;
  const std::string block = p + (mixtral ? "block_sparse_moe." : "mlp.");
  const std::string router = block + (gpt_oss ? "router." : "gate.");
  SPARKD_RETURN_IF_ERROR(bind(weights, router + "weight", {experts, hidden}, w.router));
  SPARKD_RETURN_IF_ERROR(
      bind_optional(weights, moe.router_bias, router + "bias", {experts}, w.router_bias));
  w.experts.resize(moe.num_experts);
  if (weights.contains(block + "experts.gate_proj.weight")) {  // stacked (GGUF, gpt-oss)
    Tensor gate, up, down;
    SPARKD_RETURN_IF_ERROR(
        bind(weights, block + "experts.gate_proj.weight", {experts, expert_inter, hidden}, gate));
    SPARKD_RETURN_IF_ERROR(
        bind(weights, block + "experts.up_proj.weight", {experts, expert_inter, hidden}, up));
    SPARKD_RETURN_IF_ERROR(
        bind(weights, block + "experts.down_proj.weight", {experts, hidden, expert_inter}, down));
    std::optional<Tensor> gate_bias, up_bias, down_bias;
    const bool biased = moe.expert_bias;
    SPARKD_RETURN_IF_ERROR(bind_optional(weights, biased, block + "experts.gate_proj.bias",
                                         {experts, expert_inter}, gate_bias));
    SPARKD_RETURN_IF_ERROR(bind_optional(weights, biased, block + "experts.up_proj.bias",
                                         {experts, expert_inter}, up_bias));
    SPARKD_RETURN_IF_ERROR(bind_optional(weights, biased, block + "experts.down_proj.bias",
                                         {experts, hidden}, down_bias));
    for (int32_t e = 0; e < moe.num_experts; ++e) {
      ExpertWeights& ew = w.experts[e];
      ew.gate_proj = expert_slice(gate, e);
      ew.up_proj = expert_slice(up, e);
      ew.down_proj = expert_slice(down, e);
      if (biased) {
        ew.gate_bias = gate_bias->row_range(e, 1).reshaped({expert_inter});
        ew.up_bias = up_bias->row_range(e, 1).reshaped({expert_inter});
        ew.down_bias = down_bias->row_range(e, 1).reshaped({hidden});
      }
    }
    return Status::ok();
  }
  const char* gate_name = mixtral ? "w1.weight" : "gate_proj.weight";
  const char* up_name = mixtral ? "w3.weight" : "up_proj.weight";
  const char* down_name = mixtral ? "w2.weight" : "down_proj.weight";
  for (int32_t e = 0; e < moe.num_experts; ++e) {
    const std::string ep = block + "experts." + std::to_string(e) + ".";
    ExpertWeights& ew = w.experts[e];
    SPARKD_RETURN_IF_ERROR(bind(weights, ep + gate_name, {expert_inter, hidden}, ew.gate_proj));
    SPARKD_RETURN_IF_ERROR(bind(weights, ep + up_name, {expert_inter, hidden}, ew.up_proj));
    SPARKD_RETURN_IF_ERROR(bind(weights, ep + down_name, {hidden, expert_inter}, ew.down_proj));
  }
  return Status::ok();
}

Expected<KvCache> DecoderModel::allocate_kv_cache(int32_t num_slots, int32_t block_tokens) const {
  return KvCache::allocate(backend_, spec_.num_layers, spec_.num_kv_heads, spec_.head_dim,
                           num_slots, block_tokens);
}

KvBlockPoolGeometry DecoderModel::kv_pool_geometry(int32_t block_tokens, int32_t max_blocks) const {
  KvBlockPoolGeometry geometry;
  geometry.num_layers = spec_.num_layers;
  geometry.kv_heads = spec_.num_kv_heads;
  geometry.head_dim = spec_.head_dim;
  geometry.block_tokens = block_tokens;
  geometry.max_blocks = max_blocks;
  geometry.dtype = backend_.activation_dtype();
  return geometry;
}

Expected<Tensor> DecoderModel::forward_hidden(std::span<const DecoderStepSequence> batch,
                                              const KvCache& kv, Activations& act) {
  // Host-side bookkeeping: the flat token list, each token's position and KV slot, and the
  // per-sequence attention spans.
  std::vector<int32_t> tokens, positions, slots;
  std::vector<AttentionSequence> sequences;
  for (const DecoderStepSequence& seq : batch) {
    AttentionSequence attention;
    attention.query_begin = static_cast<int32_t>(tokens.size());
    attention.query_tokens = static_cast<int32_t>(seq.tokens.size());
    attention.context_tokens = seq.past_tokens + attention.query_tokens;
    attention.kv_slot_begin = seq.kv.kv_slot_begin;
    attention.block_table = seq.kv.block_table;
    sequences.push_back(attention);
    for (size_t i = 0; i < seq.tokens.size(); ++i) {
      const int32_t token = seq.tokens[i];
      if (token < 0 || token >= spec_.vocab_size) {
        return Status(StatusCode::kInvalidArgument, "token id " + std::to_string(token) +
                                                        " is outside the vocabulary (size " +
                                                        std::to_string(spec_.vocab_size) + ")");
      }
      const int32_t position = seq.past_tokens + static_cast<int32_t>(i);
      tokens.push_back(token);
      positions.push_back(position);
      slots.push_back(kv.slot(seq.kv, position));
    }
  }
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t hidden = spec_.hidden_size;
  const int64_t heads = spec_.num_heads, kv_heads = spec_.num_kv_heads, head_dim = spec_.head_dim;
  const int64_t inter = spec_.intermediate_size;

  SPARKD_ASSIGN_OR_RETURN(Tensor x, act.make({n, hidden}));
  SPARKD_ASSIGN_OR_RETURN(Tensor normed, act.make({n, hidden}));
  SPARKD_ASSIGN_OR_RETURN(Tensor q, act.make({n, heads * head_dim}));
  SPARKD_ASSIGN_OR_RETURN(Tensor k, act.make({n, kv_heads * head_dim}));
  SPARKD_ASSIGN_OR_RETURN(Tensor v, act.make({n, kv_heads * head_dim}));
  SPARKD_ASSIGN_OR_RETURN(Tensor attention_out, act.make({n, heads * head_dim}));
  SPARKD_ASSIGN_OR_RETURN(Tensor projected, act.make({n, hidden}));
  SPARKD_ASSIGN_OR_RETURN(Tensor gate, act.make({n, inter}));
  SPARKD_ASSIGN_OR_RETURN(Tensor up, act.make({n, inter}));

  MoeScratch moe;
  if (spec_.moe.num_experts > 0) {
    const int64_t expert_inter = spec_.moe.expert_intermediate_size;
    SPARKD_ASSIGN_OR_RETURN(moe.router_logits, act.make({n, spec_.moe.num_experts}));
    SPARKD_ASSIGN_OR_RETURN(moe.input, act.make({n, hidden}));
    SPARKD_ASSIGN_OR_RETURN(moe.gate, act.make({n, expert_inter}));
    SPARKD_ASSIGN_OR_RETURN(moe.up, act.make({n, expert_inter}));
    SPARKD_ASSIGN_OR_RETURN(moe.output, act.make({n, hidden}));
  }

  AttentionParams params;
  // YaRN scales the rotated q and k by attention_factor (transformers scales cos and sin):
  // q·k, so the scores, by its square.
  const float rope_scale = spec_.rope.attention_factor;
  params.scale = rope_scale * rope_scale / std::sqrt(static_cast<float>(head_dim));
  params.causal = true;

  Backend& b = backend_;
  last_forward_weight_bytes_ = static_cast<uint64_t>(n) * embed_tokens_.row_bytes() +
                               final_norm_.size_bytes() + layers_fixed_bytes_;
  b.gather_rows(embed_tokens_, tokens, x);
  for (int32_t l = 0; l < spec_.num_layers; ++l) {
    const LayerWeights& w = layers_[l];
    b.rms_norm(x, w.input_norm, spec_.norm_eps, normed);
    b.linear(normed, w.q_proj, ptr(w.q_bias), q);
    b.linear(normed, w.k_proj, ptr(w.k_bias), k);
    b.linear(normed, w.v_proj, ptr(w.v_bias), v);
    Tensor q_heads = q.reshaped({n, heads, head_dim});
    Tensor k_heads = k.reshaped({n, kv_heads, head_dim});
    if (spec_.qk_norm) {  // RMSNorm over each head's vector, before rope (Qwen3)
      Tensor q_rows = q.reshaped({n * heads, head_dim});
      Tensor k_rows = k.reshaped({n * kv_heads, head_dim});
      b.rms_norm(q_rows, *w.q_norm, spec_.norm_eps, q_rows);
      b.rms_norm(k_rows, *w.k_norm, spec_.norm_eps, k_rows);
    }
    b.rope(q_heads, positions, inv_freq_);
    b.rope(k_heads, positions, inv_freq_);
    Tensor v_heads = v.reshaped({n, kv_heads, head_dim});
    b.store_kv(k_heads, v_heads, slots, kv.layer(l));
    Tensor attention_heads = attention_out.reshaped({n, heads, head_dim});
    params.sliding_window = spec_.layer_sliding_window(l);
    params.sinks = ptr(w.sinks);
    b.attention(q_heads, kv.layer(l), sequences, params, attention_heads);
    b.linear(attention_out, w.o_proj, ptr(w.o_bias), projected);
    b.add(x, projected, x);

    b.rms_norm(x, w.post_attention_norm, spec_.norm_eps, normed);
    if (!w.experts.empty()) {
      add_experts(w, normed, x, moe);
      continue;
    }
    b.linear(normed, w.gate_proj, ptr(w.gate_bias), gate);
    b.linear(normed, w.up_proj, ptr(w.up_bias), up);
    b.silu_mul(gate, up, gate);
    b.linear(gate, w.down_proj, ptr(w.down_bias), projected);
    b.add(x, projected, x);
  }
  b.rms_norm(x, final_norm_, spec_.norm_eps, x);
  return x;
}

void DecoderModel::add_experts(const LayerWeights& w, const Tensor& normed, Tensor& x,
                               MoeScratch& scratch) {
  Backend& b = backend_;
  const model::MoeSpec& moe = spec_.moe;
  const int64_t n = normed.rows();
  // The router's choice is made on the host: top-k over a few hundred logits per token is
  // small next to one expert's matrices, and it decides which weights are read at all.
  b.linear(normed, w.router, ptr(w.router_bias), scratch.router_logits);
  std::vector<float> logits(static_cast<size_t>(n) * moe.num_experts);
  b.download_f32(scratch.router_logits, logits);
  const std::vector<ExpertAssignment> routed =
      route_tokens(logits, n, moe.num_experts, moe.experts_per_token, moe.normalize_top_k);
  // Each expert with tokens runs once over all of them.
  for (int32_t e = 0; e < moe.num_experts; ++e) {
    const ExpertAssignment& assigned = routed[e];
    if (assigned.tokens.empty()) continue;
    const int64_t m = static_cast<int64_t>(assigned.tokens.size());
    const ExpertWeights& expert = w.experts[e];
    last_forward_weight_bytes_ += expert_bytes_;
    Tensor input = scratch.input.row_range(0, m);
    Tensor gate = scratch.gate.row_range(0, m);
    Tensor up = scratch.up.row_range(0, m);
    Tensor output = scratch.output.row_range(0, m);
    b.gather_rows(normed, assigned.tokens, input);
    b.linear(input, expert.gate_proj, ptr(expert.gate_bias), gate);
    b.linear(input, expert.up_proj, ptr(expert.up_bias), up);
    if (moe.activation == model::ExpertActivation::kClampedSwiglu) {
      b.clamped_swiglu(gate, up, moe.swiglu_alpha, moe.swiglu_limit, gate);
    } else {
      b.silu_mul(gate, up, gate);
    }
    b.linear(gate, expert.down_proj, ptr(expert.down_bias), output);
    b.scatter_add_rows(output, assigned.tokens, assigned.weights, x);
  }
}

Expected<std::vector<float>> DecoderModel::forward(std::span<const DecoderStepSequence> batch,
                                                   const KvCache& kv) {
  if (lm_head_.data == nullptr) {
    return Status(StatusCode::kFailedPrecondition,
                  spec_.architecture + " has no language-model head: it is an embedding model");
  }
  Activations act(backend_, workspace_);
  SPARKD_ASSIGN_OR_RETURN(Tensor hidden, forward_hidden(batch, kv, act));
  // Only the rows whose logits are wanted go through the (large) vocabulary projection.
  std::vector<int32_t> rows;
  int32_t begin = 0;
  for (const DecoderStepSequence& seq : batch) {
    const int32_t count = static_cast<int32_t>(seq.tokens.size());
    if (seq.logits == StepLogits::kAll) {
      for (int32_t i = 0; i < count; ++i) rows.push_back(begin + i);
    } else if (seq.logits == StepLogits::kLast && count > 0) {
      rows.push_back(begin + count - 1);
    }
    begin += count;
  }
  const int64_t n_rows = static_cast<int64_t>(rows.size());
  SPARKD_ASSIGN_OR_RETURN(Tensor picked, act.make({n_rows, spec_.hidden_size}));
  backend_.gather_rows(hidden, rows, picked);
  SPARKD_ASSIGN_OR_RETURN(Tensor logits, act.make({n_rows, spec_.vocab_size}));
  backend_.linear(picked, lm_head_, nullptr, logits);
  if (n_rows > 0) last_forward_weight_bytes_ += lm_head_.size_bytes();
  std::vector<float> host(static_cast<size_t>(logits.numel()));
  backend_.download_f32(logits, host);
  return host;
}

}  // namespace sparkd::arch
