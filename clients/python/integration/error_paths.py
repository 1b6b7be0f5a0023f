"""Drives one error path of a running sparkd through the Python client and prints what the
caller learns, as one line: "CODE: message" for a SparkdError, "OK ..." otherwise. The daemon
integration test (tests/integration/test_daemon_errors.cpp) sets the daemon up for each path
and checks that the line carries the daemon's own reason.

    python3 error_paths.py SOCKET PATH [DAEMON_PID]

PATH is one of: unparseable, unknown_field, over_limit, too_many_connections, half_frame,
drain (sends SIGTERM to DAEMON_PID once a stream is under way), idle_reconnect.

The client never sends a malformed frame, so unparseable, unknown_field and half_frame put
crafted bytes on the client's own connection, registered under a request id as the client
does: what is checked is that the daemon's answer reaches that caller.
"""

from __future__ import annotations

import os
import queue
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import sparkd  # noqa: E402
from sparkd import _protocol  # noqa: E402
from sparkd import sparkd_pb2 as pb  # noqa: E402


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class CraftedRequest:
    """Stands in for a pb.Request in Client._call: the client gives it an id, and it serializes
    to that id (field 1) followed by `tail`."""

    def __init__(self, tail: bytes) -> None:
        self.id = 0
        self.tail = tail

    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        return b"\x08" + varint(self.id) + self.tail


def crafted_call(client: sparkd.Client, tail: bytes) -> None:
    client._call(CraftedRequest(tail), "health")  # type: ignore[arg-type]


def half_frame(client: sparkd.Client) -> None:
    """7 bytes of a frame that announces 100, on a call the client is waiting for."""
    connection = client._connection
    waiting: "queue.SimpleQueue" = queue.SimpleQueue()
    with client._state_lock:
        request_id = client._next_id
        client._next_id += 1
        connection.register(request_id, waiting)
    connection.send(struct.pack("<I", 100) + b"\x08\x01\x92\x01\x00\x00\x00")
    response = client._wait(connection, request_id, waiting)
    _protocol.raise_if_error(response, "health")


def run(socket: str, path: str, daemon_pid: int) -> str:
    if path == "too_many_connections":
        with sparkd.Client(socket, timeout=60) as client:
            client.health()
        return "OK"
    with sparkd.Client(socket, timeout=60) as client:
        if path == "unparseable":
            crafted_call(client, b"\x0f")  # a tag with wire type 7, which protobuf has not
        elif path == "unknown_field":
            health = pb.Request()
            health.health.SetInParent()
            crafted_call(client, health.SerializeToString() + b"\x98\x06\x01")  # field 99
        elif path == "over_limit":
            client.embed("embed", ["x" * 100_000])
        elif path == "half_frame":
            half_frame(client)
        elif path == "drain":
            stream = client.generate_stream(
                "gen", prompt="drain me", max_tokens=1_000_000, temperature=0, ignore_eos=True
            )
            next(stream)
            os.kill(daemon_pid, signal.SIGTERM)
            for _ in stream:
                pass
            return "OK the stream ended normally"
        elif path == "idle_reconnect":
            client.health()
            # Past the daemon's idle timeout: it closes this connection; the next call reopens.
            time.sleep(1.0)
            ready = client.health().ready
            return f"OK reconnected, ready={ready}"
        else:
            raise SystemExit(f"unknown path {path!r}")
    return "OK"


def main() -> None:
    socket, path = sys.argv[1], sys.argv[2]
    daemon_pid = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    try:
        print(run(socket, path, daemon_pid))
    except sparkd.SparkdError as error:
        print(f"{error.code}: {error.message}")


if __name__ == "__main__":
    main()
