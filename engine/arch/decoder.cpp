#include "engine/arch/decoder.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

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

// Tensor `name` viewed as `shape`, stored so or in one of the `alternatives` of as many
// elements (some files squeeze an axis away); the loader's error names `shape` otherwise.
Status bind_as(const model::ModelWeights& weights, const std::string& name,
               std::initializer_list<std::vector<int64_t>> alternatives, std::vector<int64_t> shape,
               Tensor& out) {
  for (const std::vector<int64_t>& stored : alternatives) {
    if (auto tensor = weights.get(name, stored)) {
      out = tensor->reshaped(std::move(shape));
      return Status::ok();
    }
  }
  return bind(weights, name, std::move(shape), out);
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
  std::vector<float> inv_freq = rope_inv_freq(spec.rope, spec.rope_dim());
  if (spec.rope_freq_factors) {  // GGUF llama-3 scaling: per-frequency divisors
    const int64_t half = spec.rope_dim() / 2;
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
  // With the output gate, q_proj yields each head's query and gate side by side.
  const int64_t q_proj_rows = spec_.attention_output_gate ? 2 * q_dim : q_dim;
  // Causal LMs nest the decoder under "model." (Qwen3.5's released multimodal checkpoints
  // under "model.language_model."); a bare decoder saved as an embedding model
  // (Qwen3-Embedding) has no prefix.
  std::string prefix;
  for (const char* candidate : {"model.language_model.", "model."}) {
    if (weights.contains(std::string(candidate) + "embed_tokens.weight")) {
      prefix = candidate;
      break;
    }
  }

  SPARKD_RETURN_IF_ERROR(
      bind(weights, prefix + "embed_tokens.weight", {spec_.vocab_size, hidden}, embed_tokens_));
  SPARKD_RETURN_IF_ERROR(bind(weights, prefix + "norm.weight", {hidden}, final_norm_));
  SPARKD_ASSIGN_OR_RETURN(final_norm_, norm_weight(final_norm_));
  if (spec_.task == model::ModelTask::kGenerate) {
    if (spec_.tie_word_embeddings) {
      lm_head_ = embed_tokens_;
    } else {
      SPARKD_RETURN_IF_ERROR(bind(weights, "lm_head.weight", {spec_.vocab_size, hidden}, lm_head_));
    }
  }
  layers_.resize(spec_.num_layers);
  kv_layer_.assign(spec_.num_layers, -1);
  int32_t kv_layers = 0;
  for (int32_t i = 0; i < spec_.num_layers; ++i) {
    const std::string p = prefix + "layers." + std::to_string(i) + ".";
    LayerWeights& w = layers_[i];
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "input_layernorm.weight", {hidden}, w.input_norm));
    SPARKD_RETURN_IF_ERROR(
        bind(weights, p + "post_attention_layernorm.weight", {hidden}, w.post_attention_norm));
    SPARKD_ASSIGN_OR_RETURN(w.input_norm, norm_weight(w.input_norm));
    SPARKD_ASSIGN_OR_RETURN(w.post_attention_norm, norm_weight(w.post_attention_norm));
    if (spec_.is_linear_attention_layer(i)) {
      SPARKD_RETURN_IF_ERROR(bind_linear_attention(weights, i, p, w));
    } else {
      kv_layer_[i] = kv_layers++;
      SPARKD_RETURN_IF_ERROR(
          bind(weights, p + "self_attn.q_proj.weight", {q_proj_rows, hidden}, w.q_proj));
      SPARKD_RETURN_IF_ERROR(
          bind(weights, p + "self_attn.k_proj.weight", {kv_dim, hidden}, w.k_proj));
      SPARKD_RETURN_IF_ERROR(
          bind(weights, p + "self_attn.v_proj.weight", {kv_dim, hidden}, w.v_proj));
      SPARKD_RETURN_IF_ERROR(
          bind(weights, p + "self_attn.o_proj.weight", {hidden, q_dim}, w.o_proj));
      const bool qkv_bias = spec_.attention_qkv_bias;
      SPARKD_RETURN_IF_ERROR(
          bind_optional(weights, qkv_bias, p + "self_attn.q_proj.bias", {q_proj_rows}, w.q_bias));
      SPARKD_RETURN_IF_ERROR(
          bind_optional(weights, qkv_bias, p + "self_attn.k_proj.bias", {kv_dim}, w.k_bias));
      SPARKD_RETURN_IF_ERROR(
          bind_optional(weights, qkv_bias, p + "self_attn.v_proj.bias", {kv_dim}, w.v_bias));
      SPARKD_RETURN_IF_ERROR(bind_optional(weights, spec_.attention_out_bias,
                                           p + "self_attn.o_proj.bias", {hidden}, w.o_bias));
      if (spec_.qk_norm) {
        SPARKD_RETURN_IF_ERROR(
            bind(weights, p + "self_attn.q_norm.weight", {spec_.head_dim}, w.q_norm.emplace()));
        SPARKD_RETURN_IF_ERROR(
            bind(weights, p + "self_attn.k_norm.weight", {spec_.head_dim}, w.k_norm.emplace()));
        SPARKD_ASSIGN_OR_RETURN(*w.q_norm, norm_weight(*w.q_norm));
        SPARKD_ASSIGN_OR_RETURN(*w.k_norm, norm_weight(*w.k_norm));
      }
      if (spec_.attention_sinks) {
        SPARKD_RETURN_IF_ERROR(
            bind(weights, p + "self_attn.sinks", {spec_.num_heads}, w.sinks.emplace()));
      }
    }
    if (spec_.is_sparse_layer(i)) {
      SPARKD_RETURN_IF_ERROR(bind_experts(weights, p, w));
      const int64_t shared = spec_.moe.shared_expert_intermediate_size;
      if (shared == 0) continue;
      // Qwen3.5's shared expert runs where a dense layer's MLP would; its gate is [1, hidden]
      // as nn.Linear stores it, a vector in GGUF files.
      SPARKD_RETURN_IF_ERROR(bind_mlp(weights, p + "mlp.shared_expert.", shared, false, w));
      SPARKD_RETURN_IF_ERROR(bind_as(weights, p + "mlp.shared_expert_gate.weight", {{hidden}},
                                     {1, hidden}, w.shared_expert_gate.emplace()));
      continue;
    }
    SPARKD_RETURN_IF_ERROR(bind_mlp(weights, p + "mlp.", inter, spec_.mlp_bias, w));
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
          &w.up_bias, &w.down_bias, &w.router_bias, &w.shared_expert_gate}) {
      if (t->has_value()) layers_fixed_bytes_ += (*t)->size_bytes();
    }
    if (w.linear) {
      const LinearAttentionWeights& l = *w.linear;
      for (const Tensor* t : {&l.in_proj_qkv, &l.in_proj_z, &l.in_proj_b, &l.in_proj_a, &l.conv,
                              &l.dt_bias, &l.a_neg, &l.norm, &l.out_proj}) {
        layers_fixed_bytes_ += t->size_bytes();
      }
    }
    if (!w.experts.empty()) {
      const ExpertTable& e = w.experts;
      expert_bytes_ = e.gate[0].size_bytes() + e.up[0].size_bytes() + e.down[0].size_bytes();
      for (const std::vector<Tensor>* biases : {&e.gate_bias, &e.up_bias, &e.down_bias}) {
        if (!biases->empty()) expert_bytes_ += biases->front().size_bytes();
      }
    }
  }
  return Status::ok();
}

Status DecoderModel::bind_mlp(const model::ModelWeights& weights, const std::string& prefix,
                              int64_t width, bool biased, LayerWeights& w) {
  const int64_t hidden = spec_.hidden_size;
  SPARKD_RETURN_IF_ERROR(bind(weights, prefix + "gate_proj.weight", {width, hidden}, w.gate_proj));
  SPARKD_RETURN_IF_ERROR(bind(weights, prefix + "up_proj.weight", {width, hidden}, w.up_proj));
  SPARKD_RETURN_IF_ERROR(bind(weights, prefix + "down_proj.weight", {hidden, width}, w.down_proj));
  SPARKD_RETURN_IF_ERROR(
      bind_optional(weights, biased, prefix + "gate_proj.bias", {width}, w.gate_bias));
  SPARKD_RETURN_IF_ERROR(
      bind_optional(weights, biased, prefix + "up_proj.bias", {width}, w.up_bias));
  SPARKD_RETURN_IF_ERROR(
      bind_optional(weights, biased, prefix + "down_proj.bias", {hidden}, w.down_bias));
  return Status::ok();
}

Status DecoderModel::bind_linear_attention(const model::ModelWeights& weights, int32_t layer,
                                           const std::string& layer_prefix, LayerWeights& w) {
  const model::LinearAttentionSpec& linear = spec_.linear_attention;
  const int64_t hidden = spec_.hidden_size;
  const int64_t conv_dim = linear.conv_dim();
  const int64_t value_dim = int64_t{linear.value_heads} * linear.value_head_dim;
  const int64_t heads = linear.value_heads;
  const std::string p = layer_prefix + "linear_attn.";
  LinearAttentionWeights& l = w.linear.emplace();
  l.state_index = static_cast<int32_t>(
      std::lower_bound(linear.layers.begin(), linear.layers.end(), layer) - linear.layers.begin());
  if (linear.fused_projections) {
    // Qwen3-Next's, regrouped by the loader into [q | k | v | z] and [b | a]
    // (engine/model/qwen3_next_projections.h).
    Tensor qkvz, ba;
    SPARKD_RETURN_IF_ERROR(
        bind(weights, p + "in_proj_qkvz.weight", {conv_dim + value_dim, hidden}, qkvz));
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "in_proj_ba.weight", {2 * heads, hidden}, ba));
    l.in_proj_qkv = qkvz.row_range(0, conv_dim);
    l.in_proj_z = qkvz.row_range(conv_dim, value_dim);
    l.in_proj_b = ba.row_range(0, heads);
    l.in_proj_a = ba.row_range(heads, heads);
  } else {
    SPARKD_RETURN_IF_ERROR(
        bind(weights, p + "in_proj_qkv.weight", {conv_dim, hidden}, l.in_proj_qkv));
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "in_proj_z.weight", {value_dim, hidden}, l.in_proj_z));
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "in_proj_b.weight", {heads, hidden}, l.in_proj_b));
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "in_proj_a.weight", {heads, hidden}, l.in_proj_a));
  }
  // conv1d's [channels, 1, kernel]; GGUF stores it without the middle axis.
  SPARKD_RETURN_IF_ERROR(bind_as(weights, p + "conv1d.weight", {{conv_dim, 1, linear.conv_kernel}},
                                 {conv_dim, linear.conv_kernel}, l.conv));
  SPARKD_RETURN_IF_ERROR(bind(weights, p + "dt_bias", {heads}, l.dt_bias));
  // GGUF stores the decay rate as it is used, -exp(A_log); safetensors, A_log itself.
  if (weights.contains(p + "a_neg")) {
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "a_neg", {heads}, l.a_neg));
  } else {
    Tensor a_log;
    SPARKD_RETURN_IF_ERROR(bind(weights, p + "A_log", {heads}, a_log));
    SPARKD_ASSIGN_OR_RETURN(l.a_neg,
                            transformed_vector(a_log, [](float v) { return -std::exp(v); }));
  }
  // The gated norm scales by its weight as it is (not zero-centred).
  SPARKD_RETURN_IF_ERROR(bind(weights, p + "norm.weight", {linear.value_head_dim}, l.norm));
  SPARKD_RETURN_IF_ERROR(bind(weights, p + "out_proj.weight", {hidden, value_dim}, l.out_proj));
  return Status::ok();
}

Expected<Tensor> DecoderModel::transformed_vector(const Tensor& weight, float (*transform)(float)) {
  std::vector<float> values(static_cast<size_t>(weight.numel()));
  backend_.download_f32(weight, values);
  for (float& v : values) v = transform(v);
  SPARKD_ASSIGN_OR_RETURN(Buffer buffer, backend_.allocate(values.size() * sizeof(float)));
  backend_.upload(buffer.data(), values.data(), values.size() * sizeof(float));
  Tensor out(DType::kF32, weight.shape, buffer.data());
  owned_vectors_.push_back(std::move(buffer));
  return out;
}

Expected<Tensor> DecoderModel::norm_weight(const Tensor& weight) {
  if (!spec_.zero_centred_norms) return weight;
  // Zero-centred RMSNorm (Qwen3.5) scales by 1 + weight: added once here, in F32 as
  // transformers does, so the norms run as any other.
  return transformed_vector(weight, [](float v) { return 1.0f + v; });
}

Expected<RecurrentStates> DecoderModel::allocate_recurrent_states(int32_t sequences) const {
  const uint64_t bytes = recurrent_state_bytes();
  if (bytes == 0) return RecurrentStates();
  SPARKD_ASSIGN_OR_RETURN(Buffer buffer,
                          backend_.allocate(bytes * static_cast<uint64_t>(sequences)));
  return RecurrentStates(std::move(buffer), bytes);
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
  ExpertTable& table = w.experts;
  table.gate.resize(moe.num_experts);
  table.up.resize(moe.num_experts);
  table.down.resize(moe.num_experts);
  if (!gpt_oss && weights.contains(block + "experts.gate_up_proj")) {
    // Qwen3.5 as released: each expert's gate and up stacked in one [2 I, hidden] matrix (its
    // halves are its two projections), all experts in one tensor, without ".weight".
    Tensor gate_up, down;
    SPARKD_RETURN_IF_ERROR(bind(weights, block + "experts.gate_up_proj",
                                {experts, 2 * expert_inter, hidden}, gate_up));
    SPARKD_RETURN_IF_ERROR(
        bind(weights, block + "experts.down_proj", {experts, hidden, expert_inter}, down));
    for (int32_t e = 0; e < moe.num_experts; ++e) {
      const Tensor both = expert_slice(gate_up, e);
      table.gate[e] = both.row_range(0, expert_inter);
      table.up[e] = both.row_range(expert_inter, expert_inter);
      table.down[e] = expert_slice(down, e);
    }
    return Status::ok();
  }
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
      table.gate[e] = expert_slice(gate, e);
      table.up[e] = expert_slice(up, e);
      table.down[e] = expert_slice(down, e);
      if (biased) {
        table.gate_bias.push_back(gate_bias->row_range(e, 1).reshaped({expert_inter}));
        table.up_bias.push_back(up_bias->row_range(e, 1).reshaped({expert_inter}));
        table.down_bias.push_back(down_bias->row_range(e, 1).reshaped({hidden}));
      }
    }
    return Status::ok();
  }
  const char* gate_name = mixtral ? "w1.weight" : "gate_proj.weight";
  const char* up_name = mixtral ? "w3.weight" : "up_proj.weight";
  const char* down_name = mixtral ? "w2.weight" : "down_proj.weight";
  for (int32_t e = 0; e < moe.num_experts; ++e) {
    const std::string ep = block + "experts." + std::to_string(e) + ".";
    SPARKD_RETURN_IF_ERROR(bind(weights, ep + gate_name, {expert_inter, hidden}, table.gate[e]));
    SPARKD_RETURN_IF_ERROR(bind(weights, ep + up_name, {expert_inter, hidden}, table.up[e]));
    SPARKD_RETURN_IF_ERROR(bind(weights, ep + down_name, {hidden, expert_inter}, table.down[e]));
  }
  return Status::ok();
}

Expected<KvCache> DecoderModel::allocate_kv_cache(int32_t num_slots, int32_t block_tokens) const {
  return KvCache::allocate(backend_, spec_.kv_layer_count(), spec_.num_kv_heads, spec_.head_dim,
                           num_slots, block_tokens);
}

KvBlockPoolGeometry DecoderModel::kv_pool_geometry(int32_t block_tokens, int32_t max_blocks) const {
  KvBlockPoolGeometry geometry;
  geometry.num_layers = spec_.kv_layer_count();
  geometry.kv_heads = spec_.num_kv_heads;
  geometry.head_dim = spec_.head_dim;
  geometry.block_tokens = block_tokens;
  geometry.max_blocks = max_blocks;
  geometry.dtype = backend_.kv_dtype();
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
  // Each sequence's recurrent state, zeroed before its first token.
  const uint64_t state_bytes = recurrent_state_bytes();
  if (state_bytes > 0) {
    for (const DecoderStepSequence& seq : batch) {
      if (seq.recurrent_state == nullptr) {
        return Status(StatusCode::kInvalidArgument,
                      spec_.architecture +
                          " has linear-attention layers: every sequence of a step needs its "
                          "recurrent state");
      }
      if (seq.past_tokens == 0) backend_.fill_zero(seq.recurrent_state, state_bytes);
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
  // A dense MLP's, or a shared expert's (Qwen3-Next has both, of their own widths).
  const int64_t mlp_width = std::max(inter, int64_t{spec_.moe.shared_expert_intermediate_size});
  SPARKD_ASSIGN_OR_RETURN(Tensor mlp_gate, act.make({n, mlp_width}));
  SPARKD_ASSIGN_OR_RETURN(Tensor mlp_up, act.make({n, mlp_width}));
  Tensor q_and_gate, output_gate;  // gated attention: q_proj's output, and the gate split off
  if (spec_.attention_output_gate) {
    SPARKD_ASSIGN_OR_RETURN(q_and_gate, act.make({n, 2 * heads * head_dim}));
    SPARKD_ASSIGN_OR_RETURN(output_gate, act.make({n, heads * head_dim}));
  }
  LinearScratch linear;
  // The batch's rows for the linear-attention layers (each points them at its own state).
  std::vector<RecurrentSequence> recurrent;
  const model::LinearAttentionSpec& linear_spec = spec_.linear_attention;
  if (!linear_spec.layers.empty()) {
    const int64_t conv_dim = linear_spec.conv_dim();
    const int64_t value_heads = linear_spec.value_heads;
    SPARKD_ASSIGN_OR_RETURN(linear.mixed, act.make({n, conv_dim}));
    SPARKD_ASSIGN_OR_RETURN(linear.convolved, act.make({n, conv_dim}));
    SPARKD_ASSIGN_OR_RETURN(linear.z, act.make({n, value_heads * linear_spec.value_head_dim}));
    SPARKD_ASSIGN_OR_RETURN(linear.core, act.make({n, value_heads * linear_spec.value_head_dim}));
    SPARKD_ASSIGN_OR_RETURN(linear.a, act.make({n, value_heads}));
    SPARKD_ASSIGN_OR_RETURN(linear.b, act.make({n, value_heads}));
    for (size_t i = 0; i < batch.size(); ++i) {
      RecurrentSequence seq;
      seq.row_begin = sequences[i].query_begin;
      seq.rows = sequences[i].query_tokens;
      recurrent.push_back(seq);
    }
  }

  MoeScratch moe;
  if (spec_.moe.num_experts > 0) {
    const int64_t expert_inter = spec_.moe.expert_intermediate_size;
    const int32_t top_k = spec_.moe.experts_per_token;
    const int64_t rows = moe_scratch_rows(n, top_k);
    SPARKD_ASSIGN_OR_RETURN(moe.router_logits, act.make({n, spec_.moe.num_experts}));
    SPARKD_ASSIGN_OR_RETURN(moe.expert_ids, act.make(DType::kF32, {n, top_k}));
    SPARKD_ASSIGN_OR_RETURN(moe.expert_weights, act.make(DType::kF32, {n, top_k}));
    SPARKD_ASSIGN_OR_RETURN(moe.experts.input, act.make({rows, hidden}));
    SPARKD_ASSIGN_OR_RETURN(moe.experts.gate, act.make({rows, expert_inter}));
    SPARKD_ASSIGN_OR_RETURN(moe.experts.up, act.make({rows, expert_inter}));
    SPARKD_ASSIGN_OR_RETURN(moe.experts.output, act.make({rows, hidden}));
    if (spec_.moe.shared_expert_intermediate_size > 0) {
      SPARKD_ASSIGN_OR_RETURN(moe.shared_gate, act.make({n, 1}));
    }
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
    if (w.linear) {
      add_linear_attention(*w.linear, normed, batch, recurrent, x, linear, projected);
    } else {
      const KvLayerView& kv_layer = kv.layer(kv_layer_[l]);
      if (spec_.attention_output_gate) {
        b.linear(normed, w.q_proj, ptr(w.q_bias), q_and_gate);
        Tensor q_halves = q.reshaped({n, heads, head_dim});
        Tensor gate_halves = output_gate.reshaped({n, heads, head_dim});
        b.split_head_halves(q_and_gate.reshaped({n, heads, 2 * head_dim}), q_halves, gate_halves);
      } else {
        b.linear(normed, w.q_proj, ptr(w.q_bias), q);
      }
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
      b.store_kv(k_heads, v_heads, slots, kv_layer);
      Tensor attention_heads = attention_out.reshaped({n, heads, head_dim});
      params.sliding_window = spec_.layer_sliding_window(l);
      params.sinks = ptr(w.sinks);
      b.attention(q_heads, kv_layer, sequences, params, attention_heads);
      if (spec_.attention_output_gate) b.sigmoid_mul(output_gate, attention_out, attention_out);
      b.linear(attention_out, w.o_proj, ptr(w.o_bias), projected);
      b.add(x, projected, x);
    }

    b.rms_norm(x, w.post_attention_norm, spec_.norm_eps, normed);
    if (!w.experts.empty()) {
      add_experts(w, normed, x, moe);
      if (!w.shared_expert_gate) continue;
    }
    Tensor gate(DType::kF32, {n, w.gate_proj.rows()}, mlp_gate.data);
    Tensor up(DType::kF32, {n, w.gate_proj.rows()}, mlp_up.data);
    b.linear(normed, w.gate_proj, ptr(w.gate_bias), gate);
    b.linear(normed, w.up_proj, ptr(w.up_bias), up);
    b.silu_mul(gate, up, gate);
    b.linear(gate, w.down_proj, ptr(w.down_bias), projected);
    if (w.shared_expert_gate) {
      add_shared_expert(w, projected, normed, x, moe);
      continue;
    }
    b.add(x, projected, x);
  }
  b.rms_norm(x, final_norm_, spec_.norm_eps, x);
  return x;
}

void DecoderModel::add_shared_expert(const LayerWeights& w, const Tensor& shared_output,
                                     const Tensor& normed, Tensor& x, MoeScratch& scratch) {
  // The gate is one logit per token: its sigmoid scales the shared expert's row on the way
  // into the residual, as the router's weights scale the routed experts'.
  Backend& b = backend_;
  b.linear(normed, *w.shared_expert_gate, nullptr, scratch.shared_gate);
  Tensor gated = shared_output;
  b.sigmoid_mul(scratch.shared_gate, shared_output, gated);
  b.add(x, gated, x);
}

void DecoderModel::add_linear_attention(const LinearAttentionWeights& w, const Tensor& normed,
                                        std::span<const DecoderStepSequence> batch,
                                        std::span<RecurrentSequence> sequences, Tensor& x,
                                        LinearScratch& scratch, Tensor& projected) {
  Backend& b = backend_;
  const model::LinearAttentionSpec& spec = spec_.linear_attention;
  // A sequence's state holds each linear-attention layer's conv history, then its delta-rule
  // matrices, layer after layer.
  const int64_t conv_elements = spec.conv_state_elements();
  const int64_t delta_elements = spec.delta_state_elements();
  for (size_t i = 0; i < batch.size(); ++i) {
    float* state = static_cast<float*>(batch[i].recurrent_state) +
                   w.state_index * (conv_elements + delta_elements);
    sequences[i].conv_state = Tensor(DType::kF32, {spec.conv_kernel - 1, spec.conv_dim()}, state);
    sequences[i].delta_state =
        Tensor(DType::kF32, {spec.value_heads, spec.key_head_dim, spec.value_head_dim},
               state + conv_elements);
  }
  const int64_t n = normed.rows();
  const int64_t value_heads = spec.value_heads, value_head_dim = spec.value_head_dim;
  b.linear(normed, w.in_proj_qkv, nullptr, scratch.mixed);
  b.linear(normed, w.in_proj_z, nullptr, scratch.z);
  b.linear(normed, w.in_proj_b, nullptr, scratch.b);
  b.linear(normed, w.in_proj_a, nullptr, scratch.a);
  b.causal_conv1d_silu(scratch.mixed, w.conv, sequences, scratch.convolved);
  Tensor core = scratch.core.reshaped({n, value_heads, value_head_dim});
  b.gated_delta_net(scratch.convolved, scratch.a, scratch.b, w.a_neg, w.dt_bias, spec.key_heads,
                    spec.value_heads_tiled, sequences, core);
  // The gated RMSNorm: norm(core) * weight, times silu(z), per value head.
  Tensor core_rows = scratch.core.reshaped({n * value_heads, value_head_dim});
  b.rms_norm(core_rows, w.norm, spec_.norm_eps, core_rows);
  b.silu_mul(scratch.z.reshaped({n * value_heads, value_head_dim}), core_rows, core_rows);
  b.linear(scratch.core, w.out_proj, nullptr, projected);
  b.add(x, projected, x);
}

void DecoderModel::add_experts(const LayerWeights& w, const Tensor& normed, Tensor& x,
                               MoeScratch& scratch) {
  Backend& b = backend_;
  const model::MoeSpec& moe = spec_.moe;
  // The routing stays where the backend computes (a GPU keeps it on the device); the backend
  // then reads only the routed experts' weights.
  b.linear(normed, w.router, ptr(w.router_bias), scratch.router_logits);
  b.moe_route(scratch.router_logits, moe.experts_per_token, moe.normalize_top_k, scratch.expert_ids,
              scratch.expert_weights);
  MoeExperts experts;
  experts.gate = w.experts.gate;
  experts.up = w.experts.up;
  experts.down = w.experts.down;
  experts.gate_bias = w.experts.gate_bias;
  experts.up_bias = w.experts.up_bias;
  experts.down_bias = w.experts.down_bias;
  experts.clamped_swiglu = moe.activation == model::ExpertActivation::kClampedSwiglu;
  experts.swiglu_alpha = moe.swiglu_alpha;
  experts.swiglu_limit = moe.swiglu_limit;
  const int64_t read = b.moe_experts(normed, scratch.expert_ids, scratch.expert_weights, experts,
                                     scratch.experts, x);
  last_forward_weight_bytes_ += static_cast<uint64_t>(read) * expert_bytes_;
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
