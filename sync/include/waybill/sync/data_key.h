// The data key: personal data at rest on the unit (proofs of delivery, deliveries, photos) is
// sealed with AES-256-GCM under one 256-bit key kept in a file of its own.
//
// The key file holds exactly 32 random bytes, mode 0600. LoadOrCreate() makes it on the first
// start (mbedTLS CTR_DRBG seeded from the system's entropy; written like every key file, see
// WriteFileAtomically in pki.h: O_EXCL, fsync, rename, fsync of the directory) and reuses it
// after. A key file that group or others may read, or that is not 32 bytes, is refused: the
// daemon stops with a message naming the file and the fix instead of sealing with a key anyone
// can read or with half a key.
//
// A sealed blob is
//     version (1 byte, 0x01) | key id (4) | nonce (12, random) | ciphertext | tag (16)
// 33 bytes more than the plaintext. The version byte is below 0x08 on purpose: no protobuf
// message, JPEG or PNG can begin with such a byte (a protobuf tag with field number 0 is
// invalid), so a sealed body is told from a plaintext one written before sealing was on by its
// first byte (IsSealed). The key id (the first 4 bytes of SHA-256 over a label and the key) says
// which key sealed a blob, so that "sealed with another key" (a lost or replaced key file) is
// reported as such and not as tampering. The AAD is authenticated but not stored: it binds a
// blob to its purpose ("outbox:pod", "photo:<sha256>"), so a blob moved to another use fails to
// open. Random 96-bit nonces are safe for far more seals than a unit makes in its life (NIST
// bounds one key at 2^32 random nonces; a unit seals a few thousand blobs a day).
//
// What the key protects against, and what not, is in docs/PERSONAL-DATA.md: in short, a copy of
// the data directory or a flash chip read out without the key file; not a whole unit stolen with
// its key file on the same disk.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "waybill/status.h"

namespace waybill::sync {

inline constexpr uint8_t kSealedVersion = 0x01;
inline constexpr size_t kDataKeyBytes = 32;
inline constexpr size_t kSealedKeyIdBytes = 4;
inline constexpr size_t kSealedNonceBytes = 12;
inline constexpr size_t kSealedTagBytes = 16;
inline constexpr size_t kSealedOverheadBytes =
    1 + kSealedKeyIdBytes + kSealedNonceBytes + kSealedTagBytes;

// True when `bytes` starts like a sealed blob (version byte and room for header and tag). Says
// nothing about whether it opens.
inline bool IsSealed(std::string_view bytes) {
  return bytes.size() >= kSealedOverheadBytes && static_cast<uint8_t>(bytes[0]) == kSealedVersion;
}

// The key id of a sealed blob as 8 hex digits, or "" when `bytes` is not sealed.
inline std::string SealedKeyIdHex(std::string_view bytes) {
  if (!IsSealed(bytes)) return "";
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (size_t i = 1; i <= kSealedKeyIdBytes; ++i) {
    auto b = static_cast<uint8_t>(bytes[i]);
    hex.push_back(kDigits[b >> 4]);
    hex.push_back(kDigits[b & 15]);
  }
  return hex;
}

struct DataKeyOptions {
  bool create_if_missing = true;  // false: a missing file is kNotFound (tools never create keys)
  std::optional<uid_t> owner;     // of a created file (needs privilege)
  std::optional<gid_t> group;
};

class DataKey {
 public:
  // Loads the key at `path`, creating it (and its directory, 0700) first when it is missing and
  // options.create_if_missing. Errors: kFailedPrecondition when the file is readable by group or
  // others, is not a regular file, or is not 32 bytes (the message names the path and the fix);
  // kNotFound when missing and not to be created; kIOError otherwise. A file that another process
  // creates at the same moment is loaded, not overwritten.
  static Result<std::unique_ptr<DataKey>> LoadOrCreate(const std::string& path,
                                                       const DataKeyOptions& options = {});

  // A key from its 32 bytes (tests, tools). kInvalidArgument for another size.
  static Result<std::unique_ptr<DataKey>> FromBytes(std::string_view key_bytes);

  virtual ~DataKey() = default;

  // Seals `plaintext` bound to `aad`. Fails (kIOError) only when the random generator does.
  // Thread-safe.
  virtual Result<std::string> Seal(std::string_view plaintext, std::string_view aad) const = 0;

  // Opens a blob made by Seal with the same key and `aad`. Errors name what failed:
  // kInvalidArgument when `sealed` is not a sealed blob (unknown version byte);
  // kCorruption when it is truncated, was sealed with another key (both key ids are named), or
  // fails authentication (tampered or damaged, or sealed for another purpose). Thread-safe.
  virtual Result<std::string> Open(std::string_view sealed, std::string_view aad) const = 0;

  // This key's id, 8 hex digits (names the key in messages; not secret).
  virtual std::string KeyIdHex() const = 0;

 protected:
  DataKey() = default;
};

}  // namespace waybill::sync
