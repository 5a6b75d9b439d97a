// waybilld end to end with its uplink: a real Mosquitto with TLS, client certificates and the
// fleet ACL, the test acker standing in for the bridge, real SQLite, real HTTP.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include "support/acker.h"
#include "support/mosquitto.h"
#include "support/test_pki.h"
#include "support/waybilld_process.h"
#include "waybill/sync/wire.h"

namespace waybill::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

class WaybilldMqttTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("waybilld-mqtt-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    const TestPki& pki = GetTestPki();
    MosquittoOptions mo;
    mo.tls = true;
    broker_ = std::make_unique<Mosquitto>(dir_ / "broker", mo);
    std::string error;
    ASSERT_TRUE(broker_->Start(&error)) << error;

    AckerOptions ao;
    ao.broker_uri = broker_->uri();
    ao.ca_file = pki.ca;
    ao.cert_file = pki.bridge.cert;
    ao.key_file = pki.bridge.key;
    acker_ = std::make_unique<TestAcker>(ao);
    ASSERT_TRUE(acker_->Start(&error)) << error;

    daemon_ = std::make_unique<WaybilldProcess>(dir_ / "truck");
    daemon_->set_device_id("truck-1");
    CertPair device = pki.device("truck-1");
    daemon_->set_extra_config("[uplink]\nbroker = \"" + broker_->uri() + "\"\nca_file = \"" +
                              pki.ca.string() + "\"\ncert_file = \"" + device.cert.string() +
                              "\"\nkey_file = \"" + device.key.string() +
                              "\"\nbatch_wait_ms = 200\nack_timeout_ms = 5000\n");
  }
  void TearDown() override {
    daemon_.reset();
    acker_.reset();
    broker_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  fs::path dir_;
  std::unique_ptr<Mosquitto> broker_;
  std::unique_ptr<TestAcker> acker_;
  std::unique_ptr<WaybilldProcess> daemon_;
};

TEST_F(WaybilldMqttTest, DeliveriesReachTheAckerAndLeaveTheOutboxOnlyOnceAcked) {
  std::string error;
  int port = daemon_->Start(20, &error);
  ASSERT_GT(port, 0) << error;
  ASSERT_TRUE(daemon_->WaitForStatus(
      [](const json& st) { return st["uplink"].value("connected", false); }, 15000))
      << daemon_->log();

  httplib::Client client("127.0.0.1", port);
  std::set<uint64_t> deliveries;
  for (int i = 0; i < 5; ++i) {
    json body = {{"order_id", "ORD-" + std::to_string(i)}, {"kind", "delivered"}};
    auto res = client.Post("/v1/deliveries", body.dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    deliveries.insert(json::parse(res->body)["seq"].get<uint64_t>());
  }
  // Acked deliveries are deleted from the outbox: its delivery count drops to zero.
  ASSERT_TRUE(daemon_->WaitForStatus(
      [](const json& st) { return st["outbox"]["deliveries"] == 0 && st["uplink"]["events_acked"] > 0; },
      15000))
      << daemon_->Status().dump(2) << "\n" << daemon_->log();
  std::set<uint64_t> seen;
  bool fixes_seen = false;
  for (const AckerRecord& r : acker_->Records()) {
    EXPECT_EQ(r.device, "truck-1");
    if (r.cls == sync::EventClass::kDelivery) seen.insert(r.seq);
    fixes_seen |= r.cls == sync::EventClass::kFix;
  }
  for (uint64_t seq : deliveries) EXPECT_TRUE(seen.count(seq)) << "delivery " << seq;
  EXPECT_TRUE(fixes_seen) << "the replayed drive is sent too";
  auto statuses = acker_->Statuses();
  ASSERT_TRUE(statuses.count("truck-1"));
  EXPECT_NE(statuses["truck-1"].find("online"), std::string::npos) << statuses["truck-1"];
}

TEST_F(WaybilldMqttTest, NothingIsDeletedWithoutTheBridgesAck) {
  acker_->SetDropAcks(true);
  std::string error;
  int port = daemon_->Start(20, &error);
  ASSERT_GT(port, 0) << error;
  httplib::Client client("127.0.0.1", port);
  auto res = client.Post("/v1/deliveries", R"({"order_id":"ORD-X","kind":"arrived"})",
                         "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201);
  uint64_t seq = json::parse(res->body)["seq"].get<uint64_t>();
  // The broker has it (PUBACK) and the acker saw it, yet the outbox keeps it.
  bool seen = false;
  for (int i = 0; i < 200 && !seen; ++i) {
    for (const AckerRecord& r : acker_->Records()) seen |= r.seq == seq;
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(seen) << daemon_->log();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(daemon_->Status()["outbox"]["deliveries"], 1);

  // Once the bridge acks (here: after the resend timeout), it goes.
  acker_->SetDropAcks(false);
  EXPECT_TRUE(daemon_->WaitForStatus(
      [](const json& st) { return st["outbox"]["deliveries"] == 0; }, 20000))
      << daemon_->Status().dump(2);
}

TEST_F(WaybilldMqttTest, AManifestCommandReachesTheKiosk) {
  std::string error;
  int port = daemon_->Start(20, &error);
  ASSERT_GT(port, 0) << error;
  ASSERT_TRUE(daemon_->WaitForStatus(
      [](const json& st) { return st["uplink"].value("connected", false); }, 15000));
  sync::Command cmd{"cmd-42", sync::Manifest{"route-2026-11-24", "2026-11-24",
                                             {{"s1", "ORD-1", "Leopoldstr. 7, München", 0, 0, 1},
                                              {"s2", "ORD-2", "Sendlinger Str. 3", 0, 0, 2}}}};
  Result<std::string> payload = sync::EncodeCommand(cmd);
  ASSERT_TRUE(payload.ok());
  ASSERT_TRUE(acker_->Publish(sync::TopicCmd("truck-1"), *payload));

  httplib::Client client("127.0.0.1", port);
  bool stored = false;
  for (int i = 0; i < 200 && !stored; ++i) {
    auto res = client.Get("/v1/manifest");
    stored = res && res->status == 200;
    if (stored) {
      json m = json::parse(res->body);
      EXPECT_EQ(m["manifest_id"], "route-2026-11-24");
      EXPECT_EQ(m["stops"][1]["address"], "Sendlinger Str. 3");
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ASSERT_TRUE(stored) << daemon_->log();
  bool result_seen = false;
  for (int i = 0; i < 100 && !result_seen; ++i) {
    for (const sync::CommandResult& r : acker_->Results()) {
      if (r.command_id == "cmd-42") {
        result_seen = true;
        EXPECT_TRUE(r.ok) << r.message;
      }
    }
    if (!result_seen) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(result_seen);
}

}  // namespace
}  // namespace waybill::testing
