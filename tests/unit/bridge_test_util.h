// Helpers shared by the bridge's tests: events and batches as a truck would send them.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "waybill/sync/events.h"
#include "waybill/sync/wire.h"

namespace waybill::testing {

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline sync::StoredEvent FixAt(uint64_t seq, int64_t ts_ms, int32_t lat_e7 = 481'371'000) {
  hal::GnssFix fix;
  fix.lat_e7 = lat_e7 + static_cast<int32_t>(seq) * 10;
  fix.lon_e7 = 115'754'000 + static_cast<int32_t>(seq) * 7;
  fix.speed_cmps = 1200;
  fix.course_cdeg = 9000;
  fix.sats = 9;
  fix.hdop_c = 90;
  fix.mode = hal::FixMode::k3D;
  fix.quality = 1;
  return sync::StoredEvent{seq, sync::EventClass::kFix, ts_ms, hal::TimeSource::kGnss,
                           sync::EncodeFix(fix)};
}

inline sync::StoredEvent DeliveryAt(uint64_t seq, int64_t ts_ms, std::string stop = "stop-1") {
  sync::DeliveryEvent d;
  d.stop_id = std::move(stop);
  d.order_id = "order-" + std::to_string(seq);
  d.kind = sync::DeliveryKind::kDelivered;
  d.items = 3;
  return sync::StoredEvent{seq, sync::EventClass::kDelivery, ts_ms, hal::TimeSource::kGnss,
                           sync::EncodeDelivery(d).value()};
}

inline sync::StoredEvent ProofAt(uint64_t seq, int64_t ts_ms) {
  sync::ProofOfDelivery p;
  p.stop_id = "stop-1";
  p.order_id = "order-1";
  p.recipient_name = "A. Recipient";
  p.signature_width = 300;
  p.signature_height = 100;
  p.signature = {{{10, 10}, {20, 30}, {40, 35}}};
  return sync::StoredEvent{seq, sync::EventClass::kProofOfDelivery, ts_ms, hal::TimeSource::kGnss,
                           sync::EncodeProof(p).value()};
}

inline std::string BatchOf(const std::string& device, const std::vector<sync::StoredEvent>& events,
                           bool historical = false) {
  return sync::EncodeBatch(device, historical, events).value();
}

}  // namespace waybill::testing
