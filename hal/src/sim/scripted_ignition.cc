#include "waybill/hal/ignition.h"

namespace waybill::hal {

ScriptedIgnition::ScriptedIgnition(std::vector<IgnitionStep> script, Clock& clock, Sleeper& sleeper)
    : clock_(clock), sleeper_(sleeper), start_mono_ms_(clock.mono_ms()) {
  for (const IgnitionStep& step : script) {
    if (!script_.empty() && step.at_ms < script_.back().at_ms) continue;
    script_.push_back(step);
  }
}

IgnitionState ScriptedIgnition::StateAt(int64_t elapsed_ms) const {
  IgnitionState state = IgnitionState::kUnknown;
  for (const IgnitionStep& step : script_) {
    if (step.at_ms > elapsed_ms) break;
    state = step.on ? IgnitionState::kOn : IgnitionState::kOff;
  }
  return state;
}

std::optional<int64_t> ScriptedIgnition::NextChangeAfter(int64_t elapsed_ms) const {
  IgnitionState current = StateAt(elapsed_ms);
  for (const IgnitionStep& step : script_) {
    if (step.at_ms <= elapsed_ms) continue;
    if (StateAt(step.at_ms) != current) return step.at_ms;
  }
  return std::nullopt;
}

Result<IgnitionState> ScriptedIgnition::Read() {
  return StateAt(clock_.mono_ms() - start_mono_ms_);
}

Result<std::optional<IgnitionState>> ScriptedIgnition::WaitForChange(int64_t timeout_ms) {
  int64_t now_ms = clock_.mono_ms() - start_mono_ms_;
  IgnitionState before = StateAt(now_ms);
  int64_t until_ms = now_ms + std::max<int64_t>(timeout_ms, 0);
  std::optional<int64_t> change = NextChangeAfter(now_ms);
  if (change && *change < until_ms) until_ms = *change;
  sleeper_.SleepFor(until_ms - now_ms);
  IgnitionState after = StateAt(clock_.mono_ms() - start_mono_ms_);
  if (after != before) return std::optional<IgnitionState>(after);
  return std::optional<IgnitionState>();
}

}  // namespace waybill::hal
