// Ingest: what the bridge makes of one MQTT message on fleet/<device>/up, before storing it.
//
// Pure and thread-safe: bytes and a clock reading in, a verdict out. A message is refused as a
// whole (and dead-lettered with its raw bytes) when it is over the size limit, does not decode as
// a Batch, arrives on a topic that is not fleet/<valid id>/up, or names another device in its
// payload than its topic (a forged identity: the broker's ACL lets a device write only its own
// topic, so the payload must agree). Otherwise each event is judged on its own: an implausible
// time, or a delivery or proof of delivery without its required fields, refuses that event alone
// (dead-lettered with its body); the rest are accepted. Refused events are acknowledged like the
// accepted ones once stored: the truck need not keep what the bridge holds in its dead letters.
//
// With a ProofVerifier in the options, a proof of delivery must also carry the device's signature
// over its canonical bytes (sync/proof_signature.h), checked against the device's certificate;
// an unsigned proof, one from a device without a usable certificate and one whose signature does
// not verify are refused like any other event (dead-lettered with the cause, still acknowledged:
// a bad proof must not hold up the truck's queue).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "waybill/sync/events.h"
#include "waybill/sync/outbox.h"

namespace waybill::bridge {

enum class RejectReason : uint8_t {
  kOversized = 0,       // payload over sync::kMaxBatchBytes
  kMalformed = 1,       // not a Batch (DecodeBatch's reason in the detail)
  kTopic = 2,           // not fleet/<valid device id>/up
  kIdentity = 3,        // the payload's device id differs from the topic's
  kTime = 4,            // an event time before min_event_time_ms or after now + max_future_ms
  kProofFields = 5,     // a proof of delivery without a required field, or undecodable
  kDeliveryFields = 6,  // a delivery event without a required field, or undecodable
  kBody = 7,            // a fix or health body that does not decode
  kUnsignedProof = 8,   // proofs are verified and this one carries no device signature
  kUnknownDevice = 9,   // no usable certificate for the device (missing, foreign CA, CN, dates)
  kBadSignature = 10,   // the proof's signature does not verify with the device's certificate
};
inline constexpr int kRejectReasonCount = 11;
std::string_view ToString(RejectReason reason);  // "oversized", "malformed", ... (metric labels)

// Why a proof's signature was not accepted.
struct ProofRefusal {
  RejectReason reason =
      RejectReason::kBadSignature;  // kUnsignedProof, kUnknownDevice, kBadSignature
  std::string detail;  // the cause, naming the certificate file; never the recipient's name
};

// Checks the device signature of proofs of delivery (proof_verifier.h has the certificate-based
// one). Implementations are thread-safe: the store thread and waybillctl call Check.
class ProofVerifier {
 public:
  virtual ~ProofVerifier() = default;
  // nullopt: `proof` carries `device`'s valid signature over its canonical bytes.
  virtual std::optional<ProofRefusal> Check(std::string_view device,
                                            const sync::ProofOfDelivery& proof) const = 0;
};

struct IngestOptions {
  int64_t min_event_time_ms = 1'577'836'800'000;  // 2020-01-01
  int64_t max_future_ms = 86'400'000;
  // Set: every proof of delivery must verify (see the file comment). Null: proofs are accepted
  // unverified, and forwarded with "signature_verified": false.
  std::shared_ptr<const ProofVerifier> proofs;
};

struct RejectedEvent {
  sync::StoredEvent event;
  RejectReason reason = RejectReason::kBody;
  std::string detail;
};

struct IngestItem {
  std::string topic;
  std::string device;  // from the topic; empty when the topic is not a device's
  bool historical = false;
  int64_t received_ms = 0;
  std::vector<sync::StoredEvent> accepted;  // ascending seq
  std::vector<RejectedEvent> rejected;
  // The accepted proofs of delivery had their device signature verified (options.proofs set).
  bool proofs_verified = false;
  // Set when the whole message is refused; `payload` then holds its raw bytes.
  std::optional<RejectReason> message_reason;
  std::string message_detail;
  std::string payload;
};

IngestItem Ingest(std::string_view topic, std::string_view payload, int64_t received_ms,
                  const IngestOptions& options);

// Judges one event of `device`'s decoded batch (time, required fields, body, and a proof's
// signature when options.proofs is set); nullopt = accepted.
std::optional<RejectedEvent> JudgeEvent(const sync::StoredEvent& event, int64_t now_ms,
                                        const IngestOptions& options, std::string_view device);

}  // namespace waybill::bridge
