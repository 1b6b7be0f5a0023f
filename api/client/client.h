// A blocking C++ client for sparkd's socket: what sparkctl and the integration tests use.
// One connection, one thread: send requests, read responses (of any id, in arrival order).
//
// When the daemon closes the connection for a reason of its own (too many connections, a
// frame over its max_frame_bytes, a stalled frame, idleness), it first sends that reason as an
// id-0 error response. The client keeps it (connection_error()), and call() answers with it,
// so a caller learns the daemon's reason rather than "broken pipe".
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/protocol/frame.h"
#include "api/sparkd.pb.h"
#include "common/status.h"

namespace sparkd::api {

class Client {
 public:
  // UNAVAILABLE naming the path when nothing listens there.
  static Expected<Client> connect(const std::string& socket_path,
                                  size_t max_frame_bytes = 256u << 20);
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  // A failed send (the daemon closed the connection) reads what the daemon sent before it
  // closed, so that connection_error() can say why.
  Status send(const v1::Request& request);
  // Writes raw bytes (tests of malformed input); as send() when it fails.
  Status send_bytes(std::string_view bytes);
  // The next response of any id (those held back by call() first); DEADLINE_EXCEEDED after
  // `timeout`, UNAVAILABLE when the daemon closed the connection.
  Expected<v1::Response> receive(std::chrono::milliseconds timeout = std::chrono::minutes(10));
  // Sends `request` (its id is set to the next free id unless it has one) and collects every
  // response with its id up to the final one. Responses of other ids are kept for later
  // receive() calls. When the daemon closes the connection with a reason, that id-0 error
  // response is the answer.
  Expected<std::vector<v1::Response>> call(
      v1::Request request, std::chrono::milliseconds timeout = std::chrono::minutes(10));
  uint64_t next_id() { return next_id_++; }
  void close();

  // The daemon's id-0 error response about this connection, once one has been received.
  const std::optional<v1::Response>& connection_error() const { return connection_error_; }

 private:
  Client(int fd, size_t max_frame_bytes);
  // Reads (and holds) what the daemon sent until it closes the connection, for at most
  // `limit`: after a failed send, its reason is in there.
  void read_until_closed(std::chrono::milliseconds limit);
  // Takes one parsed frame: id-0 errors are remembered as the connection's error.
  Expected<v1::Response> parse_response(const std::string& frame);
  // The next response read from the socket (not from held_).
  Expected<v1::Response> receive_frame(std::chrono::milliseconds timeout);
  int fd_ = -1;
  FrameDecoder decoder_;
  std::vector<v1::Response> held_;  // received while waiting for another id
  std::optional<v1::Response> connection_error_;
  uint64_t next_id_ = 1;
};

}  // namespace sparkd::api
