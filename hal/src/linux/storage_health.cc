// Linux StorageHealth. statvfs gives the numbers and, since Linux 2.6.36, a ST_RDONLY that
// reflects both the mount's and the superblock's read-only state, which is what an
// errors=remount-ro remount changes. /proc/self/mountinfo adds the names a person needs to act:
// which mount, which filesystem, which options.
#include "waybill/hal/storage_health.h"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

namespace waybill::hal {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const char* p = field.c_str() + i + 1;
      if (p[0] >= '0' && p[0] <= '3' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7') {
        out += static_cast<char>((p[0] - '0') * 64 + (p[1] - '0') * 8 + (p[2] - '0'));
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

bool HasOption(const std::string& options, const std::string& name) {
  std::stringstream in(options);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item == name) return true;
  }
  return false;
}

bool UnderMount(const std::string& path, const std::string& mount_point) {
  if (mount_point == "/") return true;
  if (path.rfind(mount_point, 0) != 0) return false;
  return path.size() == mount_point.size() || path[mount_point.size()] == '/';
}

struct MountEntry {
  std::string mount_point;
  std::string fs_type;
  std::string options;  // per-mount options, then the superblock's
};

// The mount holding path: the entry whose mount point is the longest prefix of path, the last one
// listed on a tie (mounted later, so on top), preferring entries of path's own device (st_dev does
// not always match, e.g. on btrfs subvolumes or overlayfs).
std::optional<MountEntry> FindMount(const std::string& path, dev_t dev) {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return std::nullopt;
  std::optional<MountEntry> best;
  std::optional<MountEntry> best_any_device;
  std::string line;
  for (int n = 0; n < 100000 && std::getline(in, line); ++n) {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    std::istringstream fields(line);
    std::string id, parent, majmin, root, mount_point, mount_options;
    fields >> id >> parent >> majmin >> root >> mount_point >> mount_options;
    std::string tag;
    while (fields >> tag && tag != "-") {
    }
    std::string fs_type, source, super_options;
    fields >> fs_type >> source >> super_options;
    unsigned major_id = 0, minor_id = 0;
    if (std::sscanf(majmin.c_str(), "%u:%u", &major_id, &minor_id) != 2) continue;
    mount_point = Unescape(mount_point);
    if (!UnderMount(path, mount_point)) continue;
    MountEntry entry{mount_point, fs_type, mount_options + "," + super_options};
    if (!best_any_device || mount_point.size() >= best_any_device->mount_point.size()) {
      best_any_device = entry;
    }
    if (makedev(major_id, minor_id) != dev) continue;
    if (best && mount_point.size() < best->mount_point.size()) continue;
    best = std::move(entry);
  }
  return best ? best : best_any_device;
}

class LinuxStorageHealth final : public StorageHealth {
 public:
  explicit LinuxStorageHealth(std::string data_dir) : data_dir_(std::move(data_dir)) {}

  Result<StorageStats> Check() override {
    struct statvfs vfs = {};
    if (::statvfs(data_dir_.c_str(), &vfs) != 0) {
      int err = errno;
      std::string msg = "storage check of " + data_dir_ + " failed: " + std::strerror(err);
      if (err == ENOENT) return Status::NotFound(std::move(msg));
      return Status::IOError(std::move(msg));
    }
    StorageStats stats;
    stats.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    stats.total_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    stats.read_only = (vfs.f_flag & ST_RDONLY) != 0;

    struct stat st = {};
    std::error_code ec;
    std::filesystem::path real = std::filesystem::canonical(data_dir_, ec);
    if (!ec && ::stat(real.c_str(), &st) == 0) {
      if (std::optional<MountEntry> mount = FindMount(real.string(), st.st_dev)) {
        stats.mount_point = mount->mount_point;
        stats.fs_type = mount->fs_type;
        stats.mount_options = mount->options;
        stats.read_only = stats.read_only || HasOption(mount->options, "ro");
      }
    }
    return stats;
  }

  const std::string& data_dir() const override { return data_dir_; }

 private:
  std::string data_dir_;
};

}  // namespace

std::unique_ptr<StorageHealth> NewLinuxStorageHealth(std::string data_dir) {
  return std::make_unique<LinuxStorageHealth>(std::move(data_dir));
}

}  // namespace waybill::hal
