"""sparkd through the ollama package (pip install ollama): a chat and embeddings against the
default config.toml's models, on the same port as the OpenAI API.

    python ollama_client.py [http://127.0.0.1:8000]
"""

import sys

import ollama

client = ollama.Client(host=sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")

print("models:", [model.model for model in client.list().models])
reply = client.chat(model="smollm2",
                    messages=[{"role": "user", "content": "What is the capital of France?"}],
                    options={"temperature": 0, "num_predict": 24})
print("chat:", reply.message.content, f"({reply.done_reason},", reply.eval_count, "tokens)")
print("embed:", len(client.embed(model="minilm", input="unified memory").embeddings[0]), "dims")
