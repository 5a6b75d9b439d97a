// waybill-bridge end to end, all real: Mosquitto on a loopback port, the bridge as a process,
// waybill-receiver as the backend, devices as uplink_driver processes (an outbox and the real
// uplink) or waybilld itself.
#include <gtest/gtest.h>
#include <mqtt/async_client.h>

#include <algorithm>
#include <random>
#include <set>

#include "support/bridge_processes.h"
#include "support/raw_publisher.h"
#include "support/test_pki.h"
#include "support/waybilld_process.h"
#include "unit/bridge_test_util.h"
#include "unit/outbox_test_util.h"

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;

// A device: an outbox of `fixes` fixes and `deliveries` deliveries, drained by the real uplink.
class Device {
 public:
  Device(fs::path dir, std::string id) : dir_(std::move(dir)), id_(std::move(id)) {
    fs::create_directories(dir_);
  }
  bool Start(const std::string& broker, long fixes, long deliveries, int ack_timeout_ms = 3000) {
    fixes_ = fixes;
    deliveries_ = deliveries;
    return process_.Spawn(
        {UPLINK_DRIVER, "--outbox", (dir_ / "outbox.db").string(), "--broker", broker, "--device",
         id_, "--fixes", std::to_string(fixes), "--deliveries", std::to_string(deliveries),
         "--batch", "200", "--ack-timeout-ms", std::to_string(ack_timeout_ms),
         "--exit-when-drained"},
        dir_ / "driver.log");
  }
  // Waits until the driver drained its outbox (every event acked) and exited 0.
  bool WaitDrained(int timeout_ms) {
    std::optional<int> status;
    WaitFor([&] { return (status = process_.Poll()).has_value(); }, timeout_ms);
    return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
  }
  const std::string& id() const { return id_; }
  long events() const { return fixes_ + deliveries_; }
  long deliveries() const { return deliveries_; }
  std::string log() const { return ReadWholeFile(dir_ / "driver.log"); }

 private:
  fs::path dir_;
  std::string id_;
  long fixes_ = 0;
  long deliveries_ = 0;
  ChildProcess process_;
};

class BridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<Mosquitto>(dir_.File("broker"), MosquittoOptions{});
    std::string error;
    ASSERT_TRUE(broker_->Start(&error)) << error;
    receiver_ = std::make_unique<ReceiverProcess>(WAYBILL_RECEIVER_PATH, dir_.File("receiver"));
  }

  BridgeOptions Options(const std::string& client_id = "bridge-test") {
    BridgeOptions o;
    o.broker_uri = broker_->uri();
    o.receiver_url = ReceiverUrl();
    o.client_id = client_id;
    return o;
  }

  std::unique_ptr<BridgeProcess> StartBridge(BridgeOptions options) {
    auto bridge = std::make_unique<BridgeProcess>(dir_.File(options.client_id), options);
    std::string error;
    EXPECT_TRUE(bridge->Start(&error)) << error;
    return bridge;
  }

  std::vector<std::unique_ptr<Device>> StartDevices(int n, long fixes, long deliveries,
                                                    int ack_timeout_ms = 3000) {
    std::vector<std::unique_ptr<Device>> devices;
    for (int i = 1; i <= n; ++i) {
      std::string id = "truck-" + std::to_string(i);
      devices.push_back(std::make_unique<Device>(dir_.File(id), id));
      EXPECT_TRUE(devices.back()->Start(broker_->uri(), fixes, deliveries, ack_timeout_ms));
    }
    return devices;
  }

  // Starts the receiver with `flags`; false (and a test failure) if it does not listen.
  bool StartReceiver(const std::vector<std::string>& flags = {}) {
    std::string error;
    bool ok = receiver_->Start(flags, &error) > 0;
    EXPECT_TRUE(ok) << error;
    return ok;
  }
  std::string ReceiverUrl() const {
    return "http://127.0.0.1:" + std::to_string(receiver_->port());
  }
  std::vector<uint64_t> Seqs(const std::string& path, const std::string& device) const {
    return AppliedSeqs(*receiver_, path, device);
  }

  int64_t Applied() {
    json stats = receiver_->Stats();
    return stats.is_object() ? stats.value("events_applied", int64_t{-1}) : -1;
  }

  // Every event of every device reached the backend once: positions and deliveries together
  // hold exactly seqs 1..events of each device.
  void ExpectExactlyOnce(const std::vector<std::unique_ptr<Device>>& devices) {
    for (const auto& d : devices) {
      std::vector<uint64_t> positions = Seqs("/v1/positions", d->id());
      std::vector<uint64_t> deliveries = Seqs("/v1/deliveries", d->id());
      EXPECT_EQ(deliveries.size(), static_cast<size_t>(d->deliveries())) << d->id();
      std::vector<uint64_t> all = positions;
      all.insert(all.end(), deliveries.begin(), deliveries.end());
      std::sort(all.begin(), all.end());
      ASSERT_EQ(all.size(), static_cast<size_t>(d->events())) << d->id();
      for (size_t i = 0; i < all.size(); ++i) {
        ASSERT_EQ(all[i], i + 1) << d->id() << ": missing or repeated seq near " << i + 1;
      }
    }
    json stats = receiver_->Stats();
    EXPECT_EQ(stats["event_duplicates"], 0) << "an event applied twice: " << stats.dump();
  }

  TempDir dir_;
  std::unique_ptr<Mosquitto> broker_;
  std::unique_ptr<ReceiverProcess> receiver_;
};

TEST_F(BridgeTest, EveryEventArrivesOnceAndInTheInboxsOrderPerDeviceAndRoute) {
  ASSERT_TRUE(StartReceiver());
  auto bridge = StartBridge(Options());
  auto devices = StartDevices(3, 1500, 30);
  for (auto& d : devices) ASSERT_TRUE(d->WaitDrained(60'000)) << d->log();
  ASSERT_TRUE(WaitFor([&] { return Applied() == 3 * 1530; }, 30'000))
      << receiver_->Stats().dump() << bridge->log();
  ExpectExactlyOnce(devices);
  for (const auto& d : devices) {
    EXPECT_EQ(Seqs("/v1/positions", d->id()), bridge->InboxOrder(d->id(), 0));
    std::vector<uint64_t> deliveries = Seqs("/v1/deliveries", d->id());
    EXPECT_EQ(deliveries, bridge->InboxOrder(d->id(), 1));
    EXPECT_TRUE(std::is_sorted(deliveries.begin(), deliveries.end())) << d->id();
  }
  EXPECT_EQ(bridge->Metric("waybill_bridge_events_accepted_total"), 3 * 1530);
  EXPECT_EQ(bridge->Metric("waybill_bridge_inbox_pending{route=\"positions\"}"), 0);
  EXPECT_EQ(bridge->Metric("waybill_bridge_broker_connected"), 1);
  // SIGTERM: a clean exit.
  std::optional<int> status = bridge->Stop(SIGTERM);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << bridge->log();
}

TEST_F(BridgeTest, NothingIsLostWhenTheBridgeIsKilledUnderLoad) {
  ASSERT_TRUE(StartReceiver());
  auto bridge = StartBridge(Options());
  constexpr int kDevices = 6;
  constexpr long kFixes = 6000, kDeliveries = 60;
  auto devices = StartDevices(kDevices, kFixes, kDeliveries, /*ack_timeout_ms=*/2000);
  std::mt19937 rng(20261124);
  // SIGKILL at random moments while events flow, ten times at least (bounded: 30 kills).
  int kills_mid_drain = 0;
  for (int kills = 0; kills < 30 && kills_mid_drain < 10; ++kills) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
    int64_t applied = Applied();
    if (applied >= kDevices * (kFixes + kDeliveries)) break;
    ++kills_mid_drain;
    std::fprintf(stderr, "kill %d: %lld applied\n", kills, static_cast<long long>(applied));
    bridge->Stop(SIGKILL);
    std::string error;
    ASSERT_TRUE(bridge->Start(&error)) << "restart " << kills << ": " << error;
  }
  EXPECT_GE(kills_mid_drain, 10) << "the kills must fall while events flow";
  for (auto& d : devices) ASSERT_TRUE(d->WaitDrained(120'000)) << d->log();
  ASSERT_TRUE(WaitFor([&] { return Applied() == kDevices * (kFixes + kDeliveries); }, 60'000))
      << receiver_->Stats().dump() << bridge->log();
  ExpectExactlyOnce(devices);
}

TEST_F(BridgeTest, ABackendThatFailsAndHangsLosesNothingAndAppliesNothingTwice) {
  ASSERT_TRUE(StartReceiver({"--fail-rate", "0.3", "--fail-after-apply-rate", "0.05", "--hang-rate",
                             "0.03", "--hang-ms", "2500", "--seed", "7"}));
  BridgeOptions o = Options();
  o.route_extra = "batch_size = 100\n";
  auto bridge = StartBridge(o);
  auto devices = StartDevices(3, 1500, 30);
  for (auto& d : devices) ASSERT_TRUE(d->WaitDrained(60'000)) << d->log();
  ASSERT_TRUE(WaitFor([&] { return Applied() == 3 * 1530; }, 90'000))
      << receiver_->Stats().dump() << bridge->log();
  ExpectExactlyOnce(devices);
  json faults = receiver_->Stats()["faults"];
  EXPECT_GT(faults["500"].get<int>(), 0) << faults.dump();
  EXPECT_GT(bridge->Metric("waybill_bridge_retries_total{route=\"positions\"}"), 0);
  EXPECT_GT(receiver_->Stats()["duplicate_requests"].get<int>(), 0)
      << "answers lost after applying were retried under the same key";
}

TEST_F(BridgeTest, TwoBridgesOnOneSharedSubscriptionSplitTheLoad) {
  ASSERT_TRUE(StartReceiver());
  auto a = StartBridge(Options("bridge-a"));
  auto b = StartBridge(Options("bridge-b"));
  auto devices = StartDevices(6, 1000, 20);
  for (auto& d : devices) ASSERT_TRUE(d->WaitDrained(60'000)) << d->log();
  ASSERT_TRUE(WaitFor([&] { return Applied() == 6 * 1020; }, 30'000)) << receiver_->Stats().dump();
  ExpectExactlyOnce(devices);
  double got_a = a->Metric("waybill_bridge_messages_received_total");
  double got_b = b->Metric("waybill_bridge_messages_received_total");
  EXPECT_GT(got_a, 0);
  EXPECT_GT(got_b, 0);
  EXPECT_EQ(a->Metric("waybill_bridge_events_accepted_total") +
                b->Metric("waybill_bridge_events_accepted_total"),
            6 * 1020);
}

TEST_F(BridgeTest, RefusedInputIsDeadLetteredWithItsReasonAndTheRestGoesOn) {
  ASSERT_TRUE(StartReceiver());
  auto bridge = StartBridge(Options());
  RawPublisher truck(broker_->uri());
  int64_t now = NowMs();
  truck.Publish("fleet/truck-1/up", "\x0a\x05garbage and more");
  truck.Publish("fleet/truck-1/up", std::string(300 * 1024, 'x'));
  truck.Publish("fleet/truck-1/up", BatchOf("truck-2", {FixAt(1, now)}));  // forged
  sync::StoredEvent no_recipient = ProofAt(4, now);
  no_recipient.body = std::string("\x0a\x06stop-1", 8);
  truck.Publish("fleet/truck-1/up",
                BatchOf("truck-1", {FixAt(1, now), FixAt(2, now + 9LL * 86'400'000),
                                    DeliveryAt(3, now), no_recipient}));
  ASSERT_TRUE(WaitFor([&] { return Applied() == 2; }, 15'000)) << receiver_->Stats().dump();
  EXPECT_EQ(Seqs("/v1/positions", "truck-1"), std::vector<uint64_t>{1});
  EXPECT_EQ(Seqs("/v1/deliveries", "truck-1"), std::vector<uint64_t>{3});
  EXPECT_TRUE(Seqs("/v1/positions", "truck-2").empty()) << "forged: not forwarded";
  // The good batch is acked whole: its refused events are held in the dead letters.
  ASSERT_TRUE(WaitFor([&] { return truck.acked().size() == 4; }, 5000));
  EXPECT_EQ(truck.acked(), (std::set<uint64_t>{1, 2, 3, 4}));
  for (const char* reason : {"malformed", "oversized", "identity", "time", "proof_fields"}) {
    EXPECT_EQ(
        bridge->Metric(std::string("waybill_bridge_rejected_total{reason=\"") + reason + "\"}"), 1)
        << reason;
  }
  EXPECT_EQ(bridge->Metric("waybill_bridge_dead_letters"), 5);
  // The operator's view.
  std::string out = dir_.File("dlq.json");
  std::string cmd = std::string(WAYBILLCTL_PATH) + " bridge dlq list --json --config " +
                    bridge->config_path().string() + " > " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  json letters = json::parse(ReadWholeFile(out));
  std::set<std::string> reasons;
  for (const json& l : letters) reasons.insert(l["reason"].get<std::string>());
  EXPECT_EQ(reasons,
            (std::set<std::string>{"malformed", "oversized", "identity", "time", "proof_fields"}));
  EXPECT_TRUE(bridge->running()) << "no crash";
}

TEST_F(BridgeTest, ARefusedRequestIsDeadLetteredAndReplayedByTheOperator) {
  ASSERT_TRUE(StartReceiver());
  BridgeOptions o = Options();
  o.receiver_url = ReceiverUrl() + "/not-an-api";  // the receiver answers 404 there
  auto bridge = StartBridge(o);
  RawPublisher truck(broker_->uri());
  truck.Publish("fleet/truck-1/up", BatchOf("truck-1", {DeliveryAt(1, NowMs())}));
  ASSERT_TRUE(WaitFor(
      [&] {
        return bridge->Metric("waybill_bridge_dead_lettered_total{route=\"deliveries\"}") == 1;
      },
      15'000))
      << bridge->log();
  std::string out = dir_.File("show.json");
  std::string ctl = std::string(WAYBILLCTL_PATH) + " bridge ";
  std::string target = " --db " + bridge->inbox_path().string();
  ASSERT_EQ(std::system((ctl + "dlq list --json" + target + " > " + out).c_str()), 0);
  json letters = json::parse(ReadWholeFile(out));
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0]["kind"], "forward");
  EXPECT_EQ(letters[0]["http_status"], 404);
  int64_t id = letters[0]["id"].get<int64_t>();
  ASSERT_EQ(
      std::system(
          (ctl + "dlq show " + std::to_string(id) + " --json" + target + " > " + out).c_str()),
      0);
  json letter = json::parse(ReadWholeFile(out));
  EXPECT_NE(letter["request_body"].get<std::string>().find("truck-1:1"), std::string::npos);

  // The operator fixes the route, restarts the bridge and replays the letter.
  ASSERT_TRUE(bridge->Stop(SIGTERM));
  BridgeOptions fixed = Options();
  auto again = std::make_unique<BridgeProcess>(dir_.File("bridge-test"), fixed);
  std::string error;
  ASSERT_TRUE(again->Start(&error)) << error;
  ASSERT_EQ(std::system((ctl + "dlq replay " + std::to_string(id) + target).c_str()), 0);
  ASSERT_TRUE(WaitFor([&] { return Applied() == 1; }, 10'000)) << again->log();
  EXPECT_EQ(Seqs("/v1/deliveries", "truck-1"), std::vector<uint64_t>{1});
  EXPECT_NE(std::system((ctl + "dlq show " + std::to_string(id) + target + " 2>/dev/null").c_str()),
            0)
      << "the replayed letter is gone";
}

TEST_F(BridgeTest, ABacklogWaitsInTheInboxAcrossARestartUntilTheBackendIsBack) {
  // The backend is down: events are stored and acked, and wait.
  BridgeOptions o = Options();
  o.receiver_url = "http://127.0.0.1:" + std::to_string(FreeLoopbackPort());
  auto bridge = StartBridge(o);
  auto devices = StartDevices(2, 500, 10);
  for (auto& d : devices) ASSERT_TRUE(d->WaitDrained(60'000)) << d->log();
  EXPECT_EQ(bridge->Metric("waybill_bridge_inbox_pending{route=\"positions\"}"), 2 * 500);
  std::optional<int> status = bridge->Stop(SIGTERM);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << bridge->log();
  // Back with a backend: the restarted bridge forwards the backlog.
  ASSERT_TRUE(StartReceiver());
  auto again = StartBridge(Options());
  ASSERT_TRUE(WaitFor([&] { return Applied() == 2 * 510; }, 30'000)) << again->log();
  ExpectExactlyOnce(devices);
}

TEST_F(BridgeTest, TheBackendsCommandsReachWaybilldAndItsResultIsShown) {
  ASSERT_TRUE(StartReceiver());
  BridgeOptions o = Options();
  o.extra_bridge = "min_event_time_ms = 1000000000000\n";  // the drive was recorded in 2009
  auto bridge = StartBridge(o);
  WaybilldProcess daemon(dir_.File("waybilld"));
  daemon.set_device_id("truck-1");
  daemon.set_extra_config("[uplink]\nbroker = \"" + broker_->uri() +
                          "\"\nbatch_wait_ms = 200\nack_timeout_ms = 5000\n");
  std::string error;
  int port = daemon.Start(20, &error);
  ASSERT_GT(port, 0) << error;
  ASSERT_TRUE(daemon.WaitForStatus(
      [](const json& st) { return st["uplink"].value("connected", false); }, 15000));

  httplib::Client api("127.0.0.1", bridge->api_port());
  json manifest = {{"command_id", "cmd-7"},
                   {"manifest",
                    {{"manifest_id", "route-7"},
                     {"date", "2026-11-24"},
                     {"stops", {{{"stop_id", "s1"}, {"order_id", "ORD-1"}, {"sequence", 1}}}}}}};
  auto unauthorized = api.Post("/v1/devices/truck-1/commands", manifest.dump(), "application/json");
  ASSERT_TRUE(unauthorized);
  EXPECT_EQ(unauthorized->status, 401);
  httplib::Headers auth = {{"Authorization", "Bearer " + bridge->token()}};
  json bad = {{"manifest", {{"date", "2026-11-24"}, {"stops", json::array()}}}};
  auto refused = api.Post("/v1/devices/truck-1/commands", auth, bad.dump(), "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  EXPECT_NE(refused->body.find("manifest.manifest_id"), std::string::npos) << refused->body;

  auto accepted =
      api.Post("/v1/devices/truck-1/commands", auth, manifest.dump(), "application/json");
  ASSERT_TRUE(accepted);
  ASSERT_EQ(accepted->status, 202) << accepted->body;
  json state;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto res = api.Get("/v1/devices/truck-1/commands/cmd-7", auth);
        if (!res || res->status != 200) return false;
        state = json::parse(res->body);
        return state["state"] == "ok";
      },
      15'000))
      << state.dump() << bridge->log();
  httplib::Client kiosk("127.0.0.1", port);
  auto stored = kiosk.Get("/v1/manifest");
  ASSERT_TRUE(stored);
  ASSERT_EQ(stored->status, 200);
  EXPECT_EQ(json::parse(stored->body)["manifest_id"], "route-7");

  // And the truck's own events flow through the bridge: a delivery recorded on the kiosk
  // reaches the backend.
  auto res = kiosk.Post("/v1/deliveries", R"({"order_id":"ORD-1","kind":"delivered"})",
                        "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  uint64_t seq = json::parse(res->body)["seq"].get<uint64_t>();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto seqs = Seqs("/v1/deliveries", "truck-1");
        return std::find(seqs.begin(), seqs.end(), seq) != seqs.end();
      },
      20'000))
      << bridge->log();
  EXPECT_GT(Seqs("/v1/positions", "truck-1").size(), 0u) << "the replayed drive's fixes too";
  EXPECT_EQ(bridge->Metric("waybill_bridge_rejected_total{reason=\"time\"}"), 0);
}

}  // namespace
}  // namespace waybill::testing
