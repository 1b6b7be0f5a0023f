// A connection's byte stream, arbitrary: the first byte picks the size of the reads the
// server would make, the rest goes through a FrameDecoder in reads of that size, and every
// frame through parse_request and validate_request, as the server does. Broken promises
// abort: the decoder holds more than one frame after a drain, an error of the wrong code,
// or a request that validates but does not survive serialize -> parse -> validate unchanged;
// an error message that is not valid UTF-8; an id recovered from a payload that parses which
// is not the id protobuf reads.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "api/protocol/frame.h"
#include "api/protocol/request_validation.h"
#include "api/protocol/status_codes.h"
#include "api/sparkd.pb.h"

namespace {

using sparkd::Status;
using sparkd::StatusCode;
using sparkd::api::FrameDecoder;
using sparkd::api::kFrameHeaderBytes;

constexpr size_t kMaxFrameBytes = 64 * 1024;

void check_refusal(const Status& status) {
  if (status.is_ok() || status.code() != StatusCode::kInvalidArgument) std::abort();
  if (status.message().empty()) std::abort();
  // What the server sends back must carry the same code.
  const sparkd::v1::Response response = sparkd::api::error_response(7, status);
  if (!response.final() || response.id() != 7) std::abort();
  if (sparkd::api::from_proto_code(response.error().code()) != status.code()) std::abort();
  if (response.error().message() != status.message()) std::abort();
  // The message quotes what the client sent: it must still be valid UTF-8, or the client
  // could not parse the response that carries it.
  sparkd::v1::Response received;
  if (!received.ParseFromString(response.SerializeAsString())) std::abort();
}

void check_payload(const std::string& payload, const sparkd::api::RequestLimits& limits) {
  if (payload.size() > kMaxFrameBytes) std::abort();
  sparkd::Expected<sparkd::v1::Request> parsed = sparkd::api::parse_request(payload);
  const uint64_t recovered_id = sparkd::api::recover_request_id(payload);
  if (!parsed.has_value()) {
    check_refusal(parsed.status());
    return;
  }
  // What the server echoes for a refused frame is the id protobuf reads, when it parses.
  if (recovered_id != parsed->id()) std::abort();
  const Status status = sparkd::api::validate_request(*parsed, limits);
  if (!status.is_ok()) {
    check_refusal(status);
    return;
  }
  // A request that validates has every float finite, so exact comparison is meaningful.
  const std::string reserialized = parsed->SerializeAsString();
  sparkd::Expected<sparkd::v1::Request> reparsed = sparkd::api::parse_request(reserialized);
  if (!reparsed.has_value()) std::abort();
  if (!google::protobuf::util::MessageDifferencer::Equals(*parsed, *reparsed)) std::abort();
  if (reparsed->SerializeAsString() != reserialized) std::abort();
  if (!sparkd::api::validate_request(*reparsed, limits).is_ok()) std::abort();
  // And through a frame, as a client library would send it back.
  FrameDecoder echo(kMaxFrameBytes);
  echo.feed(sparkd::api::encode_frame(*reparsed));
  auto echoed = echo.next();
  if (!echoed.has_value() || !echoed->has_value() || **echoed != reserialized) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // libprotobuf logs a line for each string field with invalid UTF-8; parse_request already
  // reports it, and the noise would slow the fuzzer. This is the harness's process, not the
  // library's: the daemon keeps protobuf's logging as it is.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // 1 .. 65026 bytes per read: from byte-at-a-time to a whole max-size frame per read.
  const size_t read_bytes = 1 + static_cast<size_t>(data[0]) * data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  const sparkd::api::RequestLimits limits;  // the defaults, as the daemon's config has them
  FrameDecoder decoder(kMaxFrameBytes);
  for (size_t offset = 0; offset < stream.size(); offset += read_bytes) {
    const std::string_view read = stream.substr(offset, read_bytes);
    decoder.feed(read);
    // Before the drain: at most this read on top of one incomplete frame.
    if (decoder.buffered_bytes() > read.size() + kFrameHeaderBytes + kMaxFrameBytes) std::abort();
    while (true) {
      auto next = decoder.next();
      if (!next.has_value()) {
        if (!decoder.failed()) std::abort();
        if (next.status().code() != StatusCode::kResourceExhausted) std::abort();
        if (decoder.buffered_bytes() != 0) std::abort();
        // The server closes the connection here; the decoder must say the same again.
        auto again = decoder.next();
        if (again.has_value() || again.status().message() != next.status().message()) {
          std::abort();
        }
        return 0;
      }
      if (!next->has_value()) break;
      check_payload(**next, limits);
    }
    if (decoder.buffered_bytes() > kFrameHeaderBytes + kMaxFrameBytes) std::abort();
  }
  return 0;
}
