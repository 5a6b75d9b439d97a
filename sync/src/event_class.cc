#include "waybill/sync/outbox.h"

namespace waybill::sync {

bool IsProtected(EventClass cls) {
  return cls == EventClass::kDelivery || cls == EventClass::kProofOfDelivery;
}

const char* ToString(EventClass cls) {
  switch (cls) {
    case EventClass::kFix: return "fix";
    case EventClass::kHealth: return "health";
    case EventClass::kDelivery: return "delivery";
    case EventClass::kProofOfDelivery: return "pod";
  }
  return "unknown";
}

}  // namespace waybill::sync
