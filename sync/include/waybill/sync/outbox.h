// The outbox: every event the truck records, stored durably before anything is sent.
//
// CONTRACT (the implementation file opens with the full essay):
//  * Append() returns a sequence number only after the transaction holding the event has been
//    committed with the WAL synced to disk (durability mode "full": PRAGMA synchronous=FULL in WAL
//    mode). Appends that arrive close together share one commit and one fsync (group commit).
//  * Sequences are per device, strictly increasing, and never reused or decreasing, across
//    crashes, reboots, corruption recovery and re-provisioning.
//  * Events are deleted only by Ack() (the bridge said it stored them) or by the eviction policy,
//    which thins the oldest fixes and never evicts delivery or proof-of-delivery events.
//  * With OutboxOptions::data_key, the bodies of deliveries and proofs of delivery are sealed
//    (AES-256-GCM, data_key.h) before they reach the file, and opened again by Claim(): what is
//    on disk holds no recipient name, note or signature in plaintext. Freed pages are zeroed
//    (PRAGMA secure_delete), so an acked event leaves no readable trace in the database file.
//  * Thread-safe: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "waybill/hal/clock.h"
#include "waybill/status.h"

namespace waybill::sync {

class DataKey;

// Event classes, with their priority: proof of delivery and delivery events before health before
// fixes. Values are stored on disk: never renumber.
enum class EventClass : uint8_t {
  kFix = 1,
  kHealth = 2,
  kDelivery = 3,
  kProofOfDelivery = 4,
};
bool IsProtected(EventClass cls);  // never evicted: kDelivery, kProofOfDelivery
const char* ToString(EventClass cls);

// The classes whose bodies carry personal data (recipient names, signatures, free-text notes):
// kDelivery and kProofOfDelivery. Sealed at rest when the outbox has a data key.
bool IsSealedClass(EventClass cls);
// The AAD that binds a sealed body to its class ("waybill outbox:pod"): a sealed delivery body
// cannot be passed off as a proof.
std::string SealedBodyAad(EventClass cls);
// A body as the outbox file holds it, made plaintext: a sealed body is opened with `key` (an
// error naming what failed when it cannot be: no key, another key, damaged), any other body is
// returned as it is. For tools and tests that read the file (outbox_reader.h).
Result<std::string> OpenStoredBody(const DataKey* key, EventClass cls, std::string_view body);

struct NewEvent {
  EventClass cls = EventClass::kFix;
  int64_t ts_ms = 0;  // wall time of the event, ms since the Unix epoch
  hal::TimeSource ts_src = hal::TimeSource::kUnknown;
  std::string body;  // the encoded event (nanopb message of the class; see sync/proto)
};

struct StoredEvent {
  uint64_t seq = 0;
  EventClass cls = EventClass::kFix;
  int64_t ts_ms = 0;
  hal::TimeSource ts_src = hal::TimeSource::kUnknown;
  std::string body;
};

struct OutboxOptions {
  std::string path;                       // the SQLite file, e.g. /var/lib/waybill/outbox.db
  uint64_t quota_bytes = 256ull << 20;    // live data size that triggers eviction
  uint64_t min_free_bytes = 16ull << 20;  // keep this much free on the file system
  int group_commit_max_events = 1024;     // most events in one transaction
  std::string vfs_name;                   // SQLite VFS to open with; empty = the default (tests
                                          // register a fault-injecting one)
  // Seals the bodies of IsSealedClass events at rest; null: bodies are stored as given. Claim
  // returns plaintext either way. See docs/PERSONAL-DATA.md.
  std::shared_ptr<const DataKey> data_key;
  // Zero deleted rows, also on freed pages (PRAGMA secure_delete = ON). Off only in the
  // benchmark that measures what it costs.
  bool secure_delete = true;
};

struct OutboxStats {
  uint64_t events = 0;
  uint64_t by_class[5] = {};  // indexed by EventClass value
  uint64_t bytes = 0;         // live data (pages in use * page size)
  uint64_t next_seq = 0;
  uint64_t oldest_ts_ms = 0;
  uint64_t commits = 0;  // transactions committed since open
  uint64_t appends = 0;  // events appended since open
  uint64_t evicted = 0;  // fixes (then health events) removed by the eviction policy
                         // since open
  uint64_t refused = 0;  // appends refused for lack of space since open
  uint64_t burned = 0;   // sequences given to transactions that then failed, since open:
                         // never stored, never reused (with `evicted`, the only gaps)
  // Sealed events that could not be opened (key lost or replaced, damaged) since open: kept in
  // the file, not sent; an alarm is raised.
  uint64_t unopenable = 0;
  std::vector<std::string> alarms;  // e.g. "outbox recovered from corruption: moved aside to ..."
};

class Outbox {
 public:
  virtual ~Outbox() = default;

  // Opens (creating if needed) the outbox at options.path: runs migrations and
  // PRAGMA integrity_check. A corrupt file is moved aside (path + ".corrupt-<unix_ms>") with its
  // WAL, a fresh outbox starts, an alarm is raised, and the sequence continues above anything the
  // old file could have used.
  static Result<std::unique_ptr<Outbox>> Open(const OutboxOptions& options);

  // Stores one event durably and returns its sequence. On error nothing was reported stored and
  // the transaction was rolled back; see the implementation essay for the one exception (a failed
  // final sync can leave the rows on disk, to be sent like any other event: duplicates, never
  // loss). kNoSpace: a fix was refused because only protected events are left and the quota or the
  // disk is full.
  virtual Result<uint64_t> Append(const NewEvent& event) = 0;

  // As Append, but returns at once; `done` runs on the outbox's writer thread after the commit.
  virtual void AppendAsync(NewEvent event, std::function<void(Result<uint64_t>)> done) = 0;

  // Claims up to `max_events` unclaimed events for sending, in the order the uplink drains:
  // protected events first in sequence order, then health, then fixes in sequence order. A claim
  // is a lease kept in memory: after a restart nothing is claimed. `newest_fix_first` puts the
  // newest unclaimed fix at the front of the batch (live position after a dead zone).
  virtual Result<std::vector<StoredEvent>> Claim(size_t max_events, bool newest_fix_first) = 0;

  // The bridge stored these: delete them. Unknown sequences are ignored (acks may repeat).
  virtual Status Ack(std::span<const uint64_t> seqs) = 0;

  // The send failed or timed out: these may be claimed again.
  virtual void Release(std::span<const uint64_t> seqs) = 0;

  // First valid GNSS time arrived: events of this boot recorded with TimeSource::kMonotonic get
  // ts_ms += offset_ms and TimeSource::kGnssCorrected. Returns how many were corrected.
  virtual Result<uint64_t> CorrectTime(int64_t offset_ms) = 0;

  virtual OutboxStats Stats() = 0;

  // Waits for pending appends to commit. Called on SIGTERM before exit.
  virtual Status Flush() = 0;
};

}  // namespace waybill::sync
