// Small RAII helpers over the SQLite C API, private to waybill_sync.
//
// Every error becomes a Status that names the operation, the file and SQLite's own message, and
// keeps the class of failure (kNoSpace for SQLITE_FULL, kCorruption for SQLITE_CORRUPT and
// SQLITE_NOTADB, kBusy for SQLITE_BUSY/LOCKED, kIOError for the rest) so that callers can route it.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "waybill/status.h"

namespace waybill::sync::internal {

// "insert into the outbox at /data/outbox.db: disk I/O error (SQLite error 778)".
Status SqliteStatus(sqlite3* db, int rc, std::string_view what);

// True for the result codes that mean "the file is damaged": SQLITE_CORRUPT, SQLITE_NOTADB.
bool IsCorruptCode(int rc);

// A prepared statement, finalized on destruction. Not thread-safe: it belongs to a connection,
// and the connection's owner serialises its use.
class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Stmt(Stmt&& other) noexcept : stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Stmt& operator=(Stmt&& other) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  // Prepares `sql` on `db`; kept for the life of the connection (SQLITE_PREPARE_PERSISTENT).
  static Result<Stmt> Prepare(sqlite3* db, std::string_view sql, std::string_view what);

  sqlite3_stmt* get() const { return stmt_; }
  explicit operator bool() const { return stmt_ != nullptr; }
  // Resets the statement and clears its bindings, ready for the next use.
  void Reset();

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// Runs one or more SQL statements that return no rows.
Status Exec(sqlite3* db, std::string_view sql, std::string_view what);

// Runs a statement returning one integer in its first row (PRAGMA page_count, count(*)).
Result<int64_t> QueryInt(sqlite3* db, std::string_view sql, std::string_view what);

}  // namespace waybill::sync::internal
