#include "waybill/hal/watchdog.h"

namespace waybill::hal {

Status NullWatchdog::Start(int timeout_s) {
  if (timeout_s < 1) {
    return Status::InvalidArgument("watchdog: timeout " + std::to_string(timeout_s) +
                                   " s is below 1 s");
  }
  timeout_s_ = timeout_s;
  return Status::Ok();
}

Status NullWatchdog::Stop() {
  timeout_s_ = 0;
  return Status::Ok();
}

void SimWatchdog::UpdateLocked() const {
  if (armed_ && !expired_at_mono_ms_ && clock_.mono_ms() > deadline_mono_ms_) {
    expired_at_mono_ms_ = deadline_mono_ms_;
  }
}

Status SimWatchdog::Start(int timeout_s) {
  if (timeout_s < 1) {
    return Status::InvalidArgument("simulated watchdog: timeout " + std::to_string(timeout_s) +
                                   " s is below 1 s");
  }
  std::lock_guard lock(mu_);
  UpdateLocked();
  timeout_s_ = timeout_s;
  armed_ = true;
  deadline_mono_ms_ = clock_.mono_ms() + timeout_s * 1000LL;
  return Status::Ok();
}

Status SimWatchdog::Kick() {
  std::lock_guard lock(mu_);
  if (!armed_) return Status::FailedPrecondition("simulated watchdog: kick before start");
  UpdateLocked();
  ++kicks_;
  deadline_mono_ms_ = clock_.mono_ms() + timeout_s_ * 1000LL;
  return Status::Ok();
}

Status SimWatchdog::Stop() {
  std::lock_guard lock(mu_);
  UpdateLocked();
  armed_ = false;
  timeout_s_ = 0;
  return Status::Ok();
}

int SimWatchdog::timeout_s() const {
  std::lock_guard lock(mu_);
  return timeout_s_;
}

bool SimWatchdog::armed() const {
  std::lock_guard lock(mu_);
  return armed_;
}

int64_t SimWatchdog::kicks() const {
  std::lock_guard lock(mu_);
  return kicks_;
}

bool SimWatchdog::expired() const {
  std::lock_guard lock(mu_);
  UpdateLocked();
  return expired_at_mono_ms_.has_value();
}

std::optional<int64_t> SimWatchdog::expired_at_mono_ms() const {
  std::lock_guard lock(mu_);
  UpdateLocked();
  return expired_at_mono_ms_;
}

}  // namespace waybill::hal
