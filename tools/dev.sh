#!/usr/bin/env bash
# The two commands of the README, and the pieces they are made of.
#
#   tools/dev.sh run    install dependencies, build, and run the daemon on config.toml
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
    # The daemon on the repository's config.toml: the real all-MiniLM-L6-v2 (installed by
    # tools/setup.sh) and two tiny demo models, on build/sparkd.sock; metrics on :9464.
    echo "sparkd: try   build/sparkctl --socket build/sparkd.sock models   in another terminal" >&2
    exec build/sparkd --config config.toml
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
