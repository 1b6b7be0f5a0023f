#include "api/http/openai_api.h"

#include <cmath>
#include <cstring>
#include <ctime>
#include <random>

#include "api/http/json_fields.h"
#include "api/protocol/status_codes.h"

namespace sparkd::http {
namespace {

std::string random_hex(size_t digits) {
  thread_local std::mt19937_64 random(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  while (out.size() < digits) {
    uint64_t bits = random();
    for (int i = 0; i < 16 && out.size() < digits; ++i, bits >>= 4) out += kHex[bits & 15];
  }
  return out;
}

int64_t unix_time() {
  return static_cast<int64_t>(std::time(nullptr));
}

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

const char* error_type(int http_status) {
  switch (http_status) {
    case 400:
    case 404:
    case 408:
    case 409:
    case 413:
    case 422:
    case 431:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 429:
      return "rate_limit_error";
    case 501:
      return "not_implemented_error";
    case 503:
      return "service_unavailable_error";
    case 504:
      return "timeout_error";
    default:
      return "server_error";
  }
}

std::string sse(const OJson& event) {
  return "data: " + json_text(event) + "\n\n";
}

HttpOutput json_output(int status, const OJson& body) {
  return whole_output({status, "application/json", json_text(body)});
}

HttpOutput error_output(const Status& status) {
  return whole_output(openai_error(status));
}

OJson usage_json(const v1::Usage& usage) {
  OJson out = OJson::object();
  out["prompt_tokens"] = usage.prompt_tokens();
  out["completion_tokens"] = usage.completion_tokens();
  out["total_tokens"] = usage.total_tokens();
  out["prompt_tokens_details"] = {{"cached_tokens", usage.cached_prompt_tokens()}};
  return out;
}

OJson token_bytes(const std::string& token) {
  OJson bytes = OJson::array();
  for (unsigned char byte : token) bytes.push_back(byte);
  return bytes;
}

// Chat completions' logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs"}]}.
OJson chat_logprobs(const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& logprobs,
                    int top_logprobs) {
  OJson content = OJson::array();
  for (const v1::TokenLogprob& lp : logprobs) {
    OJson top = OJson::array();
    for (const v1::TopLogprob& t : lp.top()) {
      if (static_cast<int>(top.size()) >= top_logprobs) break;
      top.push_back(
          {{"token", t.token()}, {"logprob", t.logprob()}, {"bytes", token_bytes(t.token())}});
    }
    content.push_back({{"token", lp.token()},
                       {"logprob", lp.logprob()},
                       {"bytes", token_bytes(lp.token())},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

// Legacy completions' logprobs: parallel lists, top_logprobs as {token: logprob} maps.
OJson completion_logprobs(const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& logprobs,
                          size_t& text_offset) {
  OJson tokens = OJson::array(), token_logprobs = OJson::array(), top = OJson::array(),
        offsets = OJson::array();
  for (const v1::TokenLogprob& lp : logprobs) {
    tokens.push_back(lp.token());
    token_logprobs.push_back(lp.logprob());
    OJson alternatives = OJson::object();
    for (const v1::TopLogprob& t : lp.top()) alternatives[t.token()] = t.logprob();
    top.push_back(std::move(alternatives));
    offsets.push_back(text_offset);
    text_offset += lp.token().size();
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top)},
          {"text_offset", std::move(offsets)}};
}

OJson tool_calls_json(const google::protobuf::RepeatedPtrField<v1::ToolCall>& calls,
                      int first_index, bool with_index) {
  OJson out = OJson::array();
  int index = first_index;
  for (const v1::ToolCall& call : calls) {
    OJson entry = OJson::object();
    if (with_index) entry["index"] = index++;
    entry["id"] = call.id();
    entry["type"] = "function";
    entry["function"] = {{"name", call.name()}, {"arguments", call.arguments()}};
    out.push_back(std::move(entry));
  }
  return out;
}

// ---- request fields shared by chat and completions ----------------------------------------

// stop: a string or a list of strings.
void read_stop(FieldReader& f, v1::GenerateRequest& g) {
  const Json* stop = f.get("stop");
  if (stop == nullptr) return;
  if (stop->is_string()) {
    g.add_stop(stop->get<std::string>());
    return;
  }
  if (!stop->is_array()) return f.fail("stop", "must be a string or a list of strings");
  for (const Json& s : *stop) {
    if (!s.is_string()) return f.fail("stop", "must be a string or a list of strings");
    g.add_stop(s.get<std::string>());
  }
}

// Sampling and length: OpenAI's names, and vLLM's extensions (top_k, min_p,
// repetition_penalty, ignore_eos, stop_token_ids).
void read_sampling(FieldReader& f, v1::GenerateRequest& g) {
  v1::Sampling* s = g.mutable_sampling();
  if (auto v = f.number("temperature")) s->set_temperature(static_cast<float>(*v));
  if (auto v = f.number("top_p")) s->set_top_p(static_cast<float>(*v));
  if (auto v = f.integer("top_k"))
    s->set_top_k(static_cast<int32_t>(std::clamp<int64_t>(*v, -2, 1 << 30)));
  if (auto v = f.number("min_p")) s->set_min_p(static_cast<float>(*v));
  if (auto v = f.number("repetition_penalty")) s->set_repetition_penalty(static_cast<float>(*v));
  if (auto v = f.number("presence_penalty")) s->set_presence_penalty(static_cast<float>(*v));
  if (auto v = f.number("frequency_penalty")) s->set_frequency_penalty(static_cast<float>(*v));
  if (auto v = f.integer("seed")) s->set_seed(static_cast<uint64_t>(*v));
  if (const Json* bias = f.object("logit_bias")) {
    for (const auto& [key, value] : bias->items()) {
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id > INT32_MAX) {
        return f.fail("logit_bias", "keys must be token ids, got \"" + key.substr(0, 32) + "\"");
      }
      if (!value.is_number() || std::fabs(value.get<double>()) > 100.0) {
        return f.fail("logit_bias", "values must be numbers from -100 to 100");
      }
      v1::LogitBias* entry = s->add_logit_bias();
      entry->set_token_id(static_cast<int32_t>(id));
      entry->set_bias(value.get<float>());
    }
  }
  read_stop(f, g);
  if (const Json* ids = f.array("stop_token_ids")) {
    for (const Json& id : *ids) {
      if (!id.is_number_integer()) return f.fail("stop_token_ids", "must be a list of token ids");
      g.add_stop_token_ids(id.get<int32_t>());
    }
  }
  if (auto v = f.boolean("ignore_eos")) g.set_ignore_eos(*v);
  if (auto n = f.integer("n"); n && *n != 1) {
    f.fail("n", "is " + std::to_string(*n) +
                    "; sparkd returns one choice per request (n = 1): "
                    "send several requests for several choices");
  }
  if (auto best_of = f.integer("best_of"); best_of && *best_of != 1) {
    f.fail("best_of", "must be 1; sparkd returns one choice per request");
  }
}

void read_max_tokens(FieldReader& f, v1::GenerateRequest& g, const char* name) {
  if (auto v = f.integer(name)) {
    if (*v < 1) return f.fail(name, "must be at least 1, got " + std::to_string(*v));
    g.set_max_tokens(static_cast<uint32_t>(std::min<int64_t>(*v, UINT32_MAX)));
  }
}

std::string read_model(FieldReader& f) {
  auto model = f.string("model");
  if (f.status().is_ok() && (!model || model->empty())) {
    f.fail("model", "is required: the name of a model this server has (GET /v1/models)");
  }
  return model.value_or("");
}

// A chat message's content: a string, or a list of text parts (joined with newlines, as vLLM
// joins them); images and audio are refused.
std::optional<std::string> read_content(FieldReader& f) {
  const Json* content = f.get("content");
  if (content == nullptr) return std::nullopt;
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) {
    f.fail("content",
           "must be a string or a list of content parts, got " + json_type_phrase(*content));
    return std::nullopt;
  }
  std::string text;
  bool first = true;
  for (const Json& part : *content) {
    FieldReader p(part, f.field_path("content") + "[].");
    const std::string type = p.string("type").value_or("");
    if (type != "text") {
      f.fail("content", "has a part of type '" + type.substr(0, 32) +
                            "'; sparkd's models take text parts only");
      return std::nullopt;
    }
    auto part_text = p.string("text");
    if (!p.status().is_ok() || !part_text) {
      f.fail("content", "has a text part without a string 'text'");
      return std::nullopt;
    }
    if (!first) text += "\n";
    text += *part_text;
    first = false;
  }
  return text;
}

Status read_messages(const Json& messages, v1::Chat& chat) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string path = "messages[" + std::to_string(i) + "].";
    if (!messages[i].is_object()) {
      return invalid("'messages[" + std::to_string(i) + "]' must be an object, got " +
                     json_type_phrase(messages[i]));
    }
    FieldReader f(messages[i], path);
    v1::ChatMessage* m = chat.add_messages();
    auto role = f.string("role");
    if (f.status().is_ok() && !role) f.fail("role", "is required");
    // OpenAI's newer name for system instructions; chat templates know "system".
    m->set_role(role == "developer" ? "system" : role.value_or(""));
    if (auto content = read_content(f)) m->set_content(*content);
    if (auto name = f.string("name")) m->set_name(*name);
    if (auto id = f.string("tool_call_id")) m->set_tool_call_id(*id);
    if (auto reasoning = f.string("reasoning_content")) {
      m->set_reasoning(*reasoning);
    } else if (auto other = f.string("reasoning")) {
      m->set_reasoning(*other);
    }
    if (const Json* calls = f.array("tool_calls")) {
      for (size_t c = 0; c < calls->size(); ++c) {
        static const Json kAbsent;
        FieldReader call((*calls)[c], path + "tool_calls[" + std::to_string(c) + "].");
        const Json* function_json = call.get("function");
        FieldReader function(function_json != nullptr ? *function_json : kAbsent,
                             path + "tool_calls[" + std::to_string(c) + "].function.");
        v1::ToolCall* out = m->add_tool_calls();
        if (auto id = call.string("id")) out->set_id(*id);
        out->set_name(function.string("name").value_or(""));
        const Json* arguments = function.get("arguments");
        // OpenAI sends arguments as JSON text; some clients send the object itself.
        if (arguments != nullptr && arguments->is_string()) {
          out->set_arguments(arguments->get<std::string>());
        } else if (arguments != nullptr && arguments->is_object()) {
          out->set_arguments(arguments->dump());
        }
        SPARKD_RETURN_IF_ERROR(call.status());
        SPARKD_RETURN_IF_ERROR(function.status());
        if (out->name().empty())
          return invalid("'" + function.field_path("name") + "' is required");
      }
    }
    SPARKD_RETURN_IF_ERROR(f.status());
  }
  return Status::ok();
}

// ---- translators --------------------------------------------------------------------------

struct Envelope {
  std::string id;
  int64_t created = 0;
  std::string model;

  OJson head(const std::string& object_name) const {
    OJson out = OJson::object();
    out["id"] = id;
    out["object"] = object_name;
    out["created"] = created;
    out["model"] = model;
    return out;
  }

  // A stream's last events: with include_usage, one with the usage and no choices; then
  // [DONE].
  std::string stream_end(const std::string& object_name, bool include_usage,
                         const v1::Usage& usage) const {
    std::string events;
    if (include_usage) {
      OJson event = head(object_name);
      event["choices"] = OJson::array();
      event["usage"] = usage_json(usage);
      events += sse(event);
    }
    return events + "data: [DONE]\n\n";
  }
};

class ChatTranslator : public ResponseTranslator {
 public:
  // top_logprobs: the alternatives the client asked for (the engine gives at least one).
  ChatTranslator(Envelope envelope, bool stream, bool include_usage, bool logprobs,
                 int top_logprobs)
      : envelope_(std::move(envelope)),
        stream_(stream),
        include_usage_(include_usage),
        logprobs_(logprobs),
        top_logprobs_(top_logprobs) {}

  HttpOutput translate(const v1::Response& response) override {
    if (!stream_) return whole(response);
    HttpOutput out;
    if (!started_) {
      if (response.has_error()) return error_output(api::status_of(response.error()));
      started_ = true;
      out.head = HttpResponseHead{200, "text/event-stream", true};
      OJson delta = {{"role", "assistant"}, {"content", ""}};
      out.body += sse(chunk(std::move(delta), nullptr, nullptr));
    }
    if (response.has_error()) {
      out.body += openai_error_event(api::status_of(response.error())) + "data: [DONE]\n\n";
      return out;
    }
    const v1::GenerateChunk& g = response.generate();
    OJson delta = OJson::object();
    if (!g.reasoning().empty()) delta["reasoning_content"] = g.reasoning();
    if (!g.text().empty()) delta["content"] = g.text();
    if (!g.tool_calls().empty()) {
      delta["tool_calls"] = tool_calls_json(g.tool_calls(), tool_calls_sent_, true);
      tool_calls_sent_ += g.tool_calls_size();
    }
    const bool has_logprobs = logprobs_ && !g.logprobs().empty();
    if (!delta.empty() || has_logprobs) {
      OJson lp = has_logprobs ? chat_logprobs(g.logprobs(), top_logprobs_) : OJson();
      out.body += sse(chunk(std::move(delta), has_logprobs ? &lp : nullptr, nullptr));
    }
    if (response.final()) {
      const OJson finish = g.finish_reason();
      out.body += sse(chunk(OJson::object(), nullptr, &finish));
      out.body += envelope_.stream_end("chat.completion.chunk", include_usage_, response.usage());
    }
    return out;
  }

 private:
  OJson chunk(OJson delta, const OJson* logprobs, const OJson* finish_reason) const {
    OJson event = envelope_.head("chat.completion.chunk");
    OJson choice = OJson::object();
    choice["index"] = 0;
    choice["delta"] = std::move(delta);
    choice["logprobs"] = logprobs != nullptr ? *logprobs : OJson();
    choice["finish_reason"] = finish_reason != nullptr ? *finish_reason : OJson();
    event["choices"] = OJson::array({std::move(choice)});
    if (include_usage_) event["usage"] = nullptr;
    return event;
  }

  HttpOutput whole(const v1::Response& response) const {
    if (response.has_error()) return error_output(api::status_of(response.error()));
    const v1::GenerateChunk& g = response.generate();
    OJson message = OJson::object();
    message["role"] = "assistant";
    // With tool calls and no text, content is null (OpenAI's shape).
    message["content"] = g.text().empty() && !g.tool_calls().empty() ? OJson() : OJson(g.text());
    if (!g.reasoning().empty()) message["reasoning_content"] = g.reasoning();
    if (!g.tool_calls().empty()) message["tool_calls"] = tool_calls_json(g.tool_calls(), 0, false);
    OJson choice = OJson::object();
    choice["index"] = 0;
    choice["message"] = std::move(message);
    choice["logprobs"] = logprobs_ ? chat_logprobs(g.logprobs(), top_logprobs_) : OJson();
    choice["finish_reason"] = g.finish_reason();
    OJson body = envelope_.head("chat.completion");
    body["choices"] = OJson::array({std::move(choice)});
    body["usage"] = usage_json(response.usage());
    return json_output(200, body);
  }

  Envelope envelope_;
  bool stream_, include_usage_, logprobs_;
  int top_logprobs_;
  bool started_ = false;
  int tool_calls_sent_ = 0;
};

class CompletionTranslator : public ResponseTranslator {
 public:
  CompletionTranslator(Envelope envelope, bool stream, bool include_usage, bool logprobs)
      : envelope_(std::move(envelope)),
        stream_(stream),
        include_usage_(include_usage),
        logprobs_(logprobs) {}

  HttpOutput translate(const v1::Response& response) override {
    if (!stream_) {
      if (response.has_error()) return error_output(api::status_of(response.error()));
      const v1::GenerateChunk& g = response.generate();
      OJson body = envelope_.head("text_completion");
      body["choices"] = OJson::array({choice(g, g.finish_reason())});
      body["usage"] = usage_json(response.usage());
      return json_output(200, body);
    }
    HttpOutput out;
    if (!started_) {
      if (response.has_error()) return error_output(api::status_of(response.error()));
      started_ = true;
      out.head = HttpResponseHead{200, "text/event-stream", true};
    }
    if (response.has_error()) {
      out.body += openai_error_event(api::status_of(response.error())) + "data: [DONE]\n\n";
      return out;
    }
    const v1::GenerateChunk& g = response.generate();
    if (!g.text().empty() || response.final()) {
      OJson event = envelope_.head("text_completion");
      event["choices"] =
          OJson::array({choice(g, response.final() ? OJson(g.finish_reason()) : OJson())});
      if (include_usage_) event["usage"] = nullptr;
      out.body += sse(event);
    }
    if (response.final()) {
      out.body += envelope_.stream_end("text_completion", include_usage_, response.usage());
    }
    return out;
  }

 private:
  OJson choice(const v1::GenerateChunk& g, OJson finish_reason) {
    OJson out = OJson::object();
    out["index"] = 0;
    out["text"] = g.text();
    out["logprobs"] = logprobs_ ? completion_logprobs(g.logprobs(), text_offset_) : OJson();
    out["finish_reason"] = std::move(finish_reason);
    return out;
  }

  Envelope envelope_;
  bool stream_, include_usage_, logprobs_;
  bool started_ = false;
  size_t text_offset_ = 0;
};

std::string base64(const void* data, size_t size) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* bytes = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  for (size_t i = 0; i < size; i += 3) {
    const uint32_t b0 = bytes[i];
    const uint32_t b1 = i + 1 < size ? bytes[i + 1] : 0;
    const uint32_t b2 = i + 2 < size ? bytes[i + 2] : 0;
    const uint32_t triple = (b0 << 16) | (b1 << 8) | b2;
    out += kAlphabet[(triple >> 18) & 63];
    out += kAlphabet[(triple >> 12) & 63];
    out += i + 1 < size ? kAlphabet[(triple >> 6) & 63] : '=';
    out += i + 2 < size ? kAlphabet[triple & 63] : '=';
  }
  return out;
}

class EmbeddingsTranslator : public ResponseTranslator {
 public:
  EmbeddingsTranslator(std::string model, bool base64, std::optional<uint32_t> dimensions)
      : model_(std::move(model)), base64_(base64), dimensions_(dimensions) {}

  HttpOutput translate(const v1::Response& response) override {
    if (response.has_error()) return error_output(api::status_of(response.error()));
    const v1::EmbedResponse& embed = response.embed();
    if (dimensions_ && *dimensions_ > embed.dimensions()) {
      return error_output(invalid("'dimensions' is " + std::to_string(*dimensions_) +
                                  ", more than model '" + model_ + "' gives (" +
                                  std::to_string(embed.dimensions()) + ")"));
    }
    OJson data = OJson::array();
    for (int i = 0; i < embed.embeddings_size(); ++i) {
      std::vector<float> values(embed.embeddings(i).values().begin(),
                                embed.embeddings(i).values().end());
      if (dimensions_) shorten_embedding(values, *dimensions_);
      OJson item = OJson::object();
      item["object"] = "embedding";
      item["index"] = i;
      if (base64_) {
        // Little-endian float32, as OpenAI's SDK decodes it (numpy.frombuffer, float32).
        item["embedding"] = base64(values.data(), values.size() * sizeof(float));
      } else {
        item["embedding"] = values;
      }
      data.push_back(std::move(item));
    }
    OJson body = OJson::object();
    body["object"] = "list";
    body["data"] = std::move(data);
    body["model"] = model_;
    body["usage"] = {{"prompt_tokens", response.usage().prompt_tokens()},
                     {"total_tokens", response.usage().prompt_tokens()}};
    return json_output(200, body);
  }

 private:
  std::string model_;
  bool base64_;
  std::optional<uint32_t> dimensions_;
};

class RerankTranslator : public ResponseTranslator {
 public:
  explicit RerankTranslator(std::string model) : model_(std::move(model)) {}

  HttpOutput translate(const v1::Response& response) override {
    if (response.has_error()) return error_output(api::status_of(response.error()));
    OJson results = OJson::array();
    for (const v1::RerankResult& r : response.rerank().results()) {
      OJson item = OJson::object();
      item["index"] = r.index();
      item["relevance_score"] = r.score();
      if (!r.document().empty()) item["document"] = {{"text", r.document()}};
      results.push_back(std::move(item));
    }
    OJson body = OJson::object();
    body["id"] = "rerank-" + random_hex(24);
    body["model"] = model_;
    body["usage"] = {{"prompt_tokens", response.usage().prompt_tokens()},
                     {"total_tokens", response.usage().prompt_tokens()}};
    body["results"] = std::move(results);
    return json_output(200, body);
  }

 private:
  std::string model_;
};

class ModelsTranslator : public ResponseTranslator {
 public:
  explicit ModelsTranslator(std::optional<std::string> model) : model_(std::move(model)) {}

  HttpOutput translate(const v1::Response& response) override {
    if (response.has_error()) return error_output(api::status_of(response.error()));
    OJson data = OJson::array();
    for (const v1::ModelInfo& info : response.list_models().models()) {
      if (info.state() == "failed") continue;  // it cannot answer; Status says why
      OJson model = OJson::object();
      model["id"] = info.name();
      model["object"] = "model";
      model["created"] = created_;
      model["owned_by"] = "sparkd";
      if (model_ && *model_ == info.name()) return json_output(200, model);
      data.push_back(std::move(model));
    }
    if (model_) {
      return error_output(Status(StatusCode::kNotFound,
                                 "the model '" + *model_ + "' does not exist on this server"));
    }
    OJson body = OJson::object();
    body["object"] = "list";
    body["data"] = std::move(data);
    return json_output(200, body);
  }

 private:
  std::optional<std::string> model_;
  int64_t created_ = unix_time();
};

// stream and stream_options.include_usage.
void read_stream(FieldReader& f, v1::GenerateRequest& g, bool& include_usage) {
  g.set_stream(f.boolean("stream").value_or(false));
  if (const Json* options = f.object("stream_options")) {
    FieldReader o(*options, "stream_options.");
    include_usage = o.boolean("include_usage").value_or(false);
    if (!o.status().is_ok()) f.fail("stream_options", o.status().message());
  }
}

}  // namespace

void shorten_embedding(std::vector<float>& values, uint32_t dimensions) {
  if (dimensions >= values.size()) return;
  values.resize(dimensions);
  double norm = 0;
  for (float v : values) norm += static_cast<double>(v) * v;
  norm = std::sqrt(norm);
  if (norm > 0) {
    for (float& v : values) v = static_cast<float>(v / norm);
  }
}

int http_status_of(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
    case StatusCode::kFailedPrecondition:
      return 400;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
      return 409;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kCancelled:
      return 499;
    case StatusCode::kUnimplemented:
      return 501;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

HttpAnswer openai_error(const Status& status, int http_status) {
  HttpAnswer answer;
  answer.status = http_status != 0 ? http_status : http_status_of(status.code());
  answer.code = status.code();
  OJson error = OJson::object();
  error["message"] = status.message();
  error["type"] = error_type(answer.status);
  error["param"] = nullptr;
  error["code"] = status.code() == StatusCode::kNotFound && http_status == 0
                      ? OJson("model_not_found")
                  : answer.status == 401 ? OJson("invalid_api_key")
                                         : OJson(answer.status);
  answer.body = json_text(OJson{{"error", std::move(error)}});
  return answer;
}

std::string openai_error_event(const Status& status) {
  return "data: " + openai_error(status).body + "\n\n";
}

Routed openai_chat_completions(const HttpRequest& request) {
  auto body = json_object_body(request);
  if (!body) return openai_error(body.status());
  FieldReader f(*body);
  v1::Request out;
  v1::GenerateRequest& g = *out.mutable_generate();
  g.set_model(read_model(f));
  const Json* messages = f.required_array("messages");
  if (!f.status().is_ok()) return openai_error(f.status());
  v1::Chat& chat = *g.mutable_chat();
  if (Status read = read_messages(*messages, chat); !read.is_ok()) return openai_error(read);
  read_sampling(f, g);
  read_max_tokens(f, g, "max_tokens");
  read_max_tokens(f, g, "max_completion_tokens");
  bool include_usage = false;
  read_stream(f, g, include_usage);
  const bool logprobs = f.boolean("logprobs").value_or(false);
  const int top_logprobs = static_cast<int>(f.integer("top_logprobs").value_or(0));
  if (auto top = f.integer("top_logprobs")) {
    if (!logprobs) f.fail("top_logprobs", "needs 'logprobs': true");
    if (*top < 0 || *top > 20) f.fail("top_logprobs", "must be 0 to 20");
    g.mutable_sampling()->set_logprobs(static_cast<uint32_t>(std::clamp<int64_t>(*top, 0, 20)));
  }
  // The engine returns logprobs when asked for at least one alternative: with logprobs and no
  // top_logprobs, the chosen token's own logprob comes with a one-entry top list.
  if (logprobs && g.sampling().logprobs() == 0) g.mutable_sampling()->set_logprobs(1);
  std::string tool_choice = "auto";
  if (const Json* choice = f.get("tool_choice")) {
    tool_choice = choice->is_string() ? choice->get<std::string>() : "named";
  }
  if (tool_choice != "auto" && tool_choice != "none") {
    f.fail("tool_choice", "must be \"auto\" or \"none\": sparkd does not force tool calls");
  }
  if (const Json* tools = f.array("tools"); tools != nullptr && tool_choice != "none") {
    chat.set_tools_json(tools->dump());
  }
  if (const Json* documents = f.array("documents")) chat.set_documents_json(documents->dump());
  if (const Json* kwargs = f.object("chat_template_kwargs")) {
    chat.set_template_variables_json(kwargs->dump());
  }
  if (auto agp = f.boolean("add_generation_prompt")) chat.set_add_generation_prompt(*agp);
  if (const Json* format = f.object("response_format")) {
    const std::string type = format->value("type", "");
    if (type != "text") {
      f.fail("response_format", "of type '" + type.substr(0, 32) +
                                    "' is not supported; sparkd does not constrain output yet");
    }
  }
  if (!f.status().is_ok()) return openai_error(f.status());
  Envelope envelope{"chatcmpl-" + random_hex(24), unix_time(), g.model()};
  return RoutedCall{std::move(out),
                    std::make_shared<ChatTranslator>(std::move(envelope), g.stream(), include_usage,
                                                     logprobs, top_logprobs)};
}

Routed openai_completions(const HttpRequest& request) {
  auto body = json_object_body(request);
  if (!body) return openai_error(body.status());
  FieldReader f(*body);
  v1::Request out;
  v1::GenerateRequest& g = *out.mutable_generate();
  g.set_model(read_model(f));
  const Json* prompt = f.get("prompt");
  if (prompt == nullptr) {
    f.fail("prompt", "is required");
  } else if (prompt->is_string()) {
    g.set_prompt(prompt->get<std::string>());
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    g.set_prompt((*prompt)[0].get<std::string>());
  } else {
    f.fail("prompt",
           "must be one string (or a list holding one); sparkd takes one prompt per "
           "request, as text");
  }
  read_sampling(f, g);
  // OpenAI's legacy default: 16 tokens.
  g.set_max_tokens(16);
  read_max_tokens(f, g, "max_tokens");
  bool include_usage = false;
  read_stream(f, g, include_usage);
  bool logprobs = false;
  if (auto n = f.integer("logprobs")) {
    if (*n < 0 || *n > 20) f.fail("logprobs", "must be 0 to 20");
    logprobs = true;
    g.mutable_sampling()->set_logprobs(static_cast<uint32_t>(std::clamp<int64_t>(*n, 1, 20)));
  }
  if (f.boolean("echo").value_or(false)) f.fail("echo", "is not supported");
  if (auto suffix = f.string("suffix"); suffix && !suffix->empty()) {
    f.fail("suffix", "is not supported");
  }
  if (!f.status().is_ok()) return openai_error(f.status());
  Envelope envelope{"cmpl-" + random_hex(24), unix_time(), g.model()};
  return RoutedCall{std::move(out), std::make_shared<CompletionTranslator>(
                                        std::move(envelope), g.stream(), include_usage, logprobs)};
}

Routed openai_embeddings(const HttpRequest& request) {
  auto body = json_object_body(request);
  if (!body) return openai_error(body.status());
  FieldReader f(*body);
  v1::Request out;
  v1::EmbedRequest& e = *out.mutable_embed();
  e.set_model(read_model(f));
  for (std::string& input : f.strings("input")) e.add_inputs(std::move(input));
  const std::string format = f.string("encoding_format").value_or("float");
  if (format != "float" && format != "base64") {
    f.fail("encoding_format", "must be \"float\" or \"base64\"");
  }
  std::optional<uint32_t> dimensions;
  if (auto d = f.integer("dimensions")) {
    if (*d < 1) f.fail("dimensions", "must be at least 1");
    dimensions = static_cast<uint32_t>(std::clamp<int64_t>(*d, 1, 1 << 20));
  }
  if (auto truncate = f.boolean("truncate")) e.set_truncate(*truncate);
  if (!f.status().is_ok()) return openai_error(f.status());
  std::string model = e.model();
  return RoutedCall{std::move(out), std::make_shared<EmbeddingsTranslator>(
                                        std::move(model), format == "base64", dimensions)};
}

Routed openai_rerank(const HttpRequest& request) {
  auto body = json_object_body(request);
  if (!body) return openai_error(body.status());
  FieldReader f(*body);
  v1::Request out;
  v1::RerankRequest& r = *out.mutable_rerank();
  r.set_model(read_model(f));
  auto query = f.string("query");
  if (f.status().is_ok() && !query) f.fail("query", "is required");
  r.set_query(query.value_or(""));
  const Json* documents = f.required_array("documents");
  if (documents != nullptr) {
    for (const Json& document : *documents) {
      // A string, or Cohere's {"text": ...}.
      if (document.is_string()) {
        r.add_documents(document.get<std::string>());
      } else if (document.is_object() && document.contains("text") &&
                 document["text"].is_string()) {
        r.add_documents(document["text"].get<std::string>());
      } else {
        f.fail("documents", "must be a list of strings (or of {\"text\": ...} objects)");
        break;
      }
    }
  }
  if (auto top_n = f.integer("top_n")) {
    if (*top_n < 1) f.fail("top_n", "must be at least 1");
    r.set_top_n(static_cast<uint32_t>(std::clamp<int64_t>(*top_n, 1, UINT32_MAX)));
  }
  // vLLM returns the documents unless told not to.
  r.set_return_documents(f.boolean("return_documents").value_or(true));
  if (auto truncate = f.boolean("truncate")) r.set_truncate(*truncate);
  if (!f.status().is_ok()) return openai_error(f.status());
  std::string model = r.model();
  return RoutedCall{std::move(out), std::make_shared<RerankTranslator>(std::move(model))};
}

Routed openai_models(std::optional<std::string> model) {
  v1::Request out;
  out.mutable_list_models();
  return RoutedCall{std::move(out), std::make_shared<ModelsTranslator>(std::move(model))};
}

}  // namespace sparkd::http
