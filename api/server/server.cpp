#include "api/server/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
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

Call::Call(uint64_t connection_id, uint64_t request_id, PeerCredentials peer,
           std::shared_ptr<Outbox> outbox)
    : connection_id_(connection_id),
      request_id_(request_id),
      peer_(std::move(peer)),
      outbox_(std::move(outbox)),
      received_at_(std::chrono::steady_clock::now()) {}

void Call::send(v1::Response response) {
  if (finished_.load()) return;
  if (response.final() && finished_.exchange(true)) return;
  response.set_id(request_id_);
  if (response.final() && response.timing().total_ms() == 0) {
    // Every final response says how long the daemon took, whatever answered it.
    response.mutable_timing()->set_total_ms(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - received_at_)
            .count());
  }
  outbox_->push({connection_id_, request_id_, response.final(), encode_frame(response)});
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

constexpr size_t kReadChunkBytes = 64 * 1024;
constexpr int kListenBacklog = 128;

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

// Whether something accepts connections on `path` (a live server, not a stale socket file).
bool socket_is_live(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  const bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return live;
}

}  // namespace

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
  char read_buffer[kReadChunkBytes];

  struct Tick {
    uv_timer_t timer{};
    std::function<void()> fn;
  };
  std::vector<std::unique_ptr<Tick>> ticks;
  uv_timer_t drain_timer{};
  bool draining = false;
  bool finished = false;
  std::chrono::steady_clock::time_point drain_deadline;

  mutable std::mutex stats_mutex;
  ServerStats stats;  // guarded by stats_mutex

  void publish_stats();
  void close_listener();  // stop accepting; remove the socket file we bound
  void on_connection();
  void on_frame(Connection* c, std::string payload);
  void reject(Connection* c, uint64_t id, const Status& status);
  void write_frame(Connection* c, std::string frame);
  void close_connection(Connection* c);
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
  size_t pending_write_bytes = 0;
  bool reading = false;
  bool closing = false;
  bool close_after_writes = false;

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
  c->decoder.feed(std::string_view(buf->base, static_cast<size_t>(nread)));
  while (!c->closing && !c->close_after_writes) {
    auto frame = c->decoder.next();
    if (!frame) {
      // Framing is lost: answer once, then close.
      loop->reject(c, 0, frame.status());
      c->close_after_writes = true;
      if (c->reading) {
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->pipe));
        c->reading = false;
      }
      if (c->pending_write_bytes == 0) loop->close_connection(c);
      return;
    }
    if (!frame->has_value()) break;
    loop->on_frame(c, std::move(**frame));
    // Backpressure may have stopped reading; frames already buffered are still handled.
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

void Server::Loop::reject(Connection* c, uint64_t id, const Status& status) {
  {
    std::lock_guard<std::mutex> lock(stats_mutex);
    ++stats.rejected_frames_total;
  }
  write_frame(c, encode_frame(error_response(id, status)));
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
  if (draining) check_drained();
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
    reject(c, 0,
           Status(StatusCode::kResourceExhausted,
                  "sparkd already serves " + std::to_string(options.max_connections) +
                      " connections (server.max_connections); close idle connections or "
                      "send more requests over each"));
    c->close_after_writes = true;
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
  if (!request) {
    reject(c, 0, request.status());
    return;
  }
  const uint64_t id = request->id();
  if (Status valid = validate_request(*request, options.limits); !valid.is_ok()) {
    reject(c, id, valid);
    return;
  }
  if (draining) {
    reject(c, id,
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
    write_frame(c, encode_frame(response));
    return;
  }
  if (c->inflight.count(id) != 0) {
    reject(c, id,
           Status(StatusCode::kInvalidArgument,
                  "request id " + std::to_string(id) +
                      " is already in flight on this connection; ids must be unique among a "
                      "connection's requests in flight"));
    return;
  }
  if (c->inflight.size() >= options.max_inflight_per_connection) {
    reject(c, id,
           Status(StatusCode::kResourceExhausted,
                  std::to_string(c->inflight.size()) +
                      " requests are already in flight on this connection "
                      "(server.max_inflight_per_connection); wait for one to finish or open "
                      "another connection"));
    return;
  }
  auto call = std::make_shared<Call>(c->id, id, c->peer, outbox);
  c->inflight[id] = call;
  ++requests_in_flight;
  publish_stats();
  handler->handle(*request, std::move(call));
}

void Server::Loop::deliver_outbox() {
  std::vector<Outbox::Item> items;
  std::vector<std::function<void()>> tasks;
  outbox->take(items, tasks);
  for (auto& task : tasks) task();
  bool changed = false;
  for (Outbox::Item& item : items) {
    const auto it = connections.find(item.connection_id);
    if (it == connections.end()) continue;  // the client left; its calls were cancelled
    Connection* c = it->second;
    if (item.final && c->inflight.erase(item.request_id) != 0) {
      --requests_in_flight;
      changed = true;
    }
    write_frame(c, std::move(item.frame));
  }
  if (changed) {
    publish_stats();
    if (draining) check_drained();
  }
}

void Server::Loop::begin_drain(std::chrono::milliseconds timeout) {
  if (draining || finished) return;
  draining = true;
  drain_deadline = std::chrono::steady_clock::now() + timeout;
  close_listener();
  drain_timer.data = this;
  uv_timer_start(
      &drain_timer, [](uv_timer_t* timer) { static_cast<Loop*>(timer->data)->check_drained(); }, 20,
      20);
  check_drained();
}

void Server::Loop::check_drained() {
  if (finished) return;
  if (requests_in_flight == 0 || std::chrono::steady_clock::now() >= drain_deadline) finish();
}

void Server::Loop::finish() {
  if (finished) return;
  finished = true;
  std::vector<Connection*> open;
  for (const auto& [id, c] : connections) open.push_back(c);
  for (Connection* c : open) close_connection(c);
  close_listener();
  uv_timer_stop(&drain_timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer), nullptr);
  for (auto& tick : ticks) {
    uv_timer_stop(&tick->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick->timer), nullptr);
  }
  outbox->close();
  uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
}

Expected<std::unique_ptr<Server>> Server::create(const ServerOptions& options,
                                                 RequestHandler& handler) {
  std::unique_ptr<Server> server(new Server());
  server->loop_ = std::make_unique<Loop>();
  Loop& l = *server->loop_;
  l.options = options;
  l.handler = &handler;
  if (int rc = uv_loop_init(&l.loop); rc != 0) return uv_status("uv_loop_init", rc);
  uv_async_init(&l.loop, &l.wake,
                [](uv_async_t* async) { static_cast<Loop*>(async->data)->deliver_outbox(); });
  l.wake.data = &l;
  l.outbox = std::make_shared<Outbox>(&l.wake);
  uv_timer_init(&l.loop, &l.drain_timer);
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
      if (socket_is_live(path)) {
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
    l->options.limits = limits.requests;
  });
}

ServerStats Server::stats() const {
  std::lock_guard<std::mutex> lock(loop_->stats_mutex);
  return loop_->stats;
}

const std::string& Server::socket_path() const {
  return loop_->options.socket_path;
}

}  // namespace sparkd::api
