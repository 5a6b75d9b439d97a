#include "waybill/bridge/uploads.h"

#include <curl/curl.h>
#include <httplib.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>

#include "waybill/bridge/forwarder.h"
#include "waybill/hal/clock.h"
#include "waybill/sync/backoff.h"
#include "waybill/sync/wire.h"

namespace waybill::bridge {

namespace {

using nlohmann::json;

constexpr const char* kPhotoPath = R"(/v1/photos/([0-9A-Fa-f]{64}))";
constexpr int64_t kIdlePassMs = 5000;           // the forwarder looks again this often unwoken
constexpr int64_t kPruneEveryMs = 10 * 60'000;  // and deletes photos past retention this often
constexpr size_t kMaxResponseBytes = 16 * 1024;

// The CN of the verified client certificate; empty without one.
std::string ClientCommonName(const httplib::Request& req) {
  if (req.ssl == nullptr || SSL_get_verify_result(req.ssl) != X509_V_OK) return "";
  X509* cert = SSL_get1_peer_certificate(req.ssl);
  if (cert == nullptr) return "";
  char cn[256] = {};
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  X509_free(cert);
  return n > 0 ? std::string(cn, static_cast<size_t>(n)) : std::string();
}

// A decimal header value; false if absent or anything but 1..19 digits.
bool HeaderNumber(const httplib::Request& req, const char* name, uint64_t* out) {
  if (!req.has_header(name)) return false;
  std::string v = req.get_header_value(name);
  if (v.empty() || v.size() > 19) return false;
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = n;
  return true;
}

void Reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump() + "\n", "application/json");
}

size_t KeepResponse(char* data, size_t size, size_t n, void* user) {
  auto* out = static_cast<std::string*>(user);
  size_t bytes = size * n;
  if (out->size() < kMaxResponseBytes) {
    out->append(data, std::min(bytes, kMaxResponseBytes - out->size()));
  }
  return bytes;
}

int AbortWhenStopping(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<std::atomic<bool>*>(user)->load() ? 1 : 0;
}

std::string ExpandPhotoUrl(const std::string& url, const StoredPhoto& photo) {
  std::string out;
  for (size_t i = 0; i < url.size();) {
    if (url.compare(i, 8, "{sha256}") == 0) {
      out += photo.sha256_hex;
      i += 8;
    } else if (url.compare(i, 8, "{device}") == 0) {
      out += photo.device;
      i += 8;
    } else {
      out += url[i++];
    }
  }
  return out;
}

}  // namespace

UploadServer::UploadServer(const UploadsConfig& config, UploadStore* store, Metrics* metrics,
                           std::function<void()> on_complete)
    : config_(config), store_(store), metrics_(metrics), on_complete_(std::move(on_complete)) {}

UploadServer::~UploadServer() { Stop(); }

Status UploadServer::Start() {
  auto server = std::make_unique<httplib::SSLServer>(
      config_.cert_file.c_str(), config_.key_file.c_str(), config_.client_ca_file.c_str());
  if (!server->is_valid()) {
    return Status::InvalidArgument(
        "uploads: cannot load the certificate " + config_.cert_file + ", its key " +
        config_.key_file + " or the client CA " + config_.client_ca_file +
        " (uploads.cert_file, key_file, client_ca_file): missing, unreadable or not PEM");
  }
  // Without a session id context, OpenSSL refuses to resume a session that carries a client
  // certificate and fails the handshake: every reconnect of a truck would fail once.
  static constexpr unsigned char kSessionContext[] = "waybill-uploads";
  SSL_CTX_set_session_id_context(server->ssl_context(), kSessionContext,
                                 sizeof kSessionContext - 1);
  server_ = std::move(server);
  Routes();
  std::string host = config_.listen.substr(0, config_.listen.rfind(':'));
  int port = std::atoi(config_.listen.substr(config_.listen.rfind(':') + 1).c_str());
  port_ =
      port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
  if (port_ <= 0) {
    server_.reset();
    return Status::Unavailable("uploads: cannot listen on " + config_.listen +
                               " (uploads.listen): address in use or not local");
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  spdlog::info("photo uploads on https://{}:{}, stored in {}", host, port_, config_.dir);
  return Status::Ok();
}

void UploadServer::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

void UploadServer::Routes() {
  httplib::Server& s = *server_;
  s.new_task_queue = [] { return new httplib::ThreadPool(8); };
  s.set_payload_max_length(config_.max_bytes);
  // A photo is tens of chunks: keep the connection (and its TLS session) for all of them, rather
  // than httplib's default of 5 requests, which would cost a handshake every 5 chunks.
  s.set_keep_alive_max_count(1000);
  s.set_keep_alive_timeout(30);
  s.set_read_timeout(30, 0);
  s.set_write_timeout(30, 0);
  auto count = [this](UploadResult r) {
    metrics_->photo_uploads[static_cast<int>(r)].fetch_add(1, std::memory_order_relaxed);
  };

  // HEAD is answered by httplib from the GET handler, without its body.
  s.Get(kPhotoPath, [this, count](const httplib::Request& req, httplib::Response& res) {
    std::string device = ClientCommonName(req);
    if (!sync::IsValidDeviceId(device)) {
      count(UploadResult::kForbidden);
      return Reply(res, 403, {{"error", "a client certificate whose CN is a device id is needed"}});
    }
    Result<UploadProgress> p = store_->Head(device, req.matches[1].str());
    if (!p.ok()) {
      if (p.status().IsNotFound()) {
        count(UploadResult::kHead);
        return Reply(res, 404, {{"error", p.status().message()}});
      }
      count(UploadResult::kError);
      spdlog::error("photo upload: HEAD {} of {}: {}", req.path, device, p.status().ToString());
      return Reply(res, 500, {{"error", p.status().message()}});
    }
    count(UploadResult::kHead);
    res.set_header("Upload-Offset", std::to_string(p->offset));
    if (p->complete) res.set_header("Upload-Complete", "1");
    res.set_header("Cache-Control", "no-store");
    Reply(res, 200, {{"offset", p->offset}, {"complete", p->complete}});
  });

  auto upload = [this, count](const httplib::Request& req, httplib::Response& res,
                              const httplib::ContentReader& read) {
    // An early answer leaves the body unread, and the connection unusable: close it.
    auto refuse = [&](UploadResult r, int status, const std::string& error) {
      count(r);
      res.set_header("Connection", "close");
      Reply(res, status, {{"error", error}});
    };
    std::string device = ClientCommonName(req);
    if (!sync::IsValidDeviceId(device)) {
      return refuse(UploadResult::kForbidden, 403,
                    "a client certificate whose CN is a device id is needed");
    }
    const std::string sha = NormalizeSha256Hex(req.matches[1].str());
    uint64_t offset = 0, total = 0;
    if (!HeaderNumber(req, "Upload-Offset", &offset) ||
        !HeaderNumber(req, "Upload-Length", &total)) {
      return refuse(UploadResult::kBadRequest, 400,
                    "Upload-Offset and Upload-Length are required, as decimal byte counts "
                    "(HEAD the photo for its offset)");
    }
    if (total > config_.max_bytes) {
      return refuse(UploadResult::kTooLarge, 413,
                    "Upload-Length " + std::to_string(total) + ": photos are at most " +
                        std::to_string(config_.max_bytes) + " bytes (uploads.max_bytes)");
    }
    if (offset > total) {
      return refuse(UploadResult::kBadRequest, 400,
                    "Upload-Offset " + std::to_string(offset) + " is past Upload-Length " +
                        std::to_string(total));
    }
    const uint64_t room = total - offset;
    std::string body;
    bool whole = read([&body, room](const char* data, size_t n) {
      body.append(data, n);
      return body.size() <= room;
    });
    if (body.size() > room) {
      return refuse(UploadResult::kBadRequest, 400,
                    "the body runs past Upload-Length " + std::to_string(total));
    }
    // A body cut short by a dropped link is kept: what arrived is a prefix of the photo, and
    // the truck resumes after it. The digest check at the end catches anything else.
    if (!whole) {
      spdlog::info("photo {} of {}: the request was cut after {} bytes; keeping them", sha, device,
                   body.size());
    }
    Result<AppendResult> r = store_->Append(device, sha, offset, total, body);
    if (!r.ok()) {
      const Status& st = r.status();
      if (st.code() == Status::Code::kBusy) {
        count(UploadResult::kBusy);
        return Reply(res, 409, {{"error", st.message()}});
      }
      if (st.IsInvalidArgument()) return refuse(UploadResult::kBadRequest, 400, st.message());
      count(UploadResult::kError);
      spdlog::error("photo {} of {}: not stored: {}; answered {}", sha, device, st.ToString(),
                    st.IsNoSpace() ? 507 : 500);
      return Reply(res, st.IsNoSpace() ? 507 : 500, {{"error", "not stored: " + st.message()}});
    }
    metrics_->photo_bytes_received.fetch_add(r->appended, std::memory_order_relaxed);
    res.set_header("Upload-Offset", std::to_string(r->offset));
    switch (r->verdict) {
      case AppendVerdict::kAccepted:
        count(UploadResult::kAccepted);
        return Reply(res, 200, {{"offset", r->offset}, {"complete", false}});
      case AppendVerdict::kCompleted:
        count(UploadResult::kCompleted);
        res.set_header("Upload-Complete", "1");
        spdlog::info("photo {} of {}: {} bytes, whole and verified", sha, device, r->offset);
        if (on_complete_) on_complete_();
        return Reply(res, 201, {{"offset", r->offset}, {"complete", true}});
      case AppendVerdict::kAlreadyComplete:
        count(UploadResult::kWrongOffset);
        res.set_header("Upload-Complete", "1");
        return Reply(
            res, 409,
            {{"error", "the photo is already whole"}, {"offset", r->offset}, {"complete", true}});
      case AppendVerdict::kWrongOffset:
        count(UploadResult::kWrongOffset);
        return Reply(
            res, 409,
            {{"error", "Upload-Offset " + std::to_string(offset) + " is not the stored offset " +
                           std::to_string(r->offset) + ": resume from it"},
             {"offset", r->offset}});
      case AppendVerdict::kDigestMismatch:
        count(UploadResult::kDigestMismatch);
        spdlog::warn(
            "photo {} of {}: the {} bytes received do not have that sha256; discarded, answered "
            "422",
            sha, device, total);
        return Reply(res, 422,
                     {{"error", "the photo's bytes do not match its sha256 " + sha +
                                    "; discarded: send it again from offset 0"},
                      {"offset", 0}});
    }
  };
  s.Patch(kPhotoPath, upload);
  s.Put(kPhotoPath, upload);
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      Reply(res, 404,
            {{"error", "no such endpoint: " + req.method + " " + req.path +
                           " (photos are at /v1/photos/{sha256})"}});
    } else if (res.status == 413) {
      Reply(res, 413, {{"error", "body too large"}});
    }
  });
}

PhotoForwarder::PhotoForwarder(const UploadsConfig& config, UploadStore* store, Metrics* metrics)
    : config_(config), store_(store), metrics_(metrics) {}

PhotoForwarder::~PhotoForwarder() { Stop(); }

Status PhotoForwarder::Start() {
  static const CURLcode global = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global != CURLE_OK) {
    return Status::FailedPrecondition(std::string("libcurl: ") + curl_easy_strerror(global));
  }
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void PhotoForwarder::Wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void PhotoForwarder::Stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  Wake();
  thread_.join();
}

PhotoForwarder::Sent PhotoForwarder::Forward(const StoredPhoto& photo, std::string* detail) {
  Result<std::string> bytes = store_->Read(photo);
  if (!bytes.ok()) {
    *detail = bytes.status().ToString();
    return Sent::kRetry;
  }
  CURL* e = curl_easy_init();
  if (e == nullptr) {
    *detail = "curl_easy_init failed";
    return Sent::kRetry;
  }
  std::string url = ExpandPhotoUrl(config_.forward_url, photo);
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!config_.forward_ca_file.empty()) {
    curl_easy_setopt(e, CURLOPT_CAINFO, config_.forward_ca_file.c_str());
  }
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(config_.forward_timeout_ms));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<int64_t>(config_.forward_timeout_ms, 10'000)));
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(bytes->size()));
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, bytes->data());
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, ("Content-Type: " + std::string(PhotoMime(*bytes))).c_str());
  headers = curl_slist_append(headers, "Expect:");
  headers = curl_slist_append(headers, ("X-Waybill-Device: " + photo.device).c_str());
  headers = curl_slist_append(headers, ("Idempotency-Key: photo-" + photo.sha256_hex).c_str());
  if (!config_.forward_auth_token.empty()) {
    headers =
        curl_slist_append(headers, ("Authorization: Bearer " + config_.forward_auth_token).c_str());
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  std::string response;
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, KeepResponse);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, AbortWhenStopping);
  curl_easy_setopt(e, CURLOPT_XFERINFODATA, &stopping_);
  CURLcode rc = curl_easy_perform(e);
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(e);
  if (rc != CURLE_OK) {
    *detail = std::string(curl_easy_strerror(rc));
    return Sent::kRetry;
  }
  *detail = "HTTP " + std::to_string(status) + (response.empty() ? "" : ": " + response);
  while (!detail->empty() && (detail->back() == '\n' || detail->back() == '\r')) detail->pop_back();
  switch (Classify(true, status)) {
    case Outcome::kDone:
      return Sent::kDone;
    case Outcome::kRetry:
    case Outcome::kThrottled:
      return Sent::kRetry;
    case Outcome::kDeadLetter:
      return Sent::kRefused;
  }
  return Sent::kRetry;
}

void PhotoForwarder::Run() {
  std::random_device seed;
  sync::Backoff backoff(
      sync::BackoffOptions{config_.forward_retry.base_ms, config_.forward_retry.cap_ms,
                           std::min<int64_t>(100, config_.forward_retry.base_ms)},
      (static_cast<uint64_t>(seed()) << 32) ^ seed());
  const hal::Clock& clock = hal::Clock::System();
  int64_t not_before_ms = 0;
  int64_t next_prune_ms = 0;
  while (!stopping_.load()) {
    int64_t now = clock.mono_ms();
    if (now >= next_prune_ms) {
      int64_t before = clock.wall_ms() - config_.retention_h * 3'600'000;
      Result<size_t> pruned = store_->PruneForwarded(before);
      if (!pruned.ok()) {
        spdlog::warn("photos: deleting forwarded photos past retention failed: {}",
                     pruned.status().ToString());
      } else if (*pruned > 0) {
        spdlog::info("photos: deleted {} forwarded photos older than {} h", *pruned,
                     config_.retention_h);
      }
      next_prune_ms = now + (config_.retention_h == 0 ? kIdlePassMs : kPruneEveryMs);
    }
    bool forwarded_any = false;
    if (now >= not_before_ms) {
      Result<std::vector<StoredPhoto>> photos = store_->List();
      if (!photos.ok()) spdlog::error("photos: listing failed: {}", photos.status().ToString());
      for (const StoredPhoto& p : photos.ok() ? *photos : std::vector<StoredPhoto>{}) {
        if (p.forwarded || p.refused || stopping_.load()) continue;
        std::string detail;
        Sent sent = Forward(p, &detail);
        if (stopping_.load()) break;
        Status marked;
        if (sent == Sent::kDone) {
          marked = store_->MarkForwarded(p);
          if (marked.ok()) {
            metrics_->photos_forwarded.fetch_add(1, std::memory_order_relaxed);
            spdlog::info("photo {} of {}: forwarded ({} bytes)", p.sha256_hex, p.device, p.bytes);
            backoff.Reset();
            forwarded_any = true;
            continue;
          }
          // The backend has it but the marker is not stored: it goes again later, and the
          // backend's idempotency makes that harmless.
          detail = "forwarded, but the marker was not stored: " + marked.ToString();
        } else if (sent == Sent::kRefused) {
          marked = store_->MarkRefused(p, detail);
          metrics_->photos_refused.fetch_add(1, std::memory_order_relaxed);
          spdlog::error(
              "photo {} of {}: the backend refused it ({}); kept in {} and not sent again "
              "(delete its .refused marker to retry)",
              p.sha256_hex, p.device, detail, config_.dir);
          if (marked.ok()) continue;
          detail = "refused, and the marker was not stored: " + marked.ToString();
        }
        metrics_->photo_forward_retries.fetch_add(1, std::memory_order_relaxed);
        int64_t delay = backoff.NextDelayMs();
        not_before_ms = clock.mono_ms() + delay;
        spdlog::warn("photo {} of {}: forwarding failed ({}); again in {} ms", p.sha256_hex,
                     p.device, detail, delay);
        break;
      }
    }
    if (forwarded_any && config_.retention_h == 0) next_prune_ms = 0;
    now = clock.mono_ms();
    int64_t wait = kIdlePassMs;
    if (not_before_ms > now) wait = std::min(wait, not_before_ms - now);
    if (next_prune_ms > now) wait = std::min(wait, next_prune_ms - now);
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(wait, 0)),
                 [this] { return woken_ || stopping_.load(); });
    woken_ = false;
  }
}

}  // namespace waybill::bridge
