// waybilld as a process: real board and config files, real SQLite, real HTTP on 127.0.0.1,
// real signals. What a driver and a tech would notice: an answered "stored" survives a kill -9,
// SIGTERM exits cleanly, a bad file is a clear error, sequences go on after a restart.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "waybill/sync/events.h"
#include "waybill/sync/outbox_reader.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class WaybilldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("waybilld-it-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    WriteConfig(0);
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (!HasFailure()) fs::remove_all(dir_);
  }

  void WriteConfig(int port) {
    std::ofstream(dir_ / "waybill.toml") << "[device]\nid = \"it-truck\"\n[storage]\ndata_dir = \""
                                         << (dir_ / "data").string() << "\"\n[api]\nport = "
                                         << port << "\n[health]\nperiod_s = 10\n";
  }

  // Starts waybilld on host-sim replaying the Munich drive at `speed`; returns its API port.
  int Start(double speed, const fs::path& board = fs::path(WAYBILL_SOURCE_DIR) /
                                                  "boards/host-sim/board.toml") {
    log_ = dir_ / ("waybilld-" + std::to_string(++starts_) + ".log");
    pid_ = fork();
    if (pid_ == 0) {
      FILE* out = freopen(log_.c_str(), "w", stdout);
      FILE* err = freopen(log_.c_str(), "a", stderr);
      (void)out;
      (void)err;
      std::string speed_arg = std::to_string(speed);
      execl(WAYBILLD_PATH, "waybilld", "--board", board.c_str(), "--config",
            (dir_ / "waybill.toml").c_str(), "--replay-speed", speed_arg.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    // The daemon prints its port once the API listens.
    for (int i = 0; i < 300; ++i) {
      std::string log = ReadFile(log_);
      auto at = log.find("local API on http://127.0.0.1:");
      if (at != std::string::npos) return std::atoi(log.c_str() + at + 30);
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "waybilld exited early:\n" << log;
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "waybilld did not start:\n" << ReadFile(log_);
    return -1;
  }

  // Stops with `sig`; returns the exit status as waitpid reports it.
  int Stop(int sig) {
    kill(pid_, sig);
    int status = 0;
    for (int i = 0; i < 200; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "waybilld did not stop within 10 s after signal " << sig;
    return -1;
  }

  // Every stored event by sequence, read as waybillctl reads it.
  std::map<uint64_t, waybill::sync::StoredEvent> Stored() {
    std::map<uint64_t, waybill::sync::StoredEvent> out;
    auto reader = waybill::sync::OutboxReader::Open((dir_ / "data/outbox.db").string());
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
  fs::path log_;
  pid_t pid_ = -1;
  int starts_ = 0;
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
  ASSERT_TRUE(fixed) << "no GNSS fix within 10 s:\n" << ReadFile(log_);
  std::map<uint64_t, std::string> answered;  // seq -> order id
  std::string jpeg = "\xFF\xD8\xFF\xE0 photo of a parcel on a doorstep";
  auto photo = client.Post("/v1/photos", jpeg, "image/jpeg");
  ASSERT_TRUE(photo);
  ASSERT_EQ(photo->status, 201) << photo->body;
  std::string sha = json::parse(photo->body)["sha256"];
  for (int i = 0; i < 40; ++i) {
    std::string order = "ORD-" + std::to_string(i);
    json body = {{"stop_id", "stop-" + std::to_string(i)}, {"order_id", order},
                 {"kind", "delivered"}, {"items", i % 5}};
    auto res = client.Post("/v1/deliveries", body.dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    answered[json::parse(res->body)["seq"].get<uint64_t>()] = order;
    if (i % 10 == 9) {
      json proof = {{"order_id", order}, {"recipient_name", "Recipient " + std::to_string(i)},
                    {"signature", {{"width", 760}, {"height", 300},
                                   {"strokes", {{{10, 10}, {50, 60}, {90, 20}}}}}},
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
  EXPECT_TRUE(fs::exists(dir_ / "data/photos" / sha));
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
  auto res = client.Post("/v1/deliveries",
                         R"({"order_id":"ORD-7","kind":"failed","reason":"refused"})",
                         "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201);
  auto status = client.Get("/v1/status");
  ASSERT_TRUE(status);
  json st = json::parse(status->body);
  EXPECT_EQ(st["device_id"], "it-truck");
  EXPECT_EQ(st["outbox"]["deliveries"], 1);
  int exit_status = Stop(SIGTERM);
  ASSERT_TRUE(WIFEXITED(exit_status)) << ReadFile(log_);
  EXPECT_EQ(WEXITSTATUS(exit_status), 0) << ReadFile(log_);
  EXPECT_NE(ReadFile(log_).find("flushing the outbox"), std::string::npos);
  auto stored = Stored();
  ASSERT_FALSE(stored.empty());
}

TEST_F(WaybilldTest, ABadBoardFileIsAClearErrorWithItsLine) {
  fs::path board = dir_ / "board.toml";
  std::ofstream(board) << "[board]\nname = \"host-sim\"\narch = \"x86_64\"\ntoolchain = "
                          "\"native\"\n[gnss]\nsource = \"serial\"\ndevice = \"/dev/ttyS9\"\n"
                          "baud = 9601\n[storage]\ndata_dir = \"/var/tmp/x\"\n";
  pid_ = fork();
  if (pid_ == 0) {
    FILE* err = freopen((dir_ / "err.log").c_str(), "w", stderr);
    (void)err;
    execl(WAYBILLD_PATH, "waybilld", "--board", board.c_str(), "--config",
          (dir_ / "waybill.toml").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  std::string err = ReadFile(dir_ / "err.log");
  EXPECT_NE(err.find("board.toml:8:"), std::string::npos) << err;
  EXPECT_NE(err.find("9601 is not a standard baud rate"), std::string::npos) << err;
}

}  // namespace
