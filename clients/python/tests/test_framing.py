"""The wire framing: u32 little-endian length + payload, decoded from arbitrary recv chunks."""

from __future__ import annotations

import struct
import unittest

from sparkd import sparkd_pb2 as pb
from sparkd._framing import (
    MAX_FRAME_BYTES,
    FrameDecoder,
    FrameError,
    decode_header,
    encode_frame,
)


class EncodeFrameTest(unittest.TestCase):
    def test_length_prefix_is_u32_little_endian(self) -> None:
        payload = b"\xab" * 0x0102  # 258 bytes: the two low bytes of the length differ
        frame = encode_frame(payload)
        self.assertEqual(frame[:4], b"\x02\x01\x00\x00")
        self.assertEqual(frame[4:], payload)

    def test_empty_payload_is_a_valid_frame(self) -> None:
        # A message whose fields are all default serializes to nothing; it still needs a frame.
        self.assertEqual(pb.Response().SerializeToString(), b"")
        self.assertEqual(encode_frame(b""), b"\x00\x00\x00\x00")

    def test_decode_header_refuses_absurd_lengths(self) -> None:
        with self.assertRaises(FrameError):
            decode_header(struct.pack("<I", MAX_FRAME_BYTES + 1))
        with self.assertRaises(FrameError):
            decode_header(struct.pack("<I", 100), max_frame_bytes=99)
        self.assertEqual(decode_header(struct.pack("<I", 99), max_frame_bytes=99), 99)

    def test_decode_header_refuses_short_headers(self) -> None:
        with self.assertRaises(FrameError):
            decode_header(b"\x01\x00")


class FrameDecoderTest(unittest.TestCase):
    def _frames(self) -> "list[bytes]":
        responses = []
        for request_id in (1, 2, 3):
            response = pb.Response(id=request_id, final=True)
            response.generate.text = "x" * (request_id * 50)
            responses.append(response.SerializeToString())
        return responses

    def test_one_byte_at_a_time(self) -> None:
        payloads = self._frames()
        stream = b"".join(encode_frame(payload) for payload in payloads)
        decoder = FrameDecoder()
        decoded: "list[bytes]" = []
        for index in range(len(stream)):
            decoded.extend(decoder.feed(stream[index : index + 1]))
        self.assertEqual(decoded, payloads)
        self.assertEqual(decoder.buffered_bytes, 0)

    def test_several_frames_in_one_chunk(self) -> None:
        payloads = self._frames() + [b""]
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(b"".join(encode_frame(p) for p in payloads)), payloads)

    def test_frame_split_at_every_boundary(self) -> None:
        payload = self._frames()[1]
        frame = encode_frame(payload)
        for split in range(1, len(frame)):
            decoder = FrameDecoder()
            self.assertEqual(decoder.feed(frame[:split]), [], f"split at {split}")
            self.assertEqual(decoder.buffered_bytes, split)
            self.assertEqual(decoder.feed(frame[split:]), [payload], f"split at {split}")

    def test_oversized_header_is_an_error_before_the_payload_arrives(self) -> None:
        decoder = FrameDecoder(max_frame_bytes=16)
        with self.assertRaises(FrameError):
            decoder.feed(struct.pack("<I", 17))

    def test_roundtrip_of_a_real_request(self) -> None:
        request = pb.Request(id=42)
        request.embed.model = "minilm"
        request.embed.inputs.extend(["a", "b"])
        (payload,) = FrameDecoder().feed(encode_frame(request.SerializeToString()))
        parsed = pb.Request()
        parsed.ParseFromString(payload)
        self.assertEqual(parsed, request)


if __name__ == "__main__":
    unittest.main()
