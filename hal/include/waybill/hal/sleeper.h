// Sleeper: the other half of the clock. Code that waits (reconnect backoff, NMEA replay pacing,
// scripted GPIO) waits through an injected Sleeper, so that a test hands in a FakeClock, which
// records the requested sleeps and advances its own time instead of blocking.
#pragma once

#include <cstdint>

namespace waybill::hal {

class Sleeper {
 public:
  virtual ~Sleeper() = default;

  // Blocks the calling thread for about duration_ms milliseconds (nothing for 0 or less). May
  // return late, never early by more than the clock's granularity. Thread-safe.
  virtual void SleepFor(int64_t duration_ms) = 0;

  // Sleeps on the real steady clock. Thread-safe.
  static Sleeper& System();
};

}  // namespace waybill::hal
