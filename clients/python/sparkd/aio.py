"""The asyncio sparkd client: one connection, one reader task, any number of concurrent calls.

Same surface as the sync ``Client`` with ``async`` methods, for RAG servers built on asyncio
(FastAPI, aiohttp) that must not block the event loop while a model works.
"""

from __future__ import annotations

import asyncio
import os
import socket
from types import TracebackType
from typing import (
    Any,
    AsyncIterator,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

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

# What a waiting call receives: a response for its id, or why the connection ended.
_Delivery = Union["pb.Response", ConnectionEnd]

# A frame to write, and the future told once it is written (or could not be).
_Outgoing = Tuple[bytes, "asyncio.Future[None]"]


def _consume_outcome(sent: "asyncio.Future[None]") -> None:
    """Mark a send's failure as seen: no one awaits a fire-and-forget cancel's outcome."""
    if not sent.cancelled():
        sent.exception()


class _Connection:
    """One socket to the daemon, its reader and writer tasks, and the calls waiting on it.

    Reads and writes go straight to the non-blocking socket (``loop.sock_recv`` and
    ``loop.sock_sendall``) rather than through asyncio streams: a stream transport that fails
    a write closes itself at once and drops what it had read but not yet handed over, which
    here is the daemon's id-0 error saying why it closed the connection. With the socket, the
    writer's EPIPE leaves the reader free to read that error first.

    Frames are written by one writer task, whole and in the order they were queued, so a call
    cancelled in the middle of a send cannot leave half a frame on the wire, and a cancel can be
    queued from synchronous code (``__del__``, timeouts) and still follow its target.
    """

    def __init__(self, sock: socket.socket, socket_path: str) -> None:
        self.sock = sock
        self.socket_path = socket_path
        self.pending: Dict[int, "asyncio.Queue[_Delivery]"] = {}
        self.end: Optional[ConnectionEnd] = None  # set once, when the reader stops
        self.closing = False
        self._daemon_error: "Optional[pb.Error]" = None  # the last id-0 error received
        self._send_error: Optional[OSError] = None  # set once a write fails
        self._loop = asyncio.get_running_loop()
        self._outbox: "asyncio.Queue[Optional[_Outgoing]]" = asyncio.Queue()
        self.reader_task = self._loop.create_task(self._read_loop())
        self.writer_task = self._loop.create_task(self._write_loop())

    # ---- reading ----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reader = _protocol.ResponseReader()
        reason = "the client's reader stopped unexpectedly"  # unless set below
        try:
            while True:
                data = await self._loop.sock_recv(self.sock, _RECV_BYTES)
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
        if daemon_error is not None:
            self._daemon_error = daemon_error
        waiting = self.pending.get(response.id)
        if waiting is None:
            return  # a late chunk of a cancelled stream, or a fire-and-forget cancel's answer
        if response.final:
            del self.pending[response.id]
        waiting.put_nowait(response)

    def _lost(self, reason: str) -> None:
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
            waiting.put_nowait(end)
        self.shutdown()  # after a protocol error the stream cannot be trusted; fail writes fast
        self._outbox.put_nowait(None)  # the writer fails what is queued, then stops

    # ---- writing ----------------------------------------------------------------------------

    def send_nowait(self, frame: bytes) -> "asyncio.Future[None]":
        """Queue ``frame``; the future completes once it is written, or holds the OSError."""
        sent: "asyncio.Future[None]" = self._loop.create_future()
        if self._send_error is not None:
            sent.set_exception(self._send_error)
        else:
            self._outbox.put_nowait((frame, sent))
        return sent

    async def _write_loop(self) -> None:
        current: "Optional[asyncio.Future[None]]" = None
        try:
            while True:
                item = await self._outbox.get()
                if item is None:
                    return
                frame, current = item
                if self._send_error is None:
                    try:
                        await self._loop.sock_sendall(self.sock, frame)
                    except OSError as error:
                        self._send_error = error
                if not current.done():  # callers await it through shield(): a safeguard
                    if self._send_error is not None:
                        current.set_exception(self._send_error)
                    else:
                        current.set_result(None)
                current = None
        finally:
            # However the writer ends (the connection's end, close(), cancellation while a
            # peer that does not read blocks a write), no caller may wait for ever on a frame
            # that was not written: they all fail, and later sends fail at once.
            if self._send_error is None:
                self._send_error = ConnectionError("the connection closed before it was sent")
            unsent = [current] if current is not None else []
            while not self._outbox.empty():
                item = self._outbox.get_nowait()
                if item is not None:
                    unsent.append(item[1])
            for sent in unsent:
                if not sent.done():
                    sent.set_exception(self._send_error)

    # ---- lifecycle --------------------------------------------------------------------------

    def shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # the reader's recv returns EOF
        except OSError:
            pass

    async def close(self, flush_s: Optional[float]) -> None:
        """End the connection on the client's behalf: write what is queued (cancels sent just
        before, for one; at most ``flush_s``), then close the socket."""
        self.closing = True
        self._outbox.put_nowait(None)
        if flush_s is None or flush_s > 0:
            await asyncio.wait({self.writer_task}, timeout=flush_s)
        self.writer_task.cancel()
        self.shutdown()
        await asyncio.gather(self.reader_task, self.writer_task, return_exceptions=True)
        self.sock.close()


async def _open(
    socket_path: str, timeout: Optional[float], after: Optional[ConnectionEnd]
) -> _Connection:
    """Connect to ``socket_path``; ``after``: why the previous connection ended, if reopening."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, socket_path), timeout)
    except asyncio.TimeoutError as error:
        sock.close()
        raise _protocol.connect_error(socket_path, TimeoutError("timed out"), after) from error
    except OSError as error:
        sock.close()
        raise _protocol.connect_error(socket_path, error, after) from error
    except BaseException:
        sock.close()
        raise
    return _Connection(sock, socket_path)


class AsyncClient:
    """An asyncio connection to sparkd; create it with ``await AsyncClient.connect(path)``.

    ``timeout`` (seconds, None = for ever) bounds the connect and each wait for a response; a
    request that times out is cancelled on the daemon and raises
    SparkdError("DEADLINE_EXCEEDED"). Use ``async with`` or ``await client.close()``.

    If the connection is lost (the daemon closed it as idle, refused a frame, or was
    restarted), the calls waiting on it fail with the daemon's reason, nothing is retried, and
    the next call opens a fresh connection, once; a call that cannot reconnect raises
    UNAVAILABLE and the call after tries again. After ``close()`` nothing reconnects.
    """

    def __init__(self, connection: _Connection, socket_path: str, timeout: Optional[float]) -> None:
        """Internal: use ``AsyncClient.connect``, which opens the connection first."""
        self.socket_path = socket_path
        self.timeout = timeout
        self._connection = connection
        self._reconnect_lock = asyncio.Lock()  # one reconnect at a time
        self._next_id = 1
        self._closing = False

    @classmethod
    async def connect(
        cls,
        socket_path: "Optional[Union[str, os.PathLike[str]]]" = None,
        timeout: Optional[float] = None,
    ) -> "AsyncClient":
        """Connect to sparkd (default: $SPARKD_SOCKET, then /run/sparkd/sparkd.sock)."""
        path = _protocol.resolve_socket_path(socket_path)
        return cls(await _open(path, timeout, None), path, timeout)

    # ---- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection; calls still waiting raise SparkdError("UNAVAILABLE")."""
        if self._closing:
            return
        self._closing = True
        await self._connection.close(self._grace_s())

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called; every further call then raises UNAVAILABLE. (A
        lost connection is reopened by the next call, so it does not count.)"""
        return self._closing

    # ---- sending and waiting ----------------------------------------------------------------

    def _grace_s(self) -> float:
        return _protocol.send_failure_grace_s(self.timeout)

    def _closed_error(self) -> SparkdError:
        return SparkdError(
            "UNAVAILABLE", f"connection to sparkd at {self.socket_path} lost: the client was closed"
        )

    async def _reconnect(self, lost: _Connection) -> None:
        """Replace ``lost`` (ended while idle) by a fresh connection, unless another call did."""
        async with self._reconnect_lock:
            if self._closing or self._connection is not lost:
                return
            fresh = await _open(self.socket_path, self.timeout, lost.end)
            if self._closing:  # close() ran while connecting
                await fresh.close(0)
                return
            self._connection = fresh
        await lost.close(0)  # its reader has stopped; this releases the socket

    def _start_nowait(
        self, connection: _Connection, request: "pb.Request", expect_response: bool = True
    ) -> "Tuple[int, asyncio.Queue[_Delivery], asyncio.Future[None]]":
        """Give ``request`` the next id, register its waiter and queue its frame on
        ``connection``; the returned future says when it is written.

        Synchronous, so that it also serves ``__del__`` and cancellation paths that cannot
        await.
        """
        if self._closing:
            raise self._closed_error()
        if connection.end is not None:
            raise connection.end.error(None)
        request_id = self._next_id
        self._next_id += 1
        request.id = request_id
        frame = _protocol.frame_of(request)
        waiting: "asyncio.Queue[_Delivery]" = asyncio.Queue()
        if expect_response:
            connection.pending[request_id] = waiting
        sent = connection.send_nowait(frame)
        sent.add_done_callback(_consume_outcome)
        return request_id, waiting, sent

    async def _start(
        self, request: "pb.Request"
    ) -> "Tuple[_Connection, int, asyncio.Queue[_Delivery]]":
        """Send ``request`` on the current connection, reopened first if it was lost; returns
        once the frame is written."""
        reconnected = False
        while True:
            if self._closing:
                raise self._closed_error()
            connection = self._connection
            if connection.end is None:
                break
            if reconnected:
                raise connection.end.error(None)
            await self._reconnect(connection)
            reconnected = True  # once: a connection lost again at once is not reopened again
        request_id, waiting, sent = self._start_nowait(connection, request)
        try:
            await asyncio.shield(sent)
        except OSError as error:
            raise await self._send_failed(connection, request_id, waiting, error) from error
        except asyncio.CancelledError:
            # The frame is written regardless (whole, by the writer task); cancel it after.
            self._abandon(connection, request_id)
            raise
        return connection, request_id, waiting

    async def _send_failed(
        self,
        connection: _Connection,
        request_id: int,
        waiting: "asyncio.Queue[_Delivery]",
        error: OSError,
    ) -> SparkdError:
        """The error for a send that failed: the daemon's reason if it gave one before closing.

        The daemon may close the connection while a big frame is still being written (it
        refused its length), so the write sees EPIPE or ECONNRESET while the daemon's id-0
        error sits unread. The reader tells this call once it reaches the end of the stream.
        """
        try:
            delivery: Optional[_Delivery] = await asyncio.wait_for(waiting.get(), self._grace_s())
        except asyncio.TimeoutError:
            delivery = None
        if isinstance(delivery, ConnectionEnd):
            return delivery.error(request_id)
        # The connection has not ended: part of the frame may have been written, so the byte
        # stream can no longer be trusted. End it; its other calls learn why from the reader.
        connection.pending.pop(request_id, None)
        connection.shutdown()
        return SparkdError(
            "UNAVAILABLE",
            f"connection to sparkd at {self.socket_path} lost: sending failed: {error}",
            request_id,
        )

    def _abandon(
        self, connection: _Connection, request_id: int
    ) -> "Optional[asyncio.Future[None]]":
        """Stop waiting for ``request_id`` and ask the daemon to cancel it (best effort);
        returns the future of the cancel's write, if it could be queued."""
        connection.pending.pop(request_id, None)
        try:
            _, _, sent = self._start_nowait(
                connection, _protocol.cancel_request(request_id), expect_response=False
            )
        except (SparkdError, RuntimeError):
            return None  # the connection (or the loop) is gone, and with it the request
        return sent

    async def _wait(
        self, connection: _Connection, request_id: int, waiting: "asyncio.Queue[_Delivery]"
    ) -> "pb.Response":
        """The next response for ``request_id``, skipping the daemon's refusal of a duplicate
        id (non-final: the request that owns the id goes on)."""
        while True:
            try:
                delivery = await asyncio.wait_for(waiting.get(), self.timeout)
            except asyncio.TimeoutError:
                self._abandon(connection, request_id)
                raise SparkdError(
                    "DEADLINE_EXCEEDED",
                    f"no response from sparkd within {self.timeout} s; the request was "
                    "cancelled (raise the client's timeout, or pass deadline_ms to let the "
                    "daemon decide)",
                    request_id,
                ) from None
            except asyncio.CancelledError:
                # The caller's task was cancelled: cancel the daemon's work too.
                self._abandon(connection, request_id)
                raise
            if isinstance(delivery, ConnectionEnd):
                raise delivery.error(request_id)
            if not _protocol.is_refused_duplicate(delivery):
                return delivery

    async def _call(self, request: "pb.Request", kind: str) -> "pb.Response":
        connection, request_id, waiting = await self._start(request)
        response = await self._wait(connection, request_id, waiting)
        if not response.final:
            connection.pending.pop(request_id, None)
        _protocol.raise_if_error(response, kind)
        return response

    # ---- the API ----------------------------------------------------------------------------

    async def embed(
        self,
        model: str,
        inputs: "Union[str, Sequence[str]]",
        normalize: Optional[bool] = None,
        truncate: bool = False,
        priority: int = 0,
        deadline_ms: int = 0,
    ) -> EmbedResult:
        request = _protocol.embed_request(model, inputs, normalize, truncate, priority, deadline_ms)
        return _protocol.embed_result(await self._call(request, "embed"))

    async def rerank(
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
        request = _protocol.rerank_request(
            model, query, documents, top_n, return_documents, truncate, raw_scores, priority,
            deadline_ms,
        )
        return _protocol.rerank_results(await self._call(request, "rerank"))

    async def generate(
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
        async with AsyncGenerateStream(self, request) as stream:
            async for chunk in stream:
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
    ) -> "AsyncGenerateStream":
        """A streamed generation: ``async for chunk in client.generate_stream(...)``.

        Not a coroutine, so that ``async for`` applies to it directly; the request is sent on
        the first iteration (or on entering ``async with``). Leaving an ``async with`` block or
        ``await stream.aclose()`` before the last chunk cancels it on the daemon; a bare
        ``break`` out of ``async for`` cancels it when the stream is garbage-collected.
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
        return AsyncGenerateStream(self, request)

    async def tokenize(
        self,
        model: str,
        text: str,
        add_special_tokens: bool = True,
        return_tokens: bool = False,
    ) -> TokenizeResult:
        request = _protocol.tokenize_request(model, text, add_special_tokens, return_tokens)
        return _protocol.tokenize_result(await self._call(request, "tokenize"))

    async def detokenize(
        self, model: str, ids: Sequence[int], skip_special_tokens: bool = False
    ) -> str:
        request = _protocol.detokenize_request(model, ids, skip_special_tokens)
        return str((await self._call(request, "detokenize")).detokenize.text)

    async def cancel(self, request_id: int) -> bool:
        response = await self._call(_protocol.cancel_request(request_id), "cancel")
        return bool(response.cancel.cancelled)

    async def models(self) -> List[ModelInfo]:
        response = await self._call(_protocol.list_models_request(), "list_models")
        return _protocol.model_infos(response)

    async def status(self) -> DaemonStatus:
        return _protocol.daemon_status(await self._call(_protocol.status_request(), "status"))

    async def health(self) -> Health:
        return _protocol.health(await self._call(_protocol.health_request(), "health"))

    async def load(
        self,
        name: str,
        path: "Union[str, os.PathLike[str]]" = "",
        residency: Optional[str] = None,
    ) -> str:
        """Load a model (admin); see ``Client.load`` (a relative ``path`` is made absolute in
        this process's working directory)."""
        request = _protocol.load_request(name, path, residency)
        return str((await self._call(request, "admin")).admin.message)

    async def unload(self, name: str) -> str:
        return str((await self._call(_protocol.unload_request(name), "admin")).admin.message)

    async def reload(self) -> str:
        return str((await self._call(_protocol.reload_request(), "admin")).admin.message)


class AsyncGenerateStream(AsyncIterator[GenerationChunk]):
    """The chunks of one streamed generation; see ``AsyncClient.generate_stream``.

    After the last chunk, ``finish_reason``, ``usage`` and ``timing`` hold the totals;
    ``request_id`` is set once the request has been sent.
    """

    def __init__(self, client: AsyncClient, request: "pb.Request") -> None:
        self._client = client
        self._request = request
        self._connection: Optional[_Connection] = None
        self._waiting: "Optional[asyncio.Queue[_Delivery]]" = None
        self._done = False
        self.request_id: Optional[int] = None
        self.finish_reason = ""
        self.usage: Optional[Usage] = None
        self.timing: Optional[Timing] = None

    async def _ensure_started(self) -> None:
        if self._waiting is None and not self._done:
            self._connection, self.request_id, self._waiting = await self._client._start(
                self._request
            )

    def __aiter__(self) -> "AsyncGenerateStream":
        return self

    async def __anext__(self) -> GenerationChunk:
        await self._ensure_started()
        if self._done:
            raise StopAsyncIteration
        assert self._connection is not None and self.request_id is not None
        assert self._waiting is not None
        try:
            response = await self._client._wait(self._connection, self.request_id, self._waiting)
            _protocol.raise_if_error(response, "generate")
        except (SparkdError, asyncio.CancelledError):
            self._done = True  # _wait already cancelled the request if that was needed
            raise
        chunk = _protocol.generation_chunk(response)
        if response.final:
            self._done = True
            self.finish_reason = chunk.finish_reason
            self.usage = chunk.usage
            self.timing = chunk.timing
        return chunk

    async def aclose(self) -> None:
        """Stop the generation; if it has not finished, the daemon is told to cancel it."""
        sent = self._close_nowait()
        if sent is not None:
            # Let the cancel frame reach the socket before the caller moves on.
            try:
                await sent
            except OSError:
                pass

    def _close_nowait(self) -> "Optional[asyncio.Future[None]]":
        if self._done:
            return None
        self._done = True
        if self._connection is not None and self.request_id is not None:
            return self._client._abandon(self._connection, self.request_id)
        return None

    async def __aenter__(self) -> "AsyncGenerateStream":
        await self._ensure_started()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        try:
            if not getattr(self, "_done", True):
                self._close_nowait()
        except Exception:
            pass
