// StorageHealth: how much room the data directory has, and whether it can still be written.
//
// The outbox asks before thinning breadcrumbs (low space) and the health report asks to warn a
// tech. A flash card that develops errors is typically remounted read-only by the kernel
// (errors=remount-ro) while the daemon runs: that must show up here, not as a mystery write error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "waybill/status.h"

namespace waybill::hal {

struct StorageStats {
  uint64_t free_bytes = 0;   // available to an unprivileged writer (statvfs f_bavail)
  uint64_t total_bytes = 0;  // size of the filesystem
  bool read_only = false;    // mounted or remounted read-only
  std::string mount_point;   // "/var/lib/waybill" or "/" ...; empty when unknown
  std::string fs_type;       // "ext4", "f2fs", "tmpfs" ...; empty when unknown
  std::string
      mount_options;  // per-mount and filesystem options, e.g. "rw,relatime,errors=remount-ro"
};

class StorageHealth {
 public:
  virtual ~StorageHealth() = default;

  // Looks at the filesystem holding the data directory now. NotFound if the directory does not
  // exist, IOError for other failures. Thread-safe.
  virtual Result<StorageStats> Check() = 0;
  // The directory watched.
  virtual const std::string& data_dir() const = 0;
};

// statvfs() (ST_RDONLY) for the numbers, /proc/self/mountinfo for the mount point, type and
// options of the mount holding data_dir. Read-only if either says so.
std::unique_ptr<StorageHealth> NewLinuxStorageHealth(std::string data_dir);

}  // namespace waybill::hal
