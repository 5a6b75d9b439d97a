#include "waybill/bridge/upload_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <mbedtls/sha256.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "waybill/hal/files.h"
#include "waybill/sync/wire.h"

namespace waybill::bridge {

namespace {

// The size of `path`; -1 if it does not exist.
Result<int64_t> SizeOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return int64_t{-1};
    return hal::ErrnoStatus("stat " + path, errno);
  }
  return static_cast<int64_t>(st.st_size);
}

// The sha256 of a file, streamed (a photo is never held twice in memory).
Result<std::string> Sha256OfFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return hal::ErrnoStatus("open " + path, errno);
  mbedtls_sha256_context ctx;
  mbedtls_sha256_init(&ctx);
  mbedtls_sha256_starts_ret(&ctx, 0);
  char buf[64 * 1024];
  Status error;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = hal::ErrnoStatus("read " + path, errno);
      break;
    }
    if (n == 0) break;
    mbedtls_sha256_update_ret(&ctx, reinterpret_cast<unsigned char*>(buf), static_cast<size_t>(n));
  }
  ::close(fd);
  unsigned char digest[32];
  mbedtls_sha256_finish_ret(&ctx, digest);
  mbedtls_sha256_free(&ctx);
  if (!error.ok()) return error;
  return hal::ToHex(digest);
}

Status CheckNames(std::string_view device, std::string_view sha_hex, std::string* sha) {
  if (!sync::IsValidDeviceId(device)) {
    return Status::InvalidArgument("device id '" + std::string(device) +
                                   "': must be 1..64 of [A-Za-z0-9_-]");
  }
  *sha = NormalizeSha256Hex(sha_hex);
  if (sha->empty()) {
    return Status::InvalidArgument("photo name '" + std::string(sha_hex.substr(0, 80)) +
                                   "': must be its sha256, 64 hex digits");
  }
  return Status::Ok();
}

}  // namespace

std::string_view ToString(AppendVerdict verdict) {
  switch (verdict) {
    case AppendVerdict::kAccepted:
      return "accepted";
    case AppendVerdict::kCompleted:
      return "completed";
    case AppendVerdict::kWrongOffset:
      return "wrong_offset";
    case AppendVerdict::kAlreadyComplete:
      return "already_complete";
    case AppendVerdict::kDigestMismatch:
      return "digest_mismatch";
  }
  return "unknown";
}

std::string NormalizeSha256Hex(std::string_view hex) {
  if (hex.size() != 64) return "";
  std::string out(hex);
  for (char& c : out) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return "";
  }
  return out;
}

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[32];
  mbedtls_sha256_ret(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest, 0);
  return hal::ToHex(digest);
}

std::string_view PhotoMime(std::string_view head) {
  if (head.size() >= 3 && head.substr(0, 3) == "\xFF\xD8\xFF") return "image/jpeg";
  if (head.size() >= 8 && head.substr(0, 8) == "\x89PNG\r\n\x1a\n") return "image/png";
  return "application/octet-stream";
}

Result<std::unique_ptr<UploadStore>> UploadStore::Open(UploadStoreOptions options) {
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return Status::IOError("cannot create the photo directory " + options.dir +
                           " (uploads.dir): " + ec.message());
  }
  return std::unique_ptr<UploadStore>(new UploadStore(std::move(options)));
}

Result<UploadProgress> UploadStore::Head(std::string_view device,
                                         std::string_view sha256_hex) const {
  std::string sha;
  if (Status s = CheckNames(device, sha256_hex, &sha); !s.ok()) return s;
  std::string base = options_.dir + "/" + std::string(device) + "/" + sha;
  Result<int64_t> whole = SizeOf(base);
  if (!whole.ok()) return whole.status();
  if (*whole >= 0) return UploadProgress{static_cast<uint64_t>(*whole), true};
  Result<int64_t> part = SizeOf(base + ".part");
  if (!part.ok()) return part.status();
  if (*part >= 0) return UploadProgress{static_cast<uint64_t>(*part), false};
  return Status::NotFound("no photo " + sha + " from " + std::string(device));
}

Result<AppendResult> UploadStore::Append(std::string_view device, std::string_view sha256_hex,
                                         uint64_t offset, uint64_t total, std::string_view bytes) {
  std::string sha;
  if (Status s = CheckNames(device, sha256_hex, &sha); !s.ok()) return s;
  if (total == 0 || total > options_.max_bytes) {
    return Status::InvalidArgument("Upload-Length " + std::to_string(total) + ": must be 1.." +
                                   std::to_string(options_.max_bytes));
  }
  if (offset > total || bytes.size() > total - offset) {
    return Status::InvalidArgument("Upload-Offset " + std::to_string(offset) + " + " +
                                   std::to_string(bytes.size()) + " bytes is past Upload-Length " +
                                   std::to_string(total));
  }
  const std::string key = std::string(device) + "/" + sha;
  {
    std::lock_guard lock(busy_mu_);
    if (!busy_.insert(key).second) {
      return Status::Busy("photo " + sha + " of " + std::string(device) +
                          " is being uploaded by another request");
    }
  }
  struct Release {
    UploadStore* self;
    const std::string& key;
    ~Release() {
      std::lock_guard lock(self->busy_mu_);
      self->busy_.erase(key);
    }
  } release{this, key};

  const std::string folder = options_.dir + "/" + std::string(device);
  const std::string final_path = folder + "/" + sha;
  const std::string part_path = final_path + ".part";
  Result<int64_t> whole = SizeOf(final_path);
  if (!whole.ok()) return whole.status();
  if (*whole >= 0) {
    return AppendResult{AppendVerdict::kAlreadyComplete, static_cast<uint64_t>(*whole), 0};
  }
  Result<int64_t> part = SizeOf(part_path);
  if (!part.ok()) return part.status();
  const uint64_t stored = *part < 0 ? 0 : static_cast<uint64_t>(*part);
  if (offset != stored) return AppendResult{AppendVerdict::kWrongOffset, stored, 0};

  const bool new_folder = !std::filesystem::exists(folder);
  if (new_folder) {
    if (::mkdir(folder.c_str(), 0700) != 0 && errno != EEXIST) {
      return hal::ErrnoStatus("mkdir " + folder, errno);
    }
    if (Status s = hal::FsyncPath(options_.dir); !s.ok()) return s;
  }
  int fd = ::open(part_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return hal::ErrnoStatus("open " + part_path, errno);
  Status s = hal::WriteAll(fd, bytes, part_path);
  if (s.ok() && ::fdatasync(fd) != 0) s = hal::ErrnoStatus("fdatasync " + part_path, errno);
  ::close(fd);
  if (s.ok() && *part < 0) s = hal::FsyncPath(folder);  // the part file's name is durable too
  if (!s.ok()) {
    // Keep the promise of the failure contract: cut back to what Head() reported before.
    if (*part < 0) {
      ::unlink(part_path.c_str());
    } else if (::truncate(part_path.c_str(), static_cast<off_t>(stored)) != 0) {
      s = Status::IOError(s.message() + "; cutting " + part_path + " back to " +
                          std::to_string(stored) + " bytes failed too: " + std::strerror(errno));
    }
    return s;
  }
  const uint64_t now_held = stored + bytes.size();
  if (now_held < total) return AppendResult{AppendVerdict::kAccepted, now_held, bytes.size()};

  Result<std::string> digest = Sha256OfFile(part_path);
  if (!digest.ok()) return digest.status();
  if (*digest != sha) {
    ::unlink(part_path.c_str());
    if (Status fs = hal::FsyncPath(folder); !fs.ok()) return fs;
    return AppendResult{AppendVerdict::kDigestMismatch, 0, bytes.size()};
  }
  if (::rename(part_path.c_str(), final_path.c_str()) != 0) {
    return hal::ErrnoStatus("rename " + part_path, errno);
  }
  if (Status fs = hal::FsyncPath(folder); !fs.ok()) return fs;
  return AppendResult{AppendVerdict::kCompleted, now_held, bytes.size()};
}

Result<std::vector<StoredPhoto>> UploadStore::List() const {
  std::vector<StoredPhoto> out;
  std::error_code ec;
  for (const auto& dev : std::filesystem::directory_iterator(options_.dir, ec)) {
    if (!dev.is_directory() || !sync::IsValidDeviceId(dev.path().filename().string())) continue;
    std::error_code inner;
    for (const auto& file : std::filesystem::directory_iterator(dev.path(), inner)) {
      std::string name = file.path().filename().string();
      if (NormalizeSha256Hex(name) != name || !file.is_regular_file()) continue;
      StoredPhoto p;
      p.device = dev.path().filename().string();
      p.sha256_hex = name;
      p.path = file.path().string();
      p.bytes = file.file_size(inner);
      struct stat st {};
      if (::stat((p.path + ".forwarded").c_str(), &st) == 0) {
        p.forwarded = true;
        p.forwarded_unix_ms =
            static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1'000'000;
      }
      p.refused = ::access((p.path + ".refused").c_str(), F_OK) == 0;
      out.push_back(std::move(p));
    }
    if (inner) return Status::IOError("list " + dev.path().string() + ": " + inner.message());
  }
  if (ec) return Status::IOError("list " + options_.dir + ": " + ec.message());
  return out;
}

Result<std::string> UploadStore::Read(const StoredPhoto& photo) const {
  return hal::ReadWholeFile(photo.path);
}

Status UploadStore::Mark(const StoredPhoto& photo, const char* suffix, std::string_view text) {
  std::string path = photo.path + suffix;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return hal::ErrnoStatus("create " + path, errno);
  Status s = hal::WriteAll(fd, text, path);
  if (s.ok() && ::fdatasync(fd) != 0) s = hal::ErrnoStatus("fdatasync " + path, errno);
  ::close(fd);
  if (s.ok()) s = hal::FsyncPath(std::filesystem::path(photo.path).parent_path().string());
  return s;
}

Status UploadStore::MarkForwarded(const StoredPhoto& photo) {
  return Mark(photo, ".forwarded", "");
}

Status UploadStore::MarkRefused(const StoredPhoto& photo, std::string_view reason) {
  return Mark(photo, ".refused", reason);
}

Result<size_t> UploadStore::PruneForwarded(int64_t before_unix_ms) {
  Result<std::vector<StoredPhoto>> photos = List();
  if (!photos.ok()) return photos.status();
  size_t pruned = 0;
  for (const StoredPhoto& p : *photos) {
    if (!p.forwarded || p.forwarded_unix_ms >= before_unix_ms) continue;
    // The photo first, its marker after: a crash in between leaves a marker without a photo,
    // which List() ignores, never a photo that looks unforwarded.
    if (::unlink(p.path.c_str()) != 0 && errno != ENOENT) {
      return hal::ErrnoStatus("unlink " + p.path, errno);
    }
    ::unlink((p.path + ".forwarded").c_str());
    ++pruned;
  }
  return pruned;
}

}  // namespace waybill::bridge
