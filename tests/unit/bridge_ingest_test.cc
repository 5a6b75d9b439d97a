#include <gtest/gtest.h>

#include "unit/bridge_test_util.h"
#include "waybill/bridge/ingest.h"

namespace waybill::bridge {
namespace {

using testing::BatchOf;
using testing::DeliveryAt;
using testing::FixAt;
using testing::NowMs;
using testing::ProofAt;

TEST(BridgeIngest, AcceptsAValidBatchInSeqOrder) {
  int64_t now = NowMs();
  std::string payload = BatchOf(
      "truck-7", {DeliveryAt(12, now - 1000), FixAt(10, now - 3000), FixAt(11, now - 2000)});
  IngestItem item = Ingest("fleet/truck-7/up", payload, now, {});
  ASSERT_FALSE(item.message_reason) << item.message_detail;
  EXPECT_EQ(item.device, "truck-7");
  ASSERT_EQ(item.accepted.size(), 3u);
  EXPECT_EQ(item.accepted[0].seq, 10u);
  EXPECT_EQ(item.accepted[2].cls, sync::EventClass::kDelivery);
  EXPECT_TRUE(item.rejected.empty());
}

TEST(BridgeIngest, RefusesAForgedIdentityWithBothNames) {
  int64_t now = NowMs();
  IngestItem item = Ingest("fleet/truck-7/up", BatchOf("truck-8", {FixAt(1, now)}), now, {});
  ASSERT_TRUE(item.message_reason);
  EXPECT_EQ(*item.message_reason, RejectReason::kIdentity);
  EXPECT_NE(item.message_detail.find("truck-8"), std::string::npos);
  EXPECT_NE(item.message_detail.find("truck-7"), std::string::npos);
  EXPECT_FALSE(item.payload.empty()) << "the raw bytes are kept for the dead letter";
  EXPECT_TRUE(item.accepted.empty());
}

TEST(BridgeIngest, RefusesGarbageOversizeAndForeignTopics) {
  int64_t now = NowMs();
  IngestItem garbage = Ingest("fleet/truck-7/up", "\x0a\xff\xff\xff", now, {});
  ASSERT_TRUE(garbage.message_reason);
  EXPECT_EQ(*garbage.message_reason, RejectReason::kMalformed);
  EXPECT_FALSE(garbage.message_detail.empty());

  IngestItem big = Ingest("fleet/truck-7/up", std::string(sync::kMaxBatchBytes + 1, 'x'), now, {});
  ASSERT_TRUE(big.message_reason);
  EXPECT_EQ(*big.message_reason, RejectReason::kOversized);
  EXPECT_NE(big.message_detail.find(std::to_string(sync::kMaxBatchBytes + 1)), std::string::npos);

  IngestItem topic = Ingest("fleet/truck 7/up", BatchOf("truck-7", {FixAt(1, now)}), now, {});
  ASSERT_TRUE(topic.message_reason);
  EXPECT_EQ(*topic.message_reason, RejectReason::kTopic);
}

TEST(BridgeIngest, RefusesOnlyTheEventWithAnImplausibleTime) {
  int64_t now = NowMs();
  std::string payload = BatchOf("truck-7", {FixAt(1, now - 1000), FixAt(2, now + 3LL * 86'400'000),
                                            FixAt(3, 315'964'800'000 /* 1980 */)});
  IngestItem item = Ingest("fleet/truck-7/up", payload, now, {});
  ASSERT_FALSE(item.message_reason);
  ASSERT_EQ(item.accepted.size(), 1u);
  EXPECT_EQ(item.accepted[0].seq, 1u);
  ASSERT_EQ(item.rejected.size(), 2u);
  EXPECT_EQ(item.rejected[0].reason, RejectReason::kTime);
  EXPECT_NE(item.rejected[0].detail.find("seq 2"), std::string::npos);
  EXPECT_NE(item.rejected[0].detail.find("future"), std::string::npos);
  EXPECT_NE(item.rejected[1].detail.find("before the earliest"), std::string::npos);
}

TEST(BridgeIngest, KeepsUncorrectedMonotonicTimesFlaggedAsSuch) {
  int64_t now = NowMs();
  sync::StoredEvent early = FixAt(5, 12'345);  // seconds after boot, before any GNSS time
  early.ts_src = hal::TimeSource::kMonotonic;
  IngestItem item = Ingest("fleet/truck-7/up", BatchOf("truck-7", {early}), now, {});
  ASSERT_EQ(item.accepted.size(), 1u);
  EXPECT_EQ(item.accepted[0].ts_src, hal::TimeSource::kMonotonic);
}

TEST(BridgeIngest, RefusesAProofWithoutItsRecipient) {
  int64_t now = NowMs();
  sync::StoredEvent proof = ProofAt(9, now);
  // A body that decodes but misses required fields: the stop id only (field 1).
  proof.body = std::string("\x0a\x06stop-1", 8);
  std::optional<RejectedEvent> verdict = JudgeEvent(proof, now, {}, "truck-7");
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->reason, RejectReason::kProofFields);
  EXPECT_NE(verdict->detail.find("seq 9"), std::string::npos);
  EXPECT_FALSE(JudgeEvent(ProofAt(10, now), now, {}, "truck-7")) << "a complete proof passes";
}

TEST(BridgeIngest, RefusesAnUndecodableDeliveryBody) {
  int64_t now = NowMs();
  sync::StoredEvent d = DeliveryAt(4, now);
  d.body = "\xff\xff";
  std::optional<RejectedEvent> verdict = JudgeEvent(d, now, {}, "truck-7");
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->reason, RejectReason::kDeliveryFields);
}

}  // namespace
}  // namespace waybill::bridge
