#include "waybill/firmware/photo_store.h"

#include <fcntl.h>
#include <mbedtls/sha256.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace waybill::firmware {

namespace {

std::string_view DetectMime(std::string_view bytes) {
  if (bytes.size() >= 3 && bytes.substr(0, 3) == "\xFF\xD8\xFF") return "image/jpeg";
  if (bytes.size() >= 8 && bytes.substr(0, 8) == "\x89PNG\r\n\x1a\n") return "image/png";
  return "";
}

Status ErrnoStatus(const std::string& what, int err) {
  std::string msg = what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Status::NoSpace(msg);
  return Status::IOError(msg);
}

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write " + path, errno);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : ErrnoStatus("fsync " + dir, err);
}

}  // namespace

std::string ToHex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::optional<std::array<uint8_t, 32>> ParseSha256Hex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  std::array<uint8_t, 32> out{};
  for (size_t i = 0; i < 64; ++i) {
    char c = hex[i];
    int v = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                     : -1;
    if (v < 0) return std::nullopt;
    out[i / 2] = static_cast<uint8_t>(out[i / 2] << 4 | v);
  }
  return out;
}

std::array<uint8_t, 32> Sha256(std::string_view bytes) {
  std::array<uint8_t, 32> out{};
  mbedtls_sha256_ret(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), out.data(),
                     0);
  return out;
}

PhotoStore::PhotoStore(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
}

Result<PhotoRef> PhotoStore::Put(std::string_view bytes) {
  if (bytes.empty()) return Status::InvalidArgument("photo: empty body");
  if (bytes.size() > kMaxPhotoBytes) {
    return Status::InvalidArgument("photo: " + std::to_string(bytes.size()) + " bytes, at most " +
                                   std::to_string(kMaxPhotoBytes));
  }
  std::string_view mime = DetectMime(bytes);
  if (mime.empty()) return Status::InvalidArgument("photo: not a JPEG or PNG image");

  PhotoRef ref;
  ref.sha256 = Sha256(bytes);
  ref.bytes = bytes.size();
  ref.mime = std::string(mime);
  ref.path = dir_ + "/" + ToHex(ref.sha256);
  if (::access(ref.path.c_str(), F_OK) == 0) return ref;

  std::string tmp = ref.path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("create " + tmp, errno);
  Status s = WriteAll(fd, bytes, tmp);
  if (s.ok() && ::fdatasync(fd) != 0) s = ErrnoStatus("fdatasync " + tmp, errno);
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), ref.path.c_str()) != 0) {
    s = ErrnoStatus("rename " + tmp, errno);
  }
  if (s.ok()) s = FsyncDir(dir_);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return ref;
}

Result<PhotoRef> PhotoStore::Find(const std::array<uint8_t, 32>& sha256) const {
  PhotoRef ref;
  ref.sha256 = sha256;
  ref.path = dir_ + "/" + ToHex(sha256);
  struct stat st {};
  if (::stat(ref.path.c_str(), &st) != 0) {
    return Status::NotFound("photo " + ToHex(sha256) + " was not uploaded to this device");
  }
  ref.bytes = static_cast<uint64_t>(st.st_size);
  char head[8] = {};
  int fd = ::open(ref.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = ::read(fd, head, sizeof head);
    ::close(fd);
    ref.mime = std::string(DetectMime(std::string_view(head, n > 0 ? size_t(n) : 0)));
  }
  return ref;
}

Result<std::string> PhotoStore::Read(const std::array<uint8_t, 32>& sha256) const {
  std::string path = dir_ + "/" + ToHex(sha256);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return Status::NotFound("photo " + ToHex(sha256) + " is not on this device");
    }
    return ErrnoStatus("open " + path, errno);
  }
  std::string bytes;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus("read " + path, err);
    }
    if (n == 0) break;
    bytes.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return bytes;
}

Status PhotoStore::Remove(const std::array<uint8_t, 32>& sha256) {
  std::string path = dir_ + "/" + ToHex(sha256);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink " + path, errno);
  return FsyncDir(dir_);
}

}  // namespace waybill::firmware
