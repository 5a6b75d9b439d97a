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
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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
};
inline constexpr int kRejectReasonCount = 8;
std::string_view ToString(RejectReason reason);  // "oversized", "malformed", ... (metric labels)

struct IngestOptions {
  int64_t min_event_time_ms = 1'577'836'800'000;  // 2020-01-01
  int64_t max_future_ms = 86'400'000;
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
  // Set when the whole message is refused; `payload` then holds its raw bytes.
  std::optional<RejectReason> message_reason;
  std::string message_detail;
  std::string payload;
};

IngestItem Ingest(std::string_view topic, std::string_view payload, int64_t received_ms,
                  const IngestOptions& options);

// Judges one event of a decoded batch (time, required fields, body); nullopt = accepted.
std::optional<RejectedEvent> JudgeEvent(const sync::StoredEvent& event, int64_t now_ms,
                                        const IngestOptions& options);

}  // namespace waybill::bridge
