// A model directory loaded onto a backend, and the three things a model can be asked to do:
// embed texts, score (query, document) pairs, and generate a continuation.
//
// These are the single-request paths sparkd-run and the tests use; the serving path batches
// many requests through the scheduler instead, on the same DecoderModel/EncoderModel.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "engine/arch/decoder.h"
#include "engine/arch/encoder.h"
#include "engine/backend/backend.h"
#include "engine/model/model_location.h"
#include "engine/model/model_spec.h"
#include "engine/model/weights.h"
#include "engine/tasks/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace sparkd::tasks {

class LoadedModel {
 public:
  // Locates `reference` (model::locate_model: a directory, a .gguf file, ollama:, hf:),
  // reads the ModelSpec (config.json or GGUF metadata), the tokenizer and the weights, and
  // binds the architecture. Every failure names the file and what is wrong with it.
  static Expected<std::unique_ptr<LoadedModel>> load(
      const std::string& reference, Backend& backend,
      const model::WeightLoadOptions& weight_options = {});
  // Only the tokenizer of `reference` (as load() builds it, with the file's own defaults):
  // a tokenizer.json (or a directory holding one), a GGUF model, ollama:, hf:.
  static Expected<std::shared_ptr<const tokenizer::Tokenizer>> load_tokenizer(
      const std::string& reference);

  // The model directory, or the GGUF file, it was loaded from.
  const std::string& dir() const { return dir_; }
  model::ModelFormat format() const { return format_; }
  // The model's own chat template, if it has one: chat_template.jinja, tokenizer_config.json's
  // chat_template, or GGUF's tokenizer.chat_template.
  const std::optional<ChatTemplateSource>& chat_template_source() const {
    return chat_template_source_;
  }
  // The texts of its BOS/EOS/UNK/PAD tokens, as a chat template prints them.
  const SpecialTokenTexts& special_token_texts() const { return special_token_texts_; }
  const model::ModelSpec& spec() const { return spec_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  // Shared ownership, for components that keep the tokenizer (incremental detokenizers).
  const std::shared_ptr<const tokenizer::Tokenizer>& tokenizer_ptr() const { return tokenizer_; }
  const model::ModelWeights& weights() const { return weights_; }
  Backend& backend() const { return backend_; }
  // The longest input (in tokens) one sequence may have: sentence-transformers'
  // max_seq_length or the tokenizer's model_max_length for encoders, the position limit
  // for decoders.
  int32_t max_input_tokens() const { return max_input_tokens_; }

  arch::DecoderModel* decoder() const { return decoder_.get(); }
  arch::EncoderModel* encoder() const { return encoder_.get(); }

  // Allocates (and makes resident) the workspace every forward of this model carves its
  // activations from: `size_bytes` from tasks::workspace_bytes() for the largest batch the
  // model's runner will run. Replaces any earlier one.
  Status reserve_workspace(size_t size_bytes);
  // nullptr until reserve_workspace().
  arch::Workspace* workspace() const { return workspace_.get(); }

 private:
  explicit LoadedModel(Backend& backend) : backend_(backend) {}

  std::string dir_;
  model::ModelFormat format_ = model::ModelFormat::kSafetensors;
  std::optional<ChatTemplateSource> chat_template_source_;
  SpecialTokenTexts special_token_texts_;
  Backend& backend_;
  model::ModelSpec spec_;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer_;  // plain: no padding, no truncation
  model::ModelWeights weights_;
  int32_t max_input_tokens_ = 0;
  std::unique_ptr<arch::Workspace> workspace_;
  std::unique_ptr<arch::DecoderModel> decoder_;
  std::unique_ptr<arch::EncoderModel> encoder_;
};

// ---- embed ------------------------------------------------------------------------------
// One input's tokens, with the model's special tokens. Longer than max_input_tokens():
// cut to it when `truncate` (sentence-transformers' behaviour), else INVALID_ARGUMENT saying
// both lengths (TEI's behaviour when truncation is off).
Expected<std::vector<int32_t>> encode_embed_input(const LoadedModel& model, std::string_view text,
                                                  bool truncate);
// One forward pass over `inputs` (each non-empty, packed without padding): pooled
// embeddings [inputs, dimensions], L2-normalised when `normalize`.
Expected<std::vector<float>> embed_batch(const LoadedModel& model,
                                         std::span<const std::vector<int32_t>> inputs,
                                         bool normalize);

struct Embeddings {
  int32_t dimensions = 0;
  std::vector<float> values;          // [inputs, dimensions], row-major
  std::vector<int32_t> token_counts;  // tokens each input had after truncation
};
// Texts are tokenized with the model's special tokens and truncated to max_input_tokens()
// as sentence-transformers does.
Expected<Embeddings> embed_texts(const LoadedModel& model, std::span<const std::string> texts);
Expected<Embeddings> embed_token_ids(const LoadedModel& model,
                                     std::span<const std::vector<int32_t>> inputs);

// ---- rerank -----------------------------------------------------------------------------
struct PairEncoding {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;
};
// A (query, document) pair as the model's pair template. Longer than max_input_tokens():
// cut longest-first when `truncate`, else INVALID_ARGUMENT.
Expected<PairEncoding> encode_rerank_pair(const LoadedModel& model, std::string_view query,
                                          std::string_view document, bool truncate);
// One forward pass of the classifier over `pairs`: one logit each.
Expected<std::vector<float>> classify_batch(const LoadedModel& model,
                                            std::span<const PairEncoding> pairs);
float sigmoid(float logit);

struct RerankScores {
  std::vector<float> logits;         // the classifier's raw output, one per document
  std::vector<float> probabilities;  // sigmoid(logit): sentence-transformers CrossEncoder's score
  std::vector<int32_t> token_counts;
};
// Each (query, document) pair is tokenized as the model's pair template, truncated
// longest-first to max_input_tokens().
Expected<RerankScores> rerank(const LoadedModel& model, std::string_view query,
                              std::span<const std::string> documents);

// ---- generate ---------------------------------------------------------------------------
struct GenerateOptions {
  int32_t max_new_tokens = 64;
  bool ignore_eos = false;  // keep going past end-of-sequence tokens (benchmarks, fixtures)
};
struct Generation {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> new_ids;
  std::string finish_reason;  // "length" or "stop"
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;  // all decode steps after the first token
};
// Greedy (argmax) decoding: one prefill pass over the prompt, then one step per new token.
// on_token, when given, sees each new token as it is produced.
Expected<Generation> generate_greedy(const LoadedModel& model, std::span<const int32_t> prompt_ids,
                                     const GenerateOptions& options,
                                     const std::function<void(int32_t)>& on_token = {});

}  // namespace sparkd::tasks
