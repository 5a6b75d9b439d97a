#include "waybill/sync/pki.h"

#include <fcntl.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <vector>

#include "waybill/sync/wire.h"

namespace waybill::sync {
namespace {

namespace fs = std::filesystem;

constexpr size_t kPemBufferBytes = 4096;

std::string MbedError(int ret) {
  char buf[160];
  mbedtls_strerror(ret, buf, sizeof(buf));
  return std::string(buf) + " (mbedTLS -0x" + [ret] {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "%04x", static_cast<unsigned>(-ret));
    return std::string(hex);
  }() + ")";
}

std::string Errno(int err) { return std::strerror(err); }

// A DRBG per use: cheap next to an EC operation, and no shared state between threads.
class Drbg {
 public:
  Drbg() {
    mbedtls_entropy_init(&entropy_);
    mbedtls_ctr_drbg_init(&drbg_);
  }
  ~Drbg() {
    mbedtls_ctr_drbg_free(&drbg_);
    mbedtls_entropy_free(&entropy_);
  }
  Drbg(const Drbg&) = delete;
  Drbg& operator=(const Drbg&) = delete;

  Status Seed() {
    static const unsigned char kPersonalization[] = "waybill-pki";
    int ret = mbedtls_ctr_drbg_seed(&drbg_, mbedtls_entropy_func, &entropy_, kPersonalization,
                                    sizeof(kPersonalization) - 1);
    if (ret != 0) return Status::IOError("cannot seed the random generator: " + MbedError(ret));
    return Status::Ok();
  }
  mbedtls_ctr_drbg_context* ctx() { return &drbg_; }

 private:
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
};

// Owns a buffer that is wiped on destruction: PEM or DER of a private key passes through it.
struct SecretBuffer {
  explicit SecretBuffer(size_t n) : bytes(n, 0) {}
  ~SecretBuffer() { mbedtls_platform_zeroize(bytes.data(), bytes.size()); }
  std::vector<unsigned char> bytes;
};

struct Pk {
  Pk() { mbedtls_pk_init(&ctx); }
  ~Pk() { mbedtls_pk_free(&ctx); }
  Pk(const Pk&) = delete;
  Pk& operator=(const Pk&) = delete;
  mbedtls_pk_context ctx;
};

struct Crt {
  Crt() { mbedtls_x509_crt_init(&ctx); }
  ~Crt() { mbedtls_x509_crt_free(&ctx); }
  Crt(const Crt&) = delete;
  Crt& operator=(const Crt&) = delete;
  mbedtls_x509_crt ctx;
};

struct Csr {
  Csr() { mbedtls_x509_csr_init(&ctx); }
  ~Csr() { mbedtls_x509_csr_free(&ctx); }
  Csr(const Csr&) = delete;
  Csr& operator=(const Csr&) = delete;
  mbedtls_x509_csr ctx;
};

struct Mpi {
  Mpi() { mbedtls_mpi_init(&ctx); }
  ~Mpi() { mbedtls_mpi_free(&ctx); }
  Mpi(const Mpi&) = delete;
  Mpi& operator=(const Mpi&) = delete;
  mbedtls_mpi ctx;
};

Status GenerateP256(Pk* pk, Drbg* drbg) {
  int ret = mbedtls_pk_setup(&pk->ctx, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
  if (ret == 0) {
    ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk->ctx),
                              mbedtls_ctr_drbg_random, drbg->ctx());
  }
  if (ret != 0) return Status::IOError("cannot generate an EC P-256 key: " + MbedError(ret));
  return Status::Ok();
}

// Writes the private key as PEM to `path`, mode 0600, through a wiped buffer.
Status WriteKeyPem(const Pk& pk, const std::string& path, FileWriteOptions options) {
  SecretBuffer pem(kPemBufferBytes);
  int ret = mbedtls_pk_write_key_pem(const_cast<mbedtls_pk_context*>(&pk.ctx), pem.bytes.data(),
                                     pem.bytes.size());
  if (ret != 0) return Status::IOError("cannot encode the key for " + path + ": " + MbedError(ret));
  options.mode = 0600;
  size_t len = std::strlen(reinterpret_cast<const char*>(pem.bytes.data()));
  return WriteFileAtomically(
      path, std::string_view(reinterpret_cast<const char*>(pem.bytes.data()), len), options);
}

// mbedTLS parses PEM only from a NUL-terminated buffer whose length counts the NUL.
std::string WithNul(std::string_view bytes) {
  std::string copy(bytes);
  if (copy.find("-----BEGIN") != std::string::npos) copy.push_back('\0');
  return copy;
}

// Non-printable bytes of a name taken from a file are shown as \xNN in messages.
std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

// The subject's CN values (a well-formed device name has exactly one).
std::vector<std::string> CommonNames(const mbedtls_x509_name* name) {
  std::vector<std::string> out;
  for (; name != nullptr; name = name->next) {
    if (name->oid.p != nullptr && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &name->oid) == 0) {
      out.emplace_back(reinterpret_cast<const char*>(name->val.p), name->val.len);
    }
  }
  return out;
}

std::string DnString(const mbedtls_x509_name* name) {
  char buf[1024];
  int n = mbedtls_x509_dn_gets(buf, sizeof(buf), name);
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

int64_t UnixSeconds(const mbedtls_x509_time& t) {
  std::tm tm{};
  tm.tm_year = t.year - 1900;
  tm.tm_mon = t.mon - 1;
  tm.tm_mday = t.day;
  tm.tm_hour = t.hour;
  tm.tm_min = t.min;
  tm.tm_sec = t.sec;
  return static_cast<int64_t>(timegm(&tm));
}

// What a tech or an error message needs to know of a parsed certificate.
CertificateInfo InfoOf(const mbedtls_x509_crt& crt) {
  CertificateInfo info;
  info.subject = DnString(&crt.subject);
  std::vector<std::string> cns = CommonNames(&crt.subject);
  if (!cns.empty()) info.common_name = cns[0];
  info.issuer = DnString(&crt.issuer);
  char serial[128];
  int n = mbedtls_x509_serial_gets(serial, sizeof(serial), &crt.serial);
  if (n > 0) info.serial_hex.assign(serial, static_cast<size_t>(n));
  info.not_before_unix_s = UnixSeconds(crt.valid_from);
  info.not_after_unix_s = UnixSeconds(crt.valid_to);
  info.is_ca = crt.ca_istrue != 0;
  return info;
}

// "YYYYMMDDhhmmss" in UTC, what mbedtls_x509write_crt_set_validity takes.
std::string X509Time(int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d%02d%02d%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

Status ParseCertFile(const std::string& path, Crt* crt) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Status::NotFound("certificate " + path + " cannot be read: " + Errno(errno));
  }
  int ret = mbedtls_x509_crt_parse_file(&crt->ctx, path.c_str());
  if (ret != 0) {
    return Status::InvalidArgument("certificate " + path +
                                   " is not a PEM or DER X.509 "
                                   "certificate: " +
                                   MbedError(ret));
  }
  return Status::Ok();
}

Status ParseKeyFile(const std::string& path, Pk* pk) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Status::NotFound("key " + path + " cannot be read: " + Errno(errno));
  }
  int ret = mbedtls_pk_parse_keyfile(&pk->ctx, path.c_str(), nullptr);
  if (ret != 0) {
    return Status::InvalidArgument("key " + path +
                                   " is not an unencrypted PEM or DER private "
                                   "key: " +
                                   MbedError(ret));
  }
  return Status::Ok();
}

Status RandomSerial(Drbg* drbg, Mpi* serial) {
  unsigned char bytes[16];
  int ret = mbedtls_ctr_drbg_random(drbg->ctx(), bytes, sizeof(bytes));
  if (ret != 0) return Status::IOError("cannot draw a serial number: " + MbedError(ret));
  bytes[0] &= 0x7f;  // positive as a DER INTEGER
  bytes[0] |= 0x40;  // and never zero or short
  ret = mbedtls_mpi_read_binary(&serial->ctx, bytes, sizeof(bytes));
  if (ret != 0) return Status::IOError("cannot draw a serial number: " + MbedError(ret));
  return Status::Ok();
}

Status ParseCsr(std::string_view bytes, const std::string& origin, Csr* csr) {
  std::string buf = WithNul(bytes);
  int ret = mbedtls_x509_csr_parse(&csr->ctx, reinterpret_cast<const unsigned char*>(buf.data()),
                                   buf.size());
  if (ret != 0) {
    return Status::InvalidArgument(
        origin + " is not a PEM or DER certificate signing request: " + MbedError(ret));
  }
  return Status::Ok();
}

Status CheckCsrSignature(Csr* csr, const std::string& origin) {
  const mbedtls_md_info_t* md = mbedtls_md_info_from_type(csr->ctx.sig_md);
  if (md == nullptr) {
    return Status::InvalidArgument(origin + ": the CSR's signature uses an unsupported digest");
  }
  unsigned char hash[MBEDTLS_MD_MAX_SIZE];
  int ret = mbedtls_md(md, csr->ctx.cri.p, csr->ctx.cri.len, hash);
  if (ret == 0) {
    ret = mbedtls_pk_verify_ext(csr->ctx.sig_pk, csr->ctx.sig_opts, &csr->ctx.pk, csr->ctx.sig_md,
                                hash, mbedtls_md_get_size(md), csr->ctx.sig.p, csr->ctx.sig.len);
  }
  if (ret != 0) {
    return Status::InvalidArgument(origin +
                                   ": the CSR's signature does not verify (it was changed after "
                                   "it was signed, or signed by another key): " +
                                   MbedError(ret));
  }
  return Status::Ok();
}

Result<std::string> CheckedCommonName(const mbedtls_x509_name* subject, const std::string& origin,
                                      const char* what) {
  std::vector<std::string> cns = CommonNames(subject);
  if (cns.size() != 1) {
    return Status::InvalidArgument(origin + ": the " + what + " has " + std::to_string(cns.size()) +
                                   " CNs in its subject; a device's has exactly one, its id");
  }
  if (!IsValidDeviceId(cns[0])) {
    return Status::InvalidArgument(origin + ": the " + what + "'s CN \"" + Printable(cns[0]) +
                                   "\" is not a valid device id (1 to 64 letters, digits, '-' or "
                                   "'_'; the broker makes it the MQTT user name)");
  }
  return cns[0];
}

class MbedDeviceKey final : public DeviceKey {
 public:
  MbedDeviceKey() { mbedtls_pk_init(&pk_); }
  ~MbedDeviceKey() override { mbedtls_pk_free(&pk_); }

  Status Load(const std::string& path) {
    Pk pk;
    if (Status s = ParseKeyFile(path, &pk); !s.ok()) return s;
    if (mbedtls_pk_get_type(&pk.ctx) != MBEDTLS_PK_ECKEY ||
        mbedtls_pk_ec(pk.ctx)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
      return Status::InvalidArgument("key " + path + " is a " +
                                     std::string(mbedtls_pk_get_name(&pk.ctx)) +
                                     " key; device keys are EC P-256");
    }
    std::swap(pk_, pk.ctx);
    path_ = path;
    return Status::Ok();
  }

  Result<std::string> SignSha256(std::string_view data) const override {
    unsigned char hash[32];
    mbedtls_sha256_ret(reinterpret_cast<const unsigned char*>(data.data()), data.size(), hash, 0);
    unsigned char sig[MBEDTLS_ECDSA_MAX_LEN];
    size_t sig_len = 0;
    std::lock_guard<std::mutex> lock(mu_);
    Drbg drbg;
    if (Status s = drbg.Seed(); !s.ok()) return s;
    int ret = mbedtls_pk_sign(&pk_, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, &sig_len,
                              mbedtls_ctr_drbg_random, drbg.ctx());
    if (ret != 0) return Status::IOError("cannot sign with " + path_ + ": " + MbedError(ret));
    return std::string(reinterpret_cast<const char*>(sig), sig_len);
  }

  Status VerifySha256(std::string_view data, std::string_view signature) const override {
    unsigned char hash[32];
    mbedtls_sha256_ret(reinterpret_cast<const unsigned char*>(data.data()), data.size(), hash, 0);
    std::lock_guard<std::mutex> lock(mu_);
    int ret = mbedtls_pk_verify(&pk_, MBEDTLS_MD_SHA256, hash, sizeof(hash),
                                reinterpret_cast<const unsigned char*>(signature.data()),
                                signature.size());
    if (ret != 0) {
      return Status::InvalidArgument("signature does not verify with the key of " + path_ + ": " +
                                     MbedError(ret));
    }
    return Status::Ok();
  }

  Result<std::string> PublicKeyPem() const override {
    unsigned char buf[kPemBufferBytes];
    std::lock_guard<std::mutex> lock(mu_);
    int ret = mbedtls_pk_write_pubkey_pem(&pk_, buf, sizeof(buf));
    if (ret != 0) return Status::IOError("cannot encode the public key: " + MbedError(ret));
    return std::string(reinterpret_cast<const char*>(buf));
  }

  Result<std::string> MakeCsrPem(const std::string& device_id) const override {
    if (!IsValidDeviceId(device_id)) {
      return Status::InvalidArgument("device id \"" + Printable(device_id) +
                                     "\" must be 1 to 64 letters, digits, '-' or '_'");
    }
    std::lock_guard<std::mutex> lock(mu_);
    Drbg drbg;
    if (Status s = drbg.Seed(); !s.ok()) return s;
    mbedtls_x509write_csr req;
    mbedtls_x509write_csr_init(&req);
    mbedtls_x509write_csr_set_md_alg(&req, MBEDTLS_MD_SHA256);
    mbedtls_x509write_csr_set_key(&req, &pk_);
    std::string subject = "CN=" + device_id;
    unsigned char buf[kPemBufferBytes];
    int ret = mbedtls_x509write_csr_set_subject_name(&req, subject.c_str());
    if (ret == 0) {
      ret = mbedtls_x509write_csr_pem(&req, buf, sizeof(buf), mbedtls_ctr_drbg_random, drbg.ctx());
    }
    mbedtls_x509write_csr_free(&req);
    if (ret != 0)
      return Status::IOError("cannot write a CSR for " + device_id + ": " + MbedError(ret));
    return std::string(reinterpret_cast<const char*>(buf));
  }

  Status CheckCertificate(const std::string& cert_path) const override {
    Crt crt;
    if (Status s = ParseCertFile(cert_path, &crt); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    if (mbedtls_pk_check_pair(&crt.ctx.pk, &pk_) != 0) {
      return Status::FailedPrecondition("certificate " + cert_path +
                                        " does not belong to the key " + path_ +
                                        " (its public key is another one)");
    }
    return Status::Ok();
  }

 private:
  // mbedTLS takes non-const contexts even for reads; the mutex makes the sharing safe.
  mutable std::mutex mu_;
  mutable mbedtls_pk_context pk_;
  std::string path_;
};

class MbedCertificateKey final : public CertificateKey {
 public:
  Status Load(const std::string& path) {
    if (Status s = ParseCertFile(path, &crt_); !s.ok()) return s;
    if (mbedtls_pk_get_type(&crt_.ctx.pk) != MBEDTLS_PK_ECKEY ||
        mbedtls_pk_ec(crt_.ctx.pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
      return Status::InvalidArgument("certificate " + path + " holds a " +
                                     std::string(mbedtls_pk_get_name(&crt_.ctx.pk)) +
                                     " key; device keys are EC P-256");
    }
    path_ = path;
    info_ = InfoOf(crt_.ctx);
    return Status::Ok();
  }

  const CertificateInfo& info() const override { return info_; }

  Status VerifySha256(std::string_view data, std::string_view signature) const override {
    unsigned char hash[32];
    mbedtls_sha256_ret(reinterpret_cast<const unsigned char*>(data.data()), data.size(), hash, 0);
    std::lock_guard<std::mutex> lock(mu_);
    int ret = mbedtls_pk_verify(&crt_.ctx.pk, MBEDTLS_MD_SHA256, hash, sizeof(hash),
                                reinterpret_cast<const unsigned char*>(signature.data()),
                                signature.size());
    if (ret != 0) {
      return Status::InvalidArgument("signature does not verify with the key of the certificate " +
                                     path_ + " (serial " + info_.serial_hex +
                                     "): " + MbedError(ret));
    }
    return Status::Ok();
  }

 private:
  mutable std::mutex mu_;
  mutable Crt crt_;
  std::string path_;
  CertificateInfo info_;
};

}  // namespace

Result<std::unique_ptr<CertificateKey>> CertificateKey::Load(const std::string& cert_path) {
  auto key = std::make_unique<MbedCertificateKey>();
  if (Status s = key->Load(cert_path); !s.ok()) return s;
  return std::unique_ptr<CertificateKey>(std::move(key));
}

Status WriteFileAtomically(const std::string& path, std::string_view bytes,
                           const FileWriteOptions& options) {
  struct stat st;
  if (!options.replace && ::lstat(path.c_str(), &st) == 0) {
    return Status::FailedPrecondition(path + " exists and is kept (nothing was written)");
  }
  fs::path target(path);
  fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());  // a leftover of a crashed run of this same process id
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  static_cast<mode_t>(options.mode));
  if (fd < 0) return Status::IOError("cannot create " + tmp + ": " + Errno(errno));
  auto fail = [&](const std::string& what, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status::IOError(what + " " + tmp + ": " + Errno(err) + "; " + path + " is unchanged");
  };
  // The umask may have taken bits off; the caller's mode is the one wanted.
  if (::fchmod(fd, static_cast<mode_t>(options.mode)) != 0) return fail("cannot chmod", errno);
  if (options.owner || options.group) {
    uid_t uid = options.owner ? *options.owner : static_cast<uid_t>(-1);
    gid_t gid = options.group ? *options.group : static_cast<gid_t>(-1);
    if (::fchown(fd, uid, gid) != 0) return fail("cannot chown", errno);
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("cannot write", n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("cannot fsync", errno);
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::IOError("cannot close " + tmp + ": " + Errno(err) + "; " + path +
                           " is unchanged");
  }
  int ret = options.replace
                ? ::rename(tmp.c_str(), path.c_str())
                : ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE);
  if (ret != 0 && !options.replace && (errno == EINVAL || errno == ENOSYS)) {
    // A file system without RENAME_NOREPLACE: link() fails the same way on an existing target.
    ret = ::link(tmp.c_str(), path.c_str());
    if (ret == 0) ::unlink(tmp.c_str());
  }
  if (ret != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    if (err == EEXIST) {
      return Status::FailedPrecondition(path + " appeared while it was written; it is kept");
    }
    return Status::IOError("cannot move " + tmp + " to " + path + ": " + Errno(err));
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    int sync_ret = ::fsync(dfd);
    int err = errno;
    ::close(dfd);
    if (sync_ret != 0) {
      return Status::IOError("wrote " + path + " but cannot fsync " + dir.string() + ": " +
                             Errno(err));
    }
  }
  return Status::Ok();
}

Status GenerateKeyFile(const std::string& path, const FileWriteOptions& options) {
  Drbg drbg;
  if (Status s = drbg.Seed(); !s.ok()) return s;
  Pk pk;
  if (Status s = GenerateP256(&pk, &drbg); !s.ok()) return s;
  return WriteKeyPem(pk, path, options);
}

Result<std::unique_ptr<DeviceKey>> DeviceKey::Load(const std::string& path) {
  auto key = std::make_unique<MbedDeviceKey>();
  if (Status s = key->Load(path); !s.ok()) return s;
  return std::unique_ptr<DeviceKey>(std::move(key));
}

Result<CsrInfo> VerifyCsr(std::string_view bytes, const std::string& origin) {
  Csr csr;
  if (Status s = ParseCsr(bytes, origin, &csr); !s.ok()) return s;
  if (Status s = CheckCsrSignature(&csr, origin); !s.ok()) return s;
  Result<std::string> cn = CheckedCommonName(&csr.ctx.subject, origin, "CSR");
  if (!cn.ok()) return cn.status();
  return CsrInfo{*cn};
}

Result<CertificateInfo> ReadCertificate(const std::string& path) {
  Crt crt;
  if (Status s = ParseCertFile(path, &crt); !s.ok()) return s;
  return InfoOf(crt.ctx);
}

Status VerifyCertificateChain(const std::string& cert_path, const std::string& ca_path) {
  Crt crt, ca;
  if (Status s = ParseCertFile(cert_path, &crt); !s.ok()) return s;
  if (Status s = ParseCertFile(ca_path, &ca); !s.ok()) return s;
  uint32_t flags = 0;
  int ret = mbedtls_x509_crt_verify(&crt.ctx, &ca.ctx, nullptr, nullptr, &flags, nullptr, nullptr);
  if (ret == 0) return Status::Ok();
  char info[1024];
  int n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
  std::string reasons = n > 0 ? std::string(info, static_cast<size_t>(n)) : MbedError(ret);
  while (!reasons.empty() && reasons.back() == '\n') reasons.pop_back();
  for (size_t at = reasons.find('\n'); at != std::string::npos; at = reasons.find('\n', at)) {
    reasons.replace(at, 1, "; ");
  }
  return Status::FailedPrecondition("certificate " + cert_path + " is not accepted by the CA " +
                                    ca_path + ": " + reasons);
}

Status InitCa(const std::string& dir, const CaInitOptions& options) {
  const std::string& cn = options.common_name;
  if (cn.empty() || cn.size() > 64) {
    return Status::InvalidArgument("CA name must be 1 to 64 characters");
  }
  for (char c : cn) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == ' ' || c == '-' || c == '_' || c == '.' || c == '(' || c == ')';
    if (!ok) {
      return Status::InvalidArgument("CA name \"" + Printable(cn) +
                                     "\" may hold letters, digits, spaces and - _ . ( ) only");
    }
  }
  if (options.validity_days < 1 || options.validity_days > 36500) {
    return Status::InvalidArgument("CA validity must be 1 to 36500 days");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create the CA folder " + dir + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  std::string key_path = (fs::path(dir) / kCaKeyFile).string();
  std::string cert_path = (fs::path(dir) / kCaCertFile).string();
  if (!options.files.replace) {
    for (const std::string& p : {key_path, cert_path}) {
      if (fs::exists(p, ec)) {
        return Status::FailedPrecondition(p + " exists: " + dir +
                                          " already holds a CA (nothing was changed)");
      }
    }
  }

  Drbg drbg;
  if (Status s = drbg.Seed(); !s.ok()) return s;
  Pk key;
  if (Status s = GenerateP256(&key, &drbg); !s.ok()) return s;
  Mpi serial;
  if (Status s = RandomSerial(&drbg, &serial); !s.ok()) return s;

  mbedtls_x509write_cert crt;
  mbedtls_x509write_crt_init(&crt);
  mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
  mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
  mbedtls_x509write_crt_set_subject_key(&crt, &key.ctx);
  mbedtls_x509write_crt_set_issuer_key(&crt, &key.ctx);
  std::string name = "CN=" + cn;
  std::string from = X509Time(options.now_unix_s - 300);
  std::string to = X509Time(options.now_unix_s + int64_t{options.validity_days} * 86400);
  unsigned char pem[kPemBufferBytes];
  int ret = mbedtls_x509write_crt_set_subject_name(&crt, name.c_str());
  if (ret == 0) ret = mbedtls_x509write_crt_set_issuer_name(&crt, name.c_str());
  if (ret == 0) ret = mbedtls_x509write_crt_set_serial(&crt, &serial.ctx);
  if (ret == 0) ret = mbedtls_x509write_crt_set_validity(&crt, from.c_str(), to.c_str());
  if (ret == 0) ret = mbedtls_x509write_crt_set_basic_constraints(&crt, 1, 0);
  if (ret == 0) ret = mbedtls_x509write_crt_set_subject_key_identifier(&crt);
  if (ret == 0) ret = mbedtls_x509write_crt_set_authority_key_identifier(&crt);
  if (ret == 0) {
    ret = mbedtls_x509write_crt_set_key_usage(
        &crt, MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN);
  }
  if (ret == 0) {
    ret = mbedtls_x509write_crt_pem(&crt, pem, sizeof(pem), mbedtls_ctr_drbg_random, drbg.ctx());
  }
  mbedtls_x509write_crt_free(&crt);
  if (ret != 0) return Status::IOError("cannot make the CA certificate: " + MbedError(ret));

  FileWriteOptions key_options = options.files;
  if (Status s = WriteKeyPem(key, key_path, key_options); !s.ok()) return s;
  FileWriteOptions cert_options = options.files;
  cert_options.mode = 0644;
  Status s = WriteFileAtomically(cert_path, reinterpret_cast<const char*>(pem), cert_options);
  if (!s.ok()) {
    ::unlink(key_path.c_str());  // a key without its certificate is no CA
    return s;
  }
  return Status::Ok();
}

Result<std::string> SignCsr(const std::string& ca_dir, std::string_view csr_bytes,
                            const std::string& csr_origin, const SignOptions& options) {
  if (options.validity_days < 1 || options.validity_days > 36500) {
    return Status::InvalidArgument("certificate validity must be 1 to 36500 days");
  }
  Csr csr;
  if (Status s = ParseCsr(csr_bytes, csr_origin, &csr); !s.ok()) return s;
  if (Status s = CheckCsrSignature(&csr, csr_origin); !s.ok()) return s;
  Result<std::string> cn = CheckedCommonName(&csr.ctx.subject, csr_origin, "CSR");
  if (!cn.ok()) return cn.status();

  std::string key_path = (fs::path(ca_dir) / kCaKeyFile).string();
  std::string cert_path = (fs::path(ca_dir) / kCaCertFile).string();
  Pk ca_key;
  if (Status s = ParseKeyFile(key_path, &ca_key); !s.ok()) return s;
  Crt ca_crt;
  if (Status s = ParseCertFile(cert_path, &ca_crt); !s.ok()) return s;
  if (!ca_crt.ctx.ca_istrue) {
    return Status::FailedPrecondition(cert_path +
                                      " is not a CA certificate (basicConstraints "
                                      "CA:FALSE)");
  }
  if (mbedtls_pk_check_pair(&ca_crt.ctx.pk, &ca_key.ctx) != 0) {
    return Status::FailedPrecondition(key_path + " is not the key of " + cert_path);
  }

  Drbg drbg;
  if (Status s = drbg.Seed(); !s.ok()) return s;
  Mpi serial;
  if (Status s = RandomSerial(&drbg, &serial); !s.ok()) return s;
  // A certificate outliving its CA would only fail later, at the broker: end it with the CA.
  int64_t not_after = options.now_unix_s + int64_t{options.validity_days} * 86400;
  not_after = std::min(not_after, UnixSeconds(ca_crt.ctx.valid_to));
  std::string from = X509Time(options.now_unix_s - 300);
  std::string to = X509Time(not_after);
  std::string subject = "CN=" + *cn;
  std::string issuer = DnString(&ca_crt.ctx.subject);
  static const unsigned char kClientAuth[] = {0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06,
                                              0x01, 0x05, 0x05, 0x07, 0x03, 0x02};

  mbedtls_x509write_cert crt;
  mbedtls_x509write_crt_init(&crt);
  mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
  mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
  mbedtls_x509write_crt_set_subject_key(&crt, &csr.ctx.pk);
  mbedtls_x509write_crt_set_issuer_key(&crt, &ca_key.ctx);
  unsigned char pem[kPemBufferBytes];
  int ret = mbedtls_x509write_crt_set_subject_name(&crt, subject.c_str());
  if (ret == 0) ret = mbedtls_x509write_crt_set_issuer_name(&crt, issuer.c_str());
  if (ret == 0) ret = mbedtls_x509write_crt_set_serial(&crt, &serial.ctx);
  if (ret == 0) ret = mbedtls_x509write_crt_set_validity(&crt, from.c_str(), to.c_str());
  if (ret == 0) ret = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1);
  if (ret == 0) ret = mbedtls_x509write_crt_set_subject_key_identifier(&crt);
  if (ret == 0) ret = mbedtls_x509write_crt_set_authority_key_identifier(&crt);
  if (ret == 0) ret = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
  if (ret == 0) {
    ret = mbedtls_x509write_crt_set_extension(&crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                              MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0,
                                              kClientAuth, sizeof(kClientAuth));
  }
  if (ret == 0) {
    ret = mbedtls_x509write_crt_pem(&crt, pem, sizeof(pem), mbedtls_ctr_drbg_random, drbg.ctx());
  }
  mbedtls_x509write_crt_free(&crt);
  if (ret != 0) {
    return Status::IOError("cannot sign the certificate for " + *cn + ": " + MbedError(ret));
  }
  return std::string(reinterpret_cast<const char*>(pem));
}

}  // namespace waybill::sync
