// TimeKeeper: what time it is, and on what authority, for stamping events.
//
// Every event carries its time and the source of that time (DESIGN.md, invariant 5). A truck
// may boot with a clock that knows nothing (no RTC, no network yet), so some events are stamped
// before any good time exists; they are corrected once GNSS time arrives. A GNSS receiver can
// also lie about the date (a GPS week rollover, a default date after a cold start), and a lie
// adopted as the time of day would poison every stamp after it. The rules:
//
//  1. A GNSS time is a fix with a position and a UTC time (a receiver without a position fix
//     may be reporting its own unsolved clock). Fixes without either are ignored (kNoTime).
//  2. A GNSS time earlier than min_utc_ms (default 2020-01-01) is rejected (kTooEarly): it is a
//     week rollover or a receiver's default date, whatever the system clock says.
//  3. When the system clock is NTP-synchronised and the GNSS time differs from it by more than
//     max_disagreement_ms (default a day), the GNSS time is rejected (kDisagreesWithNtp) and
//     counted: a rollover that slipped through rule 2 must never replace a network time. Smaller
//     differences are accepted, GNSS being the better clock.
//  4. Otherwise the GNSS time is accepted: it becomes the anchor (its UTC and the monotonic time
//     it arrived at). A step of more than max_disagreement_ms from the previous anchor (carried
//     forward on the monotonic clock) is counted as a jump; the newest GNSS time wins, since
//     receivers converge to the right date, not away from it.
//  5. Now() stamps an event. While the anchor is at most gnss_fresh_ms old it gives
//     anchor UTC + monotonic time elapsed since, source kGnss. Beyond that (tunnel, depot, a
//     dead antenna) the monotonic clock's drift and a possible suspend are no longer bounded, and
//     it falls back to the system clock: wall_ms() with source kNtp or kRtc as the clock says,
//     or, when the clock is unsynchronised (kMonotonic or kUnknown), boot_base + mono_ms() with
//     source kMonotonic, where boot_base = wall_ms() - mono_ms() read once at construction.
//  6. Correction: the first accepted GNSS time of this TimeKeeper (of this boot, as the daemon
//     makes one per run) reports correction_offset_ms = GNSS UTC - (boot_base + mono_ms at
//     arrival): the daemon passes it to Outbox::CorrectTime, which adds it to the events stamped
//     kMonotonic and marks them kGnssCorrected. Later accepted GNSS times report an offset again
//     only if kMonotonic stamps were handed out since the last report (GNSS came back after a
//     fallback); the outbox corrects only events still marked kMonotonic, so a repeat touches
//     only the new ones.
//
// Why kMonotonic stamps use the frozen boot_base rather than the live wall_ms(): the usual life of
// an unsynchronised clock is to be stepped by NTP a minute after boot, when the modem comes up,
// before the first GNSS fix. Measured against the live wall clock, the offset at the first GNSS
// time would then be about zero, and the stamps taken before the step would be marked corrected
// without being corrected. On one base, one offset corrects every kMonotonic stamp, whatever
// happened to the wall clock in between. Limits: the monotonic clock stops during a system
// suspend, and a daemon restarted within a boot after a clock step has a different base than its
// predecessor; both make a correction wrong by that amount. An in-cab unit powers off rather than
// suspends.
//
// GNSS times are taken as of their arrival; the receiver's output latency (typically 0.1-0.5 s
// after the epoch) is not compensated.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include "waybill/hal/clock.h"
#include "waybill/hal/gnss_fix.h"
#include "waybill/status.h"

namespace waybill::firmware {

struct TimeKeeperConfig {
  // How long a GNSS time stays the authority after it arrived.
  int64_t gnss_fresh_ms = 10 * 60 * 1000;
  // Rule 3's bound against an NTP-synchronised clock, and rule 4's jump threshold.
  int64_t max_disagreement_ms = 24LL * 3600 * 1000;
  // Rule 2's floor: no real GNSS time of a running Waybill is older. Set to 0 only to replay old
  // recordings as if they were live.
  int64_t min_utc_ms = 1577836800000;  // 2020-01-01T00:00:00Z
};

// The message names the first bad field: "time.gnss_fresh_ms = 0: must be > 0". Pure.
Status ValidateTimeKeeperConfig(const TimeKeeperConfig& config);

struct Timestamp {
  int64_t ts_ms = 0;  // ms since the Unix epoch
  hal::TimeSource source = hal::TimeSource::kUnknown;
};

enum class GnssTimeVerdict : uint8_t {
  kNoTime,            // rule 1: no position or no UTC; ignored
  kTooEarly,          // rule 2: rejected
  kDisagreesWithNtp,  // rule 3: rejected
  kAccepted,          // rule 4: now the anchor
};
std::string_view ToString(GnssTimeVerdict verdict);

struct GnssTimeUpdate {
  GnssTimeVerdict verdict = GnssTimeVerdict::kNoTime;
  // Set when the daemon should call Outbox::CorrectTime(*correction_offset_ms) (rule 6).
  std::optional<int64_t> correction_offset_ms;
  // GNSS UTC minus the system wall clock at arrival, for every fix with a time (health reports:
  // how wrong the system clock is).
  std::optional<int64_t> gnss_minus_wall_ms;
};

struct TimeKeeperStats {
  uint64_t gnss_accepted = 0;
  uint64_t gnss_no_time = 0;
  uint64_t gnss_too_early = 0;
  uint64_t gnss_disagrees_with_ntp = 0;
  uint64_t gnss_jumps = 0;  // accepted times that stepped the anchor (rule 4)
  uint64_t corrections_offered = 0;
  uint64_t stamps_by_source[6] = {};            // Now() results, indexed by hal::TimeSource value
  std::optional<int64_t> last_rejected_utc_ms;  // the last GNSS time refused by rule 2 or 3
};

// Thread-safe: the GNSS reader calls OnGnssFix while any thread stamps events with Now().
class TimeKeeper {
 public:
  // `clock` must outlive the TimeKeeper and be thread-safe. Reads boot_base from it (rule 5).
  // Fails with kInvalidArgument on a bad configuration.
  static Result<std::unique_ptr<TimeKeeper>> Create(const hal::Clock& clock,
                                                    const TimeKeeperConfig& config = {});

  // Call as each fix arrives (times it with clock.mono_ms()). Applies rules 1-4 and 6. Never fails:
  // a rejected time is counted and changes nothing.
  GnssTimeUpdate OnGnssFix(const hal::GnssFix& fix);

  // The time and source to stamp an event happening now (rule 5). Never fails.
  Timestamp Now();

  // The last accepted GNSS time and its age, if any (health and diagnostics).
  struct Anchor {
    int64_t utc_ms = 0;
    int64_t mono_ms = 0;
  };
  std::optional<Anchor> anchor() const;
  TimeKeeperStats stats() const;

 private:
  TimeKeeper(const hal::Clock& clock, const TimeKeeperConfig& config);

  const hal::Clock& clock_;
  const TimeKeeperConfig config_;
  const int64_t boot_base_ms_;

  mutable std::mutex mu_;
  std::optional<Anchor> anchor_;                    // guarded by mu_
  bool correction_reported_ = false;                // guarded by mu_
  bool monotonic_stamps_since_correction_ = false;  // guarded by mu_
  TimeKeeperStats stats_;                           // guarded by mu_
};

}  // namespace waybill::firmware
