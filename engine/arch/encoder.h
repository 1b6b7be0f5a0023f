// BERT and XLM-RoBERTa encoders: bidirectional attention, post-LayerNorm blocks, learned
// absolute positions. Embedding models pool their hidden states; the *ForSequenceClassification
// variants put a classifier head on the first token and serve as rerankers.
//
// A batch is packed: sequences are laid end to end with no padding, and attention stays
// within each sequence, which is what transformers computes with an attention mask.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/arch/activations.h"
#include "engine/backend/backend.h"
#include "engine/model/model_spec.h"
#include "engine/model/weights.h"

namespace sparkd::arch {

struct EncoderInput {
  std::span<const int32_t> tokens;
  std::span<const int32_t> type_ids;  // empty: all zero (single texts; XLM-R always)
};

class EncoderModel {
 public:
  static Expected<std::unique_ptr<EncoderModel>> create(const model::ModelSpec& spec,
                                                        const model::ModelWeights& weights,
                                                        Backend& backend);

  const model::ModelSpec& spec() const { return spec_; }
  Backend& backend() const { return backend_; }
  // Tokens one sequence may have: the position table's length (less XLM-R's offset).
  int32_t max_tokens() const;

  // Last-layer hidden states of every token of the packed batch [tokens, hidden_size].
  Expected<Tensor> forward_hidden(std::span<const EncoderInput> batch, Activations& activations);
  // Classifier logits [batch, num_labels] (host F32), for *ForSequenceClassification.
  Expected<std::vector<float>> classify(std::span<const EncoderInput> batch);

  // Forwards carve their activations from `workspace` (owned by the caller, nullptr: none)
  // while no other forward uses it.
  void set_workspace(Workspace* workspace) { workspace_ = workspace; }

 private:
  struct LayerWeights {
    Tensor query, key, value, attention_out;
    Tensor query_bias, key_bias, value_bias, attention_out_bias;
    Tensor attention_norm, attention_norm_bias;
    Tensor intermediate, intermediate_bias, output, output_bias;
    Tensor output_norm, output_norm_bias;
  };
  // The sequence-classification head: BERT pools the first token through a dense+tanh
  // "pooler" then a classifier; XLM-R's head does dense+tanh then out_proj itself.
  struct ClassifierWeights {
    Tensor dense, dense_bias;
    Tensor out, out_bias;
  };

  EncoderModel(const model::ModelSpec& spec, Backend& backend) : spec_(spec), backend_(backend) {}
  Status bind_weights(const model::ModelWeights& weights);

  model::ModelSpec spec_;
  Backend& backend_;
  Workspace* workspace_ = nullptr;
  Tensor word_embeddings_, position_embeddings_, token_type_embeddings_;
  Tensor embedding_norm_, embedding_norm_bias_;
  std::vector<LayerWeights> layers_;
  std::optional<ClassifierWeights> classifier_;
};

}  // namespace sparkd::arch
