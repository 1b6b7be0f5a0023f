#include "api/protocol/frame.h"

#include <cstdio>
#include <cstdlib>
#include <limits>

namespace sparkd::api {
namespace {

void write_length_le(uint32_t length, char* header) {
  for (size_t i = 0; i < kFrameHeaderBytes; ++i) {
    header[i] = static_cast<char>((length >> (8 * i)) & 0xFFu);
  }
}

// Capacity a connection's buffer may keep between frames; above it, a drained buffer is shrunk.
constexpr size_t kKeepCapacityBytes = 256 * 1024;

uint32_t read_length_le(const char* header) {
  uint32_t length = 0;
  for (size_t i = 0; i < kFrameHeaderBytes; ++i) {
    length |= static_cast<uint32_t>(static_cast<unsigned char>(header[i])) << (8 * i);
  }
  return length;
}

}  // namespace

std::string encode_frame(const google::protobuf::MessageLite& message) {
  std::string frame;
  append_frame(message, frame);
  return frame;
}

void append_frame(const google::protobuf::MessageLite& message, std::string& out) {
  const size_t payload_bytes = message.ByteSizeLong();
  // protobuf refuses to serialize 2 GiB or more; the daemon's messages are bounded by its
  // request limits far below that, so reaching it is a bug, not a peer's doing.
  if (payload_bytes > static_cast<size_t>(std::numeric_limits<int>::max())) {
    std::fprintf(stderr, "sparkd: cannot frame a %s of %zu bytes (protobuf's limit is 2 GiB)\n",
                 message.GetTypeName().c_str(), payload_bytes);
    std::abort();
  }
  const size_t frame_start = out.size();
  out.resize(frame_start + kFrameHeaderBytes + payload_bytes);
  write_length_le(static_cast<uint32_t>(payload_bytes), out.data() + frame_start);
  auto* payload_start = reinterpret_cast<uint8_t*>(out.data() + frame_start + kFrameHeaderBytes);
  // ByteSizeLong() above cached the sizes this relies on.
  uint8_t* payload_end = message.SerializeWithCachedSizesToArray(payload_start);
  if (payload_end != payload_start + payload_bytes) {
    std::fprintf(stderr, "sparkd: %s changed while it was being framed\n",
                 message.GetTypeName().c_str());
    std::abort();
  }
}

FrameDecoder::FrameDecoder(size_t max_frame_bytes) : max_frame_bytes_(max_frame_bytes) {}

void FrameDecoder::feed(std::string_view bytes) {
  if (failed_ || length_refused_) return;
  // Drop what next() has already returned, so the buffer does not grow with the stream.
  if (read_offset_ > 0) {
    buffer_.erase(0, read_offset_);
    scan_offset_ -= read_offset_;
    read_offset_ = 0;
  }
  buffer_.append(bytes);
  scan_frames();
}

void FrameDecoder::scan_frames() {
  while (buffer_.size() - scan_offset_ >= kFrameHeaderBytes) {
    const uint32_t payload_bytes = read_length_le(buffer_.data() + scan_offset_);
    if (payload_bytes > max_frame_bytes_) {
      refusal_ = Status(StatusCode::kResourceExhausted,
                        "frame of " + std::to_string(payload_bytes) +
                            " bytes exceeds max_frame_bytes " + std::to_string(max_frame_bytes_));
      length_refused_ = true;
      // The frames before it are still returned; nothing from the refused one on is kept.
      buffer_.resize(scan_offset_);
      return;
    }
    if (buffer_.size() - scan_offset_ - kFrameHeaderBytes < payload_bytes) return;
    scan_offset_ += kFrameHeaderBytes + payload_bytes;
  }
}

Expected<std::optional<std::string>> FrameDecoder::next() {
  if (failed_) return refusal_;
  if (read_offset_ < scan_offset_) {
    const uint32_t payload_bytes = read_length_le(buffer_.data() + read_offset_);
    std::string payload = buffer_.substr(read_offset_ + kFrameHeaderBytes, payload_bytes);
    read_offset_ += kFrameHeaderBytes + payload_bytes;
    return std::optional<std::string>(std::move(payload));
  }
  if (length_refused_) {
    failed_ = true;
    buffer_.clear();
    buffer_.shrink_to_fit();
    read_offset_ = 0;
    scan_offset_ = 0;
    return refusal_;
  }
  // Only an incomplete frame is left: keep just its bytes.
  buffer_.erase(0, read_offset_);
  scan_offset_ -= read_offset_;
  read_offset_ = 0;
  // One large frame must not leave its capacity behind on an idle connection.
  if (buffer_.capacity() > kKeepCapacityBytes && buffer_.size() < buffer_.capacity() / 4) {
    buffer_.shrink_to_fit();
  }
  return std::optional<std::string>();
}

}  // namespace sparkd::api
