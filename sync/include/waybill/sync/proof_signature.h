// The canonical bytes of a proof of delivery: what the device signs and the bridge verifies.
//
// Why not sign the protobuf body? Protobuf does not promise one serialization per message (field
// order, packed or not, a default written or omitted all vary between encoders and versions), and
// the backend receives the proof as JSON, not as the device's bytes. A signature over a
// serialization would tie the evidence to one encoder forever. So the signature covers an
// explicit byte string built from the proof's fields by this one function, shared by the device
// (firmware, before the outbox append) and the bridge (before forwarding), and written down in
// docs/PROOFS.md so that a backend can rebuild it from the forwarded JSON.
//
// The layout, version 1 (all integers big-endian; "str" = u32 byte length, then the bytes):
//   str   domain tag "waybill-pod-v1" (a new layout gets a new tag: old signatures stay checkable)
//   str   device id (binds the proof to the device: a copy replayed as another truck fails)
//   str   stop_id, str order_id, str recipient_name (UTF-8 as recorded; empty = length 0)
//   u8    signature present: 0, or 1 followed by
//           u32 width, u32 height, u32 stroke count, and per stroke
//           u32 point count, then per point i32 x, i32 y (two's complement)
//   u8    photo present: 0, or 1 followed by the 32 bytes of its SHA-256 and u64 photo_bytes
//   str   photo_mime
// Every variable-length part carries its length and every optional part a marker, so no two
// different proofs give the same bytes. Width, height and photo_bytes count only with their
// signature or photo, as in the schema (a decoded body has them only then).
//
// Left out on purpose: the event time (the outbox corrects times recorded before the first GNSS
// fix after the proof was stored, which must not break its signature; the time travels beside
// the proof with its source), the outbox sequence (assigned at append, after signing), and the
// signature itself.
#pragma once

#include <string>
#include <string_view>

#include "waybill/sync/events.h"

namespace waybill::sync {

inline constexpr std::string_view kProofSignatureDomain = "waybill-pod-v1";

// The canonical bytes of `proof` as recorded by `device_id` (see the file comment). Pure and
// thread-safe; proof.device_signature is ignored.
std::string CanonicalProofBytes(std::string_view device_id, const ProofOfDelivery& proof);

}  // namespace waybill::sync
