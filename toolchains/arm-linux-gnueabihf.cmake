# Cross toolchain for 32-bit ARM boards (ARMv7 with hardware floating point):
# Debian's g++-arm-linux-gnueabihf with the armhf multiarch libraries, or a board's WAYBILL_SYSROOT.
set(CMAKE_SYSTEM_PROCESSOR arm)
set(WAYBILL_TRIPLE arm-linux-gnueabihf)
set(WAYBILL_QEMU_NAME qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/debian-multiarch.cmake)
# GCC notes each function taking a std::span or vector iterator by value whose passing "changed
# in GCC 7.1" (-Wpsabi): it matters only when linking with code built by GCC < 7.1, and every
# C++ library here comes from Debian 12 (GCC 12). Without this, a build prints dozens of them.
set(CMAKE_CXX_FLAGS_INIT "-Wno-psabi")
