"""Calls every RPC of a running sparkd through the Python client (sync and asyncio) and prints
the results as one JSON object, for the daemon integration test to compare with the engine's
own results. Models: "embed", "rerank" and "gen" (the test's fixture config).

    python3 dump_rpcs.py SOCKET
"""

import asyncio
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import sparkd  # noqa: E402

TEXTS = ["the quick brown fox", "unified memory on one box", "a reranker scores pairs"]


def sync_calls(socket: str) -> dict:
    out: dict = {}
    with sparkd.Client(socket, timeout=120) as client:
        out["health"] = dataclasses.asdict(client.health())
        out["models"] = sorted(m.name for m in client.models())
        out["embed"] = client.embed("embed", TEXTS).embeddings
        ranked = client.rerank("rerank", "what is unified memory", TEXTS, return_documents=True)
        out["rerank"] = [[r.index, r.score, r.document] for r in ranked.results]
        generation = client.generate("gen", prompt="The daemon serves", max_tokens=12,
                                     temperature=0, ignore_eos=True)
        out["generate"] = {"token_ids": generation.token_ids, "text": generation.text,
                           "finish_reason": generation.finish_reason}
        streamed_ids, streamed_text = [], ""
        for chunk in client.generate_stream("gen", prompt="The daemon serves", max_tokens=12,
                                            temperature=0, ignore_eos=True):
            streamed_ids += chunk.token_ids
            streamed_text += chunk.text
        out["generate_stream"] = {"token_ids": streamed_ids, "text": streamed_text}
        tokens = client.tokenize("gen", "héllo wörld", return_tokens=True)
        out["tokenize"] = {"ids": tokens.ids, "tokens": tokens.tokens}
        out["detokenize"] = client.detokenize("gen", tokens.ids)
        out["status_models"] = sorted(m.name for m in client.status().models)
        try:
            client.embed("no-such-model", ["x"])
            out["error"] = None
        except sparkd.SparkdError as error:
            out["error"] = error.code
    return out


async def async_calls(socket: str) -> dict:
    async with await sparkd.AsyncClient.connect(socket, timeout=120) as client:
        embed = await client.embed("embed", TEXTS)
        streamed = []
        async for chunk in client.generate_stream("gen", prompt="The daemon serves",
                                                  max_tokens=12, temperature=0,
                                                  ignore_eos=True):
            streamed += chunk.token_ids
        return {"embed": embed.embeddings, "generate_stream": streamed}


def main() -> None:
    socket = sys.argv[1]
    result = sync_calls(socket)
    result["async"] = asyncio.run(async_calls(socket))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
