// Proof-of-delivery photos end to end, all real: Mosquitto with TLS, the receiver, the bridge with
// its HTTPS upload endpoint (mutual TLS, the fleet's test CA), and waybilld whose photo uploads go
// through a TCP proxy that cuts the link in the middle of the upload.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>

#include "support/bridge_processes.h"
#include "support/tcp_proxy.h"
#include "support/test_pki.h"
#include "support/waybilld_process.h"
#include "unit/outbox_test_util.h"
#include "waybill/bridge/upload_store.h"

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;

// A JPEG-headed photo of `n` bytes (the daemon checks the magic bytes, nothing more).
std::string JpegPhoto(size_t n, uint32_t seed) {
  std::string p = "\xFF\xD8\xFF\xE0";
  p.reserve(n);
  uint32_t x = seed;
  while (p.size() < n) {
    x = x * 1664525u + 1013904223u;
    p.push_back(static_cast<char>(x >> 24));
  }
  p.resize(n);
  return p;
}

// The bodies the receiver applied on `path` (from its database: the stored requests).
std::vector<std::string> ReceivedBodies(const fs::path& db_path, const std::string& path) {
  std::vector<std::string> bodies;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT body FROM requests WHERE path = ?1", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, path.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      bodies.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return bodies;
}

// Names in the device's photo folder that start with `sha` (whatever suffix the store uses).
int PhotoFilesOnDevice(const fs::path& dir, const std::string& sha) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename().string().rfind(sha, 0) == 0) ++n;
  }
  return n;
}

TEST(PhotoUpload, AnInterruptedUploadResumesFromTheBridgesOffsetAndReachesTheBackend) {
  TempDir dir;
  const TestPki& pki = GetTestPki();
  MosquittoOptions mo;
  mo.tls = true;
  Mosquitto broker(dir.File("broker"), mo);
  std::string error;
  ASSERT_TRUE(broker.Start(&error)) << error;
  ReceiverProcess receiver(WAYBILL_RECEIVER_PATH, dir.File("receiver"));
  ASSERT_GT(receiver.Start({}, &error), 0) << error;

  const int upload_port = FreeLoopbackPort();
  BridgeOptions bo;
  bo.broker_uri = broker.uri();
  bo.receiver_url = "http://127.0.0.1:" + std::to_string(receiver.port());
  bo.extra_bridge = "min_event_time_ms = 1000000000000\n";  // the replayed drive is from 2009
  bo.extra_mqtt = "ca_file = \"" + pki.ca.string() + "\"\ncert_file = \"" +
                  pki.bridge.cert.string() + "\"\nkey_file = \"" + pki.bridge.key.string() + "\"\n";
  bo.extra_sections = "[uploads]\nlisten = \"127.0.0.1:" + std::to_string(upload_port) +
                      "\"\ncert_file = \"" + pki.server.cert.string() + "\"\nkey_file = \"" +
                      pki.server.key.string() + "\"\nclient_ca_file = \"" + pki.ca.string() +
                      "\"\nforward_url = \"" + bo.receiver_url +
                      "/v1/photos/{sha256}\"\nretry_base_ms = 50\nretry_cap_ms = 500\n";
  BridgeProcess bridge(dir.File("bridge"), bo);
  ASSERT_TRUE(bridge.Start(&error)) << error;

  // The device's uploads go through the proxy; its MQTT goes straight to the broker.
  TcpProxy proxy(upload_port);
  ASSERT_TRUE(proxy.Start(&error)) << error;
  WaybilldProcess daemon(dir.File("truck"));
  daemon.set_device_id("truck-1");
  CertPair device = pki.device("truck-1");
  daemon.set_extra_config("[uplink]\nbroker = \"" + broker.uri() + "\"\nca_file = \"" +
                          pki.ca.string() + "\"\ncert_file = \"" + device.cert.string() +
                          "\"\nkey_file = \"" + device.key.string() +
                          "\"\nbatch_wait_ms = 200\nack_timeout_ms = 5000\nreconnect_max_s = 2\n"
                          "upload_url = \"https://127.0.0.1:" +
                          std::to_string(proxy.port()) + "\"\nupload_chunk_kib = 64\n");
  int port = daemon.Start(20, &error);
  ASSERT_GT(port, 0) << error;
  ASSERT_TRUE(daemon.WaitForStatus(
      [](const json& st) { return st["uplink"].value("connected", false); }, 15'000))
      << daemon.log();

  // The link dies after ~400 KiB of the upload (TLS included), a fifth of the photo.
  const std::string photo = JpegPhoto(1'800'000, 7);
  const std::string sha = bridge::Sha256Hex(photo);
  const std::string unreferenced = JpegPhoto(50'000, 8);
  const std::string unreferenced_sha = bridge::Sha256Hex(unreferenced);
  proxy.RefuseAfterUpstreamBytes(400 * 1024);

  httplib::Client api("127.0.0.1", port);
  api.set_read_timeout(10, 0);
  auto posted = api.Post("/v1/photos", photo, "image/jpeg");
  ASSERT_TRUE(posted);
  ASSERT_EQ(posted->status, 201) << posted->body;
  ASSERT_EQ(json::parse(posted->body)["sha256"], sha);
  auto other = api.Post("/v1/photos", unreferenced, "image/jpeg");
  ASSERT_TRUE(other);
  ASSERT_EQ(other->status, 201) << other->body;
  json proof = {{"stop_id", "s1"},
                {"order_id", "ORD-1"},
                {"recipient_name", "R. Ecipient"},
                {"photo_sha256", sha}};
  auto stored = api.Post("/v1/proofs", proof.dump(), "application/json");
  ASSERT_TRUE(stored);
  ASSERT_EQ(stored->status, 201) << stored->body;

  // The cut: the upload fails part-way, and the device says so.
  ASSERT_TRUE(WaitFor([&] { return proxy.mode() == TcpProxy::Mode::kRefuse; }, 30'000))
      << "the upload never passed 400 KiB: " << proxy.upstream_bytes() << " bytes\n"
      << daemon.log();
  json st;
  ASSERT_TRUE(daemon.WaitForStatus(
      [&](const json& s) {
        st = s;
        return s["photos"]["last_error"].is_string();
      },
      20'000))
      << st.dump();
  EXPECT_EQ(st["photos"]["pending"], 1);
  EXPECT_EQ(st["photos"]["uploaded"], 0);
  const double held_at_cut = bridge.Metric("waybill_bridge_photo_bytes_received_total");
  EXPECT_GT(held_at_cut, 0) << "the bridge kept the bytes synced before the cut";
  EXPECT_LT(held_at_cut, static_cast<double>(photo.size()));

  // The link comes back: the upload resumes and completes.
  proxy.SetMode(TcpProxy::Mode::kForward);
  ASSERT_TRUE(daemon.WaitForStatus(
      [&](const json& s) {
        st = s;
        return s["photos"]["uploaded"] == 1 && s["photos"]["pending"] == 0;
      },
      60'000))
      << st.dump() << "\n"
      << daemon.log() << bridge.log();

  // It resumed rather than restarted: the bridge stored each byte once, and the device sent
  // well under one and a half photos.
  const double received = bridge.Metric("waybill_bridge_photo_bytes_received_total");
  EXPECT_GE(received, static_cast<double>(photo.size()));
  EXPECT_LT(received, 1.5 * static_cast<double>(photo.size()));
  EXPECT_LT(st["photos"]["bytes_sent"].get<double>(), 1.5 * static_cast<double>(photo.size()));
  EXPECT_GE(st["photos"]["bytes_sent"].get<double>(), static_cast<double>(photo.size()));
  std::printf(
      "photo %zu bytes: the bridge held %.0f at the cut and stored %.0f in all; the device "
      "sent %s body bytes\n",
      photo.size(), held_at_cut, received, st["photos"]["bytes_sent"].dump().c_str());
  EXPECT_EQ(bridge.Metric("waybill_bridge_photo_uploads_total{result=\"completed\"}"), 1);
  EXPECT_EQ(bridge.Metric("waybill_bridge_photo_uploads_total{result=\"digest_mismatch\"}"), 0);

  // The backend holds the photo, with the right digest and device, and the proof naming it.
  json photos;
  ASSERT_TRUE(WaitFor(
      [&] {
        photos = receiver.GetJson("/_photos");
        return photos.is_array() && !photos.empty();
      },
      30'000))
      << bridge.log();
  ASSERT_EQ(photos.size(), 1u) << photos.dump() << ": only the photo a proof references is sent";
  EXPECT_EQ(photos[0]["sha256"], sha);
  EXPECT_EQ(photos[0]["device"], "truck-1");
  EXPECT_EQ(photos[0]["bytes"], photo.size());
  EXPECT_EQ(photos[0]["mime"], "image/jpeg");
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const std::string& body : ReceivedBodies(receiver.db_path(), "/v1/proofs")) {
          if (body.find(sha) != std::string::npos) return true;
        }
        return false;
      },
      30'000))
      << "no proof at the backend names the photo\n"
      << bridge.log();
  EXPECT_EQ(bridge.Metric("waybill_bridge_photos_forwarded_total"), 1);

  // The unit keeps no copy of the uploaded photo, and keeps the one no proof references.
  const fs::path photo_dir = daemon.data_dir() / "photos";
  EXPECT_EQ(PhotoFilesOnDevice(photo_dir, sha), 0);
  EXPECT_EQ(PhotoFilesOnDevice(photo_dir, unreferenced_sha), 1);

  // Both stop cleanly, their upload threads with them.
  std::optional<int> daemon_exit = daemon.Stop(SIGTERM);
  ASSERT_TRUE(daemon_exit.has_value());
  EXPECT_TRUE(WIFEXITED(*daemon_exit) && WEXITSTATUS(*daemon_exit) == 0) << daemon.log();
  std::optional<int> bridge_exit = bridge.Stop(SIGTERM);
  ASSERT_TRUE(bridge_exit.has_value());
  EXPECT_TRUE(WIFEXITED(*bridge_exit) && WEXITSTATUS(*bridge_exit) == 0) << bridge.log();
}

// The endpoint's protocol over real HTTPS, without a truck: what a client is told.
class UploadEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The endpoint closes connections whose body it refuses unread; a TLS write to such a
    // connection must fail, not kill the test.
    std::signal(SIGPIPE, SIG_IGN);
    broker_ = std::make_unique<Mosquitto>(dir_.File("broker"), MosquittoOptions{});
    std::string error;
    ASSERT_TRUE(broker_->Start(&error)) << error;
    receiver_ = std::make_unique<ReceiverProcess>(WAYBILL_RECEIVER_PATH, dir_.File("receiver"));
    ASSERT_GT(receiver_->Start({}, &error), 0) << error;
    upload_port_ = FreeLoopbackPort();
    const TestPki& pki = GetTestPki();
    BridgeOptions bo;
    bo.broker_uri = broker_->uri();
    bo.receiver_url = "http://127.0.0.1:" + std::to_string(receiver_->port());
    bo.extra_sections = "[uploads]\nlisten = \"127.0.0.1:" + std::to_string(upload_port_) +
                        "\"\ncert_file = \"" + pki.server.cert.string() + "\"\nkey_file = \"" +
                        pki.server.key.string() + "\"\nclient_ca_file = \"" + pki.ca.string() +
                        "\"\nmax_bytes = 1000000\nforward_url = \"" + bo.receiver_url +
                        "/v1/photos/{sha256}\"\n";
    bridge_ = std::make_unique<BridgeProcess>(dir_.File("bridge"), bo);
    ASSERT_TRUE(bridge_->Start(&error)) << error;
  }

  std::unique_ptr<httplib::SSLClient> Client(const CertPair& cert) {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", upload_port_, cert.cert.string(),
                                                  cert.key.string());
    c->set_ca_cert_path(GetTestPki().ca.string());
    c->enable_server_certificate_verification(true);
    c->set_read_timeout(10, 0);
    return c;
  }
  static httplib::Result Patch(httplib::SSLClient& c, const std::string& sha, uint64_t offset,
                               uint64_t total, const std::string& body) {
    httplib::Headers h = {{"Upload-Offset", std::to_string(offset)},
                          {"Upload-Length", std::to_string(total)}};
    return c.Patch(("/v1/photos/" + sha).c_str(), h, body, "application/offset+octet-stream");
  }
  double Uploads(const std::string& result) const {
    return bridge_->Metric("waybill_bridge_photo_uploads_total{result=\"" + result + "\"}");
  }

  TempDir dir_;
  std::unique_ptr<Mosquitto> broker_;
  std::unique_ptr<ReceiverProcess> receiver_;
  std::unique_ptr<BridgeProcess> bridge_;
  int upload_port_ = 0;
};

TEST_F(UploadEndpointTest, OffsetsDigestsAndDevicesAreEnforcedOverHttps) {
  const TestPki& pki = GetTestPki();
  const std::string photo = JpegPhoto(300'000, 3);
  const std::string sha = bridge::Sha256Hex(photo);
  auto truck1 = Client(pki.device("truck-1"));
  auto truck2 = Client(pki.device("truck-2"));

  auto head = truck1->Head(("/v1/photos/" + sha).c_str());
  ASSERT_TRUE(head) << httplib::to_string(head.error());
  EXPECT_EQ(head->status, 404);
  auto first = Patch(*truck1, sha, 0, photo.size(), photo.substr(0, 100'000));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200) << first->body;
  EXPECT_EQ(first->get_header_value("Upload-Offset"), "100000");

  // Another truck sees nothing of it and cannot add to it.
  auto other_head = truck2->Head(("/v1/photos/" + sha).c_str());
  ASSERT_TRUE(other_head);
  EXPECT_EQ(other_head->status, 404);
  auto other = Patch(*truck2, sha, 100'000, photo.size(), photo.substr(100'000));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 409) << other->body;
  EXPECT_EQ(other->get_header_value("Upload-Offset"), "0");

  // A wrong offset is refused with the stored one; a resume from it completes.
  auto wrong = Patch(*truck1, sha, 0, photo.size(), photo.substr(0, 100'000));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 409);
  EXPECT_EQ(wrong->get_header_value("Upload-Offset"), "100000");
  head = truck1->Head(("/v1/photos/" + sha).c_str());
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->get_header_value("Upload-Offset"), "100000");
  auto rest = Patch(*truck1, sha, 100'000, photo.size(), photo.substr(100'000));
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->status, 201) << rest->body;
  EXPECT_EQ(rest->get_header_value("Upload-Complete"), "1");
  head = truck1->Head(("/v1/photos/" + sha).c_str());
  ASSERT_TRUE(head);
  EXPECT_EQ(head->get_header_value("Upload-Complete"), "1");

  // Bytes that are not what the name says are discarded with a 422.
  const std::string liar = JpegPhoto(50'000, 4);
  auto mismatch = Patch(*truck2, bridge::Sha256Hex(JpegPhoto(50'000, 5)), 0, liar.size(), liar);
  ASSERT_TRUE(mismatch);
  EXPECT_EQ(mismatch->status, 422) << mismatch->body;
  EXPECT_NE(mismatch->body.find("do not match"), std::string::npos) << mismatch->body;

  // Bad requests are told what is wrong.
  auto no_offset = truck1->Patch(("/v1/photos/" + sha).c_str(), photo, "image/jpeg");
  ASSERT_TRUE(no_offset);
  EXPECT_EQ(no_offset->status, 400);
  EXPECT_NE(no_offset->body.find("Upload-Offset"), std::string::npos) << no_offset->body;
  auto huge = Patch(*Client(pki.device("truck-3")), std::string(64, 'a'), 0, 2'000'000, "x");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 413) << huge->body;

  // Without a client certificate the TLS handshake itself fails.
  httplib::SSLClient anonymous("127.0.0.1", upload_port_);
  anonymous.set_ca_cert_path(pki.ca.string());
  anonymous.enable_server_certificate_verification(true);
  auto refused = anonymous.Head(("/v1/photos/" + sha).c_str());
  EXPECT_FALSE(refused && refused->status == 200);

  EXPECT_EQ(Uploads("completed"), 1);
  EXPECT_EQ(Uploads("digest_mismatch"), 1);
  EXPECT_EQ(Uploads("wrong_offset"), 2);
  EXPECT_EQ(Uploads("bad_request"), 1);
  EXPECT_EQ(Uploads("too_large"), 1);
  EXPECT_EQ(bridge_->Metric("waybill_bridge_photo_bytes_received_total"),
            static_cast<double>(photo.size() + liar.size()));

  // The complete photo is handed on to the backend, under truck-1.
  json photos;
  ASSERT_TRUE(WaitFor(
      [&] {
        photos = receiver_->GetJson("/_photos");
        return photos.is_array() && photos.size() == 1;
      },
      20'000))
      << bridge_->log();
  EXPECT_EQ(photos[0]["sha256"], sha);
  EXPECT_EQ(photos[0]["device"], "truck-1");
}

}  // namespace
}  // namespace waybill::testing
