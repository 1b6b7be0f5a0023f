// OpenAI's HTTP API (what vLLM and llama.cpp's server serve) on sparkd.v1 calls: each request
// body becomes a sparkd.v1 request, and a ResponseTranslator turns the call's responses into
// OpenAI's JSON, or its server-sent events when the client streams.
//
//   GET  /v1/models, /v1/models/{id}
//   POST /v1/chat/completions  messages (system, developer, user, assistant with tool_calls,
//                              tool), tools, sampling, logprobs, stream + stream_options
//   POST /v1/completions       one prompt
//   POST /v1/embeddings        input: a string or strings; encoding_format float | base64;
//                              dimensions (shortened, then L2-normalised again)
//   POST /v1/rerank, /rerank   {model, query, documents, top_n, return_documents}, the
//                              Jina/Cohere shape vLLM and llama.cpp serve
//
// Errors are OpenAI's error object, {"error": {"message", "type", "param", "code"}}, with the
// HTTP status sparkd's code maps to (http_status_of).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "api/http/http_exchange.h"
#include "api/http/request_parser.h"
#include "common/status.h"

namespace sparkd::http {

// INVALID_ARGUMENT, FAILED_PRECONDITION -> 400; PERMISSION_DENIED -> 403; NOT_FOUND -> 404;
// ALREADY_EXISTS -> 409; RESOURCE_EXHAUSTED -> 429; CANCELLED -> 499; UNIMPLEMENTED -> 501;
// UNAVAILABLE -> 503; DEADLINE_EXCEEDED -> 504; the rest -> 500.
int http_status_of(StatusCode code);

// OpenAI's error object for `status`; `http_status` (when not 0) overrides the mapped one.
HttpAnswer openai_error(const Status& status, int http_status = 0);
// The same as the text of one server-sent event (an error in the middle of a stream).
std::string openai_error_event(const Status& status);

// An embedding shortened to its first `dimensions` values and scaled back to unit length, as
// OpenAI's text-embedding-3 models shorten theirs (and Ollama's dimensions does).
void shorten_embedding(std::vector<float>& values, uint32_t dimensions);

Routed openai_chat_completions(const HttpRequest& request);
Routed openai_completions(const HttpRequest& request);
Routed openai_embeddings(const HttpRequest& request);
Routed openai_rerank(const HttpRequest& request);
// `model`: the one model /v1/models/{id} asks for (404 when the daemon has none of that name).
Routed openai_models(std::optional<std::string> model);

}  // namespace sparkd::http
