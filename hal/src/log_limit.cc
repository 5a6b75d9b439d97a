#include "waybill/hal/log_limit.h"

namespace waybill::hal {

LogLimiter::Slot& LogLimiter::Find(std::string_view reason, int64_t now_mono_ms) {
  for (Slot& slot : slots_) {
    if (slot.reason == reason) return slot;
  }
  Slot& slot = slots_.emplace_back();
  slot.reason = std::string(reason);
  slot.window_start_ms = now_mono_ms;
  return slot;
}

LogLimiter::Decision LogLimiter::Allow(std::string_view reason, int64_t now_mono_ms) {
  Slot& slot = Find(reason, now_mono_ms);
  if (now_mono_ms - slot.window_start_ms >= window_ms_) {
    slot.window_start_ms = now_mono_ms;
    slot.logged_in_window = 0;
  }
  if (slot.logged_in_window >= max_per_window_) {
    ++slot.suppressed;
    return {false, 0};
  }
  ++slot.logged_in_window;
  Decision decision{true, slot.suppressed};
  slot.suppressed = 0;
  return decision;
}

std::vector<LogLimiter::Pending> LogLimiter::TakePending() {
  std::vector<Pending> pending;
  for (Slot& slot : slots_) {
    if (slot.suppressed == 0) continue;
    pending.push_back({slot.reason, slot.suppressed});
    slot.suppressed = 0;
  }
  return pending;
}

}  // namespace waybill::hal
