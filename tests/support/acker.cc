#include "support/acker.h"

#include <mqtt/async_client.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace waybill::testing {

TestAcker::TestAcker(AckerOptions options)
    : options_(std::move(options)), drop_acks_(options_.drop_acks) {}

TestAcker::~TestAcker() { Stop(); }

void TestAcker::Subscribe() {
  auto topics =
      mqtt::string_collection::create({"fleet/+/up", "fleet/+/status", "fleet/+/cmd/result"});
  client_->subscribe(topics, mqtt::iasync_client::qos_collection{1, 1, 1});
}

bool TestAcker::Start(std::string* error) {
  try {
    client_ = std::make_unique<mqtt::async_client>(options_.broker_uri, options_.client_id,
                                                   mqtt::create_options(MQTTVERSION_5), nullptr);
    client_->set_message_callback([this](mqtt::const_message_ptr msg) {
      OnMessage(msg->get_topic(), msg->get_payload_str());
    });
    client_->set_connected_handler([this](const std::string&) {
      try {
        Subscribe();
      } catch (const mqtt::exception& e) {
        std::fprintf(stderr, "acker: subscribe after reconnect failed: %s\n", e.what());
      }
    });
    mqtt::connect_options o;
    o.set_mqtt_version(MQTTVERSION_5);
    o.set_clean_session(false);
    o.set_clean_start(false);
    o.set_properties(
        mqtt::properties{mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, 3600)});
    o.set_automatic_reconnect(1, 1);
    o.set_keep_alive_interval(60);
    o.set_connect_timeout(5);
    if (!options_.ca_file.empty()) {
      mqtt::ssl_options ssl;
      ssl.set_trust_store(options_.ca_file);
      ssl.set_key_store(options_.cert_file);
      ssl.set_private_key(options_.key_file);
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(true);
      o.set_ssl(std::move(ssl));
    }
    if (!client_->connect(o)->wait_for(std::chrono::seconds(10))) {
      *error = "acker: no CONNACK within 10 s";
      return false;
    }
    // The connected handler subscribes too; this wait makes Start() return subscribed.
    auto topics =
        mqtt::string_collection::create({"fleet/+/up", "fleet/+/status", "fleet/+/cmd/result"});
    if (!client_->subscribe(topics, mqtt::iasync_client::qos_collection{1, 1, 1})
             ->wait_for(std::chrono::seconds(10))) {
      *error = "acker: no SUBACK within 10 s";
      return false;
    }
  } catch (const mqtt::exception& e) {
    *error = std::string("acker: ") + e.what();
    return false;
  }
  return true;
}

void TestAcker::Stop() {
  if (!client_) return;
  try {
    client_->disable_callbacks();
    if (client_->is_connected()) client_->disconnect()->wait_for(std::chrono::seconds(5));
  } catch (const mqtt::exception&) {
    // Stopping anyway.
  }
  client_.reset();
}

bool TestAcker::Publish(const std::string& topic, const std::string& payload) {
  try {
    return client_->publish(mqtt::make_message(topic, payload, 1, false))
        ->wait_for(std::chrono::seconds(5));
  } catch (const mqtt::exception& e) {
    std::fprintf(stderr, "acker: publish on %s failed: %s\n", topic.c_str(), e.what());
    return false;
  }
}

void TestAcker::OnMessage(const std::string& topic, const std::string& payload) {
  auto device = sync::DeviceFromTopic(topic);
  if (!device) return;
  if (topic == sync::TopicStatus(*device)) {
    std::lock_guard<std::mutex> lk(mu_);
    statuses_[*device] = payload;
    return;
  }
  if (topic == sync::TopicCmdResult(*device)) {
    auto result = sync::DecodeCommandResult(payload);
    std::lock_guard<std::mutex> lk(mu_);
    if (result.ok()) {
      results_.push_back(*result);
    } else {
      ++decode_errors_;
    }
    return;
  }
  if (topic != sync::TopicUp(*device)) return;
  auto batch = sync::DecodeBatch(payload);
  if (!batch.ok() || batch->device_id != *device) {
    std::lock_guard<std::mutex> lk(mu_);
    ++decode_errors_;
    std::fprintf(
        stderr, "acker: batch on %s rejected: %s\n", topic.c_str(),
        batch.ok() ? "device id differs from the topic's" : batch.status().message().c_str());
    return;
  }
  std::vector<uint64_t> seqs;
  {
    std::lock_guard<std::mutex> lk(mu_);
    uint64_t number = ++batches_;
    FILE* out =
        options_.record_path.empty() ? nullptr : std::fopen(options_.record_path.c_str(), "a");
    for (const sync::StoredEvent& e : batch->events) {
      records_.push_back(AckerRecord{*device, e.seq, e.cls, batch->historical, number});
      seqs.push_back(e.seq);
      if (out != nullptr) {
        std::fprintf(out, "%s %llu %s %c %llu\n", device->c_str(),
                     static_cast<unsigned long long>(e.seq), sync::ToString(e.cls),
                     batch->historical ? 'h' : 'l', static_cast<unsigned long long>(number));
      }
    }
    if (out != nullptr) std::fclose(out);
    if (options_.die_after_batches > 0 &&
        number >= static_cast<uint64_t>(options_.die_after_batches)) {
      std::_Exit(3);
    }
  }
  if (drop_acks_) return;
  if (options_.ack_delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.ack_delay_ms));
  }
  try {
    client_->publish(
        mqtt::make_message(sync::TopicAck(*device), sync::EncodeAck(*device, seqs), 1, false));
    std::lock_guard<std::mutex> lk(mu_);
    ++acks_sent_;
  } catch (const mqtt::exception& e) {
    std::fprintf(stderr, "acker: ack to %s failed: %s\n", device->c_str(), e.what());
  }
}

std::vector<AckerRecord> TestAcker::Records() const {
  std::lock_guard<std::mutex> lk(mu_);
  return records_;
}

size_t TestAcker::batches() const {
  std::lock_guard<std::mutex> lk(mu_);
  return batches_;
}

size_t TestAcker::decode_errors() const {
  std::lock_guard<std::mutex> lk(mu_);
  return decode_errors_;
}

size_t TestAcker::acks_sent() const {
  std::lock_guard<std::mutex> lk(mu_);
  return acks_sent_;
}

std::map<std::string, std::string> TestAcker::Statuses() const {
  std::lock_guard<std::mutex> lk(mu_);
  return statuses_;
}

std::vector<sync::CommandResult> TestAcker::Results() const {
  std::lock_guard<std::mutex> lk(mu_);
  return results_;
}

}  // namespace waybill::testing
