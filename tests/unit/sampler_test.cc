#include "waybill/firmware/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

#include "support/drive_track.h"

namespace waybill::firmware {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kMPerDegLat = 6371008.8 * kPi / 180.0;

// A simulated truck: moves along its course at its speed, one fix per Step().
struct Truck {
  double lat_deg = 48.137;  // Munich
  double lon_deg = 11.575;
  double speed_kmh = 50;
  double course_deg = 0;
  int64_t mono_ms = 1000000;

  hal::GnssFix Fix() const {
    hal::GnssFix f;
    f.mode = hal::FixMode::k3D;
    f.quality = 1;
    f.lat_e7 = static_cast<int32_t>(std::llround(lat_deg * 1e7));
    f.lon_e7 = static_cast<int32_t>(std::llround(lon_deg * 1e7));
    f.speed_cmps = static_cast<uint32_t>(std::llround(speed_kmh * 100000.0 / 3600.0));
    f.course_cdeg = static_cast<uint16_t>(std::llround(course_deg * 100) % 36000);
    return f;
  }
  void Advance(int64_t dt_ms) {
    const double d_m = speed_kmh / 3.6 * static_cast<double>(dt_ms) / 1000.0;
    lat_deg += d_m * std::cos(course_deg * kPi / 180) / kMPerDegLat;
    lon_deg +=
        d_m * std::sin(course_deg * kPi / 180) / (kMPerDegLat * std::cos(lat_deg * kPi / 180));
    mono_ms += dt_ms;
  }
  // Time passes, the truck stays where it is (its speed is receiver noise).
  void Wait(int64_t dt_ms) { mono_ms += dt_ms; }
};

hal::GnssFix NoFix() { return hal::GnssFix{}; }

// Offers `steps` fixes one `dt_ms` apart; returns the indexes of the kept ones.
std::vector<int> Drive(Sampler& s, Truck& t, int steps, int64_t dt_ms = 1000,
                       std::vector<SampleReason>* reasons = nullptr) {
  std::vector<int> kept;
  for (int i = 0; i < steps; ++i) {
    t.Advance(dt_ms);
    SampleDecision d = s.Offer(t.Fix(), t.mono_ms);
    if (d.keep) kept.push_back(i);
    if (d.keep && reasons) reasons->push_back(d.reason);
  }
  return kept;
}

void ExpectStatsAddUp(const Sampler& s) {
  const SamplerStats& st = s.stats();
  EXPECT_EQ(std::accumulate(st.by_reason.begin(), st.by_reason.end(), uint64_t{0}), st.received);
  uint64_t kept = 0;
  for (size_t r = 0; r < kSampleReasonCount; ++r) {
    if (IsKept(static_cast<SampleReason>(r))) kept += st.by_reason[r];
  }
  EXPECT_EQ(kept, st.kept);
}

TEST(SamplerConfig, DefaultsAreValid) { EXPECT_TRUE(ValidateSamplerConfig({}).ok()); }

TEST(SamplerConfig, ErrorNamesTheFieldItsValueAndTheRule) {
  SamplerConfig c;
  c.min_period_ms = -5;
  Status s = ValidateSamplerConfig(c);
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(s.message(), "sampling.min_period_ms = -5: must be >= 0");

  c = {};
  c.max_period_ms = 500;
  EXPECT_EQ(ValidateSamplerConfig(c).message(),
            "sampling.max_period_ms = 500: must be >= sampling.min_period_ms (1000)");
  c = {};
  c.heading_change_deg = 181;
  EXPECT_EQ(ValidateSamplerConfig(c).message(),
            "sampling.heading_change_deg = 181: must be in 0..180 (0 turns it off)");
  c = {};
  c.move_speed_kmh = 2;
  EXPECT_EQ(ValidateSamplerConfig(c).message(),
            "sampling.move_speed_kmh = 2: must be in sampling.stop_speed_kmh (3)..300");
  c = {};
  c.min_distance_m = -1;
  EXPECT_NE(ValidateSamplerConfig(c).message().find("sampling.min_distance_m = -1"),
            std::string::npos);
  c = {};
  c.parked_period_ms = 10;
  EXPECT_NE(ValidateSamplerConfig(c).message().find("sampling.parked_period_ms = 10"),
            std::string::npos);
  c = {};
  c.outage_after_ms = -1;
  EXPECT_NE(ValidateSamplerConfig(c).message().find("sampling.outage_after_ms = -1"),
            std::string::npos);
}

TEST(Sampler, CreateRefusesABadConfig) {
  SamplerConfig c;
  c.stop_after_ms = -1;
  Result<Sampler> r = Sampler::Create(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "sampling.stop_after_ms = -1: must be in 0..86400000 (a day)");
}

TEST(Sampler, KeepsTheFirstFixWithAPositionOnly) {
  Sampler s;
  Truck t;
  EXPECT_EQ(s.Offer(NoFix(), t.mono_ms).reason, SampleReason::kNoPosition);
  t.Advance(1000);
  SampleDecision d = s.Offer(t.Fix(), t.mono_ms);
  EXPECT_TRUE(d.keep);
  EXPECT_EQ(d.reason, SampleReason::kFirst);
  EXPECT_FALSE(d.late);
  ExpectStatsAddUp(s);
}

TEST(Sampler, StraightRoadKeepsOneFixPerMinDistance) {
  Sampler s;
  Truck t;
  t.speed_kmh = 70;  // 19.4 m/s: 300 m after 16 fixes
  s.Offer(t.Fix(), t.mono_ms);
  std::vector<SampleReason> reasons;
  std::vector<int> kept = Drive(s, t, 60, 1000, &reasons);
  EXPECT_EQ(kept, (std::vector<int>{15, 31, 47}));
  for (SampleReason r : reasons) EXPECT_EQ(r, SampleReason::kDistance);
  EXPECT_EQ(s.stats().count(SampleReason::kUnchanged), 57u);
  ExpectStatsAddUp(s);
}

TEST(Sampler, MaxPeriodKeepsAFixWhenNothingElseDoes) {
  SamplerConfig c;
  c.min_distance_m = 0;
  Sampler s = *Sampler::Create(c);
  Truck t;
  s.Offer(t.Fix(), t.mono_ms);
  std::vector<SampleReason> reasons;
  EXPECT_EQ(Drive(s, t, 130, 1000, &reasons), (std::vector<int>{59, 119}));
  EXPECT_EQ(reasons,
            (std::vector<SampleReason>{SampleReason::kMaxPeriod, SampleReason::kMaxPeriod}));
}

TEST(Sampler, HeadingChangeKeepsTheFixWhereTheTurnPassesTheThreshold) {
  Sampler s;
  Truck t;
  t.course_deg = 350;
  s.Offer(t.Fix(), t.mono_ms);
  // 3 degrees a second, across north: 350 -> 2 stays under 15, 350 -> 5 is 15.
  std::vector<SampleReason> reasons;
  std::vector<int> kept;
  for (int i = 0; i < 5; ++i) {
    t.course_deg = std::fmod(t.course_deg + 3, 360);
    t.Advance(1000);
    SampleDecision d = s.Offer(t.Fix(), t.mono_ms);
    if (d.keep) {
      kept.push_back(i);
      reasons.push_back(d.reason);
    }
  }
  EXPECT_EQ(kept, (std::vector<int>{4}));
  EXPECT_EQ(reasons, (std::vector<SampleReason>{SampleReason::kHeading}));
}

TEST(Sampler, CourseIsIgnoredBelowTheHeadingMinSpeed) {
  SamplerConfig c;
  c.min_distance_m = 0;
  Sampler s = *Sampler::Create(c);
  Truck t;
  t.speed_kmh = 4;  // above stop_speed_kmh, below heading_min_speed_kmh
  s.Offer(t.Fix(), t.mono_ms);
  for (int i = 0; i < 30; ++i) {
    t.course_deg = (i % 2) ? 90 : 270;  // the wandering course of a slow receiver
    t.Advance(1000);
    EXPECT_FALSE(s.Offer(t.Fix(), t.mono_ms).keep) << "fix " << i;
  }
}

TEST(Sampler, TurnIsMeasuredFromTheFirstFastCourseAfterASlowKeep) {
  SamplerConfig c;
  c.speed_change_kmh = 0;
  Sampler s = *Sampler::Create(c);
  Truck t;
  t.speed_kmh = 4;
  t.course_deg = 0;
  ASSERT_TRUE(s.Offer(t.Fix(), t.mono_ms).keep);  // slow: its course means nothing
  t.speed_kmh = 20;
  t.course_deg = 90;
  t.Advance(1000);
  EXPECT_FALSE(s.Offer(t.Fix(), t.mono_ms).keep);  // 90 degrees off the slow course: no turn
  t.course_deg = 100;
  t.Advance(1000);
  EXPECT_FALSE(s.Offer(t.Fix(), t.mono_ms).keep);
  t.course_deg = 106;
  t.Advance(1000);
  EXPECT_EQ(s.Offer(t.Fix(), t.mono_ms).reason, SampleReason::kHeading);
}

TEST(Sampler, SpeedChangeKeepsAccelerationAndBraking) {
  SamplerConfig c;
  c.min_distance_m = 0;
  Sampler s = *Sampler::Create(c);
  Truck t;
  t.speed_kmh = 50;
  s.Offer(t.Fix(), t.mono_ms);
  std::vector<int> kept;
  const double speeds[] = {52, 55, 59, 62, 64, 70, 74, 66, 60};
  for (int i = 0; i < 9; ++i) {
    t.speed_kmh = speeds[i];
    t.Advance(1000);
    SampleDecision d = s.Offer(t.Fix(), t.mono_ms);
    if (d.keep) {
      EXPECT_EQ(d.reason, SampleReason::kSpeedChange);
      kept.push_back(i);
    }
  }
  EXPECT_EQ(kept, (std::vector<int>{3, 6, 8}));  // +12 from 50, +12 from 62, -14 from 74
}

TEST(Sampler, MinPeriodCapsTheRateOfAFastReceiver) {
  Sampler s;
  Truck t;
  t.speed_kmh = 40;
  s.Offer(t.Fix(), t.mono_ms);
  int64_t last_kept_ms = t.mono_ms;
  int kept = 0;
  for (int i = 0; i < 200; ++i) {  // 10 Hz, turning 5 degrees per fix: every fix would qualify
    t.course_deg = std::fmod(t.course_deg + 5, 360);
    t.Advance(100);
    SampleDecision d = s.Offer(t.Fix(), t.mono_ms);
    if (d.keep) {
      EXPECT_GE(t.mono_ms - last_kept_ms, 1000);
      last_kept_ms = t.mono_ms;
      ++kept;
    }
  }
  EXPECT_EQ(kept, 20);
  EXPECT_EQ(s.stats().count(SampleReason::kTooSoon), 180u);
}

TEST(Sampler, StopKeepsItsFirstFixThenParksWithHeartbeatsAndKeepsTheResume) {
  Sampler s;
  Truck t;
  t.speed_kmh = 30;
  s.Offer(t.Fix(), t.mono_ms);
  t.speed_kmh = 2;
  t.Advance(200);  // within min_period_ms: the stop is protected
  SampleDecision d = s.Offer(t.Fix(), t.mono_ms);
  EXPECT_EQ(d.reason, SampleReason::kStopBegin);
  EXPECT_EQ(s.motion_state(), MotionState::kStopping);

  // Twenty minutes at a standstill with speed noise up to 6 km/h (under move_speed_kmh).
  std::vector<SampleReason> reasons;
  std::vector<int> kept;
  for (int i = 0; i < 1200; ++i) {
    t.speed_kmh = (i % 7) * 1.0;
    t.Wait(1000);
    d = s.Offer(t.Fix(), t.mono_ms);
    if (d.keep) {
      kept.push_back(i);
      reasons.push_back(d.reason);
    }
  }
  EXPECT_EQ(s.motion_state(), MotionState::kParked);
  // Max period while stopping (first 120 s), then one every parked_period_ms from the last keep.
  EXPECT_EQ(kept, (std::vector<int>{59, 359, 659, 959}));
  EXPECT_EQ(reasons, (std::vector<SampleReason>{
                         SampleReason::kMaxPeriod, SampleReason::kParkedHeartbeat,
                         SampleReason::kParkedHeartbeat, SampleReason::kParkedHeartbeat}));

  t.speed_kmh = 9;
  t.Advance(1000);
  d = s.Offer(t.Fix(), t.mono_ms);
  EXPECT_TRUE(d.keep);
  EXPECT_EQ(d.reason, SampleReason::kResumed);
  EXPECT_EQ(s.motion_state(), MotionState::kMoving);
  ExpectStatsAddUp(s);
}

TEST(Sampler, ShortStopReturnsToMovingWithoutAResumeKeep) {
  Sampler s;
  Truck t;
  s.Offer(t.Fix(), t.mono_ms);
  t.speed_kmh = 0;
  t.Advance(1000);
  EXPECT_EQ(s.Offer(t.Fix(), t.mono_ms).reason, SampleReason::kStopBegin);
  Drive(s, t, 30);  // a red light
  EXPECT_EQ(s.motion_state(), MotionState::kStopping);
  t.speed_kmh = 8;
  t.Advance(1000);
  EXPECT_FALSE(s.Offer(t.Fix(), t.mono_ms).keep);
  EXPECT_EQ(s.motion_state(), MotionState::kMoving);
  EXPECT_EQ(s.stats().count(SampleReason::kResumed), 0u);
}

TEST(Sampler, SpeedBetweenTheThresholdsDoesNotFlapTheStop) {
  Sampler s;
  Truck t;
  s.Offer(t.Fix(), t.mono_ms);
  int stops = 0;
  for (int i = 0; i < 100; ++i) {  // 2.5 <-> 7.5 km/h: crosses stop_speed but never move_speed
    t.speed_kmh = (i % 2) ? 7.5 : 2.5;
    t.Advance(1000);
    if (s.Offer(t.Fix(), t.mono_ms).reason == SampleReason::kStopBegin) ++stops;
  }
  EXPECT_EQ(stops, 1);
}

TEST(Sampler, OutageKeepsTheLastFixBeforeItLateAndTheFirstAfterIt) {
  Sampler s;
  Truck t;
  s.Offer(t.Fix(), t.mono_ms);
  Drive(s, t, 5);
  const hal::GnssFix last = t.Fix();
  const int64_t last_mono_ms = t.mono_ms;

  t.Advance(1000);
  SampleDecision d = s.Offer(NoFix(), t.mono_ms);
  EXPECT_FALSE(d.keep);
  ASSERT_TRUE(d.late);
  EXPECT_EQ(d.late->fix.lat_e7, last.lat_e7);
  EXPECT_EQ(d.late->fix.lon_e7, last.lon_e7);
  EXPECT_EQ(d.late->mono_ms, last_mono_ms);
  t.Advance(1000);
  EXPECT_FALSE(s.Offer(NoFix(), t.mono_ms).late);  // only once

  t.Advance(20000);
  d = s.Offer(t.Fix(), t.mono_ms);
  EXPECT_EQ(d.reason, SampleReason::kAfterOutage);
  EXPECT_FALSE(d.late);
  EXPECT_EQ(s.stats().count(SampleReason::kLastBeforeOutage), 1u);
  ExpectStatsAddUp(s);
}

TEST(Sampler, SilenceIsAnOutageToo) {
  Sampler s;
  Truck t;
  s.Offer(t.Fix(), t.mono_ms);
  Drive(s, t, 3);
  const int32_t last_lat_e7 = t.Fix().lat_e7;
  t.Advance(5000);
  SampleDecision d = s.Offer(t.Fix(), t.mono_ms);
  ASSERT_TRUE(d.late);
  EXPECT_EQ(d.late->fix.lat_e7, last_lat_e7);
  EXPECT_EQ(d.reason, SampleReason::kAfterOutage);
}

TEST(Sampler, OutageWhileParkedKeepsNothingExtra) {
  SamplerConfig c;
  Sampler s = *Sampler::Create(c);
  Truck t;
  t.speed_kmh = 0;
  s.Offer(t.Fix(), t.mono_ms);
  Drive(s, t, 200);
  ASSERT_EQ(s.motion_state(), MotionState::kParked);
  const uint64_t kept_before = s.stats().kept;
  for (int i = 0; i < 20; ++i) {  // a flaky antenna in the depot
    t.Advance(1000);
    EXPECT_FALSE(s.Offer(NoFix(), t.mono_ms).late);
    t.Advance(1000);
    EXPECT_FALSE(s.Offer(t.Fix(), t.mono_ms).keep);
  }
  EXPECT_EQ(s.stats().kept, kept_before);
}

TEST(Sampler, FixFromThePastIsDroppedAndChangesNothing) {
  Sampler s;
  Truck t;
  s.Offer(t.Fix(), t.mono_ms);
  SampleDecision d = s.Offer(t.Fix(), t.mono_ms - 1);
  EXPECT_FALSE(d.keep);
  EXPECT_EQ(d.reason, SampleReason::kOutOfOrder);
}

TEST(Sampler, ReasonsHaveStableNames) {
  EXPECT_EQ(ToString(SampleReason::kStopBegin), "stop-begin");
  EXPECT_EQ(ToString(SampleReason::kLastBeforeOutage), "last-before-outage");
  EXPECT_EQ(ToString(SampleReason::kUnchanged), "unchanged");
  EXPECT_TRUE(IsKept(SampleReason::kAfterOutage));
  EXPECT_FALSE(IsKept(SampleReason::kNoPosition));
}

TEST(DistanceM, AgreesWithHaversine) {
  auto haversine = [](double lat1, double lon1, double lat2, double lon2) {
    const double r = kPi / 180;
    const double a =
        std::pow(std::sin((lat2 - lat1) * r / 2), 2) +
        std::cos(lat1 * r) * std::cos(lat2 * r) * std::pow(std::sin((lon2 - lon1) * r / 2), 2);
    return 2 * 6371008.8 * std::asin(std::sqrt(a));
  };
  const double cases[][4] = {
      {48.137, 11.575, 48.138, 11.576},  // ~130 m
      {48.137, 11.575, 48.180, 11.640},  // ~7 km
      {60.0, 5.0, 60.05, 5.1},           // Norway
      {-33.9, 18.4, -33.95, 18.45},      // southern hemisphere
  };
  for (const auto& c : cases) {
    const double want = haversine(c[0], c[1], c[2], c[3]);
    const double got =
        DistanceM(static_cast<int32_t>(c[0] * 1e7), static_cast<int32_t>(c[1] * 1e7),
                  static_cast<int32_t>(c[2] * 1e7), static_cast<int32_t>(c[3] * 1e7));
    EXPECT_NEAR(got, want, want * 0.001) << c[0] << "," << c[1];
  }
  // Across the antimeridian: 0.002 degrees of longitude, not 359.998.
  EXPECT_NEAR(DistanceM(0, 1799990000, 0, -1799990000), 222.4, 0.5);
}

// The policy on two real drives: it keeps well under half the fixes, and the thinned track stays
// within 20 m of every received fix. Measured with the defaults: Munich (1 Hz, urban) keeps
// 15.1% with a largest deviation of 16.5 m; Regensburg (a fix every 2 s, urban and motorway)
// keeps 30.1% with 13.5 m. Every Munich deviation above 12 m sits on a position jump of the
// receiver (36 m sideways in one second at 42 km/h), which the thinned track smooths over;
// Regensburg's worst is a motorway bend between two fixes 300 m apart. 20 m leaves room for
// neither a looser distance trigger (500 m gives 23 m) nor lost turns.
struct DriveCase {
  const char* file;
  size_t rmc_sentences;
};

void PrintTo(const DriveCase& c, std::ostream* os) { *os << c.file; }

class RealDrive : public ::testing::TestWithParam<DriveCase> {};

TEST_P(RealDrive, KeepsWellUnderHalfAndStaysWithin20Metres) {
  const std::vector<testing::TrackPoint> track =
      testing::ReadRmcTrack(std::string(WAYBILL_TEST_DATA) + "/nmea/drives/" + GetParam().file);
  ASSERT_EQ(track.size(), GetParam().rmc_sentences);
  Sampler s;
  const std::vector<bool> kept = testing::ThinWithSampler(track, s);
  const testing::ThinningFigures f = testing::MeasureThinning(track, kept);
  const double ratio = static_cast<double>(f.kept) / static_cast<double>(f.received);
  EXPECT_LT(ratio, 0.35);
  EXPECT_GT(ratio, 0.05);  // a policy that keeps next to nothing is broken, whatever it measures
  EXPECT_LT(f.max_deviation_m, 20.0) << "worst at track point " << f.worst_index;
  EXPECT_EQ(f.kept, s.stats().kept);
  ExpectStatsAddUp(s);
}

INSTANTIATE_TEST_SUITE_P(Drives, RealDrive,
                         ::testing::Values(DriveCase{"munich-gps.nmea", 1867},
                                           DriveCase{"20100411_Geko_Regensburg.txt", 790}),
                         [](const ::testing::TestParamInfo<DriveCase>& param_info) {
                           return std::string(param_info.param.file).starts_with("munich")
                                      ? "Munich"
                                      : "Regensburg";
                         });

}  // namespace
}  // namespace waybill::firmware
