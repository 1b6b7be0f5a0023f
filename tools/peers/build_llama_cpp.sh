#!/usr/bin/env bash
# Builds llama.cpp, the peer sparkd's quantized engine is measured and checked against, into
# .deps/llama.cpp/ (git-ignored): llama-bench, llama-completion, llama-quantize,
# llama-tokenize and llama-gguf-split, plus convert_hf_to_gguf.py with its gguf-py, and our
# llama_logits (tools/peers/llama_logits.cpp) linked against its libraries.
#
# The source is the llama.cpp tree that the llama-cpp-python source distribution on PyPI
# carries under vendor/llama.cpp; nothing of it is committed to this repository. Idempotent:
# a finished build is kept (delete .deps/llama.cpp to rebuild).
#
#   tools/peers/build_llama_cpp.sh        # prints the bin/ directory when done
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=0.3.36
SRC_ROOT=.deps/src
SDIST_DIR="$SRC_ROOT/llama_cpp_python-$VERSION"
DEST=.deps/llama.cpp
TARGETS=(llama-bench llama-completion llama-quantize llama-tokenize llama-gguf-split)

# Our own tool against llama.cpp's libraries (tools/peers/llama_logits.cpp): its logits and
# greedy ids for a prompt, for the GGUF goldens. Rebuilt when its source is newer.
build_llama_logits() {
  local src=tools/peers/llama_logits.cpp out="$DEST/bin/llama_logits"
  [[ -x "$out" && "$out" -nt "$src" ]] && return 0
  local llama_src="$SDIST_DIR/vendor/llama.cpp" libs="$DEST/build"
  g++ -std=c++17 -O2 -fopenmp -I"$llama_src/include" -I"$llama_src/ggml/include" "$src" \
    "$libs/src/libllama.a" "$libs/ggml/src/libggml.a" "$libs/ggml/src/libggml-cpu.a" \
    "$libs/ggml/src/libggml-base.a" -lpthread -ldl -o "$out" >&2
}

if [[ -f "$DEST/.built-$VERSION" ]]; then
  build_llama_logits
  echo "$DEST/bin"
  exit 0
fi

if [[ ! -d "$SDIST_DIR/vendor/llama.cpp" ]]; then
  mkdir -p "$SRC_ROOT"
  echo "build_llama_cpp: fetching the llama-cpp-python==$VERSION source distribution" >&2
  python3 -m pip download --quiet --no-deps --no-binary :all: --disable-pip-version-check \
    -d "$SRC_ROOT" "llama-cpp-python==$VERSION"
  tar -xzf "$SRC_ROOT/llama_cpp_python-$VERSION.tar.gz" -C "$SRC_ROOT"
fi
LLAMA_SRC="$SDIST_DIR/vendor/llama.cpp"

# Native: this build only ever runs on the machine that built it (benchmarks and goldens).
# No curl (nothing is downloaded), no tests or examples beyond the tools named above.
cmake -S "$LLAMA_SRC" -B "$DEST/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$DEST/build" -j "$(nproc)" --target "${TARGETS[@]}" >&2
mkdir -p "$DEST/bin"
for target in "${TARGETS[@]}"; do cp "$DEST/build/bin/$target" "$DEST/bin/"; done
# The converter and the gguf-py package it imports, beside the binaries.
rm -rf "$DEST/convert" && mkdir -p "$DEST/convert"
cp "$LLAMA_SRC/convert_hf_to_gguf.py" "$DEST/convert/"
[[ -d "$LLAMA_SRC/conversion" ]] && cp -r "$LLAMA_SRC/conversion" "$DEST/convert/"
cp -r "$LLAMA_SRC/gguf-py" "$DEST/convert/gguf-py"
touch "$DEST/.built-$VERSION"
build_llama_logits
echo "$DEST/bin"
