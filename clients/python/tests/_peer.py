"""A scripted stand-in for the daemon: a real Unix-socket server the tests drive by hand.

Tests play the daemon's side explicitly (read a Request, write crafted Response bytes), so they
can produce what a well-behaved daemon rarely does on cue: responses out of order, frames split
across writes, garbage, and connections dropped mid-call. Its framing is written independently
of sparkd._framing so that a framing bug in the client cannot be mirrored here and go unseen.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
import tempfile
import threading
import time
from typing import List, Optional

from sparkd import sparkd_pb2 as pb

# Generous: only reached when the client under test misbehaves, and then the test must fail
# rather than hang.
PEER_TIMEOUT_S = 10.0


class PeerConnection:
    """The daemon's end of one accepted client connection."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.conn.settimeout(PEER_TIMEOUT_S)

    def _recv_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.conn.recv(size - len(data))
            if not chunk:
                raise EOFError(f"client closed the connection after {len(data)} of {size} bytes")
            data += chunk
        return data

    def recv_request(self) -> pb.Request:
        (length,) = struct.unpack("<I", self._recv_exactly(4))
        request = pb.Request()
        request.ParseFromString(self._recv_exactly(length))
        return request

    def recv_requests(self, count: int) -> List[pb.Request]:
        return [self.recv_request() for _ in range(count)]

    def recv_frame_length(self) -> int:
        """Read only a frame's header, as the daemon does before refusing an oversized frame."""
        (length,) = struct.unpack("<I", self._recv_exactly(4))
        return int(length)

    @staticmethod
    def frame(response: pb.Response) -> bytes:
        payload = response.SerializeToString()
        return struct.pack("<I", len(payload)) + payload

    def send(self, response: pb.Response) -> None:
        self.conn.sendall(self.frame(response))

    def send_raw(self, data: bytes) -> None:
        self.conn.sendall(data)

    def send_in_pieces(self, data: bytes, piece_bytes: int, pause_s: float = 0.002) -> None:
        """Write ``data`` in small separate writes so the client sees partial frames."""
        for offset in range(0, len(data), piece_bytes):
            self.conn.sendall(data[offset : offset + piece_bytes])
            time.sleep(pause_s)  # lets each piece arrive as its own recv

    def close_with_error(self, code: int, message: str) -> None:
        """What the daemon does when it drops a connection for a reason of its own: one
        Response with id 0 and the error, then close (with whatever the client sent unread)."""
        self.send(error_response(0, code, message))
        self.close()

    def expect_eof(self) -> bool:
        """True if the client closed its end (what a clean close must look like)."""
        try:
            return self.conn.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


class ScriptedPeer:
    """Listens on a fresh socket path; ``accept()`` returns each client connection in turn."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="sparkd-peer-")
        self.socket_path = os.path.join(self._dir.name, "sparkd.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket_path)
        self._listener.listen(8)
        self._accepted: "queue.Queue[PeerConnection]" = queue.Queue()
        self._connections: List[PeerConnection] = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            peer = PeerConnection(conn)
            self._connections.append(peer)
            self._accepted.put(peer)

    def accept(self, timeout: Optional[float] = PEER_TIMEOUT_S) -> PeerConnection:
        return self._accepted.get(timeout=timeout)

    def expect_no_connection(self, within_s: float = 0.3) -> bool:
        """True if no client connects within ``within_s`` (a client that must not reconnect)."""
        try:
            self._accepted.get(timeout=within_s)
        except queue.Empty:
            return True
        return False

    def stop_listening(self) -> None:
        """Refuse new connections (ECONNREFUSED), as when the daemon is down."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for peer in self._connections:
            peer.close()
        self._thread.join(timeout=PEER_TIMEOUT_S)
        self._dir.cleanup()


def response(request_id: int, final: bool = True) -> pb.Response:
    """A Response skeleton answering ``request_id``."""
    message = pb.Response()
    message.id = request_id
    message.final = final
    return message


def error_response(request_id: int, code: int, message: str) -> pb.Response:
    answer = response(request_id)
    answer.error.code = code
    answer.error.message = message
    return answer
