#!/usr/bin/env bash
# CTest test hil.image (the fixture of the HIL tests): builds the qemu-virt-aarch64 board's image
# with boards/qemu-virt-aarch64/build-image from the arm64 waybill package that scripts/test made
# (scripts/package --arch arm64, from the aarch64 cross tree).
#
#   image.sh BUILD_DIR PACKAGE_DIR      (build/aarch64 and build/packages/qemu-virt-aarch64)
#
# Exit 77 (CTest: skipped) when there is no aarch64 cross build (scripts/test --no-cross, or no
# arm64 packages: WAYBILL_CROSS_SKIP); the HIL tests then skip too. A package older than the
# programs of the tree fails: the board would not run the code under test.
set -euo pipefail
dir=$1 packages=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
build_cmd="./scripts/package --arch arm64"

for skipped in ${WAYBILL_CROSS_SKIP:-}; do
  if [[ $skipped == aarch64 ]]; then
    echo "hil.image: skipped: scripts/test did not build aarch64 (--no-cross, or no arm64 packages)"
    exit 77
  fi
done
shopt -s nullglob
debs=("$packages"/waybill_*_arm64.deb)
if [[ ${#debs[@]} -ne 1 || ! -x $dir/firmware/waybilld ]]; then
  echo "hil.image: skipped: no arm64 waybill package in $packages (or no $dir). Make it with:"
  echo "  $build_cmd   (./scripts/test does before running the tests)"
  exit 77
fi
deb=${debs[0]}
for p in firmware/waybilld tools/waybillctl/waybillctl; do
  if [[ $dir/$p -nt $deb ]]; then
    echo "hil.image: $deb is older than $dir/$p. Rebuild it: $build_cmd"
    exit 1
  fi
done
sysroot=$(sed -n 's/^WAYBILL_SYSROOT:[A-Z]*=//p' "$dir/CMakeCache.txt" 2>/dev/null || true)
exec "$src/boards/qemu-virt-aarch64/build-image" --deb "$deb" ${sysroot:+--sysroot "$sysroot"}
