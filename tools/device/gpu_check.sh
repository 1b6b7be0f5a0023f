#!/usr/bin/env bash
# The GPU check, in one call of the device tool (issue 16's proof), from the repository root
# with .device-bundle.tar.xz carried (tools/device/make_bundle.sh makes it):
#   1. the device, as nvidia-smi and sparkd-run see it;
#   2. sparkd_gpu_tests: every CUDA op against the CPU backend, the KV pool in CUDA virtual
#      memory, the model goldens on the CUDA backend (all but the real MiniLM, which does not
#      travel);
#   3. bench_cuda: bandwidth probe, synthetic 8B decode at batch 1..128 (BF16 and Q4_K),
#      prefill against cuBLAS, tiled against per-row prefill attention, and a MoE layer's
#      decode on the device against the host-grouped path.
# Logs go to $OUT (they come back); the last lines printed are the summary.
set -uo pipefail
ROOT=$PWD
OUT=${OUT:-/tmp/sparkd-gpu-check}
mkdir -p "$OUT"
BUNDLE=/tmp/sparkd-bundle
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE"
tar -C "$BUNDLE" -xJf "$ROOT/.device-bundle.tar.xz" || { echo "no .device-bundle.tar.xz"; exit 2; }
export LD_LIBRARY_PATH="$BUNDLE/lib:${LD_LIBRARY_PATH:-}"
# The test binary finds its fixtures under the source directory it was built in.
mkdir -p /work && [ -e /work/main ] || ln -s "$ROOT" /work/main

status=0
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  "$BUNDLE/bin/sparkd-run" devices
} 2>&1 | tee "$OUT/device.txt"

timeout 300 "$BUNDLE/bin/sparkd_gpu_tests" "~[minilm]" --durations yes 2>&1 |
  tee "$OUT/gpu_tests.log" | tail -40
gpu_tests=${PIPESTATUS[0]}
[ "$gpu_tests" -eq 0 ] || status=1

{
  timeout 150 "$BUNDLE/bin/bench_cuda" --weights bf16
  timeout 90 "$BUNDLE/bin/bench_cuda" --weights q4_k --quick
} 2>&1 | tee "$OUT/bench_cuda.txt"

echo "== summary: sparkd_gpu_tests exit $gpu_tests; bench in bench_cuda.txt"
grep -E "^(test cases|assertions)" "$OUT/gpu_tests.log" || true
exit $status
