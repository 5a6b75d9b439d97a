// waybilld as a process: real board and config files, real SQLite, real HTTP on 127.0.0.1,
// real signals. What a driver and a tech would notice: an answered "stored" survives a kill -9,
// SIGTERM exits cleanly, a bad file is a clear error, sequences go on after a restart.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/waybilld_process.h"
#include "waybill/sync/data_key.h"
#include "waybill/sync/events.h"
#include "waybill/sync/outbox_reader.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

using waybill::testing::ReadWholeFile;
using waybill::testing::WaybilldProcess;

class WaybilldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("waybilld-it-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    daemon_ = std::make_unique<WaybilldProcess>(dir_);
  }
  void TearDown() override {
    daemon_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  int Start(double speed) {
    std::string error;
    int port = daemon_->Start(speed, &error);
    if (port < 0) ADD_FAILURE() << error;
    return port;
  }
  int Stop(int sig) {
    std::optional<int> status = daemon_->Stop(sig);
    if (!status) ADD_FAILURE() << "waybilld did not stop within 10 s after signal " << sig;
    return status.value_or(-1);
  }
  std::string Log() const { return daemon_->log(); }

  // Every stored event by sequence, read as waybillctl reads it, sealed bodies opened with the
  // unit's data key.
  std::map<uint64_t, waybill::sync::StoredEvent> Stored() {
    std::map<uint64_t, waybill::sync::StoredEvent> out;
    waybill::sync::DataKeyOptions load_only;
    load_only.create_if_missing = false;
    auto key = waybill::sync::DataKey::LoadOrCreate((daemon_->data_dir() / "data.key").string(),
                                                    load_only);
    EXPECT_TRUE(key.ok()) << key.status().ToString();
    if (!key.ok()) return out;
    auto reader = waybill::sync::OutboxReader::Open((daemon_->data_dir() / "outbox.db").string(),
                                                    500, std::move(key).value());
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    if (!reader.ok()) return out;
    waybill::Status s = (*reader)->ForEach(std::nullopt, 0, [&](const auto& ev) {
      out[ev.seq] = ev;
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  fs::path dir_;
  std::unique_ptr<WaybilldProcess> daemon_;
};

TEST_F(WaybilldTest, EveryAnsweredStoredEventSurvivesKillDashNine) {
  int port = Start(20);
  ASSERT_GT(port, 0);
  httplib::Client client("127.0.0.1", port);
  // Deliveries carry the truck's last position: wait for the first fix of the replay.
  bool fixed = false;
  for (int i = 0; i < 200 && !fixed; ++i) {
    auto st = client.Get("/v1/status");
    fixed = st && json::parse(st->body)["gnss"].value("mode", 1) >= 2;
    if (!fixed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(fixed) << "no GNSS fix within 10 s:\n" << Log();
  std::map<uint64_t, std::string> answered;  // seq -> order id
  std::string jpeg = "\xFF\xD8\xFF\xE0 photo of a parcel on a doorstep";
  auto photo = client.Post("/v1/photos", jpeg, "image/jpeg");
  ASSERT_TRUE(photo);
  ASSERT_EQ(photo->status, 201) << photo->body;
  std::string sha = json::parse(photo->body)["sha256"];
  for (int i = 0; i < 40; ++i) {
    std::string order = "ORD-" + std::to_string(i);
    json body = {{"stop_id", "stop-" + std::to_string(i)},
                 {"order_id", order},
                 {"kind", "delivered"},
                 {"items", i % 5}};
    auto res = client.Post("/v1/deliveries", body.dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    answered[json::parse(res->body)["seq"].get<uint64_t>()] = order;
    if (i % 10 == 9) {
      json proof = {
          {"order_id", order},
          {"recipient_name", "Recipient " + std::to_string(i)},
          {"signature",
           {{"width", 760}, {"height", 300}, {"strokes", {{{10, 10}, {50, 60}, {90, 20}}}}}},
          {"photo_sha256", sha}};
      auto p = client.Post("/v1/proofs", proof.dump(), "application/json");
      ASSERT_TRUE(p);
      ASSERT_EQ(p->status, 201) << p->body;
      answered[json::parse(p->body)["seq"].get<uint64_t>()] = order;
    }
  }
  int status = Stop(SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status));

  auto stored = Stored();
  for (const auto& [seq, order] : answered) {
    auto it = stored.find(seq);
    ASSERT_NE(it, stored.end()) << "seq " << seq << " (" << order << ") answered 201 but lost";
    if (it->second.cls == waybill::sync::EventClass::kDelivery) {
      auto ev = waybill::sync::DecodeDelivery(it->second.body);
      ASSERT_TRUE(ev.ok());
      EXPECT_EQ(ev->order_id, order);
      EXPECT_TRUE(ev->lat_e7.has_value()) << "deliveries carry the truck's position";
    } else {
      ASSERT_EQ(it->second.cls, waybill::sync::EventClass::kProofOfDelivery);
      auto proof = waybill::sync::DecodeProof(it->second.body);
      ASSERT_TRUE(proof.ok());
      EXPECT_EQ(proof->order_id, order);
      EXPECT_EQ(proof->photo_bytes, jpeg.size());
    }
  }
  EXPECT_TRUE(fs::exists(daemon_->data_dir() / "photos" / sha));
  uint64_t fixes = 0;
  for (const auto& [seq, ev] : stored) fixes += ev.cls == waybill::sync::EventClass::kFix;
  EXPECT_GT(fixes, 0u) << "the replayed drive was recorded meanwhile";

  // After the kill, a restart continues above every sequence used before.
  uint64_t max_before = stored.rbegin()->first;
  port = Start(20);
  ASSERT_GT(port, 0);
  httplib::Client again("127.0.0.1", port);
  auto res = again.Post("/v1/deliveries", R"({"order_id":"ORD-after","kind":"arrived"})",
                        "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  EXPECT_GT(json::parse(res->body)["seq"].get<uint64_t>(), max_before);
}

TEST_F(WaybilldTest, SigtermFlushesAndExitsZero) {
  int port = Start(50);
  ASSERT_GT(port, 0);
  httplib::Client client("127.0.0.1", port);
  auto res =
      client.Post("/v1/deliveries", R"({"order_id":"ORD-7","kind":"failed","reason":"refused"})",
                  "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201);
  auto status = client.Get("/v1/status");
  ASSERT_TRUE(status);
  json st = json::parse(status->body);
  EXPECT_EQ(st["device_id"], "it-truck");
  EXPECT_EQ(st["outbox"]["deliveries"], 1);
  int exit_status = Stop(SIGTERM);
  ASSERT_TRUE(WIFEXITED(exit_status)) << Log();
  EXPECT_EQ(WEXITSTATUS(exit_status), 0) << Log();
  EXPECT_NE(Log().find("flushing the outbox"), std::string::npos);
  auto stored = Stored();
  ASSERT_FALSE(stored.empty());
}

TEST_F(WaybilldTest, ABadBoardFileIsAClearErrorWithItsLine) {
  fs::path board = dir_ / "board.toml";
  std::ofstream(board) << "[board]\nname = \"host-sim\"\narch = \"x86_64\"\ntoolchain = "
                          "\"native\"\n[gnss]\nsource = \"serial\"\ndevice = \"/dev/ttyS9\"\n"
                          "baud = 9601\n[storage]\ndata_dir = \"/var/tmp/x\"\n";
  std::ofstream(dir_ / "waybill.toml") << "[device]\nid = \"it-truck\"\n";
  pid_t pid = fork();
  if (pid == 0) {
    FILE* err = freopen((dir_ / "err.log").c_str(), "w", stderr);
    (void)err;
    execl(WAYBILLD_PATH, "waybilld", "--board", board.c_str(), "--config",
          (dir_ / "waybill.toml").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  std::string err = ReadWholeFile(dir_ / "err.log");
  EXPECT_NE(err.find("board.toml:8:"), std::string::npos) << err;
  EXPECT_NE(err.find("9601 is not a standard baud rate"), std::string::npos) << err;
}

}  // namespace
