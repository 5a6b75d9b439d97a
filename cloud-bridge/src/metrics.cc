#include "waybill/bridge/metrics.h"

#include <sstream>

namespace waybill::bridge {

std::string_view ToString(UploadResult result) {
  switch (result) {
    case UploadResult::kAccepted:
      return "accepted";
    case UploadResult::kCompleted:
      return "completed";
    case UploadResult::kWrongOffset:
      return "wrong_offset";
    case UploadResult::kBusy:
      return "busy";
    case UploadResult::kDigestMismatch:
      return "digest_mismatch";
    case UploadResult::kBadRequest:
      return "bad_request";
    case UploadResult::kForbidden:
      return "forbidden";
    case UploadResult::kTooLarge:
      return "too_large";
    case UploadResult::kHead:
      return "head";
    case UploadResult::kError:
      return "error";
  }
  return "unknown";
}

void Metrics::ObserveLatency(Route route, int64_t ms) {
  int r = static_cast<int>(route);
  ms = std::max<int64_t>(0, ms);
  size_t b = 0;
  while (b < kLatencyBucketsMs.size() && ms > kLatencyBucketsMs[b]) ++b;
  latency_buckets[r][b].fetch_add(1, std::memory_order_relaxed);
  latency_sum_ms[r].fetch_add(static_cast<uint64_t>(ms), std::memory_order_relaxed);
  latency_count[r].fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::Render(const InboxCounts* counts, const std::string& instance) const {
  std::ostringstream o;
  auto v = [](const Counter& c) { return c.load(std::memory_order_relaxed); };
  auto head = [&](const char* name, const char* type, const char* help) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  auto per_route = [&](const char* name, const char* help, const auto& values) {
    head(name, "counter", help);
    for (int r = 0; r < kRouteCount; ++r) {
      o << name << "{route=\"" << ToString(static_cast<Route>(r)) << "\"} " << v(values[r]) << '\n';
    }
  };
  head("waybill_bridge_info", "gauge", "Constant 1, labelled with the instance name.");
  o << "waybill_bridge_info{instance=\"" << instance << "\"} 1\n";
  head("waybill_bridge_messages_received_total", "counter", "MQTT messages on fleet/+/up.");
  o << "waybill_bridge_messages_received_total " << v(messages_received) << '\n';
  head("waybill_bridge_events_received_total", "counter", "Events in decodable batches.");
  o << "waybill_bridge_events_received_total " << v(events_received) << '\n';
  head("waybill_bridge_events_accepted_total", "counter", "Events stored new in the inbox.");
  o << "waybill_bridge_events_accepted_total " << v(events_accepted) << '\n';
  head("waybill_bridge_events_duplicate_total", "counter", "Resent events the inbox already held.");
  o << "waybill_bridge_events_duplicate_total " << v(events_duplicate) << '\n';
  head("waybill_bridge_rejected_total", "counter",
       "Refused messages (oversized, malformed, topic, identity) or events (time, fields, body).");
  for (int i = 0; i < kRejectReasonCount; ++i) {
    o << "waybill_bridge_rejected_total{reason=\"" << ToString(static_cast<RejectReason>(i))
      << "\"} " << v(rejected[i]) << '\n';
  }
  head("waybill_bridge_store_failures_total", "counter",
       "Inbox transactions that failed (nothing acknowledged; the trucks resend).");
  o << "waybill_bridge_store_failures_total " << v(store_failures) << '\n';
  head("waybill_bridge_acks_sent_total", "counter", "Acks published to trucks.");
  o << "waybill_bridge_acks_sent_total " << v(acks_sent) << '\n';
  head("waybill_bridge_ack_failures_total", "counter", "Acks that could not be published.");
  o << "waybill_bridge_ack_failures_total " << v(ack_failures) << '\n';
  per_route("waybill_bridge_forwarded_total", "Events the backend accepted.", forwarded);
  per_route("waybill_bridge_requests_total", "HTTP requests sent to the backend.", requests);
  per_route("waybill_bridge_retries_total", "Requests that failed and will be sent again.",
            retries);
  per_route("waybill_bridge_throttled_total", "Requests answered 429.", throttled);
  per_route("waybill_bridge_dead_lettered_total", "Events the backend refused with a 4xx.",
            dead_lettered);
  head("waybill_bridge_forward_latency_ms", "histogram",
       "From receipt over MQTT to the backend's 2xx, per event.");
  for (int r = 0; r < kRouteCount; ++r) {
    std::string route(ToString(static_cast<Route>(r)));
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= kLatencyBucketsMs.size(); ++b) {
      cumulative += v(latency_buckets[r][b]);
      o << "waybill_bridge_forward_latency_ms_bucket{route=\"" << route << "\",le=\"";
      if (b < kLatencyBucketsMs.size()) {
        o << kLatencyBucketsMs[b];
      } else {
        o << "+Inf";
      }
      o << "\"} " << cumulative << '\n';
    }
    o << "waybill_bridge_forward_latency_ms_sum{route=\"" << route << "\"} " << v(latency_sum_ms[r])
      << '\n';
    o << "waybill_bridge_forward_latency_ms_count{route=\"" << route << "\"} "
      << v(latency_count[r]) << '\n';
  }
  if (counts != nullptr) {
    head("waybill_bridge_inbox_pending", "gauge", "Events not yet forwarded, per route.");
    for (int r = 0; r < kRouteCount; ++r) {
      o << "waybill_bridge_inbox_pending{route=\"" << ToString(static_cast<Route>(r)) << "\"} "
        << counts->pending[r] << '\n';
    }
    head("waybill_bridge_dead_letters", "gauge", "Rows in the dead-letter store.");
    o << "waybill_bridge_dead_letters " << counts->dead_letters << '\n';
    head("waybill_bridge_dead_events", "gauge", "Events held dead after a 4xx.");
    o << "waybill_bridge_dead_events " << counts->dead_events << '\n';
  }
  head("waybill_bridge_broker_connected", "gauge", "1 while connected to the MQTT broker.");
  o << "waybill_bridge_broker_connected " << (broker_connected.load() ? 1 : 0) << '\n';
  head("waybill_bridge_broker_connects_total", "counter", "Successful (re)connections.");
  o << "waybill_bridge_broker_connects_total " << v(broker_connects) << '\n';
  head("waybill_bridge_commands_sent_total", "counter", "Commands the broker accepted.");
  o << "waybill_bridge_commands_sent_total " << v(commands_sent) << '\n';
  head("waybill_bridge_command_results_total", "counter", "Command results from devices.");
  o << "waybill_bridge_command_results_total " << v(command_results) << '\n';
  head("waybill_bridge_photo_uploads_total", "counter",
       "Requests to the photo upload endpoint, by result.");
  for (int i = 0; i < kUploadResultCount; ++i) {
    o << "waybill_bridge_photo_uploads_total{result=\"" << ToString(static_cast<UploadResult>(i))
      << "\"} " << v(photo_uploads[i]) << '\n';
  }
  head("waybill_bridge_photo_bytes_received_total", "counter",
       "Photo bytes stored from upload requests (a resumed upload adds only what was missing).");
  o << "waybill_bridge_photo_bytes_received_total " << v(photo_bytes_received) << '\n';
  head("waybill_bridge_photos_forwarded_total", "counter", "Photos the backend accepted.");
  o << "waybill_bridge_photos_forwarded_total " << v(photos_forwarded) << '\n';
  head("waybill_bridge_photo_forward_retries_total", "counter",
       "Photo forwarding attempts that failed and will be repeated.");
  o << "waybill_bridge_photo_forward_retries_total " << v(photo_forward_retries) << '\n';
  head("waybill_bridge_photos_refused_total", "counter",
       "Photos the backend refused with a 4xx (kept on the bridge, not sent again).");
  o << "waybill_bridge_photos_refused_total " << v(photos_refused) << '\n';
  return o.str();
}

}  // namespace waybill::bridge
