// waybill-bridge, composed: the inbox, the MQTT consumer, the forwarder, the HTTP API
// (/metrics, /healthz, /readyz, the downlink /v1/devices/{id}/commands), and with [uploads] the
// HTTPS photo upload endpoint and the photo forwarder (uploads.h). docs/BRIDGE.md.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "waybill/bridge/config.h"
#include "waybill/status.h"

namespace httplib {
class Server;
}

namespace waybill::bridge {

class Inbox;
class Consumer;
class Forwarder;
struct Metrics;
class UploadStore;
class UploadServer;
class PhotoForwarder;

class Bridge {
 public:
  explicit Bridge(BridgeConfig config);
  ~Bridge();  // Stop()
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // Opens the inbox, starts the API, the forwarder (which resumes open batches) and the
  // consumer. Fails, with everything started stopped again, on an inbox that will not open or
  // an API address that cannot be bound. The broker may be away: the bridge keeps trying and
  // /readyz says 503 until it is connected.
  Status Start();
  // The graceful stop of SIGTERM: stops receiving, stores and acknowledges what was received,
  // lets the forwarder finish its requests in flight (at most `grace_ms`), stops the API.
  void Stop(int64_t grace_ms = 10'000);

  // The API's port (after Start; useful with listen = "127.0.0.1:0").
  int api_port() const { return api_port_; }
  // The photo upload endpoint's port; 0 without [uploads].
  int upload_port() const;

 private:
  void ServeApi();

  BridgeConfig config_;
  std::unique_ptr<Inbox> inbox_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Forwarder> forwarder_;
  std::unique_ptr<Consumer> consumer_;
  std::unique_ptr<UploadStore> upload_store_;
  std::unique_ptr<PhotoForwarder> photo_forwarder_;
  std::unique_ptr<UploadServer> upload_server_;
  std::unique_ptr<httplib::Server> api_;
  std::thread api_thread_;
  int api_port_ = 0;
  bool started_ = false;
};

}  // namespace waybill::bridge
