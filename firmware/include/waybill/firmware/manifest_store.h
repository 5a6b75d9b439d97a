// ManifestStore: the day's delivery manifest sent down by the backend, kept on the unit for the
// in-cab app (GET /v1/manifest), so the driver has the stops with the network down, together with
// what the driver recorded at each stop (its latest status and whether a proof was stored), so
// that the stop list survives a page reload and a daemon restart.
//
// Everything lives in one file, <data_dir>/manifest.json, written through a temporary file,
// fsync and rename: after a write returns, a power cut leaves the new content or (before) the old
// one, never half of each.
//
// Statuses and a new manifest: a stop keeps its status when the new manifest has the same date
// and a stop with the same stop_id and order_id (the backend resending or revising the day's
// route); every other stop starts without one. A manifest of another day starts afresh.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "waybill/status.h"
#include "waybill/sync/events.h"
#include "waybill/sync/wire.h"

namespace waybill::firmware {

// An event the driver recorded at a stop, once the outbox has it.
struct StopUpdate {
  std::string stop_id;
  uint64_t seq = 0;   // the event's outbox sequence: a later event wins over an earlier one
  int64_t ts_ms = 0;  // the event's time, ms since the Unix epoch
  // A delivery event of this kind; nullopt for a proof of delivery.
  std::optional<sync::DeliveryKind> kind;
  sync::FailReason reason = sync::FailReason::kNone;
  std::optional<uint32_t> items;
};

class ManifestStore {
 public:
  explicit ManifestStore(std::string path) : path_(std::move(path)) {}

  // Stores the manifest with the time it arrived (ms since the Unix epoch), carrying over the
  // statuses of the stops it keeps (see above). On failure the previous file is unchanged.
  Status Put(const sync::Manifest& manifest, int64_t received_ms);

  // Records a delivery event or a proof at its stop: a delivery event sets the stop's "status"
  // (with "reason", "items", "status_seq", "status_at") unless a later one was recorded already;
  // a proof sets "proof": true and "proof_seq". NotFound if there is no manifest or no stop with
  // this stop_id in it (nothing written); IOError if the file cannot be written (the previous
  // content stays).
  Status Record(const StopUpdate& update);

  // The stored manifest as the API serves it, every stop with "status" (null before any event)
  // and "proof" (false before a proof), or nullopt if none was ever received.
  std::optional<nlohmann::json> Get() const;

  // The manifest as stored, without any status.
  static nlohmann::json ToJson(const sync::Manifest& manifest, int64_t received_ms);

 private:
  std::optional<nlohmann::json> ReadLocked() const;
  Status WriteLocked(const nlohmann::json& manifest);

  std::string path_;
  mutable std::mutex mu_;
};

}  // namespace waybill::firmware
