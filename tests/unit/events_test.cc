#include "waybill/sync/events.h"

#include <gtest/gtest.h>

namespace waybill::sync {
namespace {

hal::GnssFix MunichFix() {
  hal::GnssFix fix;
  fix.lat_e7 = 481366123;
  fix.lon_e7 = 115754980;
  fix.alt_cm = 52010;
  fix.speed_cmps = 1389;
  fix.course_cdeg = 21260;
  fix.hdop_c = 90;
  fix.sats = 9;
  fix.mode = hal::FixMode::k3D;
  fix.quality = 1;
  return fix;
}

TEST(FixCodec, RoundTripsEveryField) {
  hal::GnssFix fix = MunichFix();
  std::string body = EncodeFix(fix);
  Result<hal::GnssFix> back = DecodeFix(body);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->lat_e7, fix.lat_e7);
  EXPECT_EQ(back->lon_e7, fix.lon_e7);
  EXPECT_EQ(back->alt_cm, fix.alt_cm);
  EXPECT_EQ(back->speed_cmps, fix.speed_cmps);
  EXPECT_EQ(back->course_cdeg, fix.course_cdeg);
  EXPECT_EQ(back->hdop_c, fix.hdop_c);
  EXPECT_EQ(back->sats, fix.sats);
  EXPECT_EQ(back->mode, hal::FixMode::k3D);
  EXPECT_EQ(back->quality, 1);
}

TEST(FixCodec, BodyIsSmallEnoughForDaysOfStorage) {
  // The outbox stores this body per breadcrumb: it sets how many days fit on the disk.
  EXPECT_LE(EncodeFix(MunichFix()).size(), 32u);
}

TEST(FixCodec, RejectsTruncatedAndForeignBytes) {
  std::string body = EncodeFix(MunichFix());
  for (size_t n = 1; n < body.size(); ++n) {
    Result<hal::GnssFix> r = DecodeFix(std::string_view(body).substr(0, n));
    if (r.ok()) {
      // A prefix that ends on a field boundary decodes; it must still hold a position.
      EXPECT_NE(r->lat_e7, 0);
    }
  }
  EXPECT_FALSE(DecodeFix(std::string("\xff\xff\xff", 3)).ok());
  EXPECT_FALSE(DecodeFix("").ok());
}

TEST(DeliveryCodec, RoundTripsAndNamesTheBadField) {
  DeliveryEvent ev;
  ev.stop_id = "stop-7";
  ev.order_id = "ORD-20261124-0042";
  ev.kind = DeliveryKind::kFailed;
  ev.reason = FailReason::kRecipientAbsent;
  ev.note = "gate closed, called twice";
  ev.lat_e7 = 481000000;
  ev.lon_e7 = 115000000;
  Result<std::string> body = EncodeDelivery(ev);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  Result<DeliveryEvent> back = DecodeDelivery(*body);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->order_id, ev.order_id);
  EXPECT_EQ(back->kind, DeliveryKind::kFailed);
  EXPECT_EQ(back->reason, FailReason::kRecipientAbsent);
  EXPECT_EQ(back->note, ev.note);
  EXPECT_EQ(back->lat_e7, ev.lat_e7);

  ev.reason = FailReason::kNone;
  Result<std::string> missing = EncodeDelivery(ev);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("reason"), std::string::npos);

  ev.reason = FailReason::kRefused;
  ev.order_id = std::string(80, 'x');
  Result<std::string> too_long = EncodeDelivery(ev);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().message(), "order_id: 80 bytes, at most 64");
}

TEST(DeliveryCodec, NamesRoundTrip) {
  for (auto kind : {DeliveryKind::kArrived, DeliveryKind::kDelivered, DeliveryKind::kPartial,
                    DeliveryKind::kFailed, DeliveryKind::kPickedUp}) {
    EXPECT_EQ(ParseDeliveryKind(ToString(kind)), kind);
  }
  EXPECT_EQ(ParseFailReason("address_not_found"), FailReason::kAddressNotFound);
  EXPECT_FALSE(ParseDeliveryKind("teleported").has_value());
}

TEST(ProofCodec, SignatureStrokesSurviveDeltaEncoding) {
  ProofOfDelivery proof;
  proof.order_id = "ORD-1";
  proof.recipient_name = "Jana Nováková";
  proof.signature_width = 760;
  proof.signature_height = 300;
  proof.signature = {{{10, 20}, {12, 25}, {400, 290}}, {{5, 5}}, {{700, 10}, {0, 0}}};
  Result<std::string> body = EncodeProof(proof);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  Result<ProofOfDelivery> back = DecodeProof(*body);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->recipient_name, proof.recipient_name);
  EXPECT_EQ(back->signature, proof.signature);
  EXPECT_EQ(back->signature_width, 760u);
}

TEST(ProofCodec, RequiresRecipientAndEvidence) {
  ProofOfDelivery proof;
  proof.order_id = "ORD-1";
  proof.signature = {{{1, 1}}};
  EXPECT_EQ(EncodeProof(proof).status().message(), "recipient_name: required");
  proof.recipient_name = "A. Driver";
  proof.signature.clear();
  EXPECT_FALSE(EncodeProof(proof).ok());
  proof.signature.assign(kMaxStrokes + 1, SignatureStroke{{1, 1}});
  EXPECT_NE(EncodeProof(proof).status().message().find("strokes"), std::string::npos);
}

TEST(HealthCodec, RoundTrips) {
  Health h;
  h.uptime_s = 3600;
  h.outbox_events = 12345;
  h.free_bytes = 1ull << 33;
  h.ignition_on = true;
  Result<Health> back = DecodeHealth(EncodeHealth(h));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->outbox_events, 12345u);
  EXPECT_EQ(back->free_bytes, 1ull << 33);
  EXPECT_TRUE(back->ignition_on);
}

}  // namespace
}  // namespace waybill::sync
