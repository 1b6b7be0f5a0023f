"""Length-prefixed framing of sparkd's Unix-socket protocol.

Every message on the socket is a u32 little-endian payload length followed by one serialized
protobuf message. The byte layout lives here, apart from the clients, so that the sync and the
asyncio client cannot disagree about it.
"""

from __future__ import annotations

import struct
from typing import List

HEADER = struct.Struct("<I")
HEADER_BYTES = HEADER.size

# The daemon's own limit is configurable (max_frame_bytes). The client refuses anything larger
# than this so that a corrupted stream (or a peer that is not sparkd) cannot make it allocate
# gigabytes before noticing.
MAX_FRAME_BYTES = 256 * 1024 * 1024


class FrameError(Exception):
    """The byte stream is not a valid sequence of frames; the connection cannot be trusted."""


def encode_frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length, ready to be written to the socket in one call."""
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameError(
            f"frame of {len(payload)} bytes exceeds the client's limit of {MAX_FRAME_BYTES} bytes"
        )
    return HEADER.pack(len(payload)) + payload


def decode_header(header: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> int:
    """Return the payload length announced by a 4-byte header, refusing absurd lengths."""
    if len(header) != HEADER_BYTES:
        raise FrameError(f"frame header must be {HEADER_BYTES} bytes, got {len(header)}")
    (payload_bytes,) = HEADER.unpack(header)
    if payload_bytes > max_frame_bytes:
        raise FrameError(
            f"peer announced a frame of {payload_bytes} bytes, above the limit of "
            f"{max_frame_bytes} bytes; is the socket really sparkd's?"
        )
    return int(payload_bytes)


class FrameDecoder:
    """Turns the arbitrary chunks that ``recv`` returns into whole frame payloads.

    A stream socket may split one frame over many reads or pack several frames into one, so the
    decoder buffers until a whole frame is there.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max_frame_bytes = max_frame_bytes

    def feed(self, data: bytes) -> List[bytes]:
        """Add received bytes; return the payloads of every frame completed by them, in order."""
        self._buffer += data
        payloads: List[bytes] = []
        offset = 0
        while len(self._buffer) - offset >= HEADER_BYTES:
            header = bytes(self._buffer[offset : offset + HEADER_BYTES])
            payload_bytes = decode_header(header, self._max_frame_bytes)
            frame_end = offset + HEADER_BYTES + payload_bytes
            if frame_end > len(self._buffer):
                break
            payloads.append(bytes(self._buffer[offset + HEADER_BYTES : frame_end]))
            offset = frame_end
        del self._buffer[:offset]
        return payloads

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete frame held back; non-zero at EOF means a truncated frame."""
        return len(self._buffer)
