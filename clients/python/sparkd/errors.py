"""The one exception type the sparkd client raises.

The daemon reports failures as a gRPC-style code plus a message a person can act on; the client
surfaces exactly that (and uses the same codes for its own failures, such as a lost connection),
so callers need a single ``except SparkdError`` and can branch on ``.code``.
"""

from __future__ import annotations

from typing import Optional


class SparkdError(Exception):
    """A request failed, or the connection to the daemon did.

    ``code`` is the name of a ``sparkd.v1.Code`` value ("INVALID_ARGUMENT", "UNAVAILABLE", ...),
    ``message`` says what was wrong, and ``request_id`` is the id of the request it answers, or
    None when the failure is not tied to one request (for example a failed connect).
    """

    def __init__(self, code: str, message: str, request_id: Optional[int] = None) -> None:
        super().__init__(code, message, request_id)
        self.code = code
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id is not None else ""
        return f"{self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return f"SparkdError({self.code!r}, {self.message!r}, request_id={self.request_id!r})"
