"""Mapping between the client's keyword arguments / result types and sparkd.v1 messages.

Shared by the sync and asyncio clients so that both build identical requests, refuse the same
arguments (each number checked against its field's wire type, every failure a SparkdError
naming the field), read responses the same way and raise the same errors when a connection
ends; the clients themselves only deal with ids, sockets and waiting.
"""

from __future__ import annotations

import json
import operator
import os
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from . import sparkd_pb2 as pb
from ._framing import FrameDecoder, FrameError, encode_frame
from .errors import SparkdError
from .types import (
    DaemonStatus,
    EmbedResult,
    Generation,
    GenerationChunk,
    Health,
    ModelInfo,
    ModelStatus,
    RerankResult,
    RerankResults,
    Timing,
    TokenizeResult,
    TokenLogprob,
    ToolCall,
    TopLogprob,
    Usage,
)

DEFAULT_SOCKET_PATH = "/run/sparkd/sparkd.sock"
SOCKET_ENV = "SPARKD_SOCKET"

# A chat message may be given as {"role": ..., "content": ...} or any object with those attributes.
MessageLike = Union[Mapping[str, str], Any]


def resolve_socket_path(socket_path: "Optional[Union[str, os.PathLike[str]]]") -> str:
    """The explicit path, else $SPARKD_SOCKET, else the daemon's default path."""
    if socket_path is not None:
        return os.fspath(socket_path)
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET_PATH


# After a failed send, how long a client waits for its reader to drain what the daemon sent
# before it closed: its id-0 error says why (a frame over max_frame_bytes, too many
# connections), which is what the caller needs rather than EPIPE.
SEND_FAILURE_GRACE_S = 2.0


def send_failure_grace_s(timeout: Optional[float]) -> float:
    """SEND_FAILURE_GRACE_S, or the client's timeout if that is smaller."""
    return SEND_FAILURE_GRACE_S if timeout is None else min(SEND_FAILURE_GRACE_S, timeout)


def connect_error(
    socket_path: str, error: OSError, after: "Optional[ConnectionEnd]"
) -> SparkdError:
    """UNAVAILABLE for a failed connect; ``after``: why the previous connection ended, when
    the client was reopening it."""
    reopening = ""
    if after is not None:
        reopening = f" (reconnecting: the previous connection was lost: {after.describe()})"
    return SparkdError(
        "UNAVAILABLE",
        f"cannot connect to sparkd at {socket_path}: {error.strerror or error}; "
        "is the daemon running? Pass socket_path= or set SPARKD_SOCKET to its socket"
        + reopening,
    )


def frame_of(request: "pb.Request") -> bytes:
    """``request`` serialized and framed; one over the client's own frame limit is refused with
    the code the daemon gives a frame over its max_frame_bytes."""
    try:
        return encode_frame(request.SerializeToString())
    except FrameError as error:
        raise SparkdError(
            "RESOURCE_EXHAUSTED", f"{error}; split the request", request.id
        ) from error


def code_name(code: int) -> str:
    try:
        return str(pb.Code.Name(code))
    except ValueError:
        # A newer daemon may send a code this client does not know; keep it recognisable.
        return "UNKNOWN"


def error_from(error: "pb.Error", request_id: Optional[int]) -> SparkdError:
    """The SparkdError for a daemon's ``Error``, its code kept recognisable if it is new."""
    message = error.message
    if code_name(error.code) == "UNKNOWN" and error.code != pb.UNKNOWN:
        message = f"(code {error.code}) {message}"
    return SparkdError(code_name(error.code), message, request_id)


def raise_if_error(response: "pb.Response", expected_kind: str) -> None:
    """Raise the daemon's error, or a protocol error if the response answers something else.

    A successful response whose ``kind`` is unset is accepted: an empty result (no models, an
    empty final chunk) may legitimately serialize to nothing.
    """
    if response.HasField("error") and response.error.code != pb.OK:
        raise error_from(response.error, response.id)
    kind = response.WhichOneof("kind")
    if kind is not None and kind != expected_kind:
        raise SparkdError(
            "INTERNAL",
            f"protocol error: expected a {expected_kind!r} response, the daemon sent {kind!r}; "
            "the client and daemon versions may not match",
            response.id,
        )


def is_refused_duplicate(response: "pb.Response") -> bool:
    """True for the daemon's non-final ALREADY_EXISTS refusal of a second request with an id
    already in flight.

    The request that owns the id goes on and gets its own final response, so a caller waiting
    on that id must skip this one rather than fail. Every other error is final.
    """
    return (
        not response.final and response.HasField("error") and response.error.code != pb.OK
    )


def connection_error(response: "pb.Response") -> "Optional[pb.Error]":
    """The error of an id-0 response: why the daemon is about to close the connection (too
    many connections, a frame over max_frame_bytes, an idle connection), or a complaint about
    a frame too malformed to carry an id. None for any other response."""
    if response.id == 0 and response.HasField("error") and response.error.code != pb.OK:
        return response.error
    return None


class ResponseReader:
    """Turns the bytes read from the socket into Responses, and says why the stream ended.

    Shared by the sync and asyncio clients, whose read loops differ only in how they wait for
    bytes: ``responses`` for each chunk, then ``eof_reason`` at the end of the stream, or
    ``failure_reason`` for an exception of ``FAILURES`` raised while reading.
    """

    FAILURES = (FrameError, DecodeError, OSError)

    def __init__(self) -> None:
        self._decoder = FrameDecoder()

    def responses(self, data: bytes) -> "Iterator[pb.Response]":
        """Each response completed by ``data``, one at a time: those before a frame that does
        not parse are still delivered."""
        for payload in self._decoder.feed(data):
            response = pb.Response()
            response.ParseFromString(payload)
            yield response

    def eof_reason(self) -> str:
        if self._decoder.buffered_bytes:
            return (
                f"the daemon closed the connection in the middle of a frame "
                f"({self._decoder.buffered_bytes} bytes of it received)"
            )
        return "the daemon closed the connection"

    @staticmethod
    def failure_reason(error: BaseException) -> str:
        if isinstance(error, FrameError):
            return f"protocol error: {error}"
        if isinstance(error, DecodeError):
            return f"protocol error: a response frame is not a sparkd.v1.Response ({error})"
        # ECONNRESET here usually follows the daemon's id-0 error; that error is the reason.
        return f"connection error: {error}"


class ConnectionEnd:
    """Why a connection ended, and the errors the calls it strands raise.

    ``daemon_error`` is the last id-0 error the daemon sent on it: when the daemon closes a
    connection for a reason of its own it says why just before, and that reason (with its own
    code, such as RESOURCE_EXHAUSTED) is what callers need, not the EOF or EPIPE that follows.
    """

    def __init__(
        self,
        socket_path: str,
        reason: str,
        daemon_error: "Optional[pb.Error]" = None,
        closed_by_client: bool = False,
    ) -> None:
        self.socket_path = socket_path
        self.reason = reason
        self.daemon_error = None if closed_by_client else daemon_error
        self.closed_by_client = closed_by_client

    def describe(self) -> str:
        if self.daemon_error is not None:
            code = code_name(self.daemon_error.code)
            return f"the daemon closed it: {code}: {self.daemon_error.message}"
        return self.reason

    def error(self, request_id: Optional[int]) -> SparkdError:
        """What a call raises that was waiting on the connection, failed to send on it, or
        found it lost (again, after reconnecting once): the daemon's own reason if it gave one."""
        if self.daemon_error is not None:
            return error_from(self.daemon_error, request_id)
        return SparkdError(
            "UNAVAILABLE", f"connection to sparkd at {self.socket_path} lost: {self.reason}",
            request_id,
        )



# ---- argument checks ------------------------------------------------------------------------

# The values each integer wire type can carry. Python ints are unbounded, and protobuf rejects
# a value that does not fit with a bare ValueError("Value out of range: -5") that names no
# argument; checking first lets the client say which field, the way the daemon names fields.
_INTEGER_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _invalid(message: str) -> SparkdError:
    return SparkdError("INVALID_ARGUMENT", message)


def _field_value(field: FieldDescriptor, value: Any, path: str) -> Any:
    """``value`` checked against an integer field's wire range; other values pass unchanged
    (protobuf checks their type when they are set, and the daemon checks their range)."""
    bounds = _INTEGER_RANGES.get(field.type)
    if bounds is None:
        return value
    try:
        number = operator.index(value)  # int, bool, numpy integers; not float or str
    except TypeError:
        raise _invalid(
            f"{path} must be an integer, got {value!r} ({type(value).__name__})"
        ) from None
    low, high = bounds
    if not low <= number <= high:
        raise _invalid(f"{path} must be in [{low}, {high}], got {number}")
    return number


def _set(message: Message, name: str, value: Any, path: str) -> None:
    """``message.name = value``, every failure a SparkdError that names ``path``."""
    value = _field_value(message.DESCRIPTOR.fields_by_name[name], value, path)
    try:
        setattr(message, name, value)
    except (TypeError, ValueError) as error:
        raise _invalid(f"{path}: {error}") from error


def _items(values: Any, path: str) -> List[Any]:
    """A list argument as a list; a lone str is one item, not its characters."""
    if values is None:
        return []
    if isinstance(values, (str, bytes)):
        return [values]
    try:
        return list(values)
    except TypeError:
        raise _invalid(f"{path} must be a list, got {type(values).__name__}") from None


def _extend(message: Message, name: str, values: Any, path: str) -> None:
    """Append each of ``values`` to the repeated field ``name``, naming ``path[i]`` on failure."""
    field = message.DESCRIPTOR.fields_by_name[name]
    container = getattr(message, name)
    for index, value in enumerate(_items(values, path)):
        item_path = f"{path}[{index}]"
        value = _field_value(field, value, item_path)
        try:
            container.append(value)
        except (TypeError, ValueError) as error:
            raise _invalid(f"{item_path}: {error}") from error


# ---- requests -------------------------------------------------------------------------------


def embed_request(
    model: str,
    inputs: "Union[str, Sequence[str]]",
    normalize: Optional[bool],
    truncate: bool,
    priority: int,
    deadline_ms: int,
) -> "pb.Request":
    request = pb.Request()
    embed = request.embed
    _set(embed, "model", model, "embed.model")
    _extend(embed, "inputs", inputs, "embed.inputs")
    if normalize is not None:
        _set(embed, "normalize", normalize, "embed.normalize")
    _set(embed, "truncate", truncate, "embed.truncate")
    _set(embed, "priority", priority, "embed.priority")
    _set(embed, "deadline_ms", deadline_ms, "embed.deadline_ms")
    return request


def rerank_request(
    model: str,
    query: str,
    documents: Sequence[str],
    top_n: int,
    return_documents: bool,
    truncate: bool,
    raw_scores: bool,
    priority: int,
    deadline_ms: int,
) -> "pb.Request":
    request = pb.Request()
    rerank = request.rerank
    _set(rerank, "model", model, "rerank.model")
    _set(rerank, "query", query, "rerank.query")
    _extend(rerank, "documents", documents, "rerank.documents")
    _set(rerank, "top_n", top_n, "rerank.top_n")
    _set(rerank, "return_documents", return_documents, "rerank.return_documents")
    _set(rerank, "truncate", truncate, "rerank.truncate")
    _set(rerank, "raw_scores", raw_scores, "rerank.raw_scores")
    _set(rerank, "priority", priority, "rerank.priority")
    _set(rerank, "deadline_ms", deadline_ms, "rerank.deadline_ms")
    return request


def _role_and_content(message: MessageLike, path: str) -> "tuple[str, str]":
    try:
        if isinstance(message, Mapping):
            content = message["content"]
            # An assistant turn that only called tools has content None (OpenAI's shape).
            return str(message["role"]), "" if content is None else str(content)
        return str(message.role), str(message.content)
    except (KeyError, AttributeError):
        raise _invalid(
            f"{path} must have a role and a content: a dict "
            '{"role": ..., "content": ...} or an object with those attributes, got '
            f"{message!r}"
        ) from None


def _add_message(chat: "pb.Chat", message: MessageLike, path: str) -> None:
    """One message; a dict may also carry OpenAI's tool_calls, tool_call_id, name and
    reasoning_content."""
    role, content = _role_and_content(message, path)
    out = chat.messages.add(role=role, content=content)
    if not isinstance(message, Mapping):
        return
    reasoning = message.get("reasoning_content", message.get("reasoning"))
    if reasoning is not None:
        _set(out, "reasoning", reasoning, path + ".reasoning")
    for key in ("tool_call_id", "name"):
        if message.get(key) is not None:
            _set(out, key, message[key], f"{path}.{key}")
    for index, call in enumerate(message.get("tool_calls") or []):
        call_path = f"{path}.tool_calls[{index}]"
        if not isinstance(call, Mapping):
            raise _invalid(f"{call_path} must be a dict, got {type(call).__name__}")
        function = call.get("function", call)
        arguments = function.get("arguments", {})
        entry = out.tool_calls.add()
        _set(entry, "id", call.get("id") or "", call_path + ".id")
        _set(entry, "name", function.get("name", ""), call_path + ".name")
        _set(entry, "arguments",
             arguments if isinstance(arguments, str) else json.dumps(arguments),
             call_path + ".arguments")


def generate_request(
    *,
    model: str,
    prompt: Optional[str],
    messages: Optional[Iterable[MessageLike]],
    max_tokens: int,
    temperature: Optional[float],
    top_p: Optional[float],
    top_k: int,
    min_p: float,
    repetition_penalty: Optional[float],
    presence_penalty: float,
    frequency_penalty: float,
    seed: Optional[int],
    stop: "Union[str, Sequence[str], None]",
    stop_token_ids: Optional[Sequence[int]],
    logprobs: int,
    logit_bias: Optional[Mapping[int, float]],
    ignore_eos: bool,
    priority: int,
    deadline_ms: int,
    add_generation_prompt: Optional[bool],
    include_stop_str_in_output: bool,
    stream: bool,
    tools: Optional[Sequence[Mapping[str, Any]]] = None,
    template_variables: Optional[Mapping[str, Any]] = None,
) -> "pb.Request":
    """Build a GenerateRequest; exactly one of ``prompt`` and ``messages`` must be given."""
    if (prompt is None) == (messages is None):
        raise SparkdError(
            "INVALID_ARGUMENT",
            "generate needs exactly one of prompt= (raw text) or messages= (a chat)",
        )
    request = pb.Request()
    generate = request.generate
    _set(generate, "model", model, "generate.model")
    if prompt is not None:
        _set(generate, "prompt", prompt, "generate.prompt")
    else:
        assert messages is not None
        chat = generate.chat
        # Touch the field so a chat with no messages is still sent as a chat.
        chat.SetInParent()
        if isinstance(messages, (str, bytes, Mapping)):
            # One message instead of a list of them: iterating would send its characters or keys.
            raise _invalid(
                f"generate.chat.messages must be a list of messages, got {type(messages).__name__}"
            )
        for index, message in enumerate(_items(messages, "generate.chat.messages")):
            _add_message(chat, message, f"generate.chat.messages[{index}]")
        if add_generation_prompt is not None:
            _set(chat, "add_generation_prompt", add_generation_prompt,
                 "generate.chat.add_generation_prompt")
        if tools is not None:
            _set(chat, "tools_json", json.dumps(list(tools)), "generate.chat.tools_json")
        if template_variables is not None:
            _set(chat, "template_variables_json", json.dumps(dict(template_variables)),
                 "generate.chat.template_variables_json")

    sampling = generate.sampling
    path = "generate.sampling."
    if temperature is not None:
        _set(sampling, "temperature", temperature, path + "temperature")
    if top_p is not None:
        _set(sampling, "top_p", top_p, path + "top_p")
    _set(sampling, "top_k", top_k, path + "top_k")
    _set(sampling, "min_p", min_p, path + "min_p")
    if repetition_penalty is not None:
        _set(sampling, "repetition_penalty", repetition_penalty, path + "repetition_penalty")
    _set(sampling, "presence_penalty", presence_penalty, path + "presence_penalty")
    _set(sampling, "frequency_penalty", frequency_penalty, path + "frequency_penalty")
    if logit_bias is not None:
        if not isinstance(logit_bias, Mapping):
            raise _invalid(
                f"{path}logit_bias must be a mapping of token id to bias, got "
                f"{type(logit_bias).__name__}"
            )
        for index, (token_id, bias) in enumerate(logit_bias.items()):
            entry = sampling.logit_bias.add()
            _set(entry, "token_id", token_id, f"{path}logit_bias[{index}].token_id")
            _set(entry, "bias", bias, f"{path}logit_bias[{index}].bias")
    if seed is not None:
        _set(sampling, "seed", seed, path + "seed")
    _set(sampling, "logprobs", logprobs, path + "logprobs")
    if not sampling.ListFields():
        # All defaults: leave `sampling` unset rather than sending an empty message.
        generate.ClearField("sampling")

    _set(generate, "max_tokens", max_tokens, "generate.max_tokens")
    _extend(generate, "stop", stop, "generate.stop")
    _extend(generate, "stop_token_ids", stop_token_ids, "generate.stop_token_ids")
    _set(generate, "include_stop_str_in_output", include_stop_str_in_output,
         "generate.include_stop_str_in_output")
    _set(generate, "ignore_eos", ignore_eos, "generate.ignore_eos")
    _set(generate, "stream", stream, "generate.stream")
    _set(generate, "priority", priority, "generate.priority")
    _set(generate, "deadline_ms", deadline_ms, "generate.deadline_ms")
    return request


def tokenize_request(
    model: str, text: str, add_special_tokens: bool, return_tokens: bool
) -> "pb.Request":
    request = pb.Request()
    tokenize = request.tokenize
    _set(tokenize, "model", model, "tokenize.model")
    _set(tokenize, "text", text, "tokenize.text")
    _set(tokenize, "add_special_tokens", add_special_tokens, "tokenize.add_special_tokens")
    _set(tokenize, "return_tokens", return_tokens, "tokenize.return_tokens")
    return request


def detokenize_request(model: str, ids: Sequence[int], skip_special_tokens: bool) -> "pb.Request":
    request = pb.Request()
    detokenize = request.detokenize
    _set(detokenize, "model", model, "detokenize.model")
    _extend(detokenize, "ids", ids, "detokenize.ids")
    _set(detokenize, "skip_special_tokens", skip_special_tokens, "detokenize.skip_special_tokens")
    return request


def cancel_request(target_id: int) -> "pb.Request":
    request = pb.Request()
    _set(request.cancel, "target_id", target_id, "cancel.target_id")
    return request


def list_models_request() -> "pb.Request":
    request = pb.Request()
    request.list_models.SetInParent()
    return request


def status_request() -> "pb.Request":
    request = pb.Request()
    request.status.SetInParent()
    return request


def health_request() -> "pb.Request":
    request = pb.Request()
    request.health.SetInParent()
    return request


def load_request(
    name: str, path: "Union[str, os.PathLike[str]]", residency: Optional[str]
) -> "pb.Request":
    """A LoadRequest; a relative ``path`` is made absolute here, in the caller's directory
    (``ollama:NAME[:TAG]`` and ``hf:ORG/NAME`` references are passed as they are).

    The daemon runs in its own working directory (/ under systemd), so it refuses relative
    paths over the socket: resolving them against the caller's directory is what the caller
    meant. An empty path stays empty (the path config.toml gives ``name``); ``residency``
    None leaves the field empty (the config's setting, else on_demand).
    """
    request = pb.Request()
    load = request.load
    _set(load, "name", name, "load.name")
    try:
        path = os.fspath(path)
    except TypeError:
        raise _invalid(f"load.path must be a path, got {type(path).__name__}") from None
    if path and not path.startswith(("ollama:", "hf:")):  # store references are not paths
        path = os.path.abspath(path)
    _set(load, "path", path, "load.path")
    if residency is not None:
        _set(load, "residency", residency, "load.residency")
    return request


def unload_request(name: str) -> "pb.Request":
    request = pb.Request()
    _set(request.unload, "name", name, "unload.name")
    return request


def reload_request() -> "pb.Request":
    request = pb.Request()
    request.reload.SetInParent()
    return request


# ---- responses ------------------------------------------------------------------------------


def usage_from(message: "pb.Usage") -> Usage:
    return Usage(
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
        cached_prompt_tokens=message.cached_prompt_tokens,
        total_tokens=message.total_tokens,
    )


def timing_from(message: "pb.Timing") -> Timing:
    return Timing(
        queue_ms=message.queue_ms,
        tokenize_ms=message.tokenize_ms,
        compute_ms=message.compute_ms,
        total_ms=message.total_ms,
        ttft_ms=message.ttft_ms,
    )


def embed_result(response: "pb.Response") -> EmbedResult:
    return EmbedResult(
        embeddings=[list(embedding.values) for embedding in response.embed.embeddings],
        dimensions=response.embed.dimensions,
        usage=usage_from(response.usage),
        timing=timing_from(response.timing),
    )


def rerank_results(response: "pb.Response") -> RerankResults:
    return RerankResults(
        results=[
            RerankResult(index=result.index, score=result.score, document=result.document)
            for result in response.rerank.results
        ],
        usage=usage_from(response.usage),
        timing=timing_from(response.timing),
    )


def generation_chunk(response: "pb.Response") -> GenerationChunk:
    chunk = response.generate
    return GenerationChunk(
        text=chunk.text,
        token_ids=list(chunk.token_ids),
        logprobs=[
            TokenLogprob(
                token_id=entry.token_id,
                logprob=entry.logprob,
                top=[TopLogprob(token_id=top.token_id, logprob=top.logprob, token=top.token)
                     for top in entry.top],
                token=entry.token,
            )
            for entry in chunk.logprobs
        ],
        finish_reason=chunk.finish_reason,
        final=response.final,
        reasoning=chunk.reasoning,
        tool_calls=[ToolCall(id=call.id, name=call.name, arguments=call.arguments)
                    for call in chunk.tool_calls],
        usage=usage_from(response.usage) if response.final else None,
        timing=timing_from(response.timing) if response.final else None,
    )


def tokenize_result(response: "pb.Response") -> TokenizeResult:
    return TokenizeResult(
        ids=list(response.tokenize.ids),
        tokens=list(response.tokenize.tokens),
        usage=usage_from(response.usage),
        timing=timing_from(response.timing),
    )


def model_infos(response: "pb.Response") -> List[ModelInfo]:
    return [
        ModelInfo(
            name=model.name,
            task=model.task,
            state=model.state,
            path=model.path,
            weights_bytes=model.weights_bytes,
            kv_bytes=model.kv_bytes,
            max_input_tokens=model.max_input_tokens,
            dimensions=model.dimensions,
            error=model.error,
            residency=model.residency,
            source=model.source,
        )
        for model in response.list_models.models
    ]


def daemon_status(response: "pb.Response") -> DaemonStatus:
    status = response.status
    return DaemonStatus(
        version=status.version,
        uptime_s=status.uptime_s,
        connections=status.connections,
        requests_in_flight=status.requests_in_flight,
        mem_available_bytes=status.mem_available_bytes,
        memory_pressure_some_avg10=status.memory_pressure_some_avg10,
        models=[
            ModelStatus(
                name=model.name,
                running=model.running,
                waiting=model.waiting,
                kv_blocks_in_use=model.kv_blocks_in_use,
                kv_blocks_cached=model.kv_blocks_cached,
                kv_bytes_committed=model.kv_bytes_committed,
                requests_total=model.requests_total,
                preemptions_total=model.preemptions_total,
                prefix_cache_hit_blocks=model.prefix_cache_hit_blocks,
                generated_tokens_total=model.generated_tokens_total,
                state=model.state,
            )
            for model in status.models
        ],
    )


def health(response: "pb.Response") -> Health:
    return Health(
        ready=response.health.ready,
        status=response.health.status,
        reason=response.health.reason,
    )


class GenerationAccumulator:
    """Joins the chunks of one generation into a ``Generation``, for the non-streaming call."""

    def __init__(self) -> None:
        self._text: List[str] = []
        self._reasoning: List[str] = []
        self._tool_calls: List[ToolCall] = []
        self._token_ids: List[int] = []
        self._logprobs: List[TokenLogprob] = []
        self._last: Optional[GenerationChunk] = None

    def add(self, chunk: GenerationChunk) -> None:
        self._text.append(chunk.text)
        self._reasoning.append(chunk.reasoning)
        self._tool_calls.extend(chunk.tool_calls)
        self._token_ids.extend(chunk.token_ids)
        self._logprobs.extend(chunk.logprobs)
        self._last = chunk

    def result(self) -> Generation:
        last = self._last
        return Generation(
            text="".join(self._text),
            token_ids=self._token_ids,
            finish_reason=last.finish_reason if last else "",
            usage=(last.usage if last and last.usage else Usage()),
            timing=(last.timing if last and last.timing else Timing()),
            logprobs=self._logprobs,
            reasoning="".join(self._reasoning),
            tool_calls=self._tool_calls,
        )
