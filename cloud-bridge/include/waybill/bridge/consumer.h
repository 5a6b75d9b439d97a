// The MQTT side of the bridge: receives the trucks' batches, stores them, acknowledges them;
// publishes the backend's commands and records the devices' results.
//
// Receipt and storage are decoupled by a bounded queue: Paho's callback thread only queues the
// message (and blocks when the queue is full, which slows the broker's delivery: backpressure);
// the store thread takes every message waiting, judges each (ingest.h), stores the whole group in
// one inbox transaction (one fsync for many trucks' batches), and only then publishes each
// truck's ack.
//
// Why the ack, not the MQTT PUBACK, carries the guarantee: Paho C acknowledges a QoS 1 message
// to the broker when it arrives, before the application sees it, so the broker may drop a message
// the bridge has not stored yet. Nothing is lost by that: the truck deletes an event only when
// the bridge's ack names it, and sends everything unacknowledged again (after its ack timeout or
// its next connect). The inbox's dedup on (device, seq) makes those resends harmless.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "waybill/bridge/config.h"
#include "waybill/bridge/inbox.h"
#include "waybill/bridge/metrics.h"

namespace mqtt {
class async_client;
class iaction_listener;
}  // namespace mqtt

namespace waybill::bridge {

class Consumer {
 public:
  // `on_stored` runs on the store thread after each group commit (the forwarder's Wake).
  Consumer(const BridgeConfig& config, Inbox* inbox, Metrics* metrics,
           std::function<void()> on_stored);
  ~Consumer();  // Stop()
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // Connects (MQTT 5, persistent session, automatic reconnect), subscribes, starts the store
  // thread. Waits at most `timeout_ms` for the first connection; if the broker is not there, it
  // keeps trying in the background and Start still succeeds (the bridge is then not ready).
  // Fails on a configuration Paho refuses (a bad URI, unreadable certificates).
  Status Start(int timeout_ms);
  // Stops receiving, stores and acknowledges every message already received, disconnects.
  void Stop();

  bool connected() const { return metrics_->broker_connected.load(); }

  // Publishes a command (QoS 1); the state becomes "sent" when the broker has it. Commands
  // published while disconnected stay "queued" and go out at the next connection.
  void PublishCommand(const Command& command);

 private:
  struct Received {
    std::string topic;
    std::string payload;
    int64_t received_ms = 0;
  };
  void OnMessage(const std::string& topic, std::string payload);
  void OnConnected();
  void StoreLoop();
  void PublishAcks(const std::vector<IngestItem>& items, const std::vector<StoreOutcome>& out);
  void OnResult(const std::string& device, const std::string& payload);

  class CommandListener;
  class AckListener;
  // Waits (at most 10 s) until fewer acks than the broker's Receive Maximum are in flight, and
  // takes a place; false on time-out. Paho queues publishes beyond that window and drains its
  // queue slowly, so the bridge keeps within it and the acks flow at the round trip's pace.
  bool TakeAckSlot();
  void ReleaseAckSlot();

  BridgeConfig config_;
  Inbox* inbox_;
  Metrics* metrics_;
  std::function<void()> on_stored_;
  std::unique_ptr<CommandListener> command_listener_impl_;
  mqtt::iaction_listener& command_listener_;
  std::unique_ptr<AckListener> ack_listener_;
  std::shared_ptr<const ProofVerifier> proofs_;  // null: [proofs] not configured
  std::unique_ptr<mqtt::async_client> client_;
  std::mutex ack_mu_;
  std::condition_variable ack_cv_;
  int acks_in_flight_ = 0;
  int ack_window_ = 10;  // the broker's Receive Maximum, less room for commands
  std::mutex mu_;
  std::condition_variable cv_;        // the queue has messages, or stop
  std::condition_variable space_cv_;  // the queue has room
  std::deque<Received> queue_;
  bool stopping_ = false;
  std::thread store_thread_;
  std::atomic<bool> started_{false};
};

}  // namespace waybill::bridge
