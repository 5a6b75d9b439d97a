#include "waybill/bridge/forwarder.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <optional>
#include <random>
#include <vector>

#include "waybill/bridge/json_body.h"
#include "waybill/hal/clock.h"
#include "waybill/sync/backoff.h"

namespace waybill::bridge {

namespace {

constexpr size_t kMaxResponseBytes = 64 * 1024;
constexpr int64_t kIdleRecheckMs = 1000;  // an idle lane looks again this often without a Wake()

size_t WriteResponse(char* data, size_t size, size_t n, void* user) {
  auto* out = static_cast<std::string*>(user);
  size_t bytes = size * n;
  if (out->size() < kMaxResponseBytes) {
    out->append(data, std::min(bytes, kMaxResponseBytes - out->size()));
  }
  return bytes;
}

bool IsPowerOfTwo(int n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace

Outcome Classify(bool curl_ok, long http_status) {
  if (!curl_ok) return Outcome::kRetry;
  if (http_status >= 200 && http_status < 300) return Outcome::kDone;
  if (http_status == 429) return Outcome::kThrottled;
  // 408 (request timeout) and 425 (too early) say "try again"; so does every 5xx. A 3xx is a
  // misconfigured URL: retrying will not help, dead-lettering keeps the events for an operator.
  if (http_status == 408 || http_status == 425 || http_status >= 500) return Outcome::kRetry;
  return Outcome::kDeadLetter;
}

struct Lane {
  Route route = Route::kPositions;
  int index = 0;
  const RouteConfig* config = nullptr;
  bool per_device = false;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::optional<ForwardBatch> batch;  // being sent, or waiting to be sent again
  std::string body;
  std::string response;
  bool in_flight = false;
  int64_t not_before_ms = 0;  // steady clock
  uint64_t seen_generation = UINT64_MAX;
  int64_t checked_ms = 0;
  int failures = 0;
  std::optional<sync::Backoff> backoff;
};

struct Forwarder::Impl {
  BridgeConfig config;
  Inbox* inbox = nullptr;
  Metrics* metrics = nullptr;
  CURLM* multi = nullptr;
  std::vector<std::unique_ptr<Lane>> lanes;
  std::atomic<uint64_t> generation{0};

  ~Impl() {
    for (auto& lane : lanes) {
      if (lane->easy != nullptr) {
        if (multi != nullptr && lane->in_flight) curl_multi_remove_handle(multi, lane->easy);
        curl_easy_cleanup(lane->easy);
      }
      curl_slist_free_all(lane->headers);
    }
    if (multi != nullptr) curl_multi_cleanup(multi);
  }
};

Forwarder::Forwarder(const BridgeConfig& config, Inbox* inbox, Metrics* metrics)
    : impl_(std::make_unique<Impl>()) {
  impl_->config = config;
  impl_->inbox = inbox;
  impl_->metrics = metrics;
}

Forwarder::~Forwarder() { Stop(0); }

Status Forwarder::Start() {
  static const CURLcode global = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global != CURLE_OK) {
    return Status::FailedPrecondition(std::string("libcurl: ") + curl_easy_strerror(global));
  }
  Impl& m = *impl_;
  m.multi = curl_multi_init();
  if (m.multi == nullptr) return Status::FailedPrecondition("libcurl: curl_multi_init failed");
  curl_multi_setopt(m.multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  std::random_device seed;
  for (int r = 0; r < kRouteCount; ++r) {
    const RouteConfig& rc = m.config.routes[r];
    if (!rc.enabled) continue;
    for (int i = 0; i < rc.lanes; ++i) {
      auto lane = std::make_unique<Lane>();
      lane->route = static_cast<Route>(r);
      lane->index = i;
      lane->config = &rc;
      lane->per_device = rc.url.find("{device}") != std::string::npos;
      lane->backoff.emplace(sync::BackoffOptions{rc.retry.base_ms, rc.retry.cap_ms,
                                                 std::min<int64_t>(100, rc.retry.base_ms)},
                            (static_cast<uint64_t>(seed()) << 32) ^ seed());
      lane->easy = curl_easy_init();
      if (lane->easy == nullptr)
        return Status::FailedPrecondition("libcurl: curl_easy_init failed");
      m.lanes.push_back(std::move(lane));
    }
  }
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void Forwarder::Wake() {
  impl_->generation.fetch_add(1, std::memory_order_relaxed);
  if (impl_->multi != nullptr) curl_multi_wakeup(impl_->multi);
}

void Forwarder::Stop(int64_t grace_ms) {
  if (!thread_.joinable()) return;
  grace_deadline_ms_ = hal::Clock::System().mono_ms() + std::max<int64_t>(0, grace_ms);
  stopping_ = true;
  Wake();
  thread_.join();
}

namespace {

void Send(CURLM* multi, Lane& lane, Metrics* metrics) {
  const RouteConfig& rc = *lane.config;
  const ForwardBatch& batch = *lane.batch;
  CURL* e = lane.easy;
  curl_easy_reset(e);
  std::string url = ExpandUrl(rc.url, lane.route,
                              lane.per_device ? batch.events.front().device : std::string_view());
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());  // libcurl copies strings it is given
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!rc.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, rc.ca_file.c_str());
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(rc.timeout_ms));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<int64_t>(rc.timeout_ms, 10'000)));
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  if (rc.method != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rc.method.c_str());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(lane.body.size()));
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, lane.body.data());
  curl_slist_free_all(lane.headers);
  lane.headers = nullptr;
  lane.headers = curl_slist_append(lane.headers, "Content-Type: application/json");
  lane.headers = curl_slist_append(lane.headers, "Expect:");
  lane.headers =
      curl_slist_append(lane.headers, ("Idempotency-Key: " + batch.idempotency_key).c_str());
  if (!rc.auth_token.empty()) {
    lane.headers =
        curl_slist_append(lane.headers, ("Authorization: Bearer " + rc.auth_token).c_str());
  }
  for (const auto& [name, value] : rc.headers) {
    lane.headers = curl_slist_append(lane.headers, (name + ": " + value).c_str());
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, lane.headers);
  lane.response.clear();
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, WriteResponse);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &lane.response);
  curl_easy_setopt(e, CURLOPT_PRIVATE, &lane);
  metrics->requests[static_cast<int>(lane.route)].fetch_add(1, std::memory_order_relaxed);
  curl_multi_add_handle(multi, e);
  lane.in_flight = true;
}

}  // namespace

void Forwarder::Run() {
  Impl& m = *impl_;
  int64_t next_prune_ms = hal::Clock::System().mono_ms() + 60'000;
  while (true) {
    int64_t now = hal::Clock::System().mono_ms();
    if (now >= next_prune_ms) {
      // Forwarded events are kept only to recognise resends within the dedup window.
      int64_t before = hal::Clock::System().wall_ms() - m.config.dedup_window_h * 3'600'000;
      auto pruned = m.inbox->PruneForwarded(before, 20'000);
      if (!pruned.ok()) {
        spdlog::warn("forward: pruning the inbox failed: {}", pruned.status().message());
      } else if (*pruned > 0) {
        spdlog::info("forward: pruned {} forwarded events past the dedup window", *pruned);
      }
      // Refused input holds personal data in its raw bytes: kept only as long as configured.
      int64_t letters_before =
          m.config.dead_letter_retention_h > 0
              ? hal::Clock::System().wall_ms() - m.config.dead_letter_retention_h * 3'600'000
              : 0;
      auto dead = m.inbox->PruneDeadLetters(letters_before, before, 20'000);
      if (!dead.ok()) {
        spdlog::warn("forward: pruning dead letters failed: {}", dead.status().message());
      } else if (*dead > 0) {
        spdlog::info("forward: deleted {} dead letters and dead events past their retention",
                     *dead);
      }
      next_prune_ms = now + (pruned.ok() && *pruned == 20'000 ? 1000 : 600'000);
    }
    bool stopping = stopping_.load();
    if (stopping && (in_flight_.load() == 0 || now >= grace_deadline_ms_.load())) break;
    int64_t next_wake = now + kIdleRecheckMs;
    if (!stopping) {
      uint64_t generation = m.generation.load(std::memory_order_relaxed);
      // Lanes free to send: those with a batch to send again, and those asking for a new one
      // (all asked together: their new batches share one commit).
      std::vector<Lane*> asking;
      std::vector<Inbox::LaneRequest> requests;
      for (auto& lane_ptr : m.lanes) {
        Lane& lane = *lane_ptr;
        if (lane.in_flight) continue;
        if (now < lane.not_before_ms) {
          next_wake = std::min(next_wake, lane.not_before_ms);
          continue;
        }
        if (lane.batch) {
          Send(m.multi, lane, m.metrics);
          in_flight_.fetch_add(1);
          continue;
        }
        if (lane.seen_generation == generation && now - lane.checked_ms < kIdleRecheckMs) continue;
        asking.push_back(&lane);
        requests.push_back({lane.route, lane.index, lane.config->batch_size, lane.per_device});
      }
      if (!asking.empty()) {
        std::vector<std::optional<ForwardBatch>> batches;
        if (Status st = m.inbox->NextBatches(requests, hal::Clock::System().wall_ms(), &batches);
            !st.ok()) {
          spdlog::error("forward: cannot read the inbox: {}; trying again in 1 s", st.message());
          for (Lane* lane : asking) lane->not_before_ms = now + 1000;
        } else {
          for (size_t i = 0; i < asking.size(); ++i) {
            Lane& lane = *asking[i];
            if (!batches[i]) {
              lane.seen_generation = generation;
              lane.checked_ms = now;
              continue;
            }
            lane.batch = std::move(*batches[i]);
            lane.body = RequestBody(*lane.batch);
            Send(m.multi, lane, m.metrics);
            in_flight_.fetch_add(1);
          }
        }
      }
    }
    int running = 0;
    curl_multi_perform(m.multi, &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(m.multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Lane* lane = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&lane));
      CURLcode result = msg->data.result;
      long status = 0;
      curl_easy_getinfo(lane->easy, CURLINFO_RESPONSE_CODE, &status);
      curl_off_t retry_after_s = 0;
      curl_easy_getinfo(lane->easy, CURLINFO_RETRY_AFTER, &retry_after_s);
      curl_multi_remove_handle(m.multi, lane->easy);
      lane->in_flight = false;
      in_flight_.fetch_sub(1);
      int r = static_cast<int>(lane->route);
      const ForwardBatch& batch = *lane->batch;
      int64_t t = hal::Clock::System().mono_ms();
      std::string what = result == CURLE_OK ? "HTTP " + std::to_string(status)
                                            : std::string(curl_easy_strerror(result));
      switch (Classify(result == CURLE_OK, status)) {
        case Outcome::kDone: {
          if (Status s = m.inbox->CompleteBatch(batch.id); !s.ok()) {
            // The backend has it; the inbox does not know yet. The batch goes out again with
            // the same key, which the backend recognises.
            spdlog::error("forward {}: batch {} accepted but not marked: {}", ToString(lane->route),
                          batch.id, s.message());
            lane->not_before_ms = t + 1000;
            break;
          }
          int64_t wall = hal::Clock::System().wall_ms();
          m.metrics->forwarded[r].fetch_add(batch.events.size(), std::memory_order_relaxed);
          for (const InboxEvent& e : batch.events) {
            m.metrics->ObserveLatency(lane->route, wall - e.received_ms);
          }
          if (lane->failures > 0) {
            spdlog::info("forward {} lane {}: backend answers again ({} after {} failures)",
                         ToString(lane->route), lane->index, what, lane->failures);
          }
          lane->failures = 0;
          lane->backoff->Reset();
          lane->batch.reset();
          lane->seen_generation = UINT64_MAX;  // look for more at once
          break;
        }
        case Outcome::kRetry:
        case Outcome::kThrottled: {
          bool throttled = result == CURLE_OK && status == 429;
          ++lane->failures;
          int64_t delay = lane->backoff->NextDelayMs();
          if (throttled) {
            m.metrics->throttled[r].fetch_add(1, std::memory_order_relaxed);
            if (retry_after_s > 0) {
              delay = std::min<int64_t>(static_cast<int64_t>(retry_after_s) * 1000,
                                        lane->config->retry.max_retry_after_ms);
            }
          }
          m.metrics->retries[r].fetch_add(1, std::memory_order_relaxed);
          lane->not_before_ms = t + delay;
          if (IsPowerOfTwo(lane->failures)) {
            spdlog::warn(
                "forward {} lane {}: batch {} ({} events, key {}): {}; sending again in "
                "{} ms ({} failures in a row)",
                ToString(lane->route), lane->index, batch.id, batch.events.size(),
                batch.idempotency_key, what, delay, lane->failures);
          }
          break;
        }
        case Outcome::kDeadLetter: {
          std::string reason = "http_" + std::to_string(status);
          std::string detail = "the backend refused batch " + batch.idempotency_key + " with " +
                               what + " at " +
                               ExpandUrl(lane->config->url, lane->route,
                                         lane->per_device ? batch.events.front().device : "");
          if (Status s = m.inbox->DeadLetterBatch(batch, static_cast<int>(status), reason, detail,
                                                  lane->body, lane->response,
                                                  hal::Clock::System().wall_ms());
              !s.ok()) {
            spdlog::error("forward {}: cannot dead-letter batch {}: {}; sending it again in 1 s",
                          ToString(lane->route), batch.id, s.message());
            lane->not_before_ms = t + 1000;
            break;
          }
          m.metrics->dead_lettered[r].fetch_add(batch.events.size(), std::memory_order_relaxed);
          spdlog::warn("forward {}: {} events dead-lettered: {}", ToString(lane->route),
                       batch.events.size(), detail);
          lane->failures = 0;
          lane->backoff->Reset();
          lane->batch.reset();
          lane->seen_generation = UINT64_MAX;
          break;
        }
      }
      next_wake = std::min(next_wake, lane->not_before_ms);
    }
    // Lanes that just finished look for their next batch without waiting.
    bool more = false;
    for (auto& lane : m.lanes) {
      if (!lane->in_flight && !lane->batch && lane->seen_generation == UINT64_MAX &&
          !stopping_.load()) {
        more = true;
      }
    }
    if (more) continue;
    int64_t timeout =
        std::clamp<int64_t>(next_wake - hal::Clock::System().mono_ms(), 0, kIdleRecheckMs);
    if (stopping_.load()) timeout = std::min<int64_t>(timeout, 50);
    curl_multi_poll(m.multi, nullptr, 0, static_cast<int>(timeout), nullptr);
  }
  if (in_flight_.load() > 0) {
    spdlog::warn(
        "forward: {} requests still in flight at stop; their batches go out again, "
        "with the same keys, at the next start",
        in_flight_.load());
  }
}

}  // namespace waybill::bridge
