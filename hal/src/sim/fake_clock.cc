#include "waybill/hal/fake_clock.h"

namespace waybill::hal {

FakeClock::FakeClock() : FakeClock(1704067200000, 1000, TimeSource::kNtp) {}

FakeClock::FakeClock(int64_t wall_ms, int64_t mono_ms, TimeSource source)
    : wall_ms_(wall_ms), mono_ms_(mono_ms), source_(source) {}

int64_t FakeClock::wall_ms() const {
  std::lock_guard lock(mu_);
  return wall_ms_;
}

int64_t FakeClock::mono_ms() const {
  std::lock_guard lock(mu_);
  return mono_ms_;
}

TimeSource FakeClock::wall_source() const {
  std::lock_guard lock(mu_);
  return source_;
}

void FakeClock::SleepFor(int64_t duration_ms) {
  if (duration_ms <= 0) return;
  std::lock_guard lock(mu_);
  sleeps_.push_back(duration_ms);
  wall_ms_ += duration_ms;
  mono_ms_ += duration_ms;
}

void FakeClock::Advance(int64_t duration_ms) {
  if (duration_ms <= 0) return;
  std::lock_guard lock(mu_);
  wall_ms_ += duration_ms;
  mono_ms_ += duration_ms;
}

void FakeClock::SetWall(int64_t wall_ms, TimeSource source) {
  std::lock_guard lock(mu_);
  wall_ms_ = wall_ms;
  source_ = source;
}

void FakeClock::SetMono(int64_t mono_ms) {
  std::lock_guard lock(mu_);
  if (mono_ms > mono_ms_) mono_ms_ = mono_ms;
}

void FakeClock::SetSource(TimeSource source) {
  std::lock_guard lock(mu_);
  source_ = source;
}

std::vector<int64_t> FakeClock::sleeps() const {
  std::lock_guard lock(mu_);
  return sleeps_;
}

int64_t FakeClock::slept_ms() const {
  std::lock_guard lock(mu_);
  int64_t total = 0;
  for (int64_t s : sleeps_) total += s;
  return total;
}

void FakeClock::ClearSleeps() {
  std::lock_guard lock(mu_);
  sleeps_.clear();
}

}  // namespace waybill::hal
