#include <gtest/gtest.h>

#include <set>

#include "unit/bridge_test_util.h"
#include "unit/outbox_test_util.h"
#include "waybill/bridge/inbox.h"

namespace waybill::bridge {
namespace {

using testing::BatchOf;
using testing::DeliveryAt;
using testing::FixAt;
using testing::NowMs;
using testing::TempDir;

class InboxTest : public ::testing::Test {
 protected:
  std::unique_ptr<Inbox> Open(std::array<int, kRouteCount> lanes = {1, 1, 1, 1}) {
    InboxOptions o;
    o.path = dir_.File("inbox.db");
    o.lanes = lanes;
    auto inbox = Inbox::Open(o);
    EXPECT_TRUE(inbox.ok()) << inbox.status().ToString();
    return inbox.ok() ? std::move(*inbox) : nullptr;
  }

  IngestItem Item(const std::string& device, std::vector<sync::StoredEvent> events) {
    return Ingest("fleet/" + device + "/up", BatchOf(device, events), NowMs(), {});
  }

  std::vector<StoreOutcome> Store(Inbox& inbox, std::vector<IngestItem> items) {
    std::vector<StoreOutcome> out;
    Status s = inbox.Store(items, &out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  TempDir dir_;
};

TEST_F(InboxTest, AResendInsertsNothingButIsAcknowledgedAgain) {
  auto inbox = Open();
  int64_t now = NowMs();
  auto first = Store(*inbox, {Item("truck-1", {FixAt(1, now), FixAt(2, now)})});
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].inserted, 2u);
  auto again = Store(*inbox, {Item("truck-1", {FixAt(2, now), FixAt(3, now)})});
  EXPECT_EQ(again[0].inserted, 1u);
  EXPECT_EQ(again[0].duplicates, 1u);
  EXPECT_EQ(again[0].ack_seqs, (std::vector<uint64_t>{2, 3}));
  // Another device's seq 1 is another event.
  auto other = Store(*inbox, {Item("truck-2", {FixAt(1, now)})});
  EXPECT_EQ(other[0].inserted, 1u);
  auto counts = inbox->Counts();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->pending[static_cast<int>(Route::kPositions)], 4);
}

TEST_F(InboxTest, RefusedMessagesAreDeadLetteredOnceAndCounted) {
  auto inbox = Open();
  int64_t now = NowMs();
  IngestItem forged = Ingest("fleet/truck-1/up", BatchOf("truck-9", {FixAt(1, now)}), now, {});
  IngestItem late = Item("truck-1", {FixAt(5, now), FixAt(6, now + 10LL * 86'400'000)});
  auto out = Store(*inbox, {forged, late});
  EXPECT_TRUE(out[0].ack_seqs.empty()) << "a forged message is never acknowledged";
  EXPECT_EQ(out[1].inserted, 1u);
  EXPECT_EQ(out[1].rejected, 1u);
  EXPECT_EQ(out[1].ack_seqs, (std::vector<uint64_t>{5, 6})) << "refused events are held: acked";
  Store(*inbox, {forged});  // the same bytes again
  auto letters = inbox->ListDeadLetters(10, 0);
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 2u);
  const DeadLetter& event = (*letters)[0];  // newest first
  EXPECT_EQ(event.kind, DeadLetterKind::kEvent);
  EXPECT_EQ(event.reason, "time");
  ASSERT_TRUE(event.seq);
  EXPECT_EQ(*event.seq, 6u);
  ASSERT_TRUE(event.event);
  EXPECT_EQ(event.event->cls, sync::EventClass::kFix);
  const DeadLetter& message = (*letters)[1];
  EXPECT_EQ(message.kind, DeadLetterKind::kMessage);
  EXPECT_EQ(message.reason, "identity");
  EXPECT_EQ(message.times_seen, 2);
  EXPECT_EQ(message.payload, forged.payload);
}

TEST_F(InboxTest, ABatchAndItsKeySurviveAReopen) {
  int64_t now = NowMs();
  std::string key;
  {
    auto inbox = Open();
    Store(*inbox, {Item("truck-1", {FixAt(1, now), FixAt(2, now), FixAt(3, now)})});
    auto batch = inbox->NextBatch(Route::kPositions, 0, 2, false, now);
    ASSERT_TRUE(batch.ok() && batch->has_value());
    ASSERT_EQ((*batch)->events.size(), 2u);
    key = (*batch)->idempotency_key;
    EXPECT_EQ(key.rfind("wb1-positions-", 0), 0u) << key;
    // Asking again before it is done gives the same batch: it is still open.
    auto same = inbox->NextBatch(Route::kPositions, 0, 2, false, now);
    ASSERT_TRUE(same.ok() && same->has_value());
    EXPECT_EQ((*same)->id, (*batch)->id);
  }
  auto inbox = Open();  // a crash before the backend answered
  auto batch = inbox->NextBatch(Route::kPositions, 0, 100, false, now);
  ASSERT_TRUE(batch.ok() && batch->has_value());
  EXPECT_EQ((*batch)->idempotency_key, key) << "the same events go out under the same key";
  ASSERT_EQ((*batch)->events.size(), 2u);
  EXPECT_EQ((*batch)->events[0].event.seq, 1u);
  ASSERT_TRUE(inbox->CompleteBatch((*batch)->id).ok());
  auto next = inbox->NextBatch(Route::kPositions, 0, 100, false, now);
  ASSERT_TRUE(next.ok() && next->has_value());
  ASSERT_EQ((*next)->events.size(), 1u);
  EXPECT_EQ((*next)->events[0].event.seq, 3u);
  EXPECT_NE((*next)->idempotency_key, key);
  ASSERT_TRUE(inbox->CompleteBatch((*next)->id).ok());
  auto none = inbox->NextBatch(Route::kPositions, 0, 100, false, now);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  // Forwarded events are still recognised as duplicates.
  auto resend = Store(*inbox, {Item("truck-1", {FixAt(3, now)})});
  EXPECT_EQ(resend[0].duplicates, 1u);
}

TEST_F(InboxTest, RoutesAndLanesSplitTheQueueAndKeepEachDevicesOrder) {
  auto inbox = Open({4, 1, 1, 1});
  int64_t now = NowMs();
  for (int d = 0; d < 20; ++d) {
    std::string device = "truck-" + std::to_string(d);
    Store(*inbox, {Item(device, {FixAt(1, now), FixAt(2, now), DeliveryAt(3, now)})});
  }
  std::set<int> lanes_used;
  size_t fixes = 0;
  for (int lane = 0; lane < 4; ++lane) {
    auto batch = inbox->NextBatch(Route::kPositions, lane, 1000, false, now);
    ASSERT_TRUE(batch.ok());
    if (!batch->has_value()) continue;
    lanes_used.insert(lane);
    std::map<std::string, uint64_t> last;
    for (const InboxEvent& e : (*batch)->events) {
      EXPECT_EQ(LaneOf(e.device, 4), lane);
      EXPECT_EQ(e.event.cls, sync::EventClass::kFix);
      EXPECT_GT(e.event.seq, last[e.device]) << e.device << " out of order";
      last[e.device] = e.event.seq;
    }
    fixes += (*batch)->events.size();
  }
  EXPECT_EQ(fixes, 40u);
  EXPECT_GE(lanes_used.size(), 2u) << "20 devices spread over the lanes";
  auto deliveries = inbox->NextBatch(Route::kDeliveries, 0, 1000, false, now);
  ASSERT_TRUE(deliveries.ok() && deliveries->has_value());
  EXPECT_EQ((*deliveries)->events.size(), 20u);
}

TEST_F(InboxTest, PerDeviceBatchesHoldOneDevice) {
  auto inbox = Open();
  int64_t now = NowMs();
  Store(*inbox, {Item("truck-1", {FixAt(1, now)}), Item("truck-2", {FixAt(1, now)}),
                 Item("truck-1", {FixAt(2, now)})});
  auto batch = inbox->NextBatch(Route::kPositions, 0, 100, true, now);
  ASSERT_TRUE(batch.ok() && batch->has_value());
  ASSERT_EQ((*batch)->events.size(), 2u);
  EXPECT_EQ((*batch)->events[0].device, "truck-1");
  EXPECT_EQ((*batch)->events[1].device, "truck-1");
}

TEST_F(InboxTest, ARefusedRequestWaitsAsADeadLetterUntilReplayed) {
  auto inbox = Open();
  int64_t now = NowMs();
  Store(*inbox, {Item("truck-1", {DeliveryAt(1, now), DeliveryAt(2, now)})});
  auto batch = inbox->NextBatch(Route::kDeliveries, 0, 100, false, now);
  ASSERT_TRUE(batch.ok() && batch->has_value());
  ASSERT_TRUE(inbox
                  ->DeadLetterBatch(**batch, 422, "http_422", "refused", "{\"events\":[]}",
                                    "{\"error\":\"unknown order\"}", now)
                  .ok());
  auto counts = inbox->Counts();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->pending[static_cast<int>(Route::kDeliveries)], 0);
  EXPECT_EQ(counts->dead_events, 2);
  auto letters = inbox->ListDeadLetters(10, 0);
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ((*letters)[0].http_status, 422);
  EXPECT_EQ((*letters)[0].response, "{\"error\":\"unknown order\"}");
  auto none = inbox->NextBatch(Route::kDeliveries, 0, 100, false, now);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  auto moved = inbox->RequeueForwardDeadLetter((*letters)[0].id);
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(*moved, 2);
  auto again = inbox->NextBatch(Route::kDeliveries, 0, 100, false, now);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->events.size(), 2u);
  auto after = inbox->ListDeadLetters(10, 0);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
}

TEST_F(InboxTest, ReplayingAnEventDeadLetterStoresItOnlyWhenItNowPasses) {
  auto inbox = Open();
  int64_t now = NowMs();
  IngestItem item = Item("truck-1", {FixAt(7, now + 5LL * 86'400'000)});
  ASSERT_EQ(item.rejected.size(), 1u);
  Store(*inbox, {item});
  auto letters = inbox->ListDeadLetters(10, 0);
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  const DeadLetter& letter = (*letters)[0];
  ASSERT_TRUE(letter.event);

  IngestItem still;
  still.device = letter.device;
  still.received_ms = now;
  auto verdict = JudgeEvent(*letter.event, now, {}, letter.device);
  ASSERT_TRUE(verdict);
  still.rejected.push_back(*verdict);
  auto refused = inbox->ReplaceDeadLetter(letter.id, still);
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("time"), std::string::npos);

  IngestItem now_ok = still;
  now_ok.rejected.clear();
  now_ok.accepted.push_back(*letter.event);  // e.g. after raising max_future_ms
  auto stored = inbox->ReplaceDeadLetter(letter.id, now_ok);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->inserted, 1u);
  auto after = inbox->ListDeadLetters(10, 0);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
}

TEST_F(InboxTest, CommandsKeepTheirFinalState) {
  auto inbox = Open();
  Command c{"cmd-1", "truck-1", "manifest", 1000, 1000, "queued", "", "", "payload"};
  ASSERT_TRUE(inbox->PutCommand(c).ok());
  EXPECT_FALSE(inbox->PutCommand(c).ok()) << "an id is used once";
  auto queued = inbox->QueuedCommands();
  ASSERT_TRUE(queued.ok());
  ASSERT_EQ(queued->size(), 1u);
  ASSERT_TRUE(inbox->SetCommandState("cmd-1", "ok", "stored 3 stops", "", 2000).ok());
  // The broker's PUBACK may come after the device's result: it must not undo it.
  ASSERT_TRUE(inbox->SetCommandState("cmd-1", "sent", "", "", 2001).ok());
  auto got = inbox->GetCommand("cmd-1");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->state, "ok");
  EXPECT_EQ((*got)->message, "stored 3 stops");
}

TEST_F(InboxTest, ADamagedFileIsRefusedWithAdvice) {
  {
    auto inbox = Open();
    Store(*inbox, {Item("truck-1", {FixAt(1, NowMs())})});
  }
  {
    FILE* f = std::fopen(dir_.File("inbox.db").c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, 0, SEEK_SET);
    std::fwrite("garbage garbage garbage garbage garbage", 1, 40, f);
    std::fclose(f);
  }
  InboxOptions o;
  o.path = dir_.File("inbox.db");
  auto inbox = Inbox::Open(o);
  ASSERT_FALSE(inbox.ok());
  EXPECT_NE(inbox.status().message().find("inbox.db"), std::string::npos)
      << inbox.status().ToString();
}

}  // namespace
}  // namespace waybill::bridge
