#include "waybill/hal/sleeper.h"

#include <chrono>
#include <thread>

namespace waybill::hal {

namespace {

class SystemSleeper final : public Sleeper {
 public:
  void SleepFor(int64_t duration_ms) override {
    if (duration_ms <= 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(duration_ms));
  }
};

}  // namespace

Sleeper& Sleeper::System() {
  static SystemSleeper sleeper;
  return sleeper;
}

}  // namespace waybill::hal
