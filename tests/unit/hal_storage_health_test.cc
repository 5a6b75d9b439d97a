#include <gtest/gtest.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fakes/fake_storage_health.h"
#include "waybill/hal/storage_health.h"

namespace waybill::hal {
namespace {

namespace fs = std::filesystem;

TEST(LinuxStorageHealth, ARealDirectoryHasRoomAndAMount) {
  fs::path dir = fs::temp_directory_path() / ("waybill-storage-" + std::to_string(getpid()));
  fs::create_directories(dir);
  auto health = NewLinuxStorageHealth(dir.string());
  EXPECT_EQ(health->data_dir(), dir.string());
  Result<StorageStats> stats = health->Check();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_GT(stats->free_bytes, 0u);
  EXPECT_GE(stats->total_bytes, stats->free_bytes);
  EXPECT_FALSE(stats->read_only);
  EXPECT_FALSE(stats->fs_type.empty());
  ASSERT_FALSE(stats->mount_point.empty());
  std::string real = fs::canonical(dir).string();
  EXPECT_EQ(real.rfind(stats->mount_point, 0), 0u)
      << stats->mount_point << " does not hold " << real;
  fs::remove_all(dir);
}

TEST(LinuxStorageHealth, MissingDirectoryIsNotFound) {
  auto health = NewLinuxStorageHealth("/nonexistent/waybill/data");
  Result<StorageStats> stats = health->Check();
  ASSERT_FALSE(stats.ok());
  EXPECT_TRUE(stats.status().IsNotFound());
  EXPECT_EQ(stats.status().message(),
            "storage check of /nonexistent/waybill/data failed: No such file or directory");
}

// Finds a read-only mount on this machine (containers often have one, e.g. /sys or /proc/sys) to
// check that read-only is reported; skips where there is none.
TEST(LinuxStorageHealth, AReadOnlyMountIsReportedReadOnly) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::string ro_dir;
  while (ro_dir.empty() && std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, majmin, root, mount_point, options;
    fields >> id >> parent >> majmin >> root >> mount_point >> options;
    if (mount_point.find('\\') != std::string::npos) continue;
    struct statvfs vfs = {};
    if (("," + options + ",").find(",ro,") != std::string::npos && fs::is_directory(mount_point) &&
        statvfs(mount_point.c_str(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) {
      ro_dir = mount_point;
    }
  }
  if (ro_dir.empty()) GTEST_SKIP() << "no read-only mount on this machine";
  Result<StorageStats> stats = NewLinuxStorageHealth(ro_dir)->Check();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_TRUE(stats->read_only) << ro_dir;
  EXPECT_EQ(stats->mount_point, ro_dir);
}

TEST(FakeStorageHealth, ReportsWhatTheTestSets) {
  FakeStorageHealth health("/data", 1000, 600);
  EXPECT_EQ(health.Check()->free_bytes, 600u);
  health.SetFreeBytes(10);
  health.SetReadOnly(true);
  Result<StorageStats> stats = health.Check();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->free_bytes, 10u);
  EXPECT_EQ(stats->total_bytes, 1000u);
  EXPECT_TRUE(stats->read_only);
  health.SetFailure(Status::IOError("storage check of /data failed: Input/output error"));
  EXPECT_TRUE(health.Check().status().IsIOError());
  EXPECT_EQ(health.checks(), 3);
}

}  // namespace
}  // namespace waybill::hal
