#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <termios.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "fakes/fake_serial_port.h"
#include "waybill/hal/fake_clock.h"
#include "waybill/hal/serial.h"

namespace waybill::hal {
namespace {

namespace fs = std::filesystem;

// Captures what a ReconnectingSerialPort logs, one "<level> <message>" string per line.
struct LogCapture {
  LogCapture() {
    sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
    logger = std::make_shared<spdlog::logger>("serial-test", sink);
    logger->set_pattern("%l %v");
    logger->set_level(spdlog::level::trace);
  }
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines = sink->last_formatted();
    for (std::string& line : lines) {
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    }
    return lines;
  }
  int Count(const std::string& needle) const {
    int n = 0;
    for (const std::string& line : Lines()) n += line.find(needle) != std::string::npos;
    return n;
  }
  int CountLevel(const std::string& level) const {
    int n = 0;
    for (const std::string& line : Lines()) n += line.rfind(level + " ", 0) == 0;
    return n;
  }
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink;
  std::shared_ptr<spdlog::logger> logger;
};

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(SerialBaud, OnlyStandardRatesAreAccepted) {
  EXPECT_TRUE(IsStandardBaudRate(4800));
  EXPECT_TRUE(IsStandardBaudRate(9600));
  EXPECT_TRUE(IsStandardBaudRate(921600));
  EXPECT_FALSE(IsStandardBaudRate(9601));
  EXPECT_FALSE(IsStandardBaudRate(0));
  Result<std::unique_ptr<SerialPort>> port = NewLinuxSerialPort("/dev/ttyUSB0", 9601);
  ASSERT_FALSE(port.ok());
  EXPECT_TRUE(port.status().IsInvalidArgument());
  EXPECT_EQ(port.status().message(),
            "/dev/ttyUSB0: 9601 is not a standard baud rate (4800, 9600, 19200, 38400, 57600, "
            "115200, 230400, 460800, 921600)");
}

TEST(LinuxSerialPort, MissingDeviceIsUnavailableAndNamed) {
  auto port = NewLinuxSerialPort("/dev/waybill-no-such-tty", 9600);
  ASSERT_TRUE(port.ok());
  Status s = (*port)->Open();
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("/dev/waybill-no-such-tty: open failed: No such file or directory"),
            std::string::npos)
      << s.message();
  EXPECT_FALSE((*port)->is_open());
  uint8_t buf[8];
  EXPECT_EQ((*port)->Read(buf, 0).status().code(), Status::Code::kFailedPrecondition);
}

TEST(LinuxSerialPort, RegularFileIsNotASerialDevice) {
  fs::path file = fs::temp_directory_path() / ("waybill-not-a-tty-" + std::to_string(getpid()));
  std::ofstream(file) << "x";
  auto port = NewLinuxSerialPort(file.string(), 9600);
  ASSERT_TRUE(port.ok());
  Status s = (*port)->Open();
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("not a serial device"), std::string::npos) << s.message();
  fs::remove(file);
}

// A pseudo-terminal standing in for a USB receiver: the test holds the master side, the port opens
// the slave through a symlink that can be removed and re-created like a udev by-id link.
class Pty {
 public:
  Pty() {
    struct termios raw = {};
    cfmakeraw(&raw);
    char name[256] = {};
    if (openpty(&master_, &slave_, name, &raw, nullptr) == 0) name_ = name;
  }
  ~Pty() { Unplug(); }
  bool ok() const { return master_ >= 0; }
  const std::string& name() const { return name_; }
  void Send(const std::string& bytes) const {
    ASSERT_EQ(write(master_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  // What the port wrote, waiting up to timeout_ms for want bytes.
  std::string Receive(size_t want, int timeout_ms) const {
    std::string out;
    for (int turn = 0; turn < 50 && out.size() < want; ++turn) {
      struct pollfd pfd = {master_, POLLIN, 0};
      if (poll(&pfd, 1, timeout_ms / 50 + 1) <= 0) continue;
      char buf[256];
      ssize_t n = read(master_, buf, sizeof buf);
      if (n > 0) out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  void Unplug() {
    if (slave_ >= 0) close(slave_);
    if (master_ >= 0) close(master_);
    slave_ = master_ = -1;
  }

 private:
  int master_ = -1;
  int slave_ = -1;
  std::string name_;
};

// Reads until want bytes arrived or the turns run out; each Read waits at most 200 ms.
std::string ReadUpTo(SerialPort& port, size_t want, int turns = 25) {
  std::string out;
  uint8_t buf[512];
  for (int turn = 0; turn < turns && out.size() < want; ++turn) {
    Result<size_t> n = port.Read(buf, 200);
    if (n.ok()) out.append(reinterpret_cast<char*>(buf), *n);
  }
  return out;
}

class SerialPtyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("waybill-serial-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    link_ = dir_ / "gnss0";
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  fs::path link_;
};

TEST_F(SerialPtyTest, BytesWrittenOnTheMasterArriveAndWritesGoOut) {
  Pty pty;
  ASSERT_TRUE(pty.ok());
  auto port = NewLinuxSerialPort(pty.name(), 115200);
  ASSERT_TRUE(port.ok());
  ASSERT_TRUE((*port)->Open().ok());
  const std::string sentence =
      "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n";
  pty.Send(sentence);
  EXPECT_EQ(ReadUpTo(**port, sentence.size()), sentence);
  const std::string command = "$PUBX,40,GSV,0,0,0,0*59\r\n";
  ASSERT_TRUE((*port)->Write(Bytes(command), 1000).ok());
  EXPECT_EQ(pty.Receive(command.size(), 1000), command);
  uint8_t buf[16];
  Result<size_t> idle = (*port)->Read(buf, 0);
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(*idle, 0u);
}

TEST_F(SerialPtyTest, ReceiverUnpluggedAndPluggedBackReadsResume) {
  FakeClock clock;
  LogCapture log;
  auto inner = NewLinuxSerialPort(link_.string(), 9600);
  ASSERT_TRUE(inner.ok());
  ReconnectingSerialPort port(std::move(*inner), clock, clock,
                              {.role = "GNSS receiver", .logger = log.logger});

  auto first = std::make_unique<Pty>();
  ASSERT_TRUE(first->ok());
  fs::create_symlink(first->name(), link_);
  ASSERT_TRUE(port.Open().ok());
  first->Send("$GPGGA,1\r\n");
  EXPECT_EQ(ReadUpTo(port, 10), "$GPGGA,1\r\n");

  // Unplug: the by-id link goes away and the device hangs up.
  fs::remove(link_);
  first->Unplug();
  uint8_t buf[64];
  Result<size_t> lost = port.Read(buf, 200);
  ASSERT_FALSE(lost.ok());
  EXPECT_TRUE(lost.status().IsUnavailable()) << lost.status().ToString();
  EXPECT_FALSE(port.connected());
  EXPECT_TRUE(port.is_open());
  EXPECT_EQ(port.disconnects(), 1);

  // Gone for a minute of fake time: every Read says so, none blocks for real, one log line.
  for (int i = 0; i < 60; ++i) {
    Result<size_t> r = port.Read(buf, 1000);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(r.status().IsUnavailable());
  }
  EXPECT_NE(lost.status().message().find("GNSS receiver " + link_.string() + " is gone"),
            std::string::npos)
      << lost.status().message();
  EXPECT_EQ(log.Count("GNSS receiver " + link_.string() + " disappeared ("), 1);
  EXPECT_EQ(log.Count("retrying every 1 s, backing off to every 8 s"), 1);
  EXPECT_EQ(log.Count("is back"), 0);

  // Plug in again (a new pty: a new device node, as after re-enumeration).
  Pty second;
  ASSERT_TRUE(second.ok());
  fs::create_symlink(second.name(), link_);
  for (int i = 0; i < 20 && !port.connected(); ++i) {
    Result<size_t> r = port.Read(buf, 1000);
    if (r.ok()) {
      EXPECT_EQ(*r, 0u);
    }
  }
  ASSERT_TRUE(port.connected());
  EXPECT_EQ(port.reconnects(), 1);
  EXPECT_EQ(log.Count("GNSS receiver " + link_.string() + " is back after"), 1);
  second.Send("$GPGGA,2\r\n");
  EXPECT_EQ(ReadUpTo(port, 10), "$GPGGA,2\r\n");
}

TEST(ReconnectingSerialPort, BacksOffToTheCapAndLogsOnce) {
  FakeClock clock;
  LogCapture log;
  auto owned = std::make_unique<FakeSerialPort>("/dev/ttyUSB0");
  FakeSerialPort* dev = owned.get();
  ReconnectingSerialPort port(std::move(owned), clock, clock,
                              {.role = "GNSS receiver", .logger = log.logger});
  ASSERT_TRUE(port.Open().ok());
  dev->Feed("abc");
  uint8_t buf[16];
  ASSERT_EQ(*port.Read(buf, 100), 3u);

  dev->Unplug("read failed: No such device");
  int64_t lost_at = clock.mono_ms();
  EXPECT_TRUE(port.Read(buf, 100).status().IsUnavailable());
  EXPECT_EQ(log.Lines().back(),
            "warning GNSS receiver /dev/ttyUSB0 disappeared (read failed: No such device); "
            "retrying every 1 s, backing off to every 8 s");
  int opens_before = dev->open_calls();
  // 60 s gone, read in 500 ms slices: attempts at +1, +3, +7, +15, +23, +31, +39, +47, +55 s.
  while (clock.mono_ms() - lost_at < 60000) {
    ASSERT_TRUE(port.Read(buf, 500).status().IsUnavailable());
  }
  EXPECT_EQ(dev->open_calls() - opens_before, 9);
  EXPECT_EQ(log.CountLevel("warning"), 1);

  // A new reason for failing is worth one more warning: it usually needs a person.
  dev->SetOpenFailure("open failed: Permission denied");
  for (int i = 0; i < 40; ++i) (void)port.Read(buf, 500);
  EXPECT_EQ(log.Count("still cannot be opened (open failed: Permission denied)"), 1);
  EXPECT_EQ(log.CountLevel("warning"), 2);

  dev->Plug();
  dev->Feed("xyz");
  std::string got;
  for (int i = 0; i < 40 && got.size() < 3; ++i) {
    Result<size_t> r = port.Read(buf, 500);
    if (r.ok()) got.append(reinterpret_cast<char*>(buf), *r);
  }
  EXPECT_EQ(got, "xyz");
  EXPECT_EQ(log.Count("GNSS receiver /dev/ttyUSB0 is back after"), 1);
  // No Read slept past its own timeout, however long the backoff.
  for (int64_t s : clock.sleeps()) EXPECT_LE(s, 500);
}

TEST(ReconnectingSerialPort, DeviceAbsentAtStartIsRetried) {
  FakeClock clock;
  LogCapture log;
  auto owned = std::make_unique<FakeSerialPort>("/dev/ttyUSB0");
  FakeSerialPort* dev = owned.get();
  dev->Unplug();
  ReconnectingSerialPort port(std::move(owned), clock, clock,
                              {.role = "GNSS receiver", .logger = log.logger});
  Status opened = port.Open();
  EXPECT_TRUE(opened.IsUnavailable());
  EXPECT_TRUE(port.is_open());
  EXPECT_FALSE(port.connected());
  EXPECT_EQ(log.Count("GNSS receiver /dev/ttyUSB0 is not there (open failed: No such file or "
                      "directory)"),
            1);
  uint8_t buf[8];
  EXPECT_TRUE(port.Write(Bytes("x"), 100).IsUnavailable());
  dev->Plug();
  dev->Feed("ok");
  Result<size_t> r = port.Read(buf, 2000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), *r), "ok");
  EXPECT_EQ(port.reconnects(), 1);
  ASSERT_TRUE(port.Write(Bytes("cmd"), 100).ok());
  EXPECT_EQ(dev->written(), "cmd");
  port.Close();
  EXPECT_EQ(port.Read(buf, 0).status().code(), Status::Code::kFailedPrecondition);
}

}  // namespace
}  // namespace waybill::hal
