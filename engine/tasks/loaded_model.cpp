#include "engine/tasks/loaded_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "engine/arch/pooling.h"
#include "engine/model/gguf_model.h"
#include "engine/model/model_location.h"
#include "engine/model/qwen3_next_projections.h"
#include "engine/tokenizer/ggml_vocabulary.h"

namespace sparkd::tasks {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// An integer field of an optional JSON file in the model directory (0 when absent).
int64_t optional_json_int(const std::filesystem::path& path, const char* field) {
  std::ifstream in(path);
  if (!in) return 0;
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json json = nlohmann::json::parse(text.str(), nullptr, false);
  if (!json.is_object() || !json.contains(field) || !json[field].is_number()) return 0;
  const double value = json[field].get<double>();
  // tokenizer_config.json says "no limit" with a huge sentinel (1e30).
  return value > 0 && value < 1e9 ? static_cast<int64_t>(value) : 0;
}

// Encoder inputs viewing `ids` (and `type_ids`, when given) without copying them.
std::vector<arch::EncoderInput> as_encoder_inputs(std::span<const std::vector<int32_t>> ids,
                                                  std::span<const std::vector<int32_t>> type_ids) {
  std::vector<arch::EncoderInput> inputs;
  for (size_t i = 0; i < ids.size(); ++i) {
    arch::EncoderInput input;
    input.tokens = ids[i];
    if (!type_ids.empty()) input.type_ids = type_ids[i];
    inputs.push_back(input);
  }
  return inputs;
}

std::vector<int32_t> to_int32(const std::vector<uint32_t>& ids) {
  return std::vector<int32_t>(ids.begin(), ids.end());
}

// Inputs are run in batches of about this many tokens: large enough to keep the matmuls
// efficient, small enough that activations stay modest.
constexpr int64_t kBatchTokens = 8192;

// The end of the batch that starts at `begin`: inputs until kBatchTokens is reached, and
// always at least one.
size_t batch_end(std::span<const int32_t> token_counts, size_t begin) {
  size_t end = begin;
  int64_t tokens = 0;
  while (end < token_counts.size() &&
         (end == begin || tokens + token_counts[end] <= kBatchTokens)) {
    tokens += token_counts[end];
    ++end;
  }
  return end;
}

}  // namespace

Expected<std::shared_ptr<const tokenizer::Tokenizer>> LoadedModel::load_tokenizer(
    const std::string& reference) {
  // A tokenizer.json, or a directory holding one (a model's or a bare tokenizer's).
  std::error_code ec;
  const bool json_file = reference.size() > 5 && reference.ends_with(".json");
  if (json_file ||
      std::filesystem::exists(std::filesystem::path(reference) / "tokenizer.json", ec)) {
    return tokenizer::Tokenizer::from_file(reference);
  }
  SPARKD_ASSIGN_OR_RETURN(const model::ModelLocation location, model::locate_model(reference));
  if (location.format == model::ModelFormat::kSafetensors) {
    return tokenizer::Tokenizer::from_file(location.path);
  }
  SPARKD_ASSIGN_OR_RETURN(const model::GgufModel gguf, model::read_gguf_model(location.path));
  SPARKD_ASSIGN_OR_RETURN(const auto vocabulary, model::gguf_vocabulary(gguf));
  return tokenizer::tokenizer_from_ggml_vocabulary(vocabulary, location.path);
}

Expected<std::unique_ptr<LoadedModel>> LoadedModel::load(
    const std::string& reference, Backend& backend,
    const model::WeightLoadOptions& weight_options) {
  std::unique_ptr<LoadedModel> model(new LoadedModel(backend));
  SPARKD_ASSIGN_OR_RETURN(const model::ModelLocation location, model::locate_model(reference));
  model->dir_ = location.path;
  model->format_ = location.format;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
  if (location.format == model::ModelFormat::kGguf) {
    SPARKD_ASSIGN_OR_RETURN(const model::GgufModel gguf, model::read_gguf_model(location.path));
    SPARKD_ASSIGN_OR_RETURN(model->spec_, model::gguf_model_spec(gguf));
    SPARKD_ASSIGN_OR_RETURN(const auto vocabulary, model::gguf_vocabulary(gguf));
    SPARKD_ASSIGN_OR_RETURN(tokenizer,
                            tokenizer::tokenizer_from_ggml_vocabulary(vocabulary, location.path));
    SPARKD_ASSIGN_OR_RETURN(const std::optional<std::string> embedded,
                            model::gguf_chat_template(gguf));
    if (embedded) {
      model->chat_template_source_ =
          ChatTemplateSource{"GGUF tokenizer.chat_template", *embedded, ""};
    }
    const auto token_text = [&](const std::optional<int32_t>& id) {
      return id && *id >= 0 && static_cast<size_t>(*id) < vocabulary.tokens.size()
                 ? vocabulary.tokens[static_cast<size_t>(*id)]
                 : std::string();
    };
    model->special_token_texts_ = {token_text(vocabulary.bos_id), token_text(vocabulary.eos_id),
                                   token_text(vocabulary.unknown_id),
                                   token_text(vocabulary.padding_id)};
    SPARKD_ASSIGN_OR_RETURN(model->weights_, model::ModelWeights::load_gguf(
                                                 gguf, model->spec_, backend, weight_options));
  } else {
    SPARKD_ASSIGN_OR_RETURN(model->spec_, model::load_model_spec(location.path));
    SPARKD_ASSIGN_OR_RETURN(tokenizer, tokenizer::Tokenizer::from_file(location.path));
    SPARKD_ASSIGN_OR_RETURN(model->chat_template_source_, hf_chat_template_source(location.path));
    SPARKD_ASSIGN_OR_RETURN(model->special_token_texts_, hf_special_token_texts(location.path));
    model::WeightLoadOptions options = weight_options;
    if (model->spec_.linear_attention.fused_projections) {
      options.row_order = [spec = model->spec_](const std::string& name, int64_t rows) {
        return model::qwen3_next_row_order(spec, name, rows);
      };
    }
    SPARKD_ASSIGN_OR_RETURN(model->weights_,
                            model::ModelWeights::load(location.path, backend, options));
  }
  // Requests are tokenized plainly: truncation is decided per task here, and batches are
  // packed, never padded.
  model->tokenizer_ = tokenizer->with_defaults({}, {});
  const std::string& model_dir = location.path;

  const model::ModelSpec& spec = model->spec_;
  if (spec.is_decoder) {
    SPARKD_ASSIGN_OR_RETURN(model->decoder_,
                            arch::DecoderModel::create(spec, model->weights_, backend));
    model->max_input_tokens_ = spec.max_position_embeddings;
  } else {
    SPARKD_ASSIGN_OR_RETURN(model->encoder_,
                            arch::EncoderModel::create(spec, model->weights_, backend));
    model->max_input_tokens_ = model->encoder_->max_tokens();
  }
  if (spec.task == model::ModelTask::kRerank && spec.num_labels != 1) {
    return Status(StatusCode::kUnimplemented,
                  model_dir + ": rerankers score with one label; this classifier has " +
                      std::to_string(spec.num_labels));
  }
  // sentence-transformers truncates to max_seq_length, cross-encoders to the tokenizer's
  // model_max_length; neither may exceed what the position table holds.
  const std::filesystem::path dir(model_dir);
  int64_t limit = optional_json_int(dir / "sentence_bert_config.json", "max_seq_length");
  if (limit == 0 && spec.task != model::ModelTask::kGenerate) {
    limit = optional_json_int(dir / "tokenizer_config.json", "model_max_length");
  }
  if (limit > 0) {
    model->max_input_tokens_ =
        static_cast<int32_t>(std::min<int64_t>(limit, model->max_input_tokens_));
  }
  return model;
}

namespace {

Status check_task(const LoadedModel& model, model::ModelTask task, const char* what) {
  if (model.spec().task == task) return Status::ok();
  return Status(
      StatusCode::kFailedPrecondition,
      model.dir() + " is a " + model::task_name(model.spec().task) + " model, not " + what);
}

Status too_long(size_t tokens, int32_t limit) {
  return Status(StatusCode::kInvalidArgument,
                "the input has " + std::to_string(tokens) + " tokens; the model accepts at most " +
                    std::to_string(limit) + " (set truncate to cut longer inputs)");
}

}  // namespace

Expected<std::vector<int32_t>> encode_embed_input(const LoadedModel& model, std::string_view text,
                                                  bool truncate) {
  tokenizer::TruncationParams truncation;
  truncation.max_length = static_cast<size_t>(model.max_input_tokens());
  std::optional<tokenizer::TruncationParams> applied;
  if (truncate) applied = truncation;
  SPARKD_ASSIGN_OR_RETURN(tokenizer::Encoding encoding,
                          model.tokenizer().encode(text, true, applied));
  if (encoding.ids.size() > truncation.max_length) {
    return too_long(encoding.ids.size(), model.max_input_tokens());
  }
  return to_int32(encoding.ids);
}

Status LoadedModel::reserve_workspace(size_t size_bytes) {
  if (decoder_) decoder_->set_workspace(nullptr);
  if (encoder_) encoder_->set_workspace(nullptr);
  workspace_.reset();
  SPARKD_ASSIGN_OR_RETURN(workspace_, arch::Workspace::create(backend_, size_bytes));
  if (decoder_) decoder_->set_workspace(workspace_.get());
  if (encoder_) encoder_->set_workspace(workspace_.get());
  return Status::ok();
}

Expected<std::vector<float>> embed_batch(const LoadedModel& model,
                                         std::span<const std::vector<int32_t>> inputs,
                                         bool normalize) {
  SPARKD_RETURN_IF_ERROR(check_task(model, model::ModelTask::kEmbed, "an embedding model"));
  Backend& backend = model.backend();
  std::vector<RowSpan> spans;
  int32_t rows = 0;
  for (const std::vector<int32_t>& ids : inputs) {
    if (ids.empty()) return Status(StatusCode::kInvalidArgument, "an input has no tokens");
    spans.push_back({rows, static_cast<int32_t>(ids.size())});
    rows += static_cast<int32_t>(ids.size());
  }
  arch::Activations act(backend, model.workspace());
  Tensor hidden;
  if (model.encoder()) {
    const std::vector<arch::EncoderInput> encoder_inputs = as_encoder_inputs(inputs, {});
    SPARKD_ASSIGN_OR_RETURN(hidden, model.encoder()->forward_hidden(encoder_inputs, act));
  } else {
    // A decoder embedder: one causal pass per batch; its KV cache is just this batch.
    SPARKD_ASSIGN_OR_RETURN(KvCache kv, model.decoder()->allocate_kv_cache(rows));
    SPARKD_ASSIGN_OR_RETURN(
        arch::RecurrentStates states,
        model.decoder()->allocate_recurrent_states(static_cast<int32_t>(inputs.size())));
    std::vector<arch::DecoderStepSequence> steps;
    for (size_t i = 0; i < inputs.size(); ++i) {
      arch::DecoderStepSequence step;
      step.tokens = inputs[i];
      step.kv.kv_slot_begin = spans[i].begin;
      step.recurrent_state = states.sequence(static_cast<int32_t>(i));
      steps.push_back(step);
    }
    SPARKD_ASSIGN_OR_RETURN(hidden, model.decoder()->forward_hidden(steps, kv, act));
  }
  return arch::pool_embeddings(backend, act, hidden, spans, model.spec().pooling, normalize);
}

Expected<Embeddings> embed_token_ids(const LoadedModel& model,
                                     std::span<const std::vector<int32_t>> inputs) {
  SPARKD_RETURN_IF_ERROR(check_task(model, model::ModelTask::kEmbed, "an embedding model"));
  Embeddings result;
  result.dimensions = model.spec().hidden_size;
  for (const std::vector<int32_t>& ids : inputs) {
    if (ids.empty()) return Status(StatusCode::kInvalidArgument, "an input has no tokens");
    result.token_counts.push_back(static_cast<int32_t>(ids.size()));
  }
  for (size_t begin = 0; begin < inputs.size();) {
    const size_t end = batch_end(result.token_counts, begin);
    SPARKD_ASSIGN_OR_RETURN(
        std::vector<float> pooled,
        embed_batch(model, inputs.subspan(begin, end - begin), model.spec().normalize_embeddings));
    result.values.insert(result.values.end(), pooled.begin(), pooled.end());
    begin = end;
  }
  return result;
}

Expected<Embeddings> embed_texts(const LoadedModel& model, std::span<const std::string> texts) {
  std::vector<std::vector<int32_t>> inputs;
  for (const std::string& text : texts) {
    SPARKD_ASSIGN_OR_RETURN(std::vector<int32_t> ids, encode_embed_input(model, text, true));
    inputs.push_back(std::move(ids));
  }
  return embed_token_ids(model, inputs);
}

Expected<PairEncoding> encode_rerank_pair(const LoadedModel& model, std::string_view query,
                                          std::string_view document, bool truncate) {
  tokenizer::TruncationParams truncation;
  truncation.max_length = static_cast<size_t>(model.max_input_tokens());
  std::optional<tokenizer::TruncationParams> applied;
  if (truncate) applied = truncation;
  SPARKD_ASSIGN_OR_RETURN(tokenizer::Encoding encoding,
                          model.tokenizer().encode_pair(query, document, true, applied));
  if (encoding.ids.size() > truncation.max_length) {
    return too_long(encoding.ids.size(), model.max_input_tokens());
  }
  return PairEncoding{to_int32(encoding.ids), to_int32(encoding.type_ids)};
}

Expected<std::vector<float>> classify_batch(const LoadedModel& model,
                                            std::span<const PairEncoding> pairs) {
  SPARKD_RETURN_IF_ERROR(check_task(model, model::ModelTask::kRerank, "a reranker"));
  if (!model.encoder()) {
    return Status(StatusCode::kFailedPrecondition, model.dir() + " has no encoder classifier");
  }
  std::vector<arch::EncoderInput> inputs;
  for (const PairEncoding& pair : pairs) {
    if (pair.ids.empty()) return Status(StatusCode::kInvalidArgument, "a pair has no tokens");
    inputs.push_back({pair.ids, pair.type_ids});
  }
  return model.encoder()->classify(inputs);
}

float sigmoid(float logit) {
  return 1.0f / (1.0f + std::exp(-logit));
}

Expected<RerankScores> rerank(const LoadedModel& model, std::string_view query,
                              std::span<const std::string> documents) {
  SPARKD_RETURN_IF_ERROR(check_task(model, model::ModelTask::kRerank, "a reranker"));
  RerankScores scores;
  std::vector<PairEncoding> pairs;
  for (const std::string& document : documents) {
    SPARKD_ASSIGN_OR_RETURN(PairEncoding pair, encode_rerank_pair(model, query, document, true));
    scores.token_counts.push_back(static_cast<int32_t>(pair.ids.size()));
    pairs.push_back(std::move(pair));
  }
  for (size_t begin = 0; begin < pairs.size();) {
    const size_t end = batch_end(scores.token_counts, begin);
    SPARKD_ASSIGN_OR_RETURN(std::vector<float> logits,
                            classify_batch(model, std::span(pairs).subspan(begin, end - begin)));
    for (float logit : logits) {
      scores.logits.push_back(logit);
      scores.probabilities.push_back(sigmoid(logit));
    }
    begin = end;
  }
  return scores;
}

Expected<Generation> generate_greedy(const LoadedModel& model, std::span<const int32_t> prompt_ids,
                                     const GenerateOptions& options,
                                     const std::function<void(int32_t)>& on_token) {
  arch::DecoderModel* decoder = model.decoder();
  if (model.spec().task != model::ModelTask::kGenerate || !decoder) {
    return Status(StatusCode::kFailedPrecondition, model.dir() + " is a " +
                                                       model::task_name(model.spec().task) +
                                                       " model, not a text generator");
  }
  const int32_t context = model.max_input_tokens();
  const int32_t prompt_tokens = static_cast<int32_t>(prompt_ids.size());
  if (prompt_tokens == 0) return Status(StatusCode::kInvalidArgument, "the prompt is empty");
  if (prompt_tokens >= context) {
    return Status(StatusCode::kInvalidArgument, "the prompt has " + std::to_string(prompt_tokens) +
                                                    " tokens; the model's context holds " +
                                                    std::to_string(context) +
                                                    " including the generated ones");
  }
  const int32_t max_new = std::max(0, std::min(options.max_new_tokens, context - prompt_tokens));
  Generation generation;
  generation.prompt_ids.assign(prompt_ids.begin(), prompt_ids.end());
  generation.finish_reason = "length";
  if (max_new == 0) return generation;

  SPARKD_ASSIGN_OR_RETURN(KvCache kv, decoder->allocate_kv_cache(prompt_tokens + max_new));
  SPARKD_ASSIGN_OR_RETURN(const arch::RecurrentStates state, decoder->allocate_recurrent_states(1));
  const std::vector<int32_t>& eos = model.spec().eos_token_ids;
  const int32_t vocab = model.spec().vocab_size;

  arch::DecoderStepSequence step;
  step.tokens = prompt_ids;
  step.past_tokens = 0;
  step.recurrent_state = state.sequence(0);
  int32_t next_token = 0;
  auto start = Clock::now();
  for (int32_t produced = 0; produced < max_new; ++produced) {
    SPARKD_ASSIGN_OR_RETURN(std::vector<float> logits, decoder->forward({&step, 1}, kv));
    // argmax; the first of equal maxima, as torch.argmax.
    next_token = static_cast<int32_t>(std::max_element(logits.begin(), logits.begin() + vocab) -
                                      logits.begin());
    if (produced == 0) {
      generation.prefill_seconds = seconds_since(start);
      start = Clock::now();
    }
    step.past_tokens += static_cast<int32_t>(step.tokens.size());
    const bool is_eos = std::find(eos.begin(), eos.end(), next_token) != eos.end();
    if (is_eos && !options.ignore_eos) {
      generation.finish_reason = "stop";
      break;
    }
    generation.new_ids.push_back(next_token);
    if (on_token) on_token(next_token);
    step.tokens = std::span<const int32_t>(&next_token, 1);
  }
  generation.decode_seconds = seconds_since(start);
  return generation;
}

}  // namespace sparkd::tasks
