#include <gtest/gtest.h>

#include "waybill/hal/clock.h"
#include "waybill/status.h"

namespace waybill::hal {
namespace {

TEST(SystemClock, MonotonicNeverGoesBackwards) {
  Clock& clock = Clock::System();
  int64_t last = clock.mono_ms();
  for (int i = 0; i < 1000; ++i) {
    int64_t now = clock.mono_ms();
    ASSERT_GE(now, last);
    last = now;
  }
}

TEST(SystemClock, WallTimeIsAfter2020AndHasASource) {
  Clock& clock = Clock::System();
  EXPECT_GT(clock.wall_ms(), 1577836800000);  // 2020-01-01
  EXPECT_NE(clock.wall_source(), TimeSource::kUnknown);
  EXPECT_NE(clock.wall_source(), TimeSource::kGnss);
}

TEST(Status, CarriesCodeAndMessage) {
  Status s = Status::NoSpace("outbox quota of 128 MiB reached");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.IsNoSpace());
  EXPECT_EQ(s.ToString(), "no space: outbox quota of 128 MiB reached");
  Result<int> r = Status::NotFound("board file boards/x/board.toml");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
  Result<int> v = 42;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 42);
}

}  // namespace
}  // namespace waybill::hal
