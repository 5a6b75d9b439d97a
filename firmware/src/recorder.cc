#include "waybill/firmware/recorder.h"

namespace waybill::firmware {

Result<Recorded> Recorder::Append(sync::EventClass cls, Stamp stamp, std::string body) {
  sync::NewEvent ev;
  ev.cls = cls;
  ev.ts_ms = stamp.ts_ms;
  ev.ts_src = stamp.src;
  ev.body = std::move(body);
  Result<uint64_t> seq = outbox_.Append(ev);
  if (!seq.ok()) return seq.status();
  if (on_stored_) on_stored_(cls);
  return Recorded{*seq, stamp};
}

Result<Recorded> Recorder::RecordFix(const hal::GnssFix& fix, Stamp stamp) {
  return Append(sync::EventClass::kFix, stamp, sync::EncodeFix(fix));
}

Result<Recorded> Recorder::RecordDelivery(const sync::DeliveryEvent& event) {
  Result<std::string> body = sync::EncodeDelivery(event);
  if (!body.ok()) return body.status();
  return Append(sync::EventClass::kDelivery, now_(), std::move(body).value());
}

Result<Recorded> Recorder::RecordProof(const sync::ProofOfDelivery& proof) {
  if (!proof_signer_) {
    Result<std::string> body = sync::EncodeProof(proof);
    if (!body.ok()) return body.status();
    return Append(sync::EventClass::kProofOfDelivery, now_(), std::move(body).value());
  }
  // Sign what was validated: an invalid proof gets its field error, not a signing error.
  if (Status s = sync::Validate(proof); !s.ok()) return s;
  sync::ProofOfDelivery signed_proof = proof;
  Result<std::string> signature = proof_signer_(proof);
  if (!signature.ok()) {
    return Status::Unavailable("proof of delivery not stored: signing failed: " +
                               signature.status().message());
  }
  signed_proof.device_signature = std::move(signature).value();
  Result<std::string> body = sync::EncodeProof(signed_proof);
  if (!body.ok()) return body.status();
  return Append(sync::EventClass::kProofOfDelivery, now_(), std::move(body).value());
}

Result<Recorded> Recorder::RecordHealth(const sync::Health& health) {
  return Append(sync::EventClass::kHealth, now_(), sync::EncodeHealth(health));
}

}  // namespace waybill::firmware
