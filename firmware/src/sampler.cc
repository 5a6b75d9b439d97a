#include "waybill/firmware/sampler.h"

#include <cmath>
#include <cstdlib>
#include <string>

namespace waybill::firmware {

namespace {

constexpr double kEarthRadiusM = 6371008.8;  // mean radius (IUGG)
constexpr double kPi = 3.14159265358979323846;
constexpr double kRadPerE7 = kPi / 180.0 / 1e7;

// A km/h threshold in cm/s, rounded to the nearest as a receiver's speed is (1 km/h = 100000 cm
// per 3600 s): a fix reporting exactly 8 km/h is at a threshold of 8 km/h, not below it.
uint32_t KmhToCmps(int32_t kmh) {
  return static_cast<uint32_t>(std::lround(kmh * (100000.0 / 3600.0)));
}

// Smallest angle between two courses, in hundredths of a degree (0..18000).
int32_t CourseDeltaCdeg(uint16_t a_cdeg, uint16_t b_cdeg) {
  int32_t d = std::abs(static_cast<int32_t>(a_cdeg) - static_cast<int32_t>(b_cdeg)) % 36000;
  return d > 18000 ? 36000 - d : d;
}

Status Bad(std::string_view field, int64_t value, std::string_view rule) {
  return Status::InvalidArgument("sampling." + std::string(field) + " = " + std::to_string(value) +
                                 ": " + std::string(rule));
}

}  // namespace

double DistanceM(int32_t lat1_e7, int32_t lon1_e7, int32_t lat2_e7, int32_t lon2_e7) {
  int64_t dlon_e7 = static_cast<int64_t>(lon2_e7) - lon1_e7;
  // Across the antimeridian the short way round is the other way.
  if (dlon_e7 > 1800000000) dlon_e7 -= 3600000000;
  if (dlon_e7 < -1800000000) dlon_e7 += 3600000000;
  const double mean_lat_rad = (static_cast<double>(lat1_e7) + lat2_e7) * 0.5 * kRadPerE7;
  const double x = static_cast<double>(dlon_e7) * kRadPerE7 * std::cos(mean_lat_rad);
  const double y = (static_cast<double>(lat2_e7) - lat1_e7) * kRadPerE7;
  return kEarthRadiusM * std::sqrt(x * x + y * y);
}

std::string_view ToString(SampleReason reason) {
  switch (reason) {
    case SampleReason::kFirst:
      return "first";
    case SampleReason::kStopBegin:
      return "stop-begin";
    case SampleReason::kResumed:
      return "resumed";
    case SampleReason::kHeading:
      return "heading";
    case SampleReason::kSpeedChange:
      return "speed-change";
    case SampleReason::kDistance:
      return "distance";
    case SampleReason::kMaxPeriod:
      return "max-period";
    case SampleReason::kParkedHeartbeat:
      return "parked-heartbeat";
    case SampleReason::kLastBeforeOutage:
      return "last-before-outage";
    case SampleReason::kAfterOutage:
      return "after-outage";
    case SampleReason::kNoPosition:
      return "no-position";
    case SampleReason::kOutOfOrder:
      return "out-of-order";
    case SampleReason::kTooSoon:
      return "too-soon";
    case SampleReason::kParked:
      return "parked";
    case SampleReason::kUnchanged:
      return "unchanged";
  }
  return "unknown";
}

std::string_view ToString(MotionState state) {
  switch (state) {
    case MotionState::kMoving:
      return "moving";
    case MotionState::kStopping:
      return "stopping";
    case MotionState::kParked:
      return "parked";
  }
  return "unknown";
}

Status ValidateSamplerConfig(const SamplerConfig& c) {
  // A day bounds every period: beyond it a typo (seconds given as ms * 1000) is likelier than
  // intent.
  constexpr int64_t kDayMs = 24LL * 3600 * 1000;
  if (c.min_period_ms < 0) return Bad("min_period_ms", c.min_period_ms, "must be >= 0");
  if (c.min_period_ms > kDayMs)
    return Bad("min_period_ms", c.min_period_ms, "must be <= 86400000 (a day)");
  if (c.max_period_ms <= 0) return Bad("max_period_ms", c.max_period_ms, "must be > 0");
  if (c.max_period_ms > kDayMs)
    return Bad("max_period_ms", c.max_period_ms, "must be <= 86400000 (a day)");
  if (c.max_period_ms < c.min_period_ms) {
    return Bad("max_period_ms", c.max_period_ms,
               "must be >= sampling.min_period_ms (" + std::to_string(c.min_period_ms) + ")");
  }
  if (c.min_distance_m < 0)
    return Bad("min_distance_m", c.min_distance_m, "must be >= 0 (0 turns it off)");
  if (c.heading_change_deg < 0 || c.heading_change_deg > 180) {
    return Bad("heading_change_deg", c.heading_change_deg, "must be in 0..180 (0 turns it off)");
  }
  if (c.heading_min_speed_kmh < 0 || c.heading_min_speed_kmh > 300) {
    return Bad("heading_min_speed_kmh", c.heading_min_speed_kmh, "must be in 0..300");
  }
  if (c.speed_change_kmh < 0 || c.speed_change_kmh > 300) {
    return Bad("speed_change_kmh", c.speed_change_kmh, "must be in 0..300 (0 turns it off)");
  }
  if (c.stop_speed_kmh < 0 || c.stop_speed_kmh > 300) {
    return Bad("stop_speed_kmh", c.stop_speed_kmh,
               "must be in 0..300 (0 turns stop detection off)");
  }
  if (c.move_speed_kmh < c.stop_speed_kmh || c.move_speed_kmh > 300) {
    return Bad(
        "move_speed_kmh", c.move_speed_kmh,
        "must be in sampling.stop_speed_kmh (" + std::to_string(c.stop_speed_kmh) + ")..300");
  }
  if (c.stop_after_ms < 0 || c.stop_after_ms > kDayMs) {
    return Bad("stop_after_ms", c.stop_after_ms, "must be in 0..86400000 (a day)");
  }
  if (c.parked_period_ms < c.min_period_ms || c.parked_period_ms > kDayMs) {
    return Bad("parked_period_ms", c.parked_period_ms,
               "must be in sampling.min_period_ms (" + std::to_string(c.min_period_ms) +
                   ")..86400000 (a day)");
  }
  if (c.outage_after_ms < 0 || c.outage_after_ms > kDayMs) {
    return Bad("outage_after_ms", c.outage_after_ms,
               "must be in 0..86400000 (a day; 0 turns it off)");
  }
  return Status::Ok();
}

Sampler::Sampler() : Sampler(SamplerConfig()) {}

Sampler::Sampler(const SamplerConfig& config)
    : config_(config),
      stop_cmps_(KmhToCmps(config.stop_speed_kmh)),
      move_cmps_(KmhToCmps(config.move_speed_kmh)),
      heading_min_cmps_(KmhToCmps(config.heading_min_speed_kmh)),
      speed_change_cmps_(KmhToCmps(config.speed_change_kmh)) {}

Result<Sampler> Sampler::Create(const SamplerConfig& config) {
  Status s = ValidateSamplerConfig(config);
  if (!s.ok()) return s;
  return Sampler(config);
}

SampleDecision Sampler::Offer(const hal::GnssFix& fix, int64_t mono_ms) {
  // Rule 7 first, so that the late fix is the last kept one when this fix is judged.
  std::optional<LateFix> late;
  const bool silence = config_.outage_after_ms > 0 && have_offered_ &&
                       mono_ms - offered_mono_ms_ >= config_.outage_after_ms;
  if (held_ && (!fix.has_position() || silence)) {
    late = std::move(held_);
    held_.reset();
    --stats_.by_reason[static_cast<size_t>(held_reason_)];
    Count(SampleReason::kLastBeforeOutage);
    ++stats_.kept;
    Keep(late->fix, late->mono_ms);
  }

  if (!fix.has_position() && have_kept_) in_outage_ = true;
  const bool after_outage = fix.has_position() && (in_outage_ || silence);

  SampleDecision d = Decide(fix, mono_ms, after_outage);
  if (fix.has_position() && d.reason != SampleReason::kOutOfOrder) in_outage_ = false;
  d.late = std::move(late);
  ++stats_.received;
  Count(d.reason);
  if (!have_offered_ || mono_ms > offered_mono_ms_) offered_mono_ms_ = mono_ms;
  have_offered_ = true;
  if (d.keep) {
    ++stats_.kept;
    Keep(fix, mono_ms);
    held_.reset();
  } else if (fix.has_position() && d.reason != SampleReason::kOutOfOrder) {
    if (state_ == MotionState::kParked) {
      held_.reset();
    } else {
      held_ = LateFix{fix, mono_ms};
      held_reason_ = d.reason;
    }
  }
  return d;
}

void Sampler::Keep(const hal::GnssFix& fix, int64_t mono_ms) {
  have_kept_ = true;
  kept_mono_ms_ = mono_ms;
  kept_lat_e7_ = fix.lat_e7;
  kept_lon_e7_ = fix.lon_e7;
  kept_speed_cmps_ = fix.speed_cmps;
  const bool fast = fix.speed_cmps && *fix.speed_cmps >= heading_min_cmps_;
  ref_course_cdeg_ = fast ? fix.course_cdeg : std::nullopt;
}

SampleDecision Sampler::Decide(const hal::GnssFix& fix, int64_t mono_ms, bool after_outage) {
  auto drop = [](SampleReason r) { return SampleDecision{false, r}; };
  auto keep = [](SampleReason r) { return SampleDecision{true, r}; };

  if (!fix.has_position()) return drop(SampleReason::kNoPosition);
  if (have_kept_ && mono_ms < kept_mono_ms_) return drop(SampleReason::kOutOfOrder);

  const std::optional<uint32_t> speed = fix.speed_cmps;
  const bool slow = speed && *speed < stop_cmps_;
  const bool moving_again = speed && *speed >= move_cmps_;

  if (!have_kept_) {
    if (slow) {
      state_ = MotionState::kStopping;
      stop_since_ms_ = mono_ms;
    }
    return keep(SampleReason::kFirst);
  }

  // Rule 3: the motion state machine.
  switch (state_) {
    case MotionState::kMoving:
      if (slow) {
        state_ = MotionState::kStopping;
        stop_since_ms_ = mono_ms;
        return keep(SampleReason::kStopBegin);
      }
      break;
    case MotionState::kStopping:
      if (moving_again) {
        state_ = MotionState::kMoving;
      } else if (speed && mono_ms - stop_since_ms_ >= config_.stop_after_ms) {
        state_ = MotionState::kParked;
      }
      break;
    case MotionState::kParked:
      if (moving_again) {
        state_ = MotionState::kMoving;
        return keep(SampleReason::kResumed);
      }
      break;
  }
  if (after_outage && state_ != MotionState::kParked) return keep(SampleReason::kAfterOutage);

  const int64_t since_kept_ms = mono_ms - kept_mono_ms_;
  if (since_kept_ms < config_.min_period_ms) return drop(SampleReason::kTooSoon);

  if (state_ == MotionState::kParked) {
    return since_kept_ms >= config_.parked_period_ms ? keep(SampleReason::kParkedHeartbeat)
                                                     : drop(SampleReason::kParked);
  }

  const bool fast = speed && *speed >= heading_min_cmps_;
  if (config_.heading_change_deg > 0 && fast && fix.course_cdeg) {
    if (!ref_course_cdeg_) {
      // The last kept fix was too slow for its course to mean anything: the first fast fix after
      // it sets the reference, so a turn is measured from the direction the truck drove off in.
      ref_course_cdeg_ = fix.course_cdeg;
    } else if (CourseDeltaCdeg(*fix.course_cdeg, *ref_course_cdeg_) >=
               config_.heading_change_deg * 100) {
      return keep(SampleReason::kHeading);
    }
  }
  if (speed_change_cmps_ > 0 && speed && kept_speed_cmps_) {
    const uint32_t delta_cmps =
        *speed > *kept_speed_cmps_ ? *speed - *kept_speed_cmps_ : *kept_speed_cmps_ - *speed;
    if (delta_cmps >= speed_change_cmps_) return keep(SampleReason::kSpeedChange);
  }
  if (config_.min_distance_m > 0 &&
      DistanceM(kept_lat_e7_, kept_lon_e7_, fix.lat_e7, fix.lon_e7) >= config_.min_distance_m) {
    return keep(SampleReason::kDistance);
  }
  if (since_kept_ms >= config_.max_period_ms) return keep(SampleReason::kMaxPeriod);
  return drop(SampleReason::kUnchanged);
}

}  // namespace waybill::firmware
