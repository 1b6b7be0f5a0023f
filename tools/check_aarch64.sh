#!/usr/bin/env bash
# Cross-compiles the CPU backend and its unit test for aarch64 and runs the test under qemu.
#
# Why: sparkd's production target, the NVIDIA DGX Spark (GB10), has an aarch64 CPU
# (Cortex-X925 / Cortex-A725: NEON, SVE2). The CPU backend has x86 AVX2/AVX-512 kernels picked
# at run time and a portable path (GCC/Clang vector extensions and `#pragma omp simd` loops)
# that every other CPU runs, but CI builds on x86 only, so it never compiles the aarch64 side
# of the `SPARKD_CPU_X86` guards, nor runs the portable kernels with aarch64's code
# generation (FMA contraction, unsigned char, NEON). This script does both, on an x86 host.
# qemu's speed says nothing about the Spark's, so it times nothing.
#
# Usage: tools/check_aarch64.sh [extra compiler flags...]
#   e.g. tools/check_aarch64.sh -march=armv9-a+sve2   (also builds the SVE2 auto-vectorised code;
#   the Spark's own tuning would be -mcpu=cortex-x925 (GCC 15+) or -mcpu=neoverse-v2
#   (GCC 13+), which Debian 12's GCC 12 cross compiler does not know; its nearest are
#   -mcpu=demeter (GCC 12's name for Neoverse V2) and -mcpu=cortex-x2.)
# The default is baseline armv8-a, so the binary runs on any aarch64 CPU.
# Environment: BUILD_DIR (default /tmp/aarch64-build), OMP_NUM_THREADS (default 2).
#
# Installs what is missing from Debian 12 packages (g++-aarch64-linux-gnu brings the arm64
# libstdc++ and libgomp; qemu-user; catch2), like tools/setup.sh: idempotent, and quick when
# everything is there. Not part of CI. Prints PASS or FAIL last; exits non-zero on FAIL.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-/tmp/aarch64-build}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
CXX=aarch64-linux-gnu-g++
SYSROOT=/usr/aarch64-linux-gnu

fail() {
  echo "check_aarch64: $*" >&2
  echo "FAIL"
  exit 1
}

# ---- packages ---------------------------------------------------------------------------
PACKAGES=(g++-aarch64-linux-gnu catch2)
# qemu-user-static provides the same emulator under another name.
command -v qemu-aarch64 >/dev/null || command -v qemu-aarch64-static >/dev/null ||
  PACKAGES+=(qemu-user)
missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]} > 0)); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || fail "run as root (missing: ${missing[*]})"
    SUDO=sudo
  fi
  echo "check_aarch64: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" || fail "apt-get install failed"
fi
QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static) || fail "no qemu-aarch64"
[[ -f $SYSROOT/lib/libgomp.so.1 ]] || fail "no arm64 libgomp in $SYSROOT/lib (libgomp1-arm64-cross)"

# ---- build ------------------------------------------------------------------------------
# The project's warning set (CMakeLists.txt), as errors.
FLAGS=(-std=c++20 -O2 -fopenmp -I"$PWD" -DSPARKD_SOURCE_DIR=\"$PWD\"
       -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion -Werror "$@")
SOURCES=(engine/backend/cpu/*.cpp engine/backend/tensor.cpp common/status.cpp
         engine/model/gguf.cpp engine/model/posix_file.cpp
         tests/unit/test_cpu_backend.cpp tests/unit/test_quant_linear.cpp
         tests/unit/test_dequantize.cpp tests/unit/main.cpp)

rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
echo "check_aarch64: $($CXX --version | head -n1)"
echo "check_aarch64: compiling ${#SOURCES[@]} files for aarch64 (${*:-baseline armv8-a})"
export CXX BUILD_DIR
printf '%s\n' "${SOURCES[@]}" |
  xargs -P "$(nproc)" -I{} sh -c \
    'o="$BUILD_DIR/$(echo "$0" | tr / _).o"
     # As CMakeLists.txt: the reference dequantization is compiled without FMA contraction.
     case "$0" in *cpu_dequantize.cpp) set -- "$@" -ffp-contract=off ;; esac
     exec "$CXX" "$@" -c "$0" -o "$o"' \
    {} "${FLAGS[@]}" ||
  fail "aarch64 compile failed"
$CXX "${FLAGS[@]}" "$BUILD_DIR"/*.o -o "$BUILD_DIR/test_cpu_backend" || fail "aarch64 link failed"
if command -v file >/dev/null; then
  file "$BUILD_DIR/test_cpu_backend" | grep -q aarch64 || fail "the test binary is not aarch64"
fi

# ---- run --------------------------------------------------------------------------------
# The [cpu_backend] and [quant_linear] cases run the default, "avx2", portable and one-thread
# backends. Off x86 the float kernels of the first two fall back to the portable ones
# (detected_simd_level() is kPortable); the quantized ones run the int8 matrix-multiply
# (smmla) and dot-product (sdot) kernels, which qemu's default CPU model has
# (SPARKD_EXPECT_ARM_INT8 makes the test check that they were detected). [dequantize] checks
# every quantized type bit for bit against the gguf package.
TAGS="[cpu_backend],[quant_linear],[dequantize]"
echo "check_aarch64: running $TAGS under $QEMU (OMP_NUM_THREADS=$OMP_NUM_THREADS)"
if SPARKD_EXPECT_ARM_INT8=1 "$QEMU" -L "$SYSROOT" "$BUILD_DIR/test_cpu_backend" "$TAGS" \
  --warn NoTests; then
  echo "PASS"
else
  fail "$TAGS failed under qemu-aarch64"
fi
