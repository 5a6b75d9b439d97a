#include "waybill/firmware/photo_store.h"

#include <fcntl.h>
#include <mbedtls/sha256.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "waybill/hal/files.h"
#include "waybill/sync/data_key.h"

namespace waybill::firmware {

namespace {

std::string_view DetectMime(std::string_view bytes) {
  if (bytes.size() >= 3 && bytes.substr(0, 3) == "\xFF\xD8\xFF") return "image/jpeg";
  if (bytes.size() >= 8 && bytes.substr(0, 8) == "\x89PNG\r\n\x1a\n") return "image/png";
  return "";
}

// The type byte in front of a sealed photo. Never the first byte of a JPEG (0xFF) or PNG (0x89).
constexpr uint8_t kSealedJpeg = 1;
constexpr uint8_t kSealedPng = 2;

std::string_view MimeOfCode(uint8_t code) {
  return code == kSealedJpeg ? "image/jpeg" : code == kSealedPng ? "image/png" : "";
}

bool IsSealedPhoto(std::string_view head) {
  return !head.empty() && !MimeOfCode(static_cast<uint8_t>(head[0])).empty();
}

std::string PhotoAad(const std::array<uint8_t, 32>& sha256, std::string_view mime) {
  return "waybill photo:" + ToHex(sha256) + ":" + std::string(mime);
}

}  // namespace

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

PhotoStore::PhotoStore(std::string dir, std::shared_ptr<const sync::DataKey> data_key)
    : dir_(std::move(dir)), data_key_(std::move(data_key)) {
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

  std::string stored;
  if (data_key_) {
    Result<std::string> sealed = data_key_->Seal(bytes, PhotoAad(ref.sha256, ref.mime));
    if (!sealed.ok()) return Status::IOError("photo not stored: " + sealed.status().message());
    stored.reserve(1 + sealed->size());
    stored.push_back(static_cast<char>(mime == "image/png" ? kSealedPng : kSealedJpeg));
    stored += *sealed;
  }
  std::string tmp = ref.path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return hal::ErrnoStatus("create " + tmp, errno);
  Status s = hal::WriteAll(fd, data_key_ ? std::string_view(stored) : bytes, tmp);
  if (s.ok() && ::fdatasync(fd) != 0) s = hal::ErrnoStatus("fdatasync " + tmp, errno);
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), ref.path.c_str()) != 0) {
    s = hal::ErrnoStatus("rename " + tmp, errno);
  }
  if (s.ok()) s = hal::FsyncPath(dir_);
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
    std::string_view got(head, n > 0 ? size_t(n) : 0);
    if (IsSealedPhoto(got)) {
      // Taken from the type byte, not sniffed from the sealed bytes.
      ref.mime = std::string(MimeOfCode(static_cast<uint8_t>(got[0])));
      constexpr uint64_t kOverhead = 1 + sync::kSealedOverheadBytes;
      ref.bytes = ref.bytes > kOverhead ? ref.bytes - kOverhead : 0;
    } else {
      ref.mime = std::string(DetectMime(got));
    }
  }
  return ref;
}

Result<std::string> PhotoStore::Read(const std::array<uint8_t, 32>& sha256) const {
  std::string path = dir_ + "/" + ToHex(sha256);
  Result<std::string> read = hal::ReadWholeFile(path);
  if (!read.ok()) {
    if (read.status().IsNotFound()) {
      return Status::NotFound("photo " + ToHex(sha256) + " is not on this device");
    }
    return read.status();
  }
  std::string_view bytes = *read;
  if (!IsSealedPhoto(bytes)) return read;
  if (!data_key_) {
    return Status::FailedPrecondition("photo " + ToHex(sha256) +
                                      " is sealed and this store has no data key to open it");
  }
  std::string_view mime = MimeOfCode(static_cast<uint8_t>(bytes[0]));
  Result<std::string> opened = data_key_->Open(bytes.substr(1), PhotoAad(sha256, mime));
  if (!opened.ok()) {
    return Status::Corruption("photo " + ToHex(sha256) + ": " + opened.status().message());
  }
  if (Sha256(*opened) != sha256) {
    return Status::Corruption("photo " + ToHex(sha256) + " opened to bytes of another digest");
  }
  return opened;
}

Status PhotoStore::Remove(const std::array<uint8_t, 32>& sha256) {
  std::string path = dir_ + "/" + ToHex(sha256);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return hal::ErrnoStatus("unlink " + path, errno);
  return hal::FsyncPath(dir_);
}

}  // namespace waybill::firmware
