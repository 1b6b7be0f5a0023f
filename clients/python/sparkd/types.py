"""Plain result types returned by the sparkd clients.

The clients convert protobuf messages into these dataclasses so that applications never depend
on generated code (which changes shape between protobuf releases) and get type hints and
readable reprs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional, overload


@dataclass(frozen=True)
class Usage:
    """Token counts of one request, as the daemon counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens served from the prefix cache
    total_tokens: int = 0


@dataclass(frozen=True)
class Timing:
    """Wall-clock milliseconds the daemon spent on one request, per phase."""

    queue_ms: float = 0.0
    tokenize_ms: float = 0.0
    compute_ms: float = 0.0
    total_ms: float = 0.0
    ttft_ms: float = 0.0  # generate only: received -> first token


@dataclass(frozen=True)
class EmbedResult:
    """One embedding per input, in input order."""

    embeddings: List[List[float]]
    dimensions: int
    usage: Usage
    timing: Timing


@dataclass(frozen=True)
class RerankResult:
    """One scored document; ``index`` is its position in the request's documents."""

    index: int
    score: float
    document: str = ""  # filled when return_documents=True


@dataclass(frozen=True)
class RerankResults:
    """The reranked documents, best score first; iterable and indexable like a list."""

    results: List[RerankResult]
    usage: Usage
    timing: Timing

    def __iter__(self) -> Iterator[RerankResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @overload
    def __getitem__(self, index: int) -> RerankResult: ...

    @overload
    def __getitem__(self, index: slice) -> List[RerankResult]: ...

    def __getitem__(self, index: "int | slice") -> "RerankResult | List[RerankResult]":
        return self.results[index]


@dataclass(frozen=True)
class TopLogprob:
    token_id: int
    logprob: float
    token: str = ""  # the token decoded alone (part of a UTF-8 character shows as U+FFFD)


@dataclass(frozen=True)
class TokenLogprob:
    """The sampled token's log-probability and, when asked for, the top alternatives."""

    token_id: int
    logprob: float
    top: List[TopLogprob] = field(default_factory=list)
    token: str = ""  # the token decoded alone


@dataclass(frozen=True)
class ToolCall:
    """A function call a chat model made, parsed from its output as its template defines."""

    id: str
    name: str
    arguments: str  # a JSON object, as text (OpenAI's shape)


@dataclass(frozen=True)
class GenerationChunk:
    """New text and tokens since the previous chunk of a streamed generation.

    ``finish_reason`` ("stop" | "length" | "tool_calls"), ``usage`` and ``timing`` are set on the final chunk
    only; ``final`` says which chunk that is.
    """

    text: str
    token_ids: List[int]
    logprobs: List[TokenLogprob] = field(default_factory=list)
    finish_reason: str = ""
    final: bool = False
    # Chat requests: new reasoning (between <think> and </think>) and tool calls completed
    # since the previous chunk, where the model's template marks them; ``text`` is the answer.
    reasoning: str = ""
    tool_calls: List[ToolCall] = field(default_factory=list)
    usage: Optional[Usage] = None
    timing: Optional[Timing] = None


@dataclass(frozen=True)
class Generation:
    """A whole generation: the text and tokens of every chunk joined."""

    text: str
    token_ids: List[int]
    finish_reason: str
    usage: Usage
    timing: Timing
    logprobs: List[TokenLogprob] = field(default_factory=list)
    reasoning: str = ""
    tool_calls: List[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class TokenizeResult:
    ids: List[int]
    tokens: List[str]  # each token's string, when return_tokens=True
    usage: Usage
    timing: Timing


@dataclass(frozen=True)
class ModelInfo:
    """A model the daemon knows and where it stands (state "loading" | "ready" | "unloading" |
    "failed").

    ``residency`` is "pinned" (kept loaded) or "on_demand"; ``source`` says where the model
    comes from: "config" (config.toml) or "admin" (a ``load`` call).
    """

    name: str
    task: str
    state: str
    path: str
    weights_bytes: int
    kv_bytes: int
    max_input_tokens: int
    dimensions: int
    error: str  # state "failed": why
    # Defaulted, so that code building a ModelInfo by hand (a test double) keeps working.
    residency: str = ""
    source: str = ""


@dataclass(frozen=True)
class ModelStatus:
    name: str
    running: int
    waiting: int
    kv_blocks_in_use: int
    kv_blocks_cached: int
    kv_bytes_committed: int
    requests_total: int
    preemptions_total: int
    prefix_cache_hit_blocks: int
    generated_tokens_total: int
    state: str = ""  # "loading" | "ready" | "unloading" | "failed"


@dataclass(frozen=True)
class DaemonStatus:
    """The daemon's counters: memory as the OS reports it, and per-model load."""

    version: str
    uptime_s: float
    connections: int
    requests_in_flight: int
    mem_available_bytes: int
    memory_pressure_some_avg10: float
    models: List[ModelStatus]


@dataclass(frozen=True)
class Health:
    """Whether the daemon can serve every pinned model now, and if not, why."""

    ready: bool  # every pinned model is loaded and the daemon is not draining
    status: str  # "serving" | "loading" | "degraded" (a pinned model failed to load) | "draining"
    reason: str = ""  # unless "serving": what is loading or failed, or why it drains
