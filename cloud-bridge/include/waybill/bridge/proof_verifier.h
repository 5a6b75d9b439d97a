// DeviceCertificates: checks proofs of delivery against the device certificates of the fleet.
//
// A fleet registers a truck with the bridge by putting its certificate (the one `waybillctl ca
// sign` made at provisioning, CN = device id) in a folder as <device id>.pem. A certificate is
// usable when it chains to the fleet CA ([proofs] ca_file), its CN is the device id, and now is
// within its validity dates; the proof's signature must then verify with its key over the
// proof's canonical bytes (sync/proof_signature.h).
//
// Certificates are read when first needed and kept, keyed by the file's mtime and size: a file
// that changes (a re-provisioned truck) is read again at the next proof, and a new file is found
// without a restart. A certificate that failed its checks is kept as failed for a minute, then
// checked again (a clock that was behind, a CA fixed meanwhile); a missing file is looked for at
// every proof. The validity dates are checked at every proof, since a kept certificate expires.
// The CA file is read with each certificate check; changing it takes effect for certificates read
// after the change (restart the bridge to re-check every certificate at once).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "waybill/bridge/config.h"
#include "waybill/bridge/ingest.h"

namespace waybill::sync {
class CertificateKey;
}

namespace waybill::bridge {

class DeviceCertificates final : public ProofVerifier {
 public:
  // `now_unix_s` says what time it is (validity dates); the system clock when empty.
  DeviceCertificates(std::string certs_dir, std::string ca_file,
                     std::function<int64_t()> now_unix_s = {});
  ~DeviceCertificates() override;

  // Thread-safe; reads at most one certificate file per call (under an internal lock).
  std::optional<ProofRefusal> Check(std::string_view device,
                                    const sync::ProofOfDelivery& proof) const override;

 private:
  struct Entry;
  // The usable certificate key of `device`, or the refusal.
  std::shared_ptr<const sync::CertificateKey> KeyFor(std::string_view device,
                                                     ProofRefusal* refusal) const;

  std::string certs_dir_;
  std::string ca_file_;
  std::function<int64_t()> now_unix_s_;
  mutable std::mutex mu_;
  mutable std::map<std::string, Entry, std::less<>> cache_;
};

// The verifier the configuration asks for: DeviceCertificates when [proofs] device_certs_dir is
// set, null otherwise.
std::shared_ptr<const ProofVerifier> MakeProofVerifier(const ProofsConfig& config);

}  // namespace waybill::bridge
