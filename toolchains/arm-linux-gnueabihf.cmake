# Cross toolchain for 32-bit ARM boards (ARMv7 with hardware floating point):
# Debian's g++-arm-linux-gnueabihf with the armhf multiarch libraries, or a board's WAYBILL_SYSROOT.
set(CMAKE_SYSTEM_PROCESSOR arm)
set(WAYBILL_TRIPLE arm-linux-gnueabihf)
set(WAYBILL_QEMU_NAME qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/debian-multiarch.cmake)
