#include "waybill/hal/clock.h"

#include <sys/timex.h>
#include <unistd.h>

#include <chrono>

namespace waybill::hal {

std::string_view ToString(TimeSource source) {
  switch (source) {
    case TimeSource::kUnknown: return "unknown";
    case TimeSource::kGnss: return "gnss";
    case TimeSource::kNtp: return "ntp";
    case TimeSource::kRtc: return "rtc";
    case TimeSource::kMonotonic: return "monotonic";
    case TimeSource::kGnssCorrected: return "gnss-corrected";
  }
  return "unknown";
}

namespace {

class SystemClock final : public Clock {
 public:
  int64_t wall_ms() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
  int64_t mono_ms() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  }
  TimeSource wall_source() const override {
    // adjtimex reports TIME_ERROR while the kernel's clock is not synchronised (no NTP client has
    // disciplined it). An RTC is present when /dev/rtc0 exists; it set the clock at boot.
    struct timex tx = {};
    int state = adjtimex(&tx);
    if (state != TIME_ERROR && state != -1 && !(tx.status & STA_UNSYNC)) return TimeSource::kNtp;
    if (access("/dev/rtc0", F_OK) == 0) return TimeSource::kRtc;
    return TimeSource::kMonotonic;
  }
};

}  // namespace

Clock& Clock::System() {
  static SystemClock clock;
  return clock;
}

}  // namespace waybill::hal
