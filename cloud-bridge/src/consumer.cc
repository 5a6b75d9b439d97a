#include "waybill/bridge/consumer.h"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <span>

#include "waybill/bridge/proof_verifier.h"
#include "waybill/hal/clock.h"
#include "waybill/hal/log_limit.h"
#include "waybill/sync/wire.h"

namespace waybill::bridge {

// Marks a command "sent" once the broker has it (PUBACK).
class Consumer::CommandListener : public mqtt::iaction_listener {
 public:
  CommandListener(Inbox* inbox, Metrics* metrics) : inbox_(inbox), metrics_(metrics) {}

  void on_success(const mqtt::token& tok) override {
    std::unique_ptr<std::string> id(static_cast<std::string*>(tok.get_user_context()));
    if (!id) return;
    if (Status s = inbox_->SetCommandState(*id, "sent", "", "", hal::Clock::System().wall_ms());
        !s.ok()) {
      spdlog::error("bridge: command {} sent but not recorded: {}", *id, s.message());
    }
    metrics_->commands_sent.fetch_add(1, std::memory_order_relaxed);
  }
  void on_failure(const mqtt::token& tok) override {
    std::unique_ptr<std::string> id(static_cast<std::string*>(tok.get_user_context()));
    if (id) spdlog::warn("bridge: command {} not accepted by the broker; stays queued", *id);
  }

 private:
  Inbox* inbox_;
  Metrics* metrics_;
};

// Gives an ack's place in the window back when the broker has it (or the publish failed).
class Consumer::AckListener : public mqtt::iaction_listener {
 public:
  explicit AckListener(Consumer* consumer) : consumer_(consumer) {}
  void on_success(const mqtt::token&) override { consumer_->ReleaseAckSlot(); }
  void on_failure(const mqtt::token&) override {
    consumer_->metrics_->ack_failures.fetch_add(1, std::memory_order_relaxed);
    consumer_->ReleaseAckSlot();
  }

 private:
  Consumer* consumer_;
};

namespace {

constexpr size_t kMaxGroupMessages = 512;  // messages in one inbox transaction

std::string UpFilter(const MqttConfig& mqtt) {
  return mqtt.share_group.empty() ? "fleet/+/up" : "$share/" + mqtt.share_group + "/fleet/+/up";
}

}  // namespace

Consumer::Consumer(const BridgeConfig& config, Inbox* inbox, Metrics* metrics,
                   std::function<void()> on_stored)
    : config_(config),
      inbox_(inbox),
      metrics_(metrics),
      on_stored_(std::move(on_stored)),
      command_listener_impl_(std::make_unique<CommandListener>(inbox, metrics)),
      command_listener_(*command_listener_impl_),
      ack_listener_(std::make_unique<AckListener>(this)),
      proofs_(MakeProofVerifier(config_.proofs)) {}

bool Consumer::TakeAckSlot() {
  std::unique_lock<std::mutex> lk(ack_mu_);
  if (!ack_cv_.wait_for(lk, std::chrono::seconds(10),
                        [&] { return acks_in_flight_ < ack_window_; })) {
    return false;
  }
  ++acks_in_flight_;
  return true;
}

void Consumer::ReleaseAckSlot() {
  {
    std::lock_guard<std::mutex> lk(ack_mu_);
    if (acks_in_flight_ > 0) --acks_in_flight_;
  }
  ack_cv_.notify_one();
}

Consumer::~Consumer() { Stop(); }

Status Consumer::Start(int timeout_ms) {
  const MqttConfig& mc = config_.mqtt;
  try {
    // Paho refuses a publish (MQTTASYNC_MAX_BUFFERED_MESSAGES) while this many wait to be
    // written, connected or not (default 100): the acks of a burst must fit (an ack is small).
    mqtt::create_options create(MQTTVERSION_5);
    create.set_max_buffered_messages(65'535);
    client_ = std::make_unique<mqtt::async_client>(mc.uri, mc.client_id, create, nullptr);
    client_->set_message_callback([this](mqtt::const_message_ptr msg) {
      OnMessage(msg->get_topic(), msg->get_payload_str());
    });
    client_->set_connected_handler([this](const std::string&) { OnConnected(); });
    client_->set_connection_lost_handler([this](const std::string& cause) {
      metrics_->broker_connected = false;
      spdlog::warn("bridge: lost the broker {}{}{}; reconnecting", config_.mqtt.uri,
                   cause.empty() ? "" : ": ", cause);
    });
    mqtt::connect_options o;
    o.set_mqtt_version(MQTTVERSION_5);
    o.set_clean_start(false);
    // The session outlives a restart: messages for the bridge wait at the broker meanwhile.
    o.set_properties(
        mqtt::properties{mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, 7 * 86400)});
    o.set_automatic_reconnect(1, 30);
    o.set_keep_alive_interval(mc.keepalive_s);
    o.set_connect_timeout(10);
    if (!mc.ca_file.empty()) {
      mqtt::ssl_options ssl;
      ssl.set_trust_store(mc.ca_file);
      ssl.set_key_store(mc.cert_file);
      ssl.set_private_key(mc.key_file);
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(true);
      o.set_ssl(std::move(ssl));
    }
    store_thread_ = std::thread([this] { StoreLoop(); });
    started_ = true;
    auto tok = client_->connect(o);
    if (!tok->wait_for(std::chrono::milliseconds(timeout_ms))) {
      spdlog::warn("bridge: no connection to {} within {} ms; still trying", mc.uri, timeout_ms);
    } else {
      // MQTT 5: the broker says how many QoS 1 messages it takes in flight (65535 if silent).
      mqtt::properties props = tok->get_connect_response().get_properties();
      int receive_maximum = 65535;
      if (props.contains(mqtt::property::RECEIVE_MAXIMUM)) {
        receive_maximum = mqtt::get<uint16_t>(props.get(mqtt::property::RECEIVE_MAXIMUM));
      }
      std::lock_guard<std::mutex> lk(ack_mu_);
      ack_window_ = std::clamp(receive_maximum - 2, 1, 256);
    }
  } catch (const mqtt::exception& e) {
    // A refused first connect also lands here; automatic reconnect covers only a lost link.
    if (!client_ || e.get_return_code() == MQTTASYNC_BAD_UTF8_STRING ||
        e.get_return_code() == MQTTASYNC_BAD_PROTOCOL) {
      Stop();
      return Status::InvalidArgument("mqtt: " + std::string(e.what()));
    }
    spdlog::warn("bridge: first connection to {} failed: {}; still trying", mc.uri, e.what());
  }
  return Status::Ok();
}

void Consumer::OnConnected() {
  metrics_->broker_connected = true;
  metrics_->broker_connects.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("bridge: connected to {}, subscribing {}", config_.mqtt.uri, UpFilter(config_.mqtt));
  try {
    // Results reach every instance (a plain subscription); the one that holds the command
    // records it.
    auto topics = mqtt::string_collection::create({UpFilter(config_.mqtt), "fleet/+/cmd/result"});
    client_->subscribe(topics, mqtt::iasync_client::qos_collection{1, 1});
  } catch (const mqtt::exception& e) {
    spdlog::error("bridge: subscribe failed: {}", e.what());
  }
  auto queued = inbox_->QueuedCommands();
  if (!queued.ok()) {
    spdlog::error("bridge: cannot read queued commands: {}", queued.status().message());
    return;
  }
  for (const Command& c : *queued) PublishCommand(c);
}

void Consumer::OnMessage(const std::string& topic, std::string payload) {
  auto device = sync::DeviceFromTopic(topic);
  if (device && topic == sync::TopicCmdResult(*device)) {
    OnResult(*device, payload);
    return;
  }
  metrics_->messages_received.fetch_add(1, std::memory_order_relaxed);
  std::unique_lock<std::mutex> lk(mu_);
  space_cv_.wait(
      lk, [&] { return stopping_ || queue_.size() < static_cast<size_t>(config_.ingest_queue); });
  // After Stop() began nothing is queued: the message is not acked, the truck sends it again.
  if (stopping_) return;
  queue_.push_back(Received{topic, std::move(payload), hal::Clock::System().wall_ms()});
  cv_.notify_one();
}

void Consumer::OnResult(const std::string& device, const std::string& payload) {
  auto result = sync::DecodeCommandResult(payload);
  if (!result.ok()) {
    spdlog::warn("bridge: unreadable command result from {}: {}", device,
                 result.status().message());
    return;
  }
  auto known = inbox_->GetCommand(result->command_id);
  if (!known.ok() || !known->has_value() || (*known)->device != device) return;
  metrics_->command_results.fetch_add(1, std::memory_order_relaxed);
  if (Status s =
          inbox_->SetCommandState(result->command_id, result->ok ? "ok" : "failed", result->message,
                                  result->status_json, hal::Clock::System().wall_ms());
      !s.ok()) {
    spdlog::error("bridge: result of command {} not recorded: {}", result->command_id, s.message());
  }
}

void Consumer::PublishCommand(const Command& command) {
  try {
    if (!client_ || !client_->is_connected()) return;  // stays queued for the next connection
    // The listener gets the command id back as its context and owns it from then on.
    client_->publish(mqtt::make_message(sync::TopicCmd(command.device), command.payload, 1, false),
                     new std::string(command.command_id), command_listener_);
  } catch (const mqtt::exception& e) {
    spdlog::warn("bridge: command {} to {} stays queued: {}", command.command_id, command.device,
                 e.what());
  }
}

void Consumer::StoreLoop() {
  hal::LogLimiter limiter(10, 60'000);
  while (true) {
    std::vector<Received> group;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping, and everything received is stored
      while (!queue_.empty() && group.size() < kMaxGroupMessages) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      space_cv_.notify_all();
    }
    IngestOptions options{config_.min_event_time_ms, config_.max_future_ms, proofs_};
    std::vector<IngestItem> items;
    items.reserve(group.size());
    for (Received& r : group) {
      IngestItem item = Ingest(r.topic, r.payload, r.received_ms, options);
      if (item.message_reason) {
        metrics_->rejected[static_cast<int>(*item.message_reason)].fetch_add(1);
        auto d = limiter.Allow(ToString(*item.message_reason), hal::Clock::System().mono_ms());
        if (d.log) {
          spdlog::warn("bridge: refused a message on {}: {}: {} (dead-lettered{})", item.topic,
                       ToString(*item.message_reason), item.message_detail,
                       d.suppressed ? ", " + std::to_string(d.suppressed) + " more not logged"
                                    : std::string());
        }
      } else {
        metrics_->events_received.fetch_add(item.accepted.size() + item.rejected.size());
        for (const RejectedEvent& e : item.rejected) {
          metrics_->rejected[static_cast<int>(e.reason)].fetch_add(1);
          auto d = limiter.Allow(ToString(e.reason), hal::Clock::System().mono_ms());
          if (d.log) {
            spdlog::warn("bridge: refused an event of {}: {}: {} (dead-lettered{})", item.device,
                         ToString(e.reason), e.detail,
                         d.suppressed ? ", " + std::to_string(d.suppressed) + " more not logged"
                                      : std::string());
          }
        }
      }
      items.push_back(std::move(item));
    }
    std::vector<StoreOutcome> outcomes;
    if (Status s = inbox_->Store(items, &outcomes); !s.ok()) {
      metrics_->store_failures.fetch_add(1);
      spdlog::error(
          "bridge: could not store {} messages: {}; not acknowledged, the trucks will "
          "send them again",
          items.size(), s.message());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    PublishAcks(items, outcomes);
    if (on_stored_) on_stored_();
  }
}

void Consumer::PublishAcks(const std::vector<IngestItem>& items,
                           const std::vector<StoreOutcome>& outcomes) {
  // One ack per device per group, however many of its messages the group held: a backlog drain
  // sends many batches in a row, and fewer, larger acks cost the truck fewer bytes.
  std::map<std::string, std::vector<uint64_t>> by_device;
  for (size_t i = 0; i < items.size(); ++i) {
    const StoreOutcome& o = outcomes[i];
    metrics_->events_accepted.fetch_add(o.inserted, std::memory_order_relaxed);
    metrics_->events_duplicate.fetch_add(o.duplicates, std::memory_order_relaxed);
    if (o.ack_seqs.empty()) continue;
    auto& seqs = by_device[items[i].device];
    seqs.insert(seqs.end(), o.ack_seqs.begin(), o.ack_seqs.end());
  }
  constexpr size_t kSeqsPerAck = 16'384;  // well within sync::kMaxAckSeqs and kMaxAckRanges
  for (auto& [device, seqs] : by_device) {
    std::sort(seqs.begin(), seqs.end());
    for (size_t from = 0; from < seqs.size(); from += kSeqsPerAck) {
      std::span<const uint64_t> part(seqs.data() + from, std::min(kSeqsPerAck, seqs.size() - from));
      if (!TakeAckSlot()) {
        // The broker has not confirmed an ack for 10 s: the link is down. The truck sends the
        // events again and gets its ack then.
        metrics_->ack_failures.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      try {
        client_->publish(
            mqtt::make_message(sync::TopicAck(device), sync::EncodeAck(device, part), 1, false),
            nullptr, *ack_listener_);
        metrics_->acks_sent.fetch_add(1, std::memory_order_relaxed);
      } catch (const mqtt::exception& e) {
        ReleaseAckSlot();
        // Stored but not acknowledged: the truck sends the events again and gets its ack then.
        metrics_->ack_failures.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("bridge: ack to {} not sent: {}", device, e.what());
      }
    }
  }
}

void Consumer::Stop() {
  if (!started_.exchange(false)) return;
  // The subscription stays in the broker's session: what trucks send while the bridge is down
  // waits there for the next start. Messages that arrive while the queue drains are not queued
  // (their trucks send them again after their ack timeout).
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  space_cv_.notify_all();
  if (store_thread_.joinable()) store_thread_.join();
  try {
    client_->disable_callbacks();
    if (client_->is_connected()) client_->disconnect()->wait_for(std::chrono::seconds(5));
  } catch (const mqtt::exception& e) {
    spdlog::warn("bridge: disconnect at stop failed: {}", e.what());
  }
  metrics_->broker_connected = false;
}

}  // namespace waybill::bridge
