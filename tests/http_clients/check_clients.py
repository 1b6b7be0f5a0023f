"""The HTTP clients users already have, against a running sparkd: the official `openai`
package, `ollama` and `langchain-openai`. Each result is compared with what sparkd's own
Python client gets over the Protobuf socket for the same request (the same service path, so
the same tokens and vectors). Models: "embed", "rerank" and "gen" (the test's fixture config).

    python check_clients.py HTTP_PORT SOCKET

Prints one JSON object of what was checked, and exits 1 (with the failed check) on a mismatch.
It runs in the venv tools/setup.sh makes (.deps/http-clients), which sees Debian's protobuf.
"""

import array
import base64
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))

import httpx  # noqa: E402
import langchain_openai  # noqa: E402
import ollama  # noqa: E402
import openai  # noqa: E402

import sparkd  # noqa: E402

CHECKED = []


def check(name, condition, detail=""):
    if not condition:
        print(json.dumps({"failed": name, "detail": str(detail)[:2000]}))
        sys.exit(1)
    CHECKED.append(name)


def close(a, b, tolerance=1e-5):
    return len(a) == len(b) and all(math.isclose(x, y, abs_tol=tolerance) for x, y in zip(a, b))


def normalized(values):
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def main():
    port, socket = int(sys.argv[1]), sys.argv[2]
    base = f"http://127.0.0.1:{port}"
    ref = sparkd.Client(socket, timeout=120)
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "hello there"}]
    chat_ref = ref.generate("gen", messages=messages, max_tokens=10, temperature=0)
    prompt_ref = ref.generate("gen", prompt="Once upon", max_tokens=12, temperature=0)
    texts = ["the quick brown fox", "unified memory on one box"]
    embed_ref = ref.embed("embed", texts).embeddings

    # ---- openai ----
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
    ids = sorted(m.id for m in client.models.list())
    check("openai models.list", ids == ["embed", "gen", "rerank"], ids)

    chat = client.chat.completions.create(model="gen", messages=messages, max_tokens=10,
                                          temperature=0)
    check("openai chat content", chat.choices[0].message.content == chat_ref.text,
          (chat.choices[0].message.content, chat_ref.text))
    check("openai chat finish_reason", chat.choices[0].finish_reason == chat_ref.finish_reason)
    check("openai chat usage", chat.usage.completion_tokens == len(chat_ref.token_ids))

    stream = client.chat.completions.create(model="gen", messages=messages, max_tokens=10,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    check("openai chat stream content", "".join(parts) == chat_ref.text, parts)
    check("openai chat stream finish_reason", finish == chat_ref.finish_reason, finish)
    check("openai chat stream usage",
          usage is not None and usage.completion_tokens == len(chat_ref.token_ids), usage)

    lp = client.chat.completions.create(model="gen", messages=messages, max_tokens=3,
                                        temperature=0, logprobs=True, top_logprobs=2)
    content = lp.choices[0].logprobs.content
    check("openai chat logprobs", len(content) == 3 and all(len(t.top_logprobs) == 2 for t in content)
          and all(t.logprob <= 0 for t in content), lp.choices[0].logprobs)

    completion = client.completions.create(model="gen", prompt="Once upon", max_tokens=12,
                                           temperature=0)
    check("openai completions text", completion.choices[0].text == prompt_ref.text,
          (completion.choices[0].text, prompt_ref.text))

    # Left to itself the SDK asks for base64 and decodes it; asked for base64, it hands the
    # string over (little-endian float32); asked for float, it gets lists.
    embedded = client.embeddings.create(model="embed", input=texts)
    check("openai embeddings (the SDK's base64)",
          all(close(e.embedding, r) for e, r in zip(embedded.data, embed_ref)))
    embedded = client.embeddings.create(model="embed", input=texts, encoding_format="float")
    check("openai embeddings (float)",
          all(close(e.embedding, r) for e, r in zip(embedded.data, embed_ref)))
    embedded = client.embeddings.create(model="embed", input=texts, encoding_format="base64")
    decoded = [list(array.array("f", base64.b64decode(e.embedding))) for e in embedded.data]
    check("openai embeddings (base64)", all(close(d, r) for d, r in zip(decoded, embed_ref)))
    short = client.embeddings.create(model="embed", input=texts[0], dimensions=8,
                                     encoding_format="float")
    check("openai embeddings dimensions",
          close(short.data[0].embedding, normalized(embed_ref[0][:8])))

    try:
        client.chat.completions.create(model="no-such-model", messages=messages)
        check("openai unknown model raises", False)
    except openai.NotFoundError as error:
        check("openai unknown model raises", "no-such-model" in str(error), error)
    try:
        client.chat.completions.create(model="gen", messages=messages, n=2)
        check("openai n=2 raises", False)
    except openai.BadRequestError as error:
        check("openai n=2 raises", "n = 1" in str(error), error)

    # Rerank: the Jina/Cohere shape (the SDK has no rerank call; httpx is what it uses).
    rerank_ref = ref.rerank("rerank", "memory", texts).results
    reranked = httpx.post(base + "/v1/rerank", json={"model": "rerank", "query": "memory",
                                                      "documents": texts}).json()
    check("rerank over HTTP", [(r["index"], r["relevance_score"]) for r in reranked["results"]]
          == [(r.index, r.score) for r in rerank_ref], reranked)

    # ---- ollama ----
    olla = ollama.Client(host=base)
    response = olla.chat(model="gen", messages=messages,
                         options={"temperature": 0, "num_predict": 10})
    check("ollama chat", response.message.content == chat_ref.text,
          (response.message.content, chat_ref.text))
    check("ollama chat counts", response.eval_count == len(chat_ref.token_ids)
          and response.done and response.total_duration > 0, response)
    streamed = "".join(part.message.content for part in olla.chat(
        model="gen", messages=messages, options={"temperature": 0, "num_predict": 10},
        stream=True))
    check("ollama chat stream", streamed == chat_ref.text, streamed)
    generated = olla.generate(model="gen", prompt="hello there", system="You are terse.",
                              options={"temperature": 0, "num_predict": 10})
    check("ollama generate", generated.response == chat_ref.text, generated.response)
    raw = olla.generate(model="gen", prompt="Once upon", raw=True,
                        options={"temperature": 0, "num_predict": 12})
    check("ollama generate raw", raw.response == prompt_ref.text, raw.response)
    embedded = olla.embed(model="embed", input=texts)
    unit_ref = ref.embed("embed", texts, normalize=True).embeddings
    check("ollama embed", all(close(e, r) for e, r in zip(embedded.embeddings, unit_ref)))
    names = sorted(m.model for m in olla.list().models)
    check("ollama list", names == ["embed", "gen", "rerank"], names)
    check("ollama ps", sorted(m.model for m in olla.ps().models) == ["embed", "gen", "rerank"])
    check("ollama show", "completion" in olla.show("gen").capabilities)
    try:
        olla.chat(model="no-such-model", messages=messages)
        check("ollama unknown model raises", False)
    except ollama.ResponseError as error:
        check("ollama unknown model raises", error.status_code == 404, error)

    # ---- langchain-openai ----
    llm = langchain_openai.ChatOpenAI(base_url=base + "/v1", api_key="unused", model="gen",
                                      temperature=0, max_tokens=10)
    answer = llm.invoke([("system", "You are terse."), ("human", "hello there")])
    check("langchain ChatOpenAI.invoke", answer.content == chat_ref.text,
          (answer.content, chat_ref.text))
    streamed = "".join(chunk.content for chunk in llm.stream(
        [("system", "You are terse."), ("human", "hello there")]))
    check("langchain ChatOpenAI.stream", streamed == chat_ref.text, streamed)
    # check_embedding_ctx_length=False: send text, not tiktoken ids (which are OpenAI's).
    embeddings = langchain_openai.OpenAIEmbeddings(base_url=base + "/v1", api_key="unused",
                                                   model="embed",
                                                   check_embedding_ctx_length=False)
    vectors = embeddings.embed_documents(texts)
    check("langchain OpenAIEmbeddings", all(close(v, r) for v, r in zip(vectors, embed_ref)))

    print(json.dumps({"checked": CHECKED}))


if __name__ == "__main__":
    main()
