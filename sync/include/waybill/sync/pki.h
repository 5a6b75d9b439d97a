// Device identity: the device's ECDSA P-256 key pair, its certificate signing request, and a small
// fleet CA, on mbedTLS.
//
// A device authenticates to the broker with its own certificate whose CN is its device id (the
// broker turns the CN into the ACL user, so the CN decides which topics the device may use). The
// key is made where it will live (on the unit, or on the tech's machine and then copied), written
// once with mode 0600, and never printed or logged: nothing here returns key material as text,
// and error messages name paths and causes only. DeviceKey holds the key for signing (proofs of
// delivery, later) and for checking that a certificate belongs to it.
//
// Files are written the same way everywhere (WriteFileAtomically): a fresh temporary file created
// with O_EXCL and the final mode, written, fsynced, renamed into place, the directory fsynced. An
// existing file is replaced only when the caller says so; a crash leaves either the old file or
// the new one, never a torn key.
//
// Randomness comes from mbedtls_entropy (getrandom/urandom) through a CTR_DRBG made per call.
// Times are passed in (now_unix_s) so that validity periods are testable and honest about their
// source: the caller states which clock it trusts. The free functions share no state and may be
// called from any thread; two calls writing the same path race like any two writers of a file.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "waybill/status.h"

namespace waybill::sync {

struct FileWriteOptions {
  unsigned mode = 0644;
  bool replace = false;        // false: fail (kFailedPrecondition) when `path` exists
  std::optional<uid_t> owner;  // chown before the rename (needs privilege)
  std::optional<gid_t> group;
};

// Writes `bytes` to `path` atomically and durably with `options.mode` (see the file comment).
// On error `path` is unchanged and the temporary file is removed. Thread-compatible.
Status WriteFileAtomically(const std::string& path, std::string_view bytes,
                           const FileWriteOptions& options);

// Generates an ECDSA P-256 private key and writes it as PEM to `path` with mode 0600 (options.mode
// is ignored; owner and group apply). Fails when `path` exists unless options.replace. The key
// bytes are wiped from memory before returning.
Status GenerateKeyFile(const std::string& path, const FileWriteOptions& options);

// A loaded private key. Thread-safe: Sign serialises on an internal mutex.
class DeviceKey {
 public:
  // Reads a PEM or DER private key (EC P-256 expected; other EC curves and RSA are refused, since
  // the fleet's certificates are P-256). Errors name the path and mbedTLS's reason, never bytes.
  static Result<std::unique_ptr<DeviceKey>> Load(const std::string& path);
  virtual ~DeviceKey() = default;

  // ECDSA signature (DER) over SHA-256 of `data`.
  virtual Result<std::string> SignSha256(std::string_view data) const = 0;
  // The public half as PEM ("-----BEGIN PUBLIC KEY-----").
  virtual Result<std::string> PublicKeyPem() const = 0;
  // A certificate signing request (PEM) with subject CN=<device_id>, signed by this key with
  // ECDSA-SHA256. Fails (kInvalidArgument) when device_id is not a valid device id.
  virtual Result<std::string> MakeCsrPem(const std::string& device_id) const = 0;
  // Ok when the certificate at `cert_path` carries this key's public half; otherwise
  // kFailedPrecondition naming the file.
  virtual Status CheckCertificate(const std::string& cert_path) const = 0;
  // Ok when `signature` (DER) is this key's signature over SHA-256 of `data`.
  virtual Status VerifySha256(std::string_view data, std::string_view signature) const = 0;

 protected:
  DeviceKey() = default;
};

struct CsrInfo {
  std::string common_name;  // the subject's CN
};

// Parses a CSR (PEM or DER), checks its self-signature and that its CN is a valid device id.
// kInvalidArgument says which check failed; `origin` names the CSR in messages.
Result<CsrInfo> VerifyCsr(std::string_view csr, const std::string& origin);

struct CertificateInfo {
  std::string subject;      // "O=..., CN=truck-0042"
  std::string common_name;  // the subject's CN, empty if none
  std::string issuer;
  std::string serial_hex;
  int64_t not_before_unix_s = 0;
  int64_t not_after_unix_s = 0;
  bool is_ca = false;
};

// Reads the first certificate of a PEM or DER file.
Result<CertificateInfo> ReadCertificate(const std::string& path);

// A certificate's public key, for checking signatures made with its private half (the bridge
// checks proofs of delivery with the device's certificate). Thread-safe: VerifySha256 serialises
// on an internal mutex (mbedTLS caches curve tables in the key while it verifies).
class CertificateKey {
 public:
  // Reads the first certificate of a PEM or DER file; its key must be EC P-256.
  static Result<std::unique_ptr<CertificateKey>> Load(const std::string& cert_path);
  virtual ~CertificateKey() = default;

  virtual const CertificateInfo& info() const = 0;
  // Ok when `signature` (DER ECDSA) is the signature of the certificate's key over SHA-256 of
  // `data`; kInvalidArgument naming the certificate otherwise.
  virtual Status VerifySha256(std::string_view data, std::string_view signature) const = 0;

 protected:
  CertificateKey() = default;
};

// Ok when the certificate at `cert_path` chains to a CA in `ca_path` and is valid now (mbedTLS
// checks validity against the system clock). kFailedPrecondition otherwise, with mbedTLS's
// reasons ("The certificate is not correctly signed by the trusted CA").
Status VerifyCertificateChain(const std::string& cert_path, const std::string& ca_path);

// A fleet CA in a folder: ca.key (0600) and ca.crt (0644).
inline constexpr const char* kCaKeyFile = "ca.key";
inline constexpr const char* kCaCertFile = "ca.crt";

struct CaInitOptions {
  std::string common_name = "Waybill Fleet CA";
  int validity_days = 3650;
  int64_t now_unix_s = 0;
  FileWriteOptions files;  // replace: overwrite an existing CA (mode is fixed per file)
};

// Creates `dir` (0700) if needed, a CA key and a self-signed CA certificate (basicConstraints
// CA:TRUE pathlen 0, keyUsage keyCertSign and cRLSign). Fails when ca.key or ca.crt exists unless
// options.files.replace; on failure nothing of a new CA is left behind.
Status InitCa(const std::string& dir, const CaInitOptions& options);

struct SignOptions {
  int validity_days = 825;
  int64_t now_unix_s = 0;
};

// Signs a device CSR with the CA in `ca_dir`: the certificate's subject is CN=<the CSR's CN>, the
// serial is 16 random bytes, not-before is 5 minutes before now (clock skew between the tech's
// machine and the broker), keyUsage digitalSignature, extendedKeyUsage clientAuth, CA:FALSE.
// Refuses (kInvalidArgument) a CSR that VerifyCsr refuses. Returns the certificate as PEM.
Result<std::string> SignCsr(const std::string& ca_dir, std::string_view csr,
                            const std::string& csr_origin, const SignOptions& options);

}  // namespace waybill::sync
