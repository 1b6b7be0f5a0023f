#!/usr/bin/env python3
"""Load a running sparkd over its socket and print measured figures: embed throughput and
latency percentiles, and streaming generation throughput, time to first token and
inter-token latency. Uses the Python client (clients/python), one connection per worker.

    bench/bench_daemon.py --socket build/sparkd.sock --embed-model minilm --generate-model smollm2
"""

import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))

import sparkd  # noqa: E402

WORDS = ("memory bandwidth token spark model batch cache quick unified governor prefill decode "
         "kernel socket daemon embedding reranker retrieval").split()


def sentence(i: int, words: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(words))


def percentiles(values, points=(50, 95, 99)):
    ordered = sorted(values)
    if not ordered:
        return {p: float("nan") for p in points}
    return {p: ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] for p in points}


def run_workers(count, work):
    threads = [threading.Thread(target=work, args=(w,)) for w in range(count)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def bench_embed(args):
    latencies, tokens = [], [0]
    lock = threading.Lock()

    def work(worker):
        with sparkd.Client(args.socket) as client:
            for r in range(args.embed_requests // args.concurrency):
                inputs = [sentence(worker * 1000 + r * args.batch + i, args.words) for i in range(args.batch)]
                t0 = time.perf_counter()
                result = client.embed(args.embed_model, inputs)
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    tokens[0] += result.usage.prompt_tokens

    wall = run_workers(args.concurrency, work)
    inputs = len(latencies) * args.batch
    p = percentiles(latencies)
    print(f"embed {args.embed_model}: {len(latencies)} requests x {args.batch} inputs, "
          f"concurrency {args.concurrency}: {inputs / wall:.1f} inputs/s, {tokens[0] / wall:.0f} tok/s; "
          f"latency p50 {p[50] * 1e3:.1f} ms, p95 {p[95] * 1e3:.1f} ms, p99 {p[99] * 1e3:.1f} ms")


def bench_generate(args):
    ttfts, gaps, produced = [], [], [0]
    lock = threading.Lock()

    def work(worker):
        with sparkd.Client(args.socket) as client:
            for r in range(args.generate_requests // args.concurrency):
                t0 = time.perf_counter()
                last = None
                count = 0
                for chunk in client.generate_stream(args.generate_model, prompt=sentence(worker + r, 16),
                                                    max_tokens=args.max_tokens, ignore_eos=True,
                                                    temperature=0.7, seed=worker * 100 + r):
                    now = time.perf_counter()
                    if chunk.token_ids:
                        with lock:
                            if last is None:
                                ttfts.append(now - t0)
                            else:
                                gaps.append((now - last) / len(chunk.token_ids))
                        last = now
                        count += len(chunk.token_ids)
                with lock:
                    produced[0] += count

    wall = run_workers(args.concurrency, work)
    t, g = percentiles(ttfts), percentiles(gaps)
    print(f"generate {args.generate_model}: {args.generate_requests} streams x {args.max_tokens} tokens, "
          f"concurrency {args.concurrency}: {produced[0] / wall:.1f} tok/s; "
          f"TTFT p50 {t[50] * 1e3:.1f} ms, p99 {t[99] * 1e3:.1f} ms; "
          f"inter-token p50 {g[50] * 1e3:.2f} ms, p99 {g[99] * 1e3:.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", default=os.environ.get("SPARKD_SOCKET", "/run/sparkd/sparkd.sock"))
    parser.add_argument("--embed-model", default="minilm")
    parser.add_argument("--generate-model", default="")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--embed-requests", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="inputs per embed request")
    parser.add_argument("--words", type=int, default=24, help="words per input")
    parser.add_argument("--generate-requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    if args.embed_model:
        bench_embed(args)
    if args.generate_model:
        bench_generate(args)


if __name__ == "__main__":
    main()
