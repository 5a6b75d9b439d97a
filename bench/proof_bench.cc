// What signed proofs of delivery cost: ECDSA P-256 signing on the device (per proof recorded),
// verifying on the bridge (per proof ingested, through DeviceCertificates with its certificate
// cache, as the store thread does it), and the bridge's ingest of batches of signed proofs with
// and without verification, to set against its ingest rate of fixes.
//
//   bench_proof [--seconds S]   (each figure is measured for S seconds, default 2)
//
// Prints `figure NAME VALUE UNIT` on stdout, diagnostics on stderr.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "waybill/bridge/ingest.h"
#include "waybill/bridge/proof_verifier.h"
#include "waybill/sync/events.h"
#include "waybill/sync/pki.h"
#include "waybill/sync/proof_signature.h"
#include "waybill/sync/wire.h"

namespace {

using namespace waybill;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

void Figure(const char* name, double value, const char* unit) {
  std::printf("figure %s %.6g %s\n", name, value, unit);
  std::fflush(stdout);
}

// Runs `op` for about `seconds` (at least 20 times); returns operations per second.
double Rate(double seconds, const std::function<void()>& op) {
  auto start = Clock::now();
  long n = 0;
  double elapsed = 0;
  while (n < 20 || elapsed < seconds) {
    op();
    ++n;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (n >= 10'000'000) break;
  }
  return n / elapsed;
}

int64_t NowS() { return static_cast<int64_t>(std::time(nullptr)); }

sync::ProofOfDelivery Proof(int i) {
  sync::ProofOfDelivery p;
  p.stop_id = "stop-" + std::to_string(i);
  p.order_id = "ORD-" + std::to_string(100000 + i);
  p.recipient_name = "M. Huber";
  p.signature_width = 760;
  p.signature_height = 300;
  // A typical signature: 6 strokes of 40 points.
  for (int s = 0; s < 6; ++s) {
    sync::SignatureStroke stroke;
    for (int k = 0; k < 40; ++k) stroke.push_back({100 + s * 90 + k, 150 + (k * 7 % 60)});
    p.signature.push_back(std::move(stroke));
  }
  p.photo_sha256.emplace();
  p.photo_sha256->fill(static_cast<uint8_t>(i));
  p.photo_bytes = 180'000;
  p.photo_mime = "image/jpeg";
  return p;
}

bool Check(const Status& s, const char* what) {
  if (!s.ok()) std::fprintf(stderr, "bench_proof: %s: %s\n", what, s.ToString().c_str());
  return s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
  }
  fs::path dir = fs::temp_directory_path() / ("waybill-bench-proof-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "certs");

  // A fleet CA and truck-1 provisioned as waybillctl does it.
  sync::CaInitOptions ca;
  ca.now_unix_s = NowS();
  if (!Check(sync::InitCa((dir / "ca").string(), ca), "ca")) return 1;
  std::string key_path = (dir / "truck-1.key").string();
  if (!Check(sync::GenerateKeyFile(key_path, {}), "key")) return 1;
  auto key = sync::DeviceKey::Load(key_path);
  if (!key.ok()) return 1;
  sync::SignOptions so;
  so.now_unix_s = NowS();
  auto cert = sync::SignCsr((dir / "ca").string(), *(*key)->MakeCsrPem("truck-1"), "csr", so);
  if (!cert.ok()) return 1;
  std::ofstream(dir / "certs" / "truck-1.pem") << *cert;
  std::string ca_file = (dir / "ca" / sync::kCaCertFile).string();

  sync::ProofOfDelivery proof = Proof(1);
  std::string canonical = sync::CanonicalProofBytes("truck-1", proof);
  std::fprintf(stderr, "a proof of %zu strokes: %zu canonical bytes\n", proof.signature.size(),
               canonical.size());

  Figure("proof.canonical_per_s",
         Rate(seconds, [&] { canonical = sync::CanonicalProofBytes("truck-1", proof); }), "1/s");

  // Device side: what Recorder::RecordProof adds before the append.
  std::string signature;
  Figure("proof.sign_per_s",
         Rate(seconds,
              [&] {
                signature = (*key)->SignSha256(sync::CanonicalProofBytes("truck-1", proof)).value();
              }),
         "1/s");
  proof.device_signature = signature;

  // Bridge side: the verifier the store thread uses (certificate cached after the first proof).
  bridge::DeviceCertificates certs((dir / "certs").string(), ca_file);
  bool all_ok = true;
  Figure("proof.verify_per_s",
         Rate(seconds,
              [&] {
                if (certs.Check("truck-1", proof)) all_ok = false;
              }),
         "1/s");
  if (!all_ok) {
    std::fprintf(stderr, "bench_proof: a good proof did not verify\n");
    return 1;
  }
  // A certificate read and chain check (a new or re-provisioned truck's first proof).
  Figure("proof.certificate_load_per_s",
         Rate(seconds / 4,
              [&] {
                bridge::DeviceCertificates fresh((dir / "certs").string(), ca_file);
                if (fresh.Check("truck-1", proof)) all_ok = false;
              }),
         "1/s");

  // Ingest of a batch of 50 signed proofs, with and without verification.
  std::vector<sync::StoredEvent> events;
  int64_t now_ms = NowS() * 1000;
  for (int i = 0; i < 50; ++i) {
    sync::ProofOfDelivery p = Proof(i);
    p.device_signature = (*key)->SignSha256(sync::CanonicalProofBytes("truck-1", p)).value();
    events.push_back({static_cast<uint64_t>(i + 1), sync::EventClass::kProofOfDelivery, now_ms,
                      hal::TimeSource::kGnss, sync::EncodeProof(p).value()});
  }
  std::string payload = sync::EncodeBatch("truck-1", false, events).value();
  bridge::IngestOptions plain;
  bridge::IngestOptions verified;
  verified.proofs = std::make_shared<bridge::DeviceCertificates>((dir / "certs").string(), ca_file);
  size_t accepted = 0;
  double plain_rate = Rate(seconds, [&] {
    accepted = bridge::Ingest("fleet/truck-1/up", payload, now_ms, plain).accepted.size();
  });
  Figure("proof.ingest_unverified_per_s", plain_rate * events.size(), "1/s");
  double verified_rate = Rate(seconds, [&] {
    accepted = bridge::Ingest("fleet/truck-1/up", payload, now_ms, verified).accepted.size();
  });
  if (accepted != events.size()) {
    std::fprintf(stderr, "bench_proof: %zu of %zu proofs accepted\n", accepted, events.size());
    return 1;
  }
  Figure("proof.ingest_verified_per_s", verified_rate * events.size(), "1/s");
  fs::remove_all(dir);
  return 0;
}
