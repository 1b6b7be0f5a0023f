// Wire framing: frames survive any split of the byte stream, several frames per read, empty
// frames, and the max_frame_bytes limit is enforced as soon as a length prefix is complete,
// so what the decoder holds stays bounded whatever the peer sends.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/protocol/frame.h"
#include "api/sparkd.pb.h"

namespace {

using sparkd::StatusCode;
using sparkd::api::append_frame;
using sparkd::api::encode_frame;
using sparkd::api::FrameDecoder;
using sparkd::api::kFrameHeaderBytes;

// A frame built by hand (not by encode_frame), so the tests pin the wire format itself.
std::string raw_frame(uint32_t declared_bytes, const std::string& payload) {
  std::string frame;
  for (int i = 0; i < 4; ++i)
    frame.push_back(static_cast<char>((declared_bytes >> (8 * i)) & 0xFF));
  return frame + payload;
}

std::string raw_frame(const std::string& payload) {
  return raw_frame(static_cast<uint32_t>(payload.size()), payload);
}

// Calls next() until it returns nullopt; fails the test on an error.
std::vector<std::string> drain(FrameDecoder& decoder) {
  std::vector<std::string> payloads;
  while (true) {
    auto next = decoder.next();
    REQUIRE(next.has_value());
    if (!next->has_value()) return payloads;
    payloads.push_back(**next);
  }
}

sparkd::v1::Request sample_request() {
  sparkd::v1::Request request;
  request.set_id(42);
  request.mutable_embed()->set_model("minilm");
  request.mutable_embed()->add_inputs("hello");
  request.mutable_embed()->add_inputs("world");
  return request;
}

}  // namespace

TEST_CASE("encode_frame writes a little-endian length then the message", "[protocol]") {
  const sparkd::v1::Request request = sample_request();
  const std::string payload = request.SerializeAsString();
  REQUIRE(payload.size() > 0);
  const std::string frame = encode_frame(request);
  CHECK(frame == raw_frame(payload));
  CHECK(frame.size() == kFrameHeaderBytes + payload.size());

  // 300 bytes needs both low header bytes: 300 = 0x012C.
  sparkd::v1::Request big;
  big.mutable_tokenize()->set_model("m");
  big.mutable_tokenize()->set_text(std::string(300, 'x'));
  const std::string big_frame = encode_frame(big);
  const size_t big_payload_bytes = big.ByteSizeLong();
  CHECK(static_cast<unsigned char>(big_frame[0]) == (big_payload_bytes & 0xFF));
  CHECK(static_cast<unsigned char>(big_frame[1]) == ((big_payload_bytes >> 8) & 0xFF));
  CHECK(big_frame[2] == 0);
  CHECK(big_frame[3] == 0);
}

TEST_CASE("append_frame adds frames after what the buffer holds", "[protocol]") {
  sparkd::v1::Response first;
  first.set_id(1);
  first.set_final(true);
  sparkd::v1::Response second;
  second.set_id(2);
  std::string out = "already queued";
  append_frame(first, out);
  append_frame(second, out);
  CHECK(out == "already queued" + raw_frame(first.SerializeAsString()) +
                   raw_frame(second.SerializeAsString()));

  // An empty message is a zero-length frame.
  std::string empty_out;
  append_frame(sparkd::v1::Response(), empty_out);
  CHECK(empty_out == std::string(4, '\0'));
}

TEST_CASE("frames round-trip through encode_frame and FrameDecoder", "[protocol]") {
  const sparkd::v1::Request request = sample_request();
  FrameDecoder decoder(1 << 16);
  decoder.feed(encode_frame(request));
  const std::vector<std::string> payloads = drain(decoder);
  REQUIRE(payloads.size() == 1);
  sparkd::v1::Request decoded;
  REQUIRE(decoded.ParseFromString(payloads[0]));
  CHECK(decoded.SerializeAsString() == request.SerializeAsString());
  CHECK(decoder.buffered_bytes() == 0);
}

TEST_CASE("FrameDecoder returns the same frames wherever the stream is split", "[protocol]") {
  const std::vector<std::string> payloads = {"first payload", "", std::string(70, 'z'), "x"};
  std::string stream;
  for (const std::string& payload : payloads) stream += raw_frame(payload);

  SECTION("split in two at every byte position") {
    for (size_t split = 0; split <= stream.size(); ++split) {
      INFO("split at " << split);
      FrameDecoder decoder(100);
      decoder.feed(std::string_view(stream).substr(0, split));
      std::vector<std::string> received = drain(decoder);
      decoder.feed(std::string_view(stream).substr(split));
      for (std::string& payload : drain(decoder)) received.push_back(std::move(payload));
      CHECK(received == payloads);
      CHECK(decoder.buffered_bytes() == 0);
    }
  }
  SECTION("one byte at a time") {
    FrameDecoder decoder(100);
    std::vector<std::string> received;
    for (char byte : stream) {
      decoder.feed(std::string_view(&byte, 1));
      for (std::string& payload : drain(decoder)) received.push_back(std::move(payload));
    }
    CHECK(received == payloads);
  }
  SECTION("all frames in one feed") {
    FrameDecoder decoder(100);
    decoder.feed(stream);
    CHECK(drain(decoder) == payloads);
    CHECK(decoder.buffered_bytes() == 0);
  }
  SECTION("several feeds before draining") {
    FrameDecoder decoder(100);
    decoder.feed(std::string_view(stream).substr(0, 7));
    decoder.feed(std::string_view(stream).substr(7, 30));
    decoder.feed(std::string_view(stream).substr(37));
    CHECK(drain(decoder) == payloads);
  }
}

TEST_CASE("FrameDecoder needs the whole header and payload", "[protocol]") {
  FrameDecoder decoder(100);
  CHECK(drain(decoder).empty());
  decoder.feed(std::string("\x05\x00\x00", 3));
  CHECK(drain(decoder).empty());
  decoder.feed(
      std::string("\x00"
                  "abcd",
                  5));
  CHECK(drain(decoder).empty());
  CHECK(decoder.buffered_bytes() == 8);
  decoder.feed("e");
  CHECK(drain(decoder) == std::vector<std::string>{"abcde"});
}

TEST_CASE("a zero-length frame is an empty payload, not 'need more bytes'", "[protocol]") {
  FrameDecoder decoder(0);
  decoder.feed(raw_frame(""));
  auto next = decoder.next();
  REQUIRE(next.has_value());
  REQUIRE(next->has_value());
  CHECK((*next)->empty());
  auto after = decoder.next();
  REQUIRE(after.has_value());
  CHECK_FALSE(after->has_value());
}

TEST_CASE("a frame of exactly max_frame_bytes is accepted, one more byte is refused",
          "[protocol]") {
  constexpr size_t kMaxBytes = 1000;
  SECTION("exactly max") {
    FrameDecoder decoder(kMaxBytes);
    const std::string payload(kMaxBytes, 'p');
    decoder.feed(raw_frame(payload));
    CHECK(decoder.buffered_bytes() == kFrameHeaderBytes + kMaxBytes);
    CHECK(drain(decoder) == std::vector<std::string>{payload});
    CHECK_FALSE(decoder.failed());
  }
  SECTION("max + 1") {
    FrameDecoder decoder(kMaxBytes);
    decoder.feed(raw_frame(std::string(kMaxBytes + 1, 'p')));
    CHECK(decoder.buffered_bytes() == 0);
    auto next = decoder.next();
    REQUIRE_FALSE(next.has_value());
    CHECK(next.status().code() == StatusCode::kResourceExhausted);
    CHECK(next.status().message() == "frame of 1001 bytes exceeds max_frame_bytes 1000");
    CHECK(decoder.failed());
  }
}

TEST_CASE("after a refused length the decoder stays failed and keeps nothing", "[protocol]") {
  constexpr size_t kMaxBytes = 64 * 1024;
  FrameDecoder decoder(kMaxBytes);
  // A good frame first: it is still delivered, then the refusal.
  decoder.feed(raw_frame("before") + raw_frame(0xFFFFFFFFu, "") + "trailing junk");
  CHECK(decoder.buffered_bytes() == raw_frame("before").size());
  auto good = decoder.next();
  REQUIRE(good.has_value());
  REQUIRE(good->has_value());
  CHECK(**good == "before");
  CHECK_FALSE(decoder.failed());

  const std::string expected = "frame of 4294967295 bytes exceeds max_frame_bytes 65536";
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto next = decoder.next();
    REQUIRE_FALSE(next.has_value());
    CHECK(next.status().code() == StatusCode::kResourceExhausted);
    CHECK(next.status().message() == expected);
    CHECK(decoder.failed());
  }
  decoder.feed(raw_frame("after"));
  CHECK(decoder.buffered_bytes() == 0);
  auto still_failed = decoder.next();
  REQUIRE_FALSE(still_failed.has_value());
  CHECK(still_failed.status().message() == expected);
}

TEST_CASE("an over-limit length is refused as soon as its header is complete", "[protocol]") {
  constexpr size_t kMaxBytes = 4096;
  FrameDecoder decoder(kMaxBytes);
  const std::string header = raw_frame(1u << 30, "");
  for (size_t i = 0; i + 1 < header.size(); ++i) {
    decoder.feed(header.substr(i, 1));
    CHECK(decoder.buffered_bytes() == i + 1);
    CHECK(drain(decoder).empty());
  }
  decoder.feed(header.substr(3, 1));
  CHECK(decoder.buffered_bytes() == 0);
  // The peer keeps sending its "1 GiB frame" in 64 KiB reads: none of it is kept.
  const std::string chunk(64 * 1024, 'j');
  for (int i = 0; i < 32; ++i) {
    decoder.feed(chunk);
    CHECK(decoder.buffered_bytes() == 0);
    CHECK_FALSE(decoder.next().has_value());
  }
}

TEST_CASE("a large allowed frame fed in pieces buffers no more than header + max", "[protocol]") {
  constexpr size_t kMaxBytes = 256 * 1024;
  FrameDecoder decoder(kMaxBytes);
  std::string payload(kMaxBytes, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + 3);
  // The next frame's first bytes arrive in the same read as the end of this one.
  const std::string stream = raw_frame(payload) + raw_frame("tail");
  constexpr size_t kReadBytes = 5000;  // not a divisor of the frame size
  std::vector<std::string> received;
  size_t max_buffered_after_drain = 0;
  for (size_t offset = 0; offset < stream.size(); offset += kReadBytes) {
    decoder.feed(std::string_view(stream).substr(offset, kReadBytes));
    for (std::string& frame_payload : drain(decoder)) received.push_back(std::move(frame_payload));
    max_buffered_after_drain = std::max(max_buffered_after_drain, decoder.buffered_bytes());
    CHECK(decoder.buffered_bytes() <= kFrameHeaderBytes + kMaxBytes);
  }
  // It did hold the incomplete frame (all but the last read of it) between reads.
  CHECK(max_buffered_after_drain == 52 * kReadBytes);
  REQUIRE(received.size() == 2);
  CHECK(received[0] == payload);
  CHECK(received[1] == "tail");
  CHECK(decoder.buffered_bytes() == 0);
}

TEST_CASE("many small frames in one read are drained down to the incomplete one", "[protocol]") {
  constexpr size_t kMaxBytes = 16;
  FrameDecoder decoder(kMaxBytes);
  std::string stream;
  for (int i = 0; i < 1000; ++i) stream += raw_frame("frame " + std::to_string(i % 10));
  stream += raw_frame("incomplete!").substr(0, 9);
  decoder.feed(stream);
  const std::vector<std::string> received = drain(decoder);
  CHECK(received.size() == 1000);
  CHECK(received.back() == "frame 9");
  CHECK(decoder.buffered_bytes() == 9);
  CHECK(decoder.buffered_bytes() <= kFrameHeaderBytes + kMaxBytes);
}
