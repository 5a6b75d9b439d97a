#include "seq_lease.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace waybill::sync::internal {
namespace {

constexpr std::string_view kMagic = "waybill-seq-lease-v1";

// FNV-1a over the decimal text of the value: enough to tell a lease from garbage.
uint64_t Check(uint64_t value) {
  char text[32];
  int n = std::snprintf(text, sizeof(text), "%" PRIu64, value);
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(text[i]);
    h *= 1099511628211ull;
  }
  return h;
}

std::string Errno(std::string_view what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(Errno("write sequence lease", path));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Result<std::optional<uint64_t>> ReadSeqLease(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<uint64_t>();
    return Status::IOError(Errno("open sequence lease", path));
  }
  char buf[256];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof(buf) - 1);
  } while (n < 0 && errno == EINTR);
  int saved = errno;
  ::close(fd);
  if (n < 0) {
    errno = saved;
    return Status::IOError(Errno("read sequence lease", path));
  }
  buf[n] = '\0';
  char magic[32] = {};
  uint64_t value = 0, check = 0;
  if (std::sscanf(buf, "%31s %" SCNu64 " %" SCNx64, magic, &value, &check) != 3 ||
      kMagic != magic || check != Check(value)) {
    return Status::Corruption("sequence lease " + path + " is not a valid lease (" +
                              std::to_string(n) + " bytes)");
  }
  return std::optional<uint64_t>(value);
}

Status WriteSeqLease(const std::string& path, uint64_t next_unleased) {
  char text[96];
  std::snprintf(text, sizeof(text), "%s %" PRIu64 " %016" PRIx64 "\n", kMagic.data(), next_unleased,
                Check(next_unleased));
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(Errno("create sequence lease", tmp));
  Status s = WriteAll(fd, text, tmp);
  if (s.ok() && ::fsync(fd) != 0) s = Status::IOError(Errno("fsync sequence lease", tmp));
  if (::close(fd) != 0 && s.ok()) s = Status::IOError(Errno("close sequence lease", tmp));
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status err = Status::IOError(Errno("rename sequence lease over", path));
    ::unlink(tmp.c_str());
    return err;
  }
  const std::string dir = DirOf(path);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Status::IOError(Errno("open directory of sequence lease", dir));
  int rc = ::fsync(dfd);
  int saved = errno;
  ::close(dfd);
  if (rc != 0) {
    errno = saved;
    return Status::IOError(Errno("fsync directory of sequence lease", dir));
  }
  return Status::Ok();
}

}  // namespace waybill::sync::internal
