// Wire framing of sparkd's Unix socket: each frame is a u32 little-endian payload length
// followed by that many bytes of one protobuf message (sparkd.v1.Request from clients,
// sparkd.v1.Response from the daemon).
#pragma once

#include <google/protobuf/message_lite.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace sparkd::api {

inline constexpr size_t kFrameHeaderBytes = 4;

// Header + serialized bytes of `message`. Aborts when the message is too large for protobuf to
// serialize (2 GiB), which no bounded request or response comes near.
std::string encode_frame(const google::protobuf::MessageLite& message);
// Appends a frame for `message` to `out`, serializing straight into `out` (no extra copy of
// the payload), so a connection's write buffer can collect several frames.
void append_frame(const google::protobuf::MessageLite& message, std::string& out);

// Incremental decoder for one connection's byte stream.
//
// Memory: the decoder holds the complete frames not yet taken by next() plus at most one
// incomplete frame, which is never more than kFrameHeaderBytes + max_frame_bytes. A length
// prefix above max_frame_bytes is refused as soon as its 4 bytes have arrived, and nothing
// after it is kept. A caller that reads chunks of R bytes and calls next() until it returns
// std::nullopt after each feed() therefore holds at most R + kFrameHeaderBytes +
// max_frame_bytes, whatever the peer sends; after that drain, buffered_bytes() is at most
// kFrameHeaderBytes + max_frame_bytes. Space for a frame grows only as its bytes arrive, so a
// peer cannot make the daemon allocate a large frame by sending a large header alone.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_frame_bytes);

  // Appends bytes received from the socket. Once a refused length prefix has been seen, the
  // bytes are dropped: the connection is going to be closed.
  void feed(std::string_view bytes);

  // The next complete payload; std::nullopt when more bytes are needed; or, once every frame
  // before it has been returned, RESOURCE_EXHAUSTED for a length prefix above max_frame_bytes
  // ("frame of N bytes exceeds max_frame_bytes M"). After that error the decoder stays failed
  // and every further call returns the same error: close the connection.
  Expected<std::optional<std::string>> next();

  // Bytes held now (complete frames not yet returned and the incomplete one).
  size_t buffered_bytes() const { return buffer_.size(); }
  bool failed() const { return failed_; }
  size_t max_frame_bytes() const { return max_frame_bytes_; }

 private:
  // Walks the length prefixes from scan_offset_ over every complete frame, and refuses an
  // over-limit prefix as soon as it is complete.
  void scan_frames();

  size_t max_frame_bytes_;
  std::string buffer_;
  size_t read_offset_ = 0;       // start of the frame next() returns next
  size_t scan_offset_ = 0;       // start of the first frame not known to be complete
  bool length_refused_ = false;  // the prefix at scan_offset_ exceeds max_frame_bytes_
  bool failed_ = false;          // next() has returned refusal_
  Status refusal_;
};

}  // namespace sparkd::api
