#include "waybill/bridge/json_body.h"

#include <ctime>
#include <nlohmann/json.hpp>

#include "waybill/sync/events.h"

namespace waybill::bridge {

namespace {

using nlohmann::json;

constexpr double kE7 = 1e-7;

std::string Hex(const std::array<uint8_t, 32>& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

json Position(const hal::GnssFix& f) {
  json p = {{"lat", f.lat_e7 * kE7}, {"lon", f.lon_e7 * kE7}, {"mode", static_cast<int>(f.mode)}};
  if (f.alt_cm) p["alt_m"] = *f.alt_cm / 100.0;
  if (f.speed_cmps) p["speed_kmh"] = *f.speed_cmps * 0.036;
  if (f.course_cdeg) p["course_deg"] = *f.course_cdeg / 100.0;
  if (f.hdop_c) p["hdop"] = *f.hdop_c / 100.0;
  if (f.sats) p["sats"] = *f.sats;
  if (f.quality != 0) p["quality"] = f.quality;
  return p;
}

json Delivery(const sync::DeliveryEvent& d) {
  json j = {{"stop_id", d.stop_id}, {"order_id", d.order_id}, {"kind", sync::ToString(d.kind)}};
  if (d.reason != sync::FailReason::kNone) j["reason"] = sync::ToString(d.reason);
  if (!d.note.empty()) j["note"] = d.note;
  if (d.lat_e7 && d.lon_e7) {
    j["lat"] = *d.lat_e7 * kE7;
    j["lon"] = *d.lon_e7 * kE7;
  }
  if (d.items) j["items"] = *d.items;
  return j;
}

json Proof(const sync::ProofOfDelivery& p) {
  json strokes = json::array();
  for (const sync::SignatureStroke& stroke : p.signature) {
    json points = json::array();
    for (const sync::SignaturePoint& pt : stroke) points.push_back({pt.x, pt.y});
    strokes.push_back(std::move(points));
  }
  json j = {{"stop_id", p.stop_id},
            {"order_id", p.order_id},
            {"recipient_name", p.recipient_name},
            {"signature",
             {{"width", p.signature_width}, {"height", p.signature_height}, {"strokes", strokes}}}};
  if (p.photo_sha256) {
    j["photo"] = {
        {"sha256", Hex(*p.photo_sha256)}, {"bytes", p.photo_bytes}, {"mime", p.photo_mime}};
  }
  return j;
}

json Health(const sync::Health& h) {
  return {{"uptime_s", h.uptime_s},         {"outbox_events", h.outbox_events},
          {"outbox_bytes", h.outbox_bytes}, {"free_bytes", h.free_bytes},
          {"gnss_mode", h.gnss_mode},       {"nmea_rejected", h.nmea_rejected},
          {"ignition_on", h.ignition_on},   {"storage_read_only", h.storage_read_only}};
}

json Event(const InboxEvent& e) {
  json j = {{"id", e.device + ":" + std::to_string(e.event.seq)},
            {"device", e.device},
            {"seq", e.event.seq},
            {"class", sync::ToString(e.event.cls)},
            {"time", Iso8601Ms(e.event.ts_ms)},
            {"time_ms", e.event.ts_ms},
            {"time_source", hal::ToString(e.event.ts_src)},
            {"historical", e.historical},
            {"received_at", Iso8601Ms(e.received_ms)}};
  auto fail = [&](const Status& s) { j["error"] = s.message(); };
  switch (e.event.cls) {
    case sync::EventClass::kFix: {
      auto f = sync::DecodeFix(e.event.body);
      f.ok() ? void(j["position"] = Position(*f)) : fail(f.status());
      break;
    }
    case sync::EventClass::kDelivery: {
      auto d = sync::DecodeDelivery(e.event.body);
      d.ok() ? void(j["delivery"] = Delivery(*d)) : fail(d.status());
      break;
    }
    case sync::EventClass::kProofOfDelivery: {
      auto p = sync::DecodeProof(e.event.body);
      p.ok() ? void(j["proof"] = Proof(*p)) : fail(p.status());
      break;
    }
    case sync::EventClass::kHealth: {
      auto h = sync::DecodeHealth(e.event.body);
      h.ok() ? void(j["health"] = Health(*h)) : fail(h.status());
      break;
    }
  }
  return j;
}

}  // namespace

std::string Iso8601Ms(int64_t unix_ms) {
  int64_t secs = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
  int ms = static_cast<int>(unix_ms - secs * 1000);
  time_t t = static_cast<time_t>(secs);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

std::string RequestBody(const ForwardBatch& batch) {
  json events = json::array();
  for (const InboxEvent& e : batch.events) events.push_back(Event(e));
  json body = {{"route", ToString(batch.route)},
               {"batch", batch.idempotency_key},
               {"events", std::move(events)}};
  // Text fields come from trucks: invalid UTF-8 is replaced, never a reason to fail.
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace waybill::bridge
