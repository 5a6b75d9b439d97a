// Backoff: full jitter within [floor, min(cap, base * 2^(n-1))], never a zero delay.
#include "waybill/sync/backoff.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace waybill::sync {
namespace {

TEST(BackoffTest, CeilingDoublesFromBaseAndStopsAtTheCap) {
  Backoff b({.base_ms = 100, .cap_ms = 5000, .floor_ms = 10}, 1);
  EXPECT_EQ(b.CeilingMs(1), 100);
  EXPECT_EQ(b.CeilingMs(2), 200);
  EXPECT_EQ(b.CeilingMs(3), 400);
  EXPECT_EQ(b.CeilingMs(6), 3200);
  EXPECT_EQ(b.CeilingMs(7), 5000);
  EXPECT_EQ(b.CeilingMs(1000), 5000);  // no overflow after a week of failures
  EXPECT_EQ(b.CeilingMs(1 << 30), 5000);
}

TEST(BackoffTest, EveryDelayIsWithinFloorAndCeiling) {
  Backoff b({.base_ms = 100, .cap_ms = 5000, .floor_ms = 10}, 42);
  for (int n = 1; n <= 200; ++n) {
    int64_t delay = b.NextDelayMs();
    EXPECT_EQ(b.failures(), n);
    EXPECT_GE(delay, 10) << "failure " << n;
    EXPECT_LE(delay, b.CeilingMs(n)) << "failure " << n;
  }
}

TEST(BackoffTest, JitterSpansTheWholeRange) {
  // Full jitter, not a fixed delay or +-10%: over many draws at the cap, delays land near both
  // ends of [floor, cap].
  BackoffOptions o{.base_ms = 1000, .cap_ms = 1000, .floor_ms = 1};
  Backoff b(o, 7);
  int64_t lo = o.cap_ms, hi = 0;
  for (int i = 0; i < 2000; ++i) {
    int64_t d = b.NextDelayMs();
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_LT(lo, 50);
  EXPECT_GT(hi, 950);
}

TEST(BackoffTest, TwoTrucksWithDifferentSeedsDoNotRetryInLockStep) {
  Backoff a({}, 1), b({}, 2);
  int same = 0;
  for (int i = 0; i < 20; ++i) same += a.NextDelayMs() == b.NextDelayMs();
  EXPECT_LT(same, 5);
}

TEST(BackoffTest, ResetStartsAgainFromBase) {
  Backoff b({.base_ms = 100, .cap_ms = 100000, .floor_ms = 1}, 3);
  for (int i = 0; i < 10; ++i) (void)b.NextDelayMs();
  b.Reset();
  EXPECT_EQ(b.failures(), 0);
  EXPECT_LE(b.NextDelayMs(), 100);
}

TEST(BackoffTest, FloorIsClampedWhenItWouldExceedTheCeiling) {
  Backoff b({.base_ms = 5, .cap_ms = 5, .floor_ms = 5}, 9);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(b.NextDelayMs(), 5);
}

TEST(BackoffTest, ValidateNamesTheBadField) {
  EXPECT_TRUE(Validate(BackoffOptions{}).ok());
  Status s = Validate(BackoffOptions{.base_ms = 0, .cap_ms = 10, .floor_ms = 1});
  EXPECT_NE(s.message().find("base_ms"), std::string::npos) << s.ToString();
  s = Validate(BackoffOptions{.base_ms = 100, .cap_ms = 10, .floor_ms = 1});
  EXPECT_NE(s.message().find("cap_ms"), std::string::npos) << s.ToString();
  s = Validate(BackoffOptions{.base_ms = 100, .cap_ms = 1000, .floor_ms = 0});
  EXPECT_NE(s.message().find("floor_ms"), std::string::npos) << s.ToString();
  s = Validate(BackoffOptions{.base_ms = 100, .cap_ms = 1000, .floor_ms = 200});
  EXPECT_NE(s.message().find("floor_ms"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace waybill::sync
