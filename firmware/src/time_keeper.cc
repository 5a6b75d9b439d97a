#include "waybill/firmware/time_keeper.h"

#include <cstdlib>
#include <string>

namespace waybill::firmware {

namespace {

Status Bad(std::string_view field, int64_t value, std::string_view rule) {
  return Status::InvalidArgument("time." + std::string(field) + " = " + std::to_string(value) +
                                 ": " + std::string(rule));
}

int64_t AbsDiff(int64_t a, int64_t b) { return a > b ? a - b : b - a; }

}  // namespace

std::string_view ToString(GnssTimeVerdict verdict) {
  switch (verdict) {
    case GnssTimeVerdict::kNoTime:
      return "no-time";
    case GnssTimeVerdict::kTooEarly:
      return "too-early";
    case GnssTimeVerdict::kDisagreesWithNtp:
      return "disagrees-with-ntp";
    case GnssTimeVerdict::kAccepted:
      return "accepted";
  }
  return "unknown";
}

Status ValidateTimeKeeperConfig(const TimeKeeperConfig& c) {
  if (c.gnss_fresh_ms <= 0) return Bad("gnss_fresh_ms", c.gnss_fresh_ms, "must be > 0");
  if (c.max_disagreement_ms <= 0) {
    return Bad("max_disagreement_ms", c.max_disagreement_ms, "must be > 0");
  }
  if (c.min_utc_ms < 0) return Bad("min_utc_ms", c.min_utc_ms, "must be >= 0");
  return Status::Ok();
}

Result<std::unique_ptr<TimeKeeper>> TimeKeeper::Create(const hal::Clock& clock,
                                                       const TimeKeeperConfig& config) {
  Status s = ValidateTimeKeeperConfig(config);
  if (!s.ok()) return s;
  return std::unique_ptr<TimeKeeper>(new TimeKeeper(clock, config));
}

TimeKeeper::TimeKeeper(const hal::Clock& clock, const TimeKeeperConfig& config)
    : clock_(clock), config_(config), boot_base_ms_(clock.wall_ms() - clock.mono_ms()) {}

GnssTimeUpdate TimeKeeper::OnGnssFix(const hal::GnssFix& fix) {
  GnssTimeUpdate out;
  std::lock_guard<std::mutex> lock(mu_);
  if (!fix.has_position() || !fix.utc_ms) {
    ++stats_.gnss_no_time;
    out.verdict = GnssTimeVerdict::kNoTime;
    return out;
  }
  const int64_t utc_ms = *fix.utc_ms;
  const int64_t mono_ms = clock_.mono_ms();
  const int64_t wall_ms = clock_.wall_ms();
  out.gnss_minus_wall_ms = utc_ms - wall_ms;

  if (utc_ms < config_.min_utc_ms) {
    ++stats_.gnss_too_early;
    stats_.last_rejected_utc_ms = utc_ms;
    out.verdict = GnssTimeVerdict::kTooEarly;
    return out;
  }
  if (clock_.wall_source() == hal::TimeSource::kNtp &&
      AbsDiff(utc_ms, wall_ms) > config_.max_disagreement_ms) {
    ++stats_.gnss_disagrees_with_ntp;
    stats_.last_rejected_utc_ms = utc_ms;
    out.verdict = GnssTimeVerdict::kDisagreesWithNtp;
    return out;
  }

  if (anchor_ && AbsDiff(utc_ms, anchor_->utc_ms + (mono_ms - anchor_->mono_ms)) >
                     config_.max_disagreement_ms) {
    ++stats_.gnss_jumps;
  }
  anchor_ = Anchor{utc_ms, mono_ms};
  ++stats_.gnss_accepted;
  out.verdict = GnssTimeVerdict::kAccepted;

  if (!correction_reported_ || monotonic_stamps_since_correction_) {
    correction_reported_ = true;
    monotonic_stamps_since_correction_ = false;
    ++stats_.corrections_offered;
    out.correction_offset_ms = utc_ms - (boot_base_ms_ + mono_ms);
  }
  return out;
}

Timestamp TimeKeeper::Now() {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t mono_ms = clock_.mono_ms();
  Timestamp ts;
  if (anchor_ && mono_ms - anchor_->mono_ms <= config_.gnss_fresh_ms) {
    ts = {anchor_->utc_ms + (mono_ms - anchor_->mono_ms), hal::TimeSource::kGnss};
  } else {
    const hal::TimeSource source = clock_.wall_source();
    if (source == hal::TimeSource::kNtp || source == hal::TimeSource::kRtc) {
      ts = {clock_.wall_ms(), source};
    } else {
      ts = {boot_base_ms_ + mono_ms, hal::TimeSource::kMonotonic};
      monotonic_stamps_since_correction_ = true;
    }
  }
  ++stats_.stamps_by_source[static_cast<size_t>(ts.source)];
  return ts;
}

std::optional<TimeKeeper::Anchor> TimeKeeper::anchor() const {
  std::lock_guard<std::mutex> lock(mu_);
  return anchor_;
}

TimeKeeperStats TimeKeeper::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace waybill::firmware
