// The uplink against a real Mosquitto on loopback, with a real SQLite outbox and the test acker
// standing in for the bridge. What a fleet operator would notice: events arrive and leave the
// truck only once acked; a broker outage or crash loses nothing and live tracking comes back
// first; a crashed device resumes from its outbox; a device cannot speak for another or connect
// with a certificate nobody trusts, and says why in words; commands get their results.
#include "waybill/sync/uplink.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "support/acker.h"
#include "support/mosquitto.h"
#include "support/test_pki.h"
#include "support/uplink_events.h"
#include "waybill/hal/clock.h"
#include "waybill/sync/outbox.h"
#include "waybill/sync/wire.h"

namespace waybill::sync {
namespace {

namespace fs = std::filesystem;
using testing::AckerRecord;
using testing::GetTestPki;
using testing::Mosquitto;
using testing::TestAcker;

// Polls `pred` every 10 ms for at most `timeout_ms` of real time.
template <typename P>
bool WaitFor(P pred, int timeout_ms = 20000) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class UplinkIT : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("waybill-uplink-it-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  void TearDown() override {
    if (uplink_) uplink_->Stop();
    uplink_.reset();
    if (acker_) acker_->Stop();
    acker_.reset();
    outbox_.reset();
    broker_.reset();
    if (HasFailure()) {
      std::printf("test dir kept: %s\n", dir_.c_str());
    } else {
      fs::remove_all(dir_);
    }
  }

  void StartBroker(bool tls, testing::CertPair server = {}) {
    testing::MosquittoOptions o;
    o.tls = tls;
    o.server = server;
    broker_ = std::make_unique<Mosquitto>(dir_ / "broker", o);
    std::string error;
    ASSERT_TRUE(broker_->Start(&error)) << error;
  }

  void StartAcker(bool tls, int ack_delay_ms = 0) {
    testing::AckerOptions o;
    o.broker_uri = broker_->uri();
    o.ack_delay_ms = ack_delay_ms;
    if (tls) {
      o.ca_file = GetTestPki().ca;
      o.cert_file = GetTestPki().bridge.cert;
      o.key_file = GetTestPki().bridge.key;
    }
    acker_ = std::make_unique<TestAcker>(o);
    std::string error;
    ASSERT_TRUE(acker_->Start(&error)) << error << "\n" << broker_->log();
  }

  void OpenOutbox() {
    OutboxOptions o;
    o.path = (dir_ / "outbox.db").string();
    auto outbox = Outbox::Open(o);
    ASSERT_TRUE(outbox.ok()) << outbox.status().ToString();
    outbox_ = std::move(*outbox);
  }

  UplinkOptions Options(bool tls, const std::string& device = "truck-1") {
    UplinkOptions o;
    o.broker_uri = broker_->uri();
    o.device_id = device;
    o.firmware_version = "9.8.7";
    o.batch_max_events = 60;
    o.batch_wait_ms = 20;
    o.poll_ms = 50;
    o.ack_timeout_ms = 5000;
    o.backoff = {.base_ms = 100, .cap_ms = 400, .floor_ms = 20};
    if (tls) {
      o.tls.ca_file = GetTestPki().ca;
      o.tls.cert_file = GetTestPki().device(device).cert;
      o.tls.key_file = GetTestPki().device(device).key;
    }
    return o;
  }

  void StartUplink(const UplinkOptions& o) {
    auto uplink = Uplink::Create(*outbox_, hal::Clock::System(), o);
    ASSERT_TRUE(uplink.ok()) << uplink.status().ToString();
    uplink_ = std::move(*uplink);
    ASSERT_TRUE(uplink_->Start().ok());
  }

  uint64_t Append(const NewEvent& e) {
    auto seq = outbox_->Append(e);
    EXPECT_TRUE(seq.ok()) << seq.status().ToString();
    if (uplink_) uplink_->Nudge();
    return seq.ok() ? *seq : 0;
  }

  // Appends n fixes in one go (group commit: one fsync for many), in order; returns their seqs.
  std::vector<uint64_t> AppendFixes(int n, int first_index = 0) {
    std::mutex mu;
    std::vector<uint64_t> seqs;
    for (int i = 0; i < n; ++i) {
      outbox_->AppendAsync(testing::MakeFixEvent(first_index + i), [&](Result<uint64_t> seq) {
        EXPECT_TRUE(seq.ok()) << seq.status().ToString();
        std::lock_guard<std::mutex> lk(mu);
        if (seq.ok()) seqs.push_back(*seq);
      });
    }
    EXPECT_TRUE(outbox_->Flush().ok());
    if (uplink_) uplink_->Nudge();
    std::lock_guard<std::mutex> lk(mu);
    std::sort(seqs.begin(), seqs.end());
    return seqs;
  }

  uint64_t OutboxEvents() { return outbox_->Stats().events; }

  std::set<uint64_t> SeenSeqs(const std::string& device = "truck-1") {
    std::set<uint64_t> seen;
    for (const AckerRecord& r : acker_->Records()) {
      if (r.device == device) seen.insert(r.seq);
    }
    return seen;
  }

  fs::path dir_;
  std::unique_ptr<Mosquitto> broker_;
  std::unique_ptr<TestAcker> acker_;
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<Uplink> uplink_;
};

// ---- Delivery and the ack rule ----

class UplinkVersionIT : public UplinkIT, public ::testing::WithParamInterface<MqttVersion> {};

TEST_P(UplinkVersionIT, EventsArriveAndLeaveTheOutboxOnceAcked) {
  StartBroker(false);
  StartAcker(false);
  OpenOutbox();
  std::vector<uint64_t> seqs = AppendFixes(150);
  for (int i = 0; i < 5; ++i) seqs.push_back(Append(testing::MakeDeliveryEvent(i)));
  UplinkOptions o = Options(false);
  o.mqtt_version = GetParam();
  StartUplink(o);

  ASSERT_TRUE(WaitFor([&] { return OutboxEvents() == 0; })) << broker_->log();
  std::set<uint64_t> seen = SeenSeqs();
  for (uint64_t seq : seqs) EXPECT_TRUE(seen.count(seq)) << "seq " << seq << " never arrived";
  EXPECT_EQ(acker_->decode_errors(), 0u);
  // The outbox is empty a moment before the uplink counts the last ack.
  ASSERT_TRUE(WaitFor([&] { return uplink_->Stats().events_acked >= seqs.size(); }));
  UplinkStats s = uplink_->Stats();
  EXPECT_TRUE(s.connected);
  EXPECT_EQ(s.connects, 1u);
  EXPECT_GE(s.events_acked, seqs.size());
  EXPECT_GT(s.bytes_published, 0u);
  EXPECT_GT(s.last_ack_wall_ms, 0);
  // The retained status says online with the firmware version; Stop() turns it offline.
  ASSERT_TRUE(WaitFor([&] { return acker_->Statuses().count("truck-1") != 0; }));
  EXPECT_EQ(acker_->Statuses().at("truck-1"), StatusPayload(true, "9.8.7"));
  uplink_->Stop();
  ASSERT_TRUE(
      WaitFor([&] { return acker_->Statuses()["truck-1"] == StatusPayload(false, "9.8.7"); }));
}

INSTANTIATE_TEST_SUITE_P(Mqtt, UplinkVersionIT,
                         ::testing::Values(MqttVersion::kV5, MqttVersion::kV311),
                         [](const auto& param_info) {
                           return param_info.param == MqttVersion::kV5 ? "v5" : "v311";
                         });

TEST_F(UplinkIT, WithoutAnAckNothingIsDeletedAndBatchesAreSentAgain) {
  StartBroker(false);
  StartAcker(false);
  acker_->SetDropAcks(true);
  OpenOutbox();
  std::vector<uint64_t> seqs = AppendFixes(8);
  seqs.push_back(Append(testing::MakeDeliveryEvent(1)));
  UplinkOptions o = Options(false);
  o.ack_timeout_ms = 300;
  StartUplink(o);

  // Every event arrives at least twice (the broker PUBACKed the first sends: not enough).
  ASSERT_TRUE(WaitFor([&] {
    std::map<uint64_t, int> count;
    for (const AckerRecord& r : acker_->Records()) ++count[r.seq];
    for (uint64_t seq : seqs) {
      if (count[seq] < 2) return false;
    }
    return true;
  }));
  EXPECT_EQ(OutboxEvents(), seqs.size());
  UplinkStats s = uplink_->Stats();
  EXPECT_GE(s.resends, seqs.size());
  EXPECT_GE(s.ack_timeouts, 1u);
  EXPECT_EQ(s.events_acked, 0u);

  // The bridge comes back: acks flow, the outbox empties.
  acker_->SetDropAcks(false);
  ASSERT_TRUE(WaitFor([&] { return OutboxEvents() == 0; }));
}

TEST_F(UplinkIT, MutualTlsDeliversAndAcks) {
  StartBroker(true);
  StartAcker(true);
  OpenOutbox();
  std::vector<uint64_t> seqs = AppendFixes(100);
  seqs.push_back(Append(testing::MakeDeliveryEvent(3)));
  StartUplink(Options(true));
  ASSERT_TRUE(WaitFor([&] { return OutboxEvents() == 0; })) << broker_->log();
  std::set<uint64_t> seen = SeenSeqs();
  for (uint64_t seq : seqs) EXPECT_TRUE(seen.count(seq)) << "seq " << seq;
  EXPECT_EQ(uplink_->Stats().connects, 1u);
}

// ---- Outages ----

TEST_F(UplinkIT, AfterAnOutageTheNewestFixGoesFirstThenDeliveriesThenTheBacklogInOrder) {
  StartBroker(false);
  StartAcker(false);
  OpenOutbox();
  StartUplink(Options(false));
  AppendFixes(1);
  ASSERT_TRUE(WaitFor([&] { return OutboxEvents() == 0; }));

  broker_->Stop();
  ASSERT_TRUE(WaitFor([&] { return !uplink_->Stats().connected; }));
  size_t before = acker_->Records().size();
  // The truck drives through a dead zone: breadcrumbs, with two deliveries on the way.
  std::vector<uint64_t> fixes = AppendFixes(40, 100);
  std::vector<uint64_t> deliveries = {Append(testing::MakeDeliveryEvent(7))};
  std::vector<uint64_t> more = AppendFixes(40, 140);
  fixes.insert(fixes.end(), more.begin(), more.end());
  deliveries.push_back(Append(testing::MakeDeliveryEvent(8)));
  uint64_t newest = Append(testing::MakeFixEvent(180));
  // A few reconnect attempts fail while the broker is away.
  ASSERT_TRUE(WaitFor([&] { return uplink_->Stats().connect_attempts >= 3; }));
  EXPECT_FALSE(uplink_->Stats().last_connect_error.empty());
  EXPECT_NE(uplink_->Stats().last_connect_error.find("refused"), std::string::npos)
      << uplink_->Stats().last_connect_error;

  std::string error;
  ASSERT_TRUE(broker_->Start(&error)) << error;
  ASSERT_TRUE(WaitFor([&] { return OutboxEvents() == 0; })) << broker_->log();
  // First arrivals only: a batch resent after a slow ack is a harmless duplicate.
  std::vector<AckerRecord> all = acker_->Records();
  std::vector<AckerRecord> after;
  std::set<uint64_t> first_seen;
  for (size_t i = before; i < all.size(); ++i) {
    if (first_seen.insert(all[i].seq).second) after.push_back(all[i]);
  }
  ASSERT_EQ(after.size(), fixes.size() + deliveries.size() + 1);

  // 1. The newest fix, alone and live.
  EXPECT_EQ(after[0].seq, newest);
  EXPECT_FALSE(after[0].historical);
  EXPECT_NE(after[0].batch, after[1].batch);
  // 2. The deliveries, in order, not historical.
  ASSERT_EQ(after[1].cls, EventClass::kDelivery);
  EXPECT_EQ(after[1].seq, deliveries[0]);
  EXPECT_EQ(after[2].seq, deliveries[1]);
  EXPECT_FALSE(after[1].historical);
  // 3. The backlog of fixes in time order, marked historical.
  for (size_t i = 0; i < fixes.size(); ++i) {
    const AckerRecord& r = after[3 + i];
    EXPECT_EQ(r.seq, fixes[i]) << "backlog position " << i;
    EXPECT_EQ(r.cls, EventClass::kFix);
    EXPECT_TRUE(r.historical) << "seq " << r.seq;
  }
  UplinkStats s = uplink_->Stats();
  EXPECT_EQ(s.connects, 2u);
  EXPECT_EQ(s.disconnects, 1u);
  EXPECT_FALSE(s.last_disconnect_cause.empty());
}

// A dead zone as long as real ones: the broker away for minutes (WAYBILL_OUTAGE_SECONDS,
// default 120) while the truck records a fix a second and a delivery every 30 s, with TLS and a
// realistic backoff cap. Everything arrives once the broker is back, in the live-first order.
TEST_F(UplinkIT, ABrokerAwayForMinutesWhileTheTruckRecordsLosesNothing) {
  const char* env = std::getenv("WAYBILL_OUTAGE_SECONDS");
  const int outage_s = env ? std::atoi(env) : 120;
  StartBroker(true);
  StartAcker(true);
  OpenOutbox();
  UplinkOptions o = Options(true);
  o.backoff = {.base_ms = 1000, .cap_ms = 15000, .floor_ms = 100};
  StartUplink(o);
  AppendFixes(1);
  ASSERT_TRUE(WaitFor([&] { return OutboxEvents() == 0; }, 30000));

  broker_->Stop();
  ASSERT_TRUE(WaitFor([&] { return !uplink_->Stats().connected; }));
  size_t before = acker_->Records().size();
  std::vector<uint64_t> fixes, deliveries;
  for (int t = 0; t < outage_s; ++t) {
    std::vector<uint64_t> one = AppendFixes(1, 1000 + t);
    fixes.insert(fixes.end(), one.begin(), one.end());
    if (t % 30 == 15) deliveries.push_back(Append(testing::MakeDeliveryEvent(100 + t)));
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  uint64_t newest = fixes.back();
  fixes.pop_back();
  uint64_t attempts = uplink_->Stats().connect_attempts;
  EXPECT_LE(attempts, 2u + static_cast<uint64_t>(outage_s)) << "no hot reconnect loop";

  std::string error;
  ASSERT_TRUE(broker_->Start(&error)) << error;
  // The backoff cap bounds how long the truck takes to notice the broker is back.
  ASSERT_TRUE(WaitFor([&] { return OutboxEvents() == 0; }, 60000)) << broker_->log();
  std::vector<AckerRecord> all = acker_->Records();
  std::vector<AckerRecord> after;
  std::set<uint64_t> first_seen;
  for (size_t i = before; i < all.size(); ++i) {
    if (first_seen.insert(all[i].seq).second) after.push_back(all[i]);
  }
  ASSERT_EQ(after.size(), fixes.size() + deliveries.size() + 1);
  EXPECT_EQ(after[0].seq, newest);
  EXPECT_FALSE(after[0].historical);
  for (size_t i = 0; i < deliveries.size(); ++i) {
    EXPECT_EQ(after[1 + i].seq, deliveries[i]);
    EXPECT_EQ(after[1 + i].cls, EventClass::kDelivery);
  }
  for (size_t i = 0; i < fixes.size(); ++i) {
    const AckerRecord& r = after[1 + deliveries.size() + i];
    EXPECT_EQ(r.seq, fixes[i]) << "backlog position " << i;
    EXPECT_TRUE(r.historical);
  }
}

TEST_F(UplinkIT, BrokerKilledMidDrainLosesNothing) {
  StartBroker(false);
  StartAcker(false, /*ack_delay_ms=*/5);
  OpenOutbox();
  std::vector<uint64_t> seqs = AppendFixes(800);
  for (int i = 0; i < 10; ++i) seqs.push_back(Append(testing::MakeDeliveryEvent(i)));
  UplinkOptions o = Options(false);
  o.batch_max_events = 10;
  o.inflight_batches = 2;
  o.ack_timeout_ms = 1000;
  StartUplink(o);

  ASSERT_TRUE(WaitFor([&] { return acker_->Records().size() >= 200; }));
  broker_->Kill();
  ASSERT_GT(OutboxEvents(), 0u) << "the drain ended before the kill: make it longer";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string error;
  ASSERT_TRUE(broker_->Start(&error)) << error;

  ASSERT_TRUE(WaitFor([&] { return OutboxEvents() == 0; }, 60000))
      << OutboxEvents() << " events left\n"
      << broker_->log();
  std::set<uint64_t> seen = SeenSeqs();
  for (uint64_t seq : seqs) ASSERT_TRUE(seen.count(seq)) << "seq " << seq << " lost";
  EXPECT_GE(uplink_->Stats().disconnects, 1u);
}

TEST_F(UplinkIT, DeviceKilledMidDrainResumesFromItsOutbox) {
  StartBroker(false);
  StartAcker(false, /*ack_delay_ms=*/5);
  fs::path db = dir_ / "device.db";
  auto run = [&](bool append) {
    int out_pipe[2];
    EXPECT_EQ(pipe(out_pipe), 0);
    pid_t pid = fork();
    if (pid == 0) {
      dup2(out_pipe[1], STDOUT_FILENO);
      std::string err = (dir_ / "driver.log").string();
      FILE* f = freopen(err.c_str(), "a", stderr);
      (void)f;
      close(out_pipe[0]);
      std::vector<std::string> args = {UPLINK_DRIVER,  "--outbox", db.string(), "--broker",
                                       broker_->uri(), "--device", "truck-2",   "--batch",
                                       "10",           "--window", "2",         "--ack-timeout-ms",
                                       "1000"};
      if (append) {
        args.insert(args.end(), {"--fixes", "800", "--deliveries", "10"});
      } else {
        args.push_back("--exit-when-drained");
      }
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(UPLINK_DRIVER, argv.data());
      _exit(127);
    }
    close(out_pipe[1]);
    return std::make_pair(pid, out_pipe[0]);
  };
  auto read_line = [](int fd) {
    std::string line;
    char c;
    while (read(fd, &c, 1) == 1 && c != '\n') line += c;
    return line;
  };

  auto [pid, out] = run(true);
  std::string appended = read_line(out);
  unsigned long long first = 0, last = 0;
  ASSERT_EQ(std::sscanf(appended.c_str(), "appended %llu %llu", &first, &last), 2) << appended;
  ASSERT_TRUE(WaitFor([&] { return SeenSeqs("truck-2").size() >= 200; }))
      << ReadFile(dir_ / "driver.log");
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  close(out);
  ASSERT_LT(SeenSeqs("truck-2").size(), last - first + 1) << "drained before the kill";
  // The broker noticed the dead device and published its last will.
  ASSERT_TRUE(WaitFor(
      [&] { return acker_->Statuses()["truck-2"] == StatusPayload(false, "test-driver"); }));

  auto [pid2, out2] = run(false);
  std::string line;
  for (int i = 0; i < 3 && line != "drained"; ++i) line = read_line(out2);
  EXPECT_EQ(line, "drained") << ReadFile(dir_ / "driver.log");
  waitpid(pid2, &status, 0);
  close(out2);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(dir_ / "driver.log");

  std::set<uint64_t> seen = SeenSeqs("truck-2");
  for (uint64_t seq = first; seq <= last; ++seq) {
    ASSERT_TRUE(seen.count(seq)) << "seq " << seq << " lost";
  }
  OutboxOptions o;
  o.path = db.string();
  auto reopened = Outbox::Open(o);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->Stats().events, 0u);
}

// ---- Least privilege ----

TEST_F(UplinkIT, ADeviceCannotPublishAsAnotherDevice) {
  StartBroker(true);
  StartAcker(true);
  OpenOutbox();
  AppendFixes(5);
  // truck-2's certificate, configured as truck-1: publishes on fleet/truck-1/up.
  UplinkOptions o = Options(true, "truck-1");
  o.tls.cert_file = GetTestPki().device("truck-2").cert;
  o.tls.key_file = GetTestPki().device("truck-2").key;
  StartUplink(o);
  ASSERT_TRUE(WaitFor([&] { return uplink_->Stats().batches_sent >= 1; })) << broker_->log();

  // An honest truck-3 publishing after it shows the acker was listening all along.
  auto honest_box = Outbox::Open(OutboxOptions{.path = (dir_ / "honest.db").string()});
  ASSERT_TRUE(honest_box.ok());
  ASSERT_TRUE((*honest_box)->Append(testing::MakeFixEvent(1)).ok());
  auto honest = Uplink::Create(**honest_box, hal::Clock::System(), Options(true, "truck-3"));
  ASSERT_TRUE(honest.ok());
  ASSERT_TRUE((*honest)->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return (*honest_box)->Stats().events == 0; })) << broker_->log();
  (*honest)->Stop();

  EXPECT_TRUE(SeenSeqs("truck-1").empty()) << "the broker let truck-2 publish as truck-1";
  EXPECT_EQ(OutboxEvents(), 5u) << "nothing may be deleted without the bridge's ack";
}

TEST_F(UplinkIT, UntrustedOrExpiredCertificatesCannotConnectAndTheCauseIsSaid) {
  StartBroker(true);
  StartAcker(true);
  OpenOutbox();
  AppendFixes(3);
  struct Case {
    const char* name;
    testing::CertPair cert;
    fs::path ca;
    const char* words;
  };
  const testing::TestPki& pki = GetTestPki();
  Case cases[] = {
      {"certificate from an unknown CA", pki.rogue_device, pki.ca,
       "rejected this device's certificate: it does not trust the CA"},
      {"expired device certificate", pki.expired_device, pki.ca, "expired on 2020-01-01"},
      {"broker signed by a CA the device does not trust", pki.device("truck-1"), pki.rogue_ca,
       "not signed by a CA in"},
  };
  // All at once: each attempt costs a TLS handshake and Paho's connect latency.
  std::vector<std::unique_ptr<Uplink>> uplinks;
  for (const Case& c : cases) {
    UplinkOptions o = Options(true);
    o.tls.cert_file = c.cert.cert;
    o.tls.key_file = c.cert.key;
    o.tls.ca_file = c.ca;
    auto uplink = Uplink::Create(*outbox_, hal::Clock::System(), o);
    ASSERT_TRUE(uplink.ok()) << c.name << ": " << uplink.status().ToString();
    ASSERT_TRUE((*uplink)->Start().ok());
    uplinks.push_back(std::move(*uplink));
  }
  for (size_t i = 0; i < uplinks.size(); ++i) {
    const Case& c = cases[i];
    ASSERT_TRUE(WaitFor([&] { return !uplinks[i]->Stats().last_connect_error.empty(); })) << c.name;
    UplinkStats s = uplinks[i]->Stats();
    uplinks[i]->Stop();
    EXPECT_EQ(s.connects, 0u) << c.name;
    EXPECT_NE(s.last_connect_error.find(c.words), std::string::npos)
        << c.name << ": " << s.last_connect_error;
  }
  EXPECT_EQ(OutboxEvents(), 3u);
  EXPECT_TRUE(acker_->Records().empty());
}

TEST_F(UplinkIT, ABrokerCertificateForAnotherHostIsRefused) {
  StartBroker(true, GetTestPki().server_other_host);
  OpenOutbox();
  StartUplink(Options(true));
  ASSERT_TRUE(WaitFor([&] { return !uplink_->Stats().last_connect_error.empty(); }));
  UplinkStats s = uplink_->Stats();
  EXPECT_EQ(s.connects, 0u);
  EXPECT_NE(s.last_connect_error.find("host name mismatch"), std::string::npos)
      << s.last_connect_error;
}

// ---- Commands ----

TEST_F(UplinkIT, AManifestCommandReachesTheHandlerAndItsResultComesBack) {
  StartBroker(false);
  StartAcker(false);
  OpenOutbox();
  std::atomic<int> handled{0};
  Manifest seen_manifest;
  std::mutex mu;
  UplinkOptions o = Options(false);
  auto uplink = Uplink::Create(*outbox_, hal::Clock::System(), o);
  ASSERT_TRUE(uplink.ok());
  uplink_ = std::move(*uplink);
  uplink_->SetCommandHandler([&](const Command& c) {
    CommandResult r;
    if (const auto* m = std::get_if<Manifest>(&c.body)) {
      std::lock_guard<std::mutex> lk(mu);
      seen_manifest = *m;
      r.ok = true;
      r.message = "manifest with " + std::to_string(m->stops.size()) + " stops stored";
    }
    ++handled;
    return r;
  });
  ASSERT_TRUE(uplink_->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return uplink_->Stats().connected; }));

  Command command;
  command.command_id = "cmd-42";
  Manifest manifest;
  manifest.manifest_id = "route-2024-06-01";
  manifest.date = "2024-06-01";
  manifest.stops = {ManifestStop{"stop-1", "order-1", "Marienplatz 1", 0, 0, 1},
                    ManifestStop{"stop-2", "order-2", "Sendlinger Tor", 0, 0, 2}};
  command.body = manifest;
  auto payload = EncodeCommand(command);
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  ASSERT_TRUE(acker_->Publish(TopicCmd("truck-1"), *payload));

  ASSERT_TRUE(WaitFor([&] { return !acker_->Results().empty(); }));
  CommandResult result = acker_->Results().front();
  EXPECT_EQ(result.command_id, "cmd-42");
  EXPECT_TRUE(result.ok);
  EXPECT_EQ(result.message, "manifest with 2 stops stored");
  EXPECT_EQ(handled.load(), 1);
  {
    std::lock_guard<std::mutex> lk(mu);
    EXPECT_EQ(seen_manifest, manifest);
  }

  // A command of a newer schema: refused with the reason, the sender still gets an answer.
  std::string newer;
  newer += '\x08';  // field 1 (schema_version), varint
  newer += '\x63';  // 99
  newer += '\x12';  // field 2 (command_id), length-delimited
  newer += '\x07';
  newer += "cmd-bad";
  ASSERT_TRUE(acker_->Publish(TopicCmd("truck-1"), newer));
  ASSERT_TRUE(WaitFor([&] { return acker_->Results().size() >= 2; }));
  CommandResult refused = acker_->Results()[1];
  EXPECT_EQ(refused.command_id, "cmd-bad");
  EXPECT_FALSE(refused.ok);
  EXPECT_FALSE(refused.message.empty());
  EXPECT_EQ(uplink_->Stats().commands_rejected, 1u);
  EXPECT_EQ(uplink_->Stats().commands_received, 2u);
  EXPECT_EQ(handled.load(), 1);
}

}  // namespace
}  // namespace waybill::sync
