// An HTTP exchange as the front end's routes see it: what a route makes of a request (a
// sparkd.v1 call and the translator of its responses, or an answer at once), and the HTTP
// output a translator makes. No sockets here: the APIs' mappings (openai_api.h, ollama_api.h)
// and their fuzz target use it without the server.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "api/http/request_parser.h"
#include "api/sparkd.pb.h"
#include "common/status.h"

namespace sparkd::http {

struct HttpResponseHead {
  int status = 200;
  std::string content_type = "application/json";
  // The body follows in parts as the call streams (SSE, NDJSON), sent chunked.
  bool streaming = false;
};

// A part of an HTTP answer made from one sparkd.v1 response.
struct HttpOutput {
  std::optional<HttpResponseHead> head;  // on the exchange's first output
  std::string body;                      // the whole body, or the next part of a stream
};

// Turns a call's sparkd.v1 responses into the HTTP answer an API's clients expect.
class ResponseTranslator {
 public:
  virtual ~ResponseTranslator() = default;
  // Once per response, in order, one at a time, from any thread. The first output carries the
  // head; the final response's output is the answer's last.
  virtual HttpOutput translate(const v1::Response& response) = 0;
};

// An answer made at once, without a call (an error, a constant).
struct HttpAnswer {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string_view kind = "unknown";  // counted as this request kind, with this outcome
  StatusCode code = StatusCode::kOk;
};

// A request to run through the RequestHandler, and how to answer from its responses.
struct RoutedCall {
  v1::Request request;
  std::shared_ptr<ResponseTranslator> translator;
};

using Routed = std::variant<HttpAnswer, RoutedCall>;

class HttpRouter {
 public:
  virtual ~HttpRouter() = default;
  // On the loop thread; must be quick (parsing a JSON body is).
  virtual Routed route(const HttpRequest& request) = 0;
  // The answer for an error the server found itself (limits, timeouts, keys, validation,
  // draining), shaped as the API at `path` shapes its errors; `http_status` (when not 0)
  // overrides the status the code maps to (401, 408, 413, 431).
  virtual HttpAnswer error(std::string_view path, const Status& status, int http_status = 0) = 0;
};

// An answer made at once as a translator's one output (an error before a stream began).
HttpOutput whole_output(const HttpAnswer& answer);

// The reason phrase of an HTTP status ("Not Found"), "" for one not known.
std::string_view http_reason(int status);

}  // namespace sparkd::http
