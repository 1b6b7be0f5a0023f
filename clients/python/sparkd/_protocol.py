"""Mapping between the client's keyword arguments / result types and sparkd.v1 messages.

Shared by the sync and asyncio clients so that both build identical requests and read responses
the same way; the clients themselves only deal with ids, framing and waiting.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

from . import sparkd_pb2 as pb
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


def code_name(code: int) -> str:
    try:
        return str(pb.Code.Name(code))
    except ValueError:
        # A newer daemon may send a code this client does not know; keep it recognisable.
        return "UNKNOWN"


def raise_if_error(response: "pb.Response", expected_kind: str) -> None:
    """Raise the daemon's error, or a protocol error if the response answers something else.

    A successful response whose ``kind`` is unset is accepted: an empty result (no models, an
    empty final chunk) may legitimately serialize to nothing.
    """
    if response.HasField("error") and response.error.code != pb.OK:
        message = response.error.message
        if code_name(response.error.code) == "UNKNOWN" and response.error.code != pb.UNKNOWN:
            message = f"(code {response.error.code}) {message}"
        raise SparkdError(code_name(response.error.code), message, response.id)
    kind = response.WhichOneof("kind")
    if kind is not None and kind != expected_kind:
        raise SparkdError(
            "INTERNAL",
            f"protocol error: expected a {expected_kind!r} response, the daemon sent {kind!r}; "
            "the client and daemon versions may not match",
            response.id,
        )


def _as_list(value: "Union[str, Sequence[str], None]") -> List[str]:
    """Accept one string where a list of strings is expected (a lone str is not split)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


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
    embed.model = model
    embed.inputs.extend(_as_list(inputs))
    if normalize is not None:
        embed.normalize = normalize
    embed.truncate = truncate
    embed.priority = priority
    embed.deadline_ms = deadline_ms
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
    rerank.model = model
    rerank.query = query
    rerank.documents.extend(_as_list(documents))
    rerank.top_n = top_n
    rerank.return_documents = return_documents
    rerank.truncate = truncate
    rerank.raw_scores = raw_scores
    rerank.priority = priority
    rerank.deadline_ms = deadline_ms
    return request


def _role_and_content(message: MessageLike) -> "tuple[str, str]":
    if isinstance(message, Mapping):
        return str(message["role"]), str(message["content"])
    return str(message.role), str(message.content)


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
) -> "pb.Request":
    """Build a GenerateRequest; exactly one of ``prompt`` and ``messages`` must be given."""
    if (prompt is None) == (messages is None):
        raise SparkdError(
            "INVALID_ARGUMENT",
            "generate needs exactly one of prompt= (raw text) or messages= (a chat)",
        )
    request = pb.Request()
    generate = request.generate
    generate.model = model
    if prompt is not None:
        generate.prompt = prompt
    else:
        assert messages is not None
        chat = generate.chat
        # Touch the field so a chat with no messages is still sent as a chat.
        chat.SetInParent()
        for message in messages:
            role, content = _role_and_content(message)
            chat.messages.add(role=role, content=content)
        if add_generation_prompt is not None:
            chat.add_generation_prompt = add_generation_prompt

    sampling = generate.sampling
    if temperature is not None:
        sampling.temperature = temperature
    if top_p is not None:
        sampling.top_p = top_p
    sampling.top_k = top_k
    sampling.min_p = min_p
    if repetition_penalty is not None:
        sampling.repetition_penalty = repetition_penalty
    sampling.presence_penalty = presence_penalty
    sampling.frequency_penalty = frequency_penalty
    for token_id, bias in (logit_bias or {}).items():
        sampling.logit_bias.add(token_id=token_id, bias=bias)
    if seed is not None:
        sampling.seed = seed
    sampling.logprobs = logprobs
    if not sampling.ListFields():
        # All defaults: leave `sampling` unset rather than sending an empty message.
        generate.ClearField("sampling")

    generate.max_tokens = max_tokens
    generate.stop.extend(_as_list(stop))
    generate.stop_token_ids.extend(stop_token_ids or [])
    generate.include_stop_str_in_output = include_stop_str_in_output
    generate.ignore_eos = ignore_eos
    generate.stream = stream
    generate.priority = priority
    generate.deadline_ms = deadline_ms
    return request


def tokenize_request(
    model: str, text: str, add_special_tokens: bool, return_tokens: bool
) -> "pb.Request":
    request = pb.Request()
    request.tokenize.model = model
    request.tokenize.text = text
    request.tokenize.add_special_tokens = add_special_tokens
    request.tokenize.return_tokens = return_tokens
    return request


def detokenize_request(model: str, ids: Sequence[int], skip_special_tokens: bool) -> "pb.Request":
    request = pb.Request()
    request.detokenize.model = model
    request.detokenize.ids.extend(ids)
    request.detokenize.skip_special_tokens = skip_special_tokens
    return request


def cancel_request(target_id: int) -> "pb.Request":
    request = pb.Request()
    request.cancel.target_id = target_id
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


def load_request(name: str, path: str) -> "pb.Request":
    request = pb.Request()
    request.load.name = name
    request.load.path = path
    return request


def unload_request(name: str) -> "pb.Request":
    request = pb.Request()
    request.unload.name = name
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
                top=[TopLogprob(token_id=top.token_id, logprob=top.logprob) for top in entry.top],
            )
            for entry in chunk.logprobs
        ],
        finish_reason=chunk.finish_reason,
        final=response.final,
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
            )
            for model in status.models
        ],
    )


def health(response: "pb.Response") -> Health:
    return Health(ready=response.health.ready, status=response.health.status)


class GenerationAccumulator:
    """Joins the chunks of one generation into a ``Generation``, for the non-streaming call."""

    def __init__(self) -> None:
        self._text: List[str] = []
        self._token_ids: List[int] = []
        self._logprobs: List[TokenLogprob] = []
        self._last: Optional[GenerationChunk] = None

    def add(self, chunk: GenerationChunk) -> None:
        self._text.append(chunk.text)
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
        )
