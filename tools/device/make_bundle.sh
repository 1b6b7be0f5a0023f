#!/usr/bin/env bash
# Builds what the GPU check runs on a lent GPU machine and packs it into .device-bundle.tar.xz
# (ignored by git; name it in the device tool's `carry`). That machine has CUDA but none of
# the Debian libraries sparkd links, and nothing can be installed there, so the binaries are
# built here (Release, sm_90 for its H100/H200 only, to keep the bundle small) and travel
# with the shared libraries they need beyond glibc, libstdc++ and the CUDA driver.
#
#   bash tools/device/make_bundle.sh        then, with the device tool:
#   run(command="bash tools/device/gpu_check.sh", carry=[".device-bundle.tar.xz"])
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=build-device
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPARKD_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target sparkd_gpu_tests bench_cuda sparkd-run

mkdir -p "$STAGE/bin" "$STAGE/lib"
for program in tests/sparkd_gpu_tests bench_cuda sparkd-run; do
  cp "$BUILD/$program" "$STAGE/bin/"
  strip "$STAGE/bin/$(basename "$program")"
done
# Every library the programs load, except the C library's own, libstdc++/libgcc (newer ones
# there read our binaries) and the CUDA driver (the machine's own must be used).
for program in "$STAGE"/bin/*; do
  ldd "$program" | awk '/=> \// {print $3}'
done | sort -u | while read -r library; do
  case "$(basename "$library")" in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux*) ;;
    libstdc++.so.* | libgcc_s.so.* | libcuda.so.*) ;;
    *) cp -L "$library" "$STAGE/lib/" ;;
  esac
done
tar -C "$STAGE" -cJf "$ROOT/.device-bundle.tar.xz" bin lib
grep -qx '/.device-bundle.tar.xz' .git/info/exclude 2>/dev/null ||
  echo '/.device-bundle.tar.xz' >>.git/info/exclude
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
bundle=$(stat -c %s .device-bundle.tar.xz)
echo "bundle: $((bundle >> 20)) MiB; with the tracked tree $(((tracked + bundle) >> 20)) MiB of the 64 MiB a call carries"
