// Photo uploads: proof-of-delivery photos go to the bridge over HTTPS, resumably, one at a time.
//
// Which photos. A photo POSTed to the local API stays on the unit until a proof of delivery that
// references it is stored: then the API marks it for upload (PhotoUploadQueue, a marker file per
// photo, written and fsynced BEFORE the proof's outbox commit, so a power cut between the two
// leaves at worst a photo uploaded without its proof, never a proof whose photo is forgotten).
// Photos that no proof references are never sent.
//
// How (the protocol is in docs/BRIDGE.md, "Photo uploads"). For each marked photo the uploader
// asks the bridge how much it holds (HEAD /v1/photos/{sha256} -> Upload-Offset), then sends the
// rest in chunks (PATCH with Upload-Offset and Upload-Length), each of which the bridge syncs
// before answering. A cut link costs at most the chunk in flight: the next attempt starts from
// the bridge's offset. Network errors and 5xx are retried with capped, jittered backoff (the cap
// is [uplink] reconnect_max_s); a 409 (the offsets disagree) makes it ask again; a 422 (the bytes
// do not match the sha256) is logged and counted, and the photo is kept on the unit and not sent
// again. After the bridge says the photo is whole (201, or a HEAD with Upload-Complete) the photo
// is deleted from the unit.
//
// When. Uploads wait while the MQTT uplink is disconnected (`link_up`), so a truck in a dead zone
// does not spend cellular retries on photos; the proofs themselves travel in the MQTT batches.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "waybill/firmware/photo_store.h"
#include "waybill/status.h"

namespace waybill::firmware {

// The photos to upload, as marker files <dir>/<sha256> (and <sha256>.rejected for photos the
// bridge refused). Thread-safe (the file system serialises it).
class PhotoUploadQueue {
 public:
  // `dir` is created if missing.
  explicit PhotoUploadQueue(std::string dir);

  // Durably marks the photo for upload (the marker and its directory are synced). IOError /
  // NoSpace: not marked. Marking twice is harmless.
  Status Mark(const std::array<uint8_t, 32>& sha256);
  // The photos marked and neither uploaded nor refused, oldest mark first.
  std::vector<std::array<uint8_t, 32>> Pending() const;
  // Removes the mark (after the upload, or for a photo no longer on the unit).
  Status Done(const std::array<uint8_t, 32>& sha256);
  // Moves the mark aside: the photo is not tried again.
  Status Reject(const std::array<uint8_t, 32>& sha256);

 private:
  std::string dir_;
};

struct PhotoUploaderOptions {
  std::string url;        // https://host:port of the bridge's upload endpoint
  std::string ca_file;    // the CA of the bridge's certificate (empty: the system store)
  std::string cert_file;  // the device's certificate and key (mutual TLS)
  std::string key_file;
  uint64_t chunk_bytes = 256 * 1024;
  int64_t retry_base_ms = 1000;
  int64_t retry_cap_ms = 300'000;
  int64_t idle_poll_ms = 5000;  // how often the queue is looked at without a Nudge()
};

struct PhotoUploadStats {
  uint64_t pending = 0;     // photos marked and not yet uploaded
  uint64_t uploaded = 0;    // photos the bridge confirmed whole since start
  uint64_t bytes_sent = 0;  // request bodies sent since start (resends and cut requests included)
  uint64_t rejected = 0;    // photos the bridge refused (422) since start
  uint64_t attempts_failed = 0;
  std::string last_error;  // empty if none since start
};

class PhotoUploader {
 public:
  // `photos` and `queue` must outlive the uploader. `link_up` (may be empty: always up) says
  // whether the uplink is connected; it is called from the uploader's thread.
  PhotoUploader(PhotoStore& photos, PhotoUploadQueue& queue, PhotoUploaderOptions options,
                std::function<bool()> link_up);
  ~PhotoUploader();  // Stop()
  PhotoUploader(const PhotoUploader&) = delete;
  PhotoUploader& operator=(const PhotoUploader&) = delete;

  // Starts the upload thread. Fails if libcurl cannot be set up.
  Status Start();
  // A photo was marked: look at the queue now (unless a backoff is being waited out).
  // Thread-safe, cheap.
  void Nudge();
  // Aborts a request in flight (the bridge keeps what it synced) and joins the thread.
  // Idempotent.
  void Stop();

  // Thread-safe.
  PhotoUploadStats Stats() const;

 private:
  enum class Upload { kDone, kRejected, kMissing, kRetry, kStopped };
  struct Reply;
  void Run();
  Upload UploadOne(const std::array<uint8_t, 32>& sha256);
  Reply Request(const std::string& method, const std::string& url, std::string_view body,
                uint64_t offset, uint64_t total);
  void Fail(const std::string& error);

  PhotoStore& photos_;
  PhotoUploadQueue& queue_;
  PhotoUploaderOptions options_;
  std::function<bool()> link_up_;
  void* curl_ = nullptr;  // CURL*, used by the upload thread only

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool nudged_ = false;
  PhotoUploadStats stats_;  // pending is filled in by Stats()
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace waybill::firmware
