// A blocking C++ client for sparkd's socket: what sparkctl and the integration tests use.
// One connection, one thread: send requests, read responses (of any id, in arrival order).
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

  Status send(const v1::Request& request);
  // Writes raw bytes (tests of malformed input).
  Status send_bytes(std::string_view bytes);
  // The next response of any id; DEADLINE_EXCEEDED after `timeout`, UNAVAILABLE when the
  // daemon closed the connection.
  Expected<v1::Response> receive(std::chrono::milliseconds timeout = std::chrono::minutes(10));
  // Sends `request` (its id is set to the next free id unless it has one) and collects every
  // response with its id up to the final one. Responses of other ids are kept for later
  // receive() calls.
  Expected<std::vector<v1::Response>> call(
      v1::Request request, std::chrono::milliseconds timeout = std::chrono::minutes(10));
  uint64_t next_id() { return next_id_++; }
  void close();

 private:
  Client(int fd, size_t max_frame_bytes);
  int fd_ = -1;
  FrameDecoder decoder_;
  std::vector<v1::Response> held_;  // received while waiting for another id
  uint64_t next_id_ = 1;
};

}  // namespace sparkd::api
