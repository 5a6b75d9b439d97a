// Typed events and their encoding.
//
// Inside Waybill, events are these plain structs. They become bytes (nanopb, schema in
// sync/proto/waybill.proto) only where they leave the process: into the outbox and onto the wire.
// Encode* validate the bounds of the schema and say which field is too long; Decode* reject
// truncated or inconsistent bytes with a reason and never read past the input.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "waybill/hal/gnss_fix.h"
#include "waybill/status.h"

namespace waybill::sync {

enum class DeliveryKind : uint8_t {
  kArrived = 1,
  kDelivered = 2,
  kPartial = 3,
  kFailed = 4,
  kPickedUp = 5,
};

enum class FailReason : uint8_t {
  kNone = 0,
  kRecipientAbsent = 1,
  kRefused = 2,
  kAddressNotFound = 3,
  kAccessBlocked = 4,
  kDamaged = 5,
  kOther = 6,
};

// Names used by the local API and the JSON exports ("delivered", "recipient_absent").
std::string_view ToString(DeliveryKind kind);
std::string_view ToString(FailReason reason);
std::optional<DeliveryKind> ParseDeliveryKind(std::string_view name);
std::optional<FailReason> ParseFailReason(std::string_view name);

// Schema bounds (sync/proto/waybill.options), in bytes or counts.
inline constexpr size_t kMaxIdBytes = 64;
inline constexpr size_t kMaxNoteBytes = 512;
inline constexpr size_t kMaxNameBytes = 128;
inline constexpr size_t kMaxStrokes = 256;
inline constexpr size_t kMaxSignaturePoints = 4096;
inline constexpr size_t kMaxMimeBytes = 32;
inline constexpr size_t kMaxDeviceSignatureBytes = 72;  // DER ECDSA P-256, at its longest

struct DeliveryEvent {
  std::string stop_id;
  std::string order_id;
  DeliveryKind kind = DeliveryKind::kArrived;
  FailReason reason = FailReason::kNone;  // required for kFailed, kNone otherwise
  std::string note;
  std::optional<int32_t> lat_e7;
  std::optional<int32_t> lon_e7;
  std::optional<uint32_t> items;
};

struct SignaturePoint {
  int32_t x = 0;
  int32_t y = 0;
  bool operator==(const SignaturePoint&) const = default;
};
using SignatureStroke = std::vector<SignaturePoint>;

struct ProofOfDelivery {
  std::string stop_id;
  std::string order_id;
  std::string recipient_name;
  uint32_t signature_width = 0;
  uint32_t signature_height = 0;
  std::vector<SignatureStroke> signature;
  std::optional<std::array<uint8_t, 32>> photo_sha256;
  uint64_t photo_bytes = 0;
  std::string photo_mime;
  // DER ECDSA P-256 over SHA-256 of CanonicalProofBytes (proof_signature.h); empty: unsigned.
  // Not part of what it signs.
  std::string device_signature;
};

struct Health {
  uint64_t uptime_s = 0;
  uint64_t outbox_events = 0;
  uint64_t outbox_bytes = 0;
  uint64_t free_bytes = 0;
  uint32_t gnss_mode = 0;
  uint64_t nmea_rejected = 0;
  bool ignition_on = false;
  bool storage_read_only = false;
};

// Fix bodies never fail to encode: every field of GnssFix fits the schema. utc_ms is not part of
// the body (the outbox row carries the event time and its source).
std::string EncodeFix(const hal::GnssFix& fix);
Result<hal::GnssFix> DecodeFix(std::string_view bytes);

Result<std::string> EncodeDelivery(const DeliveryEvent& event);
Result<DeliveryEvent> DecodeDelivery(std::string_view bytes);

Result<std::string> EncodeProof(const ProofOfDelivery& proof);
Result<ProofOfDelivery> DecodeProof(std::string_view bytes);

std::string EncodeHealth(const Health& health);
Result<Health> DecodeHealth(std::string_view bytes);

// Checks the bounds and required fields of an event; the message names the field
// ("order_id: 80 bytes, at most 64"). Encode* call these.
Status Validate(const DeliveryEvent& event);
Status Validate(const ProofOfDelivery& proof);

}  // namespace waybill::sync
