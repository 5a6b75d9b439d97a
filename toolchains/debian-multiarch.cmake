# Shared part of the Debian cross toolchains; included by <triple>.cmake after it sets
# WAYBILL_TRIPLE, CMAKE_SYSTEM_PROCESSOR and WAYBILL_QEMU_NAME.
#
# Two ways to find the target's libraries:
#   - multiarch (the default): Debian's <lib>:arm64 / <lib>:armhf packages, installed beside the
#     build machine's own under /usr/lib/<triple> (scripts/bootstrap --arch installs them);
#   - a root file system: -DWAYBILL_SYSROOT=/path (or the WAYBILL_SYSROOT environment
#     variable), a board's holding the -dev packages listed in docs/CROSS.md, or the one that
#     scripts/bootstrap makes of Debian's packages when multiarch cannot install
#     (/var/cache/waybill/sysroot-<arch>).
# Either way headers and libraries are the target's and programs (protoc, the nanopb generator)
# the build machine's. Test programs run under qemu-user. docs/CROSS.md is the tech's guide.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_LIBRARY_ARCHITECTURE ${WAYBILL_TRIPLE})

set(CMAKE_C_COMPILER ${WAYBILL_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${WAYBILL_TRIPLE}-g++)

set(WAYBILL_SYSROOT "$ENV{WAYBILL_SYSROOT}" CACHE PATH "Target root file system; empty uses multiarch")
# try_compile projects (compiler and feature checks) read this file again, in the same process:
# without the variable they would compile against multiarch and reset the pkg-config
# environment below to it.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES WAYBILL_SYSROOT)

# pkg-config must see only the target's .pc files: a PKG_CONFIG_PATH of the user's would put
# the build machine's libraries first.
set(ENV{PKG_CONFIG_PATH} "")
if(WAYBILL_SYSROOT)
  if(NOT EXISTS "${WAYBILL_SYSROOT}/usr/include")
    message(FATAL_ERROR "WAYBILL_SYSROOT=${WAYBILL_SYSROOT} has no usr/include: it must be the "
                        "root file system of a ${WAYBILL_TRIPLE} board with the -dev packages")
  endif()
  set(CMAKE_SYSROOT "${WAYBILL_SYSROOT}")
  set(CMAKE_FIND_ROOT_PATH "${WAYBILL_SYSROOT}")
  # Only the board's headers, libraries and CMake packages, never the build machine's.
  set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "${WAYBILL_SYSROOT}")
  set(ENV{PKG_CONFIG_LIBDIR}
      "${WAYBILL_SYSROOT}/usr/lib/${WAYBILL_TRIPLE}/pkgconfig:${WAYBILL_SYSROOT}/usr/lib/pkgconfig:${WAYBILL_SYSROOT}/usr/share/pkgconfig")
else()
  # Multiarch puts the target's libraries in /usr/lib/<triple>, which CMake searches thanks to
  # CMAKE_LIBRARY_ARCHITECTURE. /usr/local would come before /usr, and what a user built there
  # is for the build machine.
  set(CMAKE_IGNORE_PREFIX_PATH /usr/local)
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "")
  set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${WAYBILL_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
endif()

# Programs (protoc, the nanopb generator) run on the build machine.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# Tests (and gtest_discover_tests, at build time) run target programs under qemu-user. With
# multiarch, libc6:<arch> installs the target's dynamic loader at its usual place
# (/lib/ld-linux-*.so.*), so qemu needs no prefix; with a board root file system it uses that one.
find_program(WAYBILL_QEMU ${WAYBILL_QEMU_NAME})
if(WAYBILL_QEMU)
  if(WAYBILL_SYSROOT)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${WAYBILL_QEMU};-L;${WAYBILL_SYSROOT}")
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR "${WAYBILL_QEMU}")
  endif()
endif()
