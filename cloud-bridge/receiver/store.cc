#include "store.h"

#include <algorithm>
#include <cstdint>

namespace waybill::receiver {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS requests(
  key TEXT PRIMARY KEY,
  path TEXT NOT NULL,
  received_unix_ms INTEGER NOT NULL,
  body TEXT NOT NULL,
  events_hash INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events(
  ord INTEGER PRIMARY KEY,
  path TEXT NOT NULL,
  device TEXT NOT NULL,
  seq INTEGER NOT NULL,
  key TEXT NOT NULL,
  duplicate INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_id ON events(path, device, seq);
CREATE TABLE IF NOT EXISTS photos(
  sha256 TEXT PRIMARY KEY,
  device TEXT NOT NULL,
  mime TEXT NOT NULL,
  received_unix_ms INTEGER NOT NULL,
  bytes BLOB NOT NULL
);
)sql";

// FNV-1a over the events' identities: enough to tell a retry of a batch from another batch sent
// under the same key, without keeping a second copy of every event per request.
int64_t HashEvents(const std::vector<EventId>& events) {
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= 1099511628211ull;
    }
  };
  for (const EventId& ev : events) {
    mix(ev.device.data(), ev.device.size() + 1);  // with the NUL: "a"+"b1" differs from "ab"+"1"
    mix(&ev.seq, sizeof ev.seq);
  }
  return static_cast<int64_t>(h);
}

// SQLite integers are signed; sequences above 2^63 are stored by their bit pattern.
int64_t ToSql(uint64_t v) { return static_cast<int64_t>(v); }
uint64_t FromSql(int64_t v) { return static_cast<uint64_t>(v); }

void BindText(sqlite3_stmt* st, int i, const std::string& s) {
  sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
}

std::string ColumnText(sqlite3_stmt* st, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, i));
  return p ? std::string(p, sqlite3_column_bytes(st, i)) : std::string();
}

// Resets a statement on every path out of a scope, so that a failed step never leaves it busy.
class Reset {
 public:
  explicit Reset(sqlite3_stmt* st) : st_(st) {}
  ~Reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  Reset(const Reset&) = delete;
  Reset& operator=(const Reset&) = delete;

 private:
  sqlite3_stmt* st_;
};

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Status::IOError("cannot open " + path + ": " + msg);
  }
  std::unique_ptr<Store> store(new Store(db));
  Status s = store->Init();
  if (!s.ok()) return Status::IOError("cannot set up " + path + ": " + s.message());
  return store;
}

Store::~Store() {
  for (sqlite3_stmt* st : {find_request_, insert_request_, find_event_, insert_event_}) {
    sqlite3_finalize(st);
  }
  sqlite3_close(db_);
}

Status Store::Error(const char* what) const {
  return Status::IOError(std::string(what) + ": " + sqlite3_errmsg(db_));
}

Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) == SQLITE_OK) return Status::Ok();
  std::string msg = err ? err : "unknown error";
  sqlite3_free(err);
  return Status::IOError(msg);
}

sqlite3_stmt* Store::Prepare(const char* sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK) {
    return nullptr;
  }
  return st;
}

Status Store::Init() {
  sqlite3_busy_timeout(db_, 5000);
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", kSchema}) {
    Status s = Exec(sql);
    if (!s.ok()) return s;
  }
  find_request_ = Prepare("SELECT path, events_hash FROM requests WHERE key = ?1");
  insert_request_ = Prepare(
      "INSERT INTO requests(key, path, received_unix_ms, body, events_hash) "
      "VALUES (?1, ?2, ?3, ?4, ?5)");
  find_event_ = Prepare("SELECT 1 FROM events WHERE path = ?1 AND device = ?2 AND seq = ?3");
  insert_event_ =
      Prepare("INSERT INTO events(path, device, seq, key, duplicate) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!find_request_ || !insert_request_ || !find_event_ || !insert_event_) {
    return Error("prepare");
  }

  sqlite3_stmt* st = Prepare("SELECT count(*) FROM requests");
  if (!st) return Error("prepare");
  if (sqlite3_step(st) == SQLITE_ROW) totals_.applied_requests = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  st = Prepare("SELECT path, count(*), sum(duplicate) FROM events GROUP BY path");
  if (!st) return Error("prepare");
  while (sqlite3_step(st) == SQLITE_ROW) {
    uint64_t n = sqlite3_column_int64(st, 1);
    totals_.events_by_path[ColumnText(st, 0)] = n;
    totals_.events_applied += n;
    totals_.event_duplicates += sqlite3_column_int64(st, 2);
  }
  if (sqlite3_finalize(st) != SQLITE_OK) return Error("reading totals");
  return Status::Ok();
}

Result<ApplyOutcome> Store::Apply(const std::string& key, const std::string& path,
                                  const std::string& body, const std::vector<EventId>& events,
                                  int64_t received_unix_ms) {
  std::lock_guard lock(mu_);
  const int64_t hash = HashEvents(events);
  Status s = Exec("BEGIN IMMEDIATE");
  if (!s.ok()) return s;
  bool committed = false;
  // Any early return below rolls back: a failed request leaves no trace.
  struct Rollback {
    Store* self;
    bool* committed;
    ~Rollback() {
      if (!*committed) (void)self->Exec("ROLLBACK");
    }
  } rollback{this, &committed};

  ApplyOutcome out;
  {
    Reset reset(find_request_);
    BindText(find_request_, 1, key);
    int rc = sqlite3_step(find_request_);
    if (rc == SQLITE_ROW) {
      out.duplicate = true;
      out.key_conflict =
          ColumnText(find_request_, 0) != path || sqlite3_column_int64(find_request_, 1) != hash;
      return out;  // read-only: the rollback just ends the transaction
    }
    if (rc != SQLITE_DONE) return Error("looking up the key");
  }
  {
    Reset reset(insert_request_);
    BindText(insert_request_, 1, key);
    BindText(insert_request_, 2, path);
    sqlite3_bind_int64(insert_request_, 3, received_unix_ms);
    BindText(insert_request_, 4, body);
    sqlite3_bind_int64(insert_request_, 5, hash);
    if (sqlite3_step(insert_request_) != SQLITE_DONE) return Error("storing the request");
  }
  for (const EventId& ev : events) {
    bool seen = false;
    {
      Reset reset(find_event_);
      BindText(find_event_, 1, path);
      BindText(find_event_, 2, ev.device);
      sqlite3_bind_int64(find_event_, 3, ToSql(ev.seq));
      int rc = sqlite3_step(find_event_);
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("looking up an event");
      seen = rc == SQLITE_ROW;
    }
    Reset reset(insert_event_);
    BindText(insert_event_, 1, path);
    BindText(insert_event_, 2, ev.device);
    sqlite3_bind_int64(insert_event_, 3, ToSql(ev.seq));
    BindText(insert_event_, 4, key);
    sqlite3_bind_int(insert_event_, 5, seen ? 1 : 0);
    if (sqlite3_step(insert_event_) != SQLITE_DONE) return Error("storing an event");
    ++out.events_applied;
    if (seen) ++out.event_duplicates;
  }
  s = Exec("COMMIT");
  if (!s.ok()) return s;
  committed = true;

  ++totals_.applied_requests;
  totals_.events_applied += out.events_applied;
  totals_.event_duplicates += out.event_duplicates;
  totals_.events_by_path[path] += out.events_applied;
  return out;
}

Result<std::vector<AppliedEvent>> Store::Events(const std::string& path,
                                                const std::optional<std::string>& device,
                                                uint64_t limit) {
  std::lock_guard lock(mu_);
  // requests.key is the primary key: one lookup per event for the time of its request.
  const char* sql = device ? "SELECT e.device, e.seq, e.key, e.duplicate, r.received_unix_ms "
                             "FROM events e JOIN requests r ON r.key = e.key "
                             "WHERE e.path = ?1 AND e.device = ?2 ORDER BY e.ord LIMIT ?3"
                           : "SELECT e.device, e.seq, e.key, e.duplicate, r.received_unix_ms "
                             "FROM events e JOIN requests r ON r.key = e.key "
                             "WHERE e.path = ?1 ORDER BY e.ord LIMIT ?3";
  sqlite3_stmt* st = Prepare(sql);
  if (!st) return Error("prepare");
  BindText(st, 1, path);
  if (device) BindText(st, 2, *device);
  sqlite3_bind_int64(st, 3, static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX)));
  std::vector<AppliedEvent> out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    out.push_back({ColumnText(st, 0), FromSql(sqlite3_column_int64(st, 1)), ColumnText(st, 2),
                   sqlite3_column_int(st, 3) != 0, sqlite3_column_int64(st, 4)});
  }
  Status s = rc == SQLITE_DONE ? Status::Ok() : Error("reading events");
  sqlite3_finalize(st);
  if (!s.ok()) return s;
  return out;
}

Result<bool> Store::PutPhoto(const std::string& sha256_hex, const std::string& device,
                             const std::string& mime, const std::string& bytes,
                             int64_t received_unix_ms) {
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = Prepare(
      "INSERT OR IGNORE INTO photos(sha256, device, mime, received_unix_ms, bytes) "
      "VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!st) return Error("prepare");
  BindText(st, 1, sha256_hex);
  BindText(st, 2, device);
  BindText(st, 3, mime);
  sqlite3_bind_int64(st, 4, received_unix_ms);
  sqlite3_bind_blob64(st, 5, bytes.data(), bytes.size(), SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return Error("storing a photo");
  return sqlite3_changes(db_) > 0;
}

Result<std::vector<StoredPhoto>> Store::Photos() {
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = Prepare(
      "SELECT sha256, device, mime, length(bytes), received_unix_ms FROM photos "
      "ORDER BY received_unix_ms, sha256");
  if (!st) return Error("prepare");
  std::vector<StoredPhoto> out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    out.push_back({ColumnText(st, 0), ColumnText(st, 1), ColumnText(st, 2),
                   FromSql(sqlite3_column_int64(st, 3)), sqlite3_column_int64(st, 4)});
  }
  Status s = rc == SQLITE_DONE ? Status::Ok() : Error("reading photos");
  sqlite3_finalize(st);
  if (!s.ok()) return s;
  return out;
}

StoreTotals Store::Totals() const {
  std::lock_guard lock(mu_);
  return totals_;
}

}  // namespace waybill::receiver
