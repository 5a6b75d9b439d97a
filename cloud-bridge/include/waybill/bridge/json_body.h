// The JSON bodies the bridge sends to the backend (schema: docs/BRIDGE.md, "Bodies").
//
// One request body per forward batch:
//   {"route": "deliveries", "batch": "<Idempotency-Key>", "events": [ <event>, ... ]}
// Each event carries its identity ("id": "<device>:<seq>", also as "device" and "seq"), its time
// and the source of that time, and one object named after its class ("position", "delivery",
// "proof", "health"). Pure and thread-safe.
#pragma once

#include <string>

#include "waybill/bridge/inbox.h"

namespace waybill::bridge {

// Events whose body no longer decodes (it was checked at ingest, so this means a damaged inbox)
// become {"id": ..., "error": "<reason>"} rather than vanishing.
std::string RequestBody(const ForwardBatch& batch);

// "2026-11-24T10:00:00.123Z".
std::string Iso8601Ms(int64_t unix_ms);

}  // namespace waybill::bridge
