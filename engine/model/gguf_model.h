// What a GGUF model is, read from its metadata and tensor list: the ModelSpec, the names
// the architectures bind weights by, the vocabulary and the chat template.
//
// llama.cpp's converter writes each architecture by its own conventions, and this file
// undoes them so the architecture code sees what it sees from a Hugging Face checkpoint:
//   - tensor names: "blk.3.attn_q.weight" is "model.layers.3.self_attn.q_proj.weight";
//   - `llama`: the converter permutes q_proj and k_proj rows so that ggml's interleaved
//     (GPT-J style) RoPE computes what transformers' rotate-half RoPE computes; the loader
//     permutes them back (llama_row_permutation), because sparkd's RoPE is rotate-half.
//     `qwen2` and `qwen3` are written unpermuted (ggml runs them in NeoX style);
//   - llama-3 RoPE scaling arrives as the "rope_freqs.weight" divisors, not as parameters;
//   - `bert` (embedders): "token_embd" is "embeddings.word_embeddings", "blk.0.ffn_up" is
//     "encoder.layer.0.intermediate.dense", and so on; pooling is bert.pooling_type.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/model/gguf.h"
#include "engine/model/model_spec.h"
#include "engine/tokenizer/ggml_vocabulary.h"

namespace sparkd::model {

// general.architecture values sparkd runs.
std::vector<std::string> supported_gguf_architectures();

// The ModelSpec of a GGUF model: hyper-parameters from `{arch}.*` keys, biases and norms
// from which tensors exist, special tokens from tokenizer.ggml.*.
Expected<ModelSpec> gguf_model_spec(const GgufModel& model);

// The Hugging Face name of a GGUF tensor of a model of `family` ("blk.0.ffn_up.weight" ->
// "model.layers.0.mlp.up_proj.weight"; for bert "encoder.layer.0.intermediate.dense.weight");
// names without one are returned unchanged.
std::string hf_tensor_name(ModelFamily family, const std::string& gguf_name);

// For a `llama` q_proj/k_proj (or bias) of `rows` rows in heads of `head_dim`: out row r
// is file row permutation[r]. Empty when the tensor is stored as transformers has it.
std::vector<int64_t> llama_row_permutation(const ModelSpec& spec, const std::string& hf_name,
                                           int64_t rows);

// The vocabulary for the tokenizer (tokenizer.ggml.*).
Expected<tokenizer::GgmlVocabulary> gguf_vocabulary(const GgufModel& model);

// tokenizer.chat_template, when the file carries one.
Expected<std::optional<std::string>> gguf_chat_template(const GgufModel& model);

}  // namespace sparkd::model
