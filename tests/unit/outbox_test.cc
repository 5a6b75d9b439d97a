// The outbox as its users see it: order and priorities of claims, sequences that never go back,
// eviction and refusal under a quota, recovery from a corrupt file, time correction, concurrency.
#include "waybill/sync/outbox.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "unit/outbox_test_util.h"
#include "waybill/sync/outbox_reader.h"

namespace waybill::sync {
namespace {

using testing::Event;
using testing::FixBody;
using testing::TempDir;

class OutboxTest : public ::testing::Test {
 protected:
  OutboxOptions Options() const {
    OutboxOptions o;
    o.path = dir_.File("outbox.db");
    o.min_free_bytes = 0;  // the test machine's free space must not decide the results
    return o;
  }

  std::unique_ptr<Outbox> OpenOrDie(const OutboxOptions& o) {
    auto r = Outbox::Open(o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  uint64_t AppendOrDie(Outbox& box, const NewEvent& e) {
    auto r = box.Append(e);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : 0;
  }

  static std::vector<StoredEvent> ClaimAll(Outbox& box) {
    auto r = box.Claim(100'000'000, false);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : std::vector<StoredEvent>();
  }

  static std::vector<uint64_t> Seqs(const std::vector<StoredEvent>& events) {
    std::vector<uint64_t> seqs;
    for (const auto& e : events) seqs.push_back(e.seq);
    return seqs;
  }

  TempDir dir_;
};

TEST_F(OutboxTest, ClaimsProtectedThenHealthThenFixesEachInSequenceOrder) {
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  uint64_t f1 = AppendOrDie(*box, Event(EventClass::kFix, "f1"));
  uint64_t h1 = AppendOrDie(*box, Event(EventClass::kHealth, "h1"));
  uint64_t d1 = AppendOrDie(*box, Event(EventClass::kDelivery, "d1"));
  uint64_t f2 = AppendOrDie(*box, Event(EventClass::kFix, "f2"));
  uint64_t p1 = AppendOrDie(*box, Event(EventClass::kProofOfDelivery, "p1"));
  uint64_t h2 = AppendOrDie(*box, Event(EventClass::kHealth, "h2"));
  uint64_t d2 = AppendOrDie(*box, Event(EventClass::kDelivery, "d2"));

  auto first = box->Claim(4, false);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(Seqs(*first), (std::vector<uint64_t>{d1, p1, d2, h1}));
  EXPECT_EQ((*first)[0].body, "d1");
  EXPECT_EQ((*first)[1].cls, EventClass::kProofOfDelivery);

  auto rest = box->Claim(10, false);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(Seqs(*rest), (std::vector<uint64_t>{h2, f1, f2}));
  auto none = box->Claim(10, false);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty()) << "claimed events must not be handed out twice";

  std::vector<uint64_t> release{p1, f1};
  box->Release(release);
  auto again = box->Claim(10, false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(Seqs(*again), (std::vector<uint64_t>{p1, f1}));

  std::vector<uint64_t> ack{d1, h1, f1, 999999};  // an unknown sequence is ignored
  ASSERT_TRUE(box->Ack(ack).ok());
  OutboxStats st = box->Stats();
  EXPECT_EQ(st.events, 4u);
  EXPECT_EQ(st.by_class[static_cast<int>(EventClass::kFix)], 1u);
  EXPECT_EQ(st.by_class[static_cast<int>(EventClass::kDelivery)], 1u);

  // Claims live in memory only: after a restart everything left is claimable again.
  box.reset();
  box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  EXPECT_EQ(Seqs(ClaimAll(*box)), (std::vector<uint64_t>{p1, d2, h2, f2}));
}

TEST_F(OutboxTest, NewestFixFirstPutsTheLatestPositionAtTheFront) {
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  std::vector<uint64_t> fixes;
  for (int i = 0; i < 5; ++i) fixes.push_back(AppendOrDie(*box, Event(EventClass::kFix)));
  uint64_t d = AppendOrDie(*box, Event(EventClass::kDelivery));
  auto batch = box->Claim(3, true);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(Seqs(*batch), (std::vector<uint64_t>{fixes[4], d, fixes[0]}));
  auto next = box->Claim(10, true);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(Seqs(*next), (std::vector<uint64_t>{fixes[3], fixes[1], fixes[2]}));
}

// Claims walk the fixes from where the last walk stopped; anything released behind that point
// must still come back, in sequence order, and nothing may be handed out twice.
TEST_F(OutboxTest, ReleasedFixesComeBackWhereverTheyAreInTheBacklog) {
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  std::vector<uint64_t> f;
  for (int i = 0; i < 10; ++i) f.push_back(AppendOrDie(*box, Event(EventClass::kFix)));
  auto claim = [&](size_t n, bool newest_first = false) {
    auto r = box->Claim(n, newest_first);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? Seqs(*r) : std::vector<uint64_t>();
  };
  EXPECT_EQ(claim(3), (std::vector<uint64_t>{f[0], f[1], f[2]}));
  EXPECT_EQ(claim(3), (std::vector<uint64_t>{f[3], f[4], f[5]}));

  std::vector<uint64_t> release{f[1]};
  box->Release(release);
  EXPECT_EQ(claim(2), (std::vector<uint64_t>{f[1], f[6]}));

  std::vector<uint64_t> ack{f[0], f[2]};
  ASSERT_TRUE(box->Ack(ack).ok());
  EXPECT_EQ(claim(10), (std::vector<uint64_t>{f[7], f[8], f[9]}));
  uint64_t f10 = AppendOrDie(*box, Event(EventClass::kFix));
  EXPECT_EQ(claim(10), (std::vector<uint64_t>{f10}));
  EXPECT_TRUE(claim(10).empty()) << "claimed fixes must not be handed out twice";

  release = {f[8], f[4]};
  box->Release(release);
  EXPECT_EQ(claim(10), (std::vector<uint64_t>{f[4], f[8]}));

  // The newest fix first, then the oldest released one behind everything claimed.
  release = {f[3], f10};
  box->Release(release);
  EXPECT_EQ(claim(10, true), (std::vector<uint64_t>{f10, f[3]}));
  EXPECT_TRUE(claim(10).empty());
}

TEST_F(OutboxTest, StoresTimeSourceAndBodyBytesExactly) {
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  std::string body("\0\x01\xff binary", 10);
  AppendOrDie(*box, Event(EventClass::kHealth, body, 1234, hal::TimeSource::kRtc));
  AppendOrDie(*box, Event(EventClass::kFix, "", -5, hal::TimeSource::kMonotonic));
  auto all = ClaimAll(*box);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].body, body);
  EXPECT_EQ(all[0].ts_ms, 1234);
  EXPECT_EQ(all[0].ts_src, hal::TimeSource::kRtc);
  EXPECT_EQ(all[1].body, "");
  EXPECT_EQ(all[1].ts_ms, -5);
  EXPECT_EQ(all[1].ts_src, hal::TimeSource::kMonotonic);
}

TEST_F(OutboxTest, RejectsMalformedEventsWithAClearError) {
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  NewEvent bad = Event(EventClass::kFix);
  bad.cls = static_cast<EventClass>(9);
  auto r = box->Append(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  EXPECT_NE(r.status().message().find("class 9"), std::string::npos) << r.status().message();

  auto big = box->Append(Event(EventClass::kDelivery, std::string(2 << 20, 'x')));
  ASSERT_FALSE(big.ok());
  EXPECT_TRUE(big.status().IsInvalidArgument()) << big.status().ToString();
  EXPECT_EQ(box->Stats().events, 0u);
  // The outbox still works after rejecting.
  EXPECT_TRUE(box->Append(Event(EventClass::kFix)).ok());
}

TEST_F(OutboxTest, SequencesIncreaseAcrossReopenAndSurviveALostDatabase) {
  uint64_t last = 0;
  for (int round = 0; round < 3; ++round) {
    auto box = OpenOrDie(Options());
    ASSERT_TRUE(box);
    EXPECT_GT(box->Stats().next_seq, last);
    for (int i = 0; i < 20; ++i) {
      uint64_t seq = AppendOrDie(*box, Event(i % 3 ? EventClass::kFix : EventClass::kDelivery));
      EXPECT_GT(seq, last);
      last = seq;
    }
    // Acking everything must not let the sequence fall back.
    ASSERT_TRUE(box->Ack(Seqs(ClaimAll(*box))).ok());
  }
  // Re-provisioning that wipes the database but keeps the lease file: still no going back.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(Options().path + suffix);
  }
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  EXPECT_GT(AppendOrDie(*box, Event(EventClass::kFix)), last);
}

TEST_F(OutboxTest, RefusesASecondOpenOfTheSameFile) {
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  auto second = Outbox::Open(Options());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Status::Code::kBusy) << second.status().ToString();
}

TEST_F(OutboxTest, RecordsTheSchemaVersionAndRefusesANewerOrForeignFile) {
  {
    auto box = OpenOrDie(Options());
    ASSERT_TRUE(box);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(Options().path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 1);
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto newer = Outbox::Open(Options());
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(newer.status().message().find("newer"), std::string::npos);

  OutboxOptions foreign = Options();
  foreign.path = dir_.File("other.db");
  ASSERT_EQ(sqlite3_open(foreign.path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE orders(id INTEGER)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto r = Outbox::Open(foreign);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kFailedPrecondition) << r.status().ToString();
  EXPECT_TRUE(std::filesystem::exists(foreign.path)) << "a foreign file must be left in place";
}

TEST_F(OutboxTest, QuotaThinsTheOldestFixesAndNeverTouchesProtectedEvents) {
  OutboxOptions o = Options();
  o.quota_bytes = 512 << 10;
  auto box = OpenOrDie(o);
  ASSERT_TRUE(box);
  std::vector<uint64_t> protected_seqs;
  std::vector<uint64_t> fix_seqs;
  for (uint32_t i = 0; i < 60'000; ++i) {
    if (i % 1000 == 0) {
      protected_seqs.push_back(AppendOrDie(
          *box, Event(i % 2000 ? EventClass::kDelivery : EventClass::kProofOfDelivery)));
    }
    box->AppendAsync(Event(EventClass::kFix, FixBody(i)),
                     [](Result<uint64_t> r) { EXPECT_TRUE(r.ok()) << r.status().ToString(); });
  }
  ASSERT_TRUE(box->Flush().ok());
  OutboxStats st = box->Stats();
  EXPECT_GT(st.evicted, 0u);
  EXPECT_EQ(st.refused, 0u);
  EXPECT_LE(st.bytes, o.quota_bytes + (64u << 10)) << "live bytes far above the quota";

  auto all = ClaimAll(*box);
  std::vector<uint64_t> protected_left, fixes_left;
  for (const auto& e : all) {
    (IsProtected(e.cls) ? protected_left : fixes_left).push_back(e.seq);
  }
  EXPECT_EQ(protected_left, protected_seqs) << "a protected event was evicted";
  std::sort(fixes_left.begin(), fixes_left.end());
  ASSERT_FALSE(fixes_left.empty());
  EXPECT_LT(fixes_left.size(), 60'000u);
  EXPECT_EQ(fixes_left.size() + st.evicted, 60'000u);
  // The newest breadcrumbs are whole: the last 2000 appended are all there.
  const uint64_t newest = fixes_left.back();
  size_t recent = std::count_if(fixes_left.begin(), fixes_left.end(),
                                [&](uint64_t s) { return s + 2000 > newest; });
  size_t protected_recent = std::count_if(protected_seqs.begin(), protected_seqs.end(),
                                          [&](uint64_t s) { return s + 2000 > newest; });
  EXPECT_EQ(recent + protected_recent, 2000u) << "recent fixes were evicted";
  // The oldest kept fixes are sparse: thinning, not truncation, made the room.
  ASSERT_GE(fixes_left.size(), 100u);
  uint64_t oldest_span = fixes_left[99] - fixes_left[0];
  EXPECT_GT(oldest_span, 200u) << "the oldest fixes were not thinned";
}

TEST_F(OutboxTest, OnlyProtectedLeftRefusesFixesRaisesOneAlarmAndKeepsStoringDeliveries) {
  OutboxOptions o = Options();
  o.quota_bytes = 64 << 10;
  auto box = OpenOrDie(o);
  ASSERT_TRUE(box);
  AppendOrDie(*box, Event(EventClass::kFix, FixBody(1)));
  AppendOrDie(*box, Event(EventClass::kHealth, "health"));
  std::vector<uint64_t> deliveries;
  for (int i = 0; i < 40; ++i) {
    deliveries.push_back(AppendOrDie(*box, Event(EventClass::kDelivery, std::string(2000, 'd'))));
  }
  OutboxStats st = box->Stats();
  EXPECT_GT(st.bytes, o.quota_bytes) << "protected events are stored beyond the quota";
  EXPECT_EQ(st.by_class[static_cast<int>(EventClass::kFix)], 0u);
  EXPECT_EQ(st.by_class[static_cast<int>(EventClass::kHealth)], 0u) << "health goes after fixes";

  auto fix = box->Append(Event(EventClass::kFix, FixBody(2)));
  ASSERT_FALSE(fix.ok());
  EXPECT_TRUE(fix.status().IsNoSpace()) << fix.status().ToString();
  EXPECT_NE(fix.status().message().find("only delivery and proof-of-delivery"), std::string::npos)
      << fix.status().message();
  auto health = box->Append(Event(EventClass::kHealth));
  EXPECT_TRUE(health.status().IsNoSpace());
  EXPECT_TRUE(box->Append(Event(EventClass::kProofOfDelivery, std::string(2000, 'p'))).ok());

  st = box->Stats();
  EXPECT_EQ(st.refused, 2u);
  size_t full_alarms = std::count_if(st.alarms.begin(), st.alarms.end(), [](const std::string& a) {
    return a.find("outbox full") != std::string::npos;
  });
  EXPECT_EQ(full_alarms, 1u) << "one alarm per episode";

  // Once the bridge acknowledged the deliveries, fixes are welcome again.
  ASSERT_TRUE(box->Ack(Seqs(ClaimAll(*box))).ok());
  EXPECT_TRUE(box->Append(Event(EventClass::kFix, FixBody(3))).ok());
}

TEST_F(OutboxTest, CorruptFileIsMovedAsideAndTheSequenceContinuesAboveIt) {
  uint64_t last = 0;
  {
    auto box = OpenOrDie(Options());
    ASSERT_TRUE(box);
    for (uint32_t i = 0; i < 3000; ++i) {
      box->AppendAsync(Event(EventClass::kFix, FixBody(i)), [](Result<uint64_t>) {});
    }
    last = AppendOrDie(*box, Event(EventClass::kDelivery));
  }
  {
    // Damage b-tree pages in the middle of the checkpointed file.
    std::fstream f(Options().path, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    f.seekp(4096 * 3);
    std::string garbage(4096 * 4, '\0');
    for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 37 + 11);
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  OutboxStats st = box->Stats();
  ASSERT_FALSE(st.alarms.empty());
  EXPECT_NE(st.alarms.front().find("recovered from corruption"), std::string::npos)
      << st.alarms.front();
  EXPECT_EQ(st.events, 0u);
  EXPECT_GT(AppendOrDie(*box, Event(EventClass::kFix)), last);
  int moved = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    if (entry.path().filename().string().rfind("outbox.db.corrupt-", 0) == 0) ++moved;
  }
  EXPECT_GE(moved, 1) << "the corrupt file must be kept for forensics";
}

TEST_F(OutboxTest, FileThatIsNotADatabaseIsRecovered) {
  uint64_t last = 0;
  {
    auto box = OpenOrDie(Options());
    ASSERT_TRUE(box);
    last = AppendOrDie(*box, Event(EventClass::kProofOfDelivery));
  }
  {
    std::ofstream f(Options().path, std::ios::binary | std::ios::trunc);
    f << std::string(10000, 'G');
  }
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  OutboxStats st = box->Stats();
  ASSERT_EQ(st.alarms.size(), 1u);
  EXPECT_NE(st.alarms[0].find("not a database"), std::string::npos) << st.alarms[0];
  EXPECT_GT(AppendOrDie(*box, Event(EventClass::kFix)), last);
}

TEST_F(OutboxTest, CorruptFileGoesAsideTogetherWithItsWal) {
  const std::string path = Options().path;
  const std::string saved = dir_.File("saved");
  uint64_t last = 0;
  {
    auto box = OpenOrDie(Options());
    ASSERT_TRUE(box);
    for (uint32_t i = 0; i < 3000; ++i) {
      box->AppendAsync(Event(EventClass::kFix, FixBody(i)), [](Result<uint64_t>) {});
    }
    ASSERT_TRUE(box->Flush().ok());
    // A second connection moves those rows into the database file, then keeps the WAL of the
    // next appends from being checkpointed away when the outbox closes, as after a power cut.
    sqlite3* hold = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &hold), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(hold, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr),
              SQLITE_OK);
    for (int i = 0; i < 20; ++i) last = AppendOrDie(*box, Event(EventClass::kDelivery));
    box.reset();
    std::filesystem::copy_file(path, saved + ".db");
    std::filesystem::copy_file(path + "-wal", saved + ".db-wal");
    sqlite3_close(hold);
  }
  std::filesystem::remove(path + "-shm");
  std::filesystem::copy_file(saved + ".db", path,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(saved + ".db-wal", path + "-wal",
                             std::filesystem::copy_options::overwrite_existing);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 * 6);
    std::string garbage(4096 * 6, '\0');
    for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 37 + 11);
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  ASSERT_GT(std::filesystem::file_size(path + "-wal"), 0u);
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  EXPECT_EQ(box->Stats().alarms.size(), 1u);
  EXPECT_GT(AppendOrDie(*box, Event(EventClass::kFix)), last);
  std::string aside;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    std::string name = entry.path().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, "-wal") == 0 &&
        name.find(".corrupt-") != std::string::npos) {
      aside = name;
    }
  }
  ASSERT_FALSE(aside.empty()) << "the WAL must go aside with its database";
  EXPECT_EQ(std::filesystem::file_size(aside), std::filesystem::file_size(saved + ".db-wal"));
}

TEST_F(OutboxTest, CorrectTimeFixesOnlyMonotonicEventsOfThisBoot) {
  uint64_t old_boot = 0;
  {
    auto box = OpenOrDie(Options());
    ASSERT_TRUE(box);
    old_boot = AppendOrDie(*box, Event(EventClass::kFix, "old", 100, hal::TimeSource::kMonotonic));
  }
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  uint64_t mono_fix =
      AppendOrDie(*box, Event(EventClass::kFix, "a", 1000, hal::TimeSource::kMonotonic));
  uint64_t mono_del =
      AppendOrDie(*box, Event(EventClass::kDelivery, "b", 2000, hal::TimeSource::kMonotonic));
  uint64_t gnss = AppendOrDie(*box, Event(EventClass::kFix, "c", 3000, hal::TimeSource::kGnss));
  // Queued but perhaps not yet committed when the correction is asked for: still corrected.
  box->AppendAsync(Event(EventClass::kHealth, "d", 4000, hal::TimeSource::kMonotonic),
                   [](Result<uint64_t>) {});
  auto corrected = box->CorrectTime(1'700'000'000'000);
  ASSERT_TRUE(corrected.ok()) << corrected.status().ToString();
  EXPECT_EQ(*corrected, 3u);
  for (const auto& e : ClaimAll(*box)) {
    if (e.seq == old_boot) {
      EXPECT_EQ(e.ts_ms, 100);
      EXPECT_EQ(e.ts_src, hal::TimeSource::kMonotonic);
    } else if (e.seq == gnss) {
      EXPECT_EQ(e.ts_ms, 3000);
      EXPECT_EQ(e.ts_src, hal::TimeSource::kGnss);
    } else {
      EXPECT_TRUE(e.seq == mono_fix || e.seq == mono_del || e.cls == EventClass::kHealth);
      EXPECT_GT(e.ts_ms, 1'700'000'000'000);
      EXPECT_EQ(e.ts_src, hal::TimeSource::kGnssCorrected);
    }
  }
}

TEST_F(OutboxTest, ConcurrentAppendsAllGetUniqueStoredSequences) {
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 300;
  std::mutex mu;
  std::vector<uint64_t> seqs;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto cls = (i % 10 == 0) ? EventClass::kDelivery : EventClass::kFix;
        auto r = box->Append(Event(cls, FixBody(static_cast<uint32_t>(t * kPerThread + i))));
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        std::lock_guard<std::mutex> lk(mu);
        seqs.push_back(*r);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint64_t> unique(seqs.begin(), seqs.end());
  EXPECT_EQ(unique.size(), seqs.size()) << "a sequence was handed out twice";
  auto stored = Seqs(ClaimAll(*box));
  std::set<uint64_t> stored_set(stored.begin(), stored.end());
  EXPECT_EQ(stored_set, unique);
  OutboxStats st = box->Stats();
  EXPECT_EQ(st.appends, seqs.size());
}

TEST_F(OutboxTest, GroupCommitSharesTransactionsUpToTheConfiguredSize) {
  OutboxOptions o = Options();
  o.group_commit_max_events = 4;
  auto box = OpenOrDie(o);
  ASSERT_TRUE(box);
  std::atomic<int> ok{0};
  for (int i = 0; i < 400; ++i) {
    box->AppendAsync(Event(EventClass::kFix, FixBody(i)), [&ok](Result<uint64_t> r) {
      if (r.ok()) ++ok;
    });
  }
  ASSERT_TRUE(box->Flush().ok());
  EXPECT_EQ(ok.load(), 400);
  OutboxStats st = box->Stats();
  EXPECT_EQ(st.appends, 400u);
  EXPECT_GE(st.commits, 100u) << "a transaction held more than group_commit_max_events";
  EXPECT_LT(st.commits, 400u) << "queued appends were not grouped";
}

TEST_F(OutboxTest, ReaderSeesWhatTheWriterCommittedWithoutWriting) {
  auto box = OpenOrDie(Options());
  ASSERT_TRUE(box);
  for (int i = 0; i < 10; ++i) AppendOrDie(*box, Event(EventClass::kFix, FixBody(i)));
  uint64_t d = AppendOrDie(*box, Event(EventClass::kDelivery, "drop-off"));
  auto reader = OutboxReader::Open(Options().path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto summary = (*reader)->Summary();
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->events, 11u);
  EXPECT_EQ(summary->by_class[static_cast<int>(EventClass::kDelivery)], 1u);
  EXPECT_GT(summary->next_seq, d);
  ASSERT_TRUE(summary->lease.has_value());
  EXPECT_GT(*summary->lease, d);
  std::vector<StoredEvent> seen;
  ASSERT_TRUE((*reader)
                  ->ForEach(EventClass::kDelivery, 0,
                            [&](const StoredEvent& e) {
                              seen.push_back(e);
                              return true;
                            })
                  .ok());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, "drop-off");
}

}  // namespace
}  // namespace waybill::sync
