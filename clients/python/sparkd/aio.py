"""The asyncio sparkd client: one connection, one reader task, any number of concurrent calls.

Same surface as the sync ``Client`` with ``async`` methods, for RAG servers built on asyncio
(FastAPI, aiohttp) that must not block the event loop while a model works.
"""

from __future__ import annotations

import asyncio
import os
from types import TracebackType
from typing import (
    AsyncIterator,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Type,
    Union,
)

from google.protobuf.message import DecodeError

from . import _protocol
from . import sparkd_pb2 as pb
from ._framing import HEADER_BYTES, FrameError, decode_header, encode_frame
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


class _ConnectionLost:
    """Queued to every waiting call when the reader task stops, carrying why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


_Delivery = Union["pb.Response", _ConnectionLost]


class AsyncClient:
    """An asyncio connection to sparkd; create it with ``await AsyncClient.connect(path)``.

    ``timeout`` (seconds, None = for ever) bounds the connect and each wait for a response; a
    request that times out is cancelled on the daemon and raises
    SparkdError("DEADLINE_EXCEEDED"). Use ``async with`` or ``await client.close()``.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        socket_path: str,
        timeout: Optional[float],
    ) -> None:
        """Internal: use ``AsyncClient.connect``, which opens the connection first."""
        self.socket_path = socket_path
        self.timeout = timeout
        self._reader = reader
        self._writer = writer
        self._drain_lock = asyncio.Lock()
        self._pending: Dict[int, "asyncio.Queue[_Delivery]"] = {}
        self._next_id = 1
        self._lost_reason: Optional[str] = None
        self._closing = False
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(
        cls,
        socket_path: "Optional[Union[str, os.PathLike[str]]]" = None,
        timeout: Optional[float] = None,
    ) -> "AsyncClient":
        """Connect to sparkd (default: $SPARKD_SOCKET, then /run/sparkd/sparkd.sock)."""
        path = _protocol.resolve_socket_path(socket_path)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
        except (OSError, asyncio.TimeoutError) as error:
            detail = getattr(error, "strerror", None) or str(error) or "timed out"
            raise SparkdError(
                "UNAVAILABLE",
                f"cannot connect to sparkd at {path}: {detail}; is the daemon running? "
                "Pass socket_path= or set SPARKD_SOCKET to its socket",
            ) from error
        return cls(reader, writer, path, timeout)

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
        self._writer.close()  # EOF for the reader task, which then fails the waiters
        try:
            await self._writer.wait_closed()
        except OSError:
            pass
        await self._reader_task

    @property
    def closed(self) -> bool:
        return self._lost_reason is not None or self._closing

    # ---- the reader task --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "the daemon closed the connection"
        try:
            while True:
                header = await self._reader.readexactly(HEADER_BYTES)
                payload = await self._reader.readexactly(decode_header(header))
                response = pb.Response()
                response.ParseFromString(payload)
                self._dispatch(response)
        except asyncio.IncompleteReadError as error:
            if error.partial:
                reason = (
                    f"the daemon closed the connection in the middle of a frame "
                    f"({len(error.partial)} bytes of it received)"
                )
        except FrameError as error:
            reason = f"protocol error: {error}"
        except DecodeError as error:
            reason = f"protocol error: a response frame is not a sparkd.v1.Response ({error})"
        except OSError as error:
            reason = f"connection error: {error}"
        finally:
            if self._closing:
                reason = "the client was closed"
            self._connection_lost(reason)

    def _dispatch(self, response: "pb.Response") -> None:
        waiting = self._pending.get(response.id)
        if waiting is None:
            return  # a late chunk of a cancelled stream, or a fire-and-forget cancel's answer
        if response.final:
            del self._pending[response.id]
        waiting.put_nowait(response)

    def _connection_lost(self, reason: str) -> None:
        self._lost_reason = reason
        pending = list(self._pending.values())
        self._pending.clear()
        for waiting in pending:
            waiting.put_nowait(_ConnectionLost(reason))
        self._writer.close()  # after a protocol error the stream cannot be trusted

    # ---- sending and waiting ----------------------------------------------------------------

    def _unavailable(self, reason: str, request_id: Optional[int]) -> SparkdError:
        return SparkdError(
            "UNAVAILABLE", f"connection to sparkd at {self.socket_path} lost: {reason}", request_id
        )

    def _start_nowait(
        self, request: "pb.Request", expect_response: bool = True
    ) -> "tuple[int, asyncio.Queue[_Delivery]]":
        """Give ``request`` the next id, register its waiter and queue its frame for writing.

        Synchronous, so that it also serves ``__del__`` and cancellation paths that cannot await;
        the transport writes the frame as soon as the loop runs.
        """
        if self._lost_reason is not None or self._closing:
            raise self._unavailable(self._lost_reason or "the client was closed", None)
        request_id = self._next_id
        self._next_id += 1
        waiting: "asyncio.Queue[_Delivery]" = asyncio.Queue()
        if expect_response:
            self._pending[request_id] = waiting
        request.id = request_id
        self._writer.write(encode_frame(request.SerializeToString()))
        return request_id, waiting

    async def _start(self, request: "pb.Request") -> "tuple[int, asyncio.Queue[_Delivery]]":
        request_id, waiting = self._start_nowait(request)
        try:
            # Writes are ordered by write(); the lock only serialises waiting for buffer space.
            async with self._drain_lock:
                await self._writer.drain()
        except OSError as error:
            self._pending.pop(request_id, None)
            raise self._unavailable(f"sending failed: {error}", request_id) from error
        return request_id, waiting

    def _abandon(self, request_id: int) -> None:
        """Stop waiting for ``request_id`` and ask the daemon to cancel it (best effort)."""
        self._pending.pop(request_id, None)
        try:
            self._start_nowait(_protocol.cancel_request(request_id), expect_response=False)
        except (SparkdError, OSError, RuntimeError):
            pass  # the connection (or the loop) is gone, and with it the request

    async def _wait(
        self, request_id: int, waiting: "asyncio.Queue[_Delivery]"
    ) -> "pb.Response":
        try:
            delivery = await asyncio.wait_for(waiting.get(), self.timeout)
        except asyncio.TimeoutError:
            self._abandon(request_id)
            raise SparkdError(
                "DEADLINE_EXCEEDED",
                f"no response from sparkd within {self.timeout} s; the request was cancelled "
                "(raise the client's timeout, or pass deadline_ms to let the daemon decide)",
                request_id,
            ) from None
        except asyncio.CancelledError:
            # The caller's task was cancelled: cancel the daemon's work too.
            self._abandon(request_id)
            raise
        if isinstance(delivery, _ConnectionLost):
            raise self._unavailable(delivery.reason, request_id)
        return delivery

    async def _call(self, request: "pb.Request", kind: str) -> "pb.Response":
        request_id, waiting = await self._start(request)
        response = await self._wait(request_id, waiting)
        if not response.final:
            self._pending.pop(request_id, None)
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
        include_stop_str_in_output: bool = False,
    ) -> Generation:
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
            add_generation_prompt=add_generation_prompt,
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

    async def load(self, name: str, path: str = "") -> str:
        return str((await self._call(_protocol.load_request(name, path), "admin")).admin.message)

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
        self._waiting: "Optional[asyncio.Queue[_Delivery]]" = None
        self._done = False
        self.request_id: Optional[int] = None
        self.finish_reason = ""
        self.usage: Optional[Usage] = None
        self.timing: Optional[Timing] = None

    async def _ensure_started(self) -> None:
        if self._waiting is None and not self._done:
            self.request_id, self._waiting = await self._client._start(self._request)

    def __aiter__(self) -> "AsyncGenerateStream":
        return self

    async def __anext__(self) -> GenerationChunk:
        await self._ensure_started()
        if self._done:
            raise StopAsyncIteration
        assert self.request_id is not None and self._waiting is not None
        try:
            response = await self._client._wait(self.request_id, self._waiting)
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
        self._close_nowait()
        # Let the cancel frame reach the socket before the caller moves on.
        try:
            async with self._client._drain_lock:
                await self._client._writer.drain()
        except OSError:
            pass

    def _close_nowait(self) -> None:
        if self._done:
            return
        self._done = True
        if self.request_id is not None:
            self._client._abandon(self.request_id)

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
