// LocalApi: the HTTP+JSON API that the in-cab app talks to, on 127.0.0.1 only.
//
//   POST /v1/deliveries   {"stop_id","order_id","kind","reason","note","items"}  -> 201 {"seq",...}
//   POST /v1/photos       raw JPEG or PNG bytes                                  -> 201
//   {"sha256",...} POST /v1/proofs       {"stop_id","order_id","recipient_name",
//                          "signature":{"width","height","strokes":[[[x,y],...],...]},
//                          "photo_sha256"}                                       -> 201 {"seq",...}
//   GET  /v1/status       GNSS, outbox depth by class, storage, counters
//   GET  /v1/manifest     the day's stops as sent down by the backend, each with the status the
//                         driver's events gave it
//   GET  /               the kiosk page (docs/KIOSK.md), and its files under /kiosk/<file>,
//                         compiled into the program
//
// A 2xx answer means the event is on disk (the outbox commit, or the photo file, was synced).
// A bad request gets 400 with {"error": "...", "field": "..."} naming the field; nothing is
// stored. 507 means the storage is full, 503 that it failed: the event was not stored and the app
// should keep it and retry. See docs/LOCAL_API.md.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "waybill/firmware/manifest_store.h"
#include "waybill/firmware/photo_store.h"
#include "waybill/firmware/recorder.h"
#include "waybill/hal/gnss_fix.h"

namespace httplib {
class Server;
}

namespace waybill::firmware {

struct LocalApiHooks {
  // The latest position, stamped into delivery events. May return nullopt (no fix yet).
  std::function<std::optional<hal::GnssFix>()> last_fix;
  // The body of GET /v1/status.
  std::function<nlohmann::json()> status;
  // The day's manifest for GET /v1/manifest; nullopt: none received yet (404).
  std::function<std::optional<nlohmann::json>()> manifest;
  // Called once a delivery event or a proof with a stop_id is stored, to keep the stop's status
  // for the stop list (ManifestStore::Record). A failure does not undo the stored event: the
  // answer still is 201, with "stop_recorded": false.
  std::function<Status(const StopUpdate&)> stop_update;
  // A proof about to be stored references this photo: mark it for upload (durably, before the
  // proof's commit). An error answers 503/507 and the proof is not stored. May be empty.
  std::function<Status(const std::array<uint8_t, 32>& sha256)> photo_referenced;
};

class LocalApi {
 public:
  LocalApi(Recorder& recorder, PhotoStore& photos, LocalApiHooks hooks);
  ~LocalApi();

  // Binds host:port (port 0 picks a free one) and serves on a thread of its own.
  Status Start(const std::string& host, int port);
  int port() const { return port_; }
  // Finishes the requests in progress and stops. Idempotent.
  void Stop();

  // Request counters, for /v1/status and the tests.
  uint64_t requests() const { return requests_.load(); }
  uint64_t rejected() const { return rejected_.load(); }

 private:
  void Routes();
  // Passes a stored event to hooks_.stop_update and says in `reply` whether the stop kept it.
  void RecordAtStop(const StopUpdate& update, nlohmann::json& reply);

  Recorder& recorder_;
  PhotoStore& photos_;
  LocalApiHooks hooks_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> rejected_{0};
};

}  // namespace waybill::firmware
