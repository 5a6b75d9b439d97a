// The outbox: a power-safe, bounded, prioritised queue of events on SQLite.
//
// METHOD
// One SQLite file in WAL mode with PRAGMA synchronous=FULL: a transaction is durable when its
// COMMIT returns, because the commit record is in the WAL and the WAL was fsynced (fdatasync) as
// part of the commit. Breadcrumbs live in `fixes`, everything else in `events`; in both tables the
// sequence is the rowid, so a row costs its cell and nothing else (no secondary index), and rows
// appended in key order pack the leaf pages full. Claiming by priority scans the small `events`
// table (protected, then health) and then walks `fixes` by rowid.
//
// GROUP COMMIT. One writer thread owns every append. Append() and AppendAsync() put the event on
// a queue; the writer takes everything queued (up to group_commit_max_events), runs ONE
// transaction (BEGIN IMMEDIATE, evict if needed, INSERT each row, UPDATE meta.next_seq, COMMIT),
// and only then completes each caller. N callers that arrive during one fsync share the next one,
// so the rate of durable appends grows with concurrency while each Append() still returns only
// after its own commit is on disk. Checkpoints are run by the writer after the callers of a batch
// were completed (automatic checkpoints are off), so they delay the next batch, not a caller.
//
// SEQUENCES. meta.next_seq is updated in the same transaction as the rows, so the database alone
// never hands out a sequence twice. To survive what the database cannot (a corrupt file moved
// aside, a deleted file, an old copy restored), a lease file <db>.seq holds a high-water mark: the
// writer reserves blocks of kLeaseBlock sequences by replacing that file atomically and durably
// (write tmp, fsync, rename, fsync the directory) BEFORE committing any row at or past the old
// mark. At open, next_seq = max(meta.next_seq, lease, highest stored seq + 1); since the lease is
// above anything any version of the file used, every open continues above all earlier sequences
// (and burns at most one block: gaps are harmless, repeats are not). A failed transaction burns
// the sequences it tried: they are never handed out again, in case its rows reach the disk after
// all (see FAILURE CONTRACT).
//
// INVARIANTS
//  1. Append() returns a sequence only after the COMMIT holding the row returned SQLITE_OK.
//  2. Every row's seq < meta.next_seq <= lease; in-memory next_seq_ >= meta.next_seq.
//  3. Delivery and proof-of-delivery rows are deleted only by Ack().
//  4. Claims are a lease in memory: a restart forgets them, so after a crash everything is sent
//     again. Duplicates are harmless (the bridge dedups on device + seq); loss is not.
//  5. The file passed PRAGMA integrity_check when it was opened, or it was moved aside.
//
// EVICTION POLICY. Live bytes = (page_count - freelist_count) * page_size, i.e. the pages that
// hold data; free pages are reused before the file grows. The effective quota is quota_bytes, or
// the file's current size when the file system has less than min_free_bytes free (statvfs) or
// SQLite last reported SQLITE_FULL: then the file must not grow. When a batch would take live
// bytes past the effective quota, the same transaction first thins the oldest breadcrumbs: it
// takes the oldest chunk of fixes (a tenth of them, between 64 and 16384) and deletes every
// second one, and repeats (at most kMaxEvictionPasses passes per commit) until the batch fits
// with 1/32 of the quota to spare. Repeated passes over the oldest data halve its resolution
// again and again, so old tracks get sparse while recent ones stay whole. When no fix is left,
// health events are thinned the same way. Delivery and PoD events are never evicted. When only
// they are left and the batch still does not fit, its fixes and health events are refused with
// kNoSpace (counted in `refused`), an alarm is raised once per episode, and protected events are
// still accepted as long as SQLite can physically write them. If the pass budget runs out while
// evictable rows remain, the batch is accepted (a soft overshoot) and the next commit evicts on.
//
// RECOVERY. At open the file must pass PRAGMA integrity_check and carry the outbox's
// application_id (a foreign SQLite file is refused, never touched). A file that fails the check,
// or on which SQLite reports SQLITE_CORRUPT or SQLITE_NOTADB, is renamed with its -wal and -shm
// to <path>.corrupt-<unix_ms> (the WAL first, so a fresh file never replays a stale WAL), a fresh
// outbox is created, an alarm is raised, and the sequence continues from the lease.
//
// FAILURE CONTRACT. When an append transaction fails (I/O error, fsync error, disk full), it is
// rolled back and every caller of the batch gets the error: nothing is reported stored. The one
// exception: when the final fsync of the WAL fails, the frames of the failed commit may already be
// in the WAL file; if the process then dies before another commit overwrites them, SQLite's WAL
// recovery at the next open finds a valid commit and the rows reappear. They are sent like any
// other event: a duplicate of what the caller may have retried, never a loss and never a reused
// sequence. After an I/O error or corruption report the connection is closed and reopened before
// the next operation (with the integrity check and, if needed, the recovery above); until that
// reopen succeeds every operation fails with a clear error. SQLITE_FULL is handled without
// reopening: the batch is retried once with eviction down to the file's current size, then once
// with its protected events only (its other events are refused with kNoSpace).
#include "waybill/sync/outbox.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>

#include "outbox_schema.h"
#include "seq_lease.h"
#include "sqlite_util.h"
#include "waybill/sync/data_key.h"

namespace waybill::sync {
namespace {

using internal::Exec;
using internal::QueryInt;
using internal::SqliteStatus;
using internal::Stmt;

constexpr uint64_t kLeaseBlock = 1ull << 16;
constexpr size_t kMaxBodyBytes = 1u << 20;
// Deleted rows are overwritten with zeros, also on pages that go to the free list (ON, not FAST:
// FAST leaves free-list pages as they were, and a proof with a signature spans overflow pages
// that are freed whole). Its cost on the fix path is measured in docs/ARCHITECTURE.md.
constexpr const char* kSecureDelete = "ON";
constexpr int kCheckpointFrames = 1000;
constexpr int64_t kJournalSizeLimitBytes = 8ll << 20;
constexpr int kBusyTimeoutMs = 5000;
constexpr int kMaxEvictionPasses = 8;
constexpr int64_t kEvictionChunkMin = 64;
constexpr int64_t kEvictionChunkMax = 16384;
// Quota estimate of what a row costs beyond its body: cell header, key, timestamps, pointer.
constexpr uint64_t kRowOverheadBytes = 40;
constexpr size_t kMaxAlarms = 32;
// Unopenable sealed events: each of the first few is logged, then one in this many.
constexpr uint64_t kUnopenableLogFirst = 8;
constexpr uint64_t kUnopenableLogEvery = 100;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string FormatBytes(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1ull << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  } else if (bytes >= 1024) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", static_cast<double>(bytes) / 1024);
  } else {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  }
  return buf;
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("open directory " + dir + ": " + std::strerror(errno));
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) return Status::IOError("fsync directory " + dir + ": " + std::strerror(saved));
  return Status::Ok();
}

Status Validate(const NewEvent& e) {
  auto cls = static_cast<uint8_t>(e.cls);
  if (cls < static_cast<uint8_t>(EventClass::kFix) ||
      cls > static_cast<uint8_t>(EventClass::kProofOfDelivery)) {
    return Status::InvalidArgument("event class " + std::to_string(cls) +
                                   " is not one of fix, health, delivery, pod: not stored");
  }
  if (static_cast<uint8_t>(e.ts_src) > static_cast<uint8_t>(hal::TimeSource::kGnssCorrected)) {
    return Status::InvalidArgument("time source " + std::to_string(static_cast<int>(e.ts_src)) +
                                   " is unknown: " + ToString(e.cls) + " event not stored");
  }
  if (e.body.size() > kMaxBodyBytes) {
    return Status::InvalidArgument(std::string(ToString(e.cls)) + " event body of " +
                                   std::to_string(e.body.size()) + " bytes exceeds the limit of " +
                                   std::to_string(kMaxBodyBytes) + ": not stored");
  }
  return Status::Ok();
}

uint64_t QuotaCost(const NewEvent& e) { return e.body.size() + kRowOverheadBytes; }

// One queued request for the writer thread: an append, or a barrier that completes once
// everything queued before it has been committed.
struct Pending {
  NewEvent event;
  std::function<void(Result<uint64_t>)> done;
  bool barrier = false;
  Status invalid;  // not OK: rejected before queueing, completed with this status
};

// Rows deleted by eviction inside the current transaction, applied to the counters on commit.
struct EvictionDelta {
  uint64_t fixes = 0;
  uint64_t health = 0;
};

class OutboxImpl final : public Outbox {
 public:
  explicit OutboxImpl(OutboxOptions options)
      : options_(std::move(options)),
        lease_path_(options_.path + ".seq"),
        lock_path_(options_.path + ".lock") {}
  ~OutboxImpl() override;

  Status Init();
  void StartWriter() {
    writer_ = std::thread([this] { WriterLoop(); });
  }

  Result<uint64_t> Append(const NewEvent& event) override;
  void AppendAsync(NewEvent event, std::function<void(Result<uint64_t>)> done) override;
  Result<std::vector<StoredEvent>> Claim(size_t max_events, bool newest_fix_first) override;
  Status Ack(std::span<const uint64_t> seqs) override;
  void Release(std::span<const uint64_t> seqs) override;
  Result<uint64_t> CorrectTime(int64_t offset_ms) override;
  OutboxStats Stats() override;
  Status Flush() override;

 private:
  struct Statements {
    Stmt begin, commit, rollback;
    Stmt insert_fix, insert_event, update_next_seq;
    Stmt page_count, freelist_count;
    Stmt oldest_fixes, oldest_health, delete_fix, delete_event;
    Stmt claim_protected, claim_health, claim_fixes, claim_newest_fix;
    Stmt oldest_fix_ts, oldest_event_ts;
  };

  // Connection lifecycle; all with db_mu_ held.
  Status OpenConnectionLocked();
  Status OpenAndCheckLocked(uint64_t* meta_next_seq);
  Status MoveAsideLocked(std::string* moved_to);
  void CloseConnectionLocked(bool checkpoint = true);
  Status EnsureOpenLocked();
  Status PrepareLocked();
  Status LoadCountsLocked();
  Status ExtendLeaseLocked(uint64_t end_seq);
  void NoteErrorLocked(const Status& s);
  void RaiseAlarmLocked(const std::string& alarm);
  void NoteUnopenableLocked(const StoredEvent& e, const Status& why);
  Status StepDone(Stmt& stmt, std::string_view what);
  Status RollbackLocked();

  // The writer.
  void Enqueue(Pending pending);
  void WriterLoop();
  std::vector<Result<uint64_t>> CommitBatch(std::vector<Pending>& batch);
  Status AppendTxnLocked(std::vector<Pending>& batch, bool protected_only,
                         std::vector<Result<uint64_t>>& results);
  Result<bool> EvictPassLocked(EvictionDelta* delta);
  Result<bool> ThinOldestLocked(Stmt& select, Stmt& del, int64_t rows, uint64_t* deleted);
  Result<uint64_t> PageCountLocked();
  Result<uint64_t> LiveBytesLocked();
  uint64_t EffectiveQuotaLocked(uint64_t page_count);
  void MaybeCheckpointLocked();
  // Reads unclaimed rows into `out` until it holds max_events. `last_seq` (may be null) gets the
  // sequence of the last row stepped over, taken or not (0 if none).
  Status ReadRows(Stmt& stmt, size_t max_events, std::optional<uint64_t> skip,
                  std::vector<StoredEvent>* out, uint64_t* last_seq = nullptr);

  static int WalHook(void* arg, sqlite3* db, const char* name, int frames);

  const OutboxOptions options_;
  const std::string lease_path_;
  const std::string lock_path_;
  int lock_fd_ = -1;

  std::mutex db_mu_;  // guards everything below up to the queue
  sqlite3* db_ = nullptr;
  Statements st_;
  bool broken_ = false;  // the connection must be reopened before its next use
  uint64_t page_size_ = 4096;
  uint64_t next_seq_ = 1;
  uint64_t lease_ = 0;
  uint64_t first_seq_ = 1;  // first sequence of this open: CorrectTime's boundary
  uint64_t by_class_[5] = {};
  uint64_t commits_ = 0, appends_ = 0, evicted_ = 0, refused_ = 0, burned_ = 0;
  uint64_t unopenable_count_ = 0;
  std::vector<std::string> alarms_;
  bool recovered_ = false;       // a corrupt file was moved aside since open
  bool full_episode_ = false;    // refusing fixes for lack of space
  bool disk_full_hint_ = false;  // SQLite reported SQLITE_FULL: do not grow the file
  int wal_frames_ = 0;
  std::unordered_set<uint64_t> claimed_;
  // Sealed events that would not open: skipped by Claim until the next open of the outbox (a
  // restart with the right key file sends them).
  std::unordered_set<uint64_t> unopenable_;
  // Every fix below this sequence is claimed or gone, so Claim starts its walk of `fixes` here:
  // a backlog drain keeps up to a hundred thousand claimed rows at the front of the table, and
  // stepping over all of them again for every batch cost most of the uplink's time. Lowered by
  // whatever makes a fix claimable again (Release, a failed Ack); reset at every (re)open.
  uint64_t fix_scan_from_ = 0;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::thread writer_;
};

OutboxImpl::~OutboxImpl() {
  {
    std::lock_guard<std::mutex> lk(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard<std::mutex> lk(db_mu_);
    CloseConnectionLocked();
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status OutboxImpl::Init() {
  if (options_.path.empty()) return Status::InvalidArgument("outbox path is empty");
  if (options_.group_commit_max_events < 1) {
    return Status::InvalidArgument("group_commit_max_events must be at least 1, got " +
                                   std::to_string(options_.group_commit_max_events));
  }
  lock_fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    return Status::IOError("create outbox lock " + lock_path_ + ": " + std::strerror(errno));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Status::Busy("outbox " + options_.path + " is already open (" + lock_path_ +
                        " is locked by another process or another Outbox): not opened twice");
  }

  std::lock_guard<std::mutex> lk(db_mu_);
  auto lease = internal::ReadSeqLease(lease_path_);
  uint64_t lease_floor = 0;
  if (lease.ok()) {
    lease_floor = lease->value_or(0);
  } else {
    // The database still carries next_seq; only a database lost at the same time would be a
    // problem, and that is what the alarm is for.
    RaiseAlarmLocked("sequence lease unreadable (" + lease.status().ToString() +
                     "): continuing from the database's own next sequence");
  }

  // OpenConnectionLocked leaves next_seq_ at the database's meta.next_seq.
  Status s = OpenConnectionLocked();
  if (!s.ok()) return s;
  auto max_fix = QueryInt(db_, "SELECT coalesce(max(seq), 0) FROM fixes", "read highest fix");
  auto max_event = QueryInt(db_, "SELECT coalesce(max(seq), 0) FROM events", "read highest event");
  if (!max_fix.ok()) return max_fix.status();
  if (!max_event.ok()) return max_event.status();
  uint64_t max_stored = static_cast<uint64_t>(std::max(*max_fix, *max_event));
  next_seq_ = std::max({next_seq_, lease_floor, max_stored + 1});
  first_seq_ = next_seq_;
  lease_ = lease_floor;
  s = ExtendLeaseLocked(next_seq_ + 1);
  if (!s.ok()) return s;
  s = LoadCountsLocked();
  if (!s.ok()) return s;
  // "integrity_check ok" only when the file as found passed; a recovered one has its alarm.
  spdlog::info("outbox {} open: {}, {} events, next sequence {}", options_.path,
               recovered_ ? "recovered from corruption (alarm raised)" : "integrity_check ok",
               by_class_[1] + by_class_[2] + by_class_[3] + by_class_[4], next_seq_);
  return Status::Ok();
}

// Opens the connection with the integrity check; on corruption moves the file aside and opens a
// fresh one. Used at open and to reopen after an I/O error.
Status OutboxImpl::OpenConnectionLocked() {
  uint64_t meta_next = 1;
  Status s = OpenAndCheckLocked(&meta_next);
  if (s.IsCorruption()) {
    // No checkpoint on this close: the WAL must go aside as it is, not into the damaged file.
    CloseConnectionLocked(/*checkpoint=*/false);
    std::string moved_to;
    Status moved = MoveAsideLocked(&moved_to);
    if (!moved.ok()) {
      return Status::Corruption(s.message() + "; and moving it aside failed: " + moved.message() +
                                ": outbox not opened");
    }
    recovered_ = true;
    RaiseAlarmLocked("outbox recovered from corruption: " + s.message() + "; moved aside to " +
                     moved_to +
                     " (with its -wal and -shm) and started a fresh outbox; sequence "
                     "continues above the lease");
    s = OpenAndCheckLocked(&meta_next);
  }
  if (!s.ok()) {
    CloseConnectionLocked();
    return s;
  }
  next_seq_ = std::max(next_seq_, meta_next);
  s = PrepareLocked();
  if (!s.ok()) {
    CloseConnectionLocked();
    return s;
  }
  broken_ = false;
  return Status::Ok();
}

Status OutboxImpl::OpenAndCheckLocked(uint64_t* meta_next_seq) {
  const std::string& path = options_.path;
  int rc = sqlite3_open_v2(path.c_str(), &db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           options_.vfs_name.empty() ? nullptr : options_.vfs_name.c_str());
  if (rc != SQLITE_OK) return SqliteStatus(db_, rc, "open outbox " + path);
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);

  // page_size only matters for a new file; journal_mode is the first statement that reads the
  // file, so a file that is not a database at all fails here with SQLITE_NOTADB.
  Status s = Exec(db_, "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL;",
                  "set WAL mode on outbox " + path);
  if (!s.ok()) return s;
  s = Exec(db_,
           "PRAGMA synchronous = FULL; PRAGMA journal_size_limit = " +
               std::to_string(kJournalSizeLimitBytes) +
               "; PRAGMA cell_size_check = ON; PRAGMA secure_delete = " +
               (options_.secure_delete ? kSecureDelete : "OFF") + ";",
           "configure outbox " + path);
  if (!s.ok()) return s;
  auto mode = QueryInt(db_, "SELECT journal_mode = 'wal' FROM pragma_journal_mode",
                       "read journal mode of " + path);
  if (!mode.ok()) return mode.status();
  if (*mode != 1) {
    return Status::IOError("outbox " + path + " could not be switched to WAL mode: not opened");
  }

  {
    sqlite3_stmt* check = nullptr;
    rc = sqlite3_prepare_v2(db_, "PRAGMA integrity_check(8)", -1, &check, nullptr);
    if (rc != SQLITE_OK) return SqliteStatus(db_, rc, "integrity check of " + path);
    std::string problems;
    while ((rc = sqlite3_step(check)) == SQLITE_ROW) {
      const char* text = reinterpret_cast<const char*>(sqlite3_column_text(check, 0));
      std::string line = text != nullptr ? text : "";
      if (line == "ok") continue;
      if (!problems.empty()) problems += "; ";
      problems += line;
    }
    if (rc != SQLITE_DONE) {
      Status err = SqliteStatus(db_, rc, "integrity check of " + path);
      sqlite3_finalize(check);
      return err;
    }
    sqlite3_finalize(check);
    if (!problems.empty()) {
      return Status::Corruption("outbox " + path + " failed PRAGMA integrity_check: " + problems);
    }
  }

  auto version = QueryInt(db_, "PRAGMA user_version", "read schema version of " + path);
  if (!version.ok()) return version.status();
  auto app_id = QueryInt(db_, "PRAGMA application_id", "read application id of " + path);
  if (!app_id.ok()) return app_id.status();
  if (*version == 0) {
    auto objects = QueryInt(db_, "SELECT count(*) FROM sqlite_schema", "read schema of " + path);
    if (!objects.ok()) return objects.status();
    if (*objects != 0) {
      return Status::FailedPrecondition(path + " is an SQLite database but not a Waybill outbox (" +
                                        std::to_string(*objects) +
                                        " foreign schema objects): left untouched, not opened");
    }
  } else if (*app_id != internal::kOutboxApplicationId) {
    return Status::FailedPrecondition(path +
                                      " is an SQLite database but not a Waybill outbox "
                                      "(application_id " +
                                      std::to_string(*app_id) + "): left untouched, not opened");
  }
  if (*version > internal::kSchemaVersion) {
    return Status::FailedPrecondition("outbox " + path + " has schema version " +
                                      std::to_string(*version) + ", newer than this build knows (" +
                                      std::to_string(internal::kSchemaVersion) +
                                      "): not opened, left untouched for a newer waybilld");
  }
  if (*version < internal::kSchemaVersion) {
    s = Exec(db_, "BEGIN IMMEDIATE", "begin migration of " + path);
    if (!s.ok()) return s;
    for (int64_t v = *version; v < internal::kSchemaVersion && s.ok(); ++v) {
      s = Exec(db_, internal::kMigrations[static_cast<size_t>(v)],
               "migrate outbox " + path + " to schema version " + std::to_string(v + 1));
    }
    if (s.ok()) {
      s = Exec(db_, "PRAGMA user_version = " + std::to_string(internal::kSchemaVersion),
               "record schema version of " + path);
    }
    if (s.ok()) s = Exec(db_, "COMMIT", "commit migration of " + path);
    if (!s.ok()) {
      if (sqlite3_get_autocommit(db_) == 0)
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return s;
    }
    if (*version > 0) {
      spdlog::info("outbox {} migrated from schema version {} to {}", path, *version,
                   internal::kSchemaVersion);
    }
  }

  auto next = QueryInt(db_, "SELECT value FROM meta WHERE key = 'next_seq'",
                       "read next sequence of " + path);
  if (!next.ok()) return next.status();
  *meta_next_seq = static_cast<uint64_t>(*next);
  auto page_size = QueryInt(db_, "PRAGMA page_size", "read page size of " + path);
  if (!page_size.ok()) return page_size.status();
  page_size_ = static_cast<uint64_t>(*page_size);
  sqlite3_wal_hook(db_, &OutboxImpl::WalHook, this);
  return Status::Ok();
}

Status OutboxImpl::MoveAsideLocked(std::string* moved_to) {
  const std::string& path = options_.path;
  const std::string aside = path + ".corrupt-" + std::to_string(NowUnixMs());
  // The WAL goes first: a fresh file must never meet the old WAL.
  for (const char* suffix : {"-wal", "-shm", ""}) {
    std::string from = path + suffix;
    std::string to = aside + suffix;
    if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
      return Status::IOError("rename " + from + " to " + to + ": " + std::strerror(errno));
    }
  }
  *moved_to = aside;
  return FsyncDir(DirOf(path));
}

void OutboxImpl::CloseConnectionLocked(bool checkpoint) {
  st_ = Statements();
  if (db_ != nullptr) {
    if (!checkpoint) sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    // With every statement finalized, close succeeds; its final checkpoint may fail (an I/O
    // error), which leaves the WAL in place for the next open to recover.
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
}

Status OutboxImpl::EnsureOpenLocked() {
  if (db_ != nullptr && !broken_) return Status::Ok();
  CloseConnectionLocked();
  Status s = OpenConnectionLocked();
  if (!s.ok()) {
    broken_ = true;
    return s;
  }
  s = LoadCountsLocked();
  if (!s.ok()) {
    broken_ = true;
    return s;
  }
  spdlog::info("outbox {} reopened after an error; next sequence {}", options_.path, next_seq_);
  return Status::Ok();
}

Status OutboxImpl::PrepareLocked() {
  struct Def {
    Stmt* stmt;
    const char* sql;
  };
  const Def defs[] = {
      {&st_.begin, "BEGIN IMMEDIATE"},
      {&st_.commit, "COMMIT"},
      {&st_.rollback, "ROLLBACK"},
      {&st_.insert_fix, "INSERT INTO fixes(seq, ts_ms, ts_src, body) VALUES(?1, ?2, ?3, ?4)"},
      {&st_.insert_event,
       "INSERT INTO events(seq, cls, ts_ms, ts_src, body) VALUES(?1, ?2, ?3, ?4, ?5)"},
      {&st_.update_next_seq, "UPDATE meta SET value = ?1 WHERE key = 'next_seq'"},
      {&st_.page_count, "PRAGMA page_count"},
      {&st_.freelist_count, "PRAGMA freelist_count"},
      {&st_.oldest_fixes, "SELECT seq FROM fixes ORDER BY seq LIMIT ?1"},
      {&st_.oldest_health, "SELECT seq FROM events WHERE cls = 2 ORDER BY seq LIMIT ?1"},
      {&st_.delete_fix, "DELETE FROM fixes WHERE seq = ?1"},
      {&st_.delete_event, "DELETE FROM events WHERE seq = ?1 RETURNING cls"},
      {&st_.claim_protected,
       "SELECT seq, cls, ts_ms, ts_src, body FROM events WHERE cls IN (3, 4) ORDER BY seq"},
      {&st_.claim_health,
       "SELECT seq, cls, ts_ms, ts_src, body FROM events WHERE cls = 2 ORDER BY seq"},
      {&st_.claim_fixes,
       "SELECT seq, 1, ts_ms, ts_src, body FROM fixes WHERE seq >= ?1 ORDER BY seq"},
      {&st_.claim_newest_fix, "SELECT seq, 1, ts_ms, ts_src, body FROM fixes ORDER BY seq DESC"},
      {&st_.oldest_fix_ts, "SELECT ts_ms FROM fixes ORDER BY seq LIMIT 1"},
      {&st_.oldest_event_ts, "SELECT ts_ms FROM events ORDER BY seq LIMIT 1"},
  };
  for (const Def& def : defs) {
    auto stmt = Stmt::Prepare(db_, def.sql, std::string("prepare \"") + def.sql + "\"");
    if (!stmt.ok()) return stmt.status();
    *def.stmt = std::move(stmt).value();
  }
  fix_scan_from_ = 0;
  return Status::Ok();
}

Status OutboxImpl::LoadCountsLocked() {
  std::fill(std::begin(by_class_), std::end(by_class_), 0);
  auto fixes = QueryInt(db_, "SELECT count(*) FROM fixes", "count fixes in " + options_.path);
  if (!fixes.ok()) return fixes.status();
  by_class_[static_cast<int>(EventClass::kFix)] = static_cast<uint64_t>(*fixes);
  sqlite3_stmt* stmt = nullptr;
  int rc =
      sqlite3_prepare_v2(db_, "SELECT cls, count(*) FROM events GROUP BY cls", -1, &stmt, nullptr);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      int64_t cls = sqlite3_column_int64(stmt, 0);
      if (cls >= 1 && cls <= 4)
        by_class_[cls] = static_cast<uint64_t>(sqlite3_column_int64(stmt, 1));
    }
  }
  Status s =
      rc == SQLITE_DONE ? Status::Ok() : SqliteStatus(db_, rc, "count events in " + options_.path);
  sqlite3_finalize(stmt);
  return s;
}

// Makes sure the lease covers every sequence below end_seq, writing a new one if not.
Status OutboxImpl::ExtendLeaseLocked(uint64_t end_seq) {
  if (end_seq <= lease_) return Status::Ok();
  uint64_t lease = end_seq + kLeaseBlock;
  Status s = internal::WriteSeqLease(lease_path_, lease);
  if (!s.ok()) {
    return Status::IOError("could not reserve sequences up to " + std::to_string(lease) + ": " +
                           s.message());
  }
  lease_ = lease;
  return Status::Ok();
}

void OutboxImpl::NoteErrorLocked(const Status& s) {
  if (s.IsIOError() || s.IsCorruption()) {
    if (!broken_) {
      spdlog::warn("outbox {}: {}; reopening the connection before the next operation",
                   options_.path, s.ToString());
    }
    broken_ = true;
  }
}

void OutboxImpl::RaiseAlarmLocked(const std::string& alarm) {
  spdlog::error("outbox {}: {}", options_.path, alarm);
  if (alarms_.size() == kMaxAlarms) alarms_.erase(alarms_.begin());
  alarms_.push_back(alarm);
}

// One event lost to this process is better than all of them: the others go on being sent, this
// one stays in the file (a restart with the right key file sends it) and is named in the log.
void OutboxImpl::NoteUnopenableLocked(const StoredEvent& e, const Status& why) {
  unopenable_.insert(e.seq);
  ++unopenable_count_;
  std::string what = std::string(ToString(e.cls)) + " event " + std::to_string(e.seq) +
                     " cannot be opened: " + why.message();
  if (unopenable_count_ == 1) {
    RaiseAlarmLocked("sealed events cannot be opened (the first: " + what +
                     "); they stay in the outbox, unsent, and the others go on; a restart with "
                     "the data key that sealed them sends them (count: outbox.unopenable)");
  } else if (unopenable_count_ <= kUnopenableLogFirst ||
             unopenable_count_ % kUnopenableLogEvery == 0) {
    spdlog::error("outbox {}: {}; kept, not sent ({} such events since open)", options_.path, what,
                  unopenable_count_);
  }
}

Status OutboxImpl::StepDone(Stmt& stmt, std::string_view what) {
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
  }
  Status s = rc == SQLITE_DONE ? Status::Ok() : SqliteStatus(db_, rc, what);
  stmt.Reset();
  return s;
}

Status OutboxImpl::RollbackLocked() {
  if (db_ == nullptr || sqlite3_get_autocommit(db_) != 0) return Status::Ok();
  Status s = StepDone(st_.rollback, "roll back on " + options_.path);
  if (!s.ok()) broken_ = true;
  return s;
}

int OutboxImpl::WalHook(void* arg, sqlite3*, const char*, int frames) {
  static_cast<OutboxImpl*>(arg)->wal_frames_ = frames;
  return SQLITE_OK;
}

void OutboxImpl::MaybeCheckpointLocked() {
  if (db_ == nullptr || broken_ || wal_frames_ < kCheckpointFrames) return;
  wal_frames_ = 0;
  int log_frames = 0, done_frames = 0;
  int rc =
      sqlite3_wal_checkpoint_v2(db_, "main", SQLITE_CHECKPOINT_PASSIVE, &log_frames, &done_frames);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
    // The WAL keeps every frame until a checkpoint succeeds: nothing is lost, the WAL grows.
    spdlog::warn("outbox {}: checkpoint failed: {}; retried after a later commit", options_.path,
                 SqliteStatus(db_, rc, "checkpoint").message());
  }
}

Result<uint64_t> OutboxImpl::PageCountLocked() {
  int rc = sqlite3_step(st_.page_count.get());
  uint64_t pages =
      rc == SQLITE_ROW ? static_cast<uint64_t>(sqlite3_column_int64(st_.page_count.get(), 0)) : 0;
  if (rc != SQLITE_ROW) {
    Status s = SqliteStatus(db_, rc, "read page count of " + options_.path);
    st_.page_count.Reset();
    return s;
  }
  st_.page_count.Reset();
  return pages;
}

Result<uint64_t> OutboxImpl::LiveBytesLocked() {
  auto pages = PageCountLocked();
  if (!pages.ok()) return pages.status();
  int rc = sqlite3_step(st_.freelist_count.get());
  if (rc != SQLITE_ROW) {
    Status s = SqliteStatus(db_, rc, "read free page count of " + options_.path);
    st_.freelist_count.Reset();
    return s;
  }
  uint64_t free_pages = static_cast<uint64_t>(sqlite3_column_int64(st_.freelist_count.get(), 0));
  st_.freelist_count.Reset();
  return (*pages - std::min(*pages, free_pages)) * page_size_;
}

uint64_t OutboxImpl::EffectiveQuotaLocked(uint64_t page_count) {
  uint64_t quota = options_.quota_bytes;
  bool keep_size = disk_full_hint_;
  struct statvfs fs {};
  if (!keep_size && ::statvfs(DirOf(options_.path).c_str(), &fs) == 0) {
    keep_size = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize < options_.min_free_bytes;
  }
  if (keep_size) quota = std::min(quota, page_count * page_size_);
  return quota;
}

// Deletes every second row among the oldest `rows` that `select` yields (all of them if only one
// is left). Returns false when `select` found nothing.
Result<bool> OutboxImpl::ThinOldestLocked(Stmt& select, Stmt& del, int64_t rows,
                                          uint64_t* deleted) {
  std::vector<int64_t> seqs;
  sqlite3_bind_int64(select.get(), 1, rows);
  int rc;
  while ((rc = sqlite3_step(select.get())) == SQLITE_ROW) {
    seqs.push_back(sqlite3_column_int64(select.get(), 0));
  }
  select.Reset();
  if (rc != SQLITE_DONE) return SqliteStatus(db_, rc, "select rows to evict");
  if (seqs.empty()) return false;
  for (size_t i = seqs.size() == 1 ? 0 : 1; i < seqs.size(); i += 2) {
    sqlite3_bind_int64(del.get(), 1, seqs[i]);
    Status s = StepDone(del, "evict row " + std::to_string(seqs[i]));
    if (!s.ok()) return s;
    ++*deleted;
  }
  return true;
}

// One eviction pass: thins fixes, or health events when no fix is left. Returns false when only
// protected events are left.
Result<bool> OutboxImpl::EvictPassLocked(EvictionDelta* delta) {
  auto chunk = [](uint64_t count) {
    return std::clamp(static_cast<int64_t>(count / 10), kEvictionChunkMin, kEvictionChunkMax);
  };
  uint64_t fixes = by_class_[static_cast<int>(EventClass::kFix)];
  auto thinned = ThinOldestLocked(st_.oldest_fixes, st_.delete_fix,
                                  chunk(fixes - std::min(fixes, delta->fixes)), &delta->fixes);
  if (!thinned.ok() || *thinned) return thinned;
  uint64_t health = by_class_[static_cast<int>(EventClass::kHealth)];
  return ThinOldestLocked(st_.oldest_health, st_.delete_event,
                          chunk(health - std::min(health, delta->health)), &delta->health);
}

Status OutboxImpl::AppendTxnLocked(std::vector<Pending>& batch, bool protected_only,
                                   std::vector<Result<uint64_t>>& results) {
  uint64_t need = 0;
  size_t unprotected = 0;
  for (const Pending& p : batch) {
    if (!p.invalid.ok()) continue;
    if (!IsProtected(p.event.cls)) {
      ++unprotected;
      if (protected_only) continue;
    }
    need += QuotaCost(p.event);
  }
  if (need == 0 && !protected_only) return Status::Ok();

  Status s = StepDone(st_.begin, "begin append on " + options_.path);
  if (!s.ok()) return s;

  EvictionDelta delta;
  bool refuse = protected_only;
  uint64_t live = 0, quota = 0;
  uint64_t assigned = 0;  // sequences this transaction took; burned if it fails
  auto fail = [&](Status cause) {
    Status rb = RollbackLocked();
    (void)rb;
    burned_ += assigned;
    return cause;
  };

  auto pages = PageCountLocked();
  if (!pages.ok()) return fail(pages.status());
  auto live_bytes = LiveBytesLocked();
  if (!live_bytes.ok()) return fail(live_bytes.status());
  live = *live_bytes;
  quota = EffectiveQuotaLocked(*pages);
  if (live + need > quota) {
    const uint64_t target = quota - quota / 32;
    bool evictable = true;
    for (int pass = 0; pass < kMaxEvictionPasses && live + need > target; ++pass) {
      auto more = EvictPassLocked(&delta);
      if (!more.ok()) return fail(more.status());
      if (!*more) {
        evictable = false;
        break;
      }
      live_bytes = LiveBytesLocked();
      if (!live_bytes.ok()) return fail(live_bytes.status());
      live = *live_bytes;
    }
    if (!evictable && live + need > quota && unprotected > 0) refuse = true;
  }

  // Assign sequences and make sure the lease covers them before anything can commit.
  size_t accepted = 0;
  for (const Pending& p : batch) {
    if (p.invalid.ok() && !(refuse && !IsProtected(p.event.cls))) ++accepted;
  }
  if (accepted == 0 && delta.fixes == 0 && delta.health == 0) {
    (void)RollbackLocked();
  } else {
    s = ExtendLeaseLocked(next_seq_ + accepted);
    if (!s.ok()) return fail(s);
    const uint64_t first = next_seq_;
    // Burned even if the commit fails: the rows might reach the disk after all.
    next_seq_ += accepted;
    assigned = accepted;
    uint64_t seq = first;
    for (const Pending& p : batch) {
      if (!p.invalid.ok() || (refuse && !IsProtected(p.event.cls))) continue;
      const NewEvent& e = p.event;
      Stmt& ins = e.cls == EventClass::kFix ? st_.insert_fix : st_.insert_event;
      int col = 1;
      sqlite3_bind_int64(ins.get(), col++, static_cast<int64_t>(seq));
      if (e.cls != EventClass::kFix) sqlite3_bind_int(ins.get(), col++, static_cast<int>(e.cls));
      sqlite3_bind_int64(ins.get(), col++, e.ts_ms);
      sqlite3_bind_int(ins.get(), col++, static_cast<int>(e.ts_src));
      sqlite3_bind_blob(ins.get(), col++, e.body.data(), static_cast<int>(e.body.size()),
                        SQLITE_STATIC);
      s = StepDone(ins, std::string("insert ") + ToString(e.cls) + " event into " + options_.path);
      if (!s.ok()) return fail(s);
      ++seq;
    }
    sqlite3_bind_int64(st_.update_next_seq.get(), 1, static_cast<int64_t>(next_seq_));
    s = StepDone(st_.update_next_seq, "update next sequence in " + options_.path);
    if (!s.ok()) return fail(s);
    s = StepDone(st_.commit, "commit " + std::to_string(accepted) + " events to " + options_.path);
    if (!s.ok()) return fail(s);
    ++commits_;

    seq = first;
    for (size_t i = 0; i < batch.size(); ++i) {
      const Pending& p = batch[i];
      if (!p.invalid.ok() || (refuse && !IsProtected(p.event.cls))) continue;
      results[i] = seq++;
      ++by_class_[static_cast<int>(p.event.cls)];
    }
    appends_ += accepted;
    by_class_[static_cast<int>(EventClass::kFix)] -= delta.fixes;
    by_class_[static_cast<int>(EventClass::kHealth)] -= delta.health;
    evicted_ += delta.fixes + delta.health;
    if (delta.fixes + delta.health > 0) {
      spdlog::debug("outbox {}: evicted {} fixes and {} health events to stay within {}",
                    options_.path, delta.fixes, delta.health, FormatBytes(quota));
    }
  }

  if (refuse) {
    size_t refused_now = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      const Pending& p = batch[i];
      if (!p.invalid.ok() || IsProtected(p.event.cls)) continue;
      ++refused_now;
      results[i] = Status::NoSpace(
          std::string(ToString(p.event.cls)) + " event refused: outbox " + options_.path +
          (protected_only ? " cannot grow, the file system is full"
                          : " is full (" + FormatBytes(live) + " live of " + FormatBytes(quota) +
                                ") with only delivery and proof-of-delivery events left") +
          "; " + std::to_string(refused_ + refused_now) + " refused since open");
    }
    refused_ += refused_now;
    if (refused_now > 0 && !full_episode_) {
      full_episode_ = true;
      RaiseAlarmLocked(std::string("outbox full: ") +
                       (protected_only
                            ? "the file system is full"
                            : FormatBytes(live) + " live of " + FormatBytes(quota) +
                                  " with only delivery and proof-of-delivery events left") +
                       "; refusing fixes and health events until space is freed (delivery and "
                       "proof-of-delivery events are still stored)");
    }
  } else if (unprotected > 0 && full_episode_) {
    full_episode_ = false;
    spdlog::info("outbox {}: space available again, accepting fixes and health events",
                 options_.path);
  }
  return Status::Ok();
}

std::vector<Result<uint64_t>> OutboxImpl::CommitBatch(std::vector<Pending>& batch) {
  std::vector<Result<uint64_t>> results(batch.size(), Status::IOError("not processed"));
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].invalid.ok()) results[i] = batch[i].invalid;
  }
  std::lock_guard<std::mutex> lk(db_mu_);
  auto fail_all = [&](const Status& s) {
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].invalid.ok()) continue;
      std::string msg = std::string(ToString(batch[i].event.cls)) +
                        " event not stored (nothing of this batch was committed): " + s.message();
      switch (s.code()) {
        case Status::Code::kNoSpace:
          results[i] = Status::NoSpace(std::move(msg));
          break;
        case Status::Code::kCorruption:
          results[i] = Status::Corruption(std::move(msg));
          break;
        case Status::Code::kBusy:
          results[i] = Status::Busy(std::move(msg));
          break;
        default:
          results[i] = Status::IOError(std::move(msg));
          break;
      }
    }
  };

  Status s = EnsureOpenLocked();
  if (!s.ok()) {
    fail_all(Status::IOError("outbox unavailable: " + s.message()));
    return results;
  }
  s = AppendTxnLocked(batch, false, results);
  if (s.IsNoSpace()) {
    // The file system is full (SQLITE_FULL): stop growing the file, evict into free pages.
    if (!disk_full_hint_) {
      spdlog::warn("outbox {}: file system full ({}); evicting fixes, no longer growing the file",
                   options_.path, s.message());
    }
    disk_full_hint_ = true;
    s = AppendTxnLocked(batch, false, results);
    if (s.IsNoSpace()) s = AppendTxnLocked(batch, true, results);
  } else if (s.ok() && disk_full_hint_) {
    struct statvfs fs {};
    if (::statvfs(DirOf(options_.path).c_str(), &fs) == 0 &&
        static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize >= options_.min_free_bytes) {
      disk_full_hint_ = false;
    }
  }
  if (!s.ok()) {
    NoteErrorLocked(s);
    fail_all(s);
  }
  return results;
}

void OutboxImpl::Enqueue(Pending pending) {
  {
    std::lock_guard<std::mutex> lk(queue_mu_);
    queue_.push_back(std::move(pending));
  }
  queue_cv_.notify_one();
}

void OutboxImpl::WriterLoop() {
  const size_t max_events = static_cast<size_t>(options_.group_commit_max_events);
  std::vector<Pending> batch;
  for (;;) {
    batch.clear();
    {
      std::unique_lock<std::mutex> lk(queue_mu_);
      queue_cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued was completed
      if (queue_.front().barrier) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      } else {
        size_t events = 0;
        while (!queue_.empty() && !queue_.front().barrier && events < max_events) {
          if (queue_.front().invalid.ok()) ++events;
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
    }
    if (batch.front().barrier) {
      batch.front().done(uint64_t{0});
      continue;
    }
    std::vector<Result<uint64_t>> results = CommitBatch(batch);
    for (size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(results[i]));
    std::lock_guard<std::mutex> lk(db_mu_);
    MaybeCheckpointLocked();
  }
}

Result<uint64_t> OutboxImpl::Append(const NewEvent& event) {
  std::promise<Result<uint64_t>> promise;
  auto future = promise.get_future();
  AppendAsync(event, [&promise](Result<uint64_t> r) { promise.set_value(std::move(r)); });
  return future.get();
}

void OutboxImpl::AppendAsync(NewEvent event, std::function<void(Result<uint64_t>)> done) {
  Pending p;
  p.invalid = Validate(event);
  // Sealed here, on the caller's thread, so that the writer's transaction does not wait for it.
  if (p.invalid.ok() && options_.data_key && IsSealedClass(event.cls)) {
    Result<std::string> sealed = options_.data_key->Seal(event.body, SealedBodyAad(event.cls));
    if (sealed.ok()) {
      event.body = std::move(sealed).value();
    } else {
      p.invalid = Status::IOError(std::string(ToString(event.cls)) +
                                  " event not stored: " + sealed.status().message());
    }
  }
  p.event = std::move(event);
  p.done = std::move(done);
  Enqueue(std::move(p));
}

Status OutboxImpl::Flush() {
  std::promise<void> promise;
  auto future = promise.get_future();
  Pending p;
  p.barrier = true;
  p.done = [&promise](Result<uint64_t>) { promise.set_value(); };
  Enqueue(std::move(p));
  future.wait();
  return Status::Ok();
}

Status OutboxImpl::ReadRows(Stmt& stmt, size_t max_events, std::optional<uint64_t> skip,
                            std::vector<StoredEvent>* out, uint64_t* last_seq) {
  int rc = SQLITE_DONE;
  if (last_seq != nullptr) *last_seq = 0;
  while (out->size() < max_events && (rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    auto seq = static_cast<uint64_t>(sqlite3_column_int64(stmt.get(), 0));
    if (last_seq != nullptr) *last_seq = seq;
    if (claimed_.count(seq) != 0 || unopenable_.count(seq) != 0 || (skip && *skip == seq)) {
      continue;
    }
    StoredEvent e;
    e.seq = seq;
    e.cls = static_cast<EventClass>(sqlite3_column_int(stmt.get(), 1));
    e.ts_ms = sqlite3_column_int64(stmt.get(), 2);
    e.ts_src = static_cast<hal::TimeSource>(sqlite3_column_int(stmt.get(), 3));
    const void* body = sqlite3_column_blob(stmt.get(), 4);
    int body_len = sqlite3_column_bytes(stmt.get(), 4);
    if (body != nullptr && body_len > 0) e.body.assign(static_cast<const char*>(body), body_len);
    if (IsSealedClass(e.cls) && IsSealed(e.body)) {
      Result<std::string> opened = OpenStoredBody(options_.data_key.get(), e.cls, e.body);
      if (!opened.ok()) {
        NoteUnopenableLocked(e, opened.status());
        continue;
      }
      e.body = std::move(opened).value();
    }
    out->push_back(std::move(e));
  }
  Status s = (rc == SQLITE_ROW || rc == SQLITE_DONE)
                 ? Status::Ok()
                 : SqliteStatus(db_, rc, "read events to claim from " + options_.path);
  stmt.Reset();
  return s;
}

Result<std::vector<StoredEvent>> OutboxImpl::Claim(size_t max_events, bool newest_fix_first) {
  std::vector<StoredEvent> out;
  if (max_events == 0) return out;
  std::lock_guard<std::mutex> lk(db_mu_);
  Status s = EnsureOpenLocked();
  if (!s.ok()) return Status::IOError("claim: outbox unavailable: " + s.message());
  std::optional<uint64_t> newest;
  if (newest_fix_first) {
    s = ReadRows(st_.claim_newest_fix, 1, std::nullopt, &out);
    if (s.ok() && !out.empty()) newest = out.front().seq;
  }
  if (s.ok()) s = ReadRows(st_.claim_protected, max_events, std::nullopt, &out);
  if (s.ok()) s = ReadRows(st_.claim_health, max_events, std::nullopt, &out);
  uint64_t last_fix_seq = 0;
  if (s.ok()) {
    sqlite3_bind_int64(st_.claim_fixes.get(), 1, static_cast<int64_t>(fix_scan_from_));
    s = ReadRows(st_.claim_fixes, max_events, newest, &out, &last_fix_seq);
  }
  if (!s.ok()) {
    NoteErrorLocked(s);
    return s;
  }
  for (const StoredEvent& e : out) claimed_.insert(e.seq);
  // Every fix the walk stepped over was claimed already or is claimed now (the newest one
  // included): the next walk can start after the last.
  if (last_fix_seq != 0) fix_scan_from_ = last_fix_seq + 1;
  return out;
}

Status OutboxImpl::Ack(std::span<const uint64_t> seqs) {
  if (seqs.empty()) return Status::Ok();
  std::lock_guard<std::mutex> lk(db_mu_);
  // Whatever happens, these are no longer in flight: on failure they are sent again.
  for (uint64_t seq : seqs) claimed_.erase(seq);
  const uint64_t lowest = *std::min_element(seqs.begin(), seqs.end());
  Status s = EnsureOpenLocked();
  if (!s.ok()) {
    fix_scan_from_ = std::min(fix_scan_from_, lowest);
    return Status::IOError("ack: outbox unavailable, events kept: " + s.message());
  }
  s = StepDone(st_.begin, "begin ack on " + options_.path);
  uint64_t removed[5] = {};
  for (size_t i = 0; s.ok() && i < seqs.size(); ++i) {
    auto seq = static_cast<int64_t>(seqs[i]);
    sqlite3_bind_int64(st_.delete_fix.get(), 1, seq);
    s = StepDone(st_.delete_fix, "delete acked fix");
    if (!s.ok()) break;
    if (sqlite3_changes(db_) > 0) {
      ++removed[static_cast<int>(EventClass::kFix)];
      continue;
    }
    sqlite3_bind_int64(st_.delete_event.get(), 1, seq);
    int rc;
    while ((rc = sqlite3_step(st_.delete_event.get())) == SQLITE_ROW) {
      int cls = sqlite3_column_int(st_.delete_event.get(), 0);
      if (cls >= 1 && cls <= 4) ++removed[cls];
    }
    if (rc != SQLITE_DONE) s = SqliteStatus(db_, rc, "delete acked event");
    st_.delete_event.Reset();
  }
  if (s.ok()) s = StepDone(st_.commit, "commit ack of " + std::to_string(seqs.size()) + " events");
  if (!s.ok()) {
    (void)RollbackLocked();
    NoteErrorLocked(s);
    fix_scan_from_ = std::min(fix_scan_from_, lowest);
    std::string msg =
        "ack of " + std::to_string(seqs.size()) +
        " events not recorded, the events are kept and will be sent again: " + s.message();
    if (s.IsNoSpace()) return Status::NoSpace(std::move(msg));
    return Status::IOError(std::move(msg));
  }
  ++commits_;
  for (int c = 1; c <= 4; ++c) by_class_[c] -= std::min(by_class_[c], removed[c]);
  MaybeCheckpointLocked();
  return Status::Ok();
}

void OutboxImpl::Release(std::span<const uint64_t> seqs) {
  std::lock_guard<std::mutex> lk(db_mu_);
  for (uint64_t seq : seqs) {
    claimed_.erase(seq);
    fix_scan_from_ = std::min(fix_scan_from_, seq);
  }
}

Result<uint64_t> OutboxImpl::CorrectTime(int64_t offset_ms) {
  // Everything appended before this call must be committed, so that it is corrected too.
  Status s = Flush();
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lk(db_mu_);
  s = EnsureOpenLocked();
  if (!s.ok()) return Status::IOError("correct time: outbox unavailable: " + s.message());
  uint64_t corrected = 0;
  s = StepDone(st_.begin, "begin time correction on " + options_.path);
  for (const char* table : {"fixes", "events"}) {
    if (!s.ok()) break;
    std::string sql = std::string("UPDATE ") + table +
                      " SET ts_ms = ts_ms + ?1, ts_src = ?2 WHERE seq >= ?3 AND ts_src = ?4";
    auto stmt = Stmt::Prepare(db_, sql, "prepare time correction");
    if (!stmt.ok()) {
      s = stmt.status();
      break;
    }
    sqlite3_bind_int64(stmt->get(), 1, offset_ms);
    sqlite3_bind_int(stmt->get(), 2, static_cast<int>(hal::TimeSource::kGnssCorrected));
    sqlite3_bind_int64(stmt->get(), 3, static_cast<int64_t>(first_seq_));
    sqlite3_bind_int(stmt->get(), 4, static_cast<int>(hal::TimeSource::kMonotonic));
    s = StepDone(*stmt, std::string("correct times in ") + table);
    if (s.ok()) corrected += static_cast<uint64_t>(sqlite3_changes64(db_));
  }
  if (s.ok()) s = StepDone(st_.commit, "commit time correction on " + options_.path);
  if (!s.ok()) {
    (void)RollbackLocked();
    NoteErrorLocked(s);
    return Status::IOError("time correction not recorded, times unchanged: " + s.message());
  }
  ++commits_;
  MaybeCheckpointLocked();
  return corrected;
}

OutboxStats OutboxImpl::Stats() {
  std::lock_guard<std::mutex> lk(db_mu_);
  OutboxStats st;
  for (int c = 1; c <= 4; ++c) {
    st.by_class[c] = by_class_[c];
    st.events += by_class_[c];
  }
  st.next_seq = next_seq_;
  st.commits = commits_;
  st.appends = appends_;
  st.evicted = evicted_;
  st.refused = refused_;
  st.burned = burned_;
  st.unopenable = unopenable_count_;
  st.alarms = alarms_;
  if (!EnsureOpenLocked().ok()) return st;
  if (auto live = LiveBytesLocked(); live.ok()) st.bytes = *live;
  std::optional<int64_t> oldest;
  for (Stmt* stmt : {&st_.oldest_fix_ts, &st_.oldest_event_ts}) {
    if (sqlite3_step(stmt->get()) == SQLITE_ROW) {
      int64_t ts = sqlite3_column_int64(stmt->get(), 0);
      oldest = oldest ? std::min(*oldest, ts) : ts;
    }
    stmt->Reset();
  }
  st.oldest_ts_ms = oldest ? static_cast<uint64_t>(std::max<int64_t>(*oldest, 0)) : 0;
  return st;
}

}  // namespace

Result<std::unique_ptr<Outbox>> Outbox::Open(const OutboxOptions& options) {
  auto impl = std::make_unique<OutboxImpl>(options);
  Status s = impl->Init();
  if (!s.ok()) return s;
  impl->StartWriter();
  return std::unique_ptr<Outbox>(std::move(impl));
}

}  // namespace waybill::sync
