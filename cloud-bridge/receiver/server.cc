#include "server.h"

#include <mbedtls/sha256.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <string>

namespace waybill::receiver {

namespace {

using nlohmann::json;

// A batch of a few thousand events is well under a megabyte; anything near this is a bug.
constexpr size_t kMaxBodyBytes = 64 << 20;
constexpr uint64_t kDefaultEventsLimit = 100'000;

void Reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void ReplyError(httplib::Response& res, int status, const std::string& error) {
  Reply(res, status, {{"error", error}});
}

}  // namespace

Result<std::unique_ptr<Receiver>> Receiver::Create(const ReceiverOptions& options,
                                                   hal::Clock& clock) {
  // The same checks as POST /_faults, so a flag cannot set what the endpoint would refuse.
  Result<FaultSettings> faults = Patched(FaultSettings{}, ToJson(options.faults));
  if (!faults.ok()) return faults.status();
  Result<std::unique_ptr<Store>> store = Store::Open(options.db_path);
  if (!store.ok()) return store.status();
  std::unique_ptr<Receiver> r(new Receiver(options, std::move(store).value(), clock));
  if (options.port == 0) {
    r->port_ = r->server_.bind_to_any_port(options.host);
  } else if (r->server_.bind_to_port(options.host, options.port)) {
    r->port_ = options.port;
  }
  if (r->port_ <= 0) {
    return Status::IOError("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                           " (in use, or not a local address?)");
  }
  return r;
}

Receiver::Receiver(const ReceiverOptions& options, std::unique_ptr<Store> store, hal::Clock& clock)
    : clock_(clock), store_(std::move(store)), faults_(options.faults, options.seed) {
  const int threads = options.threads;
  server_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Answers go out at once: httplib writes headers and body separately, and with Nagle's
  // algorithm the body waits for the client's delayed ACK (up to 40 ms a request).
  server_.set_tcp_nodelay(true);
  server_.set_payload_max_length(kMaxBodyBytes);
  server_.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::error("{} {}: internal error: {}", req.method, req.path, what);
        ReplyError(res, 500, "internal error: " + what);
      });
  // Read through a content reader: httplib would otherwise refuse a body over 8 KiB sent with
  // curl's and libcurl's default Content-Type (x-www-form-urlencoded) as 413, before any handler
  // could say what is wrong. Beyond refusing a multipart form, the receiver ignores Content-Type.
  server_.Post(R"(/v1/.+)", [this](const httplib::Request& req, httplib::Response& res,
                                   const httplib::ContentReader& read) {
    if (req.is_multipart_form_data()) {
      // httplib can only read such a body part by part; not worth it for a request refused anyway.
      // The unread body leaves the connection unusable: close it.
      ++requests_;
      res.set_header("Connection", "close");
      return BadRequest(
          req, res,
          Status::InvalidArgument("Content-Type: multipart/form-data, expected a JSON body"));
    }
    std::string body;
    read([&body](const char* data, size_t n) {
      body.append(data, n);
      return true;
    });
    Ingest(req, body, res);
  });
  server_.Put(R"(/v1/photos/([0-9a-f]{64}))",
              [this](const httplib::Request& req, httplib::Response& res,
                     const httplib::ContentReader& read) {
                std::string body;
                read([&body](const char* data, size_t n) {
                  body.append(data, n);
                  return true;
                });
                PutPhoto(req, body, res);
              });
  server_.Get("/_photos",
              [this](const httplib::Request& req, httplib::Response& res) { GetPhotos(req, res); });
  server_.Get("/_stats",
              [this](const httplib::Request& req, httplib::Response& res) { GetStats(req, res); });
  server_.Get("/_events",
              [this](const httplib::Request& req, httplib::Response& res) { GetEvents(req, res); });
  server_.Get("/_faults", [this](const httplib::Request&, httplib::Response& res) {
    Reply(res, 200, ToJson(faults_.settings()));
  });
  server_.Post("/_faults", [this](const httplib::Request& req, httplib::Response& res) {
    PostFaults(req, res);
  });
}

Receiver::~Receiver() { Stop(); }

Status Receiver::Run() {
  {
    std::lock_guard lock(stop_mu_);
    if (stopping_) return Status::Ok();
  }
  if (!server_.listen_after_bind()) {
    std::lock_guard lock(stop_mu_);
    if (!stopping_) return Status::IOError("the listening socket failed");
  }
  return Status::Ok();
}

void Receiver::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  server_.stop();
}

bool Receiver::SleepUnlessStopped(int64_t ms) {
  if (ms <= 0) return true;
  std::unique_lock lock(stop_mu_);
  return !stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

void Receiver::BadRequest(const httplib::Request& req, httplib::Response& res, const Status& why) {
  uint64_t n = ++bad_requests_;
  hal::LogLimiter::Decision d;
  {
    std::lock_guard lock(log_mu_);
    d = bad_request_log_.Allow("bad request", clock_.mono_ms());
  }
  if (d.suppressed > 0) spdlog::warn("{} more bad requests not logged", d.suppressed);
  if (d.log) {
    spdlog::warn("bad request {} {} from {}: {}; answered 400, nothing applied ({} since start)",
                 req.method, req.path, req.remote_addr, why.message(), n);
  }
  ReplyError(res, 400, why.message());
}

void Receiver::Ingest(const httplib::Request& req, const std::string& body,
                      httplib::Response& res) {
  ++requests_;
  // Drawn first so that the whole request sees one set of settings, but acting only after
  // validation: a bad request is refused the same way every time, whatever faults are set.
  FaultInjector::Decision fault = faults_.Draw();
  if (!SleepUnlessStopped(fault.settings.latency_ms)) {
    return ReplyError(res, 503, "receiver stopping");
  }
  const bool has_key = req.has_header("Idempotency-Key");
  const std::string key = req.get_header_value("Idempotency-Key");
  if (Status s = CheckIdempotencyKey(has_key, key); !s.ok()) return BadRequest(req, res, s);
  Result<std::vector<EventId>> events = ParseIngestBody(body);
  if (!events.ok()) return BadRequest(req, res, events.status());

  switch (fault.fault) {
    case Fault::kHang:
      ++fault_hang_;
      SleepUnlessStopped(fault.settings.hang_ms);
      return ReplyError(res, 500, "injected fault: hang, nothing applied");
    case Fault::kFail:
      ++fault_500_;
      return ReplyError(res, 500, "injected fault: 500, nothing applied");
    case Fault::kThrottle:
      ++fault_429_;
      res.set_header("Retry-After", std::to_string(fault.settings.retry_after_s));
      return ReplyError(res, 429, "injected fault: 429, nothing applied");
    case Fault::kFailAfterApply:
    case Fault::kNone:
      break;
  }

  Result<ApplyOutcome> out = store_->Apply(key, req.path, body, *events, clock_.wall_ms());
  if (!out.ok()) {
    ++storage_errors_;
    spdlog::error("{} key {}: {}; answered 500, nothing applied", req.path, key,
                  out.status().ToString());
    return ReplyError(res, 500, "storage: " + out.status().message());
  }
  json answer;
  if (out->duplicate) {
    ++duplicate_requests_;
    if (out->key_conflict) {
      ++key_conflicts_;
      spdlog::error(
          "{} key {}: the key was applied before with another path or other events; this batch "
          "is dropped as a duplicate, so its events are lost to the backend",
          req.path, key);
    }
    answer = {{"duplicate", true}};
  } else {
    if (out->event_duplicates > 0) {
      spdlog::error("{} key {}: {} of {} events were applied before under another key", req.path,
                    key, out->event_duplicates, out->events_applied);
    }
    answer = {{"applied", out->events_applied}};
  }
  if (fault.fault == Fault::kFailAfterApply) {
    ++fault_500_after_apply_;
    return ReplyError(res, 500, "injected fault: 500 after apply");
  }
  Reply(res, 200, answer);
}

void Receiver::PutPhoto(const httplib::Request& req, const std::string& body,
                        httplib::Response& res) {
  ++requests_;
  const std::string sha = req.matches[1];
  const std::string device = req.get_header_value("X-Waybill-Device");
  if (device.empty()) {
    return BadRequest(req, res, Status::InvalidArgument("X-Waybill-Device: missing"));
  }
  if (body.empty()) return BadRequest(req, res, Status::InvalidArgument("body: empty photo"));
  unsigned char digest[32];
  mbedtls_sha256_ret(reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest, 0);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string actual;
  for (unsigned char b : digest) {
    actual.push_back(kHex[b >> 4]);
    actual.push_back(kHex[b & 15]);
  }
  if (actual != sha) {
    return BadRequest(req, res,
                      Status::InvalidArgument("body: its sha256 is " + actual + ", not " + sha));
  }
  std::string mime = req.get_header_value("Content-Type");
  Result<bool> stored = store_->PutPhoto(
      sha, device, mime.empty() ? "application/octet-stream" : mime, body, clock_.wall_ms());
  if (!stored.ok()) {
    ++storage_errors_;
    spdlog::error("{}: {}; answered 500, not stored", req.path, stored.status().ToString());
    return ReplyError(res, 500, "storage: " + stored.status().message());
  }
  if (*stored) {
    ++photos_stored_;
  } else {
    ++photo_duplicates_;
  }
  Reply(res, *stored ? 201 : 200,
        {{"sha256", sha}, {"bytes", body.size()}, {"duplicate", !*stored}});
}

void Receiver::GetPhotos(const httplib::Request&, httplib::Response& res) {
  Result<std::vector<StoredPhoto>> photos = store_->Photos();
  if (!photos.ok()) return ReplyError(res, 500, "storage: " + photos.status().message());
  json out = json::array();
  for (const StoredPhoto& p : *photos) {
    out.push_back({{"sha256", p.sha256_hex},
                   {"device", p.device},
                   {"mime", p.mime},
                   {"bytes", p.bytes},
                   {"received_ms", p.received_unix_ms}});
  }
  Reply(res, 200, out);
}

void Receiver::GetStats(const httplib::Request&, httplib::Response& res) {
  StoreTotals totals = store_->Totals();
  json by_path = json::object();
  for (const auto& [path, n] : totals.events_by_path) by_path[path] = n;
  Reply(
      res, 200,
      {{"requests", requests_.load()},
       {"applied_requests", totals.applied_requests},
       {"duplicate_requests", duplicate_requests_.load()},
       {"bad_requests", bad_requests_.load()},
       {"key_conflicts", key_conflicts_.load()},
       {"storage_errors", storage_errors_.load()},
       {"events_applied", totals.events_applied},
       {"event_duplicates", totals.event_duplicates},
       {"faults",
        {{"500", fault_500_.load()},
         {"500_after_apply", fault_500_after_apply_.load()},
         {"429", fault_429_.load()},
         {"hang", fault_hang_.load()}}},
       {"by_path", by_path},
       {"photos", {{"stored", photos_stored_.load()}, {"duplicates", photo_duplicates_.load()}}}});
}

void Receiver::GetEvents(const httplib::Request& req, httplib::Response& res) {
  if (!req.has_param("path")) return ReplyError(res, 400, "path: missing query parameter");
  std::optional<std::string> device;
  if (req.has_param("device")) device = req.get_param_value("device");
  uint64_t limit = kDefaultEventsLimit;
  if (req.has_param("limit")) {
    const std::string text = req.get_param_value("limit");
    size_t used = 0;
    try {
      limit = std::stoull(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size() || text[0] == '-') {
      return ReplyError(res, 400, "limit: expected an unsigned integer, got \"" + text + "\"");
    }
  }
  Result<std::vector<AppliedEvent>> events =
      store_->Events(req.get_param_value("path"), device, limit);
  if (!events.ok()) return ReplyError(res, 500, "storage: " + events.status().message());
  json out = json::array();
  for (const AppliedEvent& ev : *events) {
    json item = {{"device", ev.device},
                 {"seq", ev.seq},
                 {"key", ev.key},
                 {"received_ms", ev.received_unix_ms}};
    if (ev.duplicate) item["duplicate"] = true;
    out.push_back(std::move(item));
  }
  Reply(res, 200, out);
}

void Receiver::PostFaults(const httplib::Request& req, httplib::Response& res) {
  json patch = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (patch.is_discarded()) return ReplyError(res, 400, "body: not valid JSON");
  Result<FaultSettings> next = faults_.Update(patch);
  if (!next.ok()) return ReplyError(res, 400, next.status().message());
  spdlog::info("faults now {}", ToJson(*next).dump());
  Reply(res, 200, ToJson(*next));
}

}  // namespace waybill::receiver
