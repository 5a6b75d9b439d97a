# Cross toolchain for 64-bit ARM boards (Raspberry Pi 4/CM4 with a 64-bit OS, QEMU virt):
# Debian's g++-aarch64-linux-gnu with the arm64 multiarch libraries, or a board's WAYBILL_SYSROOT.
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(WAYBILL_TRIPLE aarch64-linux-gnu)
set(WAYBILL_QEMU_NAME qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-multiarch.cmake)
