// Test support: a stand-in for the cloud bridge's ack path, until the bridge exists.
//
// Subscribes fleet/+/up, decodes every batch (DecodeBatch), records each event as (device, seq,
// class, historical, batch number) in arrival order, optionally to a file, and publishes an Ack
// naming those sequences on fleet/<device>/ack: what the bridge does once it has stored them.
// It can drop its acks (to show that nothing is deleted without one) and slow them down. It also
// records the retained status and the command results it sees, and publishes commands, so that a
// test needs one MQTT client besides the uplink. The program tests/support/test_acker.cc wraps it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "waybill/sync/outbox.h"
#include "waybill/sync/wire.h"

namespace mqtt {
class async_client;
}

namespace waybill::testing {

struct AckerOptions {
  std::string broker_uri;
  std::string client_id = "bridge";
  std::string ca_file;  // TLS: CA, certificate and key of the bridge
  std::string cert_file;
  std::string key_file;
  bool drop_acks = false;  // record batches but never ack
  int ack_delay_ms = 0;    // sleep before each ack (slows the drain)
  // 0 = never; N = the process exits (status 3) on receiving batch N, before acking it: a bridge
  // crash before it stored the batch. For the program only.
  long die_after_batches = 0;
  std::string record_path;  // if set, one line per event: "<device> <seq> <class> <h|l> <batch>"
};

struct AckerRecord {
  std::string device;
  uint64_t seq = 0;
  sync::EventClass cls = sync::EventClass::kFix;
  bool historical = false;
  uint64_t batch = 0;  // 1-based, in arrival order
};

class TestAcker {
 public:
  explicit TestAcker(AckerOptions options);
  ~TestAcker();

  // Connects (MQTT 5, persistent session, automatic reconnect) and subscribes to fleet/+/up,
  // fleet/+/status and fleet/+/cmd/result; re-subscribes after every reconnect. Waits at most
  // 10 s. False with the reason in `error`.
  bool Start(std::string* error);
  void Stop();

  void SetDropAcks(bool drop) { drop_acks_ = drop; }
  // Publishes `payload` on `topic` (QoS 1) and waits for the PUBACK (at most 5 s).
  bool Publish(const std::string& topic, const std::string& payload);

  std::vector<AckerRecord> Records() const;
  size_t batches() const;
  size_t decode_errors() const;
  size_t acks_sent() const;
  // Last retained status payload seen per device, and every command result, in order.
  std::map<std::string, std::string> Statuses() const;
  std::vector<sync::CommandResult> Results() const;

 private:
  void OnMessage(const std::string& topic, const std::string& payload);
  void Subscribe();

  AckerOptions options_;
  std::atomic<bool> drop_acks_;
  std::unique_ptr<mqtt::async_client> client_;
  mutable std::mutex mu_;
  std::vector<AckerRecord> records_;
  std::map<std::string, std::string> statuses_;
  std::vector<sync::CommandResult> results_;
  size_t batches_ = 0;
  size_t decode_errors_ = 0;
  size_t acks_sent_ = 0;
};

}  // namespace waybill::testing
