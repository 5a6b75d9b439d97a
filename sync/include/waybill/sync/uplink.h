// Uplink: drains the outbox to the cloud over MQTT and deletes events only when the bridge acks.
//
// CONTRACT (the implementation file opens with the full essay; docs/UPLINK.md for operators):
//  * An event leaves the outbox only through Outbox::Ack(), called when an Ack message on
//    fleet/<device>/ack names its sequence. A broker's PUBACK deletes nothing.
//  * Drain order after every (re)connect: the newest fix alone, at once (live position); then
//    delivery and proof-of-delivery events in sequence order; then the backlog of older fixes in
//    time order, in batches marked historical. Fixes newer than the newest one sent are live.
//  * At most `inflight_batches` batches are published and not yet fully acked. A batch not fully
//    acked within `ack_timeout_ms` is released to the outbox and sent again; so is every batch in
//    flight when the connection drops or Stop() is called. Duplicates are normal: the bridge
//    dedups on (device, seq).
//  * Reconnects use capped exponential backoff with full jitter on the injected clock (Backoff);
//    every failure is logged in plain words with its cause (DNS, refused, TLS verification
//    error, broker's reason code). No exception from Paho leaves this module.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "waybill/hal/clock.h"
#include "waybill/status.h"
#include "waybill/sync/backoff.h"
#include "waybill/sync/outbox.h"
#include "waybill/sync/wire.h"

namespace waybill::sync {

enum class MqttVersion : uint8_t { kV311 = 4, kV5 = 5 };

struct UplinkTlsOptions {
  std::string ca_file;  // PEM: the CA(s) that signed the broker's certificate; required for ssl://
  std::string cert_file;  // PEM: this device's certificate (mutual TLS); empty = none
  std::string key_file;   // PEM: its private key; required with cert_file
  // The broker's certificate must name the host of broker_uri (subjectAltName DNS or IP).
  bool verify_host = true;
};

struct UplinkOptions {
  std::string broker_uri;        // tcp://host:port or ssl://host:port
  std::string device_id;         // IsValidDeviceId(); also the MQTT client id and the topic level
  std::string firmware_version;  // in the retained status, e.g. "0.3.1"
  MqttVersion mqtt_version = MqttVersion::kV5;
  UplinkTlsOptions tls;

  // Every PINGREQ/PINGRESP pair costs cellular bytes; a dead NAT path is noticed after 1.5x this.
  // 240..65535.
  int keepalive_s = 300;
  // The broker keeps the session (subscriptions, queued acks and commands) this long after a
  // disconnect (MQTT 5 Session Expiry Interval; with 3.1.1 the session is kept as the broker
  // decides). Sessions are never clean: commands sent while the truck is offline still arrive.
  uint32_t session_expiry_s = 7 * 24 * 3600;
  int connect_timeout_s = 30;  // 1..300

  size_t batch_max_events = 60;  // 1..kMaxBatchEvents
  // Live events wait at most this long for a batch to fill; deliveries, PoD and backlog batches
  // never wait. 0..3'600'000.
  int64_t batch_wait_ms = 5000;
  // Batches published and not yet fully acked. 1..100.
  int inflight_batches = 20;
  // A batch not fully acked after this is released and sent again. 100..86'400'000.
  int64_t ack_timeout_ms = 60'000;
  // How often the outbox is looked at when nothing else wakes the uplink (see Nudge()).
  // 10..60'000.
  int64_t poll_ms = 1000;
  // A connection that lasted at least this long resets the backoff when it drops; shorter ones
  // count as failures, so a flapping link backs off too.
  int64_t stable_after_ms = 60'000;
  BackoffOptions backoff;
};

// Checks every bound above; the message names the field and the allowed range.
Status Validate(const UplinkOptions& options);

struct UplinkStats {
  bool connected = false;
  uint64_t connect_attempts = 0;
  uint64_t connects = 0;     // attempts that reached the broker and got a CONNACK
  uint64_t disconnects = 0;  // connections that were up and dropped
  std::string last_disconnect_cause;
  std::string last_connect_error;  // the cause of the last failed attempt, in words
  int64_t next_attempt_in_ms = 0;  // while disconnected: time to the next attempt
  uint64_t batches_sent = 0;
  uint64_t events_sent = 0;        // counting resends
  uint64_t events_acked = 0;       // sequences named by acks and handed to Outbox::Ack
  uint64_t resends = 0;            // events released after an ack timeout or a disconnect
  uint64_t ack_timeouts = 0;       // batches that timed out
  uint64_t events_unsendable = 0;  // events that could not be encoded (kept, skipped until restart)
  uint64_t bytes_published = 0;    // payload bytes of every publish (batches, status, results)
  uint64_t acks_received = 0;
  uint64_t acks_rejected = 0;  // acks that did not decode or named another device
  uint64_t commands_received = 0;
  uint64_t commands_rejected = 0;  // commands that did not decode
  int64_t last_ack_wall_ms = 0;    // 0 = never
  uint64_t inflight_batches = 0;
  uint64_t inflight_events = 0;
};

// What the daemon does with a downlink command; the result goes back on cmd/result.
using CommandHandler = std::function<CommandResult(const Command&)>;

class Uplink {
 public:
  // Checks `options` (Validate) and that the TLS files can be read; nothing connects yet. The
  // outbox and the clock must outlive the Uplink.
  static Result<std::unique_ptr<Uplink>> Create(Outbox& outbox, const hal::Clock& clock,
                                                const UplinkOptions& options);
  // Stop()s.
  ~Uplink();
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  // Commands arriving with no handler set are answered ok=false "no handler". The handler runs
  // on the uplink's thread, one command at a time: it should be quick, and idempotent on
  // command_id (after a reconnect the broker may deliver a command again). Set it before
  // Start(); thread-safe.
  void SetCommandHandler(CommandHandler handler);

  // Starts the uplink's thread, which connects, reconnects and drains until Stop(). Returns
  // kFailedPrecondition if already started. Thread-safe.
  Status Start();

  // Publishes the retained "offline" status if connected, disconnects, releases every event in
  // flight (they stay in the outbox and are sent again after the next Start, here or in the next
  // process) and joins the thread. Idempotent; thread-safe; returns within about
  // connect_timeout_s even if the broker hangs.
  void Stop();

  // A snapshot; thread-safe.
  UplinkStats Stats() const;

  // Events were appended: look at the outbox now instead of at the next poll. Thread-safe, cheap.
  void Nudge();

  class Impl;

 private:
  explicit Uplink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace waybill::sync
