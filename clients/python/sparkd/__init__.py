"""Python client for sparkd, the model-serving daemon: embed, rerank and generate over its
Unix socket.

    from sparkd import Client
    with Client() as client:
        vectors = client.embed("minilm", ["hello"]).embeddings

``Client`` is synchronous and thread-safe; ``AsyncClient`` is its asyncio twin. Failures raise
``SparkdError`` carrying the daemon's gRPC-style code.
"""

from .aio import AsyncClient, AsyncGenerateStream
from .client import Client, GenerateStream
from .errors import SparkdError
from ._protocol import DEFAULT_SOCKET_PATH, SOCKET_ENV
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

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncGenerateStream",
    "Client",
    "DEFAULT_SOCKET_PATH",
    "DaemonStatus",
    "EmbedResult",
    "GenerateStream",
    "Generation",
    "GenerationChunk",
    "Health",
    "ModelInfo",
    "ModelStatus",
    "RerankResult",
    "RerankResults",
    "SOCKET_ENV",
    "SparkdError",
    "Timing",
    "TokenizeResult",
    "TokenLogprob",
    "ToolCall",
    "TopLogprob",
    "Usage",
]
