// FakeStorageHealth: a StorageHealth whose numbers a test sets, to drive low-space and read-only
// paths (outbox thinning, health reports) without filling a disk. Thread-safe.
#pragma once

#include <mutex>

#include "waybill/hal/storage_health.h"

namespace waybill::hal {

class FakeStorageHealth final : public StorageHealth {
 public:
  explicit FakeStorageHealth(std::string data_dir = "/fake/data", uint64_t total_bytes = 1ULL << 30,
                             uint64_t free_bytes = 1ULL << 29)
      : data_dir_(std::move(data_dir)) {
    stats_.total_bytes = total_bytes;
    stats_.free_bytes = free_bytes;
    stats_.mount_point = data_dir_;
    stats_.fs_type = "fake";
    stats_.mount_options = "rw";
  }

  Result<StorageStats> Check() override {
    std::lock_guard lock(mu_);
    ++checks_;
    if (!failure_.ok()) return failure_;
    return stats_;
  }
  const std::string& data_dir() const override { return data_dir_; }

  void SetFreeBytes(uint64_t free_bytes) {
    std::lock_guard lock(mu_);
    stats_.free_bytes = free_bytes;
  }
  void SetTotalBytes(uint64_t total_bytes) {
    std::lock_guard lock(mu_);
    stats_.total_bytes = total_bytes;
  }
  // As the kernel does after an I/O error with errors=remount-ro.
  void SetReadOnly(bool read_only) {
    std::lock_guard lock(mu_);
    stats_.read_only = read_only;
    stats_.mount_options = read_only ? "ro" : "rw";
  }
  // Check() returns this until it is set back to Ok.
  void SetFailure(Status failure) {
    std::lock_guard lock(mu_);
    failure_ = std::move(failure);
  }
  int checks() const {
    std::lock_guard lock(mu_);
    return checks_;
  }

 private:
  std::string data_dir_;
  mutable std::mutex mu_;
  StorageStats stats_;
  Status failure_;
  int checks_ = 0;
};

}  // namespace waybill::hal
