#include "waybill/sync/proof_signature.h"

namespace waybill::sync {

namespace {

class Canonical {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) U8(static_cast<uint8_t>(v >> shift));
  }
  void U64(uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) U8(static_cast<uint8_t>(v >> shift));
  }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string CanonicalProofBytes(std::string_view device_id, const ProofOfDelivery& proof) {
  Canonical c;
  c.Str(kProofSignatureDomain);
  c.Str(device_id);
  c.Str(proof.stop_id);
  c.Str(proof.order_id);
  c.Str(proof.recipient_name);
  if (proof.signature.empty()) {
    c.U8(0);
  } else {
    c.U8(1);
    c.U32(proof.signature_width);
    c.U32(proof.signature_height);
    c.U32(static_cast<uint32_t>(proof.signature.size()));
    for (const SignatureStroke& stroke : proof.signature) {
      c.U32(static_cast<uint32_t>(stroke.size()));
      for (const SignaturePoint& p : stroke) {
        c.I32(p.x);
        c.I32(p.y);
      }
    }
  }
  if (proof.photo_sha256) {
    c.U8(1);
    for (uint8_t b : *proof.photo_sha256) c.U8(b);
    c.U64(proof.photo_bytes);
  } else {
    c.U8(0);
  }
  c.Str(proof.photo_mime);
  return c.Take();
}

}  // namespace waybill::sync
