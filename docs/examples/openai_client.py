"""sparkd through the official openai package (pip install openai): chat, a streamed chat,
and embeddings, against the default config.toml's models.

    python openai_client.py [http://127.0.0.1:8000]
"""

import sys

from openai import OpenAI

server = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
client = OpenAI(base_url=server + "/v1", api_key="unused")  # config.toml sets no API keys

print("models:", [model.id for model in client.models.list()])

chat = client.chat.completions.create(
    model="smollm2",
    messages=[{"role": "system", "content": "You answer in one sentence."},
              {"role": "user", "content": "What is the capital of France?"}],
    max_tokens=24, temperature=0)
print("chat:", chat.choices[0].message.content, f"({chat.choices[0].finish_reason},",
      chat.usage.prompt_tokens, "prompt +", chat.usage.completion_tokens, "completion tokens)")

print("stream:", end=" ")
for chunk in client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Count from 1 to 5."}],
        max_tokens=16, temperature=0, stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()

vectors = client.embeddings.create(model="minilm", input=["unified memory", "a GPU"])
print("embeddings:", len(vectors.data), "x", len(vectors.data[0].embedding), "dims,",
      vectors.usage.prompt_tokens, "tokens")
