#include "waybill/sync/outbox_reader.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "outbox_schema.h"
#include "seq_lease.h"
#include "sqlite_util.h"
#include "waybill/sync/data_key.h"

namespace waybill::sync {
namespace {

using internal::QueryInt;
using internal::SqliteStatus;

class OutboxReaderImpl final : public OutboxReader {
 public:
  OutboxReaderImpl(std::string path, sqlite3* db, std::shared_ptr<const DataKey> data_key)
      : path_(std::move(path)), db_(db), data_key_(std::move(data_key)) {}
  ~OutboxReaderImpl() override { sqlite3_close_v2(db_); }

  Result<OutboxSummary> Summary() override;
  Status ForEach(std::optional<EventClass> cls, uint64_t limit,
                 const std::function<bool(const StoredEvent&)>& fn) override;

 private:
  // A read transaction: one snapshot for several statements, ended on scope exit.
  class Snapshot {
   public:
    explicit Snapshot(sqlite3* db) : db_(db) {
      ok_ = sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK;
    }
    ~Snapshot() {
      if (ok_) sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
    }
    Snapshot(const Snapshot&) = delete;
    Snapshot& operator=(const Snapshot&) = delete;

   private:
    sqlite3* db_;
    bool ok_ = false;
  };

  const std::string path_;
  sqlite3* db_;
  const std::shared_ptr<const DataKey> data_key_;
};

Result<OutboxSummary> OutboxReaderImpl::Summary() {
  Snapshot snap(db_);
  OutboxSummary s;
  auto q = [&](const char* sql) { return QueryInt(db_, sql, std::string(sql) + " on " + path_); };
  auto version = q("PRAGMA user_version");
  if (!version.ok()) return version.status();
  s.schema_version = *version;
  auto page_size = q("PRAGMA page_size");
  auto pages = q("PRAGMA page_count");
  auto free_pages = q("PRAGMA freelist_count");
  auto next = q("SELECT value FROM meta WHERE key = 'next_seq'");
  auto fixes = q("SELECT count(*) FROM fixes");
  for (auto* r : {&page_size, &pages, &free_pages, &next, &fixes}) {
    if (!r->ok()) return r->status();
  }
  s.page_size = static_cast<uint64_t>(*page_size);
  s.file_bytes = static_cast<uint64_t>(*pages) * s.page_size;
  s.live_bytes = static_cast<uint64_t>(*pages - *free_pages) * s.page_size;
  s.next_seq = static_cast<uint64_t>(*next);
  s.by_class[static_cast<int>(EventClass::kFix)] = static_cast<uint64_t>(*fixes);

  sqlite3_stmt* stmt = nullptr;
  int rc =
      sqlite3_prepare_v2(db_, "SELECT cls, count(*) FROM events GROUP BY cls", -1, &stmt, nullptr);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      int cls = sqlite3_column_int(stmt, 0);
      if (cls >= 1 && cls <= 4)
        s.by_class[cls] = static_cast<uint64_t>(sqlite3_column_int64(stmt, 1));
    }
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return SqliteStatus(db_, rc, "count events in " + path_);
  for (int c = 1; c <= 4; ++c) s.events += s.by_class[c];

  rc = sqlite3_prepare_v2(db_,
                          "SELECT min(lo), max(hi), min(t0), max(t1) FROM ("
                          " SELECT min(seq) lo, max(seq) hi, min(ts_ms) t0, max(ts_ms) t1"
                          " FROM fixes UNION ALL"
                          " SELECT min(seq), max(seq), min(ts_ms), max(ts_ms) FROM events)",
                          -1, &stmt, nullptr);
  if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
      s.min_seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 0));
      s.max_seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 1));
      s.oldest_ts_ms = sqlite3_column_int64(stmt, 2);
      s.newest_ts_ms = sqlite3_column_int64(stmt, 3);
    }
    rc = SQLITE_DONE;
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return SqliteStatus(db_, rc, "read sequence range of " + path_);

  struct stat wal {};
  if (::stat((path_ + "-wal").c_str(), &wal) == 0) s.wal_bytes = static_cast<uint64_t>(wal.st_size);
  if (auto lease = internal::ReadSeqLease(path_ + ".seq"); lease.ok() && lease->has_value()) {
    s.lease = **lease;
  }
  return s;
}

Status OutboxReaderImpl::ForEach(std::optional<EventClass> cls, uint64_t limit,
                                 const std::function<bool(const StoredEvent&)>& fn) {
  Snapshot snap(db_);
  std::string sql;
  if (!cls) {
    sql =
        "SELECT seq, 1, ts_ms, ts_src, body FROM fixes UNION ALL "
        "SELECT seq, cls, ts_ms, ts_src, body FROM events ORDER BY 1";
  } else if (*cls == EventClass::kFix) {
    sql = "SELECT seq, 1, ts_ms, ts_src, body FROM fixes ORDER BY seq";
  } else {
    sql = "SELECT seq, cls, ts_ms, ts_src, body FROM events WHERE cls = " +
          std::to_string(static_cast<int>(*cls)) + " ORDER BY seq";
  }
  if (limit > 0) sql += " LIMIT " + std::to_string(limit);
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      StoredEvent e;
      e.seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 0));
      e.cls = static_cast<EventClass>(sqlite3_column_int(stmt, 1));
      e.ts_ms = sqlite3_column_int64(stmt, 2);
      e.ts_src = static_cast<hal::TimeSource>(sqlite3_column_int(stmt, 3));
      const void* body = sqlite3_column_blob(stmt, 4);
      int len = sqlite3_column_bytes(stmt, 4);
      if (body != nullptr && len > 0) e.body.assign(static_cast<const char*>(body), len);
      if (data_key_ && IsSealed(e.body)) {
        if (Result<std::string> opened = OpenStoredBody(data_key_.get(), e.cls, e.body);
            opened.ok()) {
          e.body = std::move(opened).value();
        }
      }
      if (!fn(e)) {
        rc = SQLITE_DONE;
        break;
      }
    }
  }
  Status s = rc == SQLITE_DONE ? Status::Ok() : SqliteStatus(db_, rc, "read events of " + path_);
  sqlite3_finalize(stmt);
  return s;
}

}  // namespace

Result<std::unique_ptr<OutboxReader>> OutboxReader::Open(const std::string& path,
                                                         int busy_timeout_ms,
                                                         std::shared_ptr<const DataKey> data_key) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::NotFound("outbox " + path + ": " + std::strerror(errno));
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status s = SqliteStatus(db, rc, "open outbox " + path + " read-only");
    sqlite3_close_v2(db);
    return s;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, busy_timeout_ms);
  auto app_id = QueryInt(db, "PRAGMA application_id", "read application id of " + path);
  if (!app_id.ok()) {
    sqlite3_close_v2(db);
    return app_id.status();
  }
  if (*app_id != internal::kOutboxApplicationId) {
    sqlite3_close_v2(db);
    return Status::FailedPrecondition(path + " is not a Waybill outbox (application_id " +
                                      std::to_string(*app_id) + ")");
  }
  return std::unique_ptr<OutboxReader>(new OutboxReaderImpl(path, db, std::move(data_key)));
}

}  // namespace waybill::sync
