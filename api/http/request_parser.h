// HTTP/1.1 requests out of a connection's bytes, with llhttp (Node's parser; Debian's
// node-llhttp ships its C sources): pipelined requests, bodies by Content-Length or chunked
// (de-chunked here), keep-alive as HTTP/1.0 and 1.1 define it. No sockets: the server feeds it
// what it reads, and the fuzz target feeds it anything.
//
// Bounded: the request line and headers together, and the body, have limits; going past one
// is an error with the status to answer (431, 413) before the rest is read. Anything llhttp
// refuses (bad syntax, Content-Length with Transfer-Encoding: request smuggling) is 400 with
// llhttp's reason. After an error the parser stays failed: answer it and close.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sparkd::http {

struct HttpLimits {
  size_t max_header_bytes = size_t{64} << 10;  // request line + header names and values
  size_t max_body_bytes = size_t{32} << 20;
};

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: "/v1/models?x=1"
  std::string path;    // the target without its query: "/v1/models"
  std::string query;   // after '?', "" when none
  int version_major = 1;
  int version_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
  std::string body;                                          // de-chunked
  bool keep_alive = true;

  // The first header of that (lower-case) name, or null.
  const std::string* header(std::string_view name) const;
};

struct HttpParseError {
  int status;  // 400, 413 or 431
  std::string message;
};

class HttpRequestParser {
 public:
  explicit HttpRequestParser(HttpLimits limits = {});
  ~HttpRequestParser();
  HttpRequestParser(const HttpRequestParser&) = delete;
  HttpRequestParser& operator=(const HttpRequestParser&) = delete;

  // Parses `bytes`, appending each request it completes to `out`. An error (this call's or
  // an earlier one's) is returned; requests completed before it in `bytes` are still in `out`.
  std::optional<HttpParseError> feed(std::string_view bytes, std::vector<HttpRequest>& out);

  // Whether a request has begun and is not complete: a read timeout now is a slow client, not
  // an idle keep-alive connection.
  bool in_request() const;

  // Whether the request in progress sent "Expect: 100-continue" and waits for the server's
  // "100 Continue" before it sends its body (curl does for larger bodies); true once per
  // request, and not once its body has arrived.
  bool take_expect_continue();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sparkd::http
