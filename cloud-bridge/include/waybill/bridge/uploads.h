// The bridge's photo path: the HTTPS upload endpoint the trucks send proof-of-delivery photos to,
// and the forwarder that hands each complete photo on to the backend (docs/BRIDGE.md, "Photo
// uploads").
//
// Why photos do not ride in the MQTT batches: a photo is a megabyte or more where a batch is a
// few hundred bytes; a cut cellular link would make the whole photo go again; and a large message
// would hold the batches behind it. Over HTTPS the upload resumes from the last byte the bridge
// synced (UploadStore), and MQTT keeps carrying the small events, the proof among them, which
// names its photo by sha256.
//
// UploadServer: `HEAD|GET /v1/photos/{sha256}` and `PATCH|PUT /v1/photos/{sha256}` with
// Upload-Offset and Upload-Length, behind mutual TLS; the device is the client certificate's CN.
// PhotoForwarder: one thread, one photo at a time, PUT {forward_url} with the device in
// X-Waybill-Device; 5xx, 429 and transport errors are retried with capped, jittered backoff; a 2xx
// marks the photo forwarded (durably, UploadStore), a 4xx marks it refused. Forwarded photos are
// deleted after uploads.retention_h.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "waybill/bridge/config.h"
#include "waybill/bridge/metrics.h"
#include "waybill/bridge/upload_store.h"
#include "waybill/status.h"

namespace httplib {
class Server;
}

namespace waybill::bridge {

class UploadServer {
 public:
  // `store` and `metrics` must outlive the server. `on_complete` runs (on a request thread) after
  // a photo was stored whole.
  UploadServer(const UploadsConfig& config, UploadStore* store, Metrics* metrics,
               std::function<void()> on_complete);
  ~UploadServer();  // Stop()
  UploadServer(const UploadServer&) = delete;
  UploadServer& operator=(const UploadServer&) = delete;

  // Loads the certificate, key and client CA and binds uploads.listen. Fails, naming the file or
  // the address, when a file does not load or the address cannot be bound.
  Status Start();
  // Lets requests in progress finish and stops. Idempotent.
  void Stop();
  int port() const { return port_; }

 private:
  void Routes();

  UploadsConfig config_;
  UploadStore* store_;
  Metrics* metrics_;
  std::function<void()> on_complete_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

class PhotoForwarder {
 public:
  // `store` and `metrics` must outlive the forwarder.
  PhotoForwarder(const UploadsConfig& config, UploadStore* store, Metrics* metrics);
  ~PhotoForwarder();  // Stop()
  PhotoForwarder(const PhotoForwarder&) = delete;
  PhotoForwarder& operator=(const PhotoForwarder&) = delete;

  // Starts the thread, which at once looks for photos left unforwarded by an earlier run.
  Status Start();
  // A photo was completed: look now rather than at the next periodic pass (within 5 s). Cheap,
  // thread-safe; a backoff in progress is still waited out.
  void Wake();
  // Aborts a request in flight (its photo is sent again at the next start) and joins the thread.
  // Idempotent.
  void Stop();

 private:
  enum class Sent { kDone, kRetry, kRefused };
  void Run();
  Sent Forward(const StoredPhoto& photo, std::string* detail);

  UploadsConfig config_;
  UploadStore* store_;
  Metrics* metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace waybill::bridge
