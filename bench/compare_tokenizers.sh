#!/usr/bin/env bash
# Encode throughput of sparkd's tokenizer against Hugging Face `tokenizers`, one core each,
# on the same few MB of text and the same tokenizer.json files.
#
#   bash bench/compare_tokenizers.sh [BUILD_DIR] [TOKENIZER_NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
shift || true
names=("$@")
if ((${#names[@]} == 0)); then
  names=(qwen2_bytelevel_bpe llama3_bytelevel_bpe gpt2_bytelevel_bpe all_minilm_l6_v2
         llama2_sentencepiece_bpe xlmr_unigram)
fi

text=$(mktemp --suffix=.txt)
trap 'rm -f "$text"' EXIT
# Text at hand: the Python standard library's source (code, comments, docstrings in
# English) and the multilingual fixture corpus, about 4 MB, one document per line.
python3 - "$text" <<'PY'
import json, pathlib, sys, sysconfig
out = []
stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
for path in sorted(stdlib.glob("*.py")):
    out.extend(l for l in path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip())
    if sum(map(len, out)) > 3_500_000:
        break
corpus = json.load(open("tests/fixtures/tokenizers/corpus.json", encoding="utf-8"))
for _ in range(20):
    out.extend(s.replace("\n", " ") for s in corpus if s.strip())
pathlib.Path(sys.argv[1]).write_text("\n".join(out), encoding="utf-8")
PY
echo "text: $(wc -c <"$text") bytes, $(wc -l <"$text") documents; one core each"
for name in "${names[@]}"; do
  dir=tests/fixtures/tokenizers/$name
  taskset -c 0 "$BUILD/bench_tokenizer" "$dir" "$text" --repeat 3
  RAYON_NUM_THREADS=1 taskset -c 0 python3 bench/bench_tokenizer_python.py "$dir" "$text" --repeat 3
done
