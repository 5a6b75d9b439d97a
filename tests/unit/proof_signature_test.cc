// Signed proofs of delivery: the canonical bytes (pinned by a golden example so that the format
// cannot drift silently), signing and verifying with a provisioned key and its certificate, and
// the bridge's side: DeviceCertificates' verdicts, Ingest's refusals and the forwarded JSON.
#include "waybill/sync/proof_signature.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "unit/bridge_test_util.h"
#include "waybill/bridge/ingest.h"
#include "waybill/bridge/json_body.h"
#include "waybill/bridge/proof_verifier.h"
#include "waybill/sync/events.h"
#include "waybill/sync/pki.h"

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;
using bridge::RejectReason;

std::string Hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

sync::ProofOfDelivery Example() {
  sync::ProofOfDelivery p;
  p.stop_id = "s1";
  p.order_id = "o2";
  p.recipient_name = "Ann";
  p.signature_width = 3;
  p.signature_height = 2;
  p.signature = {{{1, -1}}};
  p.photo_sha256.emplace();
  p.photo_sha256->fill(0xab);
  p.photo_bytes = 258;
  p.photo_mime = "image/jpeg";
  return p;
}

TEST(ProofCanonicalBytes, AFixedExampleGivesTheDocumentedBytes) {
  std::string golden =
      "0000000e"
      "77617962696c6c2d706f642d7631"  // "waybill-pod-v1"
      "00000007"
      "747275636b2d37"  // "truck-7"
      "00000002"
      "7331"  // stop_id "s1"
      "00000002"
      "6f32"  // order_id "o2"
      "00000003"
      "416e6e"  // recipient_name "Ann"
      "01"      // a signature:
      "00000003"
      "00000002"  // width 3, height 2
      "00000001"  // one stroke
      "00000001"  // of one point
      "00000001"
      "ffffffff"                                                          // (1, -1)
      "01"                                                                // a photo:
      "abababababababababababababababababababababababababababababababab"  // its SHA-256
      "0000000000000102"                                                  // 258 bytes
      "0000000a"
      "696d6167652f6a706567";  // photo_mime "image/jpeg"
  EXPECT_EQ(Hex(sync::CanonicalProofBytes("truck-7", Example())), golden);
}

TEST(ProofCanonicalBytes, EveryFieldChangesTheBytes) {
  const std::string base = sync::CanonicalProofBytes("truck-7", Example());
  std::vector<std::pair<std::string, std::function<void(sync::ProofOfDelivery&)>>> changes = {
      {"stop_id", [](auto& p) { p.stop_id = "s2"; }},
      {"order_id", [](auto& p) { p.order_id = "o3"; }},
      {"recipient_name", [](auto& p) { p.recipient_name = "Anna"; }},
      {"width", [](auto& p) { p.signature_width = 4; }},
      {"height", [](auto& p) { p.signature_height = 3; }},
      {"a point", [](auto& p) { p.signature[0][0].y = 1; }},
      {"one more point",
       [](auto& p) {
         p.signature[0].push_back({2, 2});
       }},
      {"a stroke split in two",
       [](auto& p) {
         p.signature = {{{1, -1}}, {{2, 2}}};
       }},
      {"no signature", [](auto& p) { p.signature.clear(); }},
      {"photo hash", [](auto& p) { (*p.photo_sha256)[31] = 0xac; }},
      {"no photo", [](auto& p) { p.photo_sha256.reset(); }},
      {"photo_bytes", [](auto& p) { p.photo_bytes = 259; }},
      {"photo_mime", [](auto& p) { p.photo_mime = "image/png"; }},
  };
  for (auto& [what, change] : changes) {
    sync::ProofOfDelivery p = Example();
    change(p);
    EXPECT_NE(sync::CanonicalProofBytes("truck-7", p), base) << what;
  }
  EXPECT_NE(sync::CanonicalProofBytes("truck-8", Example()), base) << "the device id";
  // Lengths keep neighbouring fields apart: moving a byte from one to the next is a change.
  sync::ProofOfDelivery shifted = Example();
  shifted.stop_id = "s1o";
  shifted.order_id = "2";
  EXPECT_NE(sync::CanonicalProofBytes("truck-7", shifted), base);
  // What it does not sign: the signature itself.
  sync::ProofOfDelivery with_sig = Example();
  with_sig.device_signature = "\x30\x00";
  EXPECT_EQ(sync::CanonicalProofBytes("truck-7", with_sig), base);
}

TEST(ProofCanonicalBytes, SurviveTheBodyEncodingSoTheBridgeSeesWhatTheDeviceSigned) {
  std::vector<sync::ProofOfDelivery> proofs = {Example()};
  sync::ProofOfDelivery photo_only = Example();
  photo_only.signature.clear();  // width and height are then not in the body
  proofs.push_back(photo_only);
  sync::ProofOfDelivery no_photo = Example();
  no_photo.photo_sha256.reset();
  no_photo.photo_mime.clear();
  proofs.push_back(no_photo);
  for (const sync::ProofOfDelivery& p : proofs) {
    auto decoded = sync::DecodeProof(sync::EncodeProof(p).value());
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(Hex(sync::CanonicalProofBytes("truck-7", *decoded)),
              Hex(sync::CanonicalProofBytes("truck-7", p)));
  }
}

TEST(ProofBody, CarriesTheDeviceSignatureAndBoundsIt) {
  sync::ProofOfDelivery p = Example();
  p.device_signature = std::string(70, '\x5a');
  auto decoded = sync::DecodeProof(sync::EncodeProof(p).value());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->device_signature, p.device_signature);
  p.device_signature = std::string(73, '\x5a');
  Result<std::string> too_long = sync::EncodeProof(p);
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("device_signature: 73 bytes, at most 72"),
            std::string::npos)
      << too_long.status().message();
}

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

// A fleet CA, devices provisioned as waybillctl does it (key, CSR, signed certificate), and the
// bridge's folder of device certificates.
class SignedProofTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("waybill-proof-sig-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "certs");
    sync::CaInitOptions ca;
    ca.now_unix_s = Now();
    ASSERT_TRUE(sync::InitCa((dir_ / "ca").string(), ca).ok());
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // A key for `id` signed by the CA in `ca_dir`; the certificate is returned as PEM.
  std::unique_ptr<sync::DeviceKey> Provision(const std::string& id, std::string* cert_pem,
                                             const std::string& ca_dir = "ca") {
    std::string key_path = (dir_ / (id + "-" + std::to_string(++keys_) + ".key")).string();
    EXPECT_TRUE(sync::GenerateKeyFile(key_path, {}).ok());
    auto key = sync::DeviceKey::Load(key_path);
    EXPECT_TRUE(key.ok());
    sync::SignOptions so;
    so.now_unix_s = Now();
    auto cert = sync::SignCsr((dir_ / ca_dir).string(), *(*key)->MakeCsrPem(id), "csr", so);
    EXPECT_TRUE(cert.ok()) << cert.status().ToString();
    *cert_pem = cert.ok() ? *cert : "";
    return std::move(key).value();
  }
  void Register(const std::string& file_id, const std::string& pem) {
    std::ofstream(dir_ / "certs" / (file_id + ".pem")) << pem;
  }
  sync::ProofOfDelivery Signed(const sync::DeviceKey& key, const std::string& device) {
    sync::ProofOfDelivery p = Example();
    p.device_signature = key.SignSha256(sync::CanonicalProofBytes(device, p)).value();
    return p;
  }
  std::string CaFile() const { return (dir_ / "ca" / sync::kCaCertFile).string(); }

  fs::path dir_;
  int keys_ = 0;
};

TEST_F(SignedProofTest, ASignedProofVerifiesAndATamperedOneDoesNot) {
  std::string pem;
  auto key = Provision("truck-1", &pem);
  std::ofstream(dir_ / "truck-1.crt") << pem;
  auto cert = sync::CertificateKey::Load((dir_ / "truck-1.crt").string());
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_EQ((*cert)->info().common_name, "truck-1");

  sync::ProofOfDelivery p = Signed(*key, "truck-1");
  EXPECT_LE(p.device_signature.size(), sync::kMaxDeviceSignatureBytes);
  EXPECT_TRUE(
      (*cert)->VerifySha256(sync::CanonicalProofBytes("truck-1", p), p.device_signature).ok());

  std::vector<std::pair<std::string, std::function<void(sync::ProofOfDelivery&)>>> tampers = {
      {"recipient name", [](auto& q) { q.recipient_name = "Bob"; }},
      {"a stroke point", [](auto& q) { q.signature[0][0].x += 1; }},
      {"photo hash", [](auto& q) { (*q.photo_sha256)[0] ^= 1; }},
  };
  for (auto& [what, tamper] : tampers) {
    sync::ProofOfDelivery q = p;
    tamper(q);
    Status s = (*cert)->VerifySha256(sync::CanonicalProofBytes("truck-1", q), q.device_signature);
    EXPECT_TRUE(s.IsInvalidArgument()) << what;
    EXPECT_NE(s.message().find("truck-1.crt"), std::string::npos) << s.message();
  }
  EXPECT_FALSE(
      (*cert)->VerifySha256(sync::CanonicalProofBytes("truck-2", p), p.device_signature).ok())
      << "the same proof claimed by another device";
}

TEST_F(SignedProofTest, TheBridgeVerifiesAgainstTheRegisteredCertificate) {
  std::string pem1, pem2;
  auto key1 = Provision("truck-1", &pem1);
  auto key2 = Provision("truck-2", &pem2);
  Register("truck-1", pem1);
  bridge::DeviceCertificates certs((dir_ / "certs").string(), CaFile());

  EXPECT_FALSE(certs.Check("truck-1", Signed(*key1, "truck-1"))) << "a good proof passes";

  sync::ProofOfDelivery unsigned_proof = Example();
  auto verdict = certs.Check("truck-1", unsigned_proof);
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->reason, RejectReason::kUnsignedProof);

  sync::ProofOfDelivery tampered = Signed(*key1, "truck-1");
  tampered.recipient_name = "Somebody Else";
  verdict = certs.Check("truck-1", tampered);
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->reason, RejectReason::kBadSignature);
  EXPECT_EQ(verdict->detail.find("Somebody"), std::string::npos) << "no recipient name in logs";

  verdict = certs.Check("truck-2", Signed(*key2, "truck-2"));
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->reason, RejectReason::kUnknownDevice);
  EXPECT_NE(verdict->detail.find("truck-2.pem"), std::string::npos) << verdict->detail;

  // truck-2 signs a proof and claims to be truck-1: truck-1's certificate does not verify it.
  verdict = certs.Check("truck-1", Signed(*key2, "truck-1"));
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->reason, RejectReason::kBadSignature);

  // Registered later: found at the next proof, without a restart.
  Register("truck-2", pem2);
  EXPECT_FALSE(certs.Check("truck-2", Signed(*key2, "truck-2"))) << "newly registered";
}

TEST_F(SignedProofTest, AnUnusableCertificateMakesTheDeviceUnknownWithTheCause) {
  std::string pem1, pem2, rogue_pem;
  auto key1 = Provision("truck-1", &pem1);
  auto key2 = Provision("truck-2", &pem2);
  sync::CaInitOptions other;
  other.now_unix_s = Now();
  other.common_name = "Rogue CA";
  ASSERT_TRUE(sync::InitCa((dir_ / "rogue-ca").string(), other).ok());
  auto rogue = Provision("truck-3", &rogue_pem, "rogue-ca");
  Register("truck-1", pem1);
  Register("truck-2", pem1);  // truck-1's certificate filed under truck-2
  Register("truck-3", rogue_pem);
  int64_t now_s = Now();
  bridge::DeviceCertificates certs((dir_ / "certs").string(), CaFile(), [&now_s] { return now_s; });

  auto verdict = certs.Check("truck-2", Signed(*key1, "truck-2"));
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->reason, RejectReason::kUnknownDevice);
  EXPECT_NE(verdict->detail.find("CN=truck-1"), std::string::npos) << verdict->detail;

  verdict = certs.Check("truck-3", Signed(*rogue, "truck-3"));
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->reason, RejectReason::kUnknownDevice);
  EXPECT_NE(verdict->detail.find("not accepted by the CA"), std::string::npos) << verdict->detail;

  // A kept certificate expires: checked at every proof (825 days of validity by default).
  now_s += 900LL * 86400;
  verdict = certs.Check("truck-1", Signed(*key1, "truck-1"));
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->reason, RejectReason::kUnknownDevice);
  EXPECT_NE(verdict->detail.find("not now"), std::string::npos) << verdict->detail;
}

TEST_F(SignedProofTest, AReprovisionedTruckIsVerifiedWithItsNewCertificate) {
  std::string old_pem, new_pem;
  auto old_key = Provision("truck-1", &old_pem);
  Register("truck-1", old_pem);
  bridge::DeviceCertificates certs((dir_ / "certs").string(), CaFile());
  ASSERT_FALSE(certs.Check("truck-1", Signed(*old_key, "truck-1")));

  auto new_key = Provision("truck-1", &new_pem);
  fs::path file = dir_ / "certs" / "truck-1.pem";
  auto before = fs::last_write_time(file);
  Register("truck-1", new_pem);
  fs::last_write_time(file, before + std::chrono::seconds(1));  // coarse file system clocks
  EXPECT_FALSE(certs.Check("truck-1", Signed(*new_key, "truck-1"))) << "the new key";
  auto verdict = certs.Check("truck-1", Signed(*old_key, "truck-1"));
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->reason, RejectReason::kBadSignature) << "the old key no longer";
}

TEST_F(SignedProofTest, IngestDeadLettersBadProofsWithTheirReasonAndAcceptsTheRest) {
  std::string pem;
  auto key = Provision("truck-7", &pem);
  Register("truck-7", pem);
  bridge::IngestOptions options;
  options.proofs =
      std::make_shared<bridge::DeviceCertificates>((dir_ / "certs").string(), CaFile());
  int64_t now = NowMs();
  auto event = [&](uint64_t seq, const sync::ProofOfDelivery& p) {
    return sync::StoredEvent{seq, sync::EventClass::kProofOfDelivery, now, hal::TimeSource::kGnss,
                             sync::EncodeProof(p).value()};
  };
  sync::ProofOfDelivery good = Signed(*key, "truck-7");
  sync::ProofOfDelivery tampered = good;
  tampered.recipient_name = "Mallory";
  std::string payload =
      BatchOf("truck-7", {FixAt(1, now), event(2, good), event(3, tampered), event(4, Example())});
  bridge::IngestItem item = bridge::Ingest("fleet/truck-7/up", payload, now, options);
  ASSERT_FALSE(item.message_reason);
  EXPECT_TRUE(item.proofs_verified);
  ASSERT_EQ(item.accepted.size(), 2u);
  EXPECT_EQ(item.accepted[1].seq, 2u);
  ASSERT_EQ(item.rejected.size(), 2u);
  EXPECT_EQ(item.rejected[0].event.seq, 3u);
  EXPECT_EQ(item.rejected[0].reason, RejectReason::kBadSignature);
  EXPECT_NE(item.rejected[0].detail.find("seq 3"), std::string::npos);
  EXPECT_EQ(item.rejected[1].reason, RejectReason::kUnsignedProof);
  EXPECT_EQ(bridge::ToString(RejectReason::kUnsignedProof), "unsigned_proof");
  EXPECT_EQ(bridge::ToString(RejectReason::kUnknownDevice), "unknown_device");
  EXPECT_EQ(bridge::ToString(RejectReason::kBadSignature), "bad_signature");

  // Without a verifier, proofs pass unverified (and say so when forwarded).
  bridge::IngestItem open = bridge::Ingest("fleet/truck-7/up", payload, now, {});
  EXPECT_FALSE(open.proofs_verified);
  EXPECT_EQ(open.accepted.size(), 4u);
}

TEST(ProofJson, CarriesTheSignatureAndWhetherTheBridgeVerifiedIt) {
  bridge::ForwardBatch batch;
  batch.route = bridge::Route::kProofs;
  batch.idempotency_key = "wb1-proofs-x";
  for (bool verified : {true, false}) {
    sync::ProofOfDelivery p = Example();
    if (verified) p.device_signature = std::string("\x30\x06\x02\x01\x01\x02\x01\x02", 8);
    bridge::InboxEvent e;
    e.device = "truck-7";
    e.event = sync::StoredEvent{batch.events.size() + 1, sync::EventClass::kProofOfDelivery,
                                NowMs(), hal::TimeSource::kGnss, sync::EncodeProof(p).value()};
    e.signature_verified = verified;
    batch.events.push_back(e);
  }
  nlohmann::json body = nlohmann::json::parse(bridge::RequestBody(batch));
  const nlohmann::json& signed_proof = body["events"][0]["proof"];
  EXPECT_EQ(signed_proof["signature_verified"], true);
  EXPECT_EQ(signed_proof["device_signature"], "MAYCAQECAQI=");
  const nlohmann::json& unsigned_proof = body["events"][1]["proof"];
  EXPECT_EQ(unsigned_proof["signature_verified"], false);
  EXPECT_FALSE(unsigned_proof.contains("device_signature"));
}

}  // namespace
}  // namespace waybill::testing
