// The forwarder: moves the inbox's events to the backend over HTTP, one queue per route.
//
// Each route has `lanes` lanes; a device always uses the same lane, and a lane has at most one
// request in flight, so the backend sees each device's events of a route in inbox order. A
// failing route (5xx, timeouts, refused connections: retried with capped exponential backoff
// and full jitter; 429: after its Retry-After) holds back only its own lanes, never another
// route's. A 4xx other than 429 dead-letters the batch with the response, and the lane goes on.
//
// Every request carries the batch's Idempotency-Key, committed with the batch before the first
// attempt (inbox.h), so a retry, or a resend after a crash, repeats the same key.
//
// One thread drives every lane through a libcurl multi handle: connections are reused
// (keep-alive), HTTP/2 is used where the backend offers it over TLS, and peers are verified.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "waybill/bridge/config.h"
#include "waybill/bridge/inbox.h"
#include "waybill/bridge/metrics.h"

namespace waybill::bridge {

class Forwarder {
 public:
  // `inbox` and `metrics` must outlive the forwarder.
  Forwarder(const BridgeConfig& config, Inbox* inbox, Metrics* metrics);
  ~Forwarder();  // Stop(0)
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // Starts the forwarding thread. Fails if libcurl cannot be set up.
  Status Start();
  // New events were stored: idle lanes look at the inbox again now (otherwise within 1 s).
  // Thread-safe, cheap.
  void Wake();
  // Sends no new batch; waits at most `grace_ms` for requests in flight to end, then abandons
  // the rest (their batches stay open in the inbox and go out again, with the same key, at the
  // next start). Thread-safe; idempotent.
  void Stop(int64_t grace_ms);

  // Requests in flight now (for /readyz and the tests).
  int in_flight() const { return in_flight_.load(); }

 private:
  struct Impl;
  void Run();

  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<int64_t> grace_deadline_ms_{0};
};

// How the forwarder treats an HTTP answer (pure, for the tests).
enum class Outcome { kDone, kRetry, kThrottled, kDeadLetter };
// `curl_ok` false: a transport error (timeout, refused, TLS): retry.
Outcome Classify(bool curl_ok, long http_status);

}  // namespace waybill::bridge
