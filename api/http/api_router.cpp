#include "api/http/api_router.h"

#include <nlohmann/json.hpp>

#include "api/http/ollama_api.h"
#include "api/http/openai_api.h"

namespace sparkd::http {
namespace {

bool is_ollama_path(std::string_view path) {
  return path.rfind("/api/", 0) == 0;
}

// GET /health: 200 while every pinned model is ready, 503 otherwise (load balancers and
// systemd-style probes read the status; the body says why).
class HealthTranslator : public ResponseTranslator {
 public:
  HttpOutput translate(const v1::Response& response) override {
    HttpOutput out;
    nlohmann::ordered_json body = nlohmann::ordered_json::object();
    int status = 200;
    if (response.has_error()) {
      status = 503;
      body["status"] = "error";
      body["reason"] = response.error().message();
    } else {
      status = response.health().ready() ? 200 : 503;
      body["status"] = response.health().status();
      if (!response.health().reason().empty()) body["reason"] = response.health().reason();
    }
    out.head = HttpResponseHead{status, "application/json", false};
    out.body = body.dump();
    return out;
  }
};

}  // namespace

HttpAnswer ApiRouter::error(std::string_view path, const Status& status, int http_status) {
  return is_ollama_path(path) ? ollama_error(status, http_status)
                              : openai_error(status, http_status);
}

Routed ApiRouter::route(const HttpRequest& request) {
  const std::string& path = request.path;
  const bool get = request.method == "GET";
  const bool post = request.method == "POST";
  struct Endpoint {
    const char* path;
    bool post;  // else GET
    Routed (*route)(const HttpRequest&);
  };
  static const Endpoint kEndpoints[] = {
      {"/v1/chat/completions", true, openai_chat_completions},
      {"/v1/completions", true, openai_completions},
      {"/v1/embeddings", true, openai_embeddings},
      {"/v1/rerank", true, openai_rerank},
      {"/rerank", true, openai_rerank},
      {"/api/chat", true, ollama_chat},
      {"/api/generate", true, ollama_generate},
      {"/api/embed", true, ollama_embed},
      {"/api/embeddings", true, ollama_embeddings},
      {"/api/show", true, ollama_show},
      {"/api/tags", false, ollama_tags},
      {"/api/ps", false, ollama_ps},
  };
  for (const Endpoint& endpoint : kEndpoints) {
    if (path != endpoint.path) continue;
    if (endpoint.post ? post : get) return endpoint.route(request);
    return error(
        path,
        Status(StatusCode::kInvalidArgument, request.method + " is not allowed on " + path +
                                                 "; use " + (endpoint.post ? "POST" : "GET")),
        405);
  }
  if (path == "/v1/models" && get) return openai_models(std::nullopt);
  if (path.rfind("/v1/models/", 0) == 0 && get) {
    return openai_models(path.substr(std::string_view("/v1/models/").size()));
  }
  if (path == "/health" && get) {
    v1::Request health;
    health.mutable_health();
    return RoutedCall{std::move(health), std::make_shared<HealthTranslator>()};
  }
  if (path == "/api/version" && get) {
    HttpAnswer answer;
    answer.kind = "version";
    answer.body = nlohmann::json{{"version", version_}}.dump();
    return answer;
  }
  if (path == "/" && get) {
    // What Ollama answers here; tools probe it to see that a server is up.
    HttpAnswer answer;
    answer.kind = "version";
    answer.content_type = "text/plain; charset=utf-8";
    answer.body = "sparkd is running";
    return answer;
  }
  return error(
      path,
      Status(StatusCode::kNotFound, "no such endpoint: " + request.method + " " + path +
                                        " (sparkd serves /v1/chat/completions, /v1/completions, "
                                        "/v1/embeddings, /v1/rerank, /v1/models, /api/chat, "
                                        "/api/generate, /api/embed, /api/tags, /api/ps, /api/show, "
                                        "/api/version and /health)"),
      404);
}

}  // namespace sparkd::http
