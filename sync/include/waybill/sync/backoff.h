// Backoff: how long to wait before the next attempt after a run of failures.
//
// Capped exponential backoff with FULL JITTER: after n consecutive failures the delay is drawn
// uniformly from [floor, min(cap, base * 2^(n-1))]. Jitter over the whole range (not +-10%)
// spreads a fleet of trucks that lost the same broker at the same moment, so they do not come
// back in lock-step waves. The floor (> 0) keeps a retry loop from ever spinning: a draw of zero
// would reconnect at once, and a broker that refuses at once would make a hot loop.
//
// Pure arithmetic on an injected random source: the caller schedules the attempt on its own clock.
#pragma once

#include <cstdint>
#include <random>

#include "waybill/status.h"

namespace waybill::sync {

struct BackoffOptions {
  int64_t base_ms = 1000;    // ceiling after the first failure
  int64_t cap_ms = 300'000;  // the ceiling never grows past this
  int64_t floor_ms = 100;    // every delay is at least this (clamped to the ceiling)
};

// base_ms >= 1, cap_ms >= base_ms, 1 <= floor_ms <= base_ms; the message names the field.
Status Validate(const BackoffOptions& options);

class Backoff {
 public:
  // `options` must pass Validate(). `seed` feeds the jitter (tests pass a fixed one).
  Backoff(const BackoffOptions& options, uint64_t seed);

  // Counts one more failure and returns the delay before the next attempt, in
  // [min(floor, ceiling), ceiling] with ceiling = CeilingMs(failures()). Not thread-safe.
  int64_t NextDelayMs();
  // A success: the next failure starts again from base_ms.
  void Reset() { failures_ = 0; }
  int failures() const { return failures_; }
  // min(cap, base * 2^(failures - 1)) for failures >= 1; no overflow for any count.
  int64_t CeilingMs(int failures) const;

 private:
  BackoffOptions options_;
  std::mt19937_64 rng_;
  int failures_ = 0;
};

}  // namespace waybill::sync
