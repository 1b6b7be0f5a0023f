// sparkd's Unix-socket server: one libuv loop thread that accepts connections, decodes
// frames, validates requests and hands them to a RequestHandler, then writes the responses
// the handler sends back from any thread (through Call, woken with uv_async_send).
//
// What it enforces, each with an error a client can act on:
//  - max_frame_bytes: a larger length prefix gets an error frame, then the connection closes
//    (framing is lost after it);
//  - max_connections: the connection over the limit gets an error frame and is closed;
//  - frame_timeout: a frame still incomplete that long after its first byte closes the
//    connection (a stalled peer must not hold a connection slot for ever);
//  - idle_timeout: a connection with nothing in flight and nothing received for that long is
//    closed;
//  - max_inflight_per_connection and unique ids among a connection's requests in flight (a
//    duplicate id is refused with a non-final ALREADY_EXISTS error: the original goes on);
//  - a request that does not parse or validate gets its error (with its id when one can be
//    read), and the connection goes on;
//  - backpressure: while a connection has more than max_write_buffer_bytes of responses not
//    yet taken by the peer, the server stops reading its requests (a slow reader cannot make
//    the daemon queue unbounded work); it resumes below half of that.
// Errors about the connection itself go out with id 0, just before the connection closes; its
// pending responses are written before it closes. A disconnect cancels every request the
// connection had in flight (Call::on_cancel hooks), so their KV is freed. Cancel requests are
// answered by the server itself. While draining, Health, Status, ListModels and Cancel are
// still answered; other requests get UNAVAILABLE; at the drain timeout every request still in
// flight gets a final CANCELLED response before its connection closes.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/protocol/request_validation.h"
#include "api/sparkd.pb.h"
#include "common/status.h"

struct uv_loop_s;  // libuv's uv_loop_t

namespace sparkd::api {

struct ServerOptions {
  std::string socket_path;  // bound unless listen_fd is given
  uint32_t socket_mode = 0660;
  std::optional<gid_t> socket_group;  // chown the socket to it
  int listen_fd = -1;                 // an already-listening socket (systemd activation)
  size_t max_frame_bytes = 16u << 20;
  uint32_t max_connections = 256;
  uint32_t max_inflight_per_connection = 64;
  size_t max_write_buffer_bytes = 8u << 20;
  std::chrono::milliseconds frame_timeout{10'000};  // 0 = no limit
  std::chrono::milliseconds idle_timeout{300'000};  // 0 = no limit
  RequestLimits limits;
};

// Whether something accepts connections on the Unix socket `path` (a live server, not a stale
// socket file).
bool unix_socket_is_live(const std::string& path);

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (SO_PEERGROUPS)
  bool in_group(gid_t group) const;
};

class Outbox;  // the server's queue of responses to write (defined in server.cpp)
class RequestHandler;

// What the server reports of every request it answers, once, when its final response is sent:
// what the daemon's request counters count.
struct AnsweredRequest {
  std::string_view kind;   // the request's kind ("embed", "health", ...); "unknown" unparsed
  std::string_view model;  // the model it named; "" when it names none
  StatusCode code = StatusCode::kOk;
  std::string_view api = "socket";  // the front end it came through: "socket" | "http"
};

// Where a call's responses go: frames on its socket connection, or an HTTP exchange's bytes.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // From Call::send, under the call's send lock: one at a time and in order, from any thread.
  // `response` carries the call's id; the last one is final.
  virtual void deliver(const v1::Response& response) = 0;
};

// One request in flight. The handler keeps it (e.g. in a runner callback) and answers through
// it from any thread.
class Call {
 public:
  // `handler` (told of the final response) must outlive the call. `api` names the front end.
  Call(const v1::Request& request, PeerCredentials peer, std::shared_ptr<ResponseSink> sink,
       RequestHandler* handler, std::string_view api = "socket");

  uint64_t id() const { return request_id_; }
  const PeerCredentials& peer() const { return peer_; }
  std::chrono::steady_clock::time_point received_at() const { return received_at_; }

  // Thread-safe. Sends `response` with this call's id; a response with final = true ends the
  // call (the handler hears of it), and anything sent after it is dropped. Sends after the
  // client left are dropped.
  void send(v1::Response response);
  // Thread-safe: a final error response.
  void fail(const Status& status);
  // Thread-safe. `hook` runs once when the client cancels the request or disconnects (on the
  // loop thread), or right away if that already happened.
  void on_cancel(std::function<void()> hook);
  bool cancelled() const { return cancelled_.load(); }
  bool finished() const { return finished_.load(); }

  // Server side: marks the call cancelled and runs its hook.
  void cancel();

 private:
  uint64_t request_id_;
  std::string kind_, model_;  // for AnsweredRequest
  std::string_view api_;
  PeerCredentials peer_;
  std::shared_ptr<ResponseSink> sink_;
  RequestHandler* handler_;
  std::chrono::steady_clock::time_point received_at_;
  std::mutex mutex_;
  std::function<void()> cancel_hook_;  // guarded by mutex_
  // Held while a response is queued: whoever ends the call first has its final response in
  // the outbox before anyone else can look (the drain relies on it).
  std::mutex send_mutex_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> finished_{false};  // written under send_mutex_
};

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // On the loop thread, for every valid request except Cancel. Must not block: post work to
  // a runner or a worker thread and answer through `call`.
  virtual void handle(const v1::Request& request, std::shared_ptr<Call> call) = 0;
  // Once per request answered, from the thread that sends its final response (any thread),
  // just before it is sent; including the requests the server refused itself. Must be
  // thread-safe, must not block and must not call back into the Call.
  virtual void answered(const AnsweredRequest& /*request*/) {}
};

struct ServerStats {
  uint32_t connections = 0;
  uint32_t requests_in_flight = 0;
  uint64_t connections_total = 0;
  uint64_t requests_total = 0;
  uint64_t rejected_frames_total = 0;  // unparsable, invalid or refused requests
  // Connections the server closed for a reason of its own.
  uint64_t refused_connections_total = 0;  // over max_connections
  uint64_t oversized_frames_total = 0;     // a length prefix over max_frame_bytes
  uint64_t frame_timeouts_total = 0;       // a frame not completed within frame_timeout
  uint64_t idle_closes_total = 0;          // idle for idle_timeout
  // HTTP (added in by the daemon when it serves HTTP): requests not received whole in time.
  uint64_t request_timeouts_total = 0;
};

// Another front end on the server's loop (the HTTP server): it drains and finishes with the
// server. All on the loop thread.
class LoopFrontend {
 public:
  virtual ~LoopFrontend() = default;
  // Stop accepting connections; new requests get UNAVAILABLE. Requests in flight go on.
  virtual void begin_drain() = 0;
  virtual uint32_t requests_in_flight() const = 0;
  // The drain is over: answer what is still in flight with `cut_off`, then close every handle
  // (connections once their last bytes are written, or after a grace period).
  virtual void finish(const Status& cut_off) = 0;
};

class Server {
 public:
  // Binds (or adopts) the socket. Errors: the path is in use by a live server, bind/chmod/
  // chown failures, a listen_fd that is not a listening socket.
  static Expected<std::unique_ptr<Server>> create(const ServerOptions& options,
                                                  RequestHandler& handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Runs the loop on the calling thread until shutdown() has finished.
  void run();
  // Thread-safe. Stops accepting connections and new requests (they get UNAVAILABLE), waits
  // up to `drain_timeout` for the requests in flight to finish, then closes every connection
  // and makes run() return.
  void shutdown(std::chrono::milliseconds drain_timeout);
  // Thread-safe: runs `task` on the loop thread.
  void post(std::function<void()> task);
  // post() as a function that may outlive the server (tasks are dropped once it has finished).
  std::function<void(std::function<void()>)> poster();
  // Runs `tick` on the loop thread every `interval` (watchdog pings prove the loop is alive).
  // Call before run().
  void every(std::chrono::milliseconds interval, std::function<void()> tick);

  // Thread-safe (config reload): the limits from now on. Frame size applies to new
  // connections; the others at once. The socket itself is not rebound.
  struct Limits {
    size_t max_frame_bytes = 0;
    uint32_t max_connections = 0;
    uint32_t max_inflight_per_connection = 0;
    size_t max_write_buffer_bytes = 0;
    std::chrono::milliseconds frame_timeout{0};
    std::chrono::milliseconds idle_timeout{0};
    RequestLimits requests;
  };
  void set_limits(const Limits& limits);

  ServerStats stats() const;
  const std::string& socket_path() const;

  // The libuv loop run() runs, for front ends that share it; attach() them before run().
  uv_loop_s* uv_loop();
  void attach(LoopFrontend* frontend);

  struct Loop;  // libuv state (defined in server.cpp)

 private:
  Server() = default;
  std::unique_ptr<Loop> loop_;
};

}  // namespace sparkd::api
