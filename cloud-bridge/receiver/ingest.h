// The body of an ingest request as the receiver understands it, and its validation.
//
// The bridge posts `{"route": ..., "batch": ..., "events": [{"device": ..., "seq": ..., ...}]}`
// (docs/BRIDGE.md has the full schema). The receiver only needs each event's identity, the pair
// (device, seq), to dedup and to count events applied twice; every other field is kept verbatim
// in the stored body and otherwise ignored, so the bridge may add fields without breaking it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "waybill/status.h"

namespace waybill::receiver {

// What identifies an event for the backend: the device it came from and its outbox sequence.
struct EventId {
  std::string device;
  uint64_t seq = 0;
  bool operator==(const EventId&) const = default;
};

// Parses `body` and returns the identity of each element of its `events` array, in order.
// Fails with InvalidArgument whose message names the field, e.g. "events[3].seq: missing" or
// "body: not valid JSON (parse error at byte 17)". Pure: no I/O, never throws.
Result<std::vector<EventId>> ParseIngestBody(std::string_view body);

// Checks an Idempotency-Key header value; fails with InvalidArgument naming what is wrong.
// `present` is false when the header was not sent at all.
Status CheckIdempotencyKey(bool present, std::string_view key);

}  // namespace waybill::receiver
