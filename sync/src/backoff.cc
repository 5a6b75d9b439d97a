#include "waybill/sync/backoff.h"

#include <algorithm>

namespace waybill::sync {

Status Validate(const BackoffOptions& o) {
  if (o.base_ms < 1) {
    return Status::InvalidArgument("backoff base_ms: " + std::to_string(o.base_ms) +
                                   ", must be at least 1");
  }
  if (o.cap_ms < o.base_ms) {
    return Status::InvalidArgument("backoff cap_ms: " + std::to_string(o.cap_ms) +
                                   ", must be at least base_ms (" + std::to_string(o.base_ms) +
                                   ")");
  }
  if (o.floor_ms < 1 || o.floor_ms > o.base_ms) {
    return Status::InvalidArgument("backoff floor_ms: " + std::to_string(o.floor_ms) +
                                   ", must be between 1 and base_ms (" + std::to_string(o.base_ms) +
                                   ")");
  }
  return Status::Ok();
}

Backoff::Backoff(const BackoffOptions& options, uint64_t seed) : options_(options), rng_(seed) {}

int64_t Backoff::CeilingMs(int failures) const {
  if (failures < 1) return options_.base_ms;
  int64_t ceiling = options_.base_ms;
  // Doubling stops at the cap, so the product never overflows.
  for (int i = 1; i < failures && ceiling < options_.cap_ms; ++i) ceiling *= 2;
  return std::min(ceiling, options_.cap_ms);
}

int64_t Backoff::NextDelayMs() {
  if (failures_ < (1 << 30)) ++failures_;
  int64_t ceiling = CeilingMs(failures_);
  int64_t floor = std::min(options_.floor_ms, ceiling);
  std::uniform_int_distribution<int64_t> pick(floor, ceiling);
  return pick(rng_);
}

}  // namespace waybill::sync
