// LinuxSerialPort: termios raw mode and poll().
//
// The descriptor is non-blocking so that Read() can honour its timeout with poll() and a device
// that vanishes mid-read cannot hang the reader. A vanished device shows up in three ways depending
// on the driver: poll() reports POLLHUP/POLLERR, read() returns 0 (end of file), or read() fails
// with EIO/ENODEV/ENXIO. All three are reported as Unavailable so that the reconnecting wrapper can
// treat them alike.
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "waybill/hal/serial.h"

namespace waybill::hal {

namespace {

speed_t ToSpeed(uint32_t baud) {
  switch (baud) {
    case 4800:
      return B4800;
    case 9600:
      return B9600;
    case 19200:
      return B19200;
    case 38400:
      return B38400;
    case 57600:
      return B57600;
    case 115200:
      return B115200;
    case 230400:
      return B230400;
    case 460800:
      return B460800;
    case 921600:
      return B921600;
    default:
      return B0;
  }
}

std::string ErrnoText(int err) { return std::strerror(err); }

int64_t SteadyMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

class LinuxSerialPort final : public SerialPort {
 public:
  LinuxSerialPort(std::string device, uint32_t baud) : device_(std::move(device)), baud_(baud) {}
  ~LinuxSerialPort() override { Close(); }

  Status Open() override {
    if (fd_ >= 0) return Status::Ok();
    int fd = ::open(device_.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return OpenError("open failed", errno);
    if (!::isatty(fd)) {
      ::close(fd);
      return Status::InvalidArgument(device_ + ": not a serial device (isatty failed)");
    }
    // Exclusive mode: a second waybilld, or a stray gpsd, gets EBUSY instead of stealing bytes.
    if (::ioctl(fd, TIOCEXCL) != 0) {
      int err = errno;
      ::close(fd);
      return OpenError("TIOCEXCL failed", err);
    }
    struct termios tio = {};
    if (::tcgetattr(fd, &tio) != 0) {
      int err = errno;
      ::close(fd);
      return OpenError("tcgetattr failed", err);
    }
    ::cfmakeraw(&tio);
    tio.c_cflag |= CLOCAL | CREAD;
    tio.c_cflag &= ~(CSTOPB | PARENB | CRTSCTS);
    tio.c_cflag = (tio.c_cflag & ~CSIZE) | CS8;
    tio.c_iflag &= ~(IXON | IXOFF | IXANY);
    tio.c_cc[VMIN] = 0;
    tio.c_cc[VTIME] = 0;
    speed_t speed = ToSpeed(baud_);
    if (::cfsetispeed(&tio, speed) != 0 || ::cfsetospeed(&tio, speed) != 0 ||
        ::tcsetattr(fd, TCSANOW, &tio) != 0) {
      int err = errno;
      ::close(fd);
      return OpenError("setting raw mode at " + std::to_string(baud_) + " baud failed", err);
    }
    // Whatever the receiver sent before we opened is stale; start on a fresh sentence boundary.
    ::tcflush(fd, TCIFLUSH);
    fd_ = fd;
    return Status::Ok();
  }

  Result<size_t> Read(std::span<uint8_t> buffer, int64_t timeout_ms) override {
    if (fd_ < 0) return Status::FailedPrecondition(device_ + ": read on a closed port");
    if (buffer.empty()) return size_t{0};
    int64_t deadline = SteadyMs() + std::max<int64_t>(timeout_ms, 0);
    // Bounded: each turn either returns or waits in poll() until the deadline; EINTR restarts
    // with the remaining time.
    for (int turn = 0; turn < 1000; ++turn) {
      int64_t remaining = std::max<int64_t>(deadline - SteadyMs(), 0);
      struct pollfd pfd = {fd_, POLLIN, 0};
      int n = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(remaining, 60000)));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::IOError(device_ + ": poll failed: " + ErrnoText(errno));
      }
      if (n == 0) {
        if (remaining == 0 || SteadyMs() >= deadline) return size_t{0};
        continue;
      }
      if (pfd.revents & POLLNVAL) return Status::Unavailable(device_ + ": descriptor invalid");
      // Read even on POLLHUP: the driver may still hold bytes that arrived before the hang-up.
      ssize_t got = ::read(fd_, buffer.data(), buffer.size());
      if (got > 0) return static_cast<size_t>(got);
      if (got == 0) return Status::Unavailable(device_ + ": end of file (device hung up)");
      int err = errno;
      if (err == EINTR || err == EAGAIN) {
        if (pfd.revents & (POLLHUP | POLLERR)) {
          return Status::Unavailable(device_ + ": device hung up");
        }
        continue;
      }
      return Status::Unavailable(device_ + ": read failed: " + ErrnoText(err));
    }
    return size_t{0};
  }

  Status Write(std::span<const uint8_t> bytes, int64_t timeout_ms) override {
    if (fd_ < 0) return Status::FailedPrecondition(device_ + ": write on a closed port");
    int64_t deadline = SteadyMs() + std::max<int64_t>(timeout_ms, 0);
    size_t done = 0;
    for (int turn = 0; done < bytes.size() && turn < 100000; ++turn) {
      ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n > 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      int err = errno;
      if (n < 0 && err != EAGAIN && err != EINTR) {
        return Status::Unavailable(device_ + ": write failed: " + ErrnoText(err));
      }
      int64_t remaining = deadline - SteadyMs();
      if (remaining <= 0) {
        return Status::Unavailable(device_ + ": write timed out after " +
                                   std::to_string(timeout_ms) + " ms with " +
                                   std::to_string(bytes.size() - done) + " bytes unsent");
      }
      struct pollfd pfd = {fd_, POLLOUT, 0};
      if (::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(remaining, 60000))) > 0 &&
          (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))) {
        return Status::Unavailable(device_ + ": device hung up during write");
      }
    }
    return Status::Ok();
  }

  void Close() override {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
  }

  bool is_open() const override { return fd_ >= 0; }
  const std::string& device() const override { return device_; }

 private:
  Status OpenError(const std::string& what, int err) const {
    std::string msg = device_ + ": " + what + ": " + ErrnoText(err);
    switch (err) {
      case ENOENT:
      case ENODEV:
      case ENXIO:
      case EIO:
      case EBUSY:
      case EACCES:
      case EPERM:
        return Status::Unavailable(std::move(msg));
      default:
        return Status::IOError(std::move(msg));
    }
  }

  std::string device_;
  uint32_t baud_;
  int fd_ = -1;
};

}  // namespace

Result<std::unique_ptr<SerialPort>> NewLinuxSerialPort(std::string device, uint32_t baud) {
  if (!IsStandardBaudRate(baud)) {
    return Status::InvalidArgument(device + ": " + std::to_string(baud) +
                                   " is not a standard baud rate (" + StandardBaudRatesText() +
                                   ")");
  }
  if (device.empty()) return Status::InvalidArgument("serial device path is empty");
  return std::unique_ptr<SerialPort>(std::make_unique<LinuxSerialPort>(std::move(device), baud));
}

}  // namespace waybill::hal
