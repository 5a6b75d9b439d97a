// Provisioning round trip: `waybillctl ca init`, `provision` (key + CSR), `ca sign`,
// `provision --install-cert`, then waybilld started with the waybill.toml provisioning wrote
// connects to a real Mosquitto over mutual TLS (require_certificate, CN as the ACL user) and the
// test acker acknowledges its events. Also: a certificate of another CA is refused with the cause,
// and re-provisioning (new key, new certificate, new id) never sends the sequence backwards.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "support/acker.h"
#include "support/mosquitto.h"
#include "support/test_pki.h"
#include "support/waybilld_process.h"

namespace waybill::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct CtlRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

std::string Quote(const std::string& s) { return "'" + s + "'"; }

CtlRun Ctl(const std::string& args) {
  CtlRun r;
  FILE* p = popen((std::string(WAYBILLCTL_PATH) + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

unsigned Mode(const fs::path& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

class ProvisionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("waybill-provision-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    etc_ = dir_ / "etc";
    ca_ = dir_ / "fleet-ca";
    CtlRun init = Ctl("ca init --dir " + Quote(ca_) + " --name 'Test Fleet CA' --days 30");
    ASSERT_EQ(init.exit_code, 0) << init.output;
    outputs_ += init.output;
  }
  void TearDown() override {
    daemon_.reset();
    acker_.reset();
    broker_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // The whole flow for `id`: key + CSR on the unit, signed by the fleet CA, installed.
  void Provision(const std::string& id, const std::string& broker, const std::string& extra = "") {
    CtlRun first = Ctl("provision --dir " + Quote(etc_) + " --device-id " + id +
                       " --board host-sim --broker " + broker + " --data-dir " +
                       Quote(dir_ / "data") + " " + extra);
    ASSERT_EQ(first.exit_code, 0) << first.output;
    EXPECT_NE(first.output.find("not complete yet"), std::string::npos) << first.output;
    CtlRun sign = Ctl("ca sign --ca " + Quote(ca_) + " --csr " + Quote(etc_ / "device.csr") +
                      " --out " + Quote(dir_ / (id + ".pem")) + " --force");
    ASSERT_EQ(sign.exit_code, 0) << sign.output;
    CtlRun install =
        Ctl("provision --dir " + Quote(etc_) + " --install-cert " + Quote(dir_ / (id + ".pem")) +
            " --ca-cert " + Quote(ca_ / "ca.crt") + " --broker-ca " + Quote(GetTestPki().ca));
    ASSERT_EQ(install.exit_code, 0) << install.output;
    EXPECT_NE(install.output.find("provisioned: waybilld can connect as " + id), std::string::npos)
        << install.output;
    outputs_ += first.output + sign.output + install.output;
  }

  // Records `n` deliveries through the local API; returns their sequences.
  std::vector<uint64_t> Record(int n) {
    std::vector<uint64_t> seqs;
    httplib::Client client("127.0.0.1", daemon_->port());
    for (int i = 0; i < n; ++i) {
      json body = {{"order_id", "ORD-" + std::to_string(seqs_seen_++)}, {"kind", "delivered"}};
      auto res = client.Post("/v1/deliveries", body.dump(), "application/json");
      EXPECT_TRUE(res && res->status == 201) << (res ? res->body : "no answer");
      if (res && res->status == 201) seqs.push_back(json::parse(res->body)["seq"].get<uint64_t>());
    }
    return seqs;
  }

  void StartDaemon() {
    // One process object across restarts: each start gets a log of its own.
    if (!daemon_) {
      daemon_ = std::make_unique<WaybilldProcess>(dir_ / "truck");
      daemon_->set_config_file(etc_ / "waybill.toml");
    }
    std::string error;
    ASSERT_GT(daemon_->Start(20, &error), 0) << error;
  }

  // No key ever appears in what waybillctl printed.
  void ExpectNoKeyMaterialPrinted() {
    for (const fs::path& key : {etc_ / "device.key", ca_ / "ca.key"}) {
      std::string pem = ReadAll(key);
      ASSERT_FALSE(pem.empty()) << key;
      std::string body = pem.substr(pem.find('\n') + 1, 32);
      EXPECT_EQ(outputs_.find(body), std::string::npos) << "key material of " << key << " printed";
    }
    EXPECT_EQ(outputs_.find("PRIVATE KEY-----"), std::string::npos);
  }

  fs::path dir_, etc_, ca_;
  std::string outputs_;
  int seqs_seen_ = 0;
  std::unique_ptr<Mosquitto> broker_;
  std::unique_ptr<TestAcker> acker_;
  std::unique_ptr<WaybilldProcess> daemon_;
};

TEST_F(ProvisionTest, AProvisionedUnitConnectsOverMutualTlsAndItsEventsAreAcknowledged) {
  // The broker trusts client certificates of the test PKI (the acker's) and of the new fleet CA.
  const TestPki& pki = GetTestPki();
  std::ofstream(dir_ / "client-cas.pem") << ReadAll(pki.ca) << ReadAll(ca_ / "ca.crt");
  MosquittoOptions mo;
  mo.tls = true;
  mo.client_ca = dir_ / "client-cas.pem";
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

  ASSERT_NO_FATAL_FAILURE(Provision("truck-1", broker_->uri()));
  EXPECT_EQ(Mode(etc_ / "device.key"), 0600u);
  EXPECT_EQ(Mode(ca_ / "ca.key"), 0600u);
  ExpectNoKeyMaterialPrinted();

  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ASSERT_TRUE(daemon_->WaitForStatus(
      [](const json& st) { return st["uplink"].value("connected", false); }, 15000))
      << daemon_->log() << broker_->log();
  std::vector<uint64_t> seqs = Record(3);
  ASSERT_EQ(seqs.size(), 3u);
  ASSERT_TRUE(daemon_->WaitForStatus(
      [](const json& st) {
        return st["outbox"]["deliveries"] == 0 && st["uplink"]["events_acked"] > 0;
      },
      15000))
      << daemon_->Status().dump(2) << "\n"
      << daemon_->log();
  std::set<uint64_t> acked;
  for (const AckerRecord& r : acker_->Records()) {
    EXPECT_EQ(r.device, "truck-1");
    acked.insert(r.seq);
  }
  for (uint64_t seq : seqs) EXPECT_TRUE(acked.count(seq)) << "delivery " << seq;
  // The broker knew the unit by its certificate's CN.
  EXPECT_NE(broker_->log().find("u'truck-1'"), std::string::npos) << broker_->log();
}

TEST_F(ProvisionTest, ACertificateOfAnotherCaIsRefusedWithTheCause) {
  CtlRun first = Ctl("provision --dir " + Quote(etc_) +
                     " --device-id truck-2 --board host-sim --broker ssl://127.0.0.1:8883");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  CtlRun other = Ctl("ca init --dir " + Quote(dir_ / "other-ca") + " --name 'Other CA'");
  ASSERT_EQ(other.exit_code, 0) << other.output;
  CtlRun sign = Ctl("ca sign --ca " + Quote(dir_ / "other-ca") + " --csr " +
                    Quote(etc_ / "device.csr") + " --out " + Quote(dir_ / "other.pem"));
  ASSERT_EQ(sign.exit_code, 0) << sign.output;

  CtlRun install = Ctl("provision --dir " + Quote(etc_) + " --install-cert " +
                       Quote(dir_ / "other.pem") + " --ca-cert " + Quote(ca_ / "ca.crt"));
  EXPECT_EQ(install.exit_code, 1) << install.output;
  EXPECT_NE(install.output.find("not correctly signed by the trusted CA"), std::string::npos)
      << install.output;
  EXPECT_FALSE(fs::exists(etc_ / "device.pem"));

  // A certificate made for another unit's key is refused too, before any chain check.
  CtlRun key2 = Ctl("provision --dir " + Quote(dir_ / "etc2") +
                    " --device-id truck-2 --board host-sim --broker ssl://127.0.0.1:8883");
  ASSERT_EQ(key2.exit_code, 0) << key2.output;
  CtlRun sign2 = Ctl("ca sign --ca " + Quote(ca_) + " --csr " + Quote(dir_ / "etc2/device.csr") +
                     " --out " + Quote(dir_ / "etc2.pem"));
  ASSERT_EQ(sign2.exit_code, 0) << sign2.output;
  CtlRun wrong = Ctl("provision --dir " + Quote(etc_) + " --install-cert " +
                     Quote(dir_ / "etc2.pem") + " --ca-cert " + Quote(ca_ / "ca.crt"));
  EXPECT_EQ(wrong.exit_code, 1) << wrong.output;
  EXPECT_NE(wrong.output.find("does not belong to the key"), std::string::npos) << wrong.output;

  // A tampered CSR is refused by `ca sign`, saying why.
  std::string csr = ReadAll(etc_ / "device.csr");
  csr[csr.size() / 2] = csr[csr.size() / 2] == 'A' ? 'B' : 'A';
  std::ofstream(dir_ / "tampered.csr") << csr;
  CtlRun tampered = Ctl("ca sign --ca " + Quote(ca_) + " --csr " + Quote(dir_ / "tampered.csr") +
                        " --out " + Quote(dir_ / "tampered.pem"));
  EXPECT_NE(tampered.exit_code, 0);
  EXPECT_NE(tampered.output.find("tampered.csr"), std::string::npos) << tampered.output;
  EXPECT_FALSE(fs::exists(dir_ / "tampered.pem"));
}

TEST_F(ProvisionTest, ReprovisioningNeverSendsTheSequenceBackwards) {
  // No broker: the unit records and keeps everything in its outbox.
  std::string broker = "ssl://127.0.0.1:" + std::to_string(FreeLoopbackPort());
  ASSERT_NO_FATAL_FAILURE(Provision("truck-3", broker));
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::vector<uint64_t> before = Record(3);
  ASSERT_EQ(before.size(), 3u);
  ASSERT_TRUE(daemon_->Stop(SIGTERM).has_value());

  // A new key and certificate for the same unit: the outbox and its lease stay.
  ASSERT_NO_FATAL_FAILURE(Provision("truck-3", broker, "--rotate-key"));
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::vector<uint64_t> after = Record(3);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_GT(after.front(), before.back());
  ASSERT_TRUE(daemon_->Stop(SIGTERM).has_value());

  // A new id while events wait is refused, with their count; nothing changes.
  std::string toml_before = ReadAll(etc_ / "waybill.toml");
  CtlRun renamed = Ctl("provision --dir " + Quote(etc_) + " --device-id truck-33");
  EXPECT_EQ(renamed.exit_code, 3) << renamed.output;
  EXPECT_NE(renamed.output.find("events are waiting in " + (dir_ / "data/outbox.db").string()),
            std::string::npos)
      << renamed.output;
  EXPECT_NE(renamed.output.find("--force"), std::string::npos) << renamed.output;
  EXPECT_EQ(ReadAll(etc_ / "waybill.toml"), toml_before);

  // With --force it goes through, and the sequence still carries on.
  ASSERT_NO_FATAL_FAILURE(Provision("truck-33", broker, "--force"));
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::vector<uint64_t> renamed_seqs = Record(2);
  ASSERT_EQ(renamed_seqs.size(), 2u);
  EXPECT_GT(renamed_seqs.front(), after.back());
  EXPECT_EQ(daemon_->Status()["device_id"], "truck-33");
  ExpectNoKeyMaterialPrinted();
}

}  // namespace
}  // namespace waybill::testing
