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
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Type, Union

from . import _protocol
from . import sparkd_pb2 as pb
from ._protocol import ConnectionEnd, MessageLike
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

# What a waiting caller receives: a response for its id, or why the connection ended.
_Delivery = Union["pb.Response", ConnectionEnd]


class _Connection:
    """One socket to the daemon, the thread that reads it, and the callers waiting on it.

    Kept apart from ``Client`` because the client replaces a lost connection; a request's
    cancel must still go to the connection that carried the request.
    ``lock`` is the client's state lock, shared so that registering a request and declaring
    the connection lost are ordered: a caller is either told of the loss or refused outright,
    never left waiting on a dead connection.
    """

    def __init__(self, sock: socket.socket, socket_path: str, lock: "threading.RLock") -> None:
        self.sock = sock
        self.socket_path = socket_path
        self.lock = lock
        self.send_lock = threading.Lock()
        self.pending: Dict[int, "queue.SimpleQueue[_Delivery]"] = {}
        self.end: Optional[ConnectionEnd] = None  # set once, when the reader stops
        self.closing = False
        self._daemon_error: "Optional[pb.Error]" = None  # the last id-0 error received
        self.reader = threading.Thread(
            target=self._read_loop, name=f"sparkd-reader:{socket_path}", daemon=True
        )
        self.reader.start()

    def _read_loop(self) -> None:
        reader = _protocol.ResponseReader()
        reason = "the client's reader stopped unexpectedly"  # unless set below
        try:
            while True:
                data = self.sock.recv(_RECV_BYTES)
                if not data:
                    reason = reader.eof_reason()
                    break
                for response in reader.responses(data):
                    self._dispatch(response)
        except _protocol.ResponseReader.FAILURES as error:
            reason = reader.failure_reason(error)
        finally:
            self._lost(reason)

    def _dispatch(self, response: "pb.Response") -> None:
        daemon_error = _protocol.connection_error(response)
        with self.lock:
            if daemon_error is not None:
                self._daemon_error = daemon_error
            waiting = self.pending.get(response.id)
            if waiting is not None and response.final:
                del self.pending[response.id]
        # No one waiting: a late chunk of a cancelled stream, or the answer to a fire-and-forget
        # cancel. Dropping it is the intended outcome.
        if waiting is not None:
            waiting.put(response)

    def _lost(self, reason: str) -> None:
        with self.lock:
            end = ConnectionEnd(
                self.socket_path,
                "the client was closed" if self.closing else reason,
                self._daemon_error,
                closed_by_client=self.closing,
            )
            self.end = end
            pending = list(self.pending.values())
            self.pending.clear()
        for waiting in pending:
            waiting.put(end)
        self.shutdown()  # after a protocol error the stream cannot be trusted; fail writers fast

    def register(
        self, request_id: int, waiting: "Optional[queue.SimpleQueue[_Delivery]]"
    ) -> None:
        """Record a caller waiting on ``request_id``; call with ``lock`` held, ``end`` None."""
        if waiting is not None:
            self.pending[request_id] = waiting

    def forget(self, request_id: int) -> None:
        with self.lock:
            self.pending.pop(request_id, None)

    def send(self, frame: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(frame)

    def shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread's recv
        except OSError:
            pass

    def close(self) -> None:
        """End the connection on the client's behalf and release its socket."""
        with self.lock:
            self.closing = True
        self.shutdown()
        if threading.current_thread() is not self.reader:
            self.reader.join()
        self.sock.close()


class Client:
    """A thread-safe connection to sparkd.

    ``socket_path`` defaults to $SPARKD_SOCKET, then /run/sparkd/sparkd.sock. ``timeout`` (in
    seconds, None = wait for ever) bounds the connect and each wait for a response; a request
    that times out is cancelled on the daemon and raises SparkdError("DEADLINE_EXCEEDED").
    Use it as a context manager, or call ``close()``.

    If the connection is lost (the daemon closed it as idle, refused a frame, or was
    restarted), the calls waiting on it fail with the daemon's reason, nothing is retried, and
    the next call opens a fresh connection, once; a call that cannot reconnect raises
    UNAVAILABLE and the call after tries again. After ``close()`` nothing reconnects.
    """

    def __init__(
        self,
        socket_path: "Optional[Union[str, os.PathLike[str]]]" = None,
        timeout: Optional[float] = None,
    ) -> None:
        self.socket_path = _protocol.resolve_socket_path(socket_path)
        self.timeout = timeout
        # Guards the id counter, the current connection, the closed state and each
        # connection's pending map (see _Connection).
        # Reentrant: GenerateStream.__del__ takes it to cancel, and the garbage collector may
        # run that on a thread that already holds it.
        self._state_lock = threading.RLock()
        self._reconnect_lock = threading.Lock()  # one reconnect at a time
        self._next_id = 1
        self._closing = False
        self._connection = self._open(None)

    def _open(self, after: Optional[ConnectionEnd]) -> _Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
            sock.settimeout(None)  # the reader thread blocks; waits are bounded per call
        except OSError as error:
            sock.close()
            raise _protocol.connect_error(self.socket_path, error, after) from error
        return _Connection(sock, self.socket_path, self._state_lock)

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
            connection = self._connection
        connection.close()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called; every further call then raises UNAVAILABLE. (A
        lost connection is reopened by the next call, so it does not count.)"""
        with self._state_lock:
            return self._closing

    # ---- sending and waiting ----------------------------------------------------------------

    def _reconnect(self, lost: _Connection) -> None:
        """Replace ``lost`` by a fresh connection, unless another thread did."""
        with self._reconnect_lock:
            with self._state_lock:
                if self._closing or self._connection is not lost:
                    return
            fresh: Optional[_Connection] = self._open(lost.end)
            with self._state_lock:
                if not self._closing:
                    self._connection, fresh = fresh, None
        lost.close()  # its reader has stopped; this releases the socket
        if fresh is not None:  # close() ran while connecting
            fresh.close()

    def _start(
        self,
        request: "pb.Request",
        expect_response: bool = True,
        connection: Optional[_Connection] = None,
    ) -> "tuple[_Connection, int, queue.SimpleQueue[_Delivery]]":
        """Give ``request`` the next id, register its waiter, and send it.

        ``connection`` pins the send to one connection (a cancel must follow its target);
        otherwise the client's current connection is used, reopened first if it was lost.
        """
        waiting: "queue.SimpleQueue[_Delivery]" = queue.SimpleQueue()
        reconnected = False
        while True:
            with self._state_lock:
                if self._closing:
                    raise SparkdError(
                        "UNAVAILABLE",
                        f"connection to sparkd at {self.socket_path} lost: the client was closed",
                    )
                target = connection if connection is not None else self._connection
                end = target.end
                if end is None:
                    request_id = self._next_id
                    self._next_id += 1
                    target.register(request_id, waiting if expect_response else None)
                    break
                if connection is not None or reconnected:
                    raise end.error(None)
            self._reconnect(target)
            reconnected = True  # once: a connection lost again at once is not reopened again
        request.id = request_id
        try:
            frame = _protocol.frame_of(request)
        except SparkdError:
            target.forget(request_id)
            raise
        try:
            target.send(frame)
        except OSError as error:
            if not expect_response:
                raise SparkdError(
                    "UNAVAILABLE",
                    f"connection to sparkd at {self.socket_path} lost: sending failed: {error}",
                    request_id,
                ) from error
            raise self._send_failed(target, request_id, waiting, error) from error
        return target, request_id, waiting

    def _send_failed(
        self,
        connection: _Connection,
        request_id: int,
        waiting: "queue.SimpleQueue[_Delivery]",
        error: OSError,
    ) -> SparkdError:
        """The error for a send that failed: the daemon's reason if it gave one before closing.

        The daemon may close the connection while a big frame is still being written (it
        refused its length), so the send sees EPIPE or ECONNRESET while the daemon's id-0 error
        sits unread. The reader tells this caller once it reaches the end of the stream.
        """
        try:
            delivery: Optional[_Delivery] = waiting.get(
                timeout=_protocol.send_failure_grace_s(self.timeout)
            )
        except queue.Empty:
            delivery = None
        if isinstance(delivery, ConnectionEnd):
            return delivery.error(request_id)
        # The connection has not ended: part of the frame may have been written, so the byte
        # stream can no longer be trusted. End it; its other callers learn why from the reader.
        connection.forget(request_id)
        connection.shutdown()
        return SparkdError(
            "UNAVAILABLE",
            f"connection to sparkd at {self.socket_path} lost: sending failed: {error}",
            request_id,
        )

    def _abandon(self, connection: _Connection, request_id: int) -> None:
        """Stop waiting for ``request_id`` and ask the daemon to cancel it (best effort)."""
        connection.forget(request_id)
        try:
            self._start(
                _protocol.cancel_request(request_id), expect_response=False, connection=connection
            )
        except SparkdError:
            pass  # the connection is gone, and with it the request

    def _wait(
        self, connection: _Connection, request_id: int, waiting: "queue.SimpleQueue[_Delivery]"
    ) -> "pb.Response":
        """The next response for ``request_id``, skipping the daemon's refusal of a duplicate
        id (non-final: the request that owns the id goes on)."""
        while True:
            try:
                delivery = waiting.get(timeout=self.timeout)
            except queue.Empty:
                self._abandon(connection, request_id)
                raise SparkdError(
                    "DEADLINE_EXCEEDED",
                    f"no response from sparkd within {self.timeout} s; the request was "
                    "cancelled (raise the client's timeout, or pass deadline_ms to let the "
                    "daemon decide)",
                    request_id,
                ) from None
            if isinstance(delivery, ConnectionEnd):
                raise delivery.error(request_id)
            if not _protocol.is_refused_duplicate(delivery):
                return delivery

    def _call(self, request: "pb.Request", kind: str) -> "pb.Response":
        connection, request_id, waiting = self._start(request)
        response = self._wait(connection, request_id, waiting)
        if not response.final:
            connection.forget(request_id)  # a unary call has one response; ignore any stragglers
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
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        template_variables: Optional[Mapping[str, Any]] = None,
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
            add_generation_prompt=add_generation_prompt, tools=tools,
            template_variables=template_variables,
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
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        template_variables: Optional[Mapping[str, Any]] = None,
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
            add_generation_prompt=add_generation_prompt, tools=tools,
            template_variables=template_variables,
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

    def load(
        self,
        name: str,
        path: "Union[str, os.PathLike[str]]" = "",
        residency: Optional[str] = None,
    ) -> str:
        """Load a model (admin); returns the daemon's description of what it did.

        An empty ``path`` uses the one config.toml gives ``name``; a relative one is taken
        from this process's working directory (the daemon only accepts absolute paths).
        ``residency`` is "pinned" or "on_demand"; None: the config's setting for a configured
        name, else on_demand.
        """
        request = _protocol.load_request(name, path, residency)
        return str(self._call(request, "admin").admin.message)

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
        self._connection, self.request_id, self._waiting = client._start(request)
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
            response = self._client._wait(self._connection, self.request_id, self._waiting)
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
        self._client._abandon(self._connection, self.request_id)

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
