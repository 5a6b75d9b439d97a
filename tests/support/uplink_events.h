// Test support: events for the uplink tests, as the daemon would append them.
#pragma once

#include <cstdint>
#include <string>

#include "waybill/hal/gnss_fix.h"
#include "waybill/sync/events.h"
#include "waybill/sync/outbox.h"

namespace waybill::testing {

// The i-th breadcrumb of a drive near Munich, one second apart, GNSS time.
inline sync::NewEvent MakeFixEvent(int64_t i) {
  hal::GnssFix fix;
  fix.lat_e7 = 481371000 + static_cast<int32_t>(i * 37);
  fix.lon_e7 = 115754000 + static_cast<int32_t>(i * 53);
  fix.alt_cm = 52000;
  fix.speed_cmps = 1388;
  fix.course_cdeg = 9000;
  fix.hdop_c = 90;
  fix.sats = 9;
  fix.mode = hal::FixMode::k3D;
  fix.quality = 1;
  sync::NewEvent e;
  e.cls = sync::EventClass::kFix;
  e.ts_ms = 1'717'000'000'000 + i * 1000;
  e.ts_src = hal::TimeSource::kGnss;
  e.body = sync::EncodeFix(fix);
  return e;
}

// The i-th delivery of the day.
inline sync::NewEvent MakeDeliveryEvent(int64_t i) {
  sync::DeliveryEvent d;
  d.stop_id = "stop-" + std::to_string(i);
  d.order_id = "order-" + std::to_string(1000 + i);
  d.kind = sync::DeliveryKind::kDelivered;
  d.items = 1;
  sync::NewEvent e;
  e.cls = sync::EventClass::kDelivery;
  e.ts_ms = 1'717'000'000'000 + i * 1000;
  e.ts_src = hal::TimeSource::kGnss;
  e.body = sync::EncodeDelivery(d).value();
  return e;
}

}  // namespace waybill::testing
