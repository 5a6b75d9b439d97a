// Sampler: which GNSS fixes become breadcrumbs in the outbox ("curve logging").
//
// A receiver gives a fix every second (or faster); storing and sending all of them costs storage
// during dead zones and bytes on the cellular link, while most of them add nothing a map would
// show: on a straight road the fixes in between lie on the line between their neighbours. The
// sampler keeps the fixes that carry shape or news and drops the rest, one decision per fix as it
// arrives, in O(1) and without allocation. A kept fix can be stored at once; the one exception,
// a late keep at a GNSS outage (rule 7), needs one fix of memory and no look-ahead.
//
// THE RULES, in the order they are tried for each fix (the first that applies gives the reason):
//  1. A fix without a position is dropped (kNoPosition) and starts an outage (rule 7). A fix
//     whose monotonic time is earlier than the last kept fix's is dropped (kOutOfOrder) and
//     changes nothing.
//  2. The first fix with a position is kept (kFirst).
//  3. Motion state, with hysteresis so that speed noise at a standstill cannot flap it:
//     moving --(speed < stop_speed_kmh)--> stopping --(still below move_speed_kmh after
//     stop_after_ms)--> parked --(speed >= move_speed_kmh)--> moving; stopping goes back to
//     moving, without a keep of its own, when the speed reaches move_speed_kmh before
//     stop_after_ms. The fix that starts a stop is kept (kStopBegin: where and when the truck
//     halted), and so is the fix that leaves the parked state (kResumed: when it drove off). These
//     two are protected: they are kept even within min_period_ms, which cannot make them frequent
//     since each needs the speed to cross both thresholds. A fix without a speed leaves the state
//     as it is.
//  4. The first fix with a position after an outage is kept (kAfterOutage), unless parked; it is
//     protected like those of rule 3, as an outage gives at most one.
//  5. Any other fix closer than min_period_ms to the last kept one is dropped (kTooSoon): a cap on
//     the rate whatever the receiver's.
//  6. While parked, one fix every parked_period_ms is kept (kParkedHeartbeat: the truck is still
//     there and the unit alive); the others are dropped (kParked). While moving or stopping, a
//     fix is kept when any of these holds against the last kept fix: the course turned by
//     heading_change_deg or more (kHeading; only at heading_min_speed_kmh and above, as a
//     receiver's course is noise when slow: the reference course is that of the last kept fix,
//     or of the first fast fix after it when that one was slow), the speed changed by
//     speed_change_kmh or more (kSpeedChange), the truck is min_distance_m or more away
//     (kDistance), or max_period_ms or more have passed (kMaxPeriod). Otherwise it is dropped
//     (kUnchanged).
//  7. Outage: a GNSS outage begins with a fix without a position, or is a silence of
//     outage_after_ms or more before a fix with one. When the last fix before it was dropped, it
//     is kept after all, late, as kLastBeforeOutage, and handed back in SampleDecision::late, to
//     be stored before the fix that revealed the outage. Receivers coast on dead reckoning for a
//     while before they admit the loss, so without these two fixes the track would end up to
//     min_distance_m before the tunnel or loading bay, and the line to the first fix after it
//     would cut across whatever the truck drove meanwhile (87 m off on a real drive, see
//     docs/SAMPLING.md). Nothing is held while parked: the stop fix already says where the truck
//     is.
//
// Why this shape: on a turn, the course trigger bounds how far the line between two kept fixes
// strays (a chord across a turn of angle a on radius r strays r(1 - cos(a/2))), so curves cost
// fixes and straights do not; on a bend so gentle that the course never turns heading_change_deg
// between fixes, the distance trigger bounds the chord instead. The speed trigger keeps braking
// and acceleration visible (arrival times, harsh-driving reports); the period triggers bound how
// stale the track can be. docs/SAMPLING.md gives the defaults' reasons and the deviation measured
// on real drives.
//
// Times are the caller's monotonic clock (hal::Clock::mono_ms at reception), never the fix's UTC,
// which may be absent or wrong.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "waybill/hal/gnss_fix.h"
#include "waybill/status.h"

namespace waybill::firmware {

// The `[sampling]` section of the device configuration. A trigger set to 0 is off (distance,
// heading, speed change); the defaults suit a delivery truck (see docs/SAMPLING.md).
struct SamplerConfig {
  // No two fixes kept closer than this (except the protected ones, rules 3 and 4). 1 s: a
  // 5-10 Hz receiver adds nothing a map would show, and 1 s is 25 m at motorway speed.
  int64_t min_period_ms = 1000;
  // While moving or stopping, a fix is kept at least this often: the dispatcher's live view is at
  // most this stale on an empty straight road.
  int64_t max_period_ms = 60000;
  // Keep a fix once the truck is this far from the last kept one (fleet trackers' "min
  // distance": the distance to cover before the next record). It bounds the chord along gentle
  // bends that never turn heading_change_deg between two fixes: on a measured motorway bend a
  // 300 m chord strayed 13.5 m, a 500 m one 31 m (docs/SAMPLING.md).
  int32_t min_distance_m = 300;
  // Keep a fix when the course turned by this much since the last kept fix. A 15 degree turn
  // on a 50 m junction radius strays 0.4 m from its chord: the error comes from the sampling
  // interval, not from this threshold, at junction radii.
  int32_t heading_change_deg = 15;
  // The course trigger is only used at or above this speed: below it a receiver's course
  // wanders. Low because trucks take junctions slowly.
  int32_t heading_min_speed_kmh = 5;
  // Keep a fix when the speed changed by this much since the last kept fix: braking to a stop
  // from 50 km/h leaves about five fixes.
  int32_t speed_change_kmh = 10;
  // Below this speed the truck is stopping (the first such fix is kept).
  int32_t stop_speed_kmh = 3;
  // At or above this speed the truck is moving again; the gap to stop_speed_kmh is hysteresis.
  int32_t move_speed_kmh = 8;
  // Stopping for this long (without reaching move_speed_kmh) means parked. Longer than a
  // red light, shorter than a delivery.
  int64_t stop_after_ms = 120000;
  // While parked, keep one fix this often.
  int64_t parked_period_ms = 300000;
  // No fix for this long is a GNSS outage (rule 7), as is a fix without a position. 5 s: several
  // missed epochs of a 1-2 Hz receiver, not one late sentence. 0 turns the silence rule off.
  int64_t outage_after_ms = 5000;
};

// Checks every field; the message names the first bad one, its value and the rule, e.g.
// "sampling.min_period_ms = -5: must be >= 0". Pure, thread-safe.
Status ValidateSamplerConfig(const SamplerConfig& config);

// Why a fix was kept or dropped. Values are counted in SamplerStats; never renumber.
enum class SampleReason : uint8_t {
  // kept
  kFirst = 0,
  kStopBegin,
  kResumed,
  kHeading,
  kSpeedChange,
  kDistance,
  kMaxPeriod,
  kParkedHeartbeat,
  kLastBeforeOutage,  // only in SampleDecision::late (rule 7)
  kAfterOutage,
  // dropped
  kNoPosition,
  kOutOfOrder,
  kTooSoon,
  kParked,
  kUnchanged,
};
inline constexpr size_t kSampleReasonCount = static_cast<size_t>(SampleReason::kUnchanged) + 1;

// True for the reasons that keep a fix.
constexpr bool IsKept(SampleReason reason) { return reason <= SampleReason::kAfterOutage; }
// "heading", "too-soon", ...: stable names for logs and health reports.
std::string_view ToString(SampleReason reason);

// A fix offered earlier, dropped then, and kept now (rule 7).
struct LateFix {
  hal::GnssFix fix;
  int64_t mono_ms = 0;  // as offered
};

struct SampleDecision {
  bool keep = false;  // about the fix just offered
  SampleReason reason = SampleReason::kUnchanged;
  // The previous fix with a position, to be stored as well (and before this one), reason
  // kLastBeforeOutage.
  std::optional<LateFix> late;
};

struct SamplerStats {
  uint64_t received = 0;  // fixes offered
  uint64_t kept = 0;      // fixes kept, late ones included
  // Final decisions, indexed by SampleReason; they add up to `received` (a late keep moves its
  // fix from the drop reason it was first given to kLastBeforeOutage).
  std::array<uint64_t, kSampleReasonCount> by_reason = {};

  uint64_t count(SampleReason reason) const { return by_reason[static_cast<size_t>(reason)]; }
};

// Motion state as the sampler sees it (rule 3).
enum class MotionState : uint8_t { kMoving, kStopping, kParked };
std::string_view ToString(MotionState state);

// Thread-compatible: one owner (the GNSS pipeline) calls it; const methods may be called
// concurrently with each other but not with Offer().
class Sampler {
 public:
  // A sampler with the default configuration.
  Sampler();
  // Fails with kInvalidArgument (the message of ValidateSamplerConfig) on a bad configuration.
  static Result<Sampler> Create(const SamplerConfig& config);

  // Decides on one fix received at `mono_ms` (the caller's monotonic clock), and perhaps on the
  // previous one again (rule 7). Never fails; every call is counted in stats(). O(1), no
  // allocation.
  SampleDecision Offer(const hal::GnssFix& fix, int64_t mono_ms);

  const SamplerConfig& config() const { return config_; }
  const SamplerStats& stats() const { return stats_; }
  MotionState motion_state() const { return state_; }

 private:
  explicit Sampler(const SamplerConfig& config);
  SampleDecision Decide(const hal::GnssFix& fix, int64_t mono_ms, bool after_outage);
  void Keep(const hal::GnssFix& fix, int64_t mono_ms);
  void Count(SampleReason reason) { ++stats_.by_reason[static_cast<size_t>(reason)]; }

  SamplerConfig config_;
  // The km/h thresholds in the receiver's unit, cm/s.
  uint32_t stop_cmps_;
  uint32_t move_cmps_;
  uint32_t heading_min_cmps_;
  uint32_t speed_change_cmps_;
  SamplerStats stats_;
  MotionState state_ = MotionState::kMoving;
  int64_t stop_since_ms_ = 0;  // mono time of the fix that started the current stop

  bool have_kept_ = false;
  int64_t kept_mono_ms_ = 0;
  int32_t kept_lat_e7_ = 0;
  int32_t kept_lon_e7_ = 0;
  std::optional<uint32_t> kept_speed_cmps_;
  // Course the heading trigger compares against (rule 6); nullopt until a fast fix gives one.
  std::optional<uint16_t> ref_course_cdeg_;

  bool have_offered_ = false;
  int64_t offered_mono_ms_ = 0;  // the last fix offered, with a position or not
  bool in_outage_ = false;       // since a fix without a position (rule 7)
  // The last fix with a position, when it was dropped and may yet be kept (rule 7).
  std::optional<LateFix> held_;
  SampleReason held_reason_ = SampleReason::kUnchanged;
};

// Great-circle distance in metres between two positions in degrees * 1e7, by the equirectangular
// approximation: within 0.1% of haversine below 10 km, which is all the sampler measures. Pure.
double DistanceM(int32_t lat1_e7, int32_t lon1_e7, int32_t lat2_e7, int32_t lon2_e7);

}  // namespace waybill::firmware
