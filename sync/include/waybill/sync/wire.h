// The MQTT wire protocol: topics, the uplink Batch, the Ack, downlink Commands and their results.
//
// Trucks pay for every byte, so a batch carries its fixes as columns (each field of every fix
// side by side, delta-encoded, as zigzag varints in packed protobuf fields or bit-packed): a
// breadcrumb costs a few bytes. Every other event travels as an Envelope holding its body exactly
// as stored in the outbox. The full description, with the ack rule and the versioning rule, is
// docs/PROTOCOL.md; the schema is sync/proto/wire.proto.
//
// Every function here is pure and thread-safe: no I/O, no shared state. Decoders never read past
// their input, bound every count and size, and say in the Status message what was wrong
// ("batch: column speed_cmps has 59 values for 60 fixes").
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "waybill/status.h"
#include "waybill/sync/events.h"  // kMaxIdBytes
#include "waybill/sync/outbox.h"

namespace waybill::sync {

// The schema's major version. It travels in every batch and command; a decoder refuses a newer
// one. Adding fields does not change it (fields are only ever added; unknown ones are ignored).
inline constexpr uint32_t kSchemaVersion = 1;

// Bounds of the wire, enforced by encoders and decoders alike.
inline constexpr size_t kMaxBatchBytes = 256 * 1024;  // a whole encoded Batch payload
inline constexpr size_t kMaxBatchEvents = 1024;       // events of all classes in one batch
inline constexpr size_t kMaxDeviceIdBytes = 64;
inline constexpr size_t kMaxAckBytes = 24 * 1024;      // an encoded Ack payload
inline constexpr size_t kMaxAckRanges = 1024;          // [first, last] ranges in one Ack
inline constexpr size_t kMaxAckSeqs = 65536;           // sequences named by one Ack
inline constexpr size_t kMaxCommandBytes = 96 * 1024;  // an encoded Command payload
inline constexpr size_t kMaxManifestStops = 200;
inline constexpr size_t kMaxAddressBytes = 256;
inline constexpr size_t kMaxManifestDateBytes = 10;  // "YYYY-MM-DD"
inline constexpr size_t kMaxResultMessageBytes = 512;
inline constexpr size_t kMaxStatusJsonBytes = 4096;

// A device id is 1..64 of [A-Za-z0-9_-]: safe in a topic level, a file name and a log line.
bool IsValidDeviceId(std::string_view device_id);

// Topics of one device. The device id must be valid (IsValidDeviceId); callers check it once,
// at provisioning or at start-up.
std::string TopicUp(std::string_view device);         // fleet/<device>/up: Batch, device->cloud
std::string TopicAck(std::string_view device);        // fleet/<device>/ack: Ack, cloud->device
std::string TopicCmd(std::string_view device);        // fleet/<device>/cmd: Command, cloud->device
std::string TopicCmdResult(std::string_view device);  // fleet/<device>/cmd/result: CommandResult
std::string TopicStatus(std::string_view device);     // fleet/<device>/status: retained JSON

// The device id in any of the topics above ("fleet/truck-7/up" -> "truck-7"); nullopt when the
// topic is not one of them or the id is not valid. The bridge compares it with the payload's.
std::optional<std::string> DeviceFromTopic(std::string_view topic);

// The retained status payload (UTF-8 JSON, not protobuf), also used as the last will:
// {"state":"online","firmware":"0.3.1"} or {"state":"offline","firmware":"0.3.1"}.
std::string StatusPayload(bool online, std::string_view firmware_version);

// ---- Uplink: Batch (fleet/<device>/up) ----

// Encodes events claimed from the outbox, in any order, into one Batch payload. Fix events (cls
// kFix, body = EncodeFix) go into the fix columns sorted by seq; other events become Envelopes
// with their body bytes as stored. `historical` marks a backlog drain (the bridge may forward
// live batches first). Fails (kInvalidArgument, nothing encoded) on an invalid device id, more
// than kMaxBatchEvents events, a fix body that does not decode, a seq that appears twice, or a
// result larger than kMaxBatchBytes (the caller then sends fewer events per batch).
Result<std::string> EncodeBatch(std::string_view device_id, bool historical,
                                std::span<const StoredEvent> events);

struct DecodedBatch {
  uint32_t schema_version = 0;
  std::string device_id;
  bool historical = false;
  // All events in ascending seq order. Fix bodies are EncodeFix(decoded fix), so every class
  // decodes the same way (DecodeFix, DecodeDelivery...).
  std::vector<StoredEvent> events;
};

// Decodes a Batch payload. Fails (kCorruption or kInvalidArgument with the reason) on input over
// kMaxBatchBytes, truncated or malformed protobuf, a missing or newer schema_version, an invalid
// device id, more than kMaxBatchEvents events, fix columns whose lengths disagree, fix seqs not
// strictly increasing, a seq that appears twice, out-of-range values (position outside the globe,
// unknown class or time source), or an envelope without a body. Unknown fields are ignored.
Result<DecodedBatch> DecodeBatch(std::string_view bytes);

// ---- Ack (fleet/<device>/ack) ----

// Encodes the sequences the bridge has durably stored as sorted, merged [first, last] ranges
// (seqs may be unsorted and repeat). The device id must be valid. A set needing more than
// kMaxAckRanges ranges or naming more than kMaxAckSeqs sequences should be split by the caller:
// EncodeAck keeps the lowest seqs within both bounds and drops the rest, which the device will
// resend and the bridge ack again (duplicates are normal).
std::string EncodeAck(std::string_view device_id, std::span<const uint64_t> seqs);

// Decodes an Ack into its sequences, ascending. `device_id_out` (may be null) gets the device id.
// Fails on input over kMaxAckBytes, malformed protobuf, an invalid device id, a range with
// last < first, ranges out of order or overlapping, more than kMaxAckRanges ranges, or more
// than kMaxAckSeqs sequences in all.
Result<std::vector<uint64_t>> DecodeAck(std::string_view bytes, std::string* device_id_out);

// ---- Downlink: Command (fleet/<device>/cmd) and CommandResult (fleet/<device>/cmd/result) ----

struct ManifestStop {
  std::string stop_id;          // <= kMaxIdBytes, required
  std::string order_id;         // <= kMaxIdBytes
  std::string address;          // <= kMaxAddressBytes
  int64_t window_start_ms = 0;  // delivery window, ms since the Unix epoch; 0 = open
  int64_t window_end_ms = 0;
  uint32_t sequence = 0;  // planned order of the stop in the route
  bool operator==(const ManifestStop&) const = default;
};

// The day's delivery manifest; replaces any earlier manifest with the same date.
struct Manifest {
  std::string manifest_id;          // <= kMaxIdBytes, required
  std::string date;                 // "YYYY-MM-DD" (local date of the route)
  std::vector<ManifestStop> stops;  // <= kMaxManifestStops
  bool operator==(const Manifest&) const = default;
};

// Changes to the device's configuration; only the fields set are changed.
struct ConfigUpdate {
  std::optional<uint32_t> min_period_ms;  // sampling
  std::optional<uint32_t> max_period_ms;
  std::optional<uint32_t> min_distance_m;
  std::optional<uint32_t> heading_change_deg;
  std::optional<uint32_t> speed_change_kmh;
  std::optional<uint32_t> stop_after_ms;
  std::optional<uint32_t> parked_period_ms;
  std::optional<uint32_t> quota_mb;  // outbox quota
  std::optional<uint32_t> health_period_s;
  std::optional<uint32_t> keepalive_s;  // MQTT keep-alive
  bool operator==(const ConfigUpdate&) const = default;
};

// Asks the device to publish a CommandResult whose status_json describes its state.
struct RequestStatus {
  bool operator==(const RequestStatus&) const = default;
};

struct Command {
  std::string command_id;  // <= kMaxIdBytes, required; the result names it
  std::variant<Manifest, ConfigUpdate, RequestStatus> body;
  bool operator==(const Command&) const = default;
};

// Fails (kInvalidArgument, naming the field) on a missing or too long id or string, too many
// stops, or a window that ends before it starts.
Result<std::string> EncodeCommand(const Command& command);

// Fails on input over kMaxCommandBytes, malformed protobuf, a newer schema_version (the device
// refuses commands of a newer major and reports it in a CommandResult), a command without a body,
// or any bound EncodeCommand checks.
Result<Command> DecodeCommand(std::string_view bytes);

// The command_id of a Command payload whose body may not decode, so that the device can still
// answer it; empty when even the id is unreadable (the command then goes unanswered).
std::string PeekCommandId(std::string_view bytes);

struct CommandResult {
  std::string command_id;  // <= kMaxIdBytes
  bool ok = false;
  std::string message;      // <= kMaxResultMessageBytes; why it failed, or a short summary
  std::string status_json;  // <= kMaxStatusJsonBytes; answer to RequestStatus, else empty
  bool operator==(const CommandResult&) const = default;
};

// Fails (kInvalidArgument) on a string over its bound.
Result<std::string> EncodeCommandResult(const CommandResult& result);
// Fails on malformed protobuf or a string over its bound.
Result<CommandResult> DecodeCommandResult(std::string_view bytes);

}  // namespace waybill::sync
