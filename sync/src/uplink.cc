// The uplink: drains the outbox over MQTT, deletes only what the bridge acknowledges.
//
// METHOD
// One thread (the worker) owns the connection state, the batches in flight and every call into
// the outbox and into Paho. Paho's own threads only post what happened (connect done, connection
// lost, message arrived) into a mailbox and wake the worker, so no uplink state is touched from
// two threads and a slow outbox or command handler never blocks Paho's network thread. The worker
// sleeps until the earliest of its deadlines (next reconnect, a batch's wait, an ack timeout, the
// poll) measured on the injected Clock; real waits are cut into slices of at most poll_ms so that
// a fake clock moved by a test is noticed too.
//
// CONNECTING. Paho's automatic reconnect is off: the worker decides when to try. After a failure
// the next attempt is scheduled with Backoff (full jitter between a floor > 0 and a doubling,
// capped ceiling), so a fleet that lost the broker comes back spread out and a broker that refuses
// at once can never make a hot loop. A connection that stays up stable_after_ms resets the
// backoff; a flapping one keeps growing it. Paho reports every network-level failure as one code,
// so after a failed attempt the worker runs its own probe (connect_diagnosis.h: DNS, TCP, TLS
// handshake with OpenSSL's verify result and the broker's alert) to log the cause in words. The
// probe costs a handshake, so during a long outage it runs on the first failure and then every
// kDiagnoseEvery failures; the attempts in between repeat the last diagnosis. Sessions are never
// clean (MQTT 5 session expiry, 3.1.1 clean session off) so acks and commands queued while the
// truck was away still arrive; subscriptions are made again on every connect anyway, because a
// broker that crashed may have lost the session.
//
// DRAINING. After every connect the newest fix goes out alone (Claim(1, newest_fix_first)), so
// live tracking recovers before anything else moves. Then each claim asks the outbox for up to
// batch_max_events, newest fix first again: the outbox returns delivery and PoD events, then
// health, then fixes oldest first. A fix newer than every fix sent so far is live; an older one
// is backlog and goes in batches marked historical, in sequence (= time) order. A newest fix that
// turns out to be backlog is released at once so that the backlog keeps its order. Live fixes
// wait up to batch_wait_ms for a batch to fill (bytes on the link cost more than a few seconds of
// latency); deliveries, PoD and backlog never wait. Batches are split further to stay under the
// wire's payload bound.
//
// ACKS. An event is deleted (Outbox::Ack) only when an Ack on fleet/<device>/ack names it: the
// broker's PUBACK proves nothing about the bridge's storage. Every published batch stays in
// flight until all its sequences are acked; at most inflight_batches are in flight. A batch not
// fully acked after ack_timeout_ms is released (Outbox::Release) and its events are claimed and
// sent again; on a disconnect and on Stop() everything in flight is released. Acks may name
// sequences the uplink no longer tracks (late or repeated acks): they are passed to the outbox
// all the same, which ignores unknown sequences.
//
// INVARIANTS
//  1. Outbox::Ack is called only with sequences named by a decoded Ack of this device.
//  2. Every claimed sequence is in exactly one of: pending_ (claimed, not yet published), a batch
//     in inflight_, or unsendable_ (could not be encoded; logged and counted, kept in the outbox
//     and retried by the next process). Release and Ack remove it from all of them.
//  3. inflight_.size() <= inflight_batches.
//  4. No mqtt::exception leaves this file: every Paho call is wrapped.
#include "waybill/sync/uplink.h"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "connect_diagnosis.h"

namespace waybill::sync {
namespace {

constexpr int kQos = 1;
// A probe per kDiagnoseEvery failed attempts during one outage (plus the first).
constexpr int kDiagnoseEvery = 8;
// Encoded batches are split well below the wire's bound: fixes are re-encoded as columns (smaller
// than their bodies), envelopes add a few bytes per event.
constexpr size_t kBatchBodyBudgetBytes = kMaxBatchBytes / 2;
constexpr int64_t kStopTimeoutMs = 2000;

int DrainRank(EventClass cls) {
  switch (cls) {
    case EventClass::kProofOfDelivery:
    case EventClass::kDelivery:
      return 0;
    case EventClass::kHealth:
      return 1;
    case EventClass::kFix:
      return 2;
  }
  return 3;
}

std::string Truncate(std::string s, size_t max_bytes) {
  if (s.size() > max_bytes) s.resize(max_bytes);
  return s;
}

Status CheckRange(const char* name, int64_t value, int64_t lo, int64_t hi) {
  if (value >= lo && value <= hi) return Status::Ok();
  return Status::InvalidArgument(std::string(name) + ": " + std::to_string(value) +
                                 ", must be between " + std::to_string(lo) + " and " +
                                 std::to_string(hi));
}

}  // namespace

Status Validate(const UplinkOptions& o) {
  auto uri = internal::ParseBrokerUri(o.broker_uri);
  if (!uri.ok()) return uri.status();
  if (!IsValidDeviceId(o.device_id)) {
    return Status::InvalidArgument("device_id \"" + o.device_id +
                                   "\": must be 1..64 characters of A-Z a-z 0-9 _ -");
  }
  if (o.mqtt_version != MqttVersion::kV5 && o.mqtt_version != MqttVersion::kV311) {
    return Status::InvalidArgument("mqtt_version: must be 5 or 3.1.1");
  }
  for (const Status& s : {
           CheckRange("keepalive_s", o.keepalive_s, 240, 65535),
           CheckRange("connect_timeout_s", o.connect_timeout_s, 1, 300),
           CheckRange("batch_max_events", static_cast<int64_t>(o.batch_max_events), 1,
                      static_cast<int64_t>(kMaxBatchEvents)),
           CheckRange("batch_wait_ms", o.batch_wait_ms, 0, 3'600'000),
           CheckRange("inflight_batches", o.inflight_batches, 1, 100),
           CheckRange("ack_timeout_ms", o.ack_timeout_ms, 100, 86'400'000),
           CheckRange("poll_ms", o.poll_ms, 10, 60'000),
           CheckRange("stable_after_ms", o.stable_after_ms, 0, 86'400'000),
           Validate(o.backoff),
       }) {
    if (!s.ok()) return s;
  }
  if (o.firmware_version.size() > 64) {
    return Status::InvalidArgument(
        "firmware_version: " + std::to_string(o.firmware_version.size()) + " bytes, at most 64");
  }
  if (uri->tls) {
    Status s = internal::CheckTlsFiles(o.tls);
    // An expired client certificate is worth a loud log, not a refusal: the clock may be wrong
    // until GNSS time arrives, and the broker is the judge.
    if (!s.ok() && s.code() != Status::Code::kFailedPrecondition) return s;
    if (!s.ok()) spdlog::warn("uplink: {}", s.message());
  } else if (!o.tls.ca_file.empty() || !o.tls.cert_file.empty()) {
    return Status::InvalidArgument("tls files are set but broker_uri " + o.broker_uri +
                                   " is not ssl://: events would travel in clear text");
  }
  return Status::Ok();
}

class Uplink::Impl {
 public:
  Impl(Outbox& outbox, const hal::Clock& clock, UplinkOptions options,
       internal::BrokerAddress broker)
      : outbox_(outbox),
        clock_(clock),
        options_(std::move(options)),
        broker_(std::move(broker)),
        topic_up_(TopicUp(options_.device_id)),
        topic_ack_(TopicAck(options_.device_id)),
        topic_cmd_(TopicCmd(options_.device_id)),
        topic_cmd_result_(TopicCmdResult(options_.device_id)),
        topic_status_(TopicStatus(options_.device_id)),
        backoff_(options_.backoff, std::random_device{}()),
        connect_listener_(*this, Event::Kind::kConnectDone),
        subscribe_listener_(*this, Event::Kind::kSubscribeDone) {}

  ~Impl() { Stop(); }

  void SetCommandHandler(CommandHandler handler) {
    std::lock_guard<std::mutex> lk(mu_);
    handler_ = std::move(handler);
  }

  Status Start() {
    std::lock_guard<std::mutex> start_lk(start_mu_);
    if (worker_.joinable()) return Status::FailedPrecondition("uplink already started");
    try {
      mqtt::create_options create(static_cast<int>(options_.mqtt_version));
      // No Paho persistence: the outbox is the store; what Paho had in flight is released and
      // claimed again after a restart.
      client_ = std::make_unique<mqtt::async_client>(options_.broker_uri, options_.device_id,
                                                     create, nullptr);
      client_->set_connection_lost_handler([this](const std::string& cause) {
        Post(Event{Event::Kind::kLost, 0, 0, 0, cause, nullptr});
      });
      client_->set_disconnected_handler([this](const mqtt::properties&, mqtt::ReasonCode rc) {
        Post(Event{Event::Kind::kServerDisconnect, 0, 0, static_cast<int>(rc), "", nullptr});
      });
      client_->set_message_callback([this](mqtt::const_message_ptr msg) {
        Post(Event{Event::Kind::kMessage, 0, 0, 0, "", std::move(msg)});
      });
    } catch (const mqtt::exception& e) {
      client_.reset();
      return Status::InvalidArgument("uplink: cannot create the MQTT client for " +
                                     options_.broker_uri + ": " + e.what());
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = false;
    }
    state_ = State::kDisconnected;
    next_attempt_mono_ms_ = clock_.mono_ms();
    worker_ = std::thread([this] { Run(); });
    spdlog::info("uplink: started for device {} to {} (MQTT {}, keepalive {} s)",
                 options_.device_id, options_.broker_uri,
                 options_.mqtt_version == MqttVersion::kV5 ? "5" : "3.1.1", options_.keepalive_s);
    return Status::Ok();
  }

  void Stop() {
    std::lock_guard<std::mutex> start_lk(start_mu_);
    if (!worker_.joinable()) return;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
    try {
      client_->disable_callbacks();
    } catch (const mqtt::exception& e) {
      spdlog::debug("uplink: disabling callbacks: {}", e.what());
    }
    client_.reset();
  }

  UplinkStats Stats() const {
    std::lock_guard<std::mutex> lk(mu_);
    UplinkStats s = stats_;
    if (!s.connected && s.next_attempt_in_ms > 0) {
      s.next_attempt_in_ms = std::max<int64_t>(0, next_attempt_shared_ms_ - clock_.mono_ms());
    }
    return s;
  }

  void Nudge() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      nudged_ = true;
    }
    cv_.notify_all();
  }

 private:
  enum class State { kDisconnected, kConnecting, kSubscribing, kOnline };

  struct Event {
    enum class Kind { kConnectDone, kSubscribeDone, kLost, kServerDisconnect, kMessage };
    Kind kind;
    uint64_t generation;  // the connect attempt a kConnectDone/kSubscribeDone belongs to
    int rc;               // Paho return code (0 = success)
    int reason;           // MQTT 5 reason code, or 0
    std::string text;
    mqtt::const_message_ptr msg;
    bool ok = false;
  };

  // Turns Paho's completion callbacks (on Paho's thread) into mailbox events.
  class Listener : public mqtt::iaction_listener {
   public:
    Listener(Impl& impl, Event::Kind kind) : impl_(impl), kind_(kind) {}
    void on_failure(const mqtt::token& tok) override { Done(tok, false); }
    void on_success(const mqtt::token& tok) override { Done(tok, true); }

   private:
    void Done(const mqtt::token& tok, bool ok) {
      Event e{kind_,
              static_cast<uint64_t>(reinterpret_cast<uintptr_t>(tok.get_user_context())),
              tok.get_return_code(),
              static_cast<int>(tok.get_reason_code()),
              "",
              nullptr};
      e.ok = ok;
      impl_.Post(std::move(e));
    }
    Impl& impl_;
    Event::Kind kind_;
  };

  struct Batch {
    std::set<uint64_t> unacked;
    int64_t sent_mono_ms = 0;
    bool historical = false;
    mqtt::delivery_token_ptr puback;  // completes when the broker PUBACKs the publish
  };

  void Post(Event e) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      mailbox_.push_back(std::move(e));
    }
    cv_.notify_all();
  }

  template <typename F>
  void UpdateStats(F&& f) {
    std::lock_guard<std::mutex> lk(mu_);
    f(stats_);
  }

  // ---- The worker ----

  void Run() {
    while (true) {
      std::deque<Event> events;
      bool stopping = false;
      {
        std::lock_guard<std::mutex> lk(mu_);
        events.swap(mailbox_);
        stopping = stop_;
        nudged_ = false;
      }
      if (stopping) break;
      for (Event& e : events) Handle(e);
      int64_t now = clock_.mono_ms();
      Step(now);
      int64_t deadline = NextDeadline(clock_.mono_ms());
      int64_t wait_ms = std::clamp<int64_t>(deadline - clock_.mono_ms(), 1, options_.poll_ms);
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(wait_ms),
                   [this] { return stop_ || nudged_ || !mailbox_.empty(); });
    }
    Shutdown();
  }

  void Step(int64_t now) {
    switch (state_) {
      case State::kDisconnected:
        if (now >= next_attempt_mono_ms_) StartConnect(now);
        break;
      case State::kConnecting:
      case State::kSubscribing:
        // Paho times a connect out itself; this guards against a completion that never comes.
        if (now < phase_deadline_mono_ms_) break;
        if (state_ == State::kConnecting) {
          Failed(now, "no answer to the connect within " +
                          std::to_string(options_.connect_timeout_s) + " s");
        } else {
          ConnectionDown(now, "no answer to the subscribe");
        }
        ForceDisconnect();
        break;
      case State::kOnline:
        CheckAckTimeouts(now);
        Drain(now);
        break;
    }
  }

  int64_t NextDeadline(int64_t now) const {
    int64_t deadline = now + options_.poll_ms;
    switch (state_) {
      case State::kDisconnected:
        deadline = std::min(deadline, next_attempt_mono_ms_);
        break;
      case State::kConnecting:
      case State::kSubscribing:
        deadline = std::min(deadline, phase_deadline_mono_ms_);
        break;
      case State::kOnline:
        if (!pending_.empty()) {
          deadline = std::min(deadline, pending_since_mono_ms_ + options_.batch_wait_ms);
        }
        for (const auto& [id, batch] : inflight_) {
          deadline = std::min(deadline, batch.sent_mono_ms + options_.ack_timeout_ms);
        }
        break;
    }
    return deadline;
  }

  void Handle(Event& e) {
    int64_t now = clock_.mono_ms();
    switch (e.kind) {
      case Event::Kind::kConnectDone:
        if (state_ != State::kConnecting || e.generation != generation_) return;
        if (e.ok) {
          OnConnected(now);
        } else {
          OnConnectFailed(now, e.rc, e.reason);
        }
        break;
      case Event::Kind::kSubscribeDone:
        if (state_ != State::kSubscribing || e.generation != generation_) return;
        OnSubscribed(now, e);
        break;
      case Event::Kind::kLost:
        if (state_ != State::kSubscribing && state_ != State::kOnline) return;
        if (IsClientConnected()) return;  // a late report about an earlier connection
        ConnectionDown(now, e.text.empty() ? "connection lost (the broker closed it or the "
                                             "network dropped)"
                                           : "connection lost: " + e.text);
        break;
      case Event::Kind::kServerDisconnect:
        if (state_ != State::kSubscribing && state_ != State::kOnline) return;
        ConnectionDown(now, "the broker disconnected us: " + internal::ReasonWords(e.reason));
        break;
      case Event::Kind::kMessage:
        if (!e.msg) return;
        if (e.msg->get_topic() == topic_ack_) {
          HandleAck(e.msg->get_payload_str());
        } else if (e.msg->get_topic() == topic_cmd_) {
          HandleCommand(e.msg->get_payload_str());
        }
        break;
    }
  }

  bool IsClientConnected() {
    try {
      return client_->is_connected();
    } catch (const mqtt::exception&) {
      return false;
    }
  }

  mqtt::connect_options BuildConnectOptions() {
    mqtt::connect_options o;
    o.set_mqtt_version(static_cast<int>(options_.mqtt_version));
    o.set_keep_alive_interval(options_.keepalive_s);
    o.set_connect_timeout(options_.connect_timeout_s);
    o.set_automatic_reconnect(false);
    o.set_clean_session(false);
    o.set_clean_start(false);
    o.set_max_inflight(options_.inflight_batches + 16);
    if (options_.mqtt_version == MqttVersion::kV5) {
      o.set_properties(mqtt::properties{mqtt::property(
          mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<int>(options_.session_expiry_s))});
    }
    o.set_will(mqtt::will_options(topic_status_, StatusPayload(false, options_.firmware_version),
                                  kQos, true));
    if (broker_.tls) {
      mqtt::ssl_options ssl;
      ssl.set_trust_store(options_.tls.ca_file);
      if (!options_.tls.cert_file.empty()) {
        ssl.set_key_store(options_.tls.cert_file);
        ssl.set_private_key(options_.tls.key_file);
      }
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(options_.tls.verify_host);
      o.set_ssl(std::move(ssl));
    }
    return o;
  }

  void StartConnect(int64_t now) {
    ++generation_;
    ++attempts_in_outage_;
    UpdateStats([](UplinkStats& s) { ++s.connect_attempts; });
    try {
      client_->connect(BuildConnectOptions(),
                       reinterpret_cast<void*>(static_cast<uintptr_t>(generation_)),
                       connect_listener_);
      state_ = State::kConnecting;
      phase_deadline_mono_ms_ = now + options_.connect_timeout_s * 1000LL + 5000;
    } catch (const mqtt::exception& e) {
      Failed(now, std::string("could not start a connect: ") + e.what());
    }
  }

  void OnConnectFailed(int64_t now, int rc, int reason) {
    std::string cause;
    if (reason >= 0x80) {
      cause = "the broker refused the connection: " + internal::ReasonWords(reason);
    } else if (rc > 0 && rc <= 5 && options_.mqtt_version == MqttVersion::kV311) {
      cause = internal::ConnackWords(rc);
    } else if (attempts_in_outage_ == 1 || attempts_in_outage_ % kDiagnoseEvery == 0 ||
               last_diagnosis_.empty()) {
      std::string found = internal::DiagnoseConnectFailure(
          broker_, options_.tls, std::min(options_.connect_timeout_s * 1000, 5000));
      last_diagnosis_ = found.empty()
                            ? "the connect failed (" + internal::PahoWords(rc) +
                                  ") although a probe reached the broker: a passing network "
                                  "fault or a refusal at the MQTT level"
                            : found;
      cause = last_diagnosis_;
    } else {
      cause = last_diagnosis_ + " (as found by the probe at an earlier attempt)";
    }
    Failed(now, cause);
  }

  // A connect attempt failed: log the cause and schedule the next attempt.
  void Failed(int64_t now, const std::string& cause) {
    state_ = State::kDisconnected;
    int64_t delay_ms = backoff_.NextDelayMs();
    next_attempt_mono_ms_ = now + delay_ms;
    spdlog::warn(
        "uplink: cannot connect to {} (attempt {} of this outage): {}; next attempt in "
        "{} ms",
        options_.broker_uri, attempts_in_outage_, cause, delay_ms);
    UpdateStats([&](UplinkStats& s) {
      s.connected = false;
      s.last_connect_error = cause;
      s.next_attempt_in_ms = delay_ms;
      next_attempt_shared_ms_ = next_attempt_mono_ms_;
    });
  }

  void OnConnected(int64_t now) {
    state_ = State::kSubscribing;
    connected_since_mono_ms_ = now;
    phase_deadline_mono_ms_ = now + options_.connect_timeout_s * 1000LL + 5000;
    last_diagnosis_.clear();
    UpdateStats([](UplinkStats& s) { ++s.connects; });
    try {
      auto topics = mqtt::string_collection::create({topic_ack_, topic_cmd_});
      subscribe_token_ = client_->subscribe(
          topics, mqtt::iasync_client::qos_collection{kQos, kQos},
          reinterpret_cast<void*>(static_cast<uintptr_t>(generation_)), subscribe_listener_);
    } catch (const mqtt::exception& e) {
      ConnectionDown(now, std::string("could not subscribe: ") + e.what());
      ForceDisconnect();
    }
  }

  void OnSubscribed(int64_t now, const Event& e) {
    if (!e.ok) {
      spdlog::error(
          "uplink: the broker refused the subscription to {} and {} ({}): acks will "
          "not arrive and nothing will be deleted from the outbox",
          topic_ack_, topic_cmd_,
          e.reason != 0 ? internal::ReasonWords(e.reason) : internal::PahoWords(e.rc));
    }
    // Per-topic verdicts (MQTT 5 only: Paho does not report 3.1.1's reliably). Read from the
    // token on this thread: it is complete once its listener has run.
    std::vector<int> granted;
    if (e.ok && subscribe_token_ && options_.mqtt_version == MqttVersion::kV5) {
      try {
        // The response is returned by value: keep it alive while its reason codes are read.
        mqtt::subscribe_response response = subscribe_token_->get_subscribe_response();
        for (mqtt::ReasonCode rc : response.get_reason_codes()) {
          granted.push_back(static_cast<int>(rc));
        }
      } catch (const mqtt::exception& ex) {
        spdlog::debug("uplink: no subscribe response: {}", ex.what());
      }
    }
    subscribe_token_.reset();
    const char* names[] = {"ack", "cmd"};
    for (size_t i = 0; i < granted.size() && i < 2; ++i) {
      if (granted[i] >= 0x80) {
        spdlog::error("uplink: the broker refused the subscription to {} topic ({}){}", names[i],
                      internal::ReasonWords(granted[i]),
                      i == 0 ? ": acks will not arrive, nothing will be deleted" : "");
      }
    }
    state_ = State::kOnline;
    attempts_in_outage_ = 0;
    send_newest_first_ = true;
    spdlog::info("uplink: connected to {} as {}", options_.broker_uri, options_.device_id);
    UpdateStats([](UplinkStats& s) {
      s.connected = true;
      s.next_attempt_in_ms = 0;
    });
    std::string error;
    if (!Publish(topic_status_, StatusPayload(true, options_.firmware_version), true, &error)) {
      spdlog::warn("uplink: could not publish the online status: {}", error);
    }
    Drain(now);
  }

  // The connection that was up (or being set up) is gone.
  void ConnectionDown(int64_t now, const std::string& cause) {
    bool was_stable =
        state_ == State::kOnline && now - connected_since_mono_ms_ >= options_.stable_after_ms;
    size_t released = ReleaseAll();
    spdlog::warn(
        "uplink: disconnected from {}: {}; {} events in flight released to be sent "
        "again",
        options_.broker_uri, cause, released);
    UpdateStats([&](UplinkStats& s) {
      s.connected = false;
      ++s.disconnects;
      s.last_disconnect_cause = cause;
    });
    if (was_stable) backoff_.Reset();
    state_ = State::kDisconnected;
    attempts_in_outage_ = 0;
    int64_t delay_ms = backoff_.NextDelayMs();
    next_attempt_mono_ms_ = now + delay_ms;
    UpdateStats([&](UplinkStats& s) {
      s.next_attempt_in_ms = delay_ms;
      next_attempt_shared_ms_ = next_attempt_mono_ms_;
    });
  }

  // Drops a connection Paho still thinks is up, so that the next connect starts clean.
  void ForceDisconnect() {
    try {
      client_->disconnect(0);
    } catch (const mqtt::exception& e) {
      spdlog::debug("uplink: disconnect: {}", e.what());
    }
  }

  bool Publish(const std::string& topic, const std::string& payload, bool retained,
               std::string* error, mqtt::delivery_token_ptr* puback = nullptr) {
    try {
      mqtt::delivery_token_ptr tok =
          client_->publish(mqtt::make_message(topic, payload, kQos, retained));
      if (puback != nullptr) *puback = std::move(tok);
    } catch (const mqtt::exception& e) {
      *error = e.what();
      return false;
    }
    UpdateStats([&](UplinkStats& s) { s.bytes_published += payload.size(); });
    return true;
  }

  // ---- Draining ----

  void Drain(int64_t now) {
    if (state_ != State::kOnline) return;
    if (send_newest_first_) {
      send_newest_first_ = false;
      auto newest = outbox_.Claim(1, true);
      if (!newest.ok()) {
        NoteClaimError(newest.status());
        return;
      }
      if (!newest->empty()) {
        if (newest->front().cls == EventClass::kFix) {
          live_high_fix_seq_ = std::max(live_high_fix_seq_, newest->front().seq);
        }
        if (!PublishEvents(std::move(*newest), false, now)) return;
      }
    }
    // Bounded: each round publishes at least one batch or stops.
    for (int round = 0; round <= options_.inflight_batches; ++round) {
      if (state_ != State::kOnline) return;
      if (inflight_.size() >= static_cast<size_t>(options_.inflight_batches)) return;
      if (pending_.size() < options_.batch_max_events && !TopUpPending(now)) return;
      if (pending_.empty()) return;
      bool urgent = false;
      for (const StoredEvent& e : pending_) {
        if (e.cls != EventClass::kFix || e.seq < live_high_fix_seq_) urgent = true;
      }
      bool ready = urgent || pending_.size() >= options_.batch_max_events ||
                   now - pending_since_mono_ms_ >= options_.batch_wait_ms;
      if (!ready) return;
      SendPending(now);
    }
  }

  // Claims more events into pending_; false on an outbox error.
  bool TopUpPending(int64_t now) {
    size_t want = options_.batch_max_events - pending_.size();
    // With room for one event only, the newest fix would fill it even when it is backlog.
    auto claimed = outbox_.Claim(want, want >= 2);
    if (!claimed.ok()) {
      NoteClaimError(claimed.status());
      return false;
    }
    claim_error_logged_ = false;
    std::vector<uint64_t> not_live;
    for (StoredEvent& e : *claimed) {
      // The outbox put the newest unclaimed fix first; if it is older than a fix already sent,
      // it belongs to the backlog and must not jump it.
      if (&e == &claimed->front() && e.cls == EventClass::kFix && claimed->size() > 1 &&
          e.seq < live_high_fix_seq_) {
        not_live.push_back(e.seq);
        continue;
      }
      if (pending_.empty()) pending_since_mono_ms_ = now;
      pending_.push_back(std::move(e));
    }
    if (!not_live.empty()) outbox_.Release(not_live);
    return true;
  }

  void NoteClaimError(const Status& s) {
    if (!claim_error_logged_) {
      spdlog::error("uplink: cannot read the outbox: {}; trying again at the next poll",
                    s.message());
      claim_error_logged_ = true;
    }
  }

  void SendPending(int64_t now) {
    std::vector<StoredEvent> events = std::move(pending_);
    pending_.clear();
    std::stable_sort(events.begin(), events.end(), [](const StoredEvent& a, const StoredEvent& b) {
      int ra = DrainRank(a.cls), rb = DrainRank(b.cls);
      return ra != rb ? ra < rb : a.seq < b.seq;
    });
    std::vector<StoredEvent> live, historical;
    for (StoredEvent& e : events) {
      if (e.cls == EventClass::kFix && e.seq < live_high_fix_seq_) {
        historical.push_back(std::move(e));
      } else {
        if (e.cls == EventClass::kFix) live_high_fix_seq_ = std::max(live_high_fix_seq_, e.seq);
        live.push_back(std::move(e));
      }
    }
    if (!live.empty() && !PublishEvents(std::move(live), false, now)) {
      ReleaseEvents(historical);
      return;
    }
    if (!historical.empty()) PublishEvents(std::move(historical), true, now);
  }

  void ReleaseEvents(const std::vector<StoredEvent>& events) {
    std::vector<uint64_t> seqs;
    seqs.reserve(events.size());
    for (const StoredEvent& e : events) seqs.push_back(e.seq);
    if (!seqs.empty()) outbox_.Release(seqs);
  }

  // Publishes `events` as one or more batches (split by size). On a publish failure the events
  // not published are released and false is returned.
  bool PublishEvents(std::vector<StoredEvent> events, bool historical, int64_t now) {
    size_t begin = 0;
    while (begin < events.size()) {
      size_t end = begin;
      size_t bytes = 0;
      while (end < events.size() &&
             (end == begin || bytes + events[end].body.size() <= kBatchBodyBudgetBytes)) {
        bytes += events[end].body.size();
        ++end;
      }
      if (!PublishChunk(std::span<StoredEvent>(events).subspan(begin, end - begin), historical,
                        now)) {
        ReleaseEvents(
            std::vector<StoredEvent>(events.begin() + static_cast<ptrdiff_t>(begin), events.end()));
        return false;
      }
      begin = end;
    }
    return true;
  }

  bool PublishChunk(std::span<StoredEvent> chunk, bool historical, int64_t now) {
    auto payload = EncodeBatch(options_.device_id, historical, chunk);
    if (!payload.ok()) {
      if (chunk.size() > 1) {
        size_t half = chunk.size() / 2;
        return PublishChunk(chunk.first(half), historical, now) &&
               PublishChunk(chunk.subspan(half), historical, now);
      }
      // One event that cannot be encoded: keep it claimed so that it does not block the drain.
      // It stays in the outbox; the next process tries again.
      unsendable_.insert(chunk.front().seq);
      spdlog::error(
          "uplink: event seq {} ({}) cannot be encoded for sending: {}; it stays in the "
          "outbox and is skipped until restart",
          chunk.front().seq, ToString(chunk.front().cls), payload.status().message());
      UpdateStats([](UplinkStats& s) { ++s.events_unsendable; });
      return true;
    }
    std::string error;
    mqtt::delivery_token_ptr puback;
    if (!Publish(topic_up_, *payload, false, &error, &puback)) {
      spdlog::warn("uplink: publishing a batch of {} events failed: {}; they will be sent again",
                   chunk.size(), error);
      return false;
    }
    uint64_t id = next_batch_id_++;
    Batch& batch = inflight_[id];
    batch.sent_mono_ms = now;
    batch.historical = historical;
    batch.puback = std::move(puback);
    for (const StoredEvent& e : chunk) {
      batch.unacked.insert(e.seq);
      seq_to_batch_[e.seq] = id;
    }
    UpdateStats([&](UplinkStats& s) {
      ++s.batches_sent;
      s.events_sent += chunk.size();
      s.inflight_batches = inflight_.size();
      s.inflight_events = seq_to_batch_.size();
    });
    return true;
  }

  void CheckAckTimeouts(int64_t now) {
    for (auto it = inflight_.begin(); it != inflight_.end();) {
      if (now - it->second.sent_mono_ms < options_.ack_timeout_ms) {
        ++it;
        continue;
      }
      // Not even the broker answered (no PUBACK): the link is stalled, as in a dead zone where
      // TCP keeps retransmitting and the keepalive is minutes away. Publishing more into that
      // connection would make the backlog arrive oldest first when coverage returns; reconnect
      // instead, so that the drain starts again with the newest fix.
      if (it->second.puback && !it->second.puback->is_complete()) {
        ConnectionDown(now, "no PUBACK from the broker within " +
                                std::to_string(options_.ack_timeout_ms) +
                                " ms: the link is stalled");
        ForceDisconnect();
        return;
      }
      std::vector<uint64_t> seqs(it->second.unacked.begin(), it->second.unacked.end());
      for (uint64_t seq : seqs) seq_to_batch_.erase(seq);
      outbox_.Release(seqs);
      spdlog::info(
          "uplink: no ack for {} events of a batch after {} ms; released to be sent "
          "again",
          seqs.size(), options_.ack_timeout_ms);
      UpdateStats([&](UplinkStats& s) {
        ++s.ack_timeouts;
        s.resends += seqs.size();
      });
      it = inflight_.erase(it);
    }
    UpdateStats([&](UplinkStats& s) {
      s.inflight_batches = inflight_.size();
      s.inflight_events = seq_to_batch_.size();
    });
  }

  // Releases everything claimed (in flight and pending); returns how many events were in flight.
  size_t ReleaseAll() {
    std::vector<uint64_t> seqs;
    for (const auto& [seq, id] : seq_to_batch_) seqs.push_back(seq);
    size_t in_flight = seqs.size();
    for (const StoredEvent& e : pending_) seqs.push_back(e.seq);
    if (!seqs.empty()) outbox_.Release(seqs);
    pending_.clear();
    inflight_.clear();
    seq_to_batch_.clear();
    UpdateStats([&](UplinkStats& s) {
      s.resends += in_flight;
      s.inflight_batches = 0;
      s.inflight_events = 0;
    });
    return in_flight;
  }

  // ---- Acks and commands ----

  void HandleAck(const std::string& payload) {
    std::string device;
    auto seqs = DecodeAck(payload, &device);
    if (!seqs.ok() || device != options_.device_id) {
      std::string why = !seqs.ok() ? seqs.status().message() : "it names device \"" + device + "\"";
      spdlog::warn("uplink: ignored an ack on {}: {}", topic_ack_, why);
      UpdateStats([](UplinkStats& s) { ++s.acks_rejected; });
      return;
    }
    Status s = outbox_.Ack(*seqs);
    // Acked or not, the outbox no longer counts these as claimed: stop tracking them here too.
    std::unordered_set<uint64_t> named(seqs->begin(), seqs->end());
    for (uint64_t seq : *seqs) {
      auto it = seq_to_batch_.find(seq);
      if (it == seq_to_batch_.end()) continue;
      auto batch = inflight_.find(it->second);
      if (batch != inflight_.end()) {
        batch->second.unacked.erase(seq);
        if (batch->second.unacked.empty()) inflight_.erase(batch);
      }
      seq_to_batch_.erase(it);
    }
    std::erase_if(pending_, [&](const StoredEvent& e) { return named.count(e.seq) != 0; });
    for (uint64_t seq : *seqs) unsendable_.erase(seq);
    if (!s.ok()) {
      spdlog::error("uplink: {}", s.message());
    }
    int64_t wall = clock_.wall_ms();
    UpdateStats([&](UplinkStats& st) {
      ++st.acks_received;
      if (s.ok()) st.events_acked += seqs->size();
      st.last_ack_wall_ms = wall;
      st.inflight_batches = inflight_.size();
      st.inflight_events = seq_to_batch_.size();
    });
  }

  void HandleCommand(const std::string& payload) {
    UpdateStats([](UplinkStats& s) { ++s.commands_received; });
    auto command = DecodeCommand(payload);
    CommandResult result;
    if (!command.ok()) {
      UpdateStats([](UplinkStats& s) { ++s.commands_rejected; });
      result.command_id = PeekCommandId(payload);
      spdlog::warn("uplink: rejected a command on {} ({} bytes, id \"{}\"): {}", topic_cmd_,
                   payload.size(), result.command_id, command.status().message());
      if (result.command_id.empty()) return;  // nobody to answer
      result.ok = false;
      result.message = "command rejected: " + command.status().message();
    } else {
      CommandHandler handler;
      {
        std::lock_guard<std::mutex> lk(mu_);
        handler = handler_;
      }
      if (!handler) {
        result.ok = false;
        result.message = "this device has no command handler";
      } else {
        try {
          result = handler(*command);
        } catch (const std::exception& e) {
          result = CommandResult{};
          result.ok = false;
          result.message = std::string("the command handler failed: ") + e.what();
        }
      }
      result.command_id = command->command_id;
    }
    result.message = Truncate(std::move(result.message), kMaxResultMessageBytes);
    auto encoded = EncodeCommandResult(result);
    if (!encoded.ok()) {
      result.ok = false;
      result.message = Truncate("the result could not be encoded: " + encoded.status().message(),
                                kMaxResultMessageBytes);
      result.status_json.clear();
      encoded = EncodeCommandResult(result);
      if (!encoded.ok()) return;
    }
    std::string error;
    if (!Publish(topic_cmd_result_, *encoded, false, &error)) {
      spdlog::warn("uplink: could not publish the result of command {}: {}", result.command_id,
                   error);
    }
  }

  void Shutdown() {
    bool up = state_ == State::kOnline || state_ == State::kSubscribing;
    if (up) {
      // A clean DISCONNECT suppresses the will, so say "offline" ourselves. (MQTT 5's "disconnect
      // with will" reason would do it, but Paho C 1.3 / Mosquitto 2.0 did not publish the will
      // with it when tried.) Its PUBACK is awaited on the token: Paho's disconnect(timeout)
      // waits out its whole timeout.
      try {
        std::string payload = StatusPayload(false, options_.firmware_version);
        auto tok = client_->publish(mqtt::make_message(topic_status_, payload, kQos, true));
        UpdateStats([&](UplinkStats& s) { s.bytes_published += payload.size(); });
        tok->wait_for(std::chrono::milliseconds(kStopTimeoutMs));
      } catch (const mqtt::exception& e) {
        spdlog::debug("uplink: offline status not published: {}", e.what());
      }
    }
    if (state_ != State::kDisconnected) {
      try {
        client_->disconnect(0)->wait_for(std::chrono::milliseconds(kStopTimeoutMs));
      } catch (const mqtt::exception& e) {
        spdlog::debug("uplink: disconnect on stop: {}", e.what());
      }
    }
    size_t released = ReleaseAll();
    state_ = State::kDisconnected;
    UpdateStats([](UplinkStats& s) { s.connected = false; });
    spdlog::info("uplink: stopped; {} events in flight released", released);
  }

  Outbox& outbox_;
  const hal::Clock& clock_;
  const UplinkOptions options_;
  const internal::BrokerAddress broker_;
  const std::string topic_up_, topic_ack_, topic_cmd_, topic_cmd_result_, topic_status_;

  // Shared with Paho's threads and callers; guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> mailbox_;
  bool stop_ = false;
  bool nudged_ = false;
  UplinkStats stats_;
  int64_t next_attempt_shared_ms_ = 0;
  CommandHandler handler_;

  std::mutex start_mu_;  // serialises Start() and Stop()
  std::thread worker_;

  // Owned by the worker thread (and by Start/Stop while it does not run).
  State state_ = State::kDisconnected;
  uint64_t generation_ = 0;
  int64_t next_attempt_mono_ms_ = 0;
  int64_t phase_deadline_mono_ms_ = 0;
  int64_t connected_since_mono_ms_ = 0;
  int attempts_in_outage_ = 0;
  std::string last_diagnosis_;
  Backoff backoff_;
  bool send_newest_first_ = false;
  bool claim_error_logged_ = false;
  uint64_t live_high_fix_seq_ = 0;
  std::vector<StoredEvent> pending_;
  int64_t pending_since_mono_ms_ = 0;
  std::map<uint64_t, Batch> inflight_;
  std::unordered_map<uint64_t, uint64_t> seq_to_batch_;
  std::unordered_set<uint64_t> unsendable_;
  uint64_t next_batch_id_ = 1;

  mqtt::token_ptr subscribe_token_;
  Listener connect_listener_;
  Listener subscribe_listener_;
  // Last: destroyed first, while the listeners it may call are still alive.
  std::unique_ptr<mqtt::async_client> client_;
};

Result<std::unique_ptr<Uplink>> Uplink::Create(Outbox& outbox, const hal::Clock& clock,
                                               const UplinkOptions& options) {
  Status s = Validate(options);
  if (!s.ok()) return s;
  auto broker = internal::ParseBrokerUri(options.broker_uri);
  if (!broker.ok()) return broker.status();
  return std::unique_ptr<Uplink>(
      new Uplink(std::make_unique<Impl>(outbox, clock, options, std::move(*broker))));
}

Uplink::Uplink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Uplink::~Uplink() = default;
void Uplink::SetCommandHandler(CommandHandler handler) {
  impl_->SetCommandHandler(std::move(handler));
}
Status Uplink::Start() { return impl_->Start(); }
void Uplink::Stop() { impl_->Stop(); }
UplinkStats Uplink::Stats() const { return impl_->Stats(); }
void Uplink::Nudge() { impl_->Nudge(); }

}  // namespace waybill::sync
