// Clock: wall time, monotonic time, and where the wall time came from.
//
// The clock is hardware: backoff, batching windows, watchdog kicks and time-source correction all
// run on an injected Clock, so tests use FakeClock and never sleep.
#pragma once

#include <cstdint>
#include <string_view>

namespace waybill::hal {

// Where a wall-clock time came from, from most to least trustworthy. Stored with every event.
enum class TimeSource : uint8_t {
  kUnknown = 0,
  kGnss = 1,       // UTC from a valid GNSS fix
  kNtp = 2,        // system clock synchronised by NTP (or another network time service)
  kRtc = 3,        // system clock set from a battery-backed RTC at boot, not synchronised since
  kMonotonic = 4,  // unsynchronised system clock: only the monotonic interval is trustworthy
  kGnssCorrected = 5,  // recorded as kMonotonic, corrected later from the first GNSS time
};

std::string_view ToString(TimeSource source);

class Clock {
 public:
  virtual ~Clock() = default;

  // Milliseconds since the Unix epoch, as the system clock says. May jump; see wall_source().
  virtual int64_t wall_ms() const = 0;
  // Milliseconds since an arbitrary point at boot; never jumps, never goes backwards.
  virtual int64_t mono_ms() const = 0;
  // What the current wall time is based on.
  virtual TimeSource wall_source() const = 0;

  // The real system clock. Its source is kNtp when the kernel reports the clock synchronised
  // (adjtimex), else kRtc if an RTC exists, else kMonotonic. Thread-safe.
  static Clock& System();
};

}  // namespace waybill::hal
