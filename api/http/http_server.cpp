#include "api/http/http_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>

namespace sparkd::http {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunkBytes = 64 * 1024;
constexpr int kListenBacklog = 511;
constexpr size_t kMaxQueuedRequests = 16;  // pipelined requests waiting their turn
// A connection being closed gets this long to take its last bytes.
constexpr std::chrono::seconds kCloseGrace(5);

struct Listener {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } handle;
  bool is_unix = false;
  std::string address;
  std::string bound_path;  // a socket file we created (removed on close)
  HttpServer::State* state = nullptr;
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&handle); }
};

struct Connection {
  HttpServer::State* state = nullptr;
  uint64_t id = 0;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } handle;
  HttpRequestParser parser;
  api::PeerCredentials peer;
  std::deque<HttpRequest> queued;
  std::optional<HttpParseError> parse_error;  // answered once the queue before it is done
  std::shared_ptr<api::Call> active;          // the exchange in progress
  size_t pending_write_bytes = 0;
  bool reading = false;
  bool closing = false;
  bool close_after_writes = false;
  Clock::time_point last_activity = Clock::now();
  std::optional<Clock::time_point> request_started;  // a request partly read since then
  Clock::time_point close_deadline;

  explicit Connection(const HttpLimits& limits) : parser(limits) {}
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&handle); }
  uv_handle_t* as_handle() { return reinterpret_cast<uv_handle_t*>(&handle); }
};

struct WriteRequest {
  uv_write_t request{};
  std::string data;
  Connection* connection = nullptr;
};

std::string seconds_text(std::chrono::milliseconds duration) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", static_cast<double>(duration.count()) / 1000.0);
  return text;
}

// Compares without an early exit, so the time taken does not tell how much of a key matched.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char differ = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    differ |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return differ == 0;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// A response's status line and headers. `content_length`: the body's size; none for a stream,
// sent chunked when `chunked`, else running to the connection's close (HTTP/1.0).
// `extra_headers`: whole "Name: value\r\n" lines (CORS).
std::string response_head(int status, std::string_view content_type,
                          std::optional<size_t> content_length, bool chunked, bool keep_alive,
                          std::string_view extra_headers) {
  std::string text =
      "HTTP/1.1 " + std::to_string(status) + " " + std::string(http_reason(status)) + "\r\n";
  if (!content_type.empty()) text += "Content-Type: " + std::string(content_type) + "\r\n";
  if (content_length) {
    text += "Content-Length: " + std::to_string(*content_length) + "\r\n";
  } else {
    text += "Cache-Control: no-cache\r\n";
    if (chunked) text += "Transfer-Encoding: chunked\r\n";
  }
  text += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  text += extra_headers;
  text += "\r\n";
  return text;
}

std::string chunk(std::string_view body) {
  if (body.empty()) return {};
  char size[24];
  std::snprintf(size, sizeof(size), "%zx\r\n", body.size());
  std::string out(size);
  out.append(body);
  out.append("\r\n");
  return out;
}

}  // namespace

struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
  HttpServerOptions options;
  api::RequestHandler* handler = nullptr;
  HttpRouter* router = nullptr;
  uv_loop_t* loop = nullptr;
  std::function<void(std::function<void()>)> post;  // to the loop thread
  std::vector<std::unique_ptr<Listener>> listeners;
  std::vector<std::string> addresses;
  std::map<uint64_t, Connection*> connections;
  uint64_t next_connection_id = 1;
  uint64_t next_request_id = 1;
  uint32_t in_flight = 0;
  uv_timer_t sweep_timer{};
  bool sweep_open = false;
  uint32_t pending_closes = 0;  // handles closed whose close callback has not run yet
  bool draining = false;
  bool finished = false;
  char read_buffer[kReadChunkBytes];

  mutable std::mutex stats_mutex;
  HttpServerStats stats;  // guarded by stats_mutex

  void publish_stats() {
    std::lock_guard<std::mutex> lock(stats_mutex);
    stats.connections = static_cast<uint32_t>(connections.size());
    stats.requests_in_flight = in_flight;
  }

  Status listen_on(const std::string& address);
  void on_connection(Listener* listener);
  void on_read(Connection* c, std::string_view bytes);
  void process_queue(Connection* c);
  void start_exchange(Connection* c, HttpRequest request);
  // Answers at once (no call): head, body, and the exchange is over.
  void answer(Connection* c, const HttpRequest* request, const HttpAnswer& answer);
  void answer_error(Connection* c, const HttpRequest* request, std::string_view path,
                    const Status& status, int http_status_override = 0);
  void write(Connection* c, std::string bytes);
  void exchange_output(uint64_t connection_id, const std::shared_ptr<api::Call>& call,
                       std::string bytes, bool end, bool keep_alive);
  void end_exchange(Connection* c, bool keep_alive);
  void resume_reading(Connection* c);
  void pause_reading(Connection* c);
  void close_after_writes(Connection* c);
  void close_connection(Connection* c);
  void sweep();
  void close_listeners();
  // After finish: the sweep timer goes once no connection is left for it to watch.
  void close_sweep_when_idle();
  // The CORS headers for a request's Origin, as header lines; "" when CORS is off or the
  // origin is not allowed.
  std::string cors_text(const HttpRequest* request) const;
};

namespace {

void on_alloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(handle->data);
  *buf = uv_buf_init(c->state->read_buffer, sizeof(c->state->read_buffer));
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(stream->data);
  if (nread < 0) {
    c->state->close_connection(c);  // EOF or error: the client is gone
    return;
  }
  if (nread == 0) return;
  c->state->on_read(c, std::string_view(buf->base, static_cast<size_t>(nread)));
}

void on_write(uv_write_t* request, int status) {
  std::unique_ptr<WriteRequest> write(static_cast<WriteRequest*>(request->data));
  Connection* c = write->connection;
  c->pending_write_bytes -= write->data.size();
  if (c->closing) return;
  if (status < 0) {
    c->state->close_connection(c);
    return;
  }
  if (c->close_after_writes) {
    if (c->pending_write_bytes == 0) c->state->close_connection(c);
    return;
  }
  c->state->resume_reading(c);
}

void on_connection_closed(uv_handle_t* handle) {
  auto* c = static_cast<Connection*>(handle->data);
  --c->state->pending_closes;
  delete c;
}

// A call's responses, translated to HTTP on the sending thread and written on the loop thread.
class ExchangeSink : public api::ResponseSink {
 public:
  ExchangeSink(std::weak_ptr<HttpServer::State> state, uint64_t connection_id,
               std::shared_ptr<ResponseTranslator> translator, std::string head_prefix,
               bool keep_alive, bool chunked)
      : state_(std::move(state)),
        connection_id_(connection_id),
        translator_(std::move(translator)),
        head_prefix_(std::move(head_prefix)),
        keep_alive_(keep_alive),
        chunked_(chunked) {}

  void set_call(std::weak_ptr<api::Call> call) { call_ = std::move(call); }

  void deliver(const v1::Response& response) override {
    HttpOutput out = translator_->translate(response);
    const bool end = response.final();
    std::string bytes;
    if (out.head && !head_sent_) {
      head_sent_ = true;
      streaming_ = out.head->streaming;
      bytes = response_head(out.head->status, out.head->content_type,
                            streaming_ ? std::nullopt : std::optional<size_t>(out.body.size()),
                            chunked_, keep_alive_ && (!streaming_ || chunked_), head_prefix_);
      if (!streaming_) {
        bytes += out.body;
        out.body.clear();
      }
    }
    if (streaming_) {
      // HTTP/1.0 has no chunked encoding: the body runs to the connection's close.
      bytes += chunked_ ? chunk(out.body) : out.body;
      if (end && chunked_) bytes += "0\r\n\r\n";
    }
    auto state = state_.lock();
    if (!state) return;
    // A stream without chunked encoding ends only by closing the connection.
    const bool keep_alive = keep_alive_ && (!streaming_ || chunked_);
    state->post([weak = state_, id = connection_id_, call = call_.lock(), bytes = std::move(bytes),
                 end, keep_alive]() mutable {
      if (auto s = weak.lock()) s->exchange_output(id, call, std::move(bytes), end, keep_alive);
    });
  }

 private:
  std::weak_ptr<HttpServer::State> state_;
  uint64_t connection_id_;
  std::shared_ptr<ResponseTranslator> translator_;
  std::string head_prefix_;
  bool keep_alive_;
  bool chunked_;  // the client speaks HTTP/1.1
  std::weak_ptr<api::Call> call_;
  bool head_sent_ = false;  // under the call's send lock, like all of deliver
  bool streaming_ = false;
};

}  // namespace

std::string HttpServer::State::cors_text(const HttpRequest* request) const {
  if (options.cors_allow_origins.empty() || request == nullptr) return "";
  const std::string* origin = request->header("origin");
  if (origin == nullptr) return "";
  for (const std::string& allowed : options.cors_allow_origins) {
    if (allowed == "*") return "Access-Control-Allow-Origin: *\r\n";
    if (allowed == *origin) {
      return "Access-Control-Allow-Origin: " + *origin + "\r\nVary: Origin\r\n";
    }
  }
  return "";
}

void HttpServer::State::write(Connection* c, std::string bytes) {
  if (c->closing || bytes.empty()) return;
  auto* w = new WriteRequest();
  w->data = std::move(bytes);
  w->connection = c;
  w->request.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  c->pending_write_bytes += w->data.size();
  if (uv_write(&w->request, c->stream(), &buf, 1, on_write) < 0) {
    c->pending_write_bytes -= w->data.size();
    delete w;
    close_connection(c);
    return;
  }
  if (c->pending_write_bytes > options.max_write_buffer_bytes) pause_reading(c);
}

void HttpServer::State::pause_reading(Connection* c) {
  if (!c->reading) return;
  uv_read_stop(c->stream());
  c->reading = false;
}

void HttpServer::State::resume_reading(Connection* c) {
  if (c->reading || c->closing || c->close_after_writes) return;
  if (c->pending_write_bytes > options.max_write_buffer_bytes / 2) return;
  if (c->queued.size() >= kMaxQueuedRequests / 2) return;
  c->reading = true;
  // The server, not the client, paused the request in progress: its clock restarts.
  if (c->request_started) c->request_started = Clock::now();
  uv_read_start(c->stream(), on_alloc, sparkd::http::on_read);
}

void HttpServer::State::close_after_writes(Connection* c) {
  if (c->closing) return;
  if (!c->close_after_writes) {
    c->close_after_writes = true;
    c->close_deadline = Clock::now() + kCloseGrace;
  }
  pause_reading(c);
  if (c->pending_write_bytes == 0) close_connection(c);
}

void HttpServer::State::close_connection(Connection* c) {
  if (c->closing) return;
  c->closing = true;
  if (c->active) {
    // The client is gone: its request stops, so the runner frees its KV.
    --in_flight;
    std::shared_ptr<api::Call> call = std::move(c->active);
    call->cancel();
  }
  connections.erase(c->id);
  ++pending_closes;
  uv_close(c->as_handle(), on_connection_closed);
  publish_stats();
  close_sweep_when_idle();
}

void HttpServer::State::on_connection(Listener* listener) {
  auto* c = new Connection(options.limits);
  c->state = this;
  if (listener->is_unix) {
    uv_pipe_init(loop, &c->handle.pipe, 0);
  } else {
    uv_tcp_init(loop, &c->handle.tcp);
  }
  c->as_handle()->data = c;
  if (uv_accept(listener->stream(), c->stream()) != 0) {
    ++pending_closes;
    uv_close(c->as_handle(), on_connection_closed);
    return;
  }
  if (!listener->is_unix) uv_tcp_nodelay(&c->handle.tcp, 1);  // SSE events go out at once
  c->id = next_connection_id++;
  connections[c->id] = c;
  {
    std::lock_guard<std::mutex> lock(stats_mutex);
    ++stats.connections_total;
  }
  if (connections.size() > options.max_connections) {
    {
      std::lock_guard<std::mutex> lock(stats_mutex);
      ++stats.refused_connections_total;
    }
    answer_error(c, nullptr, "/",
                 Status(StatusCode::kUnavailable,
                        "sparkd already serves " + std::to_string(options.max_connections) +
                            " HTTP connections (http.max_connections); reuse connections "
                            "(keep-alive) or retry later"));
    close_after_writes(c);
    publish_stats();
    return;
  }
  if (listener->is_unix) {
    uv_os_fd_t fd = -1;
    if (uv_fileno(c->as_handle(), &fd) == 0) {
      ucred cred{};
      socklen_t length = sizeof(cred);
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0) {
        c->peer.pid = cred.pid;
        c->peer.uid = cred.uid;
        c->peer.gid = cred.gid;
      }
    }
  }
  c->reading = true;
  uv_read_start(c->stream(), on_alloc, sparkd::http::on_read);
  publish_stats();
}

void HttpServer::State::on_read(Connection* c, std::string_view bytes) {
  const Clock::time_point now = Clock::now();
  c->last_activity = now;
  if (c->parse_error) return;  // the connection is answered and closing
  std::vector<HttpRequest> requests;
  std::optional<HttpParseError> error = c->parser.feed(bytes, requests);
  for (HttpRequest& request : requests) c->queued.push_back(std::move(request));
  if (error) {
    c->parse_error = std::move(error);
    pause_reading(c);
  } else if (c->parser.in_request()) {
    // A request's clock runs from its first byte: from this read when one completed in it.
    if (!requests.empty() || !c->request_started) c->request_started = now;
  } else {
    c->request_started.reset();
  }
  // A client waiting to send its body is told to go on, unless an answer to an earlier
  // request is still to come (a "100 Continue" must not land inside it; the client then
  // sends its body after its own wait).
  if (c->parser.take_expect_continue() && !c->active && c->queued.empty()) {
    write(c, "HTTP/1.1 100 Continue\r\n\r\n");
  }
  if (c->queued.size() >= kMaxQueuedRequests) pause_reading(c);
  process_queue(c);
}

void HttpServer::State::process_queue(Connection* c) {
  while (!c->closing && !c->close_after_writes && !c->active) {
    if (!c->queued.empty()) {
      HttpRequest request = std::move(c->queued.front());
      c->queued.pop_front();
      start_exchange(c, std::move(request));
      continue;
    }
    if (c->parse_error) {
      const HttpParseError error = *c->parse_error;
      // 413 and 431 are limits; the rest is malformed HTTP.
      const StatusCode code =
          error.status == 400 ? StatusCode::kInvalidArgument : StatusCode::kResourceExhausted;
      answer_error(c, nullptr, "/", Status(code, error.message), error.status);
      close_after_writes(c);
      return;
    }
    break;
  }
  resume_reading(c);
}

void HttpServer::State::answer(Connection* c, const HttpRequest* request,
                               const HttpAnswer& answer) {
  const bool keep_alive = request != nullptr && request->keep_alive && !draining;
  handler->answered({answer.kind, "", answer.code, "http"});
  write(c, response_head(answer.status, answer.content_type, answer.body.size(), false, keep_alive,
                         cors_text(request)) +
               answer.body);
  if (!keep_alive) close_after_writes(c);
}

void HttpServer::State::answer_error(Connection* c, const HttpRequest* request,
                                     std::string_view path, const Status& status,
                                     int http_status_override) {
  answer(c, request, router->error(path, status, http_status_override));
}

void HttpServer::State::start_exchange(Connection* c, HttpRequest request) {
  {
    std::lock_guard<std::mutex> lock(stats_mutex);
    ++stats.requests_total;
  }
  // A CORS preflight: answered from the configuration, before keys (browsers send none).
  if (request.method == "OPTIONS" && !options.cors_allow_origins.empty() &&
      request.header("access-control-request-method") != nullptr) {
    std::string headers = cors_text(&request);
    const bool allowed = !headers.empty();
    if (allowed) {
      headers +=
          "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
          "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
          "Access-Control-Max-Age: 600\r\n";
    }
    std::string text =
        response_head(allowed ? 204 : 403, "", 0, false, request.keep_alive, headers);
    handler->answered(
        {"preflight", "", allowed ? StatusCode::kOk : StatusCode::kPermissionDenied, "http"});
    write(c, std::move(text));
    if (!request.keep_alive) close_after_writes(c);
    return;
  }
  if (!options.api_keys.empty()) {
    const std::string* authorization = request.header("authorization");
    bool authorized = false;
    if (authorization != nullptr) {
      std::string_view value = trim(*authorization);
      constexpr std::string_view kBearer = "Bearer ";
      if (value.size() > kBearer.size() &&
          std::equal(kBearer.begin(), kBearer.end(), value.begin(),
                     [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
        value = trim(value.substr(kBearer.size()));
        for (const std::string& key : options.api_keys) authorized |= same_secret(key, value);
      }
    }
    if (!authorized) {
      answer_error(c, &request, request.path,
                   Status(StatusCode::kPermissionDenied,
                          authorization == nullptr
                              ? "this server needs an API key: send Authorization: Bearer <key>"
                              : "the API key in the Authorization header is not valid"),
                   401);
      return;
    }
  }
  if (draining) {
    answer_error(c, &request, request.path,
                 Status(StatusCode::kUnavailable,
                        "sparkd is shutting down and accepts no new requests; retry on its "
                        "successor"));
    return;
  }
  Routed routed = router->route(request);
  if (auto* immediate = std::get_if<HttpAnswer>(&routed)) {
    answer(c, &request, *immediate);
    return;
  }
  RoutedCall& routed_call = std::get<RoutedCall>(routed);
  routed_call.request.set_id(next_request_id++);
  if (Status valid = api::validate_request(routed_call.request, options.request_limits);
      !valid.is_ok()) {
    // Counted under the kind it would have run as.
    HttpAnswer a = router->error(request.path, valid);
    a.kind = api::request_kind_name(routed_call.request);
    answer(c, &request, a);
    return;
  }
  std::string cors = cors_text(&request);
  const bool http11 =
      request.version_major > 1 || (request.version_major == 1 && request.version_minor >= 1);
  auto sink =
      std::make_shared<ExchangeSink>(weak_from_this(), c->id, std::move(routed_call.translator),
                                     std::move(cors), request.keep_alive, http11);
  auto call = std::make_shared<api::Call>(routed_call.request, c->peer, sink, handler, "http");
  sink->set_call(call);
  c->active = call;
  ++in_flight;
  publish_stats();
  handler->handle(routed_call.request, std::move(call));
}

void HttpServer::State::exchange_output(uint64_t connection_id,
                                        const std::shared_ptr<api::Call>& call, std::string bytes,
                                        bool end, bool keep_alive) {
  const auto it = connections.find(connection_id);
  if (it == connections.end()) return;  // the client left; its call was cancelled
  Connection* c = it->second;
  if (c->active != call) return;  // a call the connection no longer waits for
  write(c, std::move(bytes));
  if (end) end_exchange(c, keep_alive);
}

void HttpServer::State::end_exchange(Connection* c, bool keep_alive) {
  if (!c->active) return;
  c->active.reset();
  --in_flight;
  c->last_activity = Clock::now();
  publish_stats();
  if (!keep_alive || draining) {
    close_after_writes(c);
    return;
  }
  process_queue(c);
}

void HttpServer::State::sweep() {
  const Clock::time_point now = Clock::now();
  std::vector<Connection*> open;
  for (const auto& [id, c] : connections) open.push_back(c);
  for (Connection* c : open) {
    if (c->closing) continue;
    if (c->close_after_writes) {
      if (now >= c->close_deadline) close_connection(c);  // the client is not reading
      continue;
    }
    if (options.request_timeout.count() > 0 && c->reading && c->request_started &&
        now - *c->request_started >= options.request_timeout) {
      {
        std::lock_guard<std::mutex> lock(stats_mutex);
        ++stats.request_timeouts_total;
      }
      c->queued.clear();
      if (c->active) {
        close_connection(c);  // mid-exchange: no second answer can be sent
        continue;
      }
      answer_error(c, nullptr, "/",
                   Status(StatusCode::kDeadlineExceeded,
                          "the request was not received whole within " +
                              seconds_text(options.request_timeout) +
                              " s of its first byte (http.request_timeout_s); send it at once"),
                   408);
      close_after_writes(c);
      continue;
    }
    if (options.idle_timeout.count() > 0 && !c->active && c->queued.empty() &&
        !c->request_started && c->pending_write_bytes == 0 &&
        now - c->last_activity >= options.idle_timeout) {
      close_connection(c);  // an idle keep-alive connection: clients reconnect
    }
  }
}

void HttpServer::State::close_listeners() {
  for (auto& listener : listeners) {
    if (!listener->bound_path.empty()) ::unlink(listener->bound_path.c_str());
    ++pending_closes;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener->handle), [](uv_handle_t* handle) {
      auto* l = static_cast<Listener*>(handle->data);
      --l->state->pending_closes;
      delete l;
    });
    (void)listener.release();  // freed by its close callback
  }
  listeners.clear();
}

void HttpServer::State::close_sweep_when_idle() {
  if (!finished || !connections.empty() || !sweep_open) return;
  sweep_open = false;
  uv_timer_stop(&sweep_timer);
  ++pending_closes;
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer),
           [](uv_handle_t* handle) { --static_cast<State*>(handle->data)->pending_closes; });
}

Status HttpServer::State::listen_on(const std::string& address) {
  auto listener = std::make_unique<Listener>();
  listener->state = this;
  listener->address = address;
  int rc = 0;
  if (address.rfind("unix:", 0) == 0) {
    const std::string path = address.substr(5);
    if (path.empty() || path[0] != '/' || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return Status(StatusCode::kInvalidArgument,
                    "http.listen '" + address +
                        "': a Unix socket needs an absolute path shorter "
                        "than " +
                        std::to_string(sizeof(sockaddr_un{}.sun_path)) + " bytes");
    }
    struct stat existing {};
    if (::lstat(path.c_str(), &existing) == 0) {
      if (!S_ISSOCK(existing.st_mode)) {
        return Status(StatusCode::kFailedPrecondition,
                      "http.listen '" + address + "': " + path + " exists and is not a socket");
      }
      if (api::unix_socket_is_live(path)) {
        return Status(StatusCode::kUnavailable,
                      "http.listen '" + address + "': another server is listening on " + path);
      }
      ::unlink(path.c_str());  // a stale socket left by a process that died
    }
    listener->is_unix = true;
    uv_pipe_init(loop, &listener->handle.pipe, 0);
    listener->handle.pipe.data = listener.get();
    rc = uv_pipe_bind(&listener->handle.pipe, path.c_str());
    if (rc == 0) {
      listener->bound_path = path;
      if (::chmod(path.c_str(), options.unix_socket_mode) != 0 ||
          (options.unix_socket_group &&
           ::chown(path.c_str(), static_cast<uid_t>(-1), *options.unix_socket_group) != 0)) {
        rc = -errno;
      }
    }
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return Status(StatusCode::kInvalidArgument, "http.listen '" + address +
                                                      "' is not HOST:PORT, [IPV6]:PORT or "
                                                      "unix:/PATH");
    }
    std::string host = address.substr(0, colon);
    const std::string port_text = address.substr(colon + 1);
    char* end = nullptr;
    const long port = std::strtol(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || port < 0 || port > 65535) {
      return Status(StatusCode::kInvalidArgument,
                    "http.listen '" + address + "': the port must be 0 to 65535");
    }
    sockaddr_storage storage{};
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
      rc = uv_ip6_addr(host.c_str(), static_cast<int>(port),
                       reinterpret_cast<sockaddr_in6*>(&storage));
    } else {
      rc = uv_ip4_addr(host.c_str(), static_cast<int>(port),
                       reinterpret_cast<sockaddr_in*>(&storage));
    }
    if (rc != 0) {
      return Status(StatusCode::kInvalidArgument,
                    "http.listen '" + address + "': '" + host +
                        "' is not an IP address (use 127.0.0.1, [::1], 0.0.0.0 ...)");
    }
    uv_tcp_init(loop, &listener->handle.tcp);
    listener->handle.tcp.data = listener.get();
    rc = uv_tcp_bind(&listener->handle.tcp, reinterpret_cast<sockaddr*>(&storage), 0);
  }
  if (rc == 0) {
    rc = uv_listen(listener->stream(), kListenBacklog, [](uv_stream_t* server, int status) {
      auto* l = static_cast<Listener*>(server->data);
      if (status == 0) l->state->on_connection(l);
    });
  }
  Listener* raw = listener.get();
  listeners.push_back(std::move(listener));  // closed by close_handles, even on failure
  if (rc != 0) {
    return Status(StatusCode::kUnavailable,
                  "http.listen '" + address + "': " + std::string(uv_strerror(rc)));
  }
  std::string bound = address;
  if (!raw->is_unix) {
    sockaddr_storage name{};
    int length = sizeof(name);
    if (uv_tcp_getsockname(&raw->handle.tcp, reinterpret_cast<sockaddr*>(&name), &length) == 0) {
      char ip[64] = {};
      int port = 0;
      if (name.ss_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&name);
        uv_ip6_name(in6, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        bound = "[" + std::string(ip) + "]:" + std::to_string(port);
      } else {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(&name);
        uv_ip4_name(in4, ip, sizeof(ip));
        port = ntohs(in4->sin_port);
        bound = std::string(ip) + ":" + std::to_string(port);
      }
    }
  }
  addresses.push_back(bound);
  return Status::ok();
}

Expected<std::unique_ptr<HttpServer>> HttpServer::create(const HttpServerOptions& options,
                                                         api::Server& host,
                                                         api::RequestHandler& handler,
                                                         HttpRouter& router) {
  std::unique_ptr<HttpServer> server(new HttpServer());
  auto state = std::make_shared<State>();
  server->state_ = state;
  state->options = options;
  state->handler = &handler;
  state->router = &router;
  state->loop = host.uv_loop();
  state->post = host.poster();
  uv_timer_init(state->loop, &state->sweep_timer);
  state->sweep_timer.data = state.get();
  state->sweep_open = true;
  std::chrono::milliseconds interval(1000);
  for (const std::chrono::milliseconds timeout : {options.request_timeout, options.idle_timeout}) {
    if (timeout.count() > 0)
      interval = std::min(interval, std::max(timeout / 4, std::chrono::milliseconds(10)));
  }
  const auto ms = static_cast<uint64_t>(interval.count());
  uv_timer_start(
      &state->sweep_timer, [](uv_timer_t* timer) { static_cast<State*>(timer->data)->sweep(); }, ms,
      ms);
  for (const std::string& address : options.listen) {
    if (Status listening = state->listen_on(address); !listening.is_ok()) {
      return listening;  // ~HttpServer closes what was opened
    }
  }
  host.attach(server.get());
  return server;
}

HttpServer::~HttpServer() {
  if (!state_) return;
  State& s = *state_;
  if (!s.finished) finish(Status(StatusCode::kCancelled, "sparkd's HTTP server is stopping"));
  // Connections still closing are cut off now; then the close callbacks run (the host's loop
  // has stopped, so nothing else runs on it meanwhile).
  std::vector<Connection*> open;
  for (const auto& [id, c] : s.connections) open.push_back(c);
  for (Connection* c : open) s.close_connection(c);
  s.close_sweep_when_idle();
  while (s.pending_closes > 0) uv_run(s.loop, UV_RUN_ONCE);
}

const std::vector<std::string>& HttpServer::addresses() const {
  return state_->addresses;
}

HttpServerStats HttpServer::stats() const {
  return stats_source()();
}

std::function<HttpServerStats()> HttpServer::stats_source() const {
  return [state = state_] {
    std::lock_guard<std::mutex> lock(state->stats_mutex);
    return state->stats;
  };
}

void HttpServer::begin_drain() {
  state_->draining = true;
  state_->close_listeners();
}

uint32_t HttpServer::requests_in_flight() const {
  return state_->in_flight;
}

void HttpServer::finish(const Status& cut_off) {
  State& s = *state_;
  if (s.finished) return;
  s.finished = true;
  s.draining = true;
  std::vector<Connection*> open;
  for (const auto& [id, c] : s.connections) open.push_back(c);
  for (Connection* c : open) {
    if (c->active) {
      // Its answer is posted (and written before the close) before the work is cancelled: a
      // runner that saw the cancel first would answer with its own, plainer reason.
      c->active->fail(cut_off);
      c->active->cancel();
    }
  }
  s.close_listeners();
  // Connections close once their last bytes are written (the sweep cuts off those that take
  // too long); with none left, the sweep timer is closed now.
  for (Connection* c : open) {
    if (!c->active) s.close_after_writes(c);
  }
  s.close_sweep_when_idle();
}

}  // namespace sparkd::http
