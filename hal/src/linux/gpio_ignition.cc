// The ignition on a GPIO line, through libgpiod 1.6's C API.
//
// Edges only wake the reader; the state reported is always the line's level read after the line
// has been quiet for a debounce interval, so a contact that bounces (or an edge event lost to an
// overflowing kernel queue) cannot leave us believing the wrong state.
#include <gpiod.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "waybill/hal/ignition.h"

namespace waybill::hal {

namespace {

constexpr int64_t kDebounceMs = 20;

int64_t SteadyMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

struct timespec ToTimespec(int64_t ms) {
  struct timespec ts = {};
  ts.tv_sec = static_cast<time_t>(ms / 1000);
  ts.tv_nsec = static_cast<long>((ms % 1000) * 1000000);
  return ts;
}

class GpioIgnition final : public IgnitionInput {
 public:
  GpioIgnition(gpiod_chip* chip, gpiod_line* line, std::string name)
      : chip_(chip), line_(line), name_(std::move(name)) {}
  ~GpioIgnition() override {
    gpiod_line_release(line_);
    gpiod_chip_close(chip_);
  }

  Result<IgnitionState> Read() override {
    int value = gpiod_line_get_value(line_);
    if (value < 0) {
      return Status::IOError("ignition on " + name_ +
                             ": reading the line failed: " + std::strerror(errno));
    }
    return value == 1 ? IgnitionState::kOn : IgnitionState::kOff;
  }

  Result<std::optional<IgnitionState>> WaitForChange(int64_t timeout_ms) override {
    Result<IgnitionState> before = Read();
    if (!before.ok()) return before.status();
    int64_t deadline = SteadyMs() + std::max<int64_t>(timeout_ms, 0);
    // Bounded: each turn waits for an edge until the deadline, or debounces one burst of edges.
    for (int turn = 0; turn < 1000; ++turn) {
      int64_t remaining = std::max<int64_t>(deadline - SteadyMs(), 0);
      Result<bool> edge = WaitForEdge(remaining);
      if (!edge.ok()) return edge.status();
      if (!*edge) break;
      // Debounce: drain edges until the line has been quiet for kDebounceMs (bounded).
      for (int settle = 0; settle < 50; ++settle) {
        Result<bool> more = WaitForEdge(kDebounceMs);
        if (!more.ok()) return more.status();
        if (!*more) break;
      }
      Result<IgnitionState> now = Read();
      if (!now.ok()) return now.status();
      if (*now != *before) return std::optional<IgnitionState>(*now);
      if (SteadyMs() >= deadline) break;
    }
    Result<IgnitionState> now = Read();
    if (!now.ok()) return now.status();
    if (*now != *before) return std::optional<IgnitionState>(*now);
    return std::optional<IgnitionState>();
  }

 private:
  // True if an edge arrived (and was consumed) within timeout_ms.
  Result<bool> WaitForEdge(int64_t timeout_ms) {
    struct timespec ts = ToTimespec(timeout_ms);
    int rv = gpiod_line_event_wait(line_, &ts);
    if (rv < 0) {
      return Status::IOError("ignition on " + name_ +
                             ": waiting for an edge failed: " + std::strerror(errno));
    }
    if (rv == 0) return false;
    struct gpiod_line_event event = {};
    if (gpiod_line_event_read(line_, &event) < 0) {
      return Status::IOError("ignition on " + name_ +
                             ": reading an edge failed: " + std::strerror(errno));
    }
    return true;
  }

  gpiod_chip* chip_;
  gpiod_line* line_;
  std::string name_;
};

}  // namespace

Result<std::unique_ptr<IgnitionInput>> OpenGpioIgnition(const std::string& chip, uint32_t line,
                                                        bool active_low) {
  std::string name = chip + " line " + std::to_string(line);
  gpiod_chip* c = gpiod_chip_open_lookup(chip.c_str());
  if (c == nullptr) {
    return Status::Unavailable("ignition on " + name + ": cannot open GPIO chip " + chip + ": " +
                               std::strerror(errno));
  }
  gpiod_line* l = gpiod_chip_get_line(c, line);
  if (l == nullptr) {
    int err = errno;
    unsigned lines = gpiod_chip_num_lines(c);
    gpiod_chip_close(c);
    return Status::InvalidArgument("ignition on " + name + ": no such line (chip has " +
                                   std::to_string(lines) + " lines): " + std::strerror(err));
  }
  int flags = active_low ? GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW : 0;
  if (gpiod_line_request_both_edges_events_flags(l, "waybilld", flags) < 0) {
    int err = errno;
    gpiod_chip_close(c);
    return Status::Unavailable("ignition on " + name + ": cannot request the line" +
                               (err == EBUSY ? " (another program holds it)" : std::string()) +
                               ": " + std::strerror(err));
  }
  return std::unique_ptr<IgnitionInput>(std::make_unique<GpioIgnition>(c, l, std::move(name)));
}

}  // namespace waybill::hal
