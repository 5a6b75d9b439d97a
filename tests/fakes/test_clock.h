// TestClock: a hal::Clock that moves only when the test says so.
//
// Wall and monotonic time advance together by Advance(); SetWall() steps the wall clock alone,
// as an NTP sync or `date -s` does, and may change its source. Thread-safe (atomics), so a test
// may read it from several threads.
#pragma once

#include <atomic>
#include <cstdint>

#include "waybill/hal/clock.h"

namespace waybill::testing {

class TestClock final : public hal::Clock {
 public:
  TestClock(int64_t wall_ms, int64_t mono_ms, hal::TimeSource source)
      : wall_ms_(wall_ms), mono_ms_(mono_ms), source_(source) {}

  int64_t wall_ms() const override { return wall_ms_.load(); }
  int64_t mono_ms() const override { return mono_ms_.load(); }
  hal::TimeSource wall_source() const override { return source_.load(); }

  // Both clocks move forward by `ms` (>= 0).
  void Advance(int64_t ms) {
    wall_ms_ += ms;
    mono_ms_ += ms;
  }
  // The wall clock is set to `wall_ms`; the monotonic clock does not notice.
  void SetWall(int64_t wall_ms, hal::TimeSource source) {
    wall_ms_ = wall_ms;
    source_ = source;
  }
  void SetSource(hal::TimeSource source) { source_ = source; }

 private:
  std::atomic<int64_t> wall_ms_;
  std::atomic<int64_t> mono_ms_;
  std::atomic<hal::TimeSource> source_;
};

}  // namespace waybill::testing
