#include "waybill/sync/data_key.h"
#include "waybill/sync/outbox.h"

namespace waybill::sync {

bool IsProtected(EventClass cls) {
  return cls == EventClass::kDelivery || cls == EventClass::kProofOfDelivery;
}

const char* ToString(EventClass cls) {
  switch (cls) {
    case EventClass::kFix:
      return "fix";
    case EventClass::kHealth:
      return "health";
    case EventClass::kDelivery:
      return "delivery";
    case EventClass::kProofOfDelivery:
      return "pod";
  }
  return "unknown";
}

bool IsSealedClass(EventClass cls) {
  return cls == EventClass::kDelivery || cls == EventClass::kProofOfDelivery;
}

std::string SealedBodyAad(EventClass cls) { return std::string("waybill outbox:") + ToString(cls); }

Result<std::string> OpenStoredBody(const DataKey* key, EventClass cls, std::string_view body) {
  if (!IsSealed(body)) return std::string(body);
  if (key == nullptr) {
    return Status::FailedPrecondition("the body is sealed (data key " + SealedKeyIdHex(body) +
                                      ") and no data key was given to open it");
  }
  return key->Open(body, SealedBodyAad(cls));
}

}  // namespace waybill::sync
