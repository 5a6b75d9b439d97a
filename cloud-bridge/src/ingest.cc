#include "waybill/bridge/ingest.h"

#include "waybill/sync/events.h"
#include "waybill/sync/wire.h"

namespace waybill::bridge {

std::string_view ToString(RejectReason reason) {
  switch (reason) {
    case RejectReason::kOversized:
      return "oversized";
    case RejectReason::kMalformed:
      return "malformed";
    case RejectReason::kTopic:
      return "topic";
    case RejectReason::kIdentity:
      return "identity";
    case RejectReason::kTime:
      return "time";
    case RejectReason::kProofFields:
      return "proof_fields";
    case RejectReason::kDeliveryFields:
      return "delivery_fields";
    case RejectReason::kBody:
      return "body";
    case RejectReason::kUnsignedProof:
      return "unsigned_proof";
    case RejectReason::kUnknownDevice:
      return "unknown_device";
    case RejectReason::kBadSignature:
      return "bad_signature";
  }
  return "unknown";
}

namespace {

// `fix_body_checked`: DecodeBatch built the fix body itself (EncodeFix of the decoded columns),
// so decoding it again would only spend time on the ingest path.
std::optional<RejectedEvent> Judge(const sync::StoredEvent& event, int64_t now_ms,
                                   const IngestOptions& options, std::string_view device,
                                   bool fix_body_checked) {
  auto refuse = [&](RejectReason reason, std::string detail) {
    return RejectedEvent{event, reason, "seq " + std::to_string(event.seq) + ": " + detail};
  };
  // An uncorrected monotonic time is flagged as such by its source and travels as recorded: the
  // backend sees that it is not wall time. Every other source must be plausible.
  if (event.ts_src != hal::TimeSource::kMonotonic && event.ts_src != hal::TimeSource::kUnknown) {
    if (event.ts_ms < options.min_event_time_ms) {
      return refuse(RejectReason::kTime, "time " + std::to_string(event.ts_ms) +
                                             " ms is before the earliest plausible time " +
                                             std::to_string(options.min_event_time_ms) + " ms");
    }
    if (event.ts_ms > now_ms + options.max_future_ms) {
      return refuse(RejectReason::kTime, "time " + std::to_string(event.ts_ms) + " ms is " +
                                             std::to_string((event.ts_ms - now_ms) / 1000) +
                                             " s in the future");
    }
  }
  switch (event.cls) {
    case sync::EventClass::kFix: {
      if (fix_body_checked) break;
      auto fix = sync::DecodeFix(event.body);
      if (!fix.ok()) return refuse(RejectReason::kBody, "fix: " + fix.status().message());
      break;
    }
    case sync::EventClass::kHealth: {
      auto health = sync::DecodeHealth(event.body);
      if (!health.ok()) return refuse(RejectReason::kBody, "health: " + health.status().message());
      break;
    }
    case sync::EventClass::kDelivery: {
      auto delivery = sync::DecodeDelivery(event.body);
      if (!delivery.ok()) {
        return refuse(RejectReason::kDeliveryFields, "delivery: " + delivery.status().message());
      }
      if (Status s = sync::Validate(*delivery); !s.ok()) {
        return refuse(RejectReason::kDeliveryFields, "delivery: " + s.message());
      }
      break;
    }
    case sync::EventClass::kProofOfDelivery: {
      auto proof = sync::DecodeProof(event.body);
      if (!proof.ok()) {
        return refuse(RejectReason::kProofFields, "proof of delivery: " + proof.status().message());
      }
      if (Status s = sync::Validate(*proof); !s.ok()) {
        return refuse(RejectReason::kProofFields, "proof of delivery: " + s.message());
      }
      if (options.proofs) {
        if (std::optional<ProofRefusal> refusal = options.proofs->Check(device, *proof)) {
          return refuse(refusal->reason, "proof of delivery: " + refusal->detail);
        }
      }
      break;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<RejectedEvent> JudgeEvent(const sync::StoredEvent& event, int64_t now_ms,
                                        const IngestOptions& options, std::string_view device) {
  return Judge(event, now_ms, options, device, /*fix_body_checked=*/false);
}

IngestItem Ingest(std::string_view topic, std::string_view payload, int64_t received_ms,
                  const IngestOptions& options) {
  IngestItem item;
  item.topic = std::string(topic);
  item.received_ms = received_ms;
  auto refuse = [&](RejectReason reason, std::string detail) {
    item.message_reason = reason;
    item.message_detail = std::move(detail);
    item.payload = std::string(payload);
    return std::move(item);
  };
  auto device = sync::DeviceFromTopic(topic);
  if (!device || topic != sync::TopicUp(*device)) {
    return refuse(RejectReason::kTopic,
                  "topic '" + std::string(topic.substr(0, 200)) + "' is not fleet/<device>/up");
  }
  item.device = *device;
  if (payload.size() > sync::kMaxBatchBytes) {
    return refuse(RejectReason::kOversized, "payload of " + std::to_string(payload.size()) +
                                                " bytes, at most " +
                                                std::to_string(sync::kMaxBatchBytes));
  }
  auto batch = sync::DecodeBatch(payload);
  if (!batch.ok()) return refuse(RejectReason::kMalformed, batch.status().message());
  if (batch->device_id != *device) {
    return refuse(RejectReason::kIdentity, "payload names device '" + batch->device_id +
                                               "' on the topic of '" + *device + "'");
  }
  item.historical = batch->historical;
  item.proofs_verified = options.proofs != nullptr;
  for (sync::StoredEvent& event : batch->events) {
    if (auto rejected = Judge(event, received_ms, options, *device, /*fix_body_checked=*/true)) {
      item.rejected.push_back(std::move(*rejected));
    } else {
      item.accepted.push_back(std::move(event));
    }
  }
  return item;
}

}  // namespace waybill::bridge
