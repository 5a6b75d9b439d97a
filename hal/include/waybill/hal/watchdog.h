// Watchdog: a hardware timer that resets the board unless it is kicked in time.
//
// The daemon starts it once, kicks it from its main loop only while that loop is healthy, and stops
// it on a clean shutdown. Dying without Stop() leaves it armed on purpose: a hung or crashed daemon
// must end in a reset. (systemd's own watchdog, WATCHDOG=1 through sd_notify, is the daemon's
// business, not this interface's.)
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "waybill/hal/clock.h"
#include "waybill/status.h"

namespace waybill::hal {

class Watchdog {
 public:
  virtual ~Watchdog() = default;

  // Arms the watchdog with a timeout of timeout_s seconds (the driver may round it: see
  // timeout_s()). InvalidArgument for timeout_s < 1. On failure the watchdog is not armed by us.
  virtual Status Start(int timeout_s) = 0;
  // Restarts the countdown. FailedPrecondition if not started.
  virtual Status Kick() = 0;
  // Disarms it with the magic close ('V' then close), so that a clean exit does not reset the
  // board. Ok also when not started. A driver built with nowayout keeps counting anyway; then the
  // Status says so.
  virtual Status Stop() = 0;
  // The timeout in force, as the driver reported it; 0 when not started.
  virtual int timeout_s() const = 0;
};
// Thread-safety: LinuxWatchdog and NullWatchdog are not thread-safe (one owner thread);
// SimWatchdog is (tests inspect it from another thread).

// /dev/watchdog (or another node) through WDIOC_SETTIMEOUT and WDIOC_KEEPALIVE. Opening the device
// arms it, so nothing is opened before Start().
std::unique_ptr<Watchdog> NewLinuxWatchdog(std::string device);

// For boards without a hardware watchdog: every call succeeds and does nothing.
class NullWatchdog final : public Watchdog {
 public:
  Status Start(int timeout_s) override;
  Status Kick() override { return Status::Ok(); }
  Status Stop() override;
  int timeout_s() const override { return timeout_s_; }

 private:
  int timeout_s_ = 0;
};

// A simulated watchdog on the injected clock: records kicks and says whether it would have reset
// the board (no kick for longer than the timeout while armed). clock must outlive it.
class SimWatchdog final : public Watchdog {
 public:
  explicit SimWatchdog(Clock& clock) : clock_(clock) {}

  Status Start(int timeout_s) override;
  Status Kick() override;
  Status Stop() override;
  int timeout_s() const override;

  bool armed() const;
  int64_t kicks() const;
  // True once the clock has passed the last kick (or Start) plus the timeout while armed; stays
  // true after that (a real board would have reset), even if kicked later.
  bool expired() const;
  // When it expired (mono ms), if it did.
  std::optional<int64_t> expired_at_mono_ms() const;

 private:
  // Latches expiry if the deadline has passed; mu_ must be held.
  void UpdateLocked() const;

  Clock& clock_;
  mutable std::mutex mu_;
  int timeout_s_ = 0;
  bool armed_ = false;
  int64_t kicks_ = 0;
  int64_t deadline_mono_ms_ = 0;
  mutable std::optional<int64_t> expired_at_mono_ms_;
};

}  // namespace waybill::hal
