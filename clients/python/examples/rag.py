#!/usr/bin/env python3
"""Retrieval-augmented generation over sparkd, end to end, in plain Python.

    pip install ./clients/python      # once: the client and the protobuf runtime it needs
    python3 clients/python/examples/rag.py "How do I keep sourdough starter alive?"

1. embed a small built-in corpus and the question with an embedding model,
2. retrieve the 4 passages closest to the question (cosine similarity; the embeddings are
   L2-normalised, so it is a dot product),
3. rerank those passages with a cross-encoder,
4. ask a generator to answer from the best passages, streaming the answer to stdout.

It runs against the default config.toml's demo models. The demo reranker ("rerank-demo") has
random weights, so its scores are meaningless; the generator ("smollm2", SmolLM2-135M-Instruct)
is real but small. Point --rerank-model/--generate-model at larger models for better answers.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence, Tuple

# Run from a checkout: make the package next to this folder importable (it is then used even
# if an older client is installed, so the example and the client match).
CLIENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, CLIENT_DIR)

try:
    from sparkd import Client, SparkdError, Timing  # noqa: E402
except ModuleNotFoundError as missing:
    # The client needs the protobuf runtime, which this interpreter may lack (a pyenv or venv
    # python3 run against a checkout). Say what to install instead of printing a traceback.
    if missing.name is None or missing.name.split(".")[0] != "google":
        raise
    print(
        f"{os.path.basename(__file__)}: the sparkd client needs the protobuf runtime, which "
        f"{sys.executable} lacks ({missing}); install the client, which brings it: "
        f"{sys.executable} -m pip install {CLIENT_DIR} (or run this with a python3 that has "
        "protobuf, e.g. Debian's /usr/bin/python3 after apt install python3-protobuf)",
        file=sys.stderr,
    )
    sys.exit(2)

CORPUS = [
    # bread
    "A sourdough starter is a culture of wild yeast and lactic acid bacteria kept in flour and water.",
    "Feed a sourdough starter daily with equal weights of flour and water to keep it active.",
    "Bread dough rises because yeast ferments sugars and releases carbon dioxide gas.",
    # astronomy
    "Jupiter is the largest planet in the solar system and is mostly hydrogen and helium.",
    "The Moon's phases come from how much of its sunlit half we see from Earth.",
    "A light-year is the distance light travels in one year, about 9.46 trillion kilometres.",
    # cycling
    "Check bicycle tyre pressure weekly; under-inflated tyres wear faster and puncture easily.",
    "A clean, lightly oiled chain shifts smoothly and makes the drivetrain last longer.",
    "Disc brakes stop reliably in the wet because the rotor sits away from road spray.",
    # memory hardware
    "LPDDR5X memory is shared by the CPU and GPU on unified-memory systems such as the GB10.",
    "Token generation speed of a language model is bounded by memory bandwidth, not compute.",
    "Batching many sequences together lets one read of the weights serve every sequence.",
]

DEFAULT_QUESTION = "How do I keep a sourdough starter healthy?"
TOP_K_RETRIEVE = 4


def timing_line(timing: Timing) -> str:
    return (
        f"queue {timing.queue_ms:.1f} ms, tokenize {timing.tokenize_ms:.1f} ms, "
        f"compute {timing.compute_ms:.1f} ms, total {timing.total_ms:.1f} ms"
    )


def dot(left: Sequence[float], right: Sequence[float]) -> float:
    return sum(a * b for a, b in zip(left, right))


def retrieve(
    question_vector: Sequence[float], passage_vectors: Sequence[Sequence[float]], top_k: int
) -> List[Tuple[int, float]]:
    """(passage index, cosine similarity) of the ``top_k`` nearest passages, nearest first."""
    scored = [(index, dot(question_vector, vector)) for index, vector in enumerate(passage_vectors)]
    scored.sort(key=lambda pair: pair[1], reverse=True)
    return scored[:top_k]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default=DEFAULT_QUESTION)
    parser.add_argument(
        "--socket", default=None, help="sparkd's socket (default: $SPARKD_SOCKET, then the daemon's)"
    )
    parser.add_argument("--embed-model", default="minilm")
    parser.add_argument("--rerank-model", default="rerank-demo")
    parser.add_argument("--generate-model", default="smollm2")
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args(argv)

    try:
        with Client(args.socket) as client:
            # 1. Embed. normalize=True makes cosine similarity a plain dot product.
            corpus = client.embed(args.embed_model, CORPUS, normalize=True)
            question = client.embed(args.embed_model, [args.question], normalize=True)
            print(
                f"[embed] {len(corpus.embeddings)} passages + 1 question, {corpus.dimensions} "
                f"dims, {corpus.usage.prompt_tokens + question.usage.prompt_tokens} tokens; "
                f"corpus: {timing_line(corpus.timing)}"
            )

            # 2. Retrieve.
            nearest = retrieve(question.embeddings[0], corpus.embeddings, TOP_K_RETRIEVE)
            print(f"[retrieve] top {len(nearest)} by cosine similarity:")
            for index, similarity in nearest:
                print(f"  {similarity:+.3f}  #{index}  {CORPUS[index]}")

            # 3. Rerank the retrieved passages against the question.
            candidates = [CORPUS[index] for index, _ in nearest]
            reranked = client.rerank(
                args.rerank_model, args.question, candidates, return_documents=True
            )
            print(f"[rerank] {timing_line(reranked.timing)}")
            for result in reranked:
                print(f"  {result.score:.3f}  #{nearest[result.index][0]}  {result.document}")

            # 4. Generate an answer from the best passages, streamed as it is produced.
            context = "\n".join(f"- {result.document}" for result in reranked)
            messages = [
                {
                    "role": "system",
                    "content": "Answer the question using only the passages given. "
                    "If they do not contain the answer, say so.",
                },
                {"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {args.question}"},
            ]
            print("[generate] ", end="", flush=True)
            with client.generate_stream(
                args.generate_model, messages=messages, max_tokens=args.max_tokens
            ) as stream:
                for chunk in stream:
                    print(chunk.text, end="", flush=True)
            print()
            usage = stream.usage
            timing = stream.timing
            if usage is not None and timing is not None:
                print(
                    f"[generate] finish_reason={stream.finish_reason}, "
                    f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens "
                    f"({usage.cached_prompt_tokens} prompt tokens cached); "
                    f"ttft {timing.ttft_ms:.1f} ms, {timing_line(timing)}"
                )
    except SparkdError as error:
        print(f"sparkd error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
