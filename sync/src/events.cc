#include "waybill/sync/events.h"

#include <pb_decode.h>
#include <pb_encode.h>

#include <cstring>
#include <memory>

#include "waybill.pb.h"

namespace waybill::sync {

namespace {

constexpr std::string_view kKindNames[] = {"",        "arrived", "delivered",
                                           "partial", "failed",  "picked_up"};
constexpr std::string_view kReasonNames[] = {
    "none",           "recipient_absent", "refused", "address_not_found",
    "access_blocked", "damaged",          "other"};

Status CheckLength(std::string_view field, const std::string& value, size_t max_bytes) {
  if (value.size() > max_bytes) {
    return Status::InvalidArgument(std::string(field) + ": " + std::to_string(value.size()) +
                                   " bytes, at most " + std::to_string(max_bytes));
  }
  if (value.find('\0') != std::string::npos) {
    return Status::InvalidArgument(std::string(field) + ": contains a NUL byte");
  }
  return Status::Ok();
}

// Copies a validated string into a nanopb char array (bounded by CheckLength before).
template <size_t N>
void CopyString(char (&dst)[N], bool& has, const std::string& src) {
  static_assert(N > kMaxIdBytes / 2);
  has = !src.empty();
  size_t n = std::min(src.size(), N - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

template <typename Msg>
Result<std::string> Encode(const pb_msgdesc_t* fields, const Msg& msg) {
  size_t size = 0;
  if (!pb_get_encoded_size(&size, fields, &msg)) {
    return Status::InvalidArgument("cannot size the message");
  }
  std::string out(size, '\0');
  pb_ostream_t stream = pb_ostream_from_buffer(reinterpret_cast<pb_byte_t*>(out.data()), size);
  if (!pb_encode(&stream, fields, &msg)) {
    return Status::InvalidArgument(std::string("encoding failed: ") + PB_GET_ERROR(&stream));
  }
  out.resize(stream.bytes_written);
  return out;
}

template <typename Msg>
Status Decode(std::string_view bytes, const pb_msgdesc_t* fields, Msg* msg, const char* what) {
  pb_istream_t stream =
      pb_istream_from_buffer(reinterpret_cast<const pb_byte_t*>(bytes.data()), bytes.size());
  if (!pb_decode(&stream, fields, msg)) {
    return Status::Corruption(std::string(what) + " body of " + std::to_string(bytes.size()) +
                              " bytes does not decode: " + PB_GET_ERROR(&stream));
  }
  return Status::Ok();
}

}  // namespace

std::string_view ToString(DeliveryKind kind) {
  auto i = static_cast<size_t>(kind);
  return i < std::size(kKindNames) ? kKindNames[i] : "unknown";
}

std::string_view ToString(FailReason reason) {
  auto i = static_cast<size_t>(reason);
  return i < std::size(kReasonNames) ? kReasonNames[i] : "unknown";
}

std::optional<DeliveryKind> ParseDeliveryKind(std::string_view name) {
  for (size_t i = 1; i < std::size(kKindNames); ++i) {
    if (kKindNames[i] == name) return static_cast<DeliveryKind>(i);
  }
  return std::nullopt;
}

std::optional<FailReason> ParseFailReason(std::string_view name) {
  for (size_t i = 0; i < std::size(kReasonNames); ++i) {
    if (kReasonNames[i] == name) return static_cast<FailReason>(i);
  }
  return std::nullopt;
}

std::string EncodeFix(const hal::GnssFix& fix) {
  waybill_v1_Fix msg = waybill_v1_Fix_init_zero;
  msg.has_lat_e7 = msg.has_lon_e7 = true;
  msg.lat_e7 = fix.lat_e7;
  msg.lon_e7 = fix.lon_e7;
  if (fix.alt_cm) msg.has_alt_cm = true, msg.alt_cm = *fix.alt_cm;
  if (fix.speed_cmps) msg.has_speed_cmps = true, msg.speed_cmps = *fix.speed_cmps;
  if (fix.course_cdeg) msg.has_course_cdeg = true, msg.course_cdeg = *fix.course_cdeg;
  if (fix.hdop_c) msg.has_hdop_c = true, msg.hdop_c = *fix.hdop_c;
  if (fix.sats) msg.has_sats = true, msg.sats = *fix.sats;
  msg.has_mode = true;
  msg.mode = static_cast<uint32_t>(fix.mode);
  if (fix.quality != 0) msg.has_quality = true, msg.quality = fix.quality;
  // A fix always fits: every field is a bounded scalar.
  return std::move(Encode(waybill_v1_Fix_fields, msg)).value();
}

Result<hal::GnssFix> DecodeFix(std::string_view bytes) {
  waybill_v1_Fix msg = waybill_v1_Fix_init_zero;
  if (Status s = Decode(bytes, waybill_v1_Fix_fields, &msg, "fix"); !s.ok()) return s;
  if (!msg.has_lat_e7 || !msg.has_lon_e7) return Status::Corruption("fix body without position");
  if (msg.lat_e7 < -900000000 || msg.lat_e7 > 900000000 || msg.lon_e7 < -1800000000 ||
      msg.lon_e7 > 1800000000) {
    return Status::Corruption("fix body with a position outside the globe");
  }
  hal::GnssFix fix;
  fix.lat_e7 = msg.lat_e7;
  fix.lon_e7 = msg.lon_e7;
  if (msg.has_alt_cm) fix.alt_cm = msg.alt_cm;
  if (msg.has_speed_cmps) fix.speed_cmps = msg.speed_cmps;
  if (msg.has_course_cdeg) fix.course_cdeg = static_cast<uint16_t>(msg.course_cdeg % 36000);
  if (msg.has_hdop_c) fix.hdop_c = static_cast<uint16_t>(std::min<uint32_t>(msg.hdop_c, 65535));
  if (msg.has_sats) fix.sats = static_cast<uint8_t>(std::min<uint32_t>(msg.sats, 255));
  fix.mode = msg.mode == 3 ? hal::FixMode::k3D : hal::FixMode::k2D;
  fix.quality = static_cast<uint8_t>(std::min<uint32_t>(msg.quality, 255));
  return fix;
}

Status Validate(const DeliveryEvent& event) {
  if (event.stop_id.empty() && event.order_id.empty()) {
    return Status::InvalidArgument("stop_id or order_id: one of them is required");
  }
  if (Status s = CheckLength("stop_id", event.stop_id, kMaxIdBytes); !s.ok()) return s;
  if (Status s = CheckLength("order_id", event.order_id, kMaxIdBytes); !s.ok()) return s;
  if (Status s = CheckLength("note", event.note, kMaxNoteBytes); !s.ok()) return s;
  if (ToString(event.kind) == "unknown") return Status::InvalidArgument("kind: unknown value");
  if (ToString(event.reason) == "unknown") return Status::InvalidArgument("reason: unknown value");
  if (event.kind == DeliveryKind::kFailed && event.reason == FailReason::kNone) {
    return Status::InvalidArgument("reason: required when kind is \"failed\"");
  }
  if (event.kind != DeliveryKind::kFailed && event.reason != FailReason::kNone) {
    return Status::InvalidArgument("reason: only allowed when kind is \"failed\"");
  }
  return Status::Ok();
}

Status Validate(const ProofOfDelivery& proof) {
  if (proof.stop_id.empty() && proof.order_id.empty()) {
    return Status::InvalidArgument("stop_id or order_id: one of them is required");
  }
  if (Status s = CheckLength("stop_id", proof.stop_id, kMaxIdBytes); !s.ok()) return s;
  if (Status s = CheckLength("order_id", proof.order_id, kMaxIdBytes); !s.ok()) return s;
  if (proof.recipient_name.empty()) return Status::InvalidArgument("recipient_name: required");
  if (Status s = CheckLength("recipient_name", proof.recipient_name, kMaxNameBytes); !s.ok()) {
    return s;
  }
  if (Status s = CheckLength("photo_mime", proof.photo_mime, kMaxMimeBytes); !s.ok()) return s;
  if (proof.signature.size() > kMaxStrokes) {
    return Status::InvalidArgument("signature: " + std::to_string(proof.signature.size()) +
                                   " strokes, at most " + std::to_string(kMaxStrokes));
  }
  size_t points = 0;
  for (const SignatureStroke& stroke : proof.signature) {
    if (stroke.empty()) return Status::InvalidArgument("signature: a stroke has no points");
    points += stroke.size();
  }
  if (points > kMaxSignaturePoints) {
    return Status::InvalidArgument("signature: " + std::to_string(points) + " points, at most " +
                                   std::to_string(kMaxSignaturePoints));
  }
  if (proof.device_signature.size() > kMaxDeviceSignatureBytes) {
    return Status::InvalidArgument(
        "device_signature: " + std::to_string(proof.device_signature.size()) + " bytes, at most " +
        std::to_string(kMaxDeviceSignatureBytes));
  }
  if (proof.signature.empty() && !proof.photo_sha256) {
    return Status::InvalidArgument("signature or photo: a proof needs at least one of them");
  }
  return Status::Ok();
}

Result<std::string> EncodeDelivery(const DeliveryEvent& event) {
  if (Status s = Validate(event); !s.ok()) return s;
  waybill_v1_DeliveryEvent msg = waybill_v1_DeliveryEvent_init_zero;
  CopyString(msg.stop_id, msg.has_stop_id, event.stop_id);
  CopyString(msg.order_id, msg.has_order_id, event.order_id);
  CopyString(msg.note, msg.has_note, event.note);
  msg.has_kind = true;
  msg.kind = static_cast<waybill_v1_DeliveryKind>(event.kind);
  msg.has_reason = event.reason != FailReason::kNone;
  msg.reason = static_cast<waybill_v1_FailReason>(event.reason);
  if (event.lat_e7 && event.lon_e7) {
    msg.has_lat_e7 = msg.has_lon_e7 = true;
    msg.lat_e7 = *event.lat_e7;
    msg.lon_e7 = *event.lon_e7;
  }
  if (event.items) msg.has_items = true, msg.items = *event.items;
  return Encode(waybill_v1_DeliveryEvent_fields, msg);
}

Result<DeliveryEvent> DecodeDelivery(std::string_view bytes) {
  waybill_v1_DeliveryEvent msg = waybill_v1_DeliveryEvent_init_zero;
  if (Status s = Decode(bytes, waybill_v1_DeliveryEvent_fields, &msg, "delivery"); !s.ok()) {
    return s;
  }
  DeliveryEvent event;
  event.stop_id = msg.stop_id;
  event.order_id = msg.order_id;
  event.note = msg.note;
  event.kind = static_cast<DeliveryKind>(msg.kind);
  event.reason = static_cast<FailReason>(msg.reason);
  if (msg.has_lat_e7 && msg.has_lon_e7) event.lat_e7 = msg.lat_e7, event.lon_e7 = msg.lon_e7;
  if (msg.has_items) event.items = msg.items;
  if (Status s = Validate(event); !s.ok()) {
    return Status::Corruption("delivery body is inconsistent: " + s.message());
  }
  return event;
}

Result<std::string> EncodeProof(const ProofOfDelivery& proof) {
  if (Status s = Validate(proof); !s.ok()) return s;
  // About 40 KB of arrays: keep it off the stack of small-board threads.
  auto msg = std::make_unique<waybill_v1_ProofOfDelivery>();
  *msg = waybill_v1_ProofOfDelivery_init_zero;
  CopyString(msg->stop_id, msg->has_stop_id, proof.stop_id);
  CopyString(msg->order_id, msg->has_order_id, proof.order_id);
  CopyString(msg->recipient_name, msg->has_recipient_name, proof.recipient_name);
  CopyString(msg->photo_mime, msg->has_photo_mime, proof.photo_mime);
  if (!proof.signature.empty()) {
    msg->has_signature = true;
    waybill_v1_Signature& sig = msg->signature;
    sig.has_width = sig.has_height = true;
    sig.width = proof.signature_width;
    sig.height = proof.signature_height;
    SignaturePoint prev;
    for (const SignatureStroke& stroke : proof.signature) {
      sig.stroke_points[sig.stroke_points_count++] = static_cast<uint32_t>(stroke.size());
      for (const SignaturePoint& p : stroke) {
        sig.xy[sig.xy_count++] = p.x - prev.x;
        sig.xy[sig.xy_count++] = p.y - prev.y;
        prev = p;
      }
    }
  }
  if (proof.photo_sha256) {
    msg->has_photo_sha256 = true;
    std::memcpy(msg->photo_sha256, proof.photo_sha256->data(), 32);
    msg->has_photo_bytes = true;
    msg->photo_bytes = proof.photo_bytes;
  }
  if (!proof.device_signature.empty()) {
    msg->has_device_signature = true;
    msg->device_signature.size = static_cast<pb_size_t>(proof.device_signature.size());
    std::memcpy(msg->device_signature.bytes, proof.device_signature.data(),
                proof.device_signature.size());
  }
  return Encode(waybill_v1_ProofOfDelivery_fields, *msg);
}

Result<ProofOfDelivery> DecodeProof(std::string_view bytes) {
  auto msg = std::make_unique<waybill_v1_ProofOfDelivery>();
  *msg = waybill_v1_ProofOfDelivery_init_zero;
  if (Status s = Decode(bytes, waybill_v1_ProofOfDelivery_fields, msg.get(), "proof"); !s.ok()) {
    return s;
  }
  ProofOfDelivery proof;
  proof.stop_id = msg->stop_id;
  proof.order_id = msg->order_id;
  proof.recipient_name = msg->recipient_name;
  proof.photo_mime = msg->photo_mime;
  if (msg->has_signature) {
    const waybill_v1_Signature& sig = msg->signature;
    proof.signature_width = sig.width;
    proof.signature_height = sig.height;
    size_t total = 0;
    for (pb_size_t i = 0; i < sig.stroke_points_count; ++i) total += sig.stroke_points[i];
    if (total * 2 != sig.xy_count) {
      return Status::Corruption("proof body: signature stroke lengths (" + std::to_string(total) +
                                " points) disagree with " + std::to_string(sig.xy_count / 2) +
                                " coordinate pairs");
    }
    SignaturePoint prev;
    size_t k = 0;
    for (pb_size_t i = 0; i < sig.stroke_points_count; ++i) {
      SignatureStroke stroke;
      for (uint32_t j = 0; j < sig.stroke_points[i]; ++j, k += 2) {
        prev = {prev.x + sig.xy[k], prev.y + sig.xy[k + 1]};
        stroke.push_back(prev);
      }
      proof.signature.push_back(std::move(stroke));
    }
  }
  if (msg->has_photo_sha256) {
    std::array<uint8_t, 32> sha{};
    std::memcpy(sha.data(), msg->photo_sha256, 32);
    proof.photo_sha256 = sha;
    proof.photo_bytes = msg->photo_bytes;
  }
  if (msg->has_device_signature) {
    proof.device_signature.assign(reinterpret_cast<const char*>(msg->device_signature.bytes),
                                  msg->device_signature.size);
  }
  if (Status s = Validate(proof); !s.ok()) {
    return Status::Corruption("proof body is inconsistent: " + s.message());
  }
  return proof;
}

std::string EncodeHealth(const Health& health) {
  waybill_v1_Health msg = waybill_v1_Health_init_zero;
  msg.has_uptime_s = msg.has_outbox_events = msg.has_outbox_bytes = msg.has_free_bytes = true;
  msg.has_gnss_mode = msg.has_nmea_rejected = msg.has_ignition_on = true;
  msg.has_storage_read_only = true;
  msg.uptime_s = health.uptime_s;
  msg.outbox_events = health.outbox_events;
  msg.outbox_bytes = health.outbox_bytes;
  msg.free_bytes = health.free_bytes;
  msg.gnss_mode = health.gnss_mode;
  msg.nmea_rejected = health.nmea_rejected;
  msg.ignition_on = health.ignition_on;
  msg.storage_read_only = health.storage_read_only;
  return std::move(Encode(waybill_v1_Health_fields, msg)).value();
}

Result<Health> DecodeHealth(std::string_view bytes) {
  waybill_v1_Health msg = waybill_v1_Health_init_zero;
  if (Status s = Decode(bytes, waybill_v1_Health_fields, &msg, "health"); !s.ok()) return s;
  Health h;
  h.uptime_s = msg.uptime_s;
  h.outbox_events = msg.outbox_events;
  h.outbox_bytes = msg.outbox_bytes;
  h.free_bytes = msg.free_bytes;
  h.gnss_mode = msg.gnss_mode;
  h.nmea_rejected = msg.nmea_rejected;
  h.ignition_on = msg.ignition_on;
  h.storage_read_only = msg.storage_read_only;
  return h;
}

}  // namespace waybill::sync
