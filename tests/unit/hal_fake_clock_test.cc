#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "waybill/hal/fake_clock.h"

namespace waybill::hal {
namespace {

TEST(FakeClock, MovesOnlyWhenTold) {
  FakeClock clock(1700000000000, 5000, TimeSource::kMonotonic);
  EXPECT_EQ(clock.wall_ms(), 1700000000000);
  EXPECT_EQ(clock.mono_ms(), 5000);
  EXPECT_EQ(clock.wall_source(), TimeSource::kMonotonic);
  clock.Advance(250);
  EXPECT_EQ(clock.wall_ms(), 1700000000250);
  EXPECT_EQ(clock.mono_ms(), 5250);
  EXPECT_TRUE(clock.sleeps().empty());
}

TEST(FakeClock, SleepsAreRecordedAndAdvanceTime) {
  FakeClock clock;
  int64_t start = clock.mono_ms();
  clock.SleepFor(1000);
  clock.SleepFor(0);
  clock.SleepFor(-5);
  clock.SleepFor(20);
  EXPECT_EQ(clock.sleeps(), (std::vector<int64_t>{1000, 20}));
  EXPECT_EQ(clock.slept_ms(), 1020);
  EXPECT_EQ(clock.mono_ms(), start + 1020);
  clock.ClearSleeps();
  EXPECT_TRUE(clock.sleeps().empty());
}

TEST(FakeClock, WallJumpsButMonoNeverGoesBack) {
  FakeClock clock;
  clock.SetWall(1000, TimeSource::kGnss);
  EXPECT_EQ(clock.wall_ms(), 1000);
  EXPECT_EQ(clock.wall_source(), TimeSource::kGnss);
  int64_t mono = clock.mono_ms();
  clock.SetMono(mono - 500);
  clock.Advance(-500);
  EXPECT_EQ(clock.mono_ms(), mono);
  clock.SetMono(mono + 10);
  EXPECT_EQ(clock.mono_ms(), mono + 10);
}

TEST(FakeClock, IsSafeToShareBetweenThreads) {
  FakeClock clock;
  int64_t start = clock.mono_ms();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&clock] {
      for (int i = 0; i < 1000; ++i) clock.SleepFor(1);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(clock.mono_ms(), start + 4000);
  EXPECT_EQ(clock.sleeps().size(), 4000u);
}

}  // namespace
}  // namespace waybill::hal
