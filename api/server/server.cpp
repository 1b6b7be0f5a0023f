#include "api/server/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "api/protocol/frame.h"
#include "api/protocol/status_codes.h"

namespace sparkd::api {

bool PeerCredentials::in_group(gid_t group) const {
  return gid == group || std::find(groups.begin(), groups.end(), group) != groups.end();
}

// Responses waiting to be written, from any thread to the loop thread.
class Outbox {
 public:
  struct Item {
    uint64_t connection_id = 0;
    uint64_t request_id = 0;
    bool final = false;
    std::string frame;
  };

  explicit Outbox(uv_async_t* wake) : wake_(wake) {}

  void push(Item item) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return;
    items_.push_back(std::move(item));
    uv_async_send(wake_);
  }
  void post(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return;
    tasks_.push_back(std::move(task));
    uv_async_send(wake_);
  }
  void take(std::vector<Item>& items, std::vector<std::function<void()>>& tasks) {
    std::lock_guard<std::mutex> lock(mutex_);
    items.swap(items_);
    tasks.swap(tasks_);
  }
  // After this, pushes are dropped and the async handle may be closed.
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
  }

 private:
  std::mutex mutex_;
  uv_async_t* wake_;
  bool closed_ = false;  // guarded by mutex_
  std::vector<Item> items_;
  std::vector<std::function<void()>> tasks_;
};

// A socket connection's responses: frames, encoded on the sending thread.
class FrameSink : public ResponseSink {
 public:
  FrameSink(std::shared_ptr<Outbox> outbox, uint64_t connection_id)
      : outbox_(std::move(outbox)), connection_id_(connection_id) {}
  void deliver(const v1::Response& response) override {
    outbox_->push({connection_id_, response.id(), response.final(), encode_frame(response)});
  }

 private:
  std::shared_ptr<Outbox> outbox_;
  uint64_t connection_id_;
};

Call::Call(const v1::Request& request, PeerCredentials peer, std::shared_ptr<ResponseSink> sink,
           RequestHandler* handler, std::string_view api)
    : request_id_(request.id()),
      kind_(request_kind_name(request)),
      model_(request_model(request)),
      api_(api),
      peer_(std::move(peer)),
      sink_(std::move(sink)),
      handler_(handler),
      received_at_(std::chrono::steady_clock::now()) {}

void Call::send(v1::Response response) {
  const bool final = response.final();
  std::lock_guard<std::mutex> lock(send_mutex_);
  if (finished_.load()) return;
  response.set_id(request_id_);
  if (final) {
    finished_.store(true);
    if (response.timing().total_ms() == 0) {
      // Every final response says how long the daemon took, whatever answered it.
      response.mutable_timing()->set_total_ms(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - received_at_)
              .count());
    }
    // Counted before it is sent: a client that has its answer sees it counted.
    if (handler_ != nullptr) {
      const StatusCode code =
          response.has_error() ? from_proto_code(response.error().code()) : StatusCode::kOk;
      handler_->answered({kind_, model_, code, api_});
    }
  }
  sink_->deliver(response);
}

void Call::fail(const Status& status) {
  send(error_response(request_id_, status));
}

void Call::on_cancel(std::function<void()> hook) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!cancelled_.load()) {
      cancel_hook_ = std::move(hook);
      return;
    }
  }
  if (hook) hook();
}

void Call::cancel() {
  std::function<void()> hook;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cancelled_.exchange(true)) return;
    hook = std::move(cancel_hook_);
  }
  if (hook) hook();
}

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunkBytes = 64 * 1024;
constexpr int kListenBacklog = 128;
// A connection being closed gets this long to take its last responses; a peer that does not
// read them is then cut off, so it cannot hold the connection open.
constexpr std::chrono::seconds kCloseGrace(5);

std::string seconds_text(std::chrono::milliseconds duration) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", static_cast<double>(duration.count()) / 1000.0);
  return text;
}

// Requests a draining server still answers: they read state or stop work, and start none.
bool answered_while_draining(const v1::Request& request) {
  switch (request.kind_case()) {
    case v1::Request::kHealth:
    case v1::Request::kStatus:
    case v1::Request::kListModels:
    case v1::Request::kCancel:
      return true;
    default:
      return false;
  }
}

Status uv_status(const std::string& what, int code) {
  return Status(StatusCode::kUnavailable, what + ": " + uv_strerror(code));
}

PeerCredentials peer_credentials(int fd) {
  PeerCredentials peer;
  ucred cred{};
  socklen_t length = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0) {
    peer.pid = cred.pid;
    peer.uid = cred.uid;
    peer.gid = cred.gid;
  }
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      peer.groups = std::move(groups);
      break;
    }
    if (errno != ERANGE) break;
    groups.resize(bytes / sizeof(gid_t) + 1);
  }
  return peer;
}

}  // namespace

bool unix_socket_is_live(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  const bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return live;
}

struct Connection;

struct Server::Loop {
  ServerOptions options;
  RequestHandler* handler = nullptr;
  uv_loop_t loop{};
  uv_pipe_t listener{};
  bool listener_open = false;
  uint32_t requests_in_flight = 0;  // over all connections
  bool bound_socket_file = false;
  uv_async_t wake{};
  std::shared_ptr<Outbox> outbox;
  std::map<uint64_t, Connection*> connections;
  uint64_t next_connection_id = 1;
  std::vector<LoopFrontend*> frontends;
  char read_buffer[kReadChunkBytes];

  struct Tick {
    uv_timer_t timer{};
    std::function<void()> fn;
  };
  std::vector<std::unique_ptr<Tick>> ticks;
  uv_timer_t drain_timer{};
  uv_timer_t sweep_timer{};  // frame and idle timeouts, and the close grace
  bool sweep_closed = false;
  bool draining = false;
  bool finished = false;
  std::chrono::steady_clock::time_point drain_deadline;

  mutable std::mutex stats_mutex;
  ServerStats stats;  // guarded by stats_mutex

  void publish_stats();
  void close_listener();  // stop accepting; remove the socket file we bound
  void on_connection();
  void on_frame(Connection* c, std::string payload);
  // Answers request `id` with `status` without running it, and tells the handler. A non-final
  // refusal (a duplicate id) leaves the request in flight under that id alone.
  void refuse(Connection* c, uint64_t id, const AnsweredRequest& request, const Status& status,
              bool final = true);
  void write_frame(Connection* c, std::string frame);
  // Sends `status` as an id-0 error, stops reading, and closes once it is written.
  void close_with_error(Connection* c, const Status& status);
  // Stops reading; closes once the pending responses are written (or after kCloseGrace).
  void close_after_writes(Connection* c);
  void close_connection(Connection* c);
  void start_sweep();
  void sweep();
  void close_sweep();
  void deliver_outbox();
  void begin_drain(std::chrono::milliseconds timeout);
  void check_drained();
  void finish();
};

struct Connection {
  Server::Loop* loop = nullptr;
  uint64_t id = 0;
  uv_pipe_t pipe{};
  FrameDecoder decoder;
  PeerCredentials peer;
  std::map<uint64_t, std::shared_ptr<Call>> inflight;
  std::shared_ptr<FrameSink> sink;
  size_t pending_write_bytes = 0;
  bool reading = false;
  bool closing = false;
  bool close_after_writes = false;
  Clock::time_point last_activity = Clock::now();        // a byte received or a request finished
  std::optional<Clock::time_point> partial_frame_since;  // while reading an incomplete frame
  Clock::time_point close_deadline;                      // with close_after_writes

  explicit Connection(size_t max_frame_bytes) : decoder(max_frame_bytes) {}
};

namespace {

struct WriteRequest {
  uv_write_t request{};
  std::string data;
  Connection* connection = nullptr;
};

void on_alloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(handle->data);
  *buf = uv_buf_init(c->loop->read_buffer, sizeof(c->loop->read_buffer));
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(stream->data);
  Server::Loop* loop = c->loop;
  if (nread < 0) {
    loop->close_connection(c);  // EOF or error: the client is gone
    return;
  }
  if (nread == 0) return;  // EAGAIN: nothing read
  const Clock::time_point now = Clock::now();
  c->last_activity = now;
  c->decoder.feed(std::string_view(buf->base, static_cast<size_t>(nread)));
  bool completed_a_frame = false;
  while (!c->closing && !c->close_after_writes) {
    auto frame = c->decoder.next();
    if (!frame) {
      // Framing is lost: answer once, then close.
      {
        std::lock_guard<std::mutex> lock(loop->stats_mutex);
        ++loop->stats.oversized_frames_total;
      }
      loop->close_with_error(c, frame.status());
      return;
    }
    if (!frame->has_value()) break;
    completed_a_frame = true;
    loop->on_frame(c, std::move(**frame));
    // Backpressure may have stopped reading; frames already buffered are still handled.
  }
  // What is left buffered is the start of a frame, and its clock runs from its first byte:
  // from this read when a frame completed in it (a client streaming frames back to back
  // leaves a partial one after nearly every read), else from when the partial one began.
  if (c->decoder.buffered_bytes() == 0) {
    c->partial_frame_since.reset();
  } else if (completed_a_frame || !c->partial_frame_since) {
    c->partial_frame_since = now;
  }
}

void on_write(uv_write_t* request, int status) {
  std::unique_ptr<WriteRequest> write(static_cast<WriteRequest*>(request->data));
  Connection* c = write->connection;
  c->pending_write_bytes -= write->data.size();
  if (c->closing) return;
  Server::Loop* loop = c->loop;
  if (status < 0) {
    loop->close_connection(c);
    return;
  }
  if (c->close_after_writes) {
    if (c->pending_write_bytes == 0) loop->close_connection(c);
    return;
  }
  if (!c->reading && c->pending_write_bytes <= loop->options.max_write_buffer_bytes / 2) {
    c->reading = true;
    // The server, not the peer, paused the frame in progress: its clock restarts.
    if (c->partial_frame_since) c->partial_frame_since = Clock::now();
    uv_read_start(reinterpret_cast<uv_stream_t*>(&c->pipe), on_alloc, on_read);
  }
}

void on_connection_closed(uv_handle_t* handle) {
  delete static_cast<Connection*>(handle->data);
}

}  // namespace

void Server::Loop::publish_stats() {
  std::lock_guard<std::mutex> lock(stats_mutex);
  stats.connections = static_cast<uint32_t>(connections.size());
  stats.requests_in_flight = requests_in_flight;
}

void Server::Loop::close_listener() {
  if (!listener_open) return;
  listener_open = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&listener), nullptr);
  if (bound_socket_file) ::unlink(options.socket_path.c_str());
}

void Server::Loop::write_frame(Connection* c, std::string frame) {
  if (c->closing) return;
  auto* write = new WriteRequest();
  write->data = std::move(frame);
  write->connection = c;
  write->request.data = write;
  uv_buf_t buf = uv_buf_init(write->data.data(), static_cast<unsigned>(write->data.size()));
  c->pending_write_bytes += write->data.size();
  const int rc =
      uv_write(&write->request, reinterpret_cast<uv_stream_t*>(&c->pipe), &buf, 1, on_write);
  if (rc < 0) {
    c->pending_write_bytes -= write->data.size();
    delete write;
    close_connection(c);
    return;
  }
  if (c->reading && c->pending_write_bytes > options.max_write_buffer_bytes) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->pipe));
    c->reading = false;
  }
}

void Server::Loop::refuse(Connection* c, uint64_t id, const AnsweredRequest& request,
                          const Status& status, bool final) {
  {
    std::lock_guard<std::mutex> lock(stats_mutex);
    ++stats.rejected_frames_total;
  }
  v1::Response response = error_response(id, status);
  response.set_final(final);
  handler->answered({request.kind, request.model, status.code()});  // before the client sees it
  write_frame(c, encode_frame(response));
}

void Server::Loop::close_with_error(Connection* c, const Status& status) {
  write_frame(c, encode_frame(error_response(0, status)));
  // The connection is over: what runs for it stops now (its KV is freed), and nothing more
  // is written after the reason.
  for (const auto& [id, call] : c->inflight) call->cancel();
  close_after_writes(c);
}

void Server::Loop::close_after_writes(Connection* c) {
  if (c->closing) return;
  if (!c->close_after_writes) {
    c->close_after_writes = true;
    c->close_deadline = Clock::now() + kCloseGrace;
  }
  if (c->reading) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->pipe));
    c->reading = false;
  }
  if (c->pending_write_bytes == 0) close_connection(c);
}

void Server::Loop::close_connection(Connection* c) {
  if (c->closing) return;
  c->closing = true;
  // The client is gone: its requests are cancelled, so runners free their KV.
  auto inflight = std::move(c->inflight);
  c->inflight.clear();
  requests_in_flight -= static_cast<uint32_t>(inflight.size());
  for (auto& [id, call] : inflight) call->cancel();
  connections.erase(c->id);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), on_connection_closed);
  publish_stats();
  if (finished && connections.empty()) close_sweep();  // nothing is left for it to do
  if (draining) check_drained();
}

void Server::Loop::close_sweep() {
  if (sweep_closed) return;
  sweep_closed = true;
  uv_timer_stop(&sweep_timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer), nullptr);
}

void Server::Loop::start_sweep() {
  // Often enough that a timeout fires within a quarter of itself, at most once a second.
  std::chrono::milliseconds interval(1000);
  for (const std::chrono::milliseconds timeout : {options.frame_timeout, options.idle_timeout}) {
    if (timeout.count() > 0)
      interval = std::min(interval, std::max(timeout / 4, std::chrono::milliseconds(10)));
  }
  const auto ms = static_cast<uint64_t>(interval.count());
  uv_timer_start(
      &sweep_timer, [](uv_timer_t* timer) { static_cast<Loop*>(timer->data)->sweep(); }, ms, ms);
}

void Server::Loop::sweep() {
  const Clock::time_point now = Clock::now();
  std::vector<Connection*> open;
  for (const auto& [id, c] : connections) open.push_back(c);
  for (Connection* c : open) {
    if (c->closing) continue;
    if (c->close_after_writes) {
      if (now >= c->close_deadline) close_connection(c);  // the peer is not reading
      continue;
    }
    if (options.frame_timeout.count() > 0 && c->reading && c->partial_frame_since &&
        now - *c->partial_frame_since >= options.frame_timeout) {
      {
        std::lock_guard<std::mutex> lock(stats_mutex);
        ++stats.frame_timeouts_total;
      }
      close_with_error(
          c, Status(StatusCode::kDeadlineExceeded,
                    "closing the connection: a frame was started but not completed within " +
                        seconds_text(options.frame_timeout) + " s (server.frame_timeout_s); " +
                        std::to_string(c->decoder.buffered_bytes()) +
                        " bytes of it arrived. Send each frame whole"));
      continue;
    }
    if (options.idle_timeout.count() > 0 && c->inflight.empty() && !c->partial_frame_since &&
        c->pending_write_bytes == 0 && now - c->last_activity >= options.idle_timeout) {
      {
        std::lock_guard<std::mutex> lock(stats_mutex);
        ++stats.idle_closes_total;
      }
      close_with_error(
          c, Status(StatusCode::kUnavailable,
                    "closing the connection: idle for " + seconds_text(options.idle_timeout) +
                        " s (server.idle_timeout_s); connect again to send more"));
    }
  }
}

void Server::Loop::on_connection() {
  auto* c = new Connection(options.max_frame_bytes);
  c->loop = this;
  c->pipe.data = c;
  uv_pipe_init(&loop, &c->pipe, 0);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener),
                reinterpret_cast<uv_stream_t*>(&c->pipe)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), on_connection_closed);
    return;
  }
  c->id = next_connection_id++;
  c->closing = false;
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
    close_with_error(c, Status(StatusCode::kResourceExhausted,
                               "sparkd already serves " + std::to_string(options.max_connections) +
                                   " connections (server.max_connections); close idle "
                                   "connections or send more requests over each"));
    publish_stats();
    return;
  }
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&c->pipe), &fd) == 0) c->peer = peer_credentials(fd);
  c->reading = true;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->pipe), on_alloc, on_read);
  publish_stats();
}

void Server::Loop::on_frame(Connection* c, std::string payload) {
  {
    std::lock_guard<std::mutex> lock(stats_mutex);
    ++stats.requests_total;
  }
  auto request = parse_request(payload);
  // The id is echoed even for a frame that does not parse, when it can be read, so the client
  // can match the error.
  const uint64_t id = request ? request->id() : recover_request_id(payload);
  const AnsweredRequest what =
      request ? AnsweredRequest{request_kind_name(*request), request_model(*request)}
              : AnsweredRequest{"unknown", ""};
  if (id != 0 && c->inflight.count(id) != 0) {
    // First of all: any final answer with this id would look like the end of the request in
    // flight under it. Not final: that request goes on and gets its own final response.
    refuse(c, id, what,
           Status(StatusCode::kAlreadyExists,
                  "request id " + std::to_string(id) +
                      " is already in flight on this connection, so this second request with it "
                      "was not run (the first goes on); ids must be unique among a "
                      "connection's requests in flight"),
           /*final=*/false);
    return;
  }
  if (!request) {
    refuse(c, id, what, request.status());
    return;
  }
  if (Status valid = validate_request(*request, options.limits); !valid.is_ok()) {
    refuse(c, id, what, valid);
    return;
  }
  if (draining && !answered_while_draining(*request)) {
    refuse(c, id, what,
           Status(StatusCode::kUnavailable,
                  "sparkd is shutting down and accepts no new requests; retry on its successor"));
    return;
  }
  if (request->has_cancel()) {
    const auto it = c->inflight.find(request->cancel().target_id());
    const bool found = it != c->inflight.end() && !it->second->finished();
    if (found) it->second->cancel();
    v1::Response response;
    response.set_id(id);
    response.set_final(true);
    response.mutable_cancel()->set_cancelled(found);
    handler->answered({what.kind, what.model, StatusCode::kOk});
    write_frame(c, encode_frame(response));
    return;
  }
  if (c->inflight.size() >= options.max_inflight_per_connection) {
    refuse(c, id, what,
           Status(StatusCode::kResourceExhausted,
                  std::to_string(c->inflight.size()) +
                      " requests are already in flight on this connection "
                      "(server.max_inflight_per_connection); wait for one to finish or open "
                      "another connection"));
    return;
  }
  if (!c->sink) c->sink = std::make_shared<FrameSink>(outbox, c->id);
  auto call = std::make_shared<Call>(*request, c->peer, c->sink, handler);
  c->inflight[id] = call;
  ++requests_in_flight;
  publish_stats();
  handler->handle(*request, std::move(call));
}

void Server::Loop::deliver_outbox() {
  std::vector<Outbox::Item> items;
  std::vector<std::function<void()>> tasks;
  outbox->take(items, tasks);
  // Responses first: a task may finish the server, which delivers what was queued after
  // these; writing these first keeps every connection's frames in the order they were sent.
  bool changed = false;
  for (Outbox::Item& item : items) {
    const auto it = connections.find(item.connection_id);
    if (it == connections.end()) continue;  // the client left; its calls were cancelled
    Connection* c = it->second;
    if (item.final && c->inflight.erase(item.request_id) != 0) {
      --requests_in_flight;
      c->last_activity = Clock::now();
      changed = true;
    }
    // A connection being closed has had its last word (its reason, or the drain's answers).
    if (!c->close_after_writes) write_frame(c, std::move(item.frame));
  }
  if (changed) {
    publish_stats();
    if (draining) check_drained();
  }
  for (auto& task : tasks) task();
}

void Server::Loop::begin_drain(std::chrono::milliseconds timeout) {
  if (draining || finished) return;
  draining = true;
  drain_deadline = std::chrono::steady_clock::now() + timeout;
  close_listener();
  for (LoopFrontend* frontend : frontends) frontend->begin_drain();
  drain_timer.data = this;
  uv_timer_start(
      &drain_timer, [](uv_timer_t* timer) { static_cast<Loop*>(timer->data)->check_drained(); }, 20,
      20);
  check_drained();
}

void Server::Loop::check_drained() {
  if (finished) return;
  uint32_t in_flight = requests_in_flight;
  for (const LoopFrontend* frontend : frontends) in_flight += frontend->requests_in_flight();
  if (in_flight == 0 || std::chrono::steady_clock::now() >= drain_deadline) finish();
}

void Server::Loop::finish() {
  if (finished) return;
  finished = true;
  // Requests still in flight (the drain timed out) are cancelled, and each caller is told so
  // before its connection closes. The reason is sent before the cancel: a runner that sees
  // the cancel first would end the call with its own, plainer one.
  const Status cut_off(StatusCode::kCancelled,
                       "sparkd is shutting down: the drain timeout (server.drain_timeout_s) ended "
                       "this request before it finished");
  for (const auto& [connection_id, c] : connections) {
    for (const auto& [request_id, call] : c->inflight) {
      call->fail(cut_off);
      call->cancel();
    }
  }
  for (LoopFrontend* frontend : frontends) frontend->finish(cut_off);
  deliver_outbox();  // every final response queued so far, those above included
  close_listener();
  uv_timer_stop(&drain_timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer), nullptr);
  for (auto& tick : ticks) {
    uv_timer_stop(&tick->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick->timer), nullptr);
  }
  outbox->close();
  uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
  std::vector<Connection*> open;
  for (const auto& [id, c] : connections) open.push_back(c);
  for (Connection* c : open) close_after_writes(c);
  // The sweep force-closes any peer that does not take its last responses; with no
  // connection left it is closed here (or by the last close_connection).
  if (connections.empty()) close_sweep();
}

Expected<std::unique_ptr<Server>> Server::create(const ServerOptions& options,
                                                 RequestHandler& handler) {
  std::unique_ptr<Server> server(new Server());
  server->loop_ = std::make_unique<Loop>();
  Loop& l = *server->loop_;
  l.options = options;
  l.handler = &handler;
  if (int rc = uv_loop_init(&l.loop); rc != 0) {
    server->loop_.reset();  // no handle exists yet: ~Server has nothing to close
    return uv_status("uv_loop_init", rc);
  }
  uv_async_init(&l.loop, &l.wake,
                [](uv_async_t* async) { static_cast<Loop*>(async->data)->deliver_outbox(); });
  l.wake.data = &l;
  l.outbox = std::make_shared<Outbox>(&l.wake);
  uv_timer_init(&l.loop, &l.drain_timer);
  uv_timer_init(&l.loop, &l.sweep_timer);
  l.sweep_timer.data = &l;
  l.start_sweep();
  uv_pipe_init(&l.loop, &l.listener, 0);
  l.listener.data = &l;
  l.listener_open = true;

  // On an error return below, ~Server closes what was opened.
  if (options.listen_fd >= 0) {
    if (int rc = uv_pipe_open(&l.listener, options.listen_fd); rc != 0) {
      return uv_status("adopting the socket passed by systemd", rc);
    }
  } else {
    const std::string& path = options.socket_path;
    if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return Status(StatusCode::kInvalidArgument,
                    "socket path '" + path + "' must be non-empty and shorter than " +
                        std::to_string(sizeof(sockaddr_un{}.sun_path)) + " bytes");
    }
    struct stat existing {};
    if (::lstat(path.c_str(), &existing) == 0) {
      if (!S_ISSOCK(existing.st_mode)) {
        return Status(StatusCode::kFailedPrecondition,
                      path +
                          " exists and is not a socket; remove it or choose another "
                          "server.socket");
      }
      if (unix_socket_is_live(path)) {
        return Status(StatusCode::kUnavailable, "another server is already listening on " + path);
      }
      ::unlink(path.c_str());  // a stale socket left by a process that died
    }
    if (int rc = uv_pipe_bind(&l.listener, path.c_str()); rc != 0) {
      return uv_status("binding " + path, rc);
    }
    l.bound_socket_file = true;
    if (::chmod(path.c_str(), options.socket_mode) != 0) {
      return Status(StatusCode::kPermissionDenied, "chmod " + path + ": " + std::strerror(errno));
    }
    if (options.socket_group &&
        ::chown(path.c_str(), static_cast<uid_t>(-1), *options.socket_group) != 0) {
      return Status(StatusCode::kPermissionDenied, "chown " + path + " to group " +
                                                       std::to_string(*options.socket_group) +
                                                       ": " + std::strerror(errno));
    }
  }
  const int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l.listener), kListenBacklog,
                           [](uv_stream_t* listener, int status) {
                             if (status == 0) static_cast<Loop*>(listener->data)->on_connection();
                           });
  if (rc != 0) return uv_status("listening on " + options.socket_path, rc);
  return server;
}

Server::~Server() {
  if (!loop_) return;
  if (!loop_->finished) {
    loop_->finish();
  }
  uv_run(&loop_->loop, UV_RUN_DEFAULT);  // runs the close callbacks
  uv_loop_close(&loop_->loop);
}

void Server::run() {
  uv_run(&loop_->loop, UV_RUN_DEFAULT);
}

void Server::shutdown(std::chrono::milliseconds drain_timeout) {
  loop_->outbox->post([l = loop_.get(), drain_timeout] { l->begin_drain(drain_timeout); });
}

void Server::post(std::function<void()> task) {
  loop_->outbox->post(std::move(task));
}

std::function<void(std::function<void()>)> Server::poster() {
  return [outbox = loop_->outbox](std::function<void()> task) { outbox->post(std::move(task)); };
}

void Server::every(std::chrono::milliseconds interval, std::function<void()> tick) {
  auto entry = std::make_unique<Loop::Tick>();
  entry->fn = std::move(tick);
  uv_timer_init(&loop_->loop, &entry->timer);
  entry->timer.data = entry.get();
  const auto ms = static_cast<uint64_t>(std::max<int64_t>(1, interval.count()));
  uv_timer_start(
      &entry->timer, [](uv_timer_t* timer) { static_cast<Loop::Tick*>(timer->data)->fn(); }, ms,
      ms);
  loop_->ticks.push_back(std::move(entry));
}

void Server::set_limits(const Limits& limits) {
  post([l = loop_.get(), limits] {
    l->options.max_frame_bytes = limits.max_frame_bytes;
    l->options.max_connections = limits.max_connections;
    l->options.max_inflight_per_connection = limits.max_inflight_per_connection;
    l->options.max_write_buffer_bytes = limits.max_write_buffer_bytes;
    l->options.frame_timeout = limits.frame_timeout;
    l->options.idle_timeout = limits.idle_timeout;
    l->options.limits = limits.requests;
    if (!l->sweep_closed) l->start_sweep();
  });
}

ServerStats Server::stats() const {
  std::lock_guard<std::mutex> lock(loop_->stats_mutex);
  return loop_->stats;
}

const std::string& Server::socket_path() const {
  return loop_->options.socket_path;
}

uv_loop_s* Server::uv_loop() {
  return &loop_->loop;
}

void Server::attach(LoopFrontend* frontend) {
  loop_->frontends.push_back(frontend);
}

}  // namespace sparkd::api
