// Hardware in the loop: the cross-built waybilld on the emulated qemu-virt-aarch64 board
// (docs/HIL.md), wired like a truck to a real Mosquitto, waybill-bridge and the stand-in backend
// on the host. Each test boots its own board (its own data disk, ports and folder).
//
// Power cuts: WAYBILL_HIL_CUTS sets how many (default 5); ./scripts/soak hil --cuts N runs many.
// The power-cut test prints its figures as `figure hil.NAME VALUE UNIT` lines.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "support/bridge_processes.h"
#include "support/hil_board.h"
#include "unit/outbox_test_util.h"

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;

// Generous bounds for an emulated CPU on a busy 2-core machine: they bound the waits, they are no
// speed targets (docs/HIL.md has the measured times).
constexpr int kBootTimeoutMs = 180'000;
constexpr int kArrivalTimeoutMs = 120'000;

class HilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(HilImageDir() / "initramfs.cpio.gz")) {
      const char* skip = std::getenv("WAYBILL_CROSS_SKIP");
      if (skip != nullptr && std::string(skip).find("aarch64") != std::string::npos) {
        GTEST_SKIP() << "no aarch64 cross build, so no HIL image";
      }
      FAIL() << "no HIL image in " << HilImageDir()
             << ": boards/qemu-virt-aarch64/build-image --build-dir build/aarch64";
    }
    broker_ = std::make_unique<Mosquitto>(dir_.File("broker"), MosquittoOptions{});
    std::string error;
    ASSERT_TRUE(broker_->Start(&error)) << error;
    receiver_ = std::make_unique<ReceiverProcess>(WAYBILL_RECEIVER_PATH, dir_.File("receiver"));
    ASSERT_GT(receiver_->Start({}, &error), 0) << error;
    BridgeOptions o;
    o.broker_uri = broker_->uri();
    o.receiver_url = "http://127.0.0.1:" + std::to_string(receiver_->port());
    o.client_id = "bridge-hil";
    o.extra_bridge = "min_event_time_ms = 1000000000000\n";  // the drive was recorded in 2009
    bridge_ = std::make_unique<BridgeProcess>(dir_.File("bridge"), o);
    ASSERT_TRUE(bridge_->Start(&error)) << error;
    board_ = std::make_unique<HilBoard>(dir_.File("board"));
  }

  // The board's waybill.toml: the uplink goes out of the modem to the host's broker (10.0.2.2 is
  // the host's loopback in QEMU's user network).
  std::string Config() const {
    return "[device]\nid = \"" + std::string(kDevice) +
           "\"\n[api]\nhost = \"0.0.0.0\"\nport = 8080\n[health]\nperiod_s = 60\n"
           "[uplink]\nbroker = \"tcp://10.0.2.2:" +
           std::to_string(broker_->port()) +
           "\"\nbatch_wait_ms = 500\nack_timeout_ms = 5000\nreconnect_max_s = 5\n";
  }

  // Boots the board and waits for its API; returns the seconds that took.
  double BootAndWait(double gnss_speed) {
    auto t0 = std::chrono::steady_clock::now();
    std::string error;
    EXPECT_TRUE(board_->Boot(Config(), gnss_speed, &error)) << error;
    EXPECT_TRUE(board_->WaitForApi(kBootTimeoutMs, &error)) << error;
    return Seconds(t0);
  }

  static double Seconds(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
  }

  // The seqs the backend applied on `path` for the board, in application order.
  std::vector<uint64_t> Applied(const std::string& path) const {
    return AppliedSeqs(*receiver_, path, kDevice);
  }

  // Posts a delivery through the in-cab network; its seq if the answer was 201 (stored).
  std::optional<uint64_t> RecordDelivery(int n, const char* kind = "delivered") {
    nlohmann::json body = {{"stop_id", "stop-" + std::to_string(n)},
                           {"order_id", "ORD-" + std::to_string(n)},
                           {"kind", kind}};
    auto res = board_->Post("/v1/deliveries", body.dump());
    if (!res || res->status != 201) return std::nullopt;
    return nlohmann::json::parse(res->body)["seq"].get<uint64_t>();
  }

  static constexpr const char* kDevice = "hil-truck-1";
  TempDir dir_;
  std::unique_ptr<Mosquitto> broker_;
  std::unique_ptr<ReceiverProcess> receiver_;
  std::unique_ptr<BridgeProcess> bridge_;
  std::unique_ptr<HilBoard> board_;
};

TEST_F(HilTest, BootsGetsAFixFromItsUartAndItsPositionsReachTheBackend) {
  auto t0 = std::chrono::steady_clock::now();
  double api_s = BootAndWait(1);
  nlohmann::json st = board_->Status();
  EXPECT_EQ(st["board"], "qemu-virt-aarch64");
  EXPECT_EQ(st["gnss"]["source"], "/dev/ttyAMA0");
  EXPECT_EQ(st["storage"]["data_dir"], "/var/lib/waybill");

  ASSERT_TRUE(WaitFor(
      [&] {
        st = board_->Status();
        return st.is_object() && st["gnss"].value("mode", 1) >= 2;
      },
      60'000))
      << "no fix from the UART within 60 s of the API answering: " << st.dump();
  double fix_s = Seconds(t0);
  ASSERT_TRUE(WaitFor([&] { return !Applied("/v1/positions").empty(); }, kArrivalTimeoutMs))
      << "no position at the backend; board: " << board_->Status().dump() << "\nbridge:\n"
      << bridge_->log();
  double backend_s = Seconds(t0);
  std::cout << "figure hil.boot_to_api_s " << api_s << " s\n"
            << "figure hil.boot_to_first_fix_s " << fix_s << " s\n"
            << "figure hil.boot_to_backend_s " << backend_s << " s\n";
  EXPECT_NE(board_->RunLog().find("integrity_check ok"), std::string::npos) << board_->RunLog();
}

TEST_F(HilTest, DeliveriesAndProofsRecordedOnTheCabApiArriveOnce) {
  BootAndWait(5);
  std::set<uint64_t> deliveries;
  for (int i = 0; i < 10; ++i) {
    std::optional<uint64_t> seq = RecordDelivery(i, i % 2 == 0 ? "arrived" : "delivered");
    ASSERT_TRUE(seq.has_value()) << "delivery " << i << " not stored";
    deliveries.insert(*seq);
  }
  auto photo = board_->Post("/v1/photos", "\xFF\xD8\xFF\xE0 a parcel on a doorstep", "image/jpeg");
  ASSERT_TRUE(photo);
  ASSERT_EQ(photo->status, 201) << photo->body;
  nlohmann::json proof = {
      {"stop_id", "stop-1"},
      {"order_id", "ORD-1"},
      {"recipient_name", "M. Huber"},
      {"signature",
       {{"width", 760}, {"height", 300}, {"strokes", {{{40, 200}, {80, 120}}, {{200, 150}}}}}},
      {"photo_sha256", nlohmann::json::parse(photo->body)["sha256"]}};
  auto stored = board_->Post("/v1/proofs", proof.dump());
  ASSERT_TRUE(stored);
  ASSERT_EQ(stored->status, 201) << stored->body;
  uint64_t proof_seq = nlohmann::json::parse(stored->body)["seq"].get<uint64_t>();

  ASSERT_TRUE(WaitFor(
      [&] {
        return Applied("/v1/deliveries").size() >= deliveries.size() &&
               !Applied("/v1/proofs").empty();
      },
      kArrivalTimeoutMs))
      << "deliveries at the backend: " << Applied("/v1/deliveries").size() << "\n"
      << bridge_->log();
  // Resends after a lost ack are normal; what the backend applies must be each event once.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  std::vector<uint64_t> applied = Applied("/v1/deliveries");
  EXPECT_EQ(std::multiset<uint64_t>(applied.begin(), applied.end()),
            std::multiset<uint64_t>(deliveries.begin(), deliveries.end()));
  EXPECT_EQ(Applied("/v1/proofs"), std::vector<uint64_t>{proof_seq});
  EXPECT_EQ(receiver_->Stats()["event_duplicates"], 0);
}

TEST_F(HilTest, AfterALinkCutTheBacklogDrainsNewestFixFirst) {
  BootAndWait(5);
  ASSERT_TRUE(WaitFor([&] { return Applied("/v1/positions").size() >= 3; }, kArrivalTimeoutMs))
      << "positions are not flowing before the cut: " << board_->Status().dump();

  // Out of coverage: the modem's link goes down; the cab network (the API) stays.
  nlohmann::json at_cut = board_->Status();
  const size_t before = Applied("/v1/positions").size();
  const uint64_t cut_seq = at_cut["outbox"]["next_seq"].get<uint64_t>();
  board_->Monitor("set_link modem off");
  std::this_thread::sleep_for(std::chrono::seconds(3));  // what had left before the cut lands
  const size_t settled = Applied("/v1/positions").size();
  std::set<uint64_t> deliveries;
  for (int i = 0; i < 20; ++i) {
    std::optional<uint64_t> seq = RecordDelivery(100 + i);
    ASSERT_TRUE(seq.has_value()) << "the API must store while the modem is down";
    deliveries.insert(*seq);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  nlohmann::json st = board_->Status();
  EXPECT_EQ(Applied("/v1/positions").size(), settled) << "positions arrived through a cut link";
  EXPECT_TRUE(Applied("/v1/deliveries").empty());
  const uint64_t restore_seq = st["outbox"]["next_seq"].get<uint64_t>();
  ASSERT_GT(st["outbox"]["fixes"].get<uint64_t>(), 5u) << "no backlog of fixes built up: " << st;
  EXPECT_EQ(st["uplink"]["connected"], false)
      << "the uplink did not notice the stalled link: " << st["uplink"];
  // Handed to the connection that stalled, before the uplink gave up on it: the kernel keeps
  // retransmitting those, so they may reach the broker first when coverage returns.
  const uint64_t stalled =
      st["uplink"]["events_sent"].get<uint64_t>() - at_cut["uplink"]["events_sent"].get<uint64_t>();

  board_->Monitor("set_link modem on");
  auto drained = [&] {
    nlohmann::json s = board_->Status();
    return s.is_object() && s["outbox"]["events"] == 0;
  };
  ASSERT_TRUE(WaitFor(drained, kArrivalTimeoutMs)) << board_->Status().dump();
  std::this_thread::sleep_for(std::chrono::seconds(2));

  std::vector<uint64_t> applied = Applied("/v1/deliveries");
  EXPECT_EQ(std::multiset<uint64_t>(applied.begin(), applied.end()),
            std::multiset<uint64_t>(deliveries.begin(), deliveries.end()));
  // The positions recorded since the cut, in the order the backend applied them.
  std::vector<uint64_t> after = Applied("/v1/positions");
  std::vector<uint64_t> since_cut;
  for (size_t i = before; i < after.size(); ++i) {
    if (after[i] >= cut_seq) since_cut.push_back(after[i]);
  }
  uint64_t newest_in_cut = 0;
  size_t in_cut = 0;
  for (uint64_t seq : since_cut) {
    if (seq < restore_seq) newest_in_cut = std::max(newest_in_cut, seq), ++in_cut;
  }
  ASSERT_GT(in_cut, 5u) << "too few positions recorded during the cut to tell the order";
  auto list = [](const std::vector<uint64_t>& v) {
    std::string out;
    for (uint64_t x : v) out += std::to_string(x) + " ";
    return out;
  };
  // When coverage returns the live position goes first (after at most what was stuck in the
  // stalled connection): a fix at least as new as every one recorded during the cut. The
  // historical ones follow, oldest first.
  auto live = std::find_if(since_cut.begin(), since_cut.end(),
                           [&](uint64_t seq) { return seq >= newest_in_cut; });
  EXPECT_LE(static_cast<uint64_t>(live - since_cut.begin()), stalled)
      << "the backlog came before the live position; applied since the cut: " << list(since_cut)
      << "(cut at seq " << cut_seq << ", restored at " << restore_seq << ", " << stalled
      << " sent into the stalled connection)";
  std::vector<uint64_t> historical;
  for (auto it = live + (live == since_cut.end() ? 0 : 1); it != since_cut.end(); ++it) {
    if (*it < newest_in_cut) historical.push_back(*it);
  }
  EXPECT_TRUE(std::is_sorted(historical.begin(), historical.end())) << list(since_cut);
  EXPECT_EQ(receiver_->Stats()["event_duplicates"], 0);
}

// Power cuts while recording: every delivery whose API call answered 201 (stored) must reach the
// backend exactly once, the outbox must pass its integrity check at every boot, and the sequence
// must never go backwards.
TEST_F(HilTest, PowerCutsWhileRecordingLoseNothingAndApplyNothingTwice) {
  const char* env = std::getenv("WAYBILL_HIL_CUTS");
  const int cuts = env != nullptr ? std::max(1, std::atoi(env)) : 5;
  std::random_device seed_source;
  const unsigned seed = seed_source();
  std::mt19937 rng(seed);
  std::cout << "power cuts: " << cuts << ", seed " << seed << "\n";

  std::mutex mu;
  std::set<uint64_t> stored;  // seqs answered 201
  uint64_t highest_stored = 0;
  int integrity_failures = 0, sequence_regressions = 0, unanswered = 0;
  std::string failures;
  int n = 0;
  for (int boot = 0; boot <= cuts; ++boot) {
    BootAndWait(5);
    nlohmann::json st = board_->Status();
    ASSERT_TRUE(st.is_object()) << "boot " << boot << ": " << board_->RunLog();
    // waybilld ran PRAGMA integrity_check when it opened the outbox: a failure moves the file
    // aside and raises an alarm, and only a passing check logs "integrity_check ok".
    bool intact = st["outbox"]["alarms"].empty() &&
                  board_->RunLog().find("integrity_check ok") != std::string::npos;
    if (!intact) {
      ++integrity_failures;
      failures += "boot " + std::to_string(boot) + ": " + st["outbox"].dump() + "\n";
    }
    if (st["outbox"]["next_seq"].get<uint64_t>() <= highest_stored) {
      ++sequence_regressions;
      failures += "boot " + std::to_string(boot) + ": next_seq " + st["outbox"]["next_seq"].dump() +
                  " after seq " + std::to_string(highest_stored) + " was stored\n";
    }
    if (boot == cuts) break;

    // Record until the cut, which comes at a random moment 1 to 8 s from now.
    std::atomic<bool> cut{false};
    std::thread recorder([&] {
      while (!cut.load()) {
        int k;
        {
          std::lock_guard lock(mu);
          k = n++;
        }
        std::optional<uint64_t> seq = RecordDelivery(k);
        std::lock_guard lock(mu);
        if (seq) {
          stored.insert(*seq);
          highest_stored = std::max(highest_stored, *seq);
        } else {
          ++unanswered;
        }
      }
    });
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(1000, 8000)(rng)));
    cut = true;  // no new request after this one; the one in flight meets the cut
    board_->PowerCut();
    recorder.join();
  }

  // The last boot stays up: everything stored drains to the backend.
  auto all_arrived = [&] {
    std::vector<uint64_t> applied = Applied("/v1/deliveries");
    std::set<uint64_t> got(applied.begin(), applied.end());
    return std::includes(got.begin(), got.end(), stored.begin(), stored.end());
  };
  WaitFor(all_arrived, kArrivalTimeoutMs + 30'000 * cuts / 5);
  WaitFor([&] { return board_->Status()["outbox"]["deliveries"] == 0; }, 30'000);
  std::vector<uint64_t> applied = Applied("/v1/deliveries");
  std::map<uint64_t, int> times;
  for (uint64_t s : applied) ++times[s];
  int lost = 0, duplicates = 0;
  for (uint64_t s : stored) {
    if (times.count(s) == 0) {
      ++lost;
      if (lost <= 20)
        failures += "stored seq " + std::to_string(s) + " never reached the backend\n";
    }
  }
  for (auto [s, k] : times) duplicates += k - 1;
  duplicates += receiver_->Stats()["event_duplicates"].get<int>();

  std::cout << "figure hil.power_cuts " << cuts << " 1\n"
            << "figure hil.events_stored " << stored.size() << " 1\n"
            << "figure hil.requests_unanswered " << unanswered << " 1\n"
            << "figure hil.lost " << lost << " 1\n"
            << "figure hil.duplicates_at_backend " << duplicates << " 1\n"
            << "figure hil.integrity_failures " << integrity_failures << " 1\n"
            << "figure hil.sequence_regressions " << sequence_regressions << " 1\n";
  EXPECT_GT(stored.size(), static_cast<size_t>(cuts)) << "too little was recorded to tell";
  EXPECT_EQ(lost, 0) << failures;
  EXPECT_EQ(duplicates, 0) << failures;
  EXPECT_EQ(integrity_failures, 0) << failures;
  EXPECT_EQ(sequence_regressions, 0) << failures;
}

}  // namespace
}  // namespace waybill::testing
