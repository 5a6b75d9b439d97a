// Read-only inspection of an outbox file, safe while waybilld writes to it.
//
// The reader opens the file with SQLITE_OPEN_READONLY: it never writes the database or its WAL
// and never checkpoints (a read-only connection cannot). In WAL mode it reads a consistent
// snapshot beside the running writer without blocking it; a snapshot held open delays only the
// writer's WAL reset, so each call keeps its read transaction short. For waybillctl and tests.
//
// Sealed bodies (deliveries and proofs written with a data key, see data_key.h) are opened when
// the reader was given the key; without it, or when a body does not open, the body is passed on
// as stored (IsSealed() tells; OpenStoredBody() in outbox.h says why it does not open).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "waybill/status.h"
#include "waybill/sync/outbox.h"

namespace waybill::sync {

struct OutboxSummary {
  uint64_t events = 0;
  uint64_t by_class[5] = {};  // indexed by EventClass value
  uint64_t live_bytes = 0;    // (page_count - freelist_count) * page_size
  uint64_t file_bytes = 0;    // page_count * page_size
  uint64_t wal_bytes = 0;     // size of the -wal file, 0 if none
  uint64_t page_size = 0;
  int64_t schema_version = 0;
  uint64_t next_seq = 0;                // meta.next_seq: above every stored sequence
  std::optional<uint64_t> lease;        // the sequence lease (<db>.seq), if readable
  std::optional<uint64_t> min_seq;      // lowest stored sequence
  std::optional<uint64_t> max_seq;      // highest stored sequence
  std::optional<int64_t> oldest_ts_ms;  // smallest event time stored
  std::optional<int64_t> newest_ts_ms;  // largest event time stored
};

class OutboxReader {
 public:
  // Opens `path` read-only. Fails (kNotFound) when the file does not exist, (kFailedPrecondition)
  // when it is not a Waybill outbox; never creates anything. busy_timeout_ms bounds the wait for
  // a lock held during the writer's WAL recovery or reset.
  static Result<std::unique_ptr<OutboxReader>> Open(
      const std::string& path, int busy_timeout_ms = 500,
      std::shared_ptr<const DataKey> data_key = nullptr);
  virtual ~OutboxReader() = default;

  // Counts, sizes and sequence state from one snapshot. Not thread-safe (one reader per thread).
  virtual Result<OutboxSummary> Summary() = 0;

  // Calls fn for each stored event in sequence order, only those of class `cls` if given, at most
  // `limit` (0 = no limit), stopping early when fn returns false. One snapshot. Not thread-safe.
  virtual Status ForEach(std::optional<EventClass> cls, uint64_t limit,
                         const std::function<bool(const StoredEvent&)>& fn) = 0;
};

}  // namespace waybill::sync
