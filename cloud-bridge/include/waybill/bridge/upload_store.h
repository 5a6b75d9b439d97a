// UploadStore: the bridge's files of proof-of-delivery photos being uploaded by trucks, the
// resumable half of the upload protocol without its HTTP (docs/BRIDGE.md, "Photo uploads").
//
// The method. A photo is named by the sha256 of its bytes and lives under its device's folder:
// <dir>/<device>/<sha>.part while it arrives, <dir>/<device>/<sha> once whole and verified. Each
// Append() writes its bytes at the end of the part file and fdatasyncs it before returning, so
// the offset it answers (the part's size) is what survives a crash of the bridge: the truck asks
// for that offset (Head) and sends only the rest. When the last byte arrives, the whole file is
// hashed; a photo whose digest differs from its name is discarded (the truck may send it again
// from the start), a good one is renamed to its final name and the folder is fsynced.
//
// Least privilege: the device comes from the caller (the TLS client certificate's CN), never
// from the request, and only names a folder; a truck can neither read nor write another's photos.
//
// Forwarding state is kept beside the photo as empty marker files, <sha>.forwarded (its mtime is
// the forwarding time, for the retention) or <sha>.refused (the backend refused it with a 4xx:
// kept for an operator, not sent again). A marker is written and its folder fsynced before the
// caller counts the photo as forwarded, so a restart neither loses a photo nor sends it forever.
//
// Failure contract: an Append() that fails with an error has stored nothing beyond the offset
// that Head() then reports. Thread-safety: all methods may be called from any thread; two
// Append()s of the same photo at once get Busy for the second.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "waybill/status.h"

namespace waybill::bridge {

struct UploadStoreOptions {
  std::string dir;                  // created if missing
  uint64_t max_bytes = 8ull << 20;  // the largest photo (Upload-Length) accepted
};

struct UploadProgress {
  uint64_t offset = 0;    // bytes durably held
  bool complete = false;  // whole and verified (offset is then the photo's size)
};

enum class AppendVerdict {
  kAccepted,         // appended; more to come
  kCompleted,        // the last bytes: verified and stored under its final name
  kWrongOffset,      // the request's offset is not the stored one: nothing written
  kAlreadyComplete,  // the photo is already whole: nothing written
  kDigestMismatch,   // whole, but its sha256 differs from its name: discarded
};
std::string_view ToString(AppendVerdict verdict);

struct AppendResult {
  AppendVerdict verdict = AppendVerdict::kAccepted;
  uint64_t offset = 0;    // bytes durably held after the call (0 after a digest mismatch)
  uint64_t appended = 0;  // bytes this call wrote
};

struct StoredPhoto {
  std::string device;
  std::string sha256_hex;  // lower case
  std::string path;        // the complete photo
  uint64_t bytes = 0;
  bool forwarded = false;
  int64_t forwarded_unix_ms = 0;  // when, if forwarded
  bool refused = false;
};

class UploadStore {
 public:
  // Creates `options.dir` if missing. Fails with IOError naming it.
  static Result<std::unique_ptr<UploadStore>> Open(UploadStoreOptions options);

  // How much of `device`'s photo `sha256_hex` is held. NotFound if nothing; InvalidArgument for a
  // device id or digest that is not well formed.
  Result<UploadProgress> Head(std::string_view device, std::string_view sha256_hex) const;

  // Appends `bytes` at `offset` of a photo of `total` bytes. `offset` must equal the stored
  // offset (else kWrongOffset with the stored one). InvalidArgument when the device id or digest
  // is malformed, `total` is 0 or above max_bytes, or offset + bytes exceed `total`; Busy when
  // another Append() of the same photo runs; IOError / NoSpace when the disk fails (nothing
  // beyond the offset Head() reports is kept).
  Result<AppendResult> Append(std::string_view device, std::string_view sha256_hex, uint64_t offset,
                              uint64_t total, std::string_view bytes);

  // Every complete photo, forwarded or not, in no particular order.
  Result<std::vector<StoredPhoto>> List() const;
  // The bytes of a complete photo.
  Result<std::string> Read(const StoredPhoto& photo) const;
  // Durable markers: the backend has the photo / refused it (`reason` is kept in the marker).
  Status MarkForwarded(const StoredPhoto& photo);
  Status MarkRefused(const StoredPhoto& photo, std::string_view reason);
  // Deletes photos forwarded before `before_unix_ms`, with their markers; returns how many.
  Result<size_t> PruneForwarded(int64_t before_unix_ms);

  const UploadStoreOptions& options() const { return options_; }

 private:
  explicit UploadStore(UploadStoreOptions options) : options_(std::move(options)) {}
  Status Mark(const StoredPhoto& photo, const char* suffix, std::string_view text);

  UploadStoreOptions options_;
  std::mutex busy_mu_;
  std::set<std::string> busy_;  // "<device>/<sha>" with an Append() running
};

// Lower-cases a 64-hex-digit sha256; empty if `hex` is anything else.
std::string NormalizeSha256Hex(std::string_view hex);
// The sha256 of `bytes`, 64 lower-case hex digits.
std::string Sha256Hex(std::string_view bytes);
// "image/jpeg" or "image/png" by the magic bytes; "application/octet-stream" otherwise.
std::string_view PhotoMime(std::string_view head);

}  // namespace waybill::bridge
