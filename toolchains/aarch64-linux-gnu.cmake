# Cross toolchain for aarch64-linux-gnu with Debian's cross compiler (g++-aarch64-linux-gnu) and Debian's
# multiarch libraries (dpkg --add-architecture; scripts/bootstrap --arch does both).
# Set WAYBILL_SYSROOT to build against a board's root file system instead of multiarch.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(WAYBILL_TRIPLE aarch64-linux-gnu)
set(CMAKE_LIBRARY_ARCHITECTURE ${WAYBILL_TRIPLE})

set(CMAKE_C_COMPILER ${WAYBILL_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${WAYBILL_TRIPLE}-g++)

set(WAYBILL_SYSROOT "$ENV{WAYBILL_SYSROOT}" CACHE PATH "Target root file system; empty uses multiarch")
if(WAYBILL_SYSROOT)
  set(CMAKE_SYSROOT "${WAYBILL_SYSROOT}")
  set(CMAKE_FIND_ROOT_PATH "${WAYBILL_SYSROOT}")
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "${WAYBILL_SYSROOT}")
  set(_pc_root "${WAYBILL_SYSROOT}")
else()
  set(_pc_root "")
endif()
set(ENV{PKG_CONFIG_LIBDIR}
    "${_pc_root}/usr/lib/${WAYBILL_TRIPLE}/pkgconfig:${_pc_root}/usr/share/pkgconfig")

# Programs (protoc, the nanopb generator) run on the build machine; libraries and headers are
# the target's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# Tests and code generators built for the target run under QEMU user emulation (qemu-user).
find_program(WAYBILL_QEMU qemu-aarch64)
if(WAYBILL_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${WAYBILL_QEMU}")
endif()
