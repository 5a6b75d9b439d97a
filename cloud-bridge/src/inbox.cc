#include "waybill/bridge/inbox.h"

#include <mbedtls/sha256.h>
#include <sqlite3.h>

#include <algorithm>
#include <mutex>

#include "sqlite_util.h"

namespace waybill::bridge {

using sync::internal::Exec;
using sync::internal::QueryInt;
using sync::internal::SqliteStatus;
using sync::internal::Stmt;

namespace {

constexpr int kBusyTimeoutMs = 5000;
// 2: events.verified (the proof's device signature was checked at ingest).
constexpr int kSchemaVersion = 2;
constexpr size_t kMaxResponseBytes = 4096;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events(
  id INTEGER PRIMARY KEY,
  device TEXT NOT NULL,
  seq INTEGER NOT NULL,
  cls INTEGER NOT NULL,
  route INTEGER NOT NULL,
  lane INTEGER NOT NULL,
  ts_ms INTEGER NOT NULL,
  ts_src INTEGER NOT NULL,
  historical INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  body BLOB,
  state INTEGER NOT NULL DEFAULT 0,  -- 0 pending, 1 forwarded, 2 dead (a refused request)
  batch INTEGER,
  verified INTEGER NOT NULL DEFAULT 0);  -- a proof whose device signature was verified
CREATE UNIQUE INDEX IF NOT EXISTS events_identity ON events(device, seq);
CREATE INDEX IF NOT EXISTS events_queue ON events(route, lane, id)
  WHERE state = 0 AND batch IS NULL;
CREATE INDEX IF NOT EXISTS events_batch ON events(batch) WHERE batch IS NOT NULL;
CREATE TABLE IF NOT EXISTS batches(
  id INTEGER PRIMARY KEY,
  route INTEGER NOT NULL,
  lane INTEGER NOT NULL,
  idem_key TEXT NOT NULL,
  created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters(
  id INTEGER PRIMARY KEY,
  kind INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  times_seen INTEGER NOT NULL DEFAULT 1,
  reason TEXT NOT NULL,
  detail TEXT NOT NULL,
  topic TEXT NOT NULL DEFAULT '',
  device TEXT NOT NULL DEFAULT '',
  seq INTEGER,
  cls INTEGER,
  ts_ms INTEGER,
  ts_src INTEGER,
  historical INTEGER NOT NULL DEFAULT 0,
  route INTEGER,
  batch INTEGER NOT NULL DEFAULT 0,
  http_status INTEGER NOT NULL DEFAULT 0,
  response TEXT NOT NULL DEFAULT '',
  payload BLOB NOT NULL,
  payload_sha TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_payload ON dead_letters(kind, payload_sha, ifnull(seq, -1))
  WHERE kind != 3;
CREATE TABLE IF NOT EXISTS commands(
  command_id TEXT PRIMARY KEY,
  device TEXT NOT NULL,
  kind TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  status_json TEXT NOT NULL DEFAULT '',
  payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS commands_device ON commands(device, created_ms);
)sql";

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[32];
  mbedtls_sha256_ret(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest, 0);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (unsigned char b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

// Binds in order: bind(stmt, 1, x), ...
void Bind(sqlite3_stmt* s, int i, int64_t v) { sqlite3_bind_int64(s, i, v); }
void Bind(sqlite3_stmt* s, int i, std::string_view v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void BindBlob(sqlite3_stmt* s, int i, std::string_view v) {
  sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
std::string Text(sqlite3_stmt* s, int col) {
  const void* p = sqlite3_column_blob(s, col);
  int n = sqlite3_column_bytes(s, col);
  return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
}

}  // namespace

std::string_view ToString(DeadLetterKind kind) {
  switch (kind) {
    case DeadLetterKind::kMessage:
      return "message";
    case DeadLetterKind::kEvent:
      return "event";
    case DeadLetterKind::kForward:
      return "forward";
  }
  return "unknown";
}

int LaneOf(std::string_view device, int lanes) {
  uint32_t h = 2166136261u;
  for (unsigned char c : device) {
    h ^= c;
    h *= 16777619u;
  }
  return lanes <= 1 ? 0 : static_cast<int>(h % static_cast<uint32_t>(lanes));
}

struct Inbox::Impl {
  sqlite3* db = nullptr;
  InboxOptions options;
  std::mutex mu;
  Stmt insert_event, insert_dead, bump_dead, select_open_batch, select_batch_events, select_queue,
      select_queue_device, insert_batch, assign_events, assign_device_events, complete_events,
      delete_batch, dead_events;

  ~Impl() {
    // Statements first, then the connection.
    insert_event = Stmt();
    insert_dead = Stmt();
    bump_dead = Stmt();
    select_open_batch = Stmt();
    select_batch_events = Stmt();
    select_queue = Stmt();
    select_queue_device = Stmt();
    insert_batch = Stmt();
    assign_events = Stmt();
    assign_device_events = Stmt();
    complete_events = Stmt();
    delete_batch = Stmt();
    dead_events = Stmt();
    if (db != nullptr) sqlite3_close_v2(db);
  }

  Status Step(Stmt& stmt, std::string_view what) {
    int rc = sqlite3_step(stmt.get());
    stmt.Reset();
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqliteStatus(db, rc, what);
    return Status::Ok();
  }

  // Inserts a dead letter, or counts one more sighting of the same bytes.
  Status PutDeadLetter(DeadLetterKind kind, int64_t now_ms, std::string_view reason,
                       std::string_view detail, std::string_view topic, std::string_view device,
                       const sync::StoredEvent* event, bool historical, std::optional<Route> route,
                       int64_t batch, int http_status, std::string_view response,
                       std::string_view payload) {
    std::string sha = Sha256Hex(payload);
    sqlite3_stmt* s = insert_dead.get();
    Bind(s, 1, static_cast<int64_t>(kind));
    Bind(s, 2, now_ms);
    Bind(s, 3, reason);
    Bind(s, 4, detail);
    Bind(s, 5, topic);
    Bind(s, 6, device);
    if (event != nullptr) {
      Bind(s, 7, static_cast<int64_t>(event->seq));
      Bind(s, 8, static_cast<int64_t>(event->cls));
      Bind(s, 9, event->ts_ms);
      Bind(s, 10, static_cast<int64_t>(event->ts_src));
    }
    Bind(s, 11, static_cast<int64_t>(historical));
    if (route) Bind(s, 12, static_cast<int64_t>(*route));
    Bind(s, 13, batch);
    Bind(s, 14, static_cast<int64_t>(http_status));
    Bind(s, 15, response.substr(0, kMaxResponseBytes));
    BindBlob(s, 16, payload);
    Bind(s, 17, sha);
    int rc = sqlite3_step(s);
    insert_dead.Reset();
    if (rc != SQLITE_DONE) return SqliteStatus(db, rc, "insert a dead letter");
    if (sqlite3_changes(db) == 0) {
      // The same refused bytes again: one row, counted.
      sqlite3_stmt* b = bump_dead.get();
      Bind(b, 1, now_ms);
      Bind(b, 2, static_cast<int64_t>(kind));
      Bind(b, 3, sha);
      if (event != nullptr) Bind(b, 4, static_cast<int64_t>(event->seq));
      return Step(bump_dead, "count a dead letter again");
    }
    return Status::Ok();
  }

  // Inserts the accepted events of one message; fills `out`.
  Status PutEvents(const IngestItem& item, StoreOutcome* out) {
    for (const sync::StoredEvent& e : item.accepted) {
      Route route = RouteOf(e.cls);
      int lanes = options.lanes[static_cast<int>(route)];
      sqlite3_stmt* s = insert_event.get();
      Bind(s, 1, item.device);
      Bind(s, 2, static_cast<int64_t>(e.seq));
      Bind(s, 3, static_cast<int64_t>(e.cls));
      Bind(s, 4, static_cast<int64_t>(route));
      Bind(s, 5, static_cast<int64_t>(LaneOf(item.device, lanes)));
      Bind(s, 6, e.ts_ms);
      Bind(s, 7, static_cast<int64_t>(e.ts_src));
      Bind(s, 8, static_cast<int64_t>(item.historical));
      Bind(s, 9, item.received_ms);
      BindBlob(s, 10, e.body);
      Bind(s, 11,
           static_cast<int64_t>(item.proofs_verified &&
                                e.cls == sync::EventClass::kProofOfDelivery));
      int rc = sqlite3_step(s);
      insert_event.Reset();
      if (rc != SQLITE_DONE) return SqliteStatus(db, rc, "insert an event into the inbox");
      if (sqlite3_changes(db) > 0) {
        ++out->inserted;
      } else {
        ++out->duplicates;
      }
      out->ack_seqs.push_back(e.seq);
    }
    for (const RejectedEvent& r : item.rejected) {
      if (Status s = PutDeadLetter(DeadLetterKind::kEvent, item.received_ms, ToString(r.reason),
                                   r.detail, item.topic, item.device, &r.event, item.historical,
                                   std::nullopt, 0, 0, "", r.event.body);
          !s.ok()) {
        return s;
      }
      ++out->rejected;
      out->ack_seqs.push_back(r.event.seq);
    }
    return Status::Ok();
  }

  Result<std::vector<InboxEvent>> ReadEvents(Stmt& stmt) {
    std::vector<InboxEvent> events;
    sqlite3_stmt* s = stmt.get();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      InboxEvent e;
      e.id = sqlite3_column_int64(s, 0);
      e.device = Text(s, 1);
      e.event.seq = static_cast<uint64_t>(sqlite3_column_int64(s, 2));
      e.event.cls = static_cast<sync::EventClass>(sqlite3_column_int(s, 3));
      e.event.ts_ms = sqlite3_column_int64(s, 4);
      e.event.ts_src = static_cast<hal::TimeSource>(sqlite3_column_int(s, 5));
      e.historical = sqlite3_column_int(s, 6) != 0;
      e.received_ms = sqlite3_column_int64(s, 7);
      e.event.body = Text(s, 8);
      e.signature_verified = sqlite3_column_int(s, 9) != 0;
      events.push_back(std::move(e));
    }
    stmt.Reset();
    if (rc != SQLITE_DONE) return SqliteStatus(db, rc, "read inbox events");
    return events;
  }

  // Runs `sql` (a SELECT), binding with `bind(stmt)`, calling `row(stmt)` for every row.
  template <typename B, typename R>
  Status Query(const std::string& sql, std::string_view what, B&& bind, R&& row) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
    if (rc == SQLITE_OK) {
      bind(s);
      while ((rc = sqlite3_step(s)) == SQLITE_ROW) row(s);
      if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    Status status = rc == SQLITE_OK ? Status::Ok() : SqliteStatus(db, rc, what);
    sqlite3_finalize(s);
    return status;
  }

  Status Begin() { return Exec(db, "BEGIN IMMEDIATE", "begin an inbox transaction"); }
  Status Commit() { return Exec(db, "COMMIT", "commit the inbox transaction"); }
  void Rollback() { sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr); }

  // A transaction committed without waiting for the disk (WAL, synchronous=NORMAL): a process
  // crash keeps it, a power cut may lose it; the next durable commit syncs it along.
  template <typename F>
  Status Lazily(F&& body) {
    if (Status s = Exec(db, "PRAGMA synchronous = NORMAL", "relax synchronous"); !s.ok()) {
      return s;
    }
    Status s = InTransaction(std::forward<F>(body));
    Status back = Exec(db, "PRAGMA synchronous = FULL", "restore synchronous");
    return s.ok() ? back : s;
  }

  template <typename F>
  Status InTransaction(F&& body) {
    if (Status s = Begin(); !s.ok()) return s;
    Status s = body();
    if (s.ok()) s = Commit();
    if (!s.ok()) Rollback();
    return s;
  }
};

Inbox::Inbox(sqlite3* db, InboxOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->db = db;
  impl_->options = std::move(options);
}

Inbox::~Inbox() = default;

Result<std::unique_ptr<Inbox>> Inbox::Open(const InboxOptions& options) {
  sqlite3* db = nullptr;
  int flags =
      options.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  int rc = sqlite3_open_v2(options.path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<Inbox> inbox(new Inbox(db, options));
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, "open the inbox " + options.path);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  sqlite3_extended_result_codes(db, 1);
  const std::string& path = options.path;
  {
    sqlite3_stmt* check = nullptr;
    rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(8)", -1, &check, nullptr);
    std::string problems;
    while (rc == SQLITE_OK && sqlite3_step(check) == SQLITE_ROW) {
      std::string line = reinterpret_cast<const char*>(sqlite3_column_text(check, 0));
      if (line != "ok") problems += (problems.empty() ? "" : "; ") + line;
    }
    int fin = sqlite3_finalize(check);
    if (rc != SQLITE_OK || fin != SQLITE_OK) {
      Status s = SqliteStatus(db, rc != SQLITE_OK ? rc : fin, "check the inbox " + path);
      return s.IsIOError() && sync::internal::IsCorruptCode(rc) ? Status::Corruption(s.message())
                                                                : s;
    }
    if (!problems.empty()) {
      return Status::Corruption("inbox " + path + " failed PRAGMA quick_check: " + problems +
                                "; move it aside (docs/BRIDGE.md, recovery) and start again");
    }
  }
  if (!options.read_only) {
    if (Status s = Exec(db,
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                        "PRAGMA foreign_keys = OFF; PRAGMA secure_delete = FAST;",
                        "set up the inbox " + path);
        !s.ok()) {
      return s;
    }
    auto version = QueryInt(db, "PRAGMA user_version", "read the inbox's schema version");
    if (!version.ok()) return version.status();
    if (*version > kSchemaVersion) {
      return Status::FailedPrecondition("inbox " + path + " has schema version " +
                                        std::to_string(*version) + ", newer than this bridge's " +
                                        std::to_string(kSchemaVersion));
    }
    if (*version < kSchemaVersion) {
      std::string sql = std::string("BEGIN; ") + kSchema;
      if (*version == 1) {
        sql += " ALTER TABLE events ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;";
      }
      sql += " PRAGMA user_version = " + std::to_string(kSchemaVersion) + "; COMMIT;";
      if (Status s = Exec(db, sql, "create the inbox schema in " + path); !s.ok()) return s;
    }
  }
  if (Status s = inbox->ReconcileLanes(); !s.ok()) return s;
  if (Status s = inbox->Prepare(); !s.ok()) return s;
  return inbox;
}

Status Inbox::ReconcileLanes() {
  Impl& m = *impl_;
  for (int r = 0; r < kRouteCount; ++r) {
    std::string key = "'lanes." + std::string(ToString(static_cast<Route>(r))) + "'";
    auto stored = QueryInt(m.db, "SELECT value FROM meta WHERE key = " + key, "read lanes");
    if (!stored.ok() && !stored.status().IsNotFound()) return stored.status();
    if (m.options.read_only || m.options.lanes[r] <= 0) {
      // A tool opening the file takes the bridge's lanes, so that what it stores is forwarded.
      m.options.lanes[r] = stored.ok() ? static_cast<int>(*stored) : 1;
      continue;
    }
    if (stored.ok() && *stored == m.options.lanes[r]) continue;
    // New lane counts: events not yet in a batch move to their new lane (open batches finish
    // in the lane that maps them, see select_open_batch).
    Status s = m.InTransaction([&]() -> Status {
      sqlite3_stmt* devices = nullptr;
      int rc = sqlite3_prepare_v2(m.db,
                                  "SELECT DISTINCT device FROM events WHERE route = ?1 AND "
                                  "state = 0 AND batch IS NULL",
                                  -1, &devices, nullptr);
      std::vector<std::string> list;
      if (rc == SQLITE_OK) {
        Bind(devices, 1, static_cast<int64_t>(r));
        while ((rc = sqlite3_step(devices)) == SQLITE_ROW) list.push_back(Text(devices, 0));
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
      }
      sqlite3_finalize(devices);
      if (rc != SQLITE_OK) return SqliteStatus(m.db, rc, "list devices to re-lane");
      for (const std::string& device : list) {
        sqlite3_stmt* u = nullptr;
        rc = sqlite3_prepare_v2(m.db,
                                "UPDATE events SET lane = ?1 WHERE route = ?2 AND device = ?3 "
                                "AND state = 0 AND batch IS NULL",
                                -1, &u, nullptr);
        if (rc == SQLITE_OK) {
          Bind(u, 1, static_cast<int64_t>(LaneOf(device, m.options.lanes[r])));
          Bind(u, 2, static_cast<int64_t>(r));
          Bind(u, 3, device);
          rc = sqlite3_step(u);
        }
        sqlite3_finalize(u);
        if (rc != SQLITE_DONE) return SqliteStatus(m.db, rc, "re-lane events");
      }
      return Exec(m.db,
                  "INSERT OR REPLACE INTO meta(key, value) VALUES(" + key + ", " +
                      std::to_string(m.options.lanes[r]) + ")",
                  "store lanes");
    });
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status Inbox::Prepare() {
  Impl& m = *impl_;
  struct {
    Stmt* stmt;
    const char* sql;
  } all[] = {
      {&m.insert_event,
       "INSERT OR IGNORE INTO events(device, seq, cls, route, lane, ts_ms, ts_src, historical, "
       "received_ms, body, verified) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"},
      {&m.insert_dead,
       "INSERT OR IGNORE INTO dead_letters(kind, created_ms, last_seen_ms, reason, detail, topic, "
       "device, seq, cls, ts_ms, ts_src, historical, route, batch, http_status, response, "
       "payload, payload_sha) VALUES(?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
       "?14, ?15, ?16, ?17)"},
      {&m.bump_dead,
       "UPDATE dead_letters SET times_seen = times_seen + 1, last_seen_ms = ?1 "
       "WHERE kind = ?2 AND payload_sha = ?3 AND seq IS ?4"},
      {&m.select_open_batch,
       "SELECT id, idem_key FROM batches WHERE route = ?1 AND lane % ?3 = ?2 "
       "ORDER BY id LIMIT 1"},
      {&m.select_batch_events,
       "SELECT id, device, seq, cls, ts_ms, ts_src, historical, received_ms, body, verified "
       "FROM events "
       "WHERE batch = ?1 AND state = 0 ORDER BY id"},
      {&m.select_queue,
       "SELECT id, device, seq, cls, ts_ms, ts_src, historical, received_ms, body, verified "
       "FROM events "
       "WHERE route = ?1 AND lane = ?2 AND state = 0 AND batch IS NULL ORDER BY id LIMIT ?3"},
      {&m.select_queue_device,
       "SELECT id, device, seq, cls, ts_ms, ts_src, historical, received_ms, body, verified "
       "FROM events "
       "WHERE route = ?1 AND lane = ?2 AND state = 0 AND batch IS NULL AND device = ?4 "
       "ORDER BY id LIMIT ?3"},
      {&m.insert_batch,
       "INSERT INTO batches(route, lane, idem_key, created_ms) VALUES(?1, ?2, ?3, ?4)"},
      // The batch is the lane's first pending events up to the last one read: one statement.
      {&m.assign_events,
       "UPDATE events SET batch = ?1 WHERE route = ?2 AND lane = ?3 AND state = 0 AND "
       "batch IS NULL AND id <= ?4"},
      {&m.assign_device_events,
       "UPDATE events SET batch = ?1 WHERE route = ?2 AND lane = ?3 AND state = 0 AND "
       "batch IS NULL AND id <= ?4 AND device = ?5"},
      {&m.complete_events,
       "UPDATE events SET state = 1, body = NULL, batch = NULL WHERE batch = ?1 AND state = 0"},
      {&m.delete_batch, "DELETE FROM batches WHERE id = ?1"},
      {&m.dead_events, "UPDATE events SET state = 2 WHERE batch = ?1 AND state = 0"},
  };
  for (auto& [stmt, sql] : all) {
    if (m.options.read_only && std::string_view(sql).substr(0, 6) != "SELECT") continue;
    auto prepared = Stmt::Prepare(m.db, sql, "prepare an inbox statement");
    if (!prepared.ok()) return prepared.status();
    *stmt = std::move(*prepared);
  }
  return Status::Ok();
}

Status Inbox::Store(std::span<const IngestItem> items, std::vector<StoreOutcome>* outcomes) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  std::vector<StoreOutcome> result(items.size());
  Status s = m.InTransaction([&]() -> Status {
    for (size_t i = 0; i < items.size(); ++i) {
      const IngestItem& item = items[i];
      if (item.message_reason) {
        if (Status d =
                m.PutDeadLetter(DeadLetterKind::kMessage, item.received_ms,
                                ToString(*item.message_reason), item.message_detail, item.topic,
                                item.device, nullptr, false, std::nullopt, 0, 0, "", item.payload);
            !d.ok()) {
          return d;
        }
        continue;
      }
      if (Status e = m.PutEvents(item, &result[i]); !e.ok()) return e;
    }
    return Status::Ok();
  });
  if (s.ok() && outcomes != nullptr) *outcomes = std::move(result);
  return s;
}

Result<std::optional<ForwardBatch>> Inbox::NextBatch(Route route, int lane, int max_events,
                                                     bool per_device, int64_t now_ms) {
  LaneRequest request{route, lane, max_events, per_device};
  std::vector<std::optional<ForwardBatch>> out;
  if (Status s = NextBatches(std::span<const LaneRequest>(&request, 1), now_ms, &out); !s.ok()) {
    return s;
  }
  return std::move(out.front());
}

Status Inbox::NextBatches(std::span<const LaneRequest> lanes, int64_t now_ms,
                          std::vector<std::optional<ForwardBatch>>* out) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  out->assign(lanes.size(), std::nullopt);
  std::vector<size_t> fresh;  // requests answered with a new batch, to commit together
  for (size_t i = 0; i < lanes.size(); ++i) {
    const LaneRequest& request = lanes[i];
    int lane_count = m.options.lanes[static_cast<int>(request.route)];
    ForwardBatch batch;
    batch.route = request.route;
    batch.lane = request.lane;
    // An open batch first: after a restart it goes out again with the same events and key.
    sqlite3_stmt* s = m.select_open_batch.get();
    Bind(s, 1, static_cast<int64_t>(request.route));
    Bind(s, 2, static_cast<int64_t>(request.lane));
    Bind(s, 3, static_cast<int64_t>(lane_count));
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      batch.id = sqlite3_column_int64(s, 0);
      batch.idempotency_key = Text(s, 1);
    }
    m.select_open_batch.Reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteStatus(m.db, rc, "find open batches");
    if (batch.id != 0) {
      Bind(m.select_batch_events.get(), 1, batch.id);
      auto events = m.ReadEvents(m.select_batch_events);
      if (!events.ok()) return events.status();
      if (!events->empty()) {
        batch.events = std::move(*events);
        (*out)[i] = std::move(batch);
        continue;
      }
      // Its events were dead-lettered or requeued by an operator meanwhile: the batch is over.
      Bind(m.delete_batch.get(), 1, batch.id);
      if (Status st = m.Step(m.delete_batch, "drop an empty batch"); !st.ok()) return st;
      batch = ForwardBatch{0, request.route, request.lane, "", {}};
    }
    Stmt& query = request.per_device ? m.select_queue_device : m.select_queue;
    if (request.per_device) {
      // The device of the lane's oldest pending event.
      Bind(m.select_queue.get(), 1, static_cast<int64_t>(request.route));
      Bind(m.select_queue.get(), 2, static_cast<int64_t>(request.lane));
      Bind(m.select_queue.get(), 3, int64_t{1});
      auto first = m.ReadEvents(m.select_queue);
      if (!first.ok()) return first.status();
      if (first->empty()) continue;
      Bind(query.get(), 4, first->front().device);
    }
    Bind(query.get(), 1, static_cast<int64_t>(request.route));
    Bind(query.get(), 2, static_cast<int64_t>(request.lane));
    Bind(query.get(), 3, static_cast<int64_t>(std::max(1, request.max_events)));
    auto events = m.ReadEvents(query);
    if (!events.ok()) return events.status();
    if (events->empty()) continue;
    // The key names the batch's content, so it is the same whoever forms the same batch.
    std::string identities(ToString(request.route));
    for (const InboxEvent& e : *events) {
      identities += '\n' + e.device + ':' + std::to_string(e.event.seq);
    }
    batch.idempotency_key =
        "wb1-" + std::string(ToString(request.route)) + "-" + Sha256Hex(identities).substr(0, 32);
    batch.events = std::move(*events);
    (*out)[i] = std::move(batch);
    fresh.push_back(i);
  }
  if (fresh.empty()) return Status::Ok();
  Status s = m.InTransaction([&]() -> Status {
    for (size_t i : fresh) {
      ForwardBatch& batch = *(*out)[i];
      sqlite3_stmt* ins = m.insert_batch.get();
      Bind(ins, 1, static_cast<int64_t>(batch.route));
      Bind(ins, 2, static_cast<int64_t>(batch.lane));
      Bind(ins, 3, batch.idempotency_key);
      Bind(ins, 4, now_ms);
      if (Status st = m.Step(m.insert_batch, "create a forward batch"); !st.ok()) return st;
      batch.id = sqlite3_last_insert_rowid(m.db);
      const bool per_device = lanes[i].per_device;
      Stmt& assign = per_device ? m.assign_device_events : m.assign_events;
      Bind(assign.get(), 1, batch.id);
      Bind(assign.get(), 2, static_cast<int64_t>(batch.route));
      Bind(assign.get(), 3, static_cast<int64_t>(batch.lane));
      Bind(assign.get(), 4, batch.events.back().id);
      if (per_device) Bind(assign.get(), 5, batch.events.front().device);
      if (Status st = m.Step(assign, "assign events to a batch"); !st.ok()) return st;
      if (sqlite3_changes(m.db) != static_cast<int>(batch.events.size())) {
        // Another process (a dead-letter replay) changed the lane meanwhile: form it again.
        return Status::Busy("inbox: the " + std::string(ToString(batch.route)) + " lane " +
                            std::to_string(batch.lane) + " changed while a batch was formed");
      }
    }
    return Status::Ok();
  });
  if (!s.ok()) {
    for (size_t i : fresh) (*out)[i].reset();  // nothing of them was stored
  }
  return s;
}

Status Inbox::CompleteBatch(int64_t batch_id) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  return m.Lazily([&]() -> Status {
    Bind(m.complete_events.get(), 1, batch_id);
    if (Status s = m.Step(m.complete_events, "mark a batch forwarded"); !s.ok()) return s;
    Bind(m.delete_batch.get(), 1, batch_id);
    return m.Step(m.delete_batch, "close a batch");
  });
}

Status Inbox::DeadLetterBatch(const ForwardBatch& batch, int http_status, std::string_view reason,
                              std::string_view detail, std::string_view request_body,
                              std::string_view response, int64_t now_ms) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  return m.Lazily([&]() -> Status {
    Bind(m.dead_events.get(), 1, batch.id);
    if (Status s = m.Step(m.dead_events, "mark a batch's events dead"); !s.ok()) return s;
    std::string device = batch.events.empty() ? "" : batch.events.front().device;
    for (const InboxEvent& e : batch.events) {
      if (e.device != device) {
        device.clear();
        break;
      }
    }
    if (Status s =
            m.PutDeadLetter(DeadLetterKind::kForward, now_ms, reason, detail, "", device, nullptr,
                            false, batch.route, batch.id, http_status, response, request_body);
        !s.ok()) {
      return s;
    }
    Bind(m.delete_batch.get(), 1, batch.id);
    return m.Step(m.delete_batch, "close a dead batch");
  });
}

Result<InboxCounts> Inbox::Counts() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  InboxCounts c;
  // Every count reads a partial index (the queue, or events in batches), never the whole table:
  // the forwarded events kept for dedup can be many millions.
  auto per_route = [&](const char* sql, std::array<int64_t, kRouteCount>* out) {
    return m.Query(
        sql, "count the inbox", [](sqlite3_stmt*) {},
        [&](sqlite3_stmt* st) {
          int r = sqlite3_column_int(st, 0);
          if (r >= 0 && r < kRouteCount) (*out)[r] = sqlite3_column_int64(st, 1);
        });
  };
  std::array<int64_t, kRouteCount> queued{};
  if (Status s = per_route("SELECT route, count(*) FROM events WHERE state = 0 AND batch IS NULL "
                           "GROUP BY route",
                           &queued);
      !s.ok()) {
    return s;
  }
  if (Status s = per_route("SELECT route, count(*) FROM events WHERE batch IS NOT NULL AND "
                           "state = 0 GROUP BY route",
                           &c.in_batches);
      !s.ok()) {
    return s;
  }
  for (int r = 0; r < kRouteCount; ++r) c.pending[r] = queued[r] + c.in_batches[r];
  Status s = m.Query(
      "SELECT min(received_ms) FROM events WHERE batch IS NOT NULL AND state = 0 UNION ALL "
      "SELECT received_ms FROM (SELECT received_ms FROM events WHERE state = 0 AND batch IS NULL "
      "ORDER BY id LIMIT 1)",
      "find the oldest pending event", [](sqlite3_stmt*) {},
      [&](sqlite3_stmt* st) {
        if (sqlite3_column_type(st, 0) == SQLITE_NULL) return;
        int64_t t = sqlite3_column_int64(st, 0);
        if (c.oldest_pending_ms == 0 || t < c.oldest_pending_ms) c.oldest_pending_ms = t;
      });
  if (!s.ok()) return s;
  auto dead = QueryInt(m.db, "SELECT count(*) FROM events WHERE batch IS NOT NULL AND state = 2",
                       "count dead events");
  auto letters = QueryInt(m.db, "SELECT count(*) FROM dead_letters", "count dead letters");
  if (!dead.ok()) return dead.status();
  if (!letters.ok()) return letters.status();
  c.dead_events = *dead;
  c.dead_letters = *letters;
  return c;
}

namespace {

constexpr const char* kDeadLetterColumns =
    "SELECT id, kind, created_ms, last_seen_ms, times_seen, reason, detail, topic, device, seq, "
    "cls, ts_ms, ts_src, historical, route, batch, http_status, response, payload "
    "FROM dead_letters ";

DeadLetter ReadDeadLetter(sqlite3_stmt* s) {
  DeadLetter d;
  d.id = sqlite3_column_int64(s, 0);
  d.kind = static_cast<DeadLetterKind>(sqlite3_column_int(s, 1));
  d.created_ms = sqlite3_column_int64(s, 2);
  d.last_seen_ms = sqlite3_column_int64(s, 3);
  d.times_seen = sqlite3_column_int64(s, 4);
  d.reason = Text(s, 5);
  d.detail = Text(s, 6);
  d.topic = Text(s, 7);
  d.device = Text(s, 8);
  if (sqlite3_column_type(s, 9) != SQLITE_NULL) {
    d.seq = static_cast<uint64_t>(sqlite3_column_int64(s, 9));
  }
  if (d.kind == DeadLetterKind::kEvent && d.seq) {
    sync::StoredEvent e;
    e.seq = *d.seq;
    e.cls = static_cast<sync::EventClass>(sqlite3_column_int(s, 10));
    e.ts_ms = sqlite3_column_int64(s, 11);
    e.ts_src = static_cast<hal::TimeSource>(sqlite3_column_int(s, 12));
    e.body = Text(s, 18);
    d.event = std::move(e);
  }
  d.historical = sqlite3_column_int(s, 13) != 0;
  if (sqlite3_column_type(s, 14) != SQLITE_NULL) {
    d.route = static_cast<Route>(sqlite3_column_int(s, 14));
  }
  d.batch = sqlite3_column_int64(s, 15);
  d.http_status = sqlite3_column_int(s, 16);
  d.response = Text(s, 17);
  d.payload = Text(s, 18);
  return d;
}

}  // namespace

Result<std::vector<DeadLetter>> Inbox::ListDeadLetters(int limit, int64_t before_id) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  std::vector<DeadLetter> out;
  Status s = m.Query(
      std::string(kDeadLetterColumns) + "WHERE ?1 = 0 OR id < ?1 ORDER BY id DESC LIMIT ?2",
      "list dead letters",
      [&](sqlite3_stmt* st) {
        Bind(st, 1, before_id);
        Bind(st, 2, static_cast<int64_t>(limit));
      },
      [&](sqlite3_stmt* st) { out.push_back(ReadDeadLetter(st)); });
  if (!s.ok()) return s;
  return out;
}

Result<DeadLetter> Inbox::GetDeadLetter(int64_t id) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  std::optional<DeadLetter> found;
  Status s = m.Query(
      std::string(kDeadLetterColumns) + "WHERE id = ?1", "read a dead letter",
      [&](sqlite3_stmt* st) { Bind(st, 1, id); },
      [&](sqlite3_stmt* st) { found = ReadDeadLetter(st); });
  if (!s.ok()) return s;
  if (!found) return Status::NotFound("no dead letter " + std::to_string(id));
  return std::move(*found);
}

Status Inbox::DropDeadLetter(int64_t id) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  auto before = sqlite3_total_changes(m.db);
  std::string sql = "DELETE FROM dead_letters WHERE id = " + std::to_string(id);
  if (Status s = Exec(m.db, sql, "drop a dead letter"); !s.ok()) return s;
  if (sqlite3_total_changes(m.db) == before) {
    return Status::NotFound("no dead letter " + std::to_string(id));
  }
  return Status::Ok();
}

Result<int64_t> Inbox::RequeueForwardDeadLetter(int64_t id) {
  auto letter = GetDeadLetter(id);
  if (!letter.ok()) return letter.status();
  if (letter->kind != DeadLetterKind::kForward) {
    return Status::InvalidArgument("dead letter " + std::to_string(id) + " is a refused " +
                                   std::string(ToString(letter->kind)) + ", not a refused request");
  }
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  int64_t moved = 0;
  Status s = m.InTransaction([&]() -> Status {
    std::string batch = std::to_string(letter->batch);
    if (Status st = Exec(
            m.db,
            "UPDATE events SET state = 0, batch = NULL WHERE batch = " + batch + " AND state = 2",
            "requeue dead events");
        !st.ok()) {
      return st;
    }
    moved = sqlite3_changes(m.db);
    return Exec(m.db, "DELETE FROM dead_letters WHERE id = " + std::to_string(id),
                "remove a replayed dead letter");
  });
  if (!s.ok()) return s;
  return moved;
}

Result<StoreOutcome> Inbox::ReplaceDeadLetter(int64_t id, const IngestItem& item) {
  if (item.message_reason) {
    return Status::InvalidArgument("still refused: " + std::string(ToString(*item.message_reason)) +
                                   ": " + item.message_detail);
  }
  if (!item.rejected.empty()) {
    return Status::InvalidArgument(
        "still refused: " + std::string(ToString(item.rejected.front().reason)) + ": " +
        item.rejected.front().detail);
  }
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  StoreOutcome out;
  Status s = m.InTransaction([&]() -> Status {
    if (Status st = m.PutEvents(item, &out); !st.ok()) return st;
    return Exec(m.db, "DELETE FROM dead_letters WHERE id = " + std::to_string(id),
                "remove a replayed dead letter");
  });
  if (!s.ok()) return s;
  return out;
}

Result<int64_t> Inbox::PruneForwarded(int64_t before_ms, int limit) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  std::string sql =
      "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE state = 1 AND received_ms < " +
      std::to_string(before_ms) + " ORDER BY id LIMIT " + std::to_string(limit) + ")";
  if (Status s = Exec(m.db, sql, "prune forwarded events"); !s.ok()) return s;
  return static_cast<int64_t>(sqlite3_changes(m.db));
}

Result<int64_t> Inbox::PruneDeadLetters(int64_t letters_before_ms, int64_t orphans_before_ms,
                                        int limit) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  int64_t deleted = 0;
  Status s = m.InTransaction([&]() -> Status {
    if (letters_before_ms > 0) {
      std::string sql =
          "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters "
          "WHERE last_seen_ms < " +
          std::to_string(letters_before_ms) + " ORDER BY id LIMIT " + std::to_string(limit) + ")";
      if (Status st = Exec(m.db, sql, "prune dead letters"); !st.ok()) return st;
      deleted += sqlite3_changes(m.db);
    }
    std::string sql =
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE state = 2 AND received_ms < " +
        std::to_string(orphans_before_ms) +
        " AND batch NOT IN (SELECT batch FROM dead_letters WHERE batch != 0) ORDER BY id LIMIT " +
        std::to_string(limit) + ")";
    if (Status st = Exec(m.db, sql, "prune dead events"); !st.ok()) return st;
    deleted += sqlite3_changes(m.db);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return deleted;
}

namespace {

Command ReadCommand(sqlite3_stmt* s) {
  Command c;
  c.command_id = Text(s, 0);
  c.device = Text(s, 1);
  c.kind = Text(s, 2);
  c.created_ms = sqlite3_column_int64(s, 3);
  c.updated_ms = sqlite3_column_int64(s, 4);
  c.state = Text(s, 5);
  c.message = Text(s, 6);
  c.status_json = Text(s, 7);
  c.payload = Text(s, 8);
  return c;
}

constexpr const char* kCommandColumns =
    "SELECT command_id, device, kind, created_ms, updated_ms, state, message, status_json, "
    "payload FROM commands ";

}  // namespace

Status Inbox::PutCommand(const Command& c) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(m.db,
                              "INSERT INTO commands(command_id, device, kind, created_ms, "
                              "updated_ms, state, payload) VALUES(?1, ?2, ?3, ?4, ?4, ?5, ?6)",
                              -1, &s, nullptr);
  if (rc == SQLITE_OK) {
    Bind(s, 1, c.command_id);
    Bind(s, 2, c.device);
    Bind(s, 3, c.kind);
    Bind(s, 4, c.created_ms);
    Bind(s, 5, c.state);
    BindBlob(s, 6, c.payload);
    rc = sqlite3_step(s);
  }
  Status st = rc == SQLITE_DONE ? Status::Ok() : SqliteStatus(m.db, rc, "store a command");
  sqlite3_finalize(s);
  if ((rc & 0xff) == SQLITE_CONSTRAINT) {
    return Status::FailedPrecondition("command " + c.command_id + " exists already");
  }
  return st;
}

Status Inbox::SetCommandState(const std::string& command_id, const std::string& state,
                              const std::string& message, const std::string& status_json,
                              int64_t now_ms) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  sqlite3_stmt* s = nullptr;
  // A result never goes back to "sent": the device may answer before the broker's PUBACK.
  int rc = sqlite3_prepare_v2(m.db,
                              "UPDATE commands SET state = ?2, message = ?3, status_json = ?4, "
                              "updated_ms = ?5 WHERE command_id = ?1 AND NOT (?2 = 'sent' AND "
                              "state IN ('ok', 'failed'))",
                              -1, &s, nullptr);
  if (rc == SQLITE_OK) {
    Bind(s, 1, command_id);
    Bind(s, 2, state);
    Bind(s, 3, message);
    Bind(s, 4, status_json);
    Bind(s, 5, now_ms);
    rc = sqlite3_step(s);
  }
  Status st = rc == SQLITE_DONE ? Status::Ok() : SqliteStatus(m.db, rc, "update a command");
  sqlite3_finalize(s);
  return st;
}

Result<std::optional<Command>> Inbox::GetCommand(const std::string& command_id) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  std::optional<Command> found;
  Status s = m.Query(
      std::string(kCommandColumns) + "WHERE command_id = ?1", "read a command",
      [&](sqlite3_stmt* st) { Bind(st, 1, command_id); },
      [&](sqlite3_stmt* st) { found = ReadCommand(st); });
  if (!s.ok()) return s;
  return found;
}

Result<std::vector<Command>> Inbox::ListCommands(const std::string& device, int limit) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  std::vector<Command> out;
  Status s = m.Query(
      std::string(kCommandColumns) +
          "WHERE (?1 = '' OR device = ?1) ORDER BY created_ms DESC LIMIT ?2",
      "list commands",
      [&](sqlite3_stmt* st) {
        Bind(st, 1, device);
        Bind(st, 2, static_cast<int64_t>(limit));
      },
      [&](sqlite3_stmt* st) { out.push_back(ReadCommand(st)); });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<Command>> Inbox::QueuedCommands() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  std::vector<Command> out;
  Status s = m.Query(
      std::string(kCommandColumns) + "WHERE state = 'queued' ORDER BY created_ms",
      "list queued commands", [](sqlite3_stmt*) {},
      [&](sqlite3_stmt* st) { out.push_back(ReadCommand(st)); });
  if (!s.ok()) return s;
  return out;
}

}  // namespace waybill::bridge
