#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fakes/fake_serial_port.h"
#include "waybill/hal/fake_clock.h"
#include "waybill/hal/gnss_source.h"

namespace waybill::hal {
namespace {

// Four one-second epochs as a u-blox receiver sends them: RMC, GGA (same time), then untimed GSA.
const std::string kEpoch1 =
    "$GPRMC,120000.00,A,4808.0000,N,01134.0000,E,0.0,0.0,010624,,,A*6B\r\n"
    "$GPGGA,120000.00,4808.0000,N,01134.0000,E,1,08,1.0,520.0,M,47.0,M,,*6F\r\n"
    "$GPGSA,A,3,01,02,03,04,05,06,07,08,,,,,1.8,1.0,1.5*33\r\n";
const std::string kEpoch2 =
    "$GNRMC,120001.00,A,4808.0010,N,01134.0010,E,10.0,90.0,010624,,,A*6B\r\n"
    "$GNGGA,120001.00,4808.0010,N,01134.0010,E,1,08,1.0,520.0,M,47.0,M,,*6F\r\n";
const std::string kEpoch3 =
    "$GPRMC,120002.00,A,4808.0020,N,01134.0020,E,10.0,90.0,010624,,,A*6B\r\n"
    "$GPGSV,1,1,01,01,45,090,40*4B\r\n";
const std::string kEpoch4 =
    "$GPRMC,120003.00,A,4808.0030,N,01134.0030,E,10.0,90.0,010624,,,A*6B\r\n";
const std::string kDrive = kEpoch1 + kEpoch2 + kEpoch3 + kEpoch4;

struct Replay {
  std::vector<std::string> chunks;
  std::string all;
};

// Reads until the source is exhausted (bounded), collecting non-empty chunks.
Replay ReadAll(GnssSource& source, int64_t timeout_ms, size_t buffer_size = 4096) {
  Replay out;
  std::vector<uint8_t> buf(buffer_size);
  for (int i = 0; i < 1000 && !source.exhausted(); ++i) {
    Result<size_t> n = source.Read(buf, timeout_ms);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    if (!n.ok() || *n == 0) continue;
    std::string chunk(reinterpret_cast<char*>(buf.data()), *n);
    out.chunks.push_back(chunk);
    out.all += chunk;
  }
  return out;
}

std::unique_ptr<NmeaReplaySource> Make(const std::string& text, double speed, FakeClock& clock,
                                       bool loop = false) {
  auto source =
      NmeaReplaySource::FromText(text, "test drive", {.speed = speed, .loop = loop}, clock, clock);
  EXPECT_TRUE(source.ok()) << source.status().ToString();
  return source.ok() ? std::move(*source) : nullptr;
}

TEST(NmeaTimeOfDay, ReadsRmcAndGgaOfAnyTalker) {
  EXPECT_EQ(NmeaTimeOfDayMs("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,,*6A"),
            ((12 * 60 + 35) * 60 + 19) * 1000);
  EXPECT_EQ(NmeaTimeOfDayMs("$GNGGA,235959.50,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,,,*47"),
            86399500);
  EXPECT_EQ(NmeaTimeOfDayMs("$BDGGA,000000.123,,,,,0,00,,,,,,,*47"), 123);
  EXPECT_EQ(NmeaTimeOfDayMs("$GLRMC,010203.4,V,,,,,,,,,,N*53"), 3723400);
}

TEST(NmeaTimeOfDay, OtherSentencesAndBadTimesHaveNone) {
  EXPECT_EQ(NmeaTimeOfDayMs("$GPGSA,A,3,01,02,,,,,,,,,,,1.8,1.0,1.5*33"), std::nullopt);
  EXPECT_EQ(NmeaTimeOfDayMs("$GPVTG,084.4,T,,M,022.4,N,041.5,K*43"), std::nullopt);
  EXPECT_EQ(NmeaTimeOfDayMs("$GPRMC,,V,,,,,,,,,,N*53"), std::nullopt);
  EXPECT_EQ(NmeaTimeOfDayMs("$GPRMC,12351,A"), std::nullopt);
  EXPECT_EQ(NmeaTimeOfDayMs("$GPRMC,246000,A"), std::nullopt);
  EXPECT_EQ(NmeaTimeOfDayMs("$GPRMC,12a519,A"), std::nullopt);
  EXPECT_EQ(NmeaTimeOfDayMs("$GPRMC,123519.x,A"), std::nullopt);
  EXPECT_EQ(NmeaTimeOfDayMs("GPRMC,123519,A"), std::nullopt);
  EXPECT_EQ(NmeaTimeOfDayMs(""), std::nullopt);
}

TEST(NmeaReplay, RealTimeSleepsOneSecondBetweenEpochs) {
  FakeClock clock;
  auto source = Make(kDrive, 1, clock);
  Replay r = ReadAll(*source, 5000);
  EXPECT_EQ(r.all, kDrive);
  EXPECT_EQ(clock.sleeps(), (std::vector<int64_t>{1000, 1000, 1000}));
  ASSERT_EQ(r.chunks.size(), 4u);
  EXPECT_EQ(r.chunks[0], kEpoch1);
  EXPECT_EQ(r.chunks[2], kEpoch3);
  EXPECT_EQ(source->epochs_released(), 4);
  EXPECT_TRUE(source->exhausted());
  // Past the end a reader that keeps calling idles for its timeout instead of spinning.
  uint8_t buf[64];
  EXPECT_EQ(*source->Read(buf, 250), 0u);
  EXPECT_EQ(clock.sleeps().back(), 250);
}

TEST(NmeaReplay, SpeedTenSleepsATenth) {
  FakeClock clock;
  auto source = Make(kDrive, 10, clock);
  Replay r = ReadAll(*source, 5000);
  EXPECT_EQ(r.all, kDrive);
  EXPECT_EQ(clock.sleeps(), (std::vector<int64_t>{100, 100, 100}));
}

TEST(NmeaReplay, SpeedZeroNeverSleeps) {
  FakeClock clock;
  auto source = Make(kDrive, 0, clock);
  Replay r = ReadAll(*source, 5000);
  EXPECT_EQ(r.all, kDrive);
  EXPECT_TRUE(clock.sleeps().empty());
}

TEST(NmeaReplay, ShortTimeoutsWaitInSlicesAndSmallBuffersSplitEpochs) {
  FakeClock clock;
  auto source = Make(kEpoch1 + kEpoch2, 1, clock);
  Replay r = ReadAll(*source, 300, 16);
  EXPECT_EQ(r.all, kEpoch1 + kEpoch2);
  EXPECT_EQ(clock.sleeps(), (std::vector<int64_t>{300, 300, 300, 100}));
}

TEST(NmeaReplay, PacingDoesNotDriftWhenTheReaderIsLate) {
  FakeClock clock;
  auto source = Make(kDrive, 1, clock);
  uint8_t buf[4096];
  ASSERT_EQ(*source->Read(buf, 5000), kEpoch1.size());
  clock.Advance(2500);  // the reader was busy: epochs 2 and 3 are already due
  ASSERT_EQ(*source->Read(buf, 5000), kEpoch2.size());
  ASSERT_EQ(*source->Read(buf, 5000), kEpoch3.size());
  EXPECT_TRUE(clock.sleeps().empty());
  ASSERT_EQ(*source->Read(buf, 5000), kEpoch4.size());
  EXPECT_EQ(clock.sleeps(), (std::vector<int64_t>{500}));
}

TEST(NmeaReplay, MidnightWrapsAndMissingTimesDoNotStall) {
  const std::string text =
      "$GPRMC,235959.00,A,4808.0,N,01134.0,E,0,0,010624,,,A*00\r\n"
      "$GPRMC,,V,,,,,,,,,,N*53\r\n"  // no time: belongs to the epoch before, no sleep
      "$GPRMC,000000.00,A,4808.0,N,01134.0,E,0,0,020624,,,A*00\r\n"
      "$GPRMC,000001.00,A,4808.0,N,01134.0,E,0,0,020624,,,A*00\r\n"
      "$GPRMC,000000.50,A,4808.0,N,01134.0,E,0,0,020624,,,A*00\r\n";  // a step back: at once
  FakeClock clock;
  auto source = Make(text, 1, clock);
  Replay r = ReadAll(*source, 5000);
  EXPECT_EQ(r.all, text);
  EXPECT_EQ(clock.sleeps(), (std::vector<int64_t>{1000, 1000}));
  EXPECT_EQ(r.chunks.size(), 4u);
}

TEST(NmeaReplay, LoopsWithAOneSecondGap) {
  FakeClock clock;
  const std::string pass = kEpoch1 + kEpoch2;
  auto source = Make(pass, 1, clock, /*loop=*/true);
  std::string all;
  uint8_t buf[4096];
  for (int i = 0; i < 100 && all.size() < 2 * pass.size(); ++i) {
    Result<size_t> n = source->Read(buf, 5000);
    ASSERT_TRUE(n.ok());
    all.append(reinterpret_cast<char*>(buf), *n);
  }
  EXPECT_EQ(all, pass + pass);
  EXPECT_EQ(clock.sleeps(), (std::vector<int64_t>{1000, 1000, 1000}));
  EXPECT_EQ(source->passes(), 1);
  Result<size_t> third = source->Read(buf, 5000);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), *third), kEpoch1);
  EXPECT_EQ(source->passes(), 2);
  EXPECT_FALSE(source->exhausted());
}

TEST(NmeaReplay, ReplaysAFile) {
  std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("waybill-replay-" + std::to_string(getpid()));
  std::ofstream(file, std::ios::binary) << kDrive;
  FakeClock clock;
  auto source = NmeaReplaySource::Open(file, {.speed = 2}, clock, clock);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  EXPECT_EQ((*source)->name(), "replay of " + file.filename().string());
  Replay r = ReadAll(**source, 5000);
  EXPECT_EQ(r.all, kDrive);
  EXPECT_EQ(clock.sleeps(), (std::vector<int64_t>{500, 500, 500}));
  std::filesystem::remove(file);
}

TEST(NmeaReplay, BadInputGetsAClearError) {
  FakeClock clock;
  auto missing = NmeaReplaySource::Open("/nonexistent/drive.nmea", {}, clock, clock);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsNotFound());
  EXPECT_EQ(missing.status().message(),
            "cannot open NMEA replay file /nonexistent/drive.nmea: No such file or directory");
  auto empty = NmeaReplaySource::FromText("garbage\nmore\n", "x.nmea", {}, clock, clock);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().message(), "x.nmea: holds no NMEA sentence (no line starts with '$')");
  auto backwards = NmeaReplaySource::FromText(kDrive, "x.nmea", {.speed = -1}, clock, clock);
  ASSERT_FALSE(backwards.ok());
  EXPECT_TRUE(backwards.status().IsInvalidArgument());
}

TEST(SerialGnssSource, PassesBytesThroughAndOpensOnFirstRead) {
  auto owned = std::make_unique<FakeSerialPort>("/dev/ttyAMA0");
  FakeSerialPort* dev = owned.get();
  std::unique_ptr<GnssSource> source = NewSerialGnssSource(std::move(owned));
  EXPECT_EQ(source->name(), "/dev/ttyAMA0");
  dev->Feed(kEpoch1);
  std::vector<uint8_t> buf(4096);
  Result<size_t> n = source->Read(buf, 100);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf.data()), *n), kEpoch1);
  EXPECT_EQ(dev->open_calls(), 1);
  EXPECT_FALSE(source->exhausted());
  dev->Unplug();
  EXPECT_TRUE(source->Read(buf, 100).status().IsUnavailable());
}

}  // namespace
}  // namespace waybill::hal
