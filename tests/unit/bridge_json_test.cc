#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "unit/bridge_test_util.h"
#include "waybill/bridge/json_body.h"

namespace waybill::bridge {
namespace {

using nlohmann::json;

InboxEvent Stored(const std::string& device, sync::StoredEvent event) {
  return InboxEvent{1, device, std::move(event), true, 1'795'500'000'123};
}

TEST(BridgeJsonBody, HoldsEveryFieldExactly) {
  ForwardBatch batch;
  batch.route = Route::kPositions;
  batch.idempotency_key = "wb1-positions-abc";
  hal::GnssFix fix;
  fix.lat_e7 = -337'654'321;  // exactly -33.7654321
  fix.lon_e7 = 1'511'234'560;
  fix.alt_cm = -1250;
  fix.speed_cmps = 1389;  // 50.004 km/h
  fix.course_cdeg = 35'999;
  fix.hdop_c = 90;
  fix.sats = 11;
  fix.mode = hal::FixMode::k3D;
  batch.events.push_back(Stored("truck-7", {42, sync::EventClass::kFix, 1'795'500'000'000,
                                            hal::TimeSource::kGnss, sync::EncodeFix(fix)}));
  json body = json::parse(RequestBody(batch));
  EXPECT_EQ(body["route"], "positions");
  EXPECT_EQ(body["batch"], "wb1-positions-abc");
  ASSERT_EQ(body["events"].size(), 1u);
  const json& e = body["events"][0];
  EXPECT_EQ(e["id"], "truck-7:42");
  EXPECT_EQ(e["seq"], 42);
  EXPECT_EQ(e["time"], "2026-11-24T06:00:00.000Z");
  EXPECT_EQ(e["time_source"], "gnss");
  EXPECT_EQ(e["historical"], true);
  EXPECT_EQ(e["received_at"], "2026-11-24T06:00:00.123Z");
  const json& p = e["position"];
  EXPECT_DOUBLE_EQ(p["lat"].get<double>(), -33.7654321);
  EXPECT_DOUBLE_EQ(p["lon"].get<double>(), 151.123456);
  EXPECT_DOUBLE_EQ(p["alt_m"].get<double>(), -12.5);
  EXPECT_DOUBLE_EQ(p["speed_kmh"].get<double>(), 50.004);
  EXPECT_DOUBLE_EQ(p["course_deg"].get<double>(), 359.99);
  EXPECT_DOUBLE_EQ(p["hdop"].get<double>(), 0.9);
  EXPECT_EQ(p["sats"], 11);
  EXPECT_EQ(p["mode"], 3);
}

TEST(BridgeJsonBody, TextFromTrucksIsEscapedAndBrokenUtf8Replaced) {
  sync::DeliveryEvent d;
  d.stop_id = "s-1";
  d.order_id = "ORD-\"1\"";
  d.kind = sync::DeliveryKind::kFailed;
  d.reason = sync::FailReason::kRecipientAbsent;
  d.note = std::string("back\\door\n\x01 München \xff\xc3 end", 27);
  ForwardBatch batch;
  batch.route = Route::kDeliveries;
  batch.idempotency_key = "k";
  batch.events.push_back(
      Stored("truck-7", {9, sync::EventClass::kDelivery, 1'795'500'000'000, hal::TimeSource::kNtp,
                         sync::EncodeDelivery(d).value()}));
  batch.events.push_back(Stored("truck-7", testing::ProofAt(10, 1'795'500'000'000)));
  std::string text = RequestBody(batch);
  json body = json::parse(text);  // throws on invalid JSON or UTF-8
  const json& delivery = body["events"][0]["delivery"];
  EXPECT_EQ(delivery["order_id"], "ORD-\"1\"");
  EXPECT_EQ(delivery["kind"], "failed");
  EXPECT_EQ(delivery["reason"], "recipient_absent");
  EXPECT_EQ(delivery["note"], "back\\door\n\x01 München \xef\xbf\xbd\xef\xbf\xbd end");
  const json& proof = body["events"][1]["proof"];
  EXPECT_EQ(proof["recipient_name"], "A. Recipient");
  EXPECT_EQ(proof["signature"]["strokes"][0][1], json::array({20, 30}));
}

}  // namespace
}  // namespace waybill::bridge
