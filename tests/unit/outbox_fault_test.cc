// The failure contract under storage faults (a fault-injecting SQLite VFS): every Append that
// returned a sequence is there after reopen, every failed Append says why, the file passes its
// integrity check, and the outbox works again once the fault is gone without being reopened by
// its user.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fakes/fault_vfs.h"
#include "unit/outbox_test_util.h"
#include "waybill/sync/outbox.h"

namespace waybill::sync {
namespace {

using testing::Event;
using testing::FaultVfs;
using testing::FaultVfsConfig;
using testing::FixBody;
using testing::TempDir;

struct Outcome {
  std::vector<uint64_t> stored;
  std::vector<uint64_t> stored_protected;
  std::vector<Status> failed;
};

class OutboxFaultTest : public ::testing::Test {
 protected:
  void SetUp() override { options_.vfs_name = FaultVfs::Register(); }
  void TearDown() override { FaultVfs::Clear(); }

  TempDir dir_;
  OutboxOptions options_ = [this] {
    OutboxOptions o;
    o.path = dir_.File("outbox.db");
    o.min_free_bytes = 0;
    return o;
  }();

  // Appends from `threads` threads, `per_thread` each, a delivery every tenth.
  static Outcome AppendMany(Outbox& box, int threads, int per_thread) {
    Outcome out;
    std::mutex mu;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          auto cls = i % 10 == 0 ? EventClass::kDelivery : EventClass::kFix;
          auto r = box.Append(Event(cls, FixBody(static_cast<uint32_t>(t * per_thread + i))));
          std::lock_guard<std::mutex> lk(mu);
          if (r.ok()) {
            out.stored.push_back(*r);
            if (IsProtected(cls)) out.stored_protected.push_back(*r);
          } else {
            out.failed.push_back(r.status());
          }
        }
      });
    }
    for (auto& w : workers) w.join();
    return out;
  }

  // Reopens with the plain default VFS and checks what a user would: integrity, every stored
  // sequence present (but for fixes evicted by the quota policy: `evicted`), no duplicates.
  void ExpectAllStored(const std::vector<uint64_t>& stored, uint64_t evicted = 0) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(options_.path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "ok");
    sqlite3_finalize(stmt);
    sqlite3_close(db);

    OutboxOptions plain = options_;
    plain.vfs_name.clear();
    auto box = Outbox::Open(plain);
    ASSERT_TRUE(box.ok()) << box.status().ToString();
    EXPECT_TRUE((*box)->Stats().alarms.empty()) << (*box)->Stats().alarms.front();
    auto all = (*box)->Claim(1'000'000, false);
    ASSERT_TRUE(all.ok());
    std::set<uint64_t> present;
    for (const auto& e : *all) EXPECT_TRUE(present.insert(e.seq).second) << "duplicate " << e.seq;
    uint64_t missing = 0;
    for (uint64_t seq : stored) missing += present.count(seq) == 0;
    EXPECT_EQ(missing, evicted) << "sequences lost beyond those evicted by the quota policy";
    uint64_t max_stored = stored.empty() ? 0 : *std::max_element(stored.begin(), stored.end());
    auto next = (*box)->Append(Event(EventClass::kFix));
    ASSERT_TRUE(next.ok());
    EXPECT_GT(*next, max_stored);
  }
};

void ExpectClearErrors(const std::vector<Status>& failed) {
  for (const Status& s : failed) {
    EXPECT_TRUE(s.IsIOError() || s.IsNoSpace()) << s.ToString();
    EXPECT_NE(s.message().find("not stored"), std::string::npos) << s.message();
  }
}

TEST_F(OutboxFaultTest, WriteErrorsAndShortWritesLoseNothingThatWasAcknowledged) {
  auto box = Outbox::Open(options_);
  ASSERT_TRUE(box.ok()) << box.status().ToString();
  FaultVfsConfig fault;
  fault.seed = 20240501;
  fault.write_error_one_in = 15;
  fault.short_writes = true;
  FaultVfs::Set(fault);
  Outcome during = AppendMany(**box, 4, 150);
  FaultVfs::Clear();
  EXPECT_GT(FaultVfs::Counters().write_errors, 0u);
  EXPECT_FALSE(during.failed.empty()) << "the fault should have failed some appends";
  EXPECT_FALSE(during.stored.empty()) << "the fault should have let some appends through";
  ExpectClearErrors(during.failed);

  // The fault is gone: the outbox recovers by itself.
  Outcome after = AppendMany(**box, 2, 50);
  EXPECT_TRUE(after.failed.empty()) << after.failed.front().ToString();
  box->reset();

  std::vector<uint64_t> stored = during.stored;
  stored.insert(stored.end(), after.stored.begin(), after.stored.end());
  ExpectAllStored(stored);
}

TEST_F(OutboxFaultTest, FailedFsyncReportsTheAppendAsNotStoredAndNeverReusesItsSequence) {
  auto box = Outbox::Open(options_);
  ASSERT_TRUE(box.ok()) << box.status().ToString();
  FaultVfsConfig fault;
  fault.seed = 7;
  fault.sync_error_one_in = 4;
  FaultVfs::Set(fault);
  Outcome during = AppendMany(**box, 3, 120);
  FaultVfs::Clear();
  EXPECT_GT(FaultVfs::Counters().sync_errors, 0u);
  EXPECT_FALSE(during.failed.empty());
  ExpectClearErrors(during.failed);
  Outcome after = AppendMany(**box, 1, 50);
  EXPECT_TRUE(after.failed.empty()) << after.failed.front().ToString();
  std::set<uint64_t> unique(during.stored.begin(), during.stored.end());
  unique.insert(after.stored.begin(), after.stored.end());
  EXPECT_EQ(unique.size(), during.stored.size() + after.stored.size());
  box->reset();

  std::vector<uint64_t> stored = during.stored;
  stored.insert(stored.end(), after.stored.begin(), after.stored.end());
  ExpectAllStored(stored);
}

TEST_F(OutboxFaultTest, FullFileSystemRefusesWithNoSpaceAndRecoversWhenSpaceReturns) {
  auto box = Outbox::Open(options_);
  ASSERT_TRUE(box.ok()) << box.status().ToString();
  Outcome before = AppendMany(**box, 1, 500);
  ASSERT_TRUE(before.failed.empty());
  FaultVfsConfig fault;
  fault.full_after_bytes = 64 << 10;
  FaultVfs::Set(fault);
  Outcome during = AppendMany(**box, 2, 1500);
  FaultVfs::Clear();
  EXPECT_GT(FaultVfs::Counters().full_errors, 0u);
  EXPECT_FALSE(during.failed.empty()) << "a full file system must be noticed";
  for (const Status& s : during.failed) EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  Outcome after = AppendMany(**box, 1, 50);
  EXPECT_TRUE(after.failed.empty()) << after.failed.front().ToString();
  // While the file system is full the outbox stops growing its file and thins fixes instead.
  uint64_t evicted = (*box)->Stats().evicted;
  box->reset();

  std::vector<uint64_t> stored = before.stored;
  stored.insert(stored.end(), during.stored.begin(), during.stored.end());
  stored.insert(stored.end(), after.stored.begin(), after.stored.end());
  ExpectAllStored(stored, evicted);
}

TEST_F(OutboxFaultTest, EverySequenceHandedOutIsStoredEvictedOrCountedAsBurned) {
  // An end-to-end audit (scripts/soak chaos) accounts for every sequence of a device: a gap the
  // outbox does not report looks like an event lost after it was stored.
  auto box = Outbox::Open(options_);
  ASSERT_TRUE(box.ok()) << box.status().ToString();
  Outcome before = AppendMany(**box, 1, 200);
  FaultVfsConfig fault;
  fault.full_after_bytes = 64 << 10;
  FaultVfs::Set(fault);
  Outcome during = AppendMany(**box, 2, 1500);
  FaultVfs::Clear();
  Outcome after = AppendMany(**box, 1, 50);
  ASSERT_GT(FaultVfs::Counters().full_errors, 0u);
  OutboxStats st = (*box)->Stats();
  EXPECT_GT(st.burned, 0u) << "a transaction that failed on a full file system took sequences";
  uint64_t stored = before.stored.size() + during.stored.size() + after.stored.size();
  EXPECT_EQ(st.next_seq - 1, stored + st.burned)
      << "sequences handed out (1 to " << st.next_seq - 1 << ") are either returned by Append or "
      << "counted as burned; evicted ones were returned first";
}

}  // namespace
}  // namespace waybill::sync
