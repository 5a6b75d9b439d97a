#include "waybill/hal/ignition.h"

namespace waybill::hal {

std::string_view ToString(IgnitionState state) {
  switch (state) {
    case IgnitionState::kUnknown:
      return "unknown";
    case IgnitionState::kOff:
      return "off";
    case IgnitionState::kOn:
      return "on";
  }
  return "unknown";
}

}  // namespace waybill::hal
