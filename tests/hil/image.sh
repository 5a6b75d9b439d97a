#!/usr/bin/env bash
# CTest test hil.image (the fixture of the HIL tests): builds the qemu-virt-aarch64 board's image
# from the aarch64 cross tree that scripts/test built, with boards/qemu-virt-aarch64/build-image.
#
#   image.sh BUILD_DIR        (build/aarch64 of the checkout)
#
# Exit 77 (CTest: skipped) when there is no aarch64 cross build (scripts/test --no-cross, or no
# arm64 packages: WAYBILL_CROSS_SKIP); the HIL tests then skip too. A cross build whose waybilld
# is older than the sources fails: the board would not run the code under test.
set -euo pipefail
dir=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
build_cmd="cmake --preset aarch64 && cmake --build --preset aarch64 --target waybilld"

for skipped in ${WAYBILL_CROSS_SKIP:-}; do
  if [[ $skipped == aarch64 ]]; then
    echo "hil.image: skipped: scripts/test did not build aarch64 (--no-cross, or no arm64 packages)"
    exit 77
  fi
done
if [[ ! -x $dir/firmware/waybilld ]]; then
  echo "hil.image: skipped: no $dir/firmware/waybilld. Build it with: $build_cmd"
  echo "  (./scripts/test builds it before running the tests)"
  exit 77
fi
if [[ -f $dir/build.ninja ]]; then
  pending=$(ninja -C "$dir" -n waybilld 2>&1) || { echo "hil.image: 'ninja -n' failed: $pending"; exit 1; }
  if ! grep -q 'no work to do' <<<"$pending"; then
    echo "hil.image: $dir/firmware/waybilld is older than the sources. Rebuild it with: $build_cmd"
    exit 1
  fi
fi
exec "$src/boards/qemu-virt-aarch64/build-image" --build-dir "$dir" --no-build
