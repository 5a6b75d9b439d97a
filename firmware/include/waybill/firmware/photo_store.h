// PhotoStore: proof-of-delivery photos, stored as files named by the sha256 of their bytes.
//
// A photo is written to a temporary file, fsynced, renamed to <dir>/<sha256>, and the directory
// is fsynced, so Put() returning means the photo survives a power cut. Storing the same bytes
// twice is harmless (same name). Thread-safe.
//
// With a data key (data_key.h) the file holds the photo sealed, never its bytes:
//     mime code (1 byte: 1 JPEG, 2 PNG) | sealed blob (AAD "waybill photo:<sha256 hex>:<mime>")
// The name stays the sha256 of the plaintext, so a proof refers to the photo by it; the AAD
// binds the sealed bytes to that name and that type, so a sealed photo renamed to another
// photo's name, or given another type byte, does not open. Find() takes the type from that
// byte and the size from the file's (a sealed file is kSealedOverheadBytes + 1 longer than the
// photo), without opening it. Files stored before sealing was on (they begin with the JPEG or
// PNG magic) are read as they are.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "waybill/hal/files.h"
#include "waybill/status.h"

namespace waybill::sync {
class DataKey;
}

namespace waybill::firmware {

struct PhotoRef {
  std::array<uint8_t, 32> sha256{};
  uint64_t bytes = 0;
  std::string mime;
  std::string path;
};

using hal::ToHex;
// Parses 64 hex digits; nullopt if anything else.
std::optional<std::array<uint8_t, 32>> ParseSha256Hex(std::string_view hex);
std::array<uint8_t, 32> Sha256(std::string_view bytes);

class PhotoStore {
 public:
  static constexpr uint64_t kMaxPhotoBytes = 8ull << 20;

  // `dir` is created if missing. With `data_key`, photos are sealed at rest (see above); without,
  // stored as given.
  explicit PhotoStore(std::string dir, std::shared_ptr<const sync::DataKey> data_key = nullptr);

  // Stores a JPEG or PNG (checked by its magic bytes, not by the caller's word). Errors:
  // kInvalidArgument (empty, too large, not an image), kIOError / kNoSpace (nothing stored).
  Result<PhotoRef> Put(std::string_view bytes);

  // The stored photo with this digest, or kNotFound.
  Result<PhotoRef> Find(const std::array<uint8_t, 32>& sha256) const;

  // The photo's bytes, as given to Put(). kNotFound if absent, kIOError if unreadable,
  // kCorruption when the sealed file does not open (another key, altered, renamed) or its bytes
  // do not hash to its name.
  Result<std::string> Read(const std::array<uint8_t, 32>& sha256) const;

  // Deletes the photo (once the bridge holds it). Removing an absent photo is not an error.
  Status Remove(const std::array<uint8_t, 32>& sha256);

 private:
  std::string dir_;
  std::shared_ptr<const sync::DataKey> data_key_;
};

}  // namespace waybill::firmware
