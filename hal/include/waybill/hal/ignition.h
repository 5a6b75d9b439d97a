// IgnitionInput: whether the truck's ignition is on, read from a GPIO line.
//
// The firmware uses it to tell a parked truck from a driving one (sampling policy, sleep, shutdown
// before the supply drops). A line that cannot be read says kUnknown rather than guessing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "waybill/hal/clock.h"
#include "waybill/hal/sleeper.h"
#include "waybill/status.h"

namespace waybill::hal {

enum class IgnitionState : uint8_t { kUnknown = 0, kOff = 1, kOn = 2 };
std::string_view ToString(IgnitionState state);

class IgnitionInput {
 public:
  virtual ~IgnitionInput() = default;

  // The state now. An error (the GPIO chip went away) says why; the caller records kUnknown.
  virtual Result<IgnitionState> Read() = 0;

  // Waits at most timeout_ms for the state to change from what it was at the call, and returns the
  // new state; nullopt when it did not change in time. A bounce that ends where it started is not
  // a change.
  virtual Result<std::optional<IgnitionState>> WaitForChange(int64_t timeout_ms) = 0;
};
// Thread-safety: none; one thread owns an IgnitionInput.

// The ignition on a GPIO line through libgpiod 1.6: chip is what gpiod_chip_open_lookup accepts
// ("gpiochip0", "/dev/gpiochip0", "0" or a chip label), line the offset on that chip. The line is
// requested for both edges under the consumer name "waybilld"; with active_low a low level means
// ignition on (the usual opto-isolated input). Unavailable with the chip and line named if the chip
// is missing or the line is busy.
Result<std::unique_ptr<IgnitionInput>> OpenGpioIgnition(const std::string& chip, uint32_t line,
                                                        bool active_low);

// One step of a scripted ignition: from at_ms after the start on, the ignition is on (or off).
struct IgnitionStep {
  int64_t at_ms = 0;
  bool on = false;
};

// A simulated ignition that follows a script on the injected clock: kUnknown before the first
// step, then each step's state from its time on (relative to the Clock's mono time at
// construction). WaitForChange() sleeps on the Sleeper until the next step that changes the
// state or the timeout, whichever is first. Steps must be in non-decreasing time order; a step
// out of order is ignored. clock and sleeper must outlive it.
class ScriptedIgnition final : public IgnitionInput {
 public:
  ScriptedIgnition(std::vector<IgnitionStep> script, Clock& clock, Sleeper& sleeper);

  Result<IgnitionState> Read() override;
  Result<std::optional<IgnitionState>> WaitForChange(int64_t timeout_ms) override;

 private:
  IgnitionState StateAt(int64_t elapsed_ms) const;
  // The elapsed time of the first step after elapsed_ms whose state differs from StateAt(it).
  std::optional<int64_t> NextChangeAfter(int64_t elapsed_ms) const;

  std::vector<IgnitionStep> script_;
  Clock& clock_;
  Sleeper& sleeper_;
  int64_t start_mono_ms_;
};

}  // namespace waybill::hal
