// Ollama's HTTP API on sparkd.v1 calls, for the tools that speak it (the `ollama` Python and
// JS clients, Open WebUI, Continue, ...). Streams are NDJSON (one JSON object per line), on by
// default as in Ollama; durations are nanoseconds; errors are {"error": "..."}.
//
//   POST /api/chat        messages (with thinking, tool_calls, tool results), tools, think,
//                         options, stream, keep_alive
//   POST /api/generate    a prompt through the model's chat template (raw: as it is), with
//                         system; an empty prompt loads the model, or unloads it with
//                         keep_alive 0
//   POST /api/embed       input: a string or strings (L2-normalised, truncated by default)
//   POST /api/embeddings  the legacy form: {model, prompt} -> {embedding}
//   POST /api/show        a model's details
//   GET  /api/tags        the models this server has; /api/ps those loaded now
//
// keep_alive (seconds, or a Go duration such as "5m"; negative = for ever; 0 = unload when
// idle) sets how long an on_demand model stays loaded after the request: the governor's
// residency for it. Pinned models stay loaded whatever it says.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "api/http/http_exchange.h"
#include "api/http/request_parser.h"
#include "common/status.h"

namespace sparkd::http {

// Ollama's error body for `status`, with the HTTP status openai_api.h's http_status_of maps it
// to (or `http_status` when not 0).
HttpAnswer ollama_error(const Status& status, int http_status = 0);

// Ollama's keep_alive: a number of seconds, or a Go duration string ("5m", "1h30m", "-1s",
// "0"). INVALID_ARGUMENT for anything else.
Expected<double> parse_keep_alive(const std::string& text);

Routed ollama_chat(const HttpRequest& request);
Routed ollama_generate(const HttpRequest& request);
Routed ollama_embed(const HttpRequest& request);
Routed ollama_embeddings(const HttpRequest& request);
Routed ollama_show(const HttpRequest& request);
Routed ollama_tags(const HttpRequest& request);
Routed ollama_ps(const HttpRequest& request);

}  // namespace sparkd::http
