// FakeClock: a Clock and a Sleeper that only move when told to.
//
// Tests and the host simulation use it so that backoff, pacing and watchdog expiry run on fake
// time: SleepFor() returns at once after advancing the clock and recording the request, so a test
// can assert on the sleeps that code asked for instead of timing it.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "waybill/hal/clock.h"
#include "waybill/hal/sleeper.h"

namespace waybill::hal {

class FakeClock final : public Clock, public Sleeper {
 public:
  // Starts at wall 2024-01-01T00:00:00Z, mono 1000 ms, source kNtp. Thread-safe as a whole: every
  // method takes an internal lock.
  FakeClock();
  FakeClock(int64_t wall_ms, int64_t mono_ms, TimeSource source);

  int64_t wall_ms() const override;
  int64_t mono_ms() const override;
  TimeSource wall_source() const override;

  // Advances wall and mono time by duration_ms (ignored when <= 0) and records the request in
  // sleeps(). Never blocks.
  void SleepFor(int64_t duration_ms) override;

  // Advances wall and mono time by duration_ms without recording a sleep. A negative value is
  // ignored: monotonic time never goes backwards.
  void Advance(int64_t duration_ms);
  // Sets the wall clock (a jump, as NTP or GNSS correction makes) and its source. Mono is
  // unchanged.
  void SetWall(int64_t wall_ms, TimeSource source);
  // Sets mono time; a value below the current one is ignored (mono never goes backwards).
  void SetMono(int64_t mono_ms);
  void SetSource(TimeSource source);

  // Every duration passed to SleepFor() with a positive value, oldest first.
  std::vector<int64_t> sleeps() const;
  // Sum of sleeps(); handy when only the total pace matters.
  int64_t slept_ms() const;
  void ClearSleeps();

 private:
  mutable std::mutex mu_;
  int64_t wall_ms_;
  int64_t mono_ms_;
  TimeSource source_;
  std::vector<int64_t> sleeps_;
};

}  // namespace waybill::hal
