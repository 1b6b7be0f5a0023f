#include "engine/tasks/model_footprint.h"

#include <algorithm>

#include "engine/model/gguf_model.h"
#include "engine/model/gpt_oss_experts.h"
#include "engine/model/model_location.h"
#include "engine/model/safetensors.h"
#include "engine/model/weights.h"

namespace sparkd::tasks {

uint64_t workspace_bytes(const model::ModelSpec& spec, int64_t tokens, int64_t logit_rows,
                         DType activation_dtype) {
  const uint64_t n = static_cast<uint64_t>(tokens);
  const uint64_t hidden = static_cast<uint64_t>(spec.hidden_size);
  // A dense MLP's or a shared expert's activations, whichever is wider (decoder.cpp).
  const uint64_t inter = static_cast<uint64_t>(
      std::max(spec.intermediate_size, spec.moe.shared_expert_intermediate_size));
  const uint64_t element = dtype_size_bytes(activation_dtype);
  // The tensors forward_hidden() makes (engine/arch/decoder.cpp, encoder.cpp), per token.
  uint64_t per_token = 0;
  uint64_t fixed = 0;
  if (spec.is_decoder) {
    const uint64_t q = static_cast<uint64_t>(spec.num_heads) * spec.head_dim;
    const uint64_t kv = static_cast<uint64_t>(spec.num_kv_heads) * spec.head_dim;
    per_token = 3 * hidden + 2 * q + 2 * kv + 2 * inter;
    if (spec.moe.num_experts > 0) {  // DecoderModel's MoeScratch
      const int32_t top_k = spec.moe.experts_per_token;
      per_token += static_cast<uint64_t>(spec.moe.num_experts) + 2 * static_cast<uint64_t>(top_k);
      if (spec.moe.shared_expert_intermediate_size > 0) per_token += 1;  // the shared gate
      // The experts' scratch: a row per (token, expert) for few tokens, per token for many.
      fixed += static_cast<uint64_t>(moe_scratch_rows(tokens, top_k)) *
               (2 * hidden + 2 * static_cast<uint64_t>(spec.moe.expert_intermediate_size));
    }
    if (spec.attention_output_gate) per_token += 3 * q;  // q_proj's [q | gate], the gate
    if (!spec.linear_attention.layers.empty()) {         // LinearScratch
      const model::LinearAttentionSpec& linear = spec.linear_attention;
      per_token += 2 * static_cast<uint64_t>(linear.conv_dim()) +
                   2 * static_cast<uint64_t>(linear.value_heads) * linear.value_head_dim +
                   2 * static_cast<uint64_t>(linear.value_heads);
    }
    const uint64_t rows = static_cast<uint64_t>(logit_rows);
    fixed += rows * (hidden + static_cast<uint64_t>(spec.vocab_size));
  } else {
    per_token = 6 * hidden + inter;
    const uint64_t rows = static_cast<uint64_t>(logit_rows);
    fixed = rows * (2 * hidden + static_cast<uint64_t>(std::max(spec.num_labels, 1)));
  }
  // Activations rounds every tensor up to a 64-byte line; a forward makes fewer than 64.
  constexpr uint64_t kAlignmentSlack = 64 * 64;
  return (n * per_token + fixed) * element + kAlignmentSlack;
}

Expected<ModelFootprint> estimate_footprint(const std::string& reference,
                                            const FootprintOptions& options) {
  ModelFootprint footprint;
  // As ModelWeights holds them (WeightLoadOptions::vectors_as_f32); quantized tensors keep
  // their file size.
  auto held_bytes = [](const std::vector<int64_t>& shape, DType dtype, uint64_t file_bytes) {
    return shape.size() == 1 && dtype != DType::kF32 ? static_cast<uint64_t>(shape[0]) * 4
                                                     : file_bytes;
  };
  SPARKD_ASSIGN_OR_RETURN(const model::ModelLocation location, model::locate_model(reference));
  if (location.format == model::ModelFormat::kGguf) {
    SPARKD_ASSIGN_OR_RETURN(const model::GgufModel gguf, model::read_gguf_model(location.path));
    SPARKD_ASSIGN_OR_RETURN(footprint.spec, model::gguf_model_spec(gguf));
    footprint.file_bytes = gguf.file_bytes();
    for (const model::GgufFile& part : gguf.parts) {
      for (const model::GgufTensorInfo& tensor : part.tensors) {
        footprint.weights_bytes += held_bytes(tensor.shape, tensor.dtype, tensor.size_bytes);
      }
    }
  } else {
    SPARKD_ASSIGN_OR_RETURN(footprint.spec, model::load_model_spec(location.path));
    SPARKD_ASSIGN_OR_RETURN(auto files, model::read_model_safetensors(location.path));
    // gpt-oss's fused experts are held as the loader derives them (the same bytes, biases F32;
    // float matrices quantized with `quantize`).
    SPARKD_ASSIGN_OR_RETURN(const auto derived, model::plan_gpt_oss_experts(files));
    for (const model::DerivedTensors& plan : derived) {
      for (const model::DerivedTensor& output : plan.outputs) {
        const DType held = model::derived_quantization(output.shape, output.dtype, options.quantize)
                               .value_or(output.dtype);
        footprint.weights_bytes += Tensor(held, output.shape, nullptr).size_bytes();
      }
    }
    for (const model::SafetensorsHeader& file : files) {
      footprint.file_bytes += file.file_size_bytes;
      for (const model::SafetensorsTensorInfo& tensor : file.tensors) {
        const auto quantized =
            model::load_quantization(tensor.name, tensor.shape, tensor.dtype, options.quantize);
        footprint.weights_bytes +=
            quantized ? dtype_row_bytes(*quantized, tensor.shape[1]) * tensor.shape[0]
                      : held_bytes(tensor.shape, tensor.dtype, tensor.size_bytes);
      }
    }
  }
  const model::ModelSpec& spec = footprint.spec;
  const int64_t tokens = options.max_batch_tokens;
  const int64_t rows =
      std::min<int64_t>(spec.is_decoder ? options.max_seqs : options.max_batch_inputs, tokens);
  footprint.workspace_bytes = workspace_bytes(spec, tokens, rows, options.activation_dtype);
  if (spec.is_decoder && spec.task == model::ModelTask::kGenerate) {
    // Only attention layers keep KV; linear-attention layers keep a fixed state per sequence.
    footprint.kv_bytes_per_token = 2ull * static_cast<uint64_t>(spec.kv_layer_count()) *
                                   spec.num_kv_heads * spec.head_dim *
                                   dtype_size_bytes(options.kv_dtype);
    footprint.recurrent_state_bytes_per_sequence = spec.linear_attention.state_bytes_per_sequence();
    KvBlockPoolGeometry& g = footprint.kv_geometry;
    g.num_layers = spec.kv_layer_count();
    g.kv_heads = spec.num_kv_heads;
    g.head_dim = spec.head_dim;
    g.block_tokens = options.block_tokens;
    g.dtype = options.kv_dtype;
    g.max_blocks = 1;
    footprint.kv_smallest_pool_bytes = KvBlockPool::committed_bytes_at_capacity(g);
    g.max_blocks = KvBlockPool::max_blocks_within(g, options.kv_max_bytes);
    footprint.kv_cap_bytes = KvBlockPool::committed_bytes_at_capacity(g);
  }
  return footprint;
}

}  // namespace sparkd::tasks
