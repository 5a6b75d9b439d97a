#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "waybill/hal/fake_clock.h"
#include "waybill/hal/watchdog.h"

namespace waybill::hal {
namespace {

TEST(SimWatchdog, ExpiresWhenNotKickedInTime) {
  FakeClock clock;
  SimWatchdog dog(clock);
  ASSERT_TRUE(dog.Start(15).ok());
  EXPECT_EQ(dog.timeout_s(), 15);
  int64_t started = clock.mono_ms();
  for (int i = 0; i < 10; ++i) {
    clock.Advance(10000);
    ASSERT_TRUE(dog.Kick().ok());
  }
  EXPECT_FALSE(dog.expired());
  EXPECT_EQ(dog.kicks(), 10);

  clock.Advance(15000);  // exactly the timeout: still alive
  EXPECT_FALSE(dog.expired());
  clock.Advance(1);
  EXPECT_TRUE(dog.expired());
  EXPECT_EQ(dog.expired_at_mono_ms(), started + 100000 + 15000);

  // A late kick does not undo a reset that a real board would already have done.
  ASSERT_TRUE(dog.Kick().ok());
  EXPECT_TRUE(dog.expired());
}

TEST(SimWatchdog, ALateKickIsCaughtEvenIfNobodyLookedInBetween) {
  FakeClock clock;
  SimWatchdog dog(clock);
  ASSERT_TRUE(dog.Start(5).ok());
  clock.Advance(7000);
  ASSERT_TRUE(dog.Kick().ok());
  EXPECT_TRUE(dog.expired());
}

TEST(SimWatchdog, StopDisarmsAndKickBeforeStartFails) {
  FakeClock clock;
  SimWatchdog dog(clock);
  EXPECT_EQ(dog.Kick().code(), Status::Code::kFailedPrecondition);
  EXPECT_TRUE(dog.Start(0).IsInvalidArgument());
  ASSERT_TRUE(dog.Start(5).ok());
  clock.Advance(4000);
  ASSERT_TRUE(dog.Stop().ok());
  EXPECT_FALSE(dog.armed());
  clock.Advance(3600000);
  EXPECT_FALSE(dog.expired());
  EXPECT_EQ(dog.timeout_s(), 0);
}

TEST(NullWatchdog, AcceptsEverything) {
  NullWatchdog dog;
  ASSERT_TRUE(dog.Start(15).ok());
  EXPECT_EQ(dog.timeout_s(), 15);
  EXPECT_TRUE(dog.Kick().ok());
  EXPECT_TRUE(dog.Stop().ok());
  EXPECT_EQ(dog.timeout_s(), 0);
}

TEST(LinuxWatchdog, MissingDeviceIsUnavailable) {
  auto dog = NewLinuxWatchdog("/dev/waybill-no-watchdog");
  Status s = dog->Start(15);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_EQ(s.message(),
            "watchdog /dev/waybill-no-watchdog: cannot open: No such file or directory");
  EXPECT_EQ(dog->Kick().code(), Status::Code::kFailedPrecondition);
  EXPECT_TRUE(dog->Stop().ok());
}

TEST(LinuxWatchdog, ANonWatchdogFailsAndIsLeftDisarmed) {
  std::filesystem::path file = std::filesystem::temp_directory_path() /
                               ("waybill-fake-watchdog-" + std::to_string(getpid()));
  std::ofstream(file).close();
  auto dog = NewLinuxWatchdog(file.string());
  Status s = dog->Start(15);
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  EXPECT_NE(s.message().find("setting a timeout of 15 s failed"), std::string::npos) << s.message();
  EXPECT_EQ(dog->timeout_s(), 0);
  // The magic close was written on the way out, so a real device would not reset the board.
  std::ifstream in(file);
  std::stringstream content;
  content << in.rdbuf();
  EXPECT_EQ(content.str(), "V");
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace waybill::hal
