// The bridge's counters, gauges and the forward-latency histogram, rendered for Prometheus.
//
// Everything is a relaxed atomic: any thread updates, /metrics reads a consistent-enough view
// (each value is exact; values are not a snapshot of one instant, as Prometheus expects).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "waybill/bridge/config.h"
#include "waybill/bridge/inbox.h"
#include "waybill/bridge/ingest.h"

namespace waybill::bridge {

// Upper bounds of the forward latency buckets, ms (receipt over MQTT to the backend's 2xx).
inline constexpr std::array<int64_t, 14> kLatencyBucketsMs = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10'000, 30'000, 60'000, 300'000};

// How the upload endpoint answered a request (waybill_bridge_photo_uploads_total{result=...}).
enum class UploadResult : uint8_t {
  kAccepted = 0,    // a part appended (200)
  kCompleted,       // the last part: verified and stored (201)
  kWrongOffset,     // 409: the offset was not the stored one, or the photo is already whole
  kBusy,            // 409: another request of the same photo is running
  kDigestMismatch,  // 422: whole, but not the bytes its name says; discarded
  kBadRequest,      // 400: a missing or malformed header or name
  kForbidden,       // 403: no usable client certificate
  kTooLarge,        // 413: above uploads.max_bytes
  kHead,            // HEAD (or GET) answered
  kError,           // 5xx: the bridge's disk failed
};
inline constexpr int kUploadResultCount = 10;
std::string_view ToString(UploadResult result);

struct Metrics {
  using Counter = std::atomic<uint64_t>;
  Counter messages_received{0};                        // MQTT messages on fleet/+/up
  Counter events_received{0};                          // events in decodable batches
  Counter events_accepted{0};                          // new in the inbox
  Counter events_duplicate{0};                         // resends the inbox already had
  std::array<Counter, kRejectReasonCount> rejected{};  // messages or events, by reason
  Counter store_failures{0};                           // Store() errors (nothing acked)
  Counter acks_sent{0};
  Counter ack_failures{0};
  std::array<Counter, kRouteCount> forwarded{};      // events, per route
  std::array<Counter, kRouteCount> requests{};       // HTTP requests sent, per route
  std::array<Counter, kRouteCount> retries{};        // failed requests to be sent again
  std::array<Counter, kRouteCount> throttled{};      // 429s
  std::array<Counter, kRouteCount> dead_lettered{};  // events refused by the backend (4xx)
  std::array<std::array<Counter, kLatencyBucketsMs.size() + 1>, kRouteCount> latency_buckets{};
  std::array<Counter, kRouteCount> latency_sum_ms{};
  std::array<Counter, kRouteCount> latency_count{};
  std::atomic<bool> broker_connected{false};
  Counter broker_connects{0};
  Counter commands_sent{0};
  Counter command_results{0};
  std::array<Counter, kUploadResultCount> photo_uploads{};  // requests, by result
  Counter photo_bytes_received{0};   // body bytes appended to part files (resends included)
  Counter photos_forwarded{0};       // complete photos the backend accepted
  Counter photo_forward_retries{0};  // forwarding attempts that failed and will be repeated
  Counter photos_refused{0};         // photos the backend refused with a 4xx (kept, not resent)

  void ObserveLatency(Route route, int64_t ms);
  // Prometheus text format 0.0.4; `counts` adds the inbox gauges (pending per route, dead
  // letters), read from the inbox by the caller.
  std::string Render(const InboxCounts* counts, const std::string& instance) const;
};

}  // namespace waybill::bridge
