#include "api/client/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sparkd::api {

Expected<Client> Client::connect(const std::string& socket_path, size_t max_frame_bytes) {
  sockaddr_un address{};
  if (socket_path.empty() || socket_path.size() >= sizeof(address.sun_path)) {
    return Status(StatusCode::kInvalidArgument, "bad socket path '" + socket_path + "'");
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status(StatusCode::kUnavailable, std::string("socket: ") + strerror(errno));
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    ::close(fd);
    return Status(StatusCode::kUnavailable, "cannot connect to sparkd at " + socket_path + ": " +
                                                strerror(error) +
                                                " (is the daemon running? --socket or "
                                                "SPARKD_SOCKET choose another path)");
  }
  return Client(fd, max_frame_bytes);
}

Client::Client(int fd, size_t max_frame_bytes) : fd_(fd), decoder_(max_frame_bytes) {}

Client::Client(Client&& other) noexcept
    : fd_(other.fd_),
      decoder_(std::move(other.decoder_)),
      held_(std::move(other.held_)),
      next_id_(other.next_id_) {
  other.fd_ = -1;
}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    other.fd_ = -1;
    decoder_ = std::move(other.decoder_);
    held_ = std::move(other.held_);
    next_id_ = other.next_id_;
  }
  return *this;
}

Client::~Client() {
  close();
}

void Client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status Client::send_bytes(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(StatusCode::kUnavailable, std::string("send: ") + strerror(errno));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

Status Client::send(const v1::Request& request) {
  return send_bytes(encode_frame(request));
}

Expected<v1::Response> Client::receive(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[64 * 1024];
  for (;;) {
    SPARKD_ASSIGN_OR_RETURN(std::optional<std::string> frame, decoder_.next());
    if (frame) {
      v1::Response response;
      if (!response.ParseFromString(*frame)) {
        return Status(StatusCode::kDataLoss, "the daemon sent a frame that is not a Response");
      }
      return response;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Status(StatusCode::kDeadlineExceeded, "no response within the timeout");
    }
    pollfd pfd{fd_, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) {
      return Status(StatusCode::kUnavailable, std::string("poll: ") + strerror(errno));
    }
    if (ready <= 0) continue;
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n == 0) return Status(StatusCode::kUnavailable, "the daemon closed the connection");
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(StatusCode::kUnavailable, std::string("recv: ") + strerror(errno));
    }
    decoder_.feed(std::string_view(buffer, static_cast<size_t>(n)));
  }
}

Expected<std::vector<v1::Response>> Client::call(v1::Request request,
                                                 std::chrono::milliseconds timeout) {
  if (request.id() == 0) request.set_id(next_id());
  SPARKD_RETURN_IF_ERROR(send(request));
  std::vector<v1::Response> responses;
  // Responses held from earlier waits first.
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->id() == request.id()) {
      responses.push_back(std::move(*it));
      it = held_.erase(it);
      if (responses.back().final()) return responses;
    } else {
      ++it;
    }
  }
  for (;;) {
    SPARKD_ASSIGN_OR_RETURN(v1::Response response, receive(timeout));
    if (response.id() != request.id()) {
      held_.push_back(std::move(response));
      continue;
    }
    const bool final = response.final();
    responses.push_back(std::move(response));
    if (final) return responses;
  }
}

}  // namespace sparkd::api
