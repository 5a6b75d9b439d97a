// Test support: an MQTT client that publishes raw payloads as truck-1 would (forged, malformed or
// tampered batches), and collects the sequences the bridge acks to truck-1.
#pragma once

#include <mqtt/async_client.h>

#include <cstdint>
#include <mutex>
#include <set>
#include <string>

#include "waybill/sync/wire.h"

namespace waybill::testing {

class RawPublisher {
 public:
  explicit RawPublisher(const std::string& uri, const std::string& client_id = "raw-publisher")
      : client_(uri, client_id, mqtt::create_options(MQTTVERSION_5), nullptr) {
    mqtt::connect_options o;
    o.set_mqtt_version(MQTTVERSION_5);
    client_.connect(o)->wait();
    client_.set_message_callback([this](mqtt::const_message_ptr m) {
      std::lock_guard<std::mutex> lk(mu_);
      auto seqs = sync::DecodeAck(m->get_payload_str(), nullptr);
      if (seqs.ok()) acked_.insert(seqs->begin(), seqs->end());
    });
    client_.subscribe("fleet/truck-1/ack", 1)->wait();
  }
  // QoS 1 on `topic`, waiting for the broker's PUBACK.
  void Publish(const std::string& topic, const std::string& payload) {
    client_.publish(mqtt::make_message(topic, payload, 1, false))->wait();
  }
  // As truck-1's uplink: on fleet/truck-1/up.
  void Publish(const std::string& payload) { Publish("fleet/truck-1/up", payload); }
  std::set<uint64_t> acked() {
    std::lock_guard<std::mutex> lk(mu_);
    return acked_;
  }
  bool Acked(uint64_t seq) { return acked().count(seq) > 0; }

 private:
  mqtt::async_client client_;
  std::mutex mu_;
  std::set<uint64_t> acked_;
};

}  // namespace waybill::testing
