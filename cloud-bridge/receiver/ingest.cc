#include "ingest.h"

#include <nlohmann/json.hpp>

namespace waybill::receiver {

namespace {

// Generous for any key a client derives from a batch, small enough that a key cannot bloat the
// database or the log.
constexpr size_t kMaxKeyBytes = 256;

std::string JsonType(const nlohmann::json& j) { return j.type_name(); }

}  // namespace

Result<std::vector<EventId>> ParseIngestBody(std::string_view body) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    return Status::InvalidArgument("body: not valid JSON (parse error at byte " +
                                   std::to_string(e.byte) + ")");
  } catch (const nlohmann::json::exception&) {
    // The parser reports a number too large for a double (1e400) as out_of_range.
    return Status::InvalidArgument("body: not valid JSON (a number out of range)");
  }
  if (!doc.is_object()) {
    return Status::InvalidArgument("body: expected a JSON object, got " + JsonType(doc));
  }
  auto events = doc.find("events");
  if (events == doc.end()) return Status::InvalidArgument("events: missing");
  if (!events->is_array()) {
    return Status::InvalidArgument("events: expected an array, got " + JsonType(*events));
  }
  std::vector<EventId> ids;
  ids.reserve(events->size());
  for (size_t i = 0; i < events->size(); ++i) {
    const nlohmann::json& ev = (*events)[i];
    std::string where = "events[" + std::to_string(i) + "]";
    if (!ev.is_object()) {
      return Status::InvalidArgument(where + ": expected an object, got " + JsonType(ev));
    }
    auto device = ev.find("device");
    if (device == ev.end()) return Status::InvalidArgument(where + ".device: missing");
    if (!device->is_string()) {
      return Status::InvalidArgument(where + ".device: expected a string, got " +
                                     JsonType(*device));
    }
    if (device->get_ref<const std::string&>().empty()) {
      return Status::InvalidArgument(where + ".device: empty");
    }
    auto seq = ev.find("seq");
    if (seq == ev.end()) return Status::InvalidArgument(where + ".seq: missing");
    // nlohmann stores every non-negative integer literal as unsigned: a negative number or a
    // fraction lands here as integer or float and is refused.
    if (!seq->is_number_unsigned()) {
      return Status::InvalidArgument(where + ".seq: expected an unsigned integer, got " +
                                     (seq->is_number() ? seq->dump() : JsonType(*seq)));
    }
    ids.push_back({device->get<std::string>(), seq->get<uint64_t>()});
  }
  return ids;
}

Status CheckIdempotencyKey(bool present, std::string_view key) {
  if (!present) return Status::InvalidArgument("Idempotency-Key: missing header");
  if (key.empty()) return Status::InvalidArgument("Idempotency-Key: empty");
  if (key.size() > kMaxKeyBytes) {
    return Status::InvalidArgument("Idempotency-Key: " + std::to_string(key.size()) +
                                   " bytes, at most " + std::to_string(kMaxKeyBytes));
  }
  return Status::Ok();
}

}  // namespace waybill::receiver
