#!/usr/bin/env python3
"""The same measurement as bench_tokenizer.cpp, with Hugging Face `tokenizers` on one core.

    RAYON_NUM_THREADS=1 python3 bench/bench_tokenizer_python.py TOKENIZER_DIR TEXT_FILE [--repeat N]

Documents are encoded one call at a time (Tokenizer.encode), as a server receives them;
encode_batch would use the library's thread pool, which is not what we compare.
"""
import argparse
import os
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Tokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tokenizer")
    parser.add_argument("text")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--paragraphs", action="store_true")
    args = parser.parse_args()
    path = args.tokenizer
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    tok = Tokenizer.from_file(path)
    # Some real tokenizer.json files (all-MiniLM-L6-v2) enable truncation and padding to 128;
    # sparkd applies truncation only when asked, so compare the plain encode.
    tok.no_truncation()
    tok.no_padding()
    with open(args.text, "rb") as f:
        data = f.read().decode("utf-8", "replace")
    sep = "\n\n" if args.paragraphs else "\n"
    docs = [d for d in data.split(sep) if d]
    best = float("inf")
    tokens = nbytes = 0
    for _ in range(max(1, args.repeat)):
        tokens = nbytes = 0
        start = time.perf_counter()
        for d in docs:
            tokens += len(tok.encode(d, add_special_tokens=False).ids)
        best = min(best, time.perf_counter() - start)
        nbytes = sum(len(d.encode("utf-8")) for d in docs)
    print(
        f"python  {args.tokenizer:<28} docs={len(docs)} bytes={nbytes} tokens={tokens} "
        f"best_of={args.repeat} time={best:.3f}s  {nbytes / best / 1e6:.2f} MB/s  "
        f"{tokens / best:.0f} tokens/s"
    )


if __name__ == "__main__":
    main()
