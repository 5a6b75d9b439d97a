// ManifestStore: the day's delivery manifest sent down by the backend, kept on the unit for the
// in-cab app (GET /v1/manifest), so the driver has the stops with the network down.
//
// Put() writes <data_dir>/manifest.json through a temporary file, fsync and rename: after it
// returns, a power cut leaves the new manifest or (before) the old one, never half of each.
// Thread-safe.
#pragma once

#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "waybill/status.h"
#include "waybill/sync/wire.h"

namespace waybill::firmware {

class ManifestStore {
 public:
  explicit ManifestStore(std::string path) : path_(std::move(path)) {}

  // Stores the manifest with the time it arrived (ms since the Unix epoch).
  Status Put(const sync::Manifest& manifest, int64_t received_ms);
  // The stored manifest as the API serves it, or nullopt if none was ever received.
  std::optional<nlohmann::json> Get() const;

  static nlohmann::json ToJson(const sync::Manifest& manifest, int64_t received_ms);

 private:
  std::string path_;
  mutable std::mutex mu_;
};

}  // namespace waybill::firmware
