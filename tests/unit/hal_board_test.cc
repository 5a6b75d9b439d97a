#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "waybill/hal/board.h"

namespace waybill::hal {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(Boards, EveryBoardInTheTreeLoads) {
  fs::path boards = fs::path(WAYBILL_SOURCE_DIR) / "boards";
  int count = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(boards)) {
    if (!entry.is_directory()) continue;
    fs::path file = entry.path() / "board.toml";
    std::string folder = entry.path().filename().string();
    SCOPED_TRACE(folder);
    ASSERT_TRUE(fs::exists(file)) << "every folder under boards/ is a board";
    Result<BoardConfig> config = LoadBoardConfig(file);
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(config->name, folder);
    ++count;

    // The unit the board ships starts the daemon on this very board file.
    std::string unit = ReadFile(entry.path() / "waybilld.service");
    ASSERT_FALSE(unit.empty()) << "boards/" << folder << "/waybilld.service";
    EXPECT_NE(unit.find("ExecStart=/usr/bin/waybilld --board /usr/share/waybill/boards/" + folder +
                        "/board.toml --config /etc/waybill/waybill.toml"),
              std::string::npos);
    for (const char* line : {"Type=notify", "WatchdogSec=", "Restart=always", "User=waybill",
                             "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes"}) {
      EXPECT_NE(unit.find(line), std::string::npos) << line;
    }
    // The data dir the service uses (the board's, or the one its Environment= overrides it with)
    // must be writable under ProtectSystem=strict.
    std::string data_dir = config->storage.data_dir.string();
    const std::string kOverride = "Environment=WAYBILL_DATA_DIR=";
    if (size_t at = unit.find(kOverride); at != std::string::npos) {
      at += kOverride.size();
      data_dir = unit.substr(at, unit.find('\n', at) - at);
    }
    EXPECT_NE(unit.find("ReadWritePaths=" + data_dir + "\n"), std::string::npos) << data_dir;
    if (config->gnss.source == GnssSourceKind::kSerial && folder != "rpi4") {
      EXPECT_NE(unit.find("DeviceAllow=" + config->gnss.device + " rw"), std::string::npos);
    }
  }
  EXPECT_GE(count, 3);
}

TEST(Boards, Rpi4HasItsHardware) {
  auto config = LoadBoardConfig(fs::path(WAYBILL_SOURCE_DIR) / "boards/rpi4/board.toml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->arch, BoardArch::kAarch64);
  EXPECT_EQ(config->gnss.source, GnssSourceKind::kSerial);
  EXPECT_EQ(config->gnss.device, "/dev/serial0");
  EXPECT_EQ(config->gnss.baud, 9600u);
  ASSERT_TRUE(config->ignition.has_value());
  EXPECT_EQ(config->ignition->chip, "gpiochip0");
  EXPECT_EQ(config->ignition->line, 17u);
  EXPECT_TRUE(config->ignition->active_low);
  ASSERT_TRUE(config->watchdog.has_value());
  EXPECT_EQ(config->watchdog->device, "/dev/watchdog");
  EXPECT_EQ(config->watchdog->timeout_s, 15);
  EXPECT_EQ(config->storage.data_dir, "/var/lib/waybill");
  ASSERT_EQ(config->leds.count("status"), 1u);
  EXPECT_EQ(config->leds.at("status").sysfs_path, "/sys/class/leds/ACT");
  ASSERT_EQ(config->leds.count("gnss"), 1u);
  EXPECT_TRUE(config->leds.at("gnss").is_gpio());
  EXPECT_EQ(config->leds.at("gnss").line, 27u);
}

TEST(Boards, HostSimReplaysRelativeToItsFileUnlessOverridden) {
  fs::path file = fs::path(WAYBILL_SOURCE_DIR) / "boards/host-sim/board.toml";
  auto config = LoadBoardConfig(file);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->gnss.source, GnssSourceKind::kReplay);
  EXPECT_EQ(
      config->gnss.replay_file,
      (fs::path(WAYBILL_SOURCE_DIR) / "tests/data/nmea/drives/munich-gps.nmea").lexically_normal());
  EXPECT_FALSE(config->ignition.has_value());
  EXPECT_FALSE(config->watchdog.has_value());

  BoardLoadOptions options;
  options.replay_base_dir = "/opt/replays/a/b";
  options.data_dir_override = "/tmp/waybill-test-data";
  auto moved = LoadBoardConfig(file, options);
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(moved->gnss.replay_file, "/opt/replays/tests/data/nmea/drives/munich-gps.nmea");
  EXPECT_EQ(moved->storage.data_dir, "/tmp/waybill-test-data");
}

TEST(Boards, EnvironmentOverridesDataDir) {
  ASSERT_EQ(setenv("WAYBILL_DATA_DIR", "/srv/waybill", 1), 0);
  BoardLoadOptions options = BoardLoadOptions::FromEnvironment();
  unsetenv("WAYBILL_DATA_DIR");
  ASSERT_TRUE(options.data_dir_override.has_value());
  EXPECT_EQ(*options.data_dir_override, "/srv/waybill");
  EXPECT_FALSE(BoardLoadOptions::FromEnvironment().data_dir_override.has_value());
}

// A valid serial board; each bad-file test breaks one thing in it.
const std::string kGood = R"([board]
name = "test-board"
arch = "aarch64"
toolchain = "aarch64-linux-gnu"

[gnss]
source = "serial"
device = "/dev/ttyUSB0"
baud = 9600

[storage]
data_dir = "/var/lib/waybill"
)";

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

std::string ErrorOf(const std::string& text) {
  Result<BoardConfig> config = ParseBoardConfig(text, "boards/test/board.toml");
  EXPECT_FALSE(config.ok()) << "accepted:\n" << text;
  if (config.ok()) return "";
  EXPECT_TRUE(config.status().IsInvalidArgument()) << config.status().ToString();
  return config.status().message();
}

TEST(BoardFile, TheBaseIsValid) {
  Result<BoardConfig> config = ParseBoardConfig(kGood, "boards/test/board.toml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->gnss.protocol, "nmea");
  EXPECT_FALSE(config->ignition.has_value());
  EXPECT_TRUE(config->leds.empty());
}

TEST(BoardFile, BadBaudNamesFileKeyAndTheStandardRates) {
  EXPECT_EQ(ErrorOf(Replace(kGood, "baud = 9600", "baud = 9601")),
            "boards/test/board.toml:9:8: gnss.baud = 9601 is not a standard baud rate (4800, "
            "9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)");
}

TEST(BoardFile, MissingKey) {
  EXPECT_EQ(ErrorOf(Replace(kGood, "baud = 9600\n", "")),
            "boards/test/board.toml:6:1: gnss.baud is missing (expected a standard baud rate: "
            "4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)");
}

TEST(BoardFile, MissingTable) {
  std::string text = kGood.substr(0, kGood.find("[storage]"));
  EXPECT_EQ(ErrorOf(text),
            "boards/test/board.toml: [storage] is missing (expected data_dir = an absolute path)");
}

TEST(BoardFile, WrongType) {
  EXPECT_EQ(ErrorOf(Replace(kGood, "baud = 9600", "baud = \"9600\"")),
            "boards/test/board.toml:9:8: gnss.baud = \"9600\" is a string, expected an integer "
            "(a standard baud rate: 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, "
            "921600)");
  EXPECT_NE(ErrorOf(Replace(kGood, "[storage]",
                            "[storage]\n[ignition]\nchip = \"gpiochip0\"\n"
                            "line = 17\nactive_low = \"yes\"\n"))
                .find("ignition.active_low = \"yes\" is a string, expected a boolean"),
            std::string::npos);
}

TEST(BoardFile, UnknownKeyIsATypoNotSilence) {
  EXPECT_EQ(ErrorOf(Replace(kGood, "baud = 9600", "baud = 9600\nbuad = 4800")),
            "boards/test/board.toml:10:1: unknown key gnss.buad (did you mean baud?); [gnss] "
            "takes: source, protocol, device, baud, replay_file, replay_speed, replay_loop");
  EXPECT_NE(ErrorOf(kGood + "[gps]\nbaud = 9600\n").find("unknown table [gps]"), std::string::npos);
  EXPECT_NE(ErrorOf("debug = true\n" + kGood).find("unknown top-level key debug"),
            std::string::npos);
}

TEST(BoardFile, BadArch) {
  EXPECT_EQ(ErrorOf(Replace(kGood, "arch = \"aarch64\"", "arch = \"arm64\"")),
            "boards/test/board.toml:3:8: board.arch = \"arm64\" is not a supported architecture "
            "(aarch64, armhf, x86_64)");
  EXPECT_NE(ErrorOf(Replace(kGood, "arch = \"aarch64\"", "arch = \"armhf\""))
                .find("board.toolchain = \"aarch64-linux-gnu\" does not build for arch armhf"),
            std::string::npos);
}

TEST(BoardFile, SyntaxErrorHasItsLine) {
  std::string message = ErrorOf(Replace(kGood, "baud = 9600", "baud = = 9600"));
  EXPECT_EQ(message.rfind("boards/test/board.toml:9:", 0), 0u) << message;
  EXPECT_NE(message.find("TOML syntax error"), std::string::npos) << message;
}

TEST(BoardFile, KeysOfTheOtherGnssSourceAreRejected) {
  EXPECT_NE(ErrorOf(Replace(kGood, "baud = 9600", "baud = 9600\nreplay_speed = 2"))
                .find("gnss.replay_speed is only for source = \"replay\""),
            std::string::npos);
  std::string replay =
      Replace(kGood, "source = \"serial\"", "source = \"replay\"\nreplay_file = \"drive.nmea\"");
  EXPECT_NE(ErrorOf(replay).find("gnss.device is only for source = \"serial\""), std::string::npos);
}

TEST(BoardFile, ReplayIsResolvedAndSpeedChecked) {
  std::string replay =
      Replace(Replace(kGood, "device = \"/dev/ttyUSB0\"\n", ""), "source = \"serial\"\nbaud = 9600",
              "source = \"replay\"\nreplay_file = \"drives/a.nmea\"\n"
              "replay_speed = 10");
  Result<BoardConfig> config = ParseBoardConfig(replay, "/etc/waybill/board.toml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->gnss.replay_file, "/etc/waybill/drives/a.nmea");
  EXPECT_EQ(config->gnss.replay_speed, 10.0);
  EXPECT_TRUE(config->gnss.replay_loop);
  EXPECT_NE(ErrorOf(Replace(replay, "replay_speed = 10", "replay_speed = -1"))
                .find("gnss.replay_speed = -1 is not a speed factor >= 0"),
            std::string::npos);
}

TEST(BoardFile, EveryProblemIsReportedAtOnce) {
  std::string text = Replace(Replace(kGood, "baud = 9600", "baud = 9601"),
                             "data_dir = \"/var/lib/waybill\"", "data_dir = \"var/lib\"");
  std::string message = ErrorOf(text);
  EXPECT_NE(message.find("gnss.baud = 9601"), std::string::npos) << message;
  EXPECT_NE(message.find("storage.data_dir = \"var/lib\" is not an absolute path"),
            std::string::npos)
      << message;
}

TEST(BoardFile, WatchdogAndLedsAreChecked) {
  std::string text = kGood + "[watchdog]\ndevice = \"/dev/watchdog\"\ntimeout_s = 0\n";
  EXPECT_NE(ErrorOf(text).find("watchdog.timeout_s = 0 is out of range (expected seconds, "
                               "1..3600)"),
            std::string::npos);
  EXPECT_NE(ErrorOf(kGood + "[leds]\nstatus = \"/dev/led\"\n")
                .find("leds.status = \"/dev/led\" is not a sysfs LED"),
            std::string::npos);
  EXPECT_NE(ErrorOf(kGood + "[leds]\ngnss = { chip = \"gpiochip0\", lane = 3 }\n")
                .find("unknown key leds.gnss.lane (did you mean line?)"),
            std::string::npos);
}

TEST(BoardFile, MissingFileIsNotFound) {
  Result<BoardConfig> config = LoadBoardConfig("/nonexistent/boards/x/board.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(config.status().IsNotFound());
  EXPECT_EQ(config.status().message(),
            "cannot read board file /nonexistent/boards/x/board.toml: No such file or directory");
}

}  // namespace
}  // namespace waybill::hal
