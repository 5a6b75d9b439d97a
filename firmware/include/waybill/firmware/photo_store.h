// PhotoStore: proof-of-delivery photos, stored as files named by their sha256.
//
// A photo is written to a temporary file, fsynced, renamed to <dir>/<sha256>, and the directory
// is fsynced, so Put() returning means the photo survives a power cut. Storing the same bytes
// twice is harmless (same name). Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "waybill/status.h"

namespace waybill::firmware {

struct PhotoRef {
  std::array<uint8_t, 32> sha256{};
  uint64_t bytes = 0;
  std::string mime;
  std::string path;
};

std::string ToHex(std::span<const uint8_t> bytes);
// Parses 64 hex digits; nullopt if anything else.
std::optional<std::array<uint8_t, 32>> ParseSha256Hex(std::string_view hex);
std::array<uint8_t, 32> Sha256(std::string_view bytes);

class PhotoStore {
 public:
  static constexpr uint64_t kMaxPhotoBytes = 8ull << 20;

  // `dir` is created if missing.
  explicit PhotoStore(std::string dir);

  // Stores a JPEG or PNG (checked by its magic bytes, not by the caller's word). Errors:
  // kInvalidArgument (empty, too large, not an image), kIOError / kNoSpace (nothing stored).
  Result<PhotoRef> Put(std::string_view bytes);

  // The stored photo with this digest, or kNotFound.
  Result<PhotoRef> Find(const std::array<uint8_t, 32>& sha256) const;

  // The photo's bytes, as given to Put(). kNotFound if absent, kIOError if unreadable.
  Result<std::string> Read(const std::array<uint8_t, 32>& sha256) const;

  // Deletes the photo (once the bridge holds it). Removing an absent photo is not an error.
  Status Remove(const std::array<uint8_t, 32>& sha256);

 private:
  std::string dir_;
};

}  // namespace waybill::firmware
