// LogLimiter: keeps a noisy input from flooding the log.
//
// A receiver with a loose connector can emit thousands of bad sentences a minute; logging each
// one would drown every other message and wear the flash. The limiter lets the first
// `max_per_window` messages of each reason through in every window of `window_ms` (on the
// monotonic clock the caller passes in, so tests drive it with fake time), silently counts the
// rest, and hands the count back once so the caller can say "... 312 more bad checksums
// suppressed" when the next window opens or when the input ends.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace waybill::hal {

class LogLimiter {
 public:
  struct Decision {
    bool log = false;     // true: log this message now
    uint64_t suppressed;  // messages of this reason dropped in earlier windows, not yet reported
  };
  struct Pending {
    std::string reason;
    uint64_t suppressed;
  };

  explicit LogLimiter(uint32_t max_per_window = 5, int64_t window_ms = 60'000)
      : max_per_window_(max_per_window), window_ms_(window_ms) {}

  // Records one message of `reason` at `now_mono_ms` and says whether to log it. When
  // `suppressed` is non-zero the caller should report that many dropped messages (once: the count
  // is reset). A time that goes backwards is treated as the current window. Not thread-safe.
  Decision Allow(std::string_view reason, int64_t now_mono_ms);

  // Returns and clears the suppressed counts that were never reported, one entry per reason with
  // a non-zero count; for a summary at the end of the input. Not thread-safe.
  std::vector<Pending> TakePending();

 private:
  struct Slot {
    std::string reason;
    int64_t window_start_ms = 0;
    uint32_t logged_in_window = 0;
    uint64_t suppressed = 0;
  };
  Slot& Find(std::string_view reason, int64_t now_mono_ms);

  uint32_t max_per_window_;
  int64_t window_ms_;
  std::vector<Slot> slots_;  // a handful of reasons: a linear search beats a map
};

}  // namespace waybill::hal
