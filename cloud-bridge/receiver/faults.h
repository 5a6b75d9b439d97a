// Faults the receiver injects into ingest requests, so that the bridge's retries, timeouts and
// dedup can be tested against a backend that misbehaves the way real ones do.
//
// Each request draws its fault once, from one seeded generator, independently for each kind in
// this order: hang, fail (500), throttle (429), fail after apply (apply, then 500). The first kind
// that hits decides. So `fail_rate = 1` fails every request whatever the others say, and small
// rates are each close to their share of requests. The order in which concurrent requests draw
// depends on the scheduler: a seed makes a sequential run reproducible, not a concurrent one.
#pragma once

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>

#include "waybill/status.h"

namespace waybill::receiver {

struct FaultSettings {
  double fail_rate = 0;              // share answered 500, nothing applied
  double fail_after_apply_rate = 0;  // share applied, then answered 500 (the answer is "lost")
  double throttle_rate = 0;          // share answered 429 with Retry-After, nothing applied
  double hang_rate = 0;              // share held for hang_ms, then answered 500, nothing applied
  int64_t latency_ms = 0;            // added to every ingest request
  int64_t hang_ms = 30'000;
  int64_t retry_after_s = 1;
};

// The settings as the JSON object of GET/POST /_faults (the names of the fields above).
nlohmann::json ToJson(const FaultSettings& settings);

// Returns `settings` with the fields present in `patch` replaced. Fails with InvalidArgument
// naming the field when `patch` is not an object, names an unknown field, or a value is of the
// wrong type or out of range (rates in [0, 1], times >= 0). Pure.
Result<FaultSettings> Patched(const FaultSettings& settings, const nlohmann::json& patch);

enum class Fault { kNone, kHang, kFail, kThrottle, kFailAfterApply };

class FaultInjector {
 public:
  // What one request does: its fault and the settings it was drawn under (one request sees one
  // consistent set even if /_faults changes them meanwhile).
  struct Decision {
    Fault fault = Fault::kNone;
    FaultSettings settings;
  };

  // `settings` must be valid (see Patched).
  FaultInjector(FaultSettings settings, uint64_t seed) : settings_(settings), rng_(seed) {}

  // Draws the fault of one request. Thread-safe.
  Decision Draw();

  // Applies `patch` as Patched does and returns the new settings; on error nothing changes.
  // Thread-safe.
  Result<FaultSettings> Update(const nlohmann::json& patch);

  FaultSettings settings() const;

 private:
  mutable std::mutex mu_;
  FaultSettings settings_;
  std::mt19937_64 rng_;
};

}  // namespace waybill::receiver
