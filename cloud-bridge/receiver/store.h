// Store: the receiver's durable memory of what it applied, in one SQLite file.
//
// The receiver stands in for a backend that must apply every event exactly once although the
// bridge delivers at least once. It does what such a backend does: each request carries an
// Idempotency-Key, and a key already applied is answered "duplicate" and changes nothing. The
// keys live in the same transaction as the events they applied, so after a crash or restart a key
// is known if and only if its events are there.
//
// Beyond what a backend needs, the store watches the bridge: an event (path, device, seq) applied
// a second time under a different key is what the bridge must never cause (the key is the
// bridge's only way to say "this is a retry"), so it is recorded, flagged and counted as an
// event duplicate instead of being hidden.
//
// Tables: requests(key, path, received_unix_ms, body, events_hash),
// events(ord, path, device, seq, key, duplicate), `ord` being the order of application, and
// photos(sha256, device, mime, received_unix_ms, bytes).
// WAL with synchronous=NORMAL: a power cut may lose the last transactions, a process crash
// loses nothing; enough for a test backend.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ingest.h"
#include "waybill/status.h"

namespace waybill::receiver {

struct ApplyOutcome {
  bool duplicate = false;  // the key was applied before; nothing changed
  // Only with `duplicate`: the earlier request under this key had another path or other events.
  // The second batch is then lost to the backend: a bug in the sender worth shouting about.
  bool key_conflict = false;
  uint64_t events_applied = 0;    // events stored by this call (0 for a duplicate)
  uint64_t event_duplicates = 0;  // of those, events already applied under another key
};

// Totals over the whole database (they survive a restart).
struct StoreTotals {
  uint64_t applied_requests = 0;
  uint64_t events_applied = 0;
  uint64_t event_duplicates = 0;
  std::map<std::string, uint64_t> events_by_path;
};

struct AppliedEvent {
  std::string device;
  uint64_t seq = 0;
  std::string key;
  bool duplicate = false;        // applied before under another key
  int64_t received_unix_ms = 0;  // when the receiver took the request that applied it
};

// A proof-of-delivery photo the bridge handed on (PUT /v1/photos/{sha256}).
struct StoredPhoto {
  std::string sha256_hex;
  std::string device;
  std::string mime;
  uint64_t bytes = 0;
  int64_t received_unix_ms = 0;
};

class Store {
 public:
  // Opens or creates the database at `path` and reads its totals. Fails with IOError naming the
  // file when it cannot be opened or its schema created.
  static Result<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Applies the request under `key` in one transaction, or finds that `key` was applied before.
  // On error (IOError with SQLite's message) the transaction is rolled back: nothing of the
  // request is stored and the totals are unchanged. Thread-safe: calls are serialised.
  Result<ApplyOutcome> Apply(const std::string& key, const std::string& path,
                             const std::string& body, const std::vector<EventId>& events,
                             int64_t received_unix_ms);

  // The events applied on `path` (of `device` only, if given) in order of application, at most
  // `limit`. Thread-safe.
  Result<std::vector<AppliedEvent>> Events(const std::string& path,
                                           const std::optional<std::string>& device,
                                           uint64_t limit);

  // Stores a photo under its digest (checked by the caller); true if new, false if it was there
  // already (nothing changed). IOError on a storage failure, nothing stored. Thread-safe.
  Result<bool> PutPhoto(const std::string& sha256_hex, const std::string& device,
                        const std::string& mime, const std::string& bytes,
                        int64_t received_unix_ms);
  // Every photo stored, without its bytes, oldest first. Thread-safe.
  Result<std::vector<StoredPhoto>> Photos();

  // A copy of the totals. Thread-safe.
  StoreTotals Totals() const;

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  Status Init();
  Status Exec(const char* sql);
  Status Error(const char* what) const;
  sqlite3_stmt* Prepare(const char* sql);

  mutable std::mutex mu_;
  sqlite3* db_;
  StoreTotals totals_;
  sqlite3_stmt* find_request_ = nullptr;
  sqlite3_stmt* insert_request_ = nullptr;
  sqlite3_stmt* find_event_ = nullptr;
  sqlite3_stmt* insert_event_ = nullptr;
};

}  // namespace waybill::receiver
