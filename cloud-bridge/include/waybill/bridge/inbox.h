// The bridge's inbox: a SQLite file that holds every event between the truck's batch and the
// backend's answer, the dead letters, and the downlink commands.
//
// The method. A received batch is validated (ingest.h) and then stored with Store(), in one
// transaction with synchronous=FULL that holds every message of a group: the accepted events
// (deduplicated on device id and sequence: a resend inserts nothing), the rejected events and the
// rejected messages (as dead letters with their reason and raw bytes). Only after Store() returns
// does the bridge publish the acks; a truck deletes nothing before that, so a crash of the bridge
// at any moment loses nothing: what was not stored is still on the truck, which sends it again.
//
// Forwarding takes events per route and lane (a device always maps to the same lane, so a route
// keeps each device's order). NextBatch() assigns the lane's next events to a batch and commits
// that assignment, with the batch's Idempotency-Key, BEFORE the request is sent: after a crash the
// same events go out again under the same key, so the backend can apply them once. A batch ends
// with CompleteBatch() (2xx: the events are forwarded; their bodies are dropped and their
// identity is kept for dedup_window_h to recognise resends) or DeadLetterBatch() (a 4xx other
// than 429: the events wait in the dead-letter store for an operator).
//
// Failure contract: every mutating call is one transaction. When it returns an error, nothing of
// it is stored (SQLite rolls the transaction back) and the caller may retry; Store()'s caller
// then sends no ack. Thread-safety: all methods may be called from any thread; they are
// serialised inside. Other processes (waybillctl bridge) may open the same file meanwhile.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "waybill/bridge/config.h"
#include "waybill/bridge/ingest.h"
#include "waybill/status.h"

struct sqlite3;

namespace waybill::bridge {

struct InboxOptions {
  std::string path;  // e.g. /var/lib/waybill-bridge/inbox.db; created if missing
  // Lanes per route (RouteConfig::lanes), remembered in the file. 0 = take the remembered ones
  // (tools that store events, such as a dead-letter replay, must use the bridge's lanes).
  std::array<int, kRouteCount> lanes = {0, 0, 0, 0};
  bool read_only = false;  // for waybillctl bridge stats / dlq list|show
};

// What Store() did with one message.
struct StoreOutcome {
  size_t inserted = 0;             // new events
  size_t duplicates = 0;           // events the inbox already had (a resend)
  size_t rejected = 0;             // events stored as dead letters
  std::vector<uint64_t> ack_seqs;  // every seq of the message now durably held: acknowledge them
};

struct InboxEvent {
  int64_t id = 0;  // inbox order
  std::string device;
  sync::StoredEvent event;
  bool historical = false;
  int64_t received_ms = 0;
  bool signature_verified = false;  // a proof whose device signature the bridge verified
};

struct ForwardBatch {
  int64_t id = 0;
  Route route = Route::kPositions;
  int lane = 0;
  std::string idempotency_key;     // "wb1-<route>-<hash of the events' identities>"
  std::vector<InboxEvent> events;  // in inbox order
};

enum class DeadLetterKind : uint8_t {
  kMessage = 1,  // a whole MQTT message was refused (undecodable, oversized, forged identity)
  kEvent = 2,    // one event of a valid batch was refused (implausible time, PoD field missing)
  kForward = 3,  // the backend refused a batch with a 4xx
};
std::string_view ToString(DeadLetterKind kind);

struct DeadLetter {
  int64_t id = 0;
  DeadLetterKind kind = DeadLetterKind::kMessage;
  int64_t created_ms = 0;
  int64_t last_seen_ms = 0;
  int64_t times_seen = 1;  // the same raw bytes again (a truck resending a broken message)
  std::string reason;      // metric label: "malformed", "identity", "time", "http_400"...
  std::string detail;      // the full explanation
  std::string topic;
  std::string device;
  std::optional<uint64_t> seq;             // kEvent
  std::optional<sync::StoredEvent> event;  // kEvent: class, time, source and body
  bool historical = false;                 // kEvent
  std::optional<Route> route;              // kForward
  int64_t batch = 0;                       // kForward
  int http_status = 0;                     // kForward
  std::string response;                    // kForward: the start of the backend's answer
  std::string payload;  // raw bytes: the MQTT payload (kMessage), the event body (kEvent) or
                        // the request body (kForward)
};

struct Command {
  std::string command_id;
  std::string device;
  std::string kind;  // "manifest", "config", "request_status"
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  // "queued" (stored, not yet accepted by the broker), "sent" (PUBACK from the broker),
  // "ok" / "failed" (the device's CommandResult).
  std::string state;
  std::string message;
  std::string status_json;
  std::string payload;  // the encoded Command
};

struct InboxCounts {
  std::array<int64_t, kRouteCount> pending{};     // not yet forwarded, per route
  std::array<int64_t, kRouteCount> in_batches{};  // of those, assigned to an open batch
  int64_t dead_events = 0;
  int64_t dead_letters = 0;
  int64_t oldest_pending_ms = 0;  // received time of the oldest pending event; 0 = none
};

class Inbox {
 public:
  // Opens (creating and migrating) the inbox, runs integrity_check, sets WAL and
  // synchronous=FULL. Fails with the reason (kCorruption for a damaged file: the bridge then
  // refuses to start; an operator moves the file aside, see docs/BRIDGE.md).
  static Result<std::unique_ptr<Inbox>> Open(const InboxOptions& options);
  ~Inbox();
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  // Stores a group of validated messages in one transaction (see the method above). `outcomes`
  // gets one entry per message. On error nothing is stored.
  Status Store(std::span<const IngestItem> items, std::vector<StoreOutcome>* outcomes);

  // The lane's open batch if it has one (after a restart: the same events and key), else a new
  // batch of at most `max_events` pending events of (route, lane) in inbox order, or nullopt
  // when there are none. `per_device`: the batch holds one device's events (URL with {device}).
  Result<std::optional<ForwardBatch>> NextBatch(Route route, int lane, int max_events,
                                                bool per_device, int64_t now_ms);
  struct LaneRequest {
    Route route = Route::kPositions;
    int lane = 0;
    int max_events = 500;
    bool per_device = false;
  };
  // NextBatch for several lanes at once: every new batch is committed in ONE transaction (one
  // fsync for all of them). `out` gets one entry per request.
  Status NextBatches(std::span<const LaneRequest> lanes, int64_t now_ms,
                     std::vector<std::optional<ForwardBatch>>* out);
  // 2xx: the batch's events are forwarded. Committed without waiting for the disk
  // (synchronous=NORMAL; the next durable commit takes it along): if it is lost in a crash, the
  // batch goes out again under its key, which the backend recognises.
  Status CompleteBatch(int64_t batch_id);
  // A 4xx: the batch's events become dead (kept), and one kForward dead letter holds the request
  // body and the start of the response. Not waited for either: lost in a crash, the batch is sent
  // again and refused again.
  Status DeadLetterBatch(const ForwardBatch& batch, int http_status, std::string_view reason,
                         std::string_view detail, std::string_view request_body,
                         std::string_view response, int64_t now_ms);

  Result<InboxCounts> Counts();

  // Dead letters, newest first, at most `limit`, with ids below `before_id` (0 = from the newest).
  Result<std::vector<DeadLetter>> ListDeadLetters(int limit, int64_t before_id);
  Result<DeadLetter> GetDeadLetter(int64_t id);
  // Removes a dead letter (its events, for kForward, stay dead and are pruned in time).
  Status DropDeadLetter(int64_t id);
  // kForward: the batch's dead events become pending again (a new batch, a new key: the backend
  // refused the old one) and the dead letter is removed. Returns the events made pending.
  // kMessage / kEvent: use ReplayDeadLetter() in ingest.h's terms (Replay below).
  Result<int64_t> RequeueForwardDeadLetter(int64_t id);
  // Stores `items` (the re-validated dead letter) and removes the dead letter `id` in one
  // transaction if every event of them was accepted; otherwise nothing changes and the reason of
  // the first refusal is returned as kInvalidArgument.
  Result<StoreOutcome> ReplaceDeadLetter(int64_t id, const IngestItem& item);

  // Deletes forwarded events received before `before_ms` (their dedup window is over), at most
  // `limit` per call. Returns how many.
  Result<int64_t> PruneForwarded(int64_t before_ms, int limit);

  // Retention of what was refused, which holds personal data in its raw bytes: deletes dead
  // letters last seen before `letters_before_ms` (0: none, they wait for an operator), and dead
  // events (bodies of a refused request) whose dead letter is gone, received before
  // `orphans_before_ms`. At most `limit` rows of each per call, one transaction. Returns how many
  // rows were deleted in all.
  Result<int64_t> PruneDeadLetters(int64_t letters_before_ms, int64_t orphans_before_ms, int limit);

  // Commands for the downlink.
  Status PutCommand(const Command& command);
  Status SetCommandState(const std::string& command_id, const std::string& state,
                         const std::string& message, const std::string& status_json,
                         int64_t now_ms);
  Result<std::optional<Command>> GetCommand(const std::string& command_id);
  Result<std::vector<Command>> ListCommands(const std::string& device, int limit);
  // Commands not yet accepted by the broker (to publish again after a restart).
  Result<std::vector<Command>> QueuedCommands();

 private:
  explicit Inbox(sqlite3* db, InboxOptions options);
  Status Prepare();
  Status ReconcileLanes();

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The lane of a device on a route with `lanes` lanes (FNV-1a of the id, stable across builds).
int LaneOf(std::string_view device, int lanes);

}  // namespace waybill::bridge
