"""The synchronous sparkd client: one Unix-socket connection shared by any number of threads.

Requests are multiplexed: each gets a per-connection id, and one background reader thread
hands every response to the caller waiting on that id. So a RAG app can embed, rerank and
generate from several worker threads over a single connection, and responses may come back in
any order.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from types import TracebackType
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Type, Union

from google.protobuf.message import DecodeError

from . import _protocol
from . import sparkd_pb2 as pb
from ._framing import FrameDecoder, FrameError, encode_frame
from ._protocol import MessageLike
from .errors import SparkdError
from .types import (
    DaemonStatus,
    EmbedResult,
    Generation,
    GenerationChunk,
    Health,
    ModelInfo,
    RerankResults,
    Timing,
    TokenizeResult,
    Usage,
)

_RECV_BYTES = 1 << 16


class _ConnectionLost:
    """Queued to every waiting caller when the reader thread stops, carrying why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


_Delivery = Union["pb.Response", _ConnectionLost]


class Client:
    """A thread-safe connection to sparkd.

    ``socket_path`` defaults to $SPARKD_SOCKET, then /run/sparkd/sparkd.sock. ``timeout`` (in
    seconds, None = wait for ever) bounds the connect and each wait for a response; a request
    that times out is cancelled on the daemon and raises SparkdError("DEADLINE_EXCEEDED").
    Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        socket_path: "Optional[Union[str, os.PathLike[str]]]" = None,
        timeout: Optional[float] = None,
    ) -> None:
        self.socket_path = _protocol.resolve_socket_path(socket_path)
        self.timeout = timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self.socket_path)
            sock.settimeout(None)  # the reader thread blocks; waits are bounded per call
        except OSError as error:
            sock.close()
            raise SparkdError(
                "UNAVAILABLE",
                f"cannot connect to sparkd at {self.socket_path}: {error.strerror or error}; "
                "is the daemon running? Pass socket_path= or set SPARKD_SOCKET to its socket",
            ) from error
        self._sock = sock
        self._send_lock = threading.Lock()
        # Guards the id counter, the pending map and the closed state, so that a request is
        # either registered before the connection is declared lost (and then told so) or
        # refused outright: no caller can wait for ever on a dead connection.
        self._state_lock = threading.Lock()
        self._pending: Dict[int, "queue.SimpleQueue[_Delivery]"] = {}
        self._next_id = 1
        self._lost_reason: Optional[str] = None
        self._closing = False
        self._reader = threading.Thread(
            target=self._read_loop, name=f"sparkd-reader:{self.socket_path}", daemon=True
        )
        self._reader.start()

    # ---- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; calls still waiting raise SparkdError("UNAVAILABLE")."""
        with self._state_lock:
            if self._closing:
                return
            self._closing = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread's recv
        except OSError:
            pass
        if threading.current_thread() is not self._reader:
            self._reader.join()
        self._sock.close()

    @property
    def closed(self) -> bool:
        """True once the connection is closed or lost; every further call raises UNAVAILABLE."""
        with self._state_lock:
            return self._lost_reason is not None or self._closing

    # ---- the reader thread ------------------------------------------------------------------

    def _read_loop(self) -> None:
        decoder = FrameDecoder()
        reason = "the daemon closed the connection"
        try:
            while True:
                data = self._sock.recv(_RECV_BYTES)
                if not data:
                    if decoder.buffered_bytes:
                        reason = (
                            f"the daemon closed the connection in the middle of a frame "
                            f"({decoder.buffered_bytes} bytes of it received)"
                        )
                    break
                for payload in decoder.feed(data):
                    response = pb.Response()
                    response.ParseFromString(payload)
                    self._dispatch(response)
        except FrameError as error:
            reason = f"protocol error: {error}"
        except DecodeError as error:
            reason = f"protocol error: a response frame is not a sparkd.v1.Response ({error})"
        except OSError as error:
            reason = f"connection error: {error}"
        finally:
            with self._state_lock:
                if self._closing:
                    reason = "the client was closed"
            self._connection_lost(reason)

    def _dispatch(self, response: "pb.Response") -> None:
        with self._state_lock:
            waiting = self._pending.get(response.id)
            if waiting is not None and response.final:
                del self._pending[response.id]
        # No one waiting: a late chunk of a cancelled stream, or the answer to a fire-and-forget
        # cancel. Dropping it is the intended outcome.
        if waiting is not None:
            waiting.put(response)

    def _connection_lost(self, reason: str) -> None:
        with self._state_lock:
            self._lost_reason = reason
            pending = list(self._pending.values())
            self._pending.clear()
        for waiting in pending:
            waiting.put(_ConnectionLost(reason))
        try:
            # After a protocol error the stream cannot be trusted; make writers fail fast too.
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- sending and waiting ----------------------------------------------------------------

    def _unavailable(self, reason: str, request_id: Optional[int]) -> SparkdError:
        return SparkdError(
            "UNAVAILABLE", f"connection to sparkd at {self.socket_path} lost: {reason}", request_id
        )

    def _start(
        self, request: "pb.Request", expect_response: bool = True
    ) -> "tuple[int, queue.SimpleQueue[_Delivery]]":
        """Give ``request`` the next id, register its waiter, and send it."""
        waiting: "queue.SimpleQueue[_Delivery]" = queue.SimpleQueue()
        with self._state_lock:
            if self._lost_reason is not None or self._closing:
                reason = self._lost_reason or "the client was closed"
                raise self._unavailable(reason, None)
            request_id = self._next_id
            self._next_id += 1
            if expect_response:
                self._pending[request_id] = waiting
        request.id = request_id
        frame = encode_frame(request.SerializeToString())
        try:
            with self._send_lock:
                self._sock.sendall(frame)
        except OSError as error:
            self._forget(request_id)
            raise self._unavailable(f"sending failed: {error}", request_id) from error
        return request_id, waiting

    def _forget(self, request_id: int) -> None:
        with self._state_lock:
            self._pending.pop(request_id, None)

    def _abandon(self, request_id: int) -> None:
        """Stop waiting for ``request_id`` and ask the daemon to cancel it (best effort)."""
        self._forget(request_id)
        try:
            self._start(_protocol.cancel_request(request_id), expect_response=False)
        except SparkdError:
            pass  # the connection is gone, and with it the request

    def _wait(self, request_id: int, waiting: "queue.SimpleQueue[_Delivery]") -> "pb.Response":
        try:
            delivery = waiting.get(timeout=self.timeout)
        except queue.Empty:
            self._abandon(request_id)
            raise SparkdError(
                "DEADLINE_EXCEEDED",
                f"no response from sparkd within {self.timeout} s; the request was cancelled "
                "(raise the client's timeout, or pass deadline_ms to let the daemon decide)",
                request_id,
            ) from None
        if isinstance(delivery, _ConnectionLost):
            raise self._unavailable(delivery.reason, request_id)
        return delivery

    def _call(self, request: "pb.Request", kind: str) -> "pb.Response":
        request_id, waiting = self._start(request)
        response = self._wait(request_id, waiting)
        if not response.final:
            self._forget(request_id)  # a unary call has one response; ignore any stragglers
        _protocol.raise_if_error(response, kind)
        return response

    # ---- the API ----------------------------------------------------------------------------

    def embed(
        self,
        model: str,
        inputs: "Union[str, Sequence[str]]",
        normalize: Optional[bool] = None,
        truncate: bool = False,
        priority: int = 0,
        deadline_ms: int = 0,
    ) -> EmbedResult:
        """Embed each input; ``normalize=None`` keeps the model's own normalisation setting."""
        request = _protocol.embed_request(model, inputs, normalize, truncate, priority, deadline_ms)
        return _protocol.embed_result(self._call(request, "embed"))

    def rerank(
        self,
        model: str,
        query: str,
        documents: Sequence[str],
        top_n: int = 0,
        return_documents: bool = False,
        truncate: bool = False,
        raw_scores: bool = False,
        priority: int = 0,
        deadline_ms: int = 0,
    ) -> RerankResults:
        """Score each document against ``query``; results come best first."""
        request = _protocol.rerank_request(
            model, query, documents, top_n, return_documents, truncate, raw_scores, priority,
            deadline_ms,
        )
        return _protocol.rerank_results(self._call(request, "rerank"))

    def generate(
        self,
        model: str,
        prompt: Optional[str] = None,
        messages: Optional[Iterable[MessageLike]] = None,
        max_tokens: int = 0,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: int = 0,
        min_p: float = 0,
        repetition_penalty: Optional[float] = None,
        presence_penalty: float = 0,
        frequency_penalty: float = 0,
        seed: Optional[int] = None,
        stop: "Union[str, Sequence[str], None]" = None,
        stop_token_ids: Optional[Sequence[int]] = None,
        logprobs: int = 0,
        logit_bias: Optional[Mapping[int, float]] = None,
        ignore_eos: bool = False,
        priority: int = 0,
        deadline_ms: int = 0,
        add_generation_prompt: Optional[bool] = None,
        include_stop_str_in_output: bool = False,
    ) -> Generation:
        """Generate from a raw ``prompt`` or chat ``messages`` and return the whole text."""
        request = _protocol.generate_request(
            model=model, prompt=prompt, messages=messages, max_tokens=max_tokens,
            temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
            repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty, seed=seed, stop=stop,
            stop_token_ids=stop_token_ids, logprobs=logprobs, logit_bias=logit_bias,
            ignore_eos=ignore_eos, priority=priority, deadline_ms=deadline_ms,
            add_generation_prompt=add_generation_prompt,
            include_stop_str_in_output=include_stop_str_in_output, stream=False,
        )
        accumulator = _protocol.GenerationAccumulator()
        # One response is expected, but joining chunks keeps this correct if the daemon streams.
        with GenerateStream(self, request) as stream:
            for chunk in stream:
                accumulator.add(chunk)
        return accumulator.result()

    def generate_stream(
        self,
        model: str,
        prompt: Optional[str] = None,
        messages: Optional[Iterable[MessageLike]] = None,
        max_tokens: int = 0,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: int = 0,
        min_p: float = 0,
        repetition_penalty: Optional[float] = None,
        presence_penalty: float = 0,
        frequency_penalty: float = 0,
        seed: Optional[int] = None,
        stop: "Union[str, Sequence[str], None]" = None,
        stop_token_ids: Optional[Sequence[int]] = None,
        logprobs: int = 0,
        logit_bias: Optional[Mapping[int, float]] = None,
        ignore_eos: bool = False,
        priority: int = 0,
        deadline_ms: int = 0,
        add_generation_prompt: Optional[bool] = None,
        include_stop_str_in_output: bool = False,
    ) -> "GenerateStream":
        """Start a streamed generation; iterate the result for chunks as the daemon makes them.

        The request is sent now. Closing the stream before its last chunk (``close()``, leaving
        a ``with`` block, or dropping the iterator after ``break``) cancels it on the daemon so
        its KV cache is freed.
        """
        request = _protocol.generate_request(
            model=model, prompt=prompt, messages=messages, max_tokens=max_tokens,
            temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
            repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty, seed=seed, stop=stop,
            stop_token_ids=stop_token_ids, logprobs=logprobs, logit_bias=logit_bias,
            ignore_eos=ignore_eos, priority=priority, deadline_ms=deadline_ms,
            add_generation_prompt=add_generation_prompt,
            include_stop_str_in_output=include_stop_str_in_output, stream=True,
        )
        return GenerateStream(self, request)

    def tokenize(
        self,
        model: str,
        text: str,
        add_special_tokens: bool = True,
        return_tokens: bool = False,
    ) -> TokenizeResult:
        request = _protocol.tokenize_request(model, text, add_special_tokens, return_tokens)
        return _protocol.tokenize_result(self._call(request, "tokenize"))

    def detokenize(self, model: str, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        request = _protocol.detokenize_request(model, ids, skip_special_tokens)
        return str(self._call(request, "detokenize").detokenize.text)

    def cancel(self, request_id: int) -> bool:
        """Cancel a request in flight on this connection; False if it had already finished."""
        response = self._call(_protocol.cancel_request(request_id), "cancel")
        return bool(response.cancel.cancelled)

    def models(self) -> List[ModelInfo]:
        return _protocol.model_infos(self._call(_protocol.list_models_request(), "list_models"))

    def status(self) -> DaemonStatus:
        return _protocol.daemon_status(self._call(_protocol.status_request(), "status"))

    def health(self) -> Health:
        return _protocol.health(self._call(_protocol.health_request(), "health"))

    def load(self, name: str, path: str = "") -> str:
        """Load a model (admin); an empty ``path`` uses the one config.toml gives ``name``."""
        return str(self._call(_protocol.load_request(name, path), "admin").admin.message)

    def unload(self, name: str) -> str:
        """Unload a model (admin); returns the daemon's description of what it did."""
        return str(self._call(_protocol.unload_request(name), "admin").admin.message)

    def reload(self) -> str:
        """Re-read the daemon's config file, as SIGHUP does (admin)."""
        return str(self._call(_protocol.reload_request(), "admin").admin.message)


class GenerateStream(Iterator[GenerationChunk]):
    """The chunks of one streamed generation, in order; the last has ``final=True``.

    After the last chunk, ``finish_reason``, ``usage`` and ``timing`` hold the totals.
    ``request_id`` is the id to pass to ``Client.cancel`` from another thread.
    """

    def __init__(self, client: Client, request: "pb.Request") -> None:
        self._client = client
        self._done = True  # until the request is sent, there is nothing to cancel
        self.request_id, self._waiting = client._start(request)
        self._done = False
        self.finish_reason = ""
        self.usage: Optional[Usage] = None
        self.timing: Optional[Timing] = None

    def __iter__(self) -> "GenerateStream":
        return self

    def __next__(self) -> GenerationChunk:
        if self._done:
            raise StopIteration
        try:
            response = self._client._wait(self.request_id, self._waiting)
            _protocol.raise_if_error(response, "generate")
        except SparkdError:
            self._done = True  # an error is final; there is nothing left to cancel
            raise
        chunk = _protocol.generation_chunk(response)
        if response.final:
            self._done = True
            self.finish_reason = chunk.finish_reason
            self.usage = chunk.usage
            self.timing = chunk.timing
        return chunk

    def close(self) -> None:
        """Stop the generation; if it has not finished, the daemon is told to cancel it."""
        if self._done:
            return
        self._done = True
        self._client._abandon(self.request_id)

    def __enter__(self) -> "GenerateStream":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # `for chunk in client.generate_stream(...): break` drops the last reference here;
        # cancelling then keeps an abandoned generation from running to max_tokens.
        try:
            if not getattr(self, "_done", True):
                self.close()
        except Exception:
            pass
