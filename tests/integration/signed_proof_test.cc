// Signed proofs of delivery end to end, all real: Mosquitto on a loopback port, waybill-bridge
// verifying proofs against a folder of device certificates, waybill-receiver as the backend, and
// waybilld signing with its provisioned key (the test PKI's truck-1 key and certificate).
//
// A proof recorded on the kiosk API arrives at the backend marked verified, with its signature;
// the backend can check that signature itself from the JSON alone. The same proof with another
// recipient name, published as truck-1, is dead-lettered bad_signature and never forwarded; an
// unsigned one is dead-lettered unsigned_proof; both are still acknowledged to the truck.
#include <gtest/gtest.h>
#include <mqtt/async_client.h>

#include <algorithm>
#include <set>

#include "support/bridge_processes.h"
#include "support/raw_publisher.h"
#include "support/test_pki.h"
#include "support/waybilld_process.h"
#include "unit/bridge_test_util.h"
#include "unit/outbox_test_util.h"
#include "waybill/sync/pki.h"
#include "waybill/sync/proof_signature.h"

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;

std::string Base64Decode(const std::string& text) {
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    size_t v = kAlphabet.find(c);
    if (v == std::string::npos) break;  // '=' padding ends it
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// The proof as the backend got it, back into the struct (the fields of the canonical bytes).
sync::ProofOfDelivery ProofFromJson(const json& j) {
  sync::ProofOfDelivery p;
  p.stop_id = j.value("stop_id", "");
  p.order_id = j.value("order_id", "");
  p.recipient_name = j.value("recipient_name", "");
  p.signature_width = j["signature"]["width"].get<uint32_t>();
  p.signature_height = j["signature"]["height"].get<uint32_t>();
  for (const json& stroke : j["signature"]["strokes"]) {
    sync::SignatureStroke s;
    for (const json& pt : stroke) s.push_back({pt[0].get<int32_t>(), pt[1].get<int32_t>()});
    p.signature.push_back(std::move(s));
  }
  if (j.contains("device_signature")) {
    p.device_signature = Base64Decode(j["device_signature"].get<std::string>());
  }
  return p;
}

// Every proof event the receiver applied, from the request bodies it stored.
std::vector<json> ReceivedProofs(const ReceiverProcess& receiver) {
  std::vector<json> out;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(receiver.db_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "SELECT body FROM requests WHERE path = '/v1/proofs'", -1, &s, nullptr);
    while (s != nullptr && sqlite3_step(s) == SQLITE_ROW) {
      json body =
          json::parse(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), nullptr, false);
      if (body.is_object()) {
        for (const json& e : body["events"]) out.push_back(e);
      }
    }
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return out;
}

class SignedProofTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<Mosquitto>(dir_.File("broker"), MosquittoOptions{});
    std::string error;
    ASSERT_TRUE(broker_->Start(&error)) << error;
    receiver_ = std::make_unique<ReceiverProcess>(WAYBILL_RECEIVER_PATH, dir_.File("receiver"));
    ASSERT_GT(receiver_->Start({}, &error), 0) << error;
  }

  TempDir dir_;
  std::unique_ptr<Mosquitto> broker_;
  std::unique_ptr<ReceiverProcess> receiver_;
};

TEST_F(SignedProofTest, OnlyProofsSignedByTheDevicesKeyReachTheBackend) {
  const TestPki& pki = GetTestPki();
  // The fleet registers truck-1's certificate with the bridge.
  fs::path certs = dir_.File("device-certs");
  fs::create_directories(certs);
  fs::copy_file(pki.device("truck-1").cert, certs / "truck-1.pem");

  BridgeOptions o;
  o.broker_uri = broker_->uri();
  o.receiver_url = "http://127.0.0.1:" + std::to_string(receiver_->port());
  o.extra_bridge =
      "min_event_time_ms = 1000000000000\n"  // the replayed drive is from 2009
      "[proofs]\ndevice_certs_dir = \"" +
      certs.string() + "\"\nca_file = \"" + pki.ca.string() + "\"\n";
  BridgeProcess bridge(dir_.File("bridge"), o);
  std::string error;
  ASSERT_TRUE(bridge.Start(&error)) << error;
  EXPECT_NE(bridge.log().find("proofs of delivery are verified"), std::string::npos)
      << bridge.log();

  WaybilldProcess daemon(dir_.File("waybilld"));
  daemon.set_device_id("truck-1");
  daemon.set_extra_config("[uplink]\nbroker = \"" + broker_->uri() +
                          "\"\nbatch_wait_ms = 200\nack_timeout_ms = 5000\n");
  // [device] key_file: the uplink is plain MQTT here, so [uplink] key_file is not set.
  daemon.set_device_config("key_file = \"" + pki.device("truck-1").key.string() + "\"\n");
  int port = daemon.Start(20, &error);
  ASSERT_GT(port, 0) << error;
  EXPECT_NE(daemon.log().find("proofs of delivery are signed"), std::string::npos) << daemon.log();

  httplib::Client kiosk("127.0.0.1", port);
  const std::string name = "Magdalena Huber-Sonnleitner";
  json proof = {{"stop_id", "stop-7"},
                {"order_id", "ORD-1001"},
                {"recipient_name", name},
                {"signature",
                 {{"width", 760},
                  {"height", 300},
                  {"strokes", {{{40, 200}, {80, 120}}, {{200, 150}, {-3, 7}}}}}}};
  auto res = kiosk.Post("/v1/proofs", proof.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  uint64_t seq = json::parse(res->body)["seq"].get<uint64_t>();

  json received;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const json& e : ReceivedProofs(*receiver_)) {
          if (e["device"] == "truck-1" && e["seq"] == seq) received = e;
        }
        return !received.is_null();
      },
      30'000))
      << bridge.log();
  const json& p = received["proof"];
  EXPECT_EQ(p["signature_verified"], true) << received.dump();
  ASSERT_TRUE(p.contains("device_signature")) << received.dump();
  EXPECT_EQ(p["recipient_name"], name);

  // The backend can keep the evidence and check it again: the JSON holds everything signed.
  sync::ProofOfDelivery rebuilt = ProofFromJson(p);
  auto cert = sync::CertificateKey::Load(pki.device("truck-1").cert.string());
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_TRUE(
      (*cert)
          ->VerifySha256(sync::CanonicalProofBytes("truck-1", rebuilt), rebuilt.device_signature)
          .ok());

  // The same signed proof with another recipient, and an unsigned proof, published as truck-1.
  RawPublisher forger(broker_->uri(), "forger");
  int64_t now = NowMs();
  sync::ProofOfDelivery tampered = rebuilt;
  tampered.recipient_name = "Somebody Else";
  sync::ProofOfDelivery unsigned_proof = rebuilt;
  unsigned_proof.device_signature.clear();
  const uint64_t kTamperedSeq = 900'001, kUnsignedSeq = 900'002;
  forger.Publish(BatchOf(
      "truck-1",
      {sync::StoredEvent{kTamperedSeq, sync::EventClass::kProofOfDelivery, now,
                         hal::TimeSource::kGnss, sync::EncodeProof(tampered).value()},
       sync::StoredEvent{kUnsignedSeq, sync::EventClass::kProofOfDelivery, now,
                         hal::TimeSource::kGnss, sync::EncodeProof(unsigned_proof).value()}}));
  ASSERT_TRUE(WaitFor(
      [&] {
        return bridge.Metric("waybill_bridge_rejected_total{reason=\"bad_signature\"}") == 1 &&
               bridge.Metric("waybill_bridge_rejected_total{reason=\"unsigned_proof\"}") == 1;
      },
      15'000))
      << bridge.log();
  // Refused, yet acknowledged: a bad proof does not hold up the truck's queue.
  EXPECT_TRUE(
      WaitFor([&] { return forger.Acked(kTamperedSeq) && forger.Acked(kUnsignedSeq); }, 10'000));
  EXPECT_EQ(bridge.Metric("waybill_bridge_rejected_total{reason=\"unknown_device\"}"), 0);

  // The operator's view: both dead-lettered with their reason and the cause.
  std::string out = dir_.File("dlq.json");
  std::string cmd = std::string(WAYBILLCTL_PATH) + " bridge dlq list --json --config " +
                    bridge.config_path().string() + " > " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::map<uint64_t, json> letters;
  for (const json& l : json::parse(ReadWholeFile(out))) {
    if (l.contains("seq")) letters[l["seq"].get<uint64_t>()] = l;
  }
  ASSERT_TRUE(letters.count(kTamperedSeq)) << ReadWholeFile(out);
  EXPECT_EQ(letters[kTamperedSeq]["reason"], "bad_signature");
  EXPECT_NE(letters[kTamperedSeq]["detail"].get<std::string>().find("truck-1.pem"),
            std::string::npos)
      << letters[kTamperedSeq].dump();
  ASSERT_TRUE(letters.count(kUnsignedSeq)) << ReadWholeFile(out);
  EXPECT_EQ(letters[kUnsignedSeq]["reason"], "unsigned_proof");

  // Nothing of them reached the backend, also after the forwarder had time for them.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  for (const json& e : ReceivedProofs(*receiver_)) {
    EXPECT_NE(e["seq"], kTamperedSeq);
    EXPECT_NE(e["seq"], kUnsignedSeq);
    EXPECT_NE(e["proof"]["recipient_name"], "Somebody Else");
  }
  // The recipient's name and the key stay out of the logs.
  daemon.Stop(SIGTERM);
  EXPECT_EQ(daemon.log().find(name), std::string::npos);
  EXPECT_EQ(daemon.log().find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(bridge.log().find("Somebody Else"), std::string::npos);
  EXPECT_TRUE(bridge.running()) << "no crash";
}

TEST_F(SignedProofTest, WaybilldRefusesToStartWithAKeyItCannotUse) {
  fs::path bad_key = dir_.File("broken.key");
  std::ofstream(bad_key)
      << "-----BEGIN EC PRIVATE KEY-----\nnot a key\n-----END EC PRIVATE KEY-----\n";
  WaybilldProcess daemon(dir_.File("waybilld"));
  daemon.set_device_id("truck-1");
  daemon.set_device_config("key_file = \"" + bad_key.string() + "\"\n");
  std::string error;
  EXPECT_EQ(daemon.Start(20, &error), -1);
  EXPECT_NE(error.find(bad_key.string()), std::string::npos) << error;
  EXPECT_NE(error.find("signs proofs of delivery"), std::string::npos) << error;
  EXPECT_EQ(error.find("not a key"), std::string::npos) << "never the key's bytes";
}

TEST_F(SignedProofTest, WithoutAKeyWaybilldSaysOnceThatProofsAreUnsigned) {
  WaybilldProcess daemon(dir_.File("waybilld"));
  std::string error;
  ASSERT_GT(daemon.Start(20, &error), 0) << error;
  std::string log = daemon.log();
  size_t at = log.find("proofs of delivery are recorded unsigned");
  EXPECT_NE(at, std::string::npos) << log;
  EXPECT_EQ(log.find("proofs of delivery are recorded unsigned", at + 1), std::string::npos);
}

}  // namespace
}  // namespace waybill::testing
