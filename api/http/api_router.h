// The HTTP front end's routes: OpenAI's API under /v1 (and /rerank), Ollama's under /api, and
// /health. Each route turns a request into a sparkd.v1 call (openai_api.h, ollama_api.h) or
// answers at once; errors take the shape of the API the path belongs to.
#pragma once

#include <string>

#include "api/http/http_exchange.h"

namespace sparkd::http {

class ApiRouter : public HttpRouter {
 public:
  // `version`: what /api/version reports.
  explicit ApiRouter(std::string version) : version_(std::move(version)) {}

  Routed route(const HttpRequest& request) override;
  HttpAnswer error(std::string_view path, const Status& status, int http_status = 0) override;

 private:
  std::string version_;
};

}  // namespace sparkd::http
