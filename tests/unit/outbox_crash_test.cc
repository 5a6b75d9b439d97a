// Crash test: a child process appends to the outbox at full speed and is killed with SIGKILL at
// random moments; after each kill the outbox must open cleanly (integrity check passed, nothing
// moved aside), hold every sequence the child was told was stored (unless the child acknowledged
// it), hold no sequence twice, and continue above everything it ever handed out.
//
// The seed is printed; set WAYBILL_CRASH_SEED to replay a run, WAYBILL_CRASH_KILLS for more kills.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "unit/outbox_test_util.h"
#include "waybill/sync/outbox.h"

namespace waybill::sync {
namespace {

using testing::TempDir;

struct ChildReport {
  std::set<uint64_t> stored;  // 's': Append returned
  std::set<uint64_t> acking;  // 'c': Ack called, maybe committed
  std::set<uint64_t> acked;   // 'a': Ack returned OK
  int status = 0;
};

// Runs the writer for `run_ms`, then SIGKILLs it and collects every line it wrote.
ChildReport RunAndKill(const std::string& db, int run_ms) {
  ChildReport report;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe failed";
    return report;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::execl(OUTBOX_WRITER, OUTBOX_WRITER, db.c_str(), "4", static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  ::close(fds[1]);
  std::string data;
  char buf[65536];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(run_ms);
  bool killed = false;
  for (;;) {
    auto now = std::chrono::steady_clock::now();
    if (!killed && now >= deadline) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    int wait_ms =
        killed ? 1000
               : static_cast<int>(
                     std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() +
                     1);
    pollfd p{fds[0], POLLIN, 0};
    int rc = ::poll(&p, 1, wait_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) {
      if (killed) break;  // killed and silent: the pipe will not close if a grandchild held it
      continue;
    }
    ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;  // EOF: the child is gone
    data.append(buf, static_cast<size_t>(n));
  }
  if (!killed) ::kill(pid, SIGKILL);
  ::close(fds[0]);
  ::waitpid(pid, &report.status, 0);

  std::istringstream in(data);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() < 3) continue;
    uint64_t seq = std::strtoull(line.c_str() + 2, nullptr, 10);
    if (line[0] == 's') report.stored.insert(seq);
    if (line[0] == 'c') report.acking.insert(seq);
    if (line[0] == 'a') report.acked.insert(seq);
  }
  return report;
}

std::string IntegrityCheck(const std::string& path) {
  sqlite3* db = nullptr;
  std::string result = "cannot open";
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      result = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return result;
}

TEST(OutboxCrashTest, KilledWriterLosesNothingItReportedStored) {
  const char* seed_env = std::getenv("WAYBILL_CRASH_SEED");
  const char* kills_env = std::getenv("WAYBILL_CRASH_KILLS");
  const uint64_t seed =
      seed_env != nullptr
          ? std::strtoull(seed_env, nullptr, 10)
          : static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  const int kills = kills_env != nullptr ? std::atoi(kills_env) : 60;
  std::printf("outbox crash test: seed %llu (WAYBILL_CRASH_SEED to replay), %d kills\n",
              static_cast<unsigned long long>(seed), kills);
  RecordProperty("seed", std::to_string(seed));
  std::mt19937_64 rng(seed);

  TempDir dir;
  const std::string db = dir.File("outbox.db");
  {
    // The file exists before the first kill, which may come before the writer created it.
    OutboxOptions o;
    o.path = db;
    auto created = Outbox::Open(o);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
  }
  std::set<uint64_t> must_exist, must_not_exist, may_be_gone;
  uint64_t highest = 0;
  uint64_t reported = 0;
  for (int round = 0; round < kills; ++round) {
    int run_ms = 20 + static_cast<int>(rng() % 181);
    ChildReport child = RunAndKill(db, run_ms);
    ASSERT_TRUE(WIFSIGNALED(child.status) && WTERMSIG(child.status) == SIGKILL)
        << "round " << round << ": the writer died by itself (status " << child.status
        << "), see its stderr";
    reported += child.stored.size();
    for (uint64_t s : child.stored) {
      EXPECT_GT(s, highest) << "round " << round << ": sequence " << s << " went backwards";
    }
    for (uint64_t s : child.stored) must_exist.insert(s);
    for (uint64_t s : child.acking) {
      must_exist.erase(s);
      may_be_gone.insert(s);
    }
    for (uint64_t s : child.acked) {
      may_be_gone.erase(s);
      must_not_exist.insert(s);
    }
    if (!child.stored.empty()) highest = std::max(highest, *child.stored.rbegin());

    ASSERT_EQ(IntegrityCheck(db), "ok") << "round " << round << " (seed " << seed << ")";
    OutboxOptions o;
    o.path = db;
    o.min_free_bytes = 0;
    auto box = Outbox::Open(o);
    ASSERT_TRUE(box.ok()) << box.status().ToString();
    OutboxStats st = (*box)->Stats();
    ASSERT_TRUE(st.alarms.empty()) << "round " << round << ": " << st.alarms.front();
    auto all = (*box)->Claim(10'000'000, false);
    ASSERT_TRUE(all.ok());
    std::set<uint64_t> present;
    for (const auto& e : *all) {
      ASSERT_TRUE(present.insert(e.seq).second) << "round " << round << ": duplicate " << e.seq;
    }
    size_t lost = 0;
    for (uint64_t s : must_exist) lost += present.count(s) == 0;
    EXPECT_EQ(lost, 0u) << "round " << round << " (seed " << seed << "): reported stored, gone";
    size_t resurrected = 0;
    for (uint64_t s : must_not_exist) resurrected += present.count(s);
    EXPECT_EQ(resurrected, 0u) << "round " << round << ": acknowledged events came back";
    if (!present.empty()) highest = std::max(highest, *present.rbegin());
    auto next = (*box)->Append(testing::Event(EventClass::kFix));
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    EXPECT_GT(*next, highest) << "round " << round << ": the next sequence is not above all";
    highest = *next;
    must_exist.insert(*next);
    if (::testing::Test::HasFailure()) break;
  }
  std::printf("outbox crash test: %d kills, %llu appends reported by the writers\n", kills,
              static_cast<unsigned long long>(reported));
  EXPECT_GT(reported, 0u) << "the writer never reported an append: nothing was tested";
}

}  // namespace
}  // namespace waybill::sync
