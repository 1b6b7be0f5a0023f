// sparkd's HTTP/1.1 front end, on the socket server's libuv loop (no thread of its own): it
// listens on TCP addresses and Unix sockets, parses requests (request_parser.h), lets an
// HttpRouter turn each into a sparkd.v1 request, and runs that through the same RequestHandler,
// validation and Call as the Protobuf socket; the router's ResponseTranslator turns the call's
// responses back into HTTP (a JSON body, or an SSE / NDJSON stream sent chunked).
//
// Per connection, one exchange at a time: pipelined requests wait their turn, so responses go
// out in order. While an exchange runs the connection is still read, so a client that leaves
// is noticed at once and its request cancelled (its KV freed). What it enforces:
//  - header and body size limits (431, 413) and malformed requests (400), then close;
//  - request_timeout: a request whose head and body have not all arrived that long after its
//    first byte gets 408 and the connection closes (a slow-header client cannot hold a slot);
//  - idle_timeout: a keep-alive connection with nothing to do that long is closed;
//  - max_connections (503 and close for the one over it);
//  - backpressure: over max_write_buffer_bytes not yet taken by the client, or 16 requests
//    queued, reading stops (resuming below half);
//  - API keys: with any configured, every request but a CORS preflight needs
//    "Authorization: Bearer <key>" (401 otherwise);
//  - CORS: off unless origins are configured; then preflights are answered and responses to an
//    allowed Origin carry Access-Control-Allow-Origin.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "api/http/http_exchange.h"
#include "api/http/request_parser.h"
#include "api/protocol/request_validation.h"
#include "api/server/server.h"
#include "api/sparkd.pb.h"
#include "common/status.h"

namespace sparkd::http {

struct HttpServerOptions {
  // "HOST:PORT" (an IPv4 address, or [IPv6]; port 0 picks one) or "unix:/PATH".
  std::vector<std::string> listen;
  uint32_t unix_socket_mode = 0660;
  std::optional<gid_t> unix_socket_group;
  std::vector<std::string> api_keys;            // empty: no Authorization needed
  std::vector<std::string> cors_allow_origins;  // exact origins, or "*"; empty: CORS off
  HttpLimits limits;
  uint32_t max_connections = 256;
  size_t max_write_buffer_bytes = size_t{8} << 20;
  std::chrono::milliseconds request_timeout{10'000};  // 0 = no limit
  std::chrono::milliseconds idle_timeout{60'000};     // 0 = no limit
  api::RequestLimits request_limits;
};

struct HttpServerStats {
  uint32_t connections = 0;
  uint32_t requests_in_flight = 0;
  uint64_t connections_total = 0;
  uint64_t requests_total = 0;
  uint64_t request_timeouts_total = 0;
  uint64_t refused_connections_total = 0;
};

class HttpServer : public api::LoopFrontend {
 public:
  // Binds every address (attaching to `host`'s loop). Errors name the address: a malformed
  // one, one in use, a path that exists and is not a socket.
  static Expected<std::unique_ptr<HttpServer>> create(const HttpServerOptions& options,
                                                      api::Server& host,
                                                      api::RequestHandler& handler,
                                                      HttpRouter& router);
  // After host.run() has returned (or before it ever ran).
  ~HttpServer() override;
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The addresses bound, as "HOST:PORT" with the real port, or "unix:/PATH".
  const std::vector<std::string>& addresses() const;
  HttpServerStats stats() const;  // thread-safe
  // stats() as a function that stays valid after the server is gone (metrics scrapes may
  // come until the very end).
  std::function<HttpServerStats()> stats_source() const;

  // api::LoopFrontend (loop thread).
  void begin_drain() override;
  uint32_t requests_in_flight() const override;
  void finish(const Status& cut_off) override;

  struct State;  // defined in http_server.cpp

 private:
  HttpServer() = default;
  std::shared_ptr<State> state_;
};

}  // namespace sparkd::http
