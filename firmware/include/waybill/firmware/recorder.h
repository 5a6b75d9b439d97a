// Recorder: turns what the truck observes into outbox events, stamped with honest time.
//
// Every Record* call returns only once the event is durably in the outbox (Outbox::Append), so
// a caller that answers "stored" to the driver is telling the truth. Thread-safe: the GNSS loop
// and the local API record concurrently; the outbox's group commit merges their fsyncs.
#pragma once

#include <cstdint>
#include <functional>

#include "waybill/hal/clock.h"
#include "waybill/hal/gnss_fix.h"
#include "waybill/status.h"
#include "waybill/sync/events.h"
#include "waybill/sync/outbox.h"

namespace waybill::firmware {

struct Stamp {
  int64_t ts_ms = 0;
  hal::TimeSource src = hal::TimeSource::kUnknown;
};

struct Recorded {
  uint64_t seq = 0;
  Stamp stamp;
};

class Recorder {
 public:
  // `now` says what time it is and from what source (see TimeKeeper). Both must outlive this.
  Recorder(sync::Outbox& outbox, std::function<Stamp()> now)
      : outbox_(outbox), now_(std::move(now)) {}

  // The caller stamps a fix: with its own GNSS time when the time keeper accepted it, else with
  // the time keeper's time less the fix's age.
  Result<Recorded> RecordFix(const hal::GnssFix& fix, Stamp stamp);
  // Validates first: kInvalidArgument names the field, and nothing is stored.
  Result<Recorded> RecordDelivery(const sync::DeliveryEvent& event);
  // Validates, then signs with the proof signer when one is set (the stored body carries the
  // signature), then appends. If signing fails, nothing is stored and the signer's error is
  // returned: the caller tells the driver the proof was not taken.
  Result<Recorded> RecordProof(const sync::ProofOfDelivery& proof);
  Result<Recorded> RecordHealth(const sync::Health& health);

  // Called after every stored event (e.g. to wake the uplink). Set before recording starts.
  void SetOnStored(std::function<void(sync::EventClass)> on_stored) {
    on_stored_ = std::move(on_stored);
  }

  // Signs a validated proof: returns the DER signature over its canonical bytes
  // (sync/proof_signature.h). Called from any recording thread: it must be thread-safe.
  using ProofSigner = std::function<Result<std::string>(const sync::ProofOfDelivery&)>;
  // Set before recording starts; unset, proofs are stored as given (unsigned).
  void SetProofSigner(ProofSigner signer) { proof_signer_ = std::move(signer); }

 private:
  Result<Recorded> Append(sync::EventClass cls, Stamp stamp, std::string body);

  sync::Outbox& outbox_;
  std::function<Stamp()> now_;
  std::function<void(sync::EventClass)> on_stored_;
  ProofSigner proof_signer_;
};

}  // namespace waybill::firmware
