// ModelSpec: the whole truth about a model once its directory has been read. Architecture
// code reads only this (never config.json), so every family quirk is decided here, once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace sparkd::model {

enum class ModelFamily { kLlama, kMistral, kQwen2, kQwen3, kQwen3_5, kGptOss, kBert, kXlmRoberta };

// What the loaded model is for; decided by the architecture and sentence-transformers files.
enum class ModelTask {
  kGenerate,  // *ForCausalLM
  kEmbed,     // BertModel / XLMRobertaModel / a decoder used as an embedder (Qwen3-Embedding)
  kRerank,    // *ForSequenceClassification
};

enum class Activation { kSilu, kGelu, kGeluTanh };

// sentence-transformers pooling (1_Pooling/config.json); last-token is Qwen3-Embedding's.
enum class Pooling { kCls, kMean, kLastToken };

struct RopeSpec {
  enum class Scaling { kNone, kLinear, kLlama3, kYarn };
  float theta = 10000.0f;
  Scaling scaling = Scaling::kNone;
  float factor = 1.0f;
  // llama3 scaling only.
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int32_t original_max_position_embeddings = 8192;  // llama3 and yarn
  // yarn only: the ramp between extrapolated and interpolated frequencies, and the factor the
  // rotated q and k are scaled by (transformers' attention_scaling, applied to cos and sin).
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  bool truncate = true;
  float attention_factor = 1.0f;
};

// The experts' activation: Llama's SwiGLU, or gpt-oss's clamped form (Backend::clamped_swiglu).
enum class ExpertActivation { kSwiglu, kClampedSwiglu };

// A mixture-of-experts MLP (Qwen3-MoE, Mixtral, gpt-oss): a router picks experts_per_token of
// num_experts SwiGLU experts per token (softmax over all, then the top k), whose outputs are
// summed with those probabilities (renormalised over the k when normalize_top_k).
struct MoeSpec {
  int32_t num_experts = 0;  // 0: every layer is dense
  int32_t experts_per_token = 0;
  int32_t expert_intermediate_size = 0;  // moe_intermediate_size
  bool normalize_top_k = false;          // norm_topk_prob
  // Which layers are sparse: those not in dense_layers (mlp_only_layers) whose index + 1 is
  // a multiple of sparse_step (decoder_sparse_step), as transformers' Qwen3MoeDecoderLayer.
  int32_t sparse_step = 1;
  std::vector<int32_t> dense_layers;
  // gpt-oss: the router and the experts' projections have biases, and the activation is
  // clamped.
  bool router_bias = false;
  bool expert_bias = false;
  ExpertActivation activation = ExpertActivation::kSwiglu;
  float swiglu_alpha = 1.702f;  // kClampedSwiglu only
  float swiglu_limit = 7.0f;
  // Qwen3.5: a shared SwiGLU expert of this width runs on every token beside the routed ones,
  // its output scaled by sigmoid(shared_expert_gate · x) (0: none).
  int32_t shared_expert_intermediate_size = 0;
};

// Qwen3.5's Gated DeltaNet layers (linear attention): no KV cache, but per sequence a
// recurrent state of fixed size, whatever the context: the last conv_kernel - 1 inputs of the
// causal depthwise convolution, and one [key_head_dim, value_head_dim] F32 matrix per value
// head that the delta rule updates token by token.
struct LinearAttentionSpec {
  int32_t key_heads = 0;    // linear_num_key_heads
  int32_t value_heads = 0;  // linear_num_value_heads, a multiple of key_heads
  int32_t key_head_dim = 0;
  int32_t value_head_dim = 0;
  int32_t conv_kernel = 0;      // linear_conv_kernel_dim
  std::vector<int32_t> layers;  // the linear-attention layers, ascending (empty: none)
  // Which key head value head h reads: transformers groups value heads by key head
  // (h / (value_heads / key_heads)); llama.cpp's GGUF files reorder them so they tile
  // (h % key_heads), every per-head tensor with them, and this says so.
  bool value_heads_tiled = false;
  // Qwen3-Next fuses the input projections, grouped per key head: in_proj_qkvz [q | k | v | z]
  // and in_proj_ba [b | a] for each key head's values. The loader regroups their rows into
  // [all q | all k | all v | all z] and [all b | all a] (qwen3_next_row_order), which the
  // decoder then takes as row ranges.
  bool fused_projections = false;

  // The convolution's channels: q and k (key_heads x key_head_dim each), then v.
  int64_t conv_dim() const {
    return 2 * int64_t{key_heads} * key_head_dim + int64_t{value_heads} * value_head_dim;
  }
  // F32 elements of one layer's state: the convolution's, then the delta rule's.
  int64_t conv_state_elements() const { return int64_t{conv_kernel - 1} * conv_dim(); }
  int64_t delta_state_elements() const {
    return int64_t{value_heads} * key_head_dim * value_head_dim;
  }
  // One sequence's state over every linear-attention layer, in bytes.
  uint64_t state_bytes_per_sequence() const {
    return static_cast<uint64_t>(conv_state_elements() + delta_state_elements()) * sizeof(float) *
           layers.size();
  }
};

struct ModelSpec {
  std::string architecture;  // config.json "architectures"[0], e.g. "Qwen2ForCausalLM"
  ModelFamily family = ModelFamily::kLlama;
  ModelTask task = ModelTask::kGenerate;
  bool is_decoder = true;  // causal attention with a KV cache (false: bidirectional encoder)

  int32_t vocab_size = 0;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // may differ from hidden_size / num_heads (Qwen3)
  int32_t max_position_embeddings = 0;
  float norm_eps = 1e-6f;  // rms_norm_eps (decoders) or layer_norm_eps (encoders)
  Activation activation = Activation::kSilu;

  // Decoders.
  RopeSpec rope;
  bool tie_word_embeddings = false;
  bool qk_norm = false;             // RMSNorm over head_dim on q and k (Qwen3)
  bool attention_qkv_bias = false;  // q/k/v projections have biases (Qwen2; Llama's attention_bias)
  bool attention_out_bias = false;  // o_proj has a bias (Llama's attention_bias)
  bool mlp_bias = false;
  int32_t sliding_window = 0;  // 0: none (Mistral sets it)
  // Layers that see the whole context although sliding_window is set (gpt-oss alternates
  // windowed and full layers; Qwen2 windows only the layers from max_window_layers on).
  std::vector<int32_t> full_attention_layers;
  bool attention_sinks = false;  // gpt-oss: a learned logit per head joins every softmax
  // Qwen3.5: q_proj also yields a per-head gate ([q | gate] per head); the attention output
  // is multiplied by sigmoid(gate) before o_proj.
  bool attention_output_gate = false;
  // Rotary embedding on the first rotary_dim dimensions of each head only (Qwen3.5's
  // partial_rotary_factor); 0: all of head_dim.
  int32_t rotary_dim = 0;
  // Qwen3.5's RMSNorms are zero-centred: they scale by (1 + weight). The model adds the 1 to
  // every RMSNorm weight but the linear-attention layers' gated norm when it binds them (GGUF
  // files store them with the 1 added: false there).
  bool zero_centred_norms = false;
  LinearAttentionSpec linear_attention;
  MoeSpec moe;
  // GGUF llama models with llama-3 RoPE scaling carry it as per-frequency divisors, the
  // tensor "rope_freqs.weight" [head_dim / 2]; inv_freq[i] is divided by factor[i].
  bool rope_freq_factors = false;

  // Encoders.
  int32_t type_vocab_size = 0;
  int32_t pad_token_id = 0;
  // XLM-R numbers positions from pad_token_id + 1; BERT from 0.
  int32_t position_offset = 0;

  // Embedding models: sentence-transformers pooling and whether a Normalize module follows.
  Pooling pooling = Pooling::kMean;
  bool normalize_embeddings = false;

  // Rerankers (sequence classification).
  int32_t num_labels = 0;
  std::vector<std::string> labels;  // id2label, in id order
  // Special token ids from config.json / generation_config.json (-1 when absent).
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;

  // Whether layer `layer` has a mixture-of-experts MLP (MoeSpec) rather than a dense one.
  bool is_sparse_layer(int32_t layer) const;
  // The attention window of layer `layer` (0: it sees every earlier position).
  int32_t layer_sliding_window(int32_t layer) const;
  // Whether layer `layer` is a Gated DeltaNet layer (no KV cache) rather than attention.
  bool is_linear_attention_layer(int32_t layer) const;
  // The layers with a KV cache (every layer but the linear-attention ones).
  int32_t kv_layer_count() const;
  // The dimensions rotary embedding turns (rotary_dim, or head_dim when that is 0).
  int32_t rope_dim() const { return rotary_dim > 0 ? rotary_dim : head_dim; }
};

// The largest hyper-parameters accepted from any model file: beyond them a value is damage.
inline constexpr int64_t kMaxDim = int64_t{1} << 20;
inline constexpr int64_t kMaxVocab = int64_t{1} << 22;
inline constexpr int64_t kMaxLayers = 1024;
inline constexpr int64_t kMaxPositions = int64_t{1} << 24;

// The hybrid layout without an explicit list of layer kinds: every full_attention_interval-th
// layer is attention, the others linear attention (transformers' and llama.cpp's default).
std::vector<int32_t> linear_layers_between_full(int32_t num_layers,
                                                int32_t full_attention_interval);

const char* family_name(ModelFamily family);
const char* task_name(ModelTask task);
// The architectures config.json may name, for "unsupported architecture" errors.
std::vector<std::string> supported_architectures();

// Parses config.json text (no file access): the fuzz target's entry point. `source` names
// the file in error messages.
Expected<ModelSpec> parse_model_config(std::string_view config_json, std::string_view source);

// Reads a model directory: config.json, generation_config.json when present, and the
// sentence-transformers files (modules.json, 1_Pooling/config.json) for embedding models.
Expected<ModelSpec> load_model_spec(const std::string& model_dir);

}  // namespace sparkd::model
