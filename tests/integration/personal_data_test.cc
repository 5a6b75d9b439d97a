// Personal data end to end, all real: waybilld as a process, Mosquitto, waybill-bridge and
// waybill-receiver. A proof of delivery with a photo goes in through the kiosk API; on the unit
// neither the outbox files nor the photo folder hold the recipient's name, the signature or the
// photo's bytes; no log of waybilld, the bridge or the receiver names the recipient (not even for
// refused proofs); and the backend gets the proof with the name intact.
#include <gtest/gtest.h>
#include <mqtt/async_client.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>

#include "support/bridge_processes.h"
#include "support/waybilld_process.h"
#include "unit/bridge_test_util.h"
#include "unit/outbox_test_util.h"

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kName = "Zdenka Quist-Marlowe";
constexpr const char* kDevice = "pii-truck";

// Words of the name, each of which must appear nowhere it should not.
const std::vector<std::string> kNameParts = {kName, "Zdenka", "Quist-Marlowe"};

// A distinctive signature: 3 strokes of 40 points.
nlohmann::json Strokes() {
  nlohmann::json strokes = nlohmann::json::array();
  for (int s = 0; s < 3; ++s) {
    nlohmann::json stroke = nlohmann::json::array();
    for (int k = 0; k < 40; ++k) stroke.push_back({7919 - 13 * k + s, 1999 + 17 * k});
    strokes.push_back(stroke);
  }
  return strokes;
}

std::string Photo() {
  std::string jpeg = "\xFF\xD8\xFF\xE0";
  for (int i = 0; i < 64; ++i) jpeg += "parcel-photo-" + std::to_string(i * 7919) + ";";
  return jpeg;
}

// The proof body as the kiosk encodes it (the signature's bytes are what is looked for).
std::string ProofBody(const std::string& photo, const std::string& sha_hex) {
  sync::ProofOfDelivery p;
  p.stop_id = "s-1";
  p.order_id = "ORD-77";
  p.recipient_name = kName;
  p.signature_width = 760;
  p.signature_height = 300;
  for (const auto& stroke : Strokes()) {
    sync::SignatureStroke points;
    for (const auto& pt : stroke) points.push_back({pt[0].get<int32_t>(), pt[1].get<int32_t>()});
    p.signature.push_back(std::move(points));
  }
  std::array<uint8_t, 32> sha{};
  for (size_t i = 0; i < sha.size() && 2 * i + 1 < sha_hex.size(); ++i) {
    sha[i] = static_cast<uint8_t>(std::stoi(sha_hex.substr(2 * i, 2), nullptr, 16));
  }
  p.photo_sha256 = sha;
  p.photo_bytes = photo.size();
  p.photo_mime = "image/jpeg";
  auto body = sync::EncodeProof(p);
  EXPECT_TRUE(body.ok()) << body.status().ToString();
  return body.ok() ? *body : std::string();
}

// Which of `secrets` (or which 16-byte window of one) `file` holds; "" if none.
std::string Holds(const fs::path& file, const std::vector<std::string>& secrets) {
  std::string bytes = ReadWholeFile(file);
  for (const std::string& secret : secrets) {
    if (secret.size() <= 24) {
      if (bytes.find(secret) != std::string::npos) return file.string() + " holds " + secret;
      continue;
    }
    for (size_t at = 0; at + 16 <= secret.size(); at += 4) {
      if (bytes.find(secret.substr(at, 16)) != std::string::npos) {
        return file.string() + " holds bytes " + std::to_string(at) + "+16 of a secret";
      }
    }
  }
  return "";
}

// Every regular file under `dir` that holds one of `secrets`.
std::vector<std::string> Leaks(const fs::path& dir, const std::vector<std::string>& secrets) {
  std::vector<std::string> leaks;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    if (std::string why = Holds(e.path(), secrets); !why.empty()) leaks.push_back(why);
  }
  return leaks;
}

// The request bodies the receiver (the backend) stored for `path`.
std::vector<std::string> ReceivedBodies(const fs::path& db, const std::string& path) {
  std::vector<std::string> bodies;
  sqlite3* c = nullptr;
  if (sqlite3_open_v2(db.c_str(), &c, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(c, 2000);
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(c, "SELECT body FROM requests WHERE path = ?1", -1, &s, nullptr) ==
        SQLITE_OK) {
      sqlite3_bind_text(s, 1, path.c_str(), -1, SQLITE_TRANSIENT);
      while (sqlite3_step(s) == SQLITE_ROW) {
        bodies.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
      }
    }
    sqlite3_finalize(s);
  }
  sqlite3_close(c);
  return bodies;
}

// Runs a command; its stdout, and its exit status in *status.
std::string Shell(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

TEST(PersonalDataTest, NoNameAtRestOrInLogsAndTheBackendGetsTheProofWhole) {
  TempDir dir;
  Mosquitto broker(dir.File("broker"), MosquittoOptions{});
  std::string error;
  ASSERT_TRUE(broker.Start(&error)) << error;
  ReceiverProcess receiver(WAYBILL_RECEIVER_PATH, dir.File("receiver"));
  ASSERT_GT(receiver.Start({}, &error), 0) << error;

  // The truck first records without a bridge: its proofs wait in the outbox.
  WaybilldProcess daemon(dir.File("waybilld"));
  daemon.set_device_id(kDevice);
  daemon.set_extra_config("[uplink]\nbroker = \"" + broker.uri() +
                          "\"\nbatch_wait_ms = 200\nack_timeout_ms = 3000\n");
  int port = daemon.Start(20, &error);
  ASSERT_GT(port, 0) << error;
  const fs::path data = daemon.data_dir();
  const fs::path key_file = data / "data.key";
  struct stat st {};
  ASSERT_EQ(::stat(key_file.c_str(), &st), 0) << "the data key is made at the first start";
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  httplib::Client kiosk("127.0.0.1", port);
  const std::string photo = Photo();
  auto stored_photo = kiosk.Post("/v1/photos", photo, "image/jpeg");
  ASSERT_TRUE(stored_photo);
  ASSERT_EQ(stored_photo->status, 201) << stored_photo->body;
  std::string sha = nlohmann::json::parse(stored_photo->body)["sha256"];

  nlohmann::json proof = {{"stop_id", "s-1"},
                          {"order_id", "ORD-77"},
                          {"recipient_name", kName},
                          {"signature", {{"width", 760}, {"height", 300}, {"strokes", Strokes()}}},
                          {"photo_sha256", sha}};
  auto res = kiosk.Post("/v1/proofs", proof.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  const uint64_t proof_seq = nlohmann::json::parse(res->body)["seq"].get<uint64_t>();
  nlohmann::json delivery = {{"stop_id", "s-1"},
                             {"order_id", "ORD-77"},
                             {"kind", "delivered"},
                             {"note", std::string("handed to ") + kName + " at the back door"}};
  res = kiosk.Post("/v1/deliveries", delivery.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;

  // Refused on the unit: a bad field, a name too long, a photo that is not there.
  for (nlohmann::json bad :
       {nlohmann::json{{"order_id", "ORD-78"}, {"recipient_name", kName}, {"signature", 7}},
        nlohmann::json{{"order_id", "ORD-78"},
                       {"recipient_name", std::string(kName) + std::string(150, '!')},
                       {"signature", {{"strokes", Strokes()}}}},
        nlohmann::json{{"order_id", "ORD-78"},
                       {"recipient_name", kName},
                       {"photo_sha256", std::string(64, 'a')}}}) {
    auto refused = kiosk.Post("/v1/proofs", bad.dump(), "application/json");
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 400) << refused->body;
  }

  // A name typed into a field whose refusal quotes the input back.
  auto echoed =
      kiosk.Post("/v1/deliveries", nlohmann::json{{"order_id", "ORD-78"}, {"kind", kName}}.dump(),
                 "application/json");
  ASSERT_TRUE(echoed);
  EXPECT_EQ(echoed->status, 400);
  EXPECT_NE(echoed->body.find(kName), std::string::npos) << "the kiosk sees its own input";

  const std::vector<std::string> secrets = [&] {
    std::vector<std::string> s = kNameParts;
    s.push_back(ProofBody(photo, sha));
    s.push_back(photo);
    return s;
  }();
  ASSERT_TRUE(daemon.WaitForStatus(
      [](const nlohmann::json& s) { return s["outbox"]["proofs"].get<int>() == 1; }, 5000));
  EXPECT_EQ(Leaks(data, secrets), std::vector<std::string>{}) << "while the proof waits";
  EXPECT_TRUE(fs::exists(data / "photos" / sha)) << "named by the photo's sha256";

  // waybillctl shows the waiting proof as sealed, and opens it only with the key.
  int status = -1;
  std::string sealed_view =
      Shell(std::string(WAYBILLCTL_PATH) + " outbox export --class pod --db " +
                (data / "outbox.db").string(),
            &status);
  EXPECT_EQ(status, 0);
  nlohmann::json line = nlohmann::json::parse(sealed_view.substr(0, sealed_view.find('\n')));
  EXPECT_TRUE(line.contains("sealed")) << sealed_view;
  EXPECT_FALSE(line.contains("body_b64")) << sealed_view;
  std::string opened_view =
      Shell(std::string(WAYBILLCTL_PATH) + " outbox export --class pod --db " +
                (data / "outbox.db").string() + " --data-key " + key_file.string(),
            &status);
  EXPECT_EQ(status, 0);
  line = nlohmann::json::parse(opened_view.substr(0, opened_view.find('\n')));
  ASSERT_TRUE(line.contains("body_b64")) << opened_view;

  // Now the bridge: the proof leaves, reaches the backend, is acked and deleted on the unit.
  BridgeOptions o;
  o.broker_uri = broker.uri();
  o.receiver_url = "http://127.0.0.1:" + std::to_string(receiver.port());
  o.extra_bridge = "min_event_time_ms = 1000000000000\n";  // the drive was recorded in 2010
  BridgeProcess bridge(dir.File("bridge"), o);
  ASSERT_TRUE(bridge.Start(&error)) << error;

  // A proof the bridge refuses (no stop or order) from another truck, carrying the name.
  {
    mqtt::async_client raw(broker.uri(), "pii-raw", mqtt::create_options(MQTTVERSION_5), nullptr);
    mqtt::connect_options co;
    co.set_mqtt_version(MQTTVERSION_5);
    raw.connect(co)->wait();
    std::string bad_body = "\x1a" + std::string(1, static_cast<char>(std::strlen(kName))) + kName;
    sync::StoredEvent bad{5, sync::EventClass::kProofOfDelivery, NowMs(), hal::TimeSource::kGnss,
                          bad_body};
    raw.publish(mqtt::make_message("fleet/other-truck/up", BatchOf("other-truck", {bad}), 1, false))
        ->wait();
    raw.disconnect()->wait();
  }
  ASSERT_TRUE(WaitFor(
      [&] { return bridge.Metric("waybill_bridge_rejected_total{reason=\"proof_fields\"}") == 1; },
      15'000))
      << bridge.log();

  ASSERT_TRUE(WaitFor(
      [&] {
        auto seqs = AppliedSeqs(receiver, "/v1/proofs", kDevice);
        return std::find(seqs.begin(), seqs.end(), proof_seq) != seqs.end();
      },
      30'000))
      << bridge.log();
  bool whole = false;
  for (const std::string& body : ReceivedBodies(receiver.db_path(), "/v1/proofs")) {
    nlohmann::json j = nlohmann::json::parse(body);
    for (const auto& e : j["events"]) {
      if (e["seq"] == proof_seq && e["proof"]["recipient_name"] == kName &&
          e["proof"]["signature"]["strokes"].size() == 3) {
        whole = true;
      }
    }
  }
  EXPECT_TRUE(whole) << "the backend gets the name and the signature as recorded";

  ASSERT_TRUE(daemon.WaitForStatus(
      [](const nlohmann::json& s) {
        return s["outbox"]["proofs"].get<int>() == 0 && s["outbox"]["deliveries"].get<int>() == 0;
      },
      20'000))
      << "acked proofs are deleted on the unit";
  EXPECT_EQ(daemon.Status()["outbox"]["unopenable"], 0);
  ASSERT_TRUE(daemon.Stop(SIGTERM).has_value());
  EXPECT_EQ(Leaks(data, secrets), std::vector<std::string>{}) << "after the ack";

  // No log names the recipient: waybilld's, the bridge's (with its refusal), the receiver's.
  EXPECT_NE(bridge.log().find("proof_fields"), std::string::npos) << "the refusal was logged";
  EXPECT_NE(daemon.log().find("rejected POST /v1/proofs"), std::string::npos)
      << "the kiosk's refusals were logged";
  bridge.Stop(SIGTERM);
  receiver.Stop(SIGTERM);
  for (const auto& [what, log] :
       std::vector<std::pair<std::string, std::string>>{{"waybilld", daemon.log()},
                                                        {"bridge", bridge.log()},
                                                        {"receiver", receiver.log()},
                                                        {"mosquitto", broker.log()}}) {
    for (const std::string& part : kNameParts) {
      EXPECT_EQ(log.find(part), std::string::npos) << what << "'s log names the recipient:\n"
                                                   << log;
    }
  }
}

}  // namespace
}  // namespace waybill::testing
