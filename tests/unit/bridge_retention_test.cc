// What the bridge keeps of personal data, and for how long: a forwarded event's body leaves no
// readable bytes in inbox.db; dead letters (refused input with its raw bytes) go after
// dead_letter_retention_h when it is set, and the dead events of a dropped letter go after the
// dedup window.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "unit/bridge_test_util.h"
#include "unit/outbox_test_util.h"
#include "waybill/bridge/config.h"
#include "waybill/bridge/inbox.h"

namespace waybill::bridge {
namespace {

using testing::BatchOf;
using testing::NowMs;
using testing::TempDir;

constexpr const char* kName = "Zdenka Quist-Marlowe";

using testing::ReadAll;

sync::StoredEvent NamedDelivery(uint64_t seq, int64_t ts_ms) {
  sync::DeliveryEvent d;
  d.order_id = "order-" + std::to_string(seq);
  d.kind = sync::DeliveryKind::kDelivered;
  d.note = std::string("handed to ") + kName;
  auto body = sync::EncodeDelivery(d);
  EXPECT_TRUE(body.ok());
  return sync::StoredEvent{seq, sync::EventClass::kDelivery, ts_ms, hal::TimeSource::kGnss,
                           body.ok() ? *body : std::string()};
}

class BridgeRetentionTest : public ::testing::Test {
 protected:
  std::unique_ptr<Inbox> Open() {
    InboxOptions o;
    o.path = dir_.File("inbox.db");
    o.lanes = {1, 1, 1, 1};
    auto inbox = Inbox::Open(o);
    EXPECT_TRUE(inbox.ok()) << inbox.status().ToString();
    return inbox.ok() ? std::move(*inbox) : nullptr;
  }
  void Store(Inbox& inbox, const std::string& device, std::vector<sync::StoredEvent> events) {
    std::vector<IngestItem> items = {
        Ingest("fleet/" + device + "/up", BatchOf(device, events), NowMs(), {})};
    std::vector<StoreOutcome> out;
    ASSERT_TRUE(inbox.Store(items, &out).ok());
  }
  TempDir dir_;
};

TEST_F(BridgeRetentionTest, AForwardedBodyLeavesNoReadableBytesInTheInbox) {
  auto inbox = Open();
  ASSERT_TRUE(inbox);
  int64_t now = NowMs();
  Store(*inbox, "truck-1", {NamedDelivery(1, now), NamedDelivery(2, now)});
  auto batch = inbox->NextBatch(Route::kDeliveries, 0, 100, false, now);
  ASSERT_TRUE(batch.ok() && batch->has_value());
  ASSERT_TRUE(inbox->CompleteBatch((*batch)->id).ok());
  inbox.reset();  // closing checkpoints the WAL into the file
  EXPECT_EQ(ReadAll(dir_.File("inbox.db")).find(kName), std::string::npos);
  EXPECT_EQ(ReadAll(dir_.File("inbox.db-wal")).find(kName), std::string::npos);
}

TEST_F(BridgeRetentionTest, DeadLettersGoAfterTheirRetentionAndOrphanedDeadEventsAfterTheWindow) {
  auto inbox = Open();
  ASSERT_TRUE(inbox);
  int64_t now = NowMs();
  // A refused proof (no stop, no order) carrying a name: a dead letter with its raw bytes.
  std::string bad = "\x1a" + std::string(1, static_cast<char>(std::strlen(kName))) + kName;
  Store(
      *inbox, "truck-1",
      {sync::StoredEvent{9, sync::EventClass::kProofOfDelivery, now, hal::TimeSource::kGnss, bad}});
  // A request the backend refused: a dead letter and two dead events.
  Store(*inbox, "truck-1", {NamedDelivery(1, now), NamedDelivery(2, now)});
  auto batch = inbox->NextBatch(Route::kDeliveries, 0, 100, false, now);
  ASSERT_TRUE(batch.ok() && batch->has_value());
  ASSERT_TRUE(inbox->DeadLetterBatch(**batch, 422, "http_422", "refused", "{}", "{}", now).ok());
  ASSERT_EQ(inbox->ListDeadLetters(10, 0)->size(), 2u);
  ASSERT_EQ(inbox->Counts()->dead_events, 2);

  // No retention set: the letters wait for an operator, and so do the events of one.
  auto kept = inbox->PruneDeadLetters(0, now + 1000, 100);
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_EQ(*kept, 0);
  EXPECT_EQ(inbox->ListDeadLetters(10, 0)->size(), 2u);
  EXPECT_EQ(inbox->Counts()->dead_events, 2);

  // Retention over: both letters go, then the events whose letter is gone.
  auto pruned = inbox->PruneDeadLetters(now + 1000, now + 1000, 100);
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_EQ(*pruned, 4);
  EXPECT_TRUE(inbox->ListDeadLetters(10, 0)->empty());
  EXPECT_EQ(inbox->Counts()->dead_events, 0);
}

TEST_F(BridgeRetentionTest, TheEventsOfADroppedLetterGoAfterTheDedupWindow) {
  auto inbox = Open();
  ASSERT_TRUE(inbox);
  int64_t now = NowMs();
  Store(*inbox, "truck-1", {NamedDelivery(1, now)});
  auto batch = inbox->NextBatch(Route::kDeliveries, 0, 100, false, now);
  ASSERT_TRUE(batch.ok() && batch->has_value());
  ASSERT_TRUE(inbox->DeadLetterBatch(**batch, 422, "http_422", "refused", "{}", "{}", now).ok());
  auto letters = inbox->ListDeadLetters(10, 0);
  ASSERT_TRUE(letters.ok() && letters->size() == 1u);
  ASSERT_TRUE(inbox->DropDeadLetter((*letters)[0].id).ok());
  EXPECT_EQ(*inbox->PruneDeadLetters(0, now - 1000, 100), 0) << "still inside the window";
  EXPECT_EQ(*inbox->PruneDeadLetters(0, now + 1000, 100), 1);
  EXPECT_EQ(inbox->Counts()->dead_events, 0);
}

TEST(BridgeRetentionConfig, DeadLetterRetentionIsReadAndChecked) {
  std::string routes;
  for (const char* r : {"positions", "deliveries", "proofs", "health"}) {
    routes += std::string("[routes.") + r + "]\nurl = \"http://127.0.0.1:9/v1/{route}\"\n";
  }
  auto cfg = ParseBridgeConfig("[bridge]\ndead_letter_retention_h = 720\n" + routes, "bridge.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->dead_letter_retention_h, 720);
  auto defaults = ParseBridgeConfig(routes, "bridge.toml");
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->dead_letter_retention_h, 0) << "kept until an operator drops them";
  auto bad = ParseBridgeConfig("[bridge]\ndead_letter_retention_h = -1\n" + routes, "bridge.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("dead_letter_retention_h"), std::string::npos);
}

}  // namespace
}  // namespace waybill::bridge
