#include "waybill/hal/watchdog.h"

#include <fcntl.h>
#include <linux/watchdog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace waybill::hal {

namespace {

class LinuxWatchdog final : public Watchdog {
 public:
  explicit LinuxWatchdog(std::string device) : device_(std::move(device)) {}
  // Closing without the magic character leaves the timer running: a daemon that is destroyed
  // without Stop() is treated like one that crashed.
  ~LinuxWatchdog() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Start(int timeout_s) override {
    if (timeout_s < 1) {
      return Status::InvalidArgument("watchdog " + device_ + ": timeout " +
                                     std::to_string(timeout_s) + " s is below 1 s");
    }
    if (fd_ < 0) {
      int fd = ::open(device_.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) {
        int err = errno;
        return Status::Unavailable("watchdog " + device_ + ": cannot open: " + std::strerror(err) +
                                   (err == EBUSY ? " (another process holds it)" : ""));
      }
      fd_ = fd;
    }
    int requested = timeout_s;
    if (::ioctl(fd_, WDIOC_SETTIMEOUT, &requested) != 0) {
      int err = errno;
      // The open armed it with the driver's default timeout: disarm rather than leave a timer
      // nobody kicks.
      Status disarmed = Disarm();
      return Status::IOError("watchdog " + device_ + ": setting a timeout of " +
                             std::to_string(timeout_s) + " s failed: " + std::strerror(err) +
                             (disarmed.ok() ? "" : "; " + disarmed.message()));
    }
    // Drivers round to what the hardware can do (and report it back in requested); ask again
    // because some only report through GETTIMEOUT.
    int actual = requested;
    if (::ioctl(fd_, WDIOC_GETTIMEOUT, &actual) != 0) actual = requested;
    timeout_s_ = actual;
    return Kick();
  }

  Status Kick() override {
    if (fd_ < 0) return Status::FailedPrecondition("watchdog " + device_ + ": kick before start");
    int dummy = 0;
    if (::ioctl(fd_, WDIOC_KEEPALIVE, &dummy) != 0) {
      return Status::IOError("watchdog " + device_ + ": keepalive failed: " + std::strerror(errno));
    }
    return Status::Ok();
  }

  Status Stop() override {
    if (fd_ < 0) return Status::Ok();
    return Disarm();
  }

  int timeout_s() const override { return fd_ >= 0 ? timeout_s_ : 0; }

 private:
  Status Disarm() {
    ssize_t n = ::write(fd_, "V", 1);
    int err = errno;
    ::close(fd_);
    fd_ = -1;
    timeout_s_ = 0;
    if (n != 1) {
      return Status::IOError("watchdog " + device_ + ": magic close failed (" + std::strerror(err) +
                             "); the board may reset when it expires");
    }
    return Status::Ok();
  }

  std::string device_;
  int fd_ = -1;
  int timeout_s_ = 0;
};

}  // namespace

std::unique_ptr<Watchdog> NewLinuxWatchdog(std::string device) {
  return std::make_unique<LinuxWatchdog>(std::move(device));
}

}  // namespace waybill::hal
