#!/usr/bin/env bash
# CTest test cross.<preset>.unit of the host build: runs the unit tests of the cross build tree
# build/<preset> (aarch64, armhf), whose own CTest runs each test program under qemu-user
# (CMAKE_CROSSCOMPILING_EMULATOR). The programs are the cross build's, not the host build's:
# a host-asan run does not sanitise them.
#
#   run_unit.sh CTEST BUILD_DIR PRESET
#
# Exit 77 (CTest: skipped) when the cross build does not exist, or when scripts/test did not build
# it (WAYBILL_CROSS_SKIP lists such presets: --no-cross, or packages apt could not install). A cross build that exists but is
# older than the sources fails: its tests would not be the code under test.
set -euo pipefail
ctest=$1 dir=$2 preset=$3
build_cmd="cmake --preset $preset && cmake --build --preset $preset --target waybill_unit_tests"

for skipped in ${WAYBILL_CROSS_SKIP:-}; do
  if [[ $skipped == "$preset" ]]; then
    echo "cross.$preset.unit: skipped: scripts/test did not build $preset (--no-cross, or its"
    echo "  packages could not be installed: see the 'dependencies' step). Then: $build_cmd"
    exit 77
  fi
done

if [[ ! -f $dir/CTestTestfile.cmake ]]; then
  echo "cross.$preset.unit: skipped: $dir is not built. Build it with: $build_cmd"
  echo "  (./scripts/test builds it before running the tests)"
  exit 77
fi

if [[ -f $dir/build.ninja ]]; then
  if ! pending=$(ninja -C "$dir" -n waybill_unit_tests 2>&1); then
    echo "cross.$preset.unit: 'ninja -n' failed in $dir:"
    echo "$pending"
    exit 1
  fi
  if ! grep -q 'no work to do' <<<"$pending"; then
    echo "cross.$preset.unit: $dir is older than the sources. Rebuild it with: $build_cmd"
    echo "$pending" | head -5
    exit 1
  fi
fi

# --no-tests=error: a cross build configured without tests must not pass as an empty success.
exec "$ctest" --test-dir "$dir" -L unit --output-on-failure --no-tests=error
