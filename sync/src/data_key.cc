#include "waybill/sync/data_key.h"

#include <fcntl.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "waybill/hal/files.h"
#include "waybill/sync/pki.h"

namespace waybill::sync {
namespace {

constexpr char kKeyIdLabel[] = "waybill data key id v1";
constexpr unsigned char kDrbgPersonalization[] = "waybill-data-key";

std::string ModeOctal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// Key bytes pass through this buffer; it is wiped when it goes.
struct KeyBuffer {
  std::array<unsigned char, kDataKeyBytes> bytes{};
  ~KeyBuffer() { mbedtls_platform_zeroize(bytes.data(), bytes.size()); }
};

class DataKeyImpl final : public DataKey {
 public:
  DataKeyImpl() {
    mbedtls_gcm_init(&gcm_);
    mbedtls_entropy_init(&entropy_);
    mbedtls_ctr_drbg_init(&drbg_);
  }
  ~DataKeyImpl() override {
    mbedtls_gcm_free(&gcm_);
    mbedtls_ctr_drbg_free(&drbg_);
    mbedtls_entropy_free(&entropy_);
  }
  DataKeyImpl(const DataKeyImpl&) = delete;
  DataKeyImpl& operator=(const DataKeyImpl&) = delete;

  Status Init(const unsigned char* key) {
    int ret = mbedtls_gcm_setkey(&gcm_, MBEDTLS_CIPHER_ID_AES, key, kDataKeyBytes * 8);
    if (ret != 0) return Status::IOError("cannot set the AES-256-GCM key");
    ret = mbedtls_ctr_drbg_seed(&drbg_, mbedtls_entropy_func, &entropy_, kDrbgPersonalization,
                                sizeof(kDrbgPersonalization) - 1);
    if (ret != 0) return Status::IOError("cannot seed the random generator for nonces");
    // Reseeded from the system's entropy now and then, so a long-running daemon never draws
    // all its nonces from one seed.
    mbedtls_ctr_drbg_set_prediction_resistance(&drbg_, MBEDTLS_CTR_DRBG_PR_OFF);
    mbedtls_ctr_drbg_set_reseed_interval(&drbg_, 4096);
    std::array<uint8_t, 32> digest{};
    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    mbedtls_sha256_update_ret(&sha, reinterpret_cast<const unsigned char*>(kKeyIdLabel),
                              sizeof(kKeyIdLabel) - 1);
    mbedtls_sha256_update_ret(&sha, key, kDataKeyBytes);
    mbedtls_sha256_finish_ret(&sha, digest.data());
    mbedtls_sha256_free(&sha);
    std::memcpy(key_id_.data(), digest.data(), kSealedKeyIdBytes);
    return Status::Ok();
  }

  Result<std::string> Seal(std::string_view plaintext, std::string_view aad) const override {
    std::string out(kSealedOverheadBytes + plaintext.size(), '\0');
    auto* p = reinterpret_cast<unsigned char*>(out.data());
    p[0] = kSealedVersion;
    std::memcpy(p + 1, key_id_.data(), kSealedKeyIdBytes);
    unsigned char* nonce = p + 1 + kSealedKeyIdBytes;
    unsigned char* ct = nonce + kSealedNonceBytes;
    unsigned char* tag = ct + plaintext.size();
    std::lock_guard lock(mu_);
    if (mbedtls_ctr_drbg_random(&drbg_, nonce, kSealedNonceBytes) != 0) {
      return Status::IOError("seal: the random generator failed; nothing sealed");
    }
    int ret = mbedtls_gcm_crypt_and_tag(
        &gcm_, MBEDTLS_GCM_ENCRYPT, plaintext.size(), nonce, kSealedNonceBytes,
        reinterpret_cast<const unsigned char*>(aad.data()), aad.size(),
        reinterpret_cast<const unsigned char*>(plaintext.data()), ct, kSealedTagBytes, tag);
    if (ret != 0) return Status::IOError("seal: AES-GCM failed; nothing sealed");
    return out;
  }

  Result<std::string> Open(std::string_view sealed, std::string_view aad) const override {
    if (sealed.empty() || static_cast<uint8_t>(sealed[0]) != kSealedVersion) {
      return Status::InvalidArgument(
          sealed.empty() ? std::string("open: empty input, not a sealed blob")
                         : "open: not a sealed blob (version byte " +
                               std::to_string(static_cast<uint8_t>(sealed[0])) + ", expected " +
                               std::to_string(kSealedVersion) + ")");
    }
    if (sealed.size() < kSealedOverheadBytes) {
      return Status::Corruption("open: truncated sealed blob (" + std::to_string(sealed.size()) +
                                " bytes, at least " + std::to_string(kSealedOverheadBytes) + ")");
    }
    const auto* p = reinterpret_cast<const unsigned char*>(sealed.data());
    if (std::memcmp(p + 1, key_id_.data(), kSealedKeyIdBytes) != 0) {
      return Status::Corruption("open: sealed with another data key (key id " +
                                hal::ToHex(std::span<const uint8_t>(p + 1, kSealedKeyIdBytes)) +
                                "; this key is " + KeyIdHex() +
                                "): the key file was replaced or lost");
    }
    const unsigned char* nonce = p + 1 + kSealedKeyIdBytes;
    const unsigned char* ct = nonce + kSealedNonceBytes;
    size_t ct_len = sealed.size() - kSealedOverheadBytes;
    const unsigned char* tag = ct + ct_len;
    std::string out(ct_len, '\0');
    std::lock_guard lock(mu_);
    int ret = mbedtls_gcm_auth_decrypt(
        &gcm_, ct_len, nonce, kSealedNonceBytes, reinterpret_cast<const unsigned char*>(aad.data()),
        aad.size(), tag, kSealedTagBytes, ct, reinterpret_cast<unsigned char*>(out.data()));
    if (ret == MBEDTLS_ERR_GCM_AUTH_FAILED) {
      mbedtls_platform_zeroize(out.data(), out.size());
      return Status::Corruption(
          "open: authentication failed (the sealed bytes were altered or damaged, or were "
          "sealed for another purpose than \"" +
          std::string(aad.substr(0, 80)) + "\")");
    }
    if (ret != 0) return Status::IOError("open: AES-GCM failed");
    return out;
  }

  std::string KeyIdHex() const override { return hal::ToHex(key_id_); }

 private:
  mutable std::mutex mu_;  // the GCM context and the DRBG keep state between calls
  mutable mbedtls_gcm_context gcm_;
  mutable mbedtls_entropy_context entropy_;
  mutable mbedtls_ctr_drbg_context drbg_;
  std::array<uint8_t, kSealedKeyIdBytes> key_id_{};
};

Result<std::unique_ptr<DataKey>> Make(const unsigned char* key) {
  auto impl = std::make_unique<DataKeyImpl>();
  if (Status s = impl->Init(key); !s.ok()) return s;
  return std::unique_ptr<DataKey>(std::move(impl));
}

// Reads an existing key file, checking its type, mode and size. kNotFound when absent.
Result<std::unique_ptr<DataKey>> LoadExisting(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return Status::NotFound("data key " + path + " does not exist");
    return Status::IOError("cannot open data key " + path + ": " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::IOError("cannot stat data key " + path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::FailedPrecondition("data key " + path + " is not a regular file: not used");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return Status::FailedPrecondition(
        "data key " + path + " has mode " + ModeOctal(st.st_mode) +
        ": group or others may read it, so it is not used; make it private with `chmod 600 " +
        path +
        "` (and check who copied it), or remove it to start a new key (data sealed with "
        "the old one can then not be opened)");
  }
  if (st.st_size != static_cast<off_t>(kDataKeyBytes)) {
    ::close(fd);
    return Status::FailedPrecondition("data key " + path + " is " + std::to_string(st.st_size) +
                                      " bytes, a data key is " + std::to_string(kDataKeyBytes) +
                                      ": not used (a truncated copy, or another file?)");
  }
  KeyBuffer key;
  size_t got = 0;
  while (got < kDataKeyBytes) {
    ssize_t n = ::read(fd, key.bytes.data() + got, kDataKeyBytes - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      ::close(fd);
      return Status::IOError("cannot read data key " + path + ": " + std::strerror(err));
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return Make(key.bytes.data());
}

Status CreateKeyFile(const std::string& path, const DataKeyOptions& options) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
      std::filesystem::create_directories(dir, ec);
      if (ec) {
        return Status::IOError("cannot create " + dir.string() +
                               " for the data key: " + ec.message());
      }
      std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
    }
  }
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_entropy_init(&entropy);
  mbedtls_ctr_drbg_init(&drbg);
  KeyBuffer key;
  int ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, kDrbgPersonalization,
                                  sizeof(kDrbgPersonalization) - 1);
  if (ret == 0) ret = mbedtls_ctr_drbg_random(&drbg, key.bytes.data(), key.bytes.size());
  mbedtls_ctr_drbg_free(&drbg);
  mbedtls_entropy_free(&entropy);
  if (ret != 0) {
    return Status::IOError("cannot draw a new data key for " + path +
                           ": the random generator failed");
  }
  FileWriteOptions files;
  files.mode = 0600;
  files.replace = false;
  files.owner = options.owner;
  files.group = options.group;
  return WriteFileAtomically(
      path, std::string_view(reinterpret_cast<const char*>(key.bytes.data()), key.bytes.size()),
      files);
}

}  // namespace

Result<std::unique_ptr<DataKey>> DataKey::FromBytes(std::string_view key_bytes) {
  if (key_bytes.size() != kDataKeyBytes) {
    return Status::InvalidArgument("a data key is " + std::to_string(kDataKeyBytes) +
                                   " bytes, got " + std::to_string(key_bytes.size()));
  }
  return Make(reinterpret_cast<const unsigned char*>(key_bytes.data()));
}

Result<std::unique_ptr<DataKey>> DataKey::LoadOrCreate(const std::string& path,
                                                       const DataKeyOptions& options) {
  if (path.empty()) return Status::InvalidArgument("data key path is empty");
  Result<std::unique_ptr<DataKey>> key = LoadExisting(path);
  if (key.ok() || !key.status().IsNotFound() || !options.create_if_missing) return key;
  Status created = CreateKeyFile(path, options);
  // Another process made it first (kFailedPrecondition: it exists): use that one.
  if (!created.ok() && created.code() != Status::Code::kFailedPrecondition) {
    return Status::IOError("cannot create data key " + path + ": " + created.message());
  }
  return LoadExisting(path);
}

}  // namespace waybill::sync
