// SerialPort: a byte pipe to a device such as a GNSS receiver, and a wrapper that survives the
// device disappearing and coming back.
//
// A USB GNSS receiver is unplugged, a loose connector drops the UART, the kernel re-enumerates the
// device after a brown-out: on a truck these are normal events, not crashes. LinuxSerialPort
// reports them as a failed Read (Unavailable); ReconnectingSerialPort turns that into a state: it
// closes the dead descriptor, logs once in plain words, retries opening with a bounded backoff on
// the injected Clock and Sleeper, and logs again when the device is back. The caller just keeps
// calling Read().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "waybill/hal/clock.h"
#include "waybill/hal/sleeper.h"
#include "waybill/status.h"

namespace spdlog {
class logger;
}

namespace waybill::hal {

// The baud rates Waybill drives a serial port at: 4800, 9600, ..., 921600.
std::span<const uint32_t> StandardBaudRates();
bool IsStandardBaudRate(uint32_t baud);
// "4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600", for error messages.
std::string StandardBaudRatesText();

class SerialPort {
 public:
  virtual ~SerialPort() = default;

  // Opens the device. Ok if it is open after the call (also when it already was). On failure the
  // port stays closed and the Status says why, its message starting with "<device>: ".
  // Unavailable means the device is not there or not usable now (retrying may succeed).
  virtual Status Open() = 0;

  // Waits at most timeout_ms (0: do not wait) for bytes, then copies up to buffer.size() of them
  // into buffer and returns how many: 0 when none arrived in time. Unavailable when the device is
  // gone (hung up, end of file, ENODEV, EIO): the port is then useless until closed and reopened.
  // FailedPrecondition when the port is not open. Nothing read is lost on an error.
  virtual Result<size_t> Read(std::span<uint8_t> buffer, int64_t timeout_ms) = 0;

  // Writes all of bytes, waiting at most timeout_ms for the device to accept them. On failure an
  // unknown prefix of bytes may have been sent.
  virtual Status Write(std::span<const uint8_t> bytes, int64_t timeout_ms) = 0;

  // Closes the device if open. Never fails.
  virtual void Close() = 0;

  virtual bool is_open() const = 0;
  // The path given at construction, e.g. "/dev/ttyUSB0".
  virtual const std::string& device() const = 0;
};
// Thread-safety of every SerialPort here: none. Use one port from one thread at a time (a reader
// thread typically owns it); guard it externally to share it.

// A serial port on Linux: termios raw mode (8N1, no flow control, no echo) at baud, opened
// non-blocking with O_NOCTTY and TIOCEXCL (a second opener gets EBUSY), read and written with
// poll(). InvalidArgument if baud is not a standard rate. Does not open the device: call Open().
Result<std::unique_ptr<SerialPort>> NewLinuxSerialPort(std::string device, uint32_t baud);

struct ReconnectOptions {
  // Names the device in log lines: "GNSS receiver /dev/ttyUSB0 disappeared (...)".
  std::string role = "serial device";
  // Backoff between open attempts while the device is gone: starts at initial_retry_ms and
  // doubles after each failed attempt up to max_retry_ms.
  int64_t initial_retry_ms = 1000;
  int64_t max_retry_ms = 8000;
  // Where the disappeared/back lines go; null: spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger;
};

// Wraps a SerialPort and keeps it open across the device going away and coming back.
//
// Open() arms the wrapper and makes a first attempt. From then on Read() and Write() never give up:
// when the device fails they close it, log "<role> <device> disappeared (<reason>); retrying every
// 1 s, backing off to every 8 s" once, and return Unavailable; while it is gone Read() waits on the
// Sleeper (never longer than timeout_ms) and retries opening whenever the backoff allows, logging
// "<role> <device> is back after 12 s (5 attempts)" once it opens. Failed attempts are logged at
// debug level, except that a new reason (say "Permission denied" after "No such file or
// directory") is logged once at warning level, because it usually needs a person.
class ReconnectingSerialPort final : public SerialPort {
 public:
  // clock, sleeper and (if given) the logger must outlive the port.
  ReconnectingSerialPort(std::unique_ptr<SerialPort> inner, Clock& clock, Sleeper& sleeper,
                         ReconnectOptions options = {});
  ~ReconnectingSerialPort() override;

  // Arms the port and tries to open the device once. Ok if it opened; otherwise Unavailable with
  // the reason, and the port stays armed: the next Read() retries after the backoff.
  Status Open() override;
  // While connected, as SerialPort::Read. While the device is gone: waits up to timeout_ms for the
  // next allowed attempt, retries, and reads with what is left of timeout_ms if the device came
  // back; otherwise returns Unavailable ("<device> is gone; next attempt in 2 s").
  // FailedPrecondition if not armed (never opened, or closed).
  Result<size_t> Read(std::span<uint8_t> buffer, int64_t timeout_ms) override;
  // Unavailable at once while the device is gone (a write is never queued).
  Status Write(std::span<const uint8_t> bytes, int64_t timeout_ms) override;
  // Disarms the port and closes the device.
  void Close() override;
  // True while armed, even when the device is gone; see connected().
  bool is_open() const override { return armed_; }
  const std::string& device() const override { return inner_->device(); }

  // True when the device is open now.
  bool connected() const { return inner_->is_open(); }
  // How many times the device came back after being gone or absent at Open().
  int64_t reconnects() const { return reconnects_; }
  // How many times the device was lost while connected.
  int64_t disconnects() const { return disconnects_; }

 private:
  void MarkGone(const Status& why);
  // Tries to open if the backoff allows; true if the device is open after the call.
  bool MaybeReopen();
  std::string Reason(const Status& status) const;
  Status GoneStatus() const;

  std::unique_ptr<SerialPort> inner_;
  Clock& clock_;
  Sleeper& sleeper_;
  ReconnectOptions options_;
  bool armed_ = false;
  int64_t next_attempt_mono_ms_ = 0;
  int64_t retry_ms_ = 0;
  int64_t gone_since_mono_ms_ = 0;
  int64_t attempts_since_gone_ = 0;
  std::string gone_reason_;       // why the device was lost (or absent at Open)
  std::string last_open_reason_;  // why the last open attempt failed
  int64_t reconnects_ = 0;
  int64_t disconnects_ = 0;
};

}  // namespace waybill::hal
