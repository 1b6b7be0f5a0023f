#include "engine/arch/encoder.h"

#include <cmath>
#include <string>
#include <utility>

namespace sparkd::arch {

namespace {

// Binds `<name>.weight` and `<name>.bias` of a Linear or LayerNorm.
Status bind_pair(const model::ModelWeights& weights, const std::string& name,
                 std::vector<int64_t> weight_shape, Tensor& weight, Tensor& bias) {
  SPARKD_ASSIGN_OR_RETURN(weight, weights.get(name + ".weight", weight_shape));
  SPARKD_ASSIGN_OR_RETURN(bias, weights.get(name + ".bias", {weight_shape.front()}));
  return Status::ok();
}

}  // namespace

Expected<std::unique_ptr<EncoderModel>> EncoderModel::create(const model::ModelSpec& spec,
                                                             const model::ModelWeights& weights,
                                                             Backend& backend) {
  std::unique_ptr<EncoderModel> encoder(new EncoderModel(spec, backend));
  SPARKD_RETURN_IF_ERROR(encoder->bind_weights(weights));
  return encoder;
}

int32_t EncoderModel::max_tokens() const {
  return static_cast<int32_t>(position_embeddings_.dim(0)) - spec_.position_offset;
}

Status EncoderModel::bind_weights(const model::ModelWeights& weights) {
  // Bare encoders (BertModel, saved by sentence-transformers) have no prefix; the task
  // models nest them under "bert." or "roberta.".
  std::string prefix;
  for (const char* candidate : {"", "bert.", "roberta."}) {
    if (weights.contains(std::string(candidate) + "embeddings.word_embeddings.weight")) {
      prefix = candidate;
      break;
    }
  }
  const int64_t hidden = spec_.hidden_size;
  const int64_t inter = spec_.intermediate_size;
  const std::string e = prefix + "embeddings.";
  SPARKD_ASSIGN_OR_RETURN(word_embeddings_,
                          weights.get(e + "word_embeddings.weight", {spec_.vocab_size, hidden}));
  SPARKD_ASSIGN_OR_RETURN(
      position_embeddings_,
      weights.get(e + "position_embeddings.weight", {spec_.max_position_embeddings, hidden}));
  SPARKD_ASSIGN_OR_RETURN(token_type_embeddings_,
                          weights.get(e + "token_type_embeddings.weight",
                                      {std::max(spec_.type_vocab_size, 1), hidden}));
  SPARKD_RETURN_IF_ERROR(
      bind_pair(weights, e + "LayerNorm", {hidden}, embedding_norm_, embedding_norm_bias_));

  layers_.resize(spec_.num_layers);
  for (int32_t i = 0; i < spec_.num_layers; ++i) {
    const std::string p = prefix + "encoder.layer." + std::to_string(i) + ".";
    LayerWeights& w = layers_[i];
    SPARKD_RETURN_IF_ERROR(
        bind_pair(weights, p + "attention.self.query", {hidden, hidden}, w.query, w.query_bias));
    SPARKD_RETURN_IF_ERROR(
        bind_pair(weights, p + "attention.self.key", {hidden, hidden}, w.key, w.key_bias));
    SPARKD_RETURN_IF_ERROR(
        bind_pair(weights, p + "attention.self.value", {hidden, hidden}, w.value, w.value_bias));
    SPARKD_RETURN_IF_ERROR(bind_pair(weights, p + "attention.output.dense", {hidden, hidden},
                                     w.attention_out, w.attention_out_bias));
    SPARKD_RETURN_IF_ERROR(bind_pair(weights, p + "attention.output.LayerNorm", {hidden},
                                     w.attention_norm, w.attention_norm_bias));
    SPARKD_RETURN_IF_ERROR(bind_pair(weights, p + "intermediate.dense", {inter, hidden},
                                     w.intermediate, w.intermediate_bias));
    SPARKD_RETURN_IF_ERROR(
        bind_pair(weights, p + "output.dense", {hidden, inter}, w.output, w.output_bias));
    SPARKD_RETURN_IF_ERROR(
        bind_pair(weights, p + "output.LayerNorm", {hidden}, w.output_norm, w.output_norm_bias));
  }

  if (spec_.task == model::ModelTask::kRerank) {
    ClassifierWeights head;
    const int64_t labels = spec_.num_labels;
    if (spec_.family == model::ModelFamily::kBert) {
      SPARKD_RETURN_IF_ERROR(bind_pair(weights, prefix + "pooler.dense", {hidden, hidden},
                                       head.dense, head.dense_bias));
      SPARKD_RETURN_IF_ERROR(
          bind_pair(weights, "classifier", {labels, hidden}, head.out, head.out_bias));
    } else {
      SPARKD_RETURN_IF_ERROR(
          bind_pair(weights, "classifier.dense", {hidden, hidden}, head.dense, head.dense_bias));
      SPARKD_RETURN_IF_ERROR(
          bind_pair(weights, "classifier.out_proj", {labels, hidden}, head.out, head.out_bias));
    }
    classifier_ = head;
  }
  return Status::ok();
}

Expected<Tensor> EncoderModel::forward_hidden(std::span<const EncoderInput> batch,
                                              Activations& act) {
  std::vector<int32_t> tokens, positions, type_ids;
  std::vector<AttentionSequence> sequences;
  for (const EncoderInput& input : batch) {
    const int32_t count = static_cast<int32_t>(input.tokens.size());
    if (count == 0) return Status(StatusCode::kInvalidArgument, "an input has no tokens");
    if (count > max_tokens()) {
      return Status(StatusCode::kInvalidArgument,
                    "an input has " + std::to_string(count) + " tokens but " + spec_.architecture +
                        " takes at most " + std::to_string(max_tokens()));
    }
    if (!input.type_ids.empty() && input.type_ids.size() != input.tokens.size()) {
      return Status(StatusCode::kInvalidArgument, "type_ids and tokens differ in length");
    }
    AttentionSequence attention;
    attention.query_begin = static_cast<int32_t>(tokens.size());
    attention.query_tokens = count;
    attention.context_tokens = count;
    attention.kv_slot_begin = attention.query_begin;  // keys are this batch's own rows
    sequences.push_back(attention);
    for (int32_t i = 0; i < count; ++i) {
      const int32_t token = input.tokens[i];
      if (token < 0 || token >= spec_.vocab_size) {
        return Status(StatusCode::kInvalidArgument, "token id " + std::to_string(token) +
                                                        " is outside the vocabulary (size " +
                                                        std::to_string(spec_.vocab_size) + ")");
      }
      // XLM-R has a single token type; its tokenizer's pair type ids are not model inputs.
      const int32_t type =
          input.type_ids.empty() || spec_.type_vocab_size <= 1 ? 0 : input.type_ids[i];
      if (type < 0 || type >= token_type_embeddings_.dim(0)) {
        return Status(StatusCode::kInvalidArgument, "token type id " + std::to_string(type) +
                                                        " is outside the model's token types");
      }
      tokens.push_back(token);
      positions.push_back(spec_.position_offset + i);
      type_ids.push_back(type);
    }
  }
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t hidden = spec_.hidden_size;
  const int64_t heads = spec_.num_heads, head_dim = spec_.head_dim;

  SPARKD_ASSIGN_OR_RETURN(Tensor x, act.make({n, hidden}));
  SPARKD_ASSIGN_OR_RETURN(Tensor scratch, act.make({n, hidden}));
  SPARKD_ASSIGN_OR_RETURN(Tensor q, act.make({n, hidden}));
  SPARKD_ASSIGN_OR_RETURN(Tensor k, act.make({n, hidden}));
  SPARKD_ASSIGN_OR_RETURN(Tensor v, act.make({n, hidden}));
  SPARKD_ASSIGN_OR_RETURN(Tensor attention_out, act.make({n, hidden}));
  SPARKD_ASSIGN_OR_RETURN(Tensor intermediate, act.make({n, spec_.intermediate_size}));

  Backend& b = backend_;
  // Embeddings: word + token type + position, then LayerNorm (BertEmbeddings' order).
  b.gather_rows(word_embeddings_, tokens, x);
  b.gather_rows(token_type_embeddings_, type_ids, scratch);
  b.add(x, scratch, x);
  b.gather_rows(position_embeddings_, positions, scratch);
  b.add(x, scratch, x);
  b.layer_norm(x, embedding_norm_, embedding_norm_bias_, spec_.norm_eps, x);

  AttentionParams params;
  params.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  params.causal = false;
  const bool tanh_gelu = spec_.activation == model::Activation::kGeluTanh;
  for (const LayerWeights& w : layers_) {
    b.linear(x, w.query, &w.query_bias, q);
    b.linear(x, w.key, &w.key_bias, k);
    b.linear(x, w.value, &w.value_bias, v);
    KvLayerView own_keys;
    own_keys.keys = k.reshaped({n, heads, head_dim});
    own_keys.values = v.reshaped({n, heads, head_dim});
    Tensor attention_heads = attention_out.reshaped({n, heads, head_dim});
    b.attention(q.reshaped({n, heads, head_dim}), own_keys, sequences, params, attention_heads);
    b.linear(attention_out, w.attention_out, &w.attention_out_bias, scratch);
    b.add(x, scratch, x);
    b.layer_norm(x, w.attention_norm, w.attention_norm_bias, spec_.norm_eps, x);

    b.linear(x, w.intermediate, &w.intermediate_bias, intermediate);
    b.gelu(intermediate, tanh_gelu, intermediate);
    b.linear(intermediate, w.output, &w.output_bias, scratch);
    b.add(x, scratch, x);
    b.layer_norm(x, w.output_norm, w.output_norm_bias, spec_.norm_eps, x);
  }
  return x;
}

Expected<std::vector<float>> EncoderModel::classify(std::span<const EncoderInput> batch) {
  if (!classifier_) {
    return Status(StatusCode::kFailedPrecondition,
                  spec_.architecture + " has no classifier head: it is not a reranker");
  }
  Activations act(backend_, workspace_);
  SPARKD_ASSIGN_OR_RETURN(Tensor hidden, forward_hidden(batch, act));
  std::vector<int32_t> first_rows;
  int32_t begin = 0;
  for (const EncoderInput& input : batch) {
    first_rows.push_back(begin);
    begin += static_cast<int32_t>(input.tokens.size());
  }
  const int64_t count = static_cast<int64_t>(batch.size());
  SPARKD_ASSIGN_OR_RETURN(Tensor first, act.make({count, spec_.hidden_size}));
  SPARKD_ASSIGN_OR_RETURN(Tensor dense, act.make({count, spec_.hidden_size}));
  SPARKD_ASSIGN_OR_RETURN(Tensor logits, act.make({count, spec_.num_labels}));
  backend_.gather_rows(hidden, first_rows, first);
  backend_.linear(first, classifier_->dense, &classifier_->dense_bias, dense);
  backend_.tanh(dense, dense);
  backend_.linear(dense, classifier_->out, &classifier_->out_bias, logits);
  std::vector<float> host(static_cast<size_t>(logits.numel()));
  backend_.download_f32(logits, host);
  return host;
}

}  // namespace sparkd::arch
