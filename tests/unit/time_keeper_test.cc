#include "waybill/firmware/time_keeper.h"

#include <gtest/gtest.h>

#include <memory>

#include "waybill/hal/fake_clock.h"

namespace waybill::firmware {
namespace {

using hal::TimeSource;
using TestClock = waybill::hal::FakeClock;  // moves only when the test says so

constexpr int64_t kMinute = 60 * 1000;
constexpr int64_t kDay = 24 * 60 * kMinute;
constexpr int64_t kRealUtc = 1767225600000;           // 2026-01-01T00:00:00Z: the true time
constexpr int64_t kWeekRollover = 1024LL * 7 * kDay;  // 19.6 years

hal::GnssFix GnssAt(int64_t utc_ms) {
  hal::GnssFix f;
  f.mode = hal::FixMode::k3D;
  f.quality = 1;
  f.lat_e7 = 481370000;
  f.lon_e7 = 115750000;
  f.utc_ms = utc_ms;
  return f;
}

std::unique_ptr<TimeKeeper> Make(const TestClock& clock, const TimeKeeperConfig& config = {}) {
  Result<std::unique_ptr<TimeKeeper>> r = TimeKeeper::Create(clock, config);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

TEST(TimeKeeperConfig, ErrorNamesTheField) {
  EXPECT_TRUE(ValidateTimeKeeperConfig({}).ok());
  TimeKeeperConfig c;
  c.gnss_fresh_ms = 0;
  EXPECT_EQ(ValidateTimeKeeperConfig(c).message(), "time.gnss_fresh_ms = 0: must be > 0");
  c = {};
  c.max_disagreement_ms = -1;
  EXPECT_EQ(ValidateTimeKeeperConfig(c).message(), "time.max_disagreement_ms = -1: must be > 0");
  TestClock clock(kRealUtc, 0, TimeSource::kNtp);
  Result<std::unique_ptr<TimeKeeper>> r = TimeKeeper::Create(clock, c);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
}

TEST(TimeKeeper, WithoutGnssStampsWithTheSystemClockAndItsSource) {
  TestClock clock(kRealUtc, 5000, TimeSource::kNtp);
  auto tk = Make(clock);
  Timestamp ts = tk->Now();
  EXPECT_EQ(ts.ts_ms, kRealUtc);
  EXPECT_EQ(ts.source, TimeSource::kNtp);

  clock.SetSource(TimeSource::kRtc);
  clock.Advance(1000);
  ts = tk->Now();
  EXPECT_EQ(ts.ts_ms, kRealUtc + 1000);
  EXPECT_EQ(ts.source, TimeSource::kRtc);

  clock.SetSource(TimeSource::kMonotonic);
  EXPECT_EQ(tk->Now().source, TimeSource::kMonotonic);
  clock.SetSource(TimeSource::kUnknown);
  EXPECT_EQ(tk->Now().source, TimeSource::kMonotonic);  // an unknown clock is not trusted
  EXPECT_EQ(tk->stats().stamps_by_source[static_cast<int>(TimeSource::kMonotonic)], 2u);
}

TEST(TimeKeeper, FreshGnssTimeIsTheAuthorityCarriedOnByTheMonotonicClock) {
  TestClock clock(kRealUtc + 800, 5000, TimeSource::kNtp);  // NTP 0.8 s fast
  auto tk = Make(clock);
  GnssTimeUpdate u = tk->OnGnssFix(GnssAt(kRealUtc));
  EXPECT_EQ(u.verdict, GnssTimeVerdict::kAccepted);
  EXPECT_EQ(u.gnss_minus_wall_ms, -800);

  clock.Advance(2500);
  Timestamp ts = tk->Now();
  EXPECT_EQ(ts.ts_ms, kRealUtc + 2500);
  EXPECT_EQ(ts.source, TimeSource::kGnss);

  clock.Advance(10 * kMinute - 2500);  // exactly gnss_fresh_ms after the fix: still fresh
  EXPECT_EQ(tk->Now().source, TimeSource::kGnss);
  clock.Advance(1);
  ts = tk->Now();
  EXPECT_EQ(ts.source, TimeSource::kNtp);
  EXPECT_EQ(ts.ts_ms, clock.wall_ms());
}

TEST(TimeKeeper, FirstGnssTimeOffersTheCorrectionOnce) {
  TestClock clock(1000000, 1000, TimeSource::kMonotonic);  // 1970: no RTC, no network
  auto tk = Make(clock);
  Timestamp early = tk->Now();
  EXPECT_EQ(early.source, TimeSource::kMonotonic);

  clock.Advance(30000);
  GnssTimeUpdate u = tk->OnGnssFix(GnssAt(kRealUtc));
  ASSERT_TRUE(u.correction_offset_ms);
  // What the outbox will do to the early event: it happened 30 s before the GNSS time.
  EXPECT_EQ(early.ts_ms + *u.correction_offset_ms, kRealUtc - 30000);
  EXPECT_EQ(tk->stats().corrections_offered, 1u);

  clock.Advance(1000);
  EXPECT_FALSE(tk->OnGnssFix(GnssAt(kRealUtc + 1000)).correction_offset_ms);
  EXPECT_EQ(tk->stats().gnss_accepted, 2u);
}

TEST(TimeKeeper, CorrectionHoldsWhenNtpStepsTheClockBeforeGnssArrives) {
  TestClock clock(1000000, 1000, TimeSource::kMonotonic);
  auto tk = Make(clock);
  Timestamp before_ntp = tk->Now();  // true time: kRealUtc - 60 s
  clock.Advance(20000);
  clock.SetWall(kRealUtc - 40000, TimeSource::kNtp);  // the modem came up: NTP steps the clock
  Timestamp after_ntp = tk->Now();
  EXPECT_EQ(after_ntp.source, TimeSource::kNtp);
  EXPECT_EQ(after_ntp.ts_ms, kRealUtc - 40000);

  clock.Advance(40000);
  GnssTimeUpdate u = tk->OnGnssFix(GnssAt(kRealUtc));
  ASSERT_EQ(u.verdict, GnssTimeVerdict::kAccepted);
  ASSERT_TRUE(u.correction_offset_ms);
  // The live wall clock now agrees with GNSS, yet the early stamp still needs the full step.
  EXPECT_EQ(*u.gnss_minus_wall_ms, 0);
  EXPECT_EQ(before_ntp.ts_ms + *u.correction_offset_ms, kRealUtc - 60000);
}

TEST(TimeKeeper, GnssTimeFarFromNtpIsRejectedAndNeverAdopted) {
  TestClock clock(kRealUtc, 5000, TimeSource::kNtp);
  auto tk = Make(clock);
  GnssTimeUpdate u = tk->OnGnssFix(GnssAt(kRealUtc + 2 * kDay));
  EXPECT_EQ(u.verdict, GnssTimeVerdict::kDisagreesWithNtp);
  EXPECT_FALSE(u.correction_offset_ms);
  EXPECT_FALSE(tk->anchor());
  Timestamp ts = tk->Now();
  EXPECT_EQ(ts.source, TimeSource::kNtp);
  EXPECT_EQ(ts.ts_ms, kRealUtc);
  TimeKeeperStats st = tk->stats();
  EXPECT_EQ(st.gnss_disagrees_with_ntp, 1u);
  EXPECT_EQ(st.last_rejected_utc_ms, kRealUtc + 2 * kDay);
  EXPECT_EQ(st.corrections_offered, 0u);

  // A correct GNSS time afterwards is the first of the boot: it offers the correction.
  u = tk->OnGnssFix(GnssAt(kRealUtc + 300));
  EXPECT_EQ(u.verdict, GnssTimeVerdict::kAccepted);
  EXPECT_TRUE(u.correction_offset_ms);
  EXPECT_EQ(tk->Now().source, TimeSource::kGnss);
}

TEST(TimeKeeper, GnssMayDisagreeWithAnRtcClock) {
  TestClock clock(kRealUtc - 3 * kDay, 5000, TimeSource::kRtc);  // a drifting RTC
  auto tk = Make(clock);
  EXPECT_EQ(tk->OnGnssFix(GnssAt(kRealUtc)).verdict, GnssTimeVerdict::kAccepted);
  EXPECT_EQ(tk->Now().ts_ms, kRealUtc);
}

TEST(TimeKeeper, WeekRolloverDateIsRejectedWhateverTheClock) {
  TestClock clock(1000000, 1000, TimeSource::kMonotonic);
  auto tk = Make(clock);
  GnssTimeUpdate u = tk->OnGnssFix(GnssAt(kRealUtc - kWeekRollover));
  EXPECT_EQ(u.verdict, GnssTimeVerdict::kTooEarly);
  EXPECT_FALSE(u.correction_offset_ms);
  EXPECT_EQ(tk->Now().source, TimeSource::kMonotonic);
  EXPECT_EQ(tk->stats().gnss_too_early, 1u);
}

TEST(TimeKeeper, OldRecordingsCanBeReplayedWithTheFloorLowered) {
  TestClock clock(1000000, 1000, TimeSource::kMonotonic);
  TimeKeeperConfig c;
  c.min_utc_ms = 0;
  auto tk = Make(clock, c);
  const int64_t utc_2010 = 1270973864000;  // the Regensburg drive
  EXPECT_EQ(tk->OnGnssFix(GnssAt(utc_2010)).verdict, GnssTimeVerdict::kAccepted);
  EXPECT_EQ(tk->Now().ts_ms, utc_2010);
}

TEST(TimeKeeper, FixWithoutPositionOrTimeIsNotATime) {
  TestClock clock(kRealUtc, 1000, TimeSource::kMonotonic);
  auto tk = Make(clock);
  hal::GnssFix no_position;  // a receiver's own clock before it has solved
  no_position.utc_ms = kRealUtc;
  EXPECT_EQ(tk->OnGnssFix(no_position).verdict, GnssTimeVerdict::kNoTime);
  hal::GnssFix no_time = GnssAt(kRealUtc);
  no_time.utc_ms.reset();
  EXPECT_EQ(tk->OnGnssFix(no_time).verdict, GnssTimeVerdict::kNoTime);
  EXPECT_FALSE(tk->anchor());
  EXPECT_EQ(tk->stats().gnss_no_time, 2u);
}

TEST(TimeKeeper, CorrectionIsOfferedAgainOnlyForMonotonicStampsSinceTheLast) {
  TestClock clock(1000000, 1000, TimeSource::kMonotonic);
  auto tk = Make(clock);
  ASSERT_TRUE(tk->OnGnssFix(GnssAt(kRealUtc)).correction_offset_ms);

  // GNSS goes stale without anything stamped: nothing to correct when it comes back.
  clock.Advance(20 * kMinute);
  EXPECT_FALSE(tk->OnGnssFix(GnssAt(kRealUtc + 20 * kMinute)).correction_offset_ms);

  // Stale again, and this time an event is stamped on the monotonic clock meanwhile.
  clock.Advance(20 * kMinute);
  Timestamp in_depot = tk->Now();
  EXPECT_EQ(in_depot.source, TimeSource::kMonotonic);
  clock.Advance(kMinute);
  GnssTimeUpdate u = tk->OnGnssFix(GnssAt(kRealUtc + 41 * kMinute));
  ASSERT_TRUE(u.correction_offset_ms);
  EXPECT_EQ(in_depot.ts_ms + *u.correction_offset_ms, kRealUtc + 40 * kMinute);
  EXPECT_EQ(tk->stats().corrections_offered, 2u);
}

TEST(TimeKeeper, GnssStepIsCountedAndTheNewestTimeWins) {
  TestClock clock(1000000, 1000, TimeSource::kMonotonic);
  auto tk = Make(clock);
  ASSERT_EQ(tk->OnGnssFix(GnssAt(kRealUtc - 3 * kDay)).verdict, GnssTimeVerdict::kAccepted);
  clock.Advance(1000);
  ASSERT_EQ(tk->OnGnssFix(GnssAt(kRealUtc)).verdict, GnssTimeVerdict::kAccepted);
  EXPECT_EQ(tk->stats().gnss_jumps, 1u);
  EXPECT_EQ(tk->Now().ts_ms, kRealUtc);
  clock.Advance(1000);
  ASSERT_EQ(tk->OnGnssFix(GnssAt(kRealUtc + 1000)).verdict, GnssTimeVerdict::kAccepted);
  EXPECT_EQ(tk->stats().gnss_jumps, 1u);
}

TEST(TimeKeeper, VerdictsHaveStableNames) {
  EXPECT_EQ(ToString(GnssTimeVerdict::kDisagreesWithNtp), "disagrees-with-ntp");
  EXPECT_EQ(ToString(GnssTimeVerdict::kAccepted), "accepted");
}

}  // namespace
}  // namespace waybill::firmware
