#include <gtest/gtest.h>

#include "waybill/hal/fake_clock.h"
#include "waybill/hal/ignition.h"

namespace waybill::hal {
namespace {

TEST(ScriptedIgnition, FollowsTheScriptOnTheClock) {
  FakeClock clock;
  ScriptedIgnition ignition({{0, false}, {5000, true}, {9000, false}}, clock, clock);
  EXPECT_EQ(*ignition.Read(), IgnitionState::kOff);

  Result<std::optional<IgnitionState>> none = ignition.WaitForChange(1000);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, std::nullopt);
  EXPECT_EQ(clock.sleeps(), (std::vector<int64_t>{1000}));

  Result<std::optional<IgnitionState>> on = ignition.WaitForChange(60000);
  ASSERT_TRUE(on.ok());
  EXPECT_EQ(*on, IgnitionState::kOn);
  EXPECT_EQ(clock.sleeps().back(), 4000);  // woke at the 5 s step, not at the timeout

  Result<std::optional<IgnitionState>> off = ignition.WaitForChange(60000);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(*off, IgnitionState::kOff);
  EXPECT_EQ(*ignition.Read(), IgnitionState::kOff);

  EXPECT_EQ(*ignition.WaitForChange(3600000), std::nullopt);  // the script has ended
}

TEST(ScriptedIgnition, UnknownBeforeTheFirstStep) {
  FakeClock clock;
  ScriptedIgnition ignition({{2000, true}}, clock, clock);
  EXPECT_EQ(*ignition.Read(), IgnitionState::kUnknown);
  EXPECT_EQ(*ignition.WaitForChange(5000), IgnitionState::kOn);
  EXPECT_EQ(clock.slept_ms(), 2000);
}

TEST(ScriptedIgnition, ABounceThatEndsWhereItStartedIsNoChange) {
  FakeClock clock;
  ScriptedIgnition ignition({{0, true}, {100, false}, {100, true}, {3000, false}}, clock, clock);
  EXPECT_EQ(*ignition.WaitForChange(1000), std::nullopt);
  EXPECT_EQ(*ignition.WaitForChange(5000), IgnitionState::kOff);
  EXPECT_EQ(clock.slept_ms(), 3000);
}

TEST(GpioIgnition, MissingChipIsNamedInTheError) {
  auto ignition = OpenGpioIgnition("gpiochip-waybill-missing", 17, true);
  ASSERT_FALSE(ignition.ok());
  EXPECT_TRUE(ignition.status().IsUnavailable()) << ignition.status().ToString();
  EXPECT_NE(ignition.status().message().find("ignition on gpiochip-waybill-missing line 17: "
                                             "cannot open GPIO chip"),
            std::string::npos)
      << ignition.status().message();
}

TEST(IgnitionState, HasNames) {
  EXPECT_EQ(ToString(IgnitionState::kOn), "on");
  EXPECT_EQ(ToString(IgnitionState::kOff), "off");
  EXPECT_EQ(ToString(IgnitionState::kUnknown), "unknown");
}

}  // namespace
}  // namespace waybill::hal
