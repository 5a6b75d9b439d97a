#include "waybill/bridge/proof_verifier.h"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "waybill/sync/pki.h"
#include "waybill/sync/proof_signature.h"
#include "waybill/sync/wire.h"

namespace waybill::bridge {

namespace {

// A certificate that failed its checks is checked again after this long.
constexpr int64_t kRecheckFailedS = 60;

std::string Iso8601S(int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

}  // namespace

struct DeviceCertificates::Entry {
  int64_t mtime_ns = 0;
  int64_t size = 0;
  int64_t checked_unix_s = 0;
  std::shared_ptr<const sync::CertificateKey> key;  // null: `error` says why it is not usable
  std::string error;
};

DeviceCertificates::DeviceCertificates(std::string certs_dir, std::string ca_file,
                                       std::function<int64_t()> now_unix_s)
    : certs_dir_(std::move(certs_dir)),
      ca_file_(std::move(ca_file)),
      now_unix_s_(std::move(now_unix_s)) {
  if (!now_unix_s_) {
    now_unix_s_ = [] {
      return std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
}

DeviceCertificates::~DeviceCertificates() = default;

std::shared_ptr<const sync::CertificateKey> DeviceCertificates::KeyFor(
    std::string_view device, ProofRefusal* refusal) const {
  refusal->reason = RejectReason::kUnknownDevice;
  // The id came through DeviceFromTopic ([A-Za-z0-9_-]): it cannot leave the folder.
  if (!sync::IsValidDeviceId(std::string(device))) {
    refusal->detail = "device id is not valid, so it has no certificate";
    return nullptr;
  }
  std::string path = (std::filesystem::path(certs_dir_) / (std::string(device) + ".pem")).string();
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    refusal->detail = "no certificate for device " + std::string(device) + ": " + path + ": " +
                      std::strerror(err) + " (register it: docs/PROOFS.md)";
    return nullptr;
  }
  int64_t mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  int64_t now_s = now_unix_s_();

  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(device);
  bool fresh = it != cache_.end() && it->second.mtime_ns == mtime_ns &&
               it->second.size == static_cast<int64_t>(st.st_size) &&
               (it->second.key || now_s - it->second.checked_unix_s < kRecheckFailedS);
  if (!fresh) {
    Entry entry;
    entry.mtime_ns = mtime_ns;
    entry.size = static_cast<int64_t>(st.st_size);
    entry.checked_unix_s = now_s;
    Result<std::unique_ptr<sync::CertificateKey>> key = sync::CertificateKey::Load(path);
    if (!key.ok()) {
      entry.error = key.status().message();
    } else if ((*key)->info().common_name != device) {
      entry.error = "certificate " + path + " is for CN=" + (*key)->info().common_name +
                    ", not for device " + std::string(device);
    } else if (Status chain = sync::VerifyCertificateChain(path, ca_file_); !chain.ok()) {
      entry.error = chain.message();
    } else {
      entry.key = std::shared_ptr<const sync::CertificateKey>(std::move(key).value());
    }
    it = cache_.insert_or_assign(std::string(device), std::move(entry)).first;
  }
  const Entry& e = it->second;
  if (!e.key) {
    refusal->detail = e.error;
    return nullptr;
  }
  const sync::CertificateInfo& info = e.key->info();
  if (now_s < info.not_before_unix_s || now_s > info.not_after_unix_s) {
    refusal->detail = "certificate " + path + " (serial " + info.serial_hex + ") is valid from " +
                      Iso8601S(info.not_before_unix_s) + " to " + Iso8601S(info.not_after_unix_s) +
                      ", not now (" + Iso8601S(now_s) + ")";
    return nullptr;
  }
  return e.key;
}

std::optional<ProofRefusal> DeviceCertificates::Check(std::string_view device,
                                                      const sync::ProofOfDelivery& proof) const {
  if (proof.device_signature.empty()) {
    return ProofRefusal{RejectReason::kUnsignedProof,
                        "carries no device signature (the device has no key configured, or runs "
                        "firmware that does not sign)"};
  }
  ProofRefusal refusal;
  std::shared_ptr<const sync::CertificateKey> key = KeyFor(device, &refusal);
  if (!key) return refusal;
  Status s = key->VerifySha256(sync::CanonicalProofBytes(device, proof), proof.device_signature);
  if (!s.ok()) return ProofRefusal{RejectReason::kBadSignature, s.message()};
  return std::nullopt;
}

std::shared_ptr<const ProofVerifier> MakeProofVerifier(const ProofsConfig& config) {
  if (config.device_certs_dir.empty()) return nullptr;
  return std::make_shared<DeviceCertificates>(config.device_certs_dir, config.ca_file);
}

}  // namespace waybill::bridge
