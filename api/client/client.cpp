#include "api/client/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "api/protocol/status_codes.h"

namespace sparkd::api {
namespace {

// How long a failed send waits for the daemon's reason: it is written before the close, so it
// is normally there at once.
constexpr std::chrono::milliseconds kReasonWait(2000);

}  // namespace

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
      connection_error_(std::move(other.connection_error_)),
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
    connection_error_ = std::move(other.connection_error_);
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
      const Status failed(StatusCode::kUnavailable, std::string("send: ") + strerror(errno));
      // The daemon may have closed the connection with a reason: read it before giving up.
      read_until_closed(kReasonWait);
      if (connection_error_) {
        return status_of(connection_error_->error());
      }
      return failed;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

void Client::read_until_closed(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  char buffer[64 * 1024];
  for (;;) {
    // Frames already buffered first: the reason may be among them.
    for (;;) {
      auto frame = decoder_.next();
      if (!frame || !frame->has_value()) break;
      auto response = parse_response(**frame);
      if (response) held_.push_back(std::move(response).value());
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    pollfd pfd{fd_, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) return;
    if (ready <= 0) continue;
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n == 0) return;  // closed
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // ECONNRESET: the daemon closed with our unread bytes; what it sent came first
    }
    decoder_.feed(std::string_view(buffer, static_cast<size_t>(n)));
  }
}

Expected<v1::Response> Client::parse_response(const std::string& frame) {
  v1::Response response;
  if (!response.ParseFromString(frame)) {
    return Status(StatusCode::kDataLoss, "the daemon sent a frame that is not a Response");
  }
  if (response.id() == 0 && response.has_error()) connection_error_ = response;
  return response;
}

Status Client::send(const v1::Request& request) {
  return send_bytes(encode_frame(request));
}

Expected<v1::Response> Client::receive(std::chrono::milliseconds timeout) {
  // Responses held back (by call() for other ids, or read after a failed send) come first.
  if (!held_.empty()) {
    v1::Response response = std::move(held_.front());
    held_.erase(held_.begin());
    return response;
  }
  return receive_frame(timeout);
}

Expected<v1::Response> Client::receive_frame(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[64 * 1024];
  for (;;) {
    SPARKD_ASSIGN_OR_RETURN(std::optional<std::string> frame, decoder_.next());
    if (frame) return parse_response(*frame);
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
  if (Status sent = send(request); !sent.is_ok()) {
    if (connection_error_) return std::vector<v1::Response>{*connection_error_};
    return sent;
  }
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
    auto received = receive_frame(timeout);
    if (!received) {
      if (connection_error_) return std::vector<v1::Response>{*connection_error_};
      return received.status();
    }
    v1::Response response = std::move(received).value();
    // The daemon's reason for closing the connection answers this call too.
    if (response.id() == 0 && response.has_error()) return std::vector<v1::Response>{response};
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
