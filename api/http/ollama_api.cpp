#include "api/http/ollama_api.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "api/http/json_fields.h"
#include "api/http/openai_api.h"
#include "api/protocol/status_codes.h"

namespace sparkd::http {
namespace {

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

// RFC 3339 in UTC with nanoseconds, as Ollama writes created_at.
std::string rfc3339(std::chrono::system_clock::time_point at) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch());
  const std::time_t seconds = static_cast<std::time_t>(ns.count() / 1'000'000'000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<long long>(ns.count() % 1'000'000'000));
  return text;
}

std::string now_text() {
  return rfc3339(std::chrono::system_clock::now());
}

int64_t ns(double ms) {
  return static_cast<int64_t>(std::max(0.0, ms) * 1e6);
}

HttpOutput json_output(const OJson& body) {
  return whole_output({200, "application/json; charset=utf-8", json_text(body)});
}

HttpOutput error_output(const Status& status) {
  return whole_output(ollama_error(status));
}

// The timing fields of a final answer: total, load (0: sparkd loads ahead), the prompt's
// evaluation (to the first token) and the generation after it.
void add_durations(OJson& out, const v1::Response& response) {
  const v1::Timing& t = response.timing();
  const v1::Usage& u = response.usage();
  out["total_duration"] = ns(t.total_ms());
  out["load_duration"] = 0;
  out["prompt_eval_count"] = u.prompt_tokens();
  const double prompt_ms = t.ttft_ms() > 0 ? t.ttft_ms() - t.queue_ms() - t.tokenize_ms() : 0;
  out["prompt_eval_duration"] = ns(prompt_ms);
  out["eval_count"] = u.completion_tokens();
  out["eval_duration"] = ns(t.ttft_ms() > 0 ? t.total_ms() - t.ttft_ms() : 0);
}

OJson tool_calls_json(const google::protobuf::RepeatedPtrField<v1::ToolCall>& calls) {
  OJson out = OJson::array();
  for (const v1::ToolCall& call : calls) {
    // Ollama sends arguments as an object.
    OJson arguments = OJson::parse(call.arguments(), nullptr, false);
    if (arguments.is_discarded()) arguments = OJson::object();
    out.push_back({{"function", {{"name", call.name()}, {"arguments", std::move(arguments)}}}});
  }
  return out;
}

// Ollama's done_reason: "stop" or "length" (a turn that called tools ends with "stop").
std::string done_reason(const std::string& finish_reason) {
  return finish_reason == "tool_calls" ? "stop" : finish_reason;
}

// /api/chat and /api/generate: one NDJSON line per chunk, or one object at the end.
class GenerateTranslator : public ResponseTranslator {
 public:
  GenerateTranslator(std::string model, bool stream, bool chat)
      : model_(std::move(model)), stream_(stream), chat_(chat) {}

  HttpOutput translate(const v1::Response& response) override {
    if (response.has_error()) {
      if (!started_) return error_output(api::status_of(response.error()));
      HttpOutput out;
      out.body = json_text(OJson{{"error", response.error().message()}}) + "\n";
      return out;
    }
    const v1::GenerateChunk& g = response.generate();
    if (!stream_) {
      OJson body = line(g.text(), g.reasoning(), g.tool_calls());
      finish(body, response);
      return json_output(body);
    }
    HttpOutput out;
    if (!started_) {
      started_ = true;
      out.head = HttpResponseHead{200, "application/x-ndjson", true};
    }
    if (!g.text().empty() || !g.reasoning().empty() || !g.tool_calls().empty()) {
      out.body += json_text(line(g.text(), g.reasoning(), g.tool_calls())) + "\n";
    }
    if (response.final()) {
      OJson last = line("", "", {});
      finish(last, response);
      out.body += json_text(last) + "\n";
    }
    return out;
  }

 private:
  OJson line(const std::string& text, const std::string& reasoning,
             const google::protobuf::RepeatedPtrField<v1::ToolCall>& calls) const {
    OJson out = OJson::object();
    out["model"] = model_;
    out["created_at"] = now_text();
    if (chat_) {
      OJson message = OJson::object();
      message["role"] = "assistant";
      message["content"] = text;
      if (!reasoning.empty()) message["thinking"] = reasoning;
      if (!calls.empty()) message["tool_calls"] = tool_calls_json(calls);
      out["message"] = std::move(message);
    } else {
      out["response"] = text;
      if (!reasoning.empty()) out["thinking"] = reasoning;
    }
    out["done"] = false;
    return out;
  }

  static void finish(OJson& out, const v1::Response& response) {
    out["done"] = true;
    out["done_reason"] = done_reason(response.generate().finish_reason());
    add_durations(out, response);
  }

  std::string model_;
  bool stream_, chat_;
  bool started_ = false;
};

// An empty /api/generate: the model was loaded (or set to unload) by a tokenize of "".
class LoadTranslator : public ResponseTranslator {
 public:
  LoadTranslator(std::string model, bool unload) : model_(std::move(model)), unload_(unload) {}
  HttpOutput translate(const v1::Response& response) override {
    if (response.has_error()) return error_output(api::status_of(response.error()));
    OJson body = OJson::object();
    body["model"] = model_;
    body["created_at"] = now_text();
    body["response"] = "";
    body["done"] = true;
    body["done_reason"] = unload_ ? "unload" : "load";
    return json_output(body);
  }

 private:
  std::string model_;
  bool unload_;
};

class EmbedTranslator : public ResponseTranslator {
 public:
  EmbedTranslator(std::string model, bool legacy, std::optional<uint32_t> dimensions)
      : model_(std::move(model)), legacy_(legacy), dimensions_(dimensions) {}

  HttpOutput translate(const v1::Response& response) override {
    if (response.has_error()) return error_output(api::status_of(response.error()));
    OJson embeddings = OJson::array();
    for (const v1::Embedding& e : response.embed().embeddings()) {
      std::vector<float> values(e.values().begin(), e.values().end());
      if (dimensions_) shorten_embedding(values, *dimensions_);
      embeddings.push_back(std::move(values));
    }
    OJson body = OJson::object();
    if (legacy_) {
      body["embedding"] = embeddings.empty() ? OJson::array() : embeddings[0];
      return json_output(body);
    }
    body["model"] = model_;
    body["embeddings"] = std::move(embeddings);
    body["total_duration"] = ns(response.timing().total_ms());
    body["load_duration"] = 0;
    body["prompt_eval_count"] = response.usage().prompt_tokens();
    return json_output(body);
  }

 private:
  std::string model_;
  bool legacy_;
  std::optional<uint32_t> dimensions_;
};

std::string model_format(const v1::ModelInfo& info) {
  const std::string& path = info.path();
  const bool gguf = path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
  return gguf || path.rfind("ollama:", 0) == 0 ? "gguf" : "safetensors";
}

OJson details_json(const v1::ModelInfo& info) {
  OJson details = OJson::object();
  details["parent_model"] = "";
  details["format"] = model_format(info);
  details["family"] = "";
  details["families"] = nullptr;
  details["parameter_size"] = "";
  details["quantization_level"] = "";
  return details;
}

// /api/tags, /api/ps and /api/show all read ListModels.
class ModelsTranslator : public ResponseTranslator {
 public:
  enum class Kind { kTags, kPs, kShow };
  ModelsTranslator(Kind kind, std::string model = "") : kind_(kind), model_(std::move(model)) {}

  HttpOutput translate(const v1::Response& response) override {
    if (response.has_error()) return error_output(api::status_of(response.error()));
    OJson models = OJson::array();
    for (const v1::ModelInfo& info : response.list_models().models()) {
      if (info.state() == "failed") continue;
      if (kind_ == Kind::kShow) {
        if (info.name() == model_) return json_output(show(info));
        continue;
      }
      if (kind_ == Kind::kPs && info.state() != "ready") continue;
      OJson entry = OJson::object();
      entry["name"] = info.name();
      entry["model"] = info.name();
      if (kind_ == Kind::kTags) entry["modified_at"] = listed_at_;
      entry["size"] = info.weights_bytes() + (kind_ == Kind::kPs ? info.kv_bytes() : 0);
      entry["digest"] = "";
      entry["details"] = details_json(info);
      if (kind_ == Kind::kPs) {
        // When it will go is the governor's call (keep_alive, memory); shown as never.
        entry["expires_at"] = "2318-01-01T00:00:00Z";
        entry["size_vram"] = 0;
      }
      models.push_back(std::move(entry));
    }
    if (kind_ == Kind::kShow) {
      return error_output(Status(StatusCode::kNotFound, "model '" + model_ + "' not found"));
    }
    return json_output(OJson{{"models", std::move(models)}});
  }

 private:
  static OJson show(const v1::ModelInfo& info) {
    OJson out = OJson::object();
    out["modelfile"] = "";
    out["parameters"] = "";
    out["template"] = "";
    out["details"] = details_json(info);
    OJson model_info = OJson::object();
    model_info["general.architecture"] = "";
    if (info.max_input_tokens() > 0) model_info["context_length"] = info.max_input_tokens();
    if (info.dimensions() > 0) model_info["embedding_length"] = info.dimensions();
    out["model_info"] = std::move(model_info);
    const std::string& task = info.task();
    out["capabilities"] = OJson::array({task == "generate" ? "completion"
                                        : task == "embed"  ? "embedding"
                                                           : task});
    return out;
  }

  Kind kind_;
  std::string model_;
  std::string listed_at_ = now_text();
};

// Ollama names models NAME:TAG and reads a bare NAME as NAME:latest; sparkd's names have no
// tag, so NAME:latest is NAME.
std::string read_model(FieldReader& f) {
  std::string model = f.string("model").value_or("");
  if (f.status().is_ok() && model.empty()) f.fail("model", "is required");
  constexpr std::string_view kLatest = ":latest";
  if (model.size() > kLatest.size() &&
      model.compare(model.size() - kLatest.size(), kLatest.size(), kLatest) == 0) {
    model.resize(model.size() - kLatest.size());
  }
  return model;
}

// keep_alive: a number of seconds or a duration string.
std::optional<double> read_keep_alive(FieldReader& f) {
  const Json* value = f.get("keep_alive");
  if (value == nullptr) return std::nullopt;
  if (value->is_number()) return value->get<double>();
  if (!value->is_string()) {
    f.fail("keep_alive", "must be a number of seconds or a duration such as \"5m\"");
    return std::nullopt;
  }
  auto seconds = parse_keep_alive(value->get<std::string>());
  if (!seconds) {
    f.fail("keep_alive", seconds.status().message());
    return std::nullopt;
  }
  return *seconds;
}

// options: Ollama's sampling names (num_ctx and the other load-time options do not apply per
// request here and are ignored, as Ollama ignores those it cannot change).
void read_options(FieldReader& f, v1::GenerateRequest& g) {
  const Json* options = f.object("options");
  if (options == nullptr) return;
  FieldReader o(*options, "options.");
  v1::Sampling* s = g.mutable_sampling();
  if (auto v = o.number("temperature")) s->set_temperature(static_cast<float>(*v));
  if (auto v = o.number("top_p")) s->set_top_p(static_cast<float>(*v));
  if (auto v = o.integer("top_k"))
    s->set_top_k(static_cast<int32_t>(std::clamp<int64_t>(*v, -2, 1 << 30)));
  if (auto v = o.number("min_p")) s->set_min_p(static_cast<float>(*v));
  if (auto v = o.number("repeat_penalty")) s->set_repetition_penalty(static_cast<float>(*v));
  if (auto v = o.number("presence_penalty")) s->set_presence_penalty(static_cast<float>(*v));
  if (auto v = o.number("frequency_penalty")) s->set_frequency_penalty(static_cast<float>(*v));
  if (auto v = o.integer("seed")) s->set_seed(static_cast<uint64_t>(*v));
  if (auto v = o.integer("num_predict"); v && *v > 0) {
    g.set_max_tokens(static_cast<uint32_t>(std::min<int64_t>(*v, UINT32_MAX)));
  }
  if (const Json* stop = o.array("stop")) {
    for (const Json& s_value : *stop) {
      if (!s_value.is_string()) {
        o.fail("stop", "must be a list of strings");
        break;
      }
      g.add_stop(s_value.get<std::string>());
    }
  }
  if (!o.status().is_ok()) f.fail("options", o.status().message());
}

// What sparkd cannot do yet is refused, not ignored: images, structured output.
void refuse_unsupported(FieldReader& f) {
  if (const Json* images = f.get("images"); images != nullptr && !images->empty()) {
    f.fail("images", "are not supported: sparkd's models take text");
  }
  if (const Json* format = f.get("format");
      format != nullptr && !(format->is_string() && format->get<std::string>().empty())) {
    f.fail("format", "is not supported; sparkd does not constrain output yet");
  }
}

void read_think(FieldReader& f, v1::Chat& chat) {
  if (auto think = f.boolean("think")) {
    chat.set_template_variables_json(json_text(OJson{{"enable_thinking", *think}}));
  }
}

Status read_chat_messages(const Json& messages, v1::Chat& chat) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string path = "messages[" + std::to_string(i) + "].";
    FieldReader f(messages[i], path);
    if (!messages[i].is_object())
      return invalid("'" + path.substr(0, path.size() - 1) + "' must be an object");
    v1::ChatMessage* m = chat.add_messages();
    auto role = f.string("role");
    if (f.status().is_ok() && !role) f.fail("role", "is required");
    m->set_role(role.value_or(""));
    m->set_content(f.string("content").value_or(""));
    if (auto thinking = f.string("thinking")) m->set_reasoning(*thinking);
    if (auto tool_name = f.string("tool_name")) m->set_name(*tool_name);
    if (const Json* images = f.get("images"); images != nullptr && !images->empty()) {
      f.fail("images", "are not supported: sparkd's models take text");
    }
    if (const Json* calls = f.array("tool_calls")) {
      for (const Json& c : *calls) {
        const Json function = c.is_object() && c.contains("function") ? c["function"] : Json();
        FieldReader fn(function, path + "tool_calls[].function.");
        v1::ToolCall* out = m->add_tool_calls();
        out->set_name(fn.string("name").value_or(""));
        const Json* arguments = fn.get("arguments");
        if (arguments != nullptr && arguments->is_object()) out->set_arguments(arguments->dump());
        if (arguments != nullptr && arguments->is_string())
          out->set_arguments(arguments->get<std::string>());
        SPARKD_RETURN_IF_ERROR(fn.status());
        if (out->name().empty()) return invalid("'" + fn.field_path("name") + "' is required");
      }
    }
    SPARKD_RETURN_IF_ERROR(f.status());
  }
  return Status::ok();
}

}  // namespace

HttpAnswer ollama_error(const Status& status, int http_status) {
  HttpAnswer answer;
  answer.status = http_status != 0 ? http_status : http_status_of(status.code());
  answer.code = status.code();
  answer.content_type = "application/json; charset=utf-8";
  answer.body = json_text(OJson{{"error", status.message()}});
  return answer;
}

Expected<double> parse_keep_alive(const std::string& text) {
  const Status bad = invalid("keep_alive '" + text.substr(0, 32) +
                             "' is not a duration (e.g. \"30s\", \"5m\", \"1h\", \"0\", \"-1\")");
  if (text.empty()) return bad;
  size_t i = 0;
  double sign = 1;
  if (text[0] == '-' || text[0] == '+') {
    sign = text[0] == '-' ? -1 : 1;
    ++i;
  }
  // A bare number is seconds.
  char* end = nullptr;
  const double whole = std::strtod(text.c_str() + i, &end);
  if (end != text.c_str() + i && *end == '\0' && std::isfinite(whole)) return sign * whole;
  double seconds = 0;
  bool any = false;
  while (i < text.size()) {
    const char* start = text.c_str() + i;
    const double value = std::strtod(start, &end);
    if (end == start || !std::isfinite(value) || value < 0) return bad;
    i = static_cast<size_t>(end - text.c_str());
    size_t unit_end = i;
    while (unit_end < text.size() && (std::isalpha(static_cast<unsigned char>(text[unit_end])) ||
                                      static_cast<unsigned char>(text[unit_end]) >= 0x80)) {
      ++unit_end;
    }
    const std::string unit = text.substr(i, unit_end - i);
    double scale = 0;
    if (unit == "h")
      scale = 3600;
    else if (unit == "m")
      scale = 60;
    else if (unit == "s")
      scale = 1;
    else if (unit == "ms")
      scale = 1e-3;
    else if (unit == "us" || unit == "\u00b5s")
      scale = 1e-6;
    else if (unit == "ns")
      scale = 1e-9;
    else
      return bad;
    seconds += value * scale;
    any = true;
    i = unit_end;
  }
  if (!any) return bad;
  return sign * seconds;
}

Routed ollama_chat(const HttpRequest& request) {
  auto body = json_object_body(request);
  if (!body) return ollama_error(body.status());
  FieldReader f(*body);
  v1::Request out;
  v1::GenerateRequest& g = *out.mutable_generate();
  g.set_model(read_model(f));
  const Json* messages = f.required_array("messages");
  if (!f.status().is_ok()) return ollama_error(f.status());
  v1::Chat& chat = *g.mutable_chat();
  if (Status read = read_chat_messages(*messages, chat); !read.is_ok()) return ollama_error(read);
  if (const Json* tools = f.array("tools"); tools != nullptr && !tools->empty()) {
    chat.set_tools_json(tools->dump());
  }
  read_think(f, chat);
  read_options(f, g);
  refuse_unsupported(f);
  g.set_stream(f.boolean("stream").value_or(true));
  if (auto keep_alive = read_keep_alive(f)) g.set_keep_alive_s(*keep_alive);
  if (!f.status().is_ok()) return ollama_error(f.status());
  std::string model = g.model();
  const bool stream = g.stream();
  return RoutedCall{std::move(out),
                    std::make_shared<GenerateTranslator>(std::move(model), stream, true)};
}

Routed ollama_generate(const HttpRequest& request) {
  auto body = json_object_body(request);
  if (!body) return ollama_error(body.status());
  FieldReader f(*body);
  const std::string model = read_model(f);
  const std::string prompt = f.string("prompt").value_or("");
  const std::optional<double> keep_alive = read_keep_alive(f);
  if (!f.status().is_ok()) return ollama_error(f.status());
  v1::Request out;
  if (prompt.empty()) {
    // Ollama's load (or, with keep_alive 0, unload) request: hold the model through a tokenize
    // of nothing, which loads an on_demand model and applies keep_alive.
    v1::TokenizeRequest& t = *out.mutable_tokenize();
    t.set_model(model);
    if (keep_alive) t.set_keep_alive_s(*keep_alive);
    return RoutedCall{std::move(out),
                      std::make_shared<LoadTranslator>(model, keep_alive && *keep_alive == 0)};
  }
  v1::GenerateRequest& g = *out.mutable_generate();
  g.set_model(model);
  if (f.boolean("raw").value_or(false)) {
    g.set_prompt(prompt);
  } else {
    // The prompt is a user turn of the model's chat template, after an optional system one.
    v1::Chat& chat = *g.mutable_chat();
    if (auto system = f.string("system"); system && !system->empty()) {
      v1::ChatMessage* m = chat.add_messages();
      m->set_role("system");
      m->set_content(*system);
    }
    v1::ChatMessage* m = chat.add_messages();
    m->set_role("user");
    m->set_content(prompt);
    read_think(f, chat);
  }
  if (auto t = f.string("template"); t && !t->empty()) {
    f.fail("template", "is not supported: sparkd renders the model's own chat template");
  }
  if (auto suffix = f.string("suffix"); suffix && !suffix->empty()) {
    f.fail("suffix", "is not supported");
  }
  read_options(f, g);
  refuse_unsupported(f);
  g.set_stream(f.boolean("stream").value_or(true));
  if (keep_alive) g.set_keep_alive_s(*keep_alive);
  if (!f.status().is_ok()) return ollama_error(f.status());
  const bool stream = g.stream();
  return RoutedCall{std::move(out), std::make_shared<GenerateTranslator>(model, stream, false)};
}

namespace {

Routed embed_request(const HttpRequest& request, bool legacy) {
  auto body = json_object_body(request);
  if (!body) return ollama_error(body.status());
  FieldReader f(*body);
  v1::Request out;
  v1::EmbedRequest& e = *out.mutable_embed();
  e.set_model(read_model(f));
  if (legacy) {  // {model, prompt}: one text
    auto prompt = f.string("prompt");
    if (f.status().is_ok() && !prompt) f.fail("prompt", "is required");
    if (prompt) e.add_inputs(std::move(*prompt));
  } else {
    for (std::string& input : f.strings("input")) e.add_inputs(std::move(input));
  }
  std::optional<uint32_t> dimensions;
  if (!legacy) {
    // Ollama's /api/embed returns unit vectors and cuts long inputs unless told not to.
    e.set_normalize(true);
    e.set_truncate(f.boolean("truncate").value_or(true));
    if (auto d = f.integer("dimensions")) {
      if (*d < 1) f.fail("dimensions", "must be at least 1");
      dimensions = static_cast<uint32_t>(std::clamp<int64_t>(*d, 1, 1 << 20));
    }
  }
  if (auto keep_alive = read_keep_alive(f)) e.set_keep_alive_s(*keep_alive);
  if (!f.status().is_ok()) return ollama_error(f.status());
  std::string model = e.model();
  return RoutedCall{std::move(out),
                    std::make_shared<EmbedTranslator>(std::move(model), legacy, dimensions)};
}

Routed list_models(ModelsTranslator::Kind kind, std::string model = "") {
  v1::Request out;
  out.mutable_list_models();
  return RoutedCall{std::move(out), std::make_shared<ModelsTranslator>(kind, std::move(model))};
}

}  // namespace

Routed ollama_embed(const HttpRequest& request) {
  return embed_request(request, false);
}

Routed ollama_embeddings(const HttpRequest& request) {
  return embed_request(request, true);
}

Routed ollama_show(const HttpRequest& request) {
  auto body = json_object_body(request);
  if (!body) return ollama_error(body.status());
  FieldReader f(*body);
  // "name" is the older spelling.
  std::string model = f.get("model") == nullptr && f.get("name") != nullptr
                          ? f.string("name").value_or("")
                          : read_model(f);
  if (!f.status().is_ok()) return ollama_error(f.status());
  return list_models(ModelsTranslator::Kind::kShow, std::move(model));
}

Routed ollama_tags(const HttpRequest& /*request*/) {
  return list_models(ModelsTranslator::Kind::kTags);
}

Routed ollama_ps(const HttpRequest& /*request*/) {
  return list_models(ModelsTranslator::Kind::kPs);
}

}  // namespace sparkd::http
