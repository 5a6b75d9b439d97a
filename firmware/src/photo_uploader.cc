#include "waybill/firmware/photo_uploader.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>

#include "waybill/hal/files.h"
#include "waybill/sync/backoff.h"

namespace waybill::firmware {

namespace {

constexpr int kMaxConflictsPerAttempt = 5;  // 409s in a row before backing off
constexpr size_t kMaxResponseBytes = 4096;

// A header line's value if its name is `name` (case-insensitive), else nullopt.
std::optional<std::string> HeaderValue(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() || line[name.size()] != ':') return std::nullopt;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) !=
        std::tolower(static_cast<unsigned char>(name[i]))) {
      return std::nullopt;
    }
  }
  std::string_view v = line.substr(name.size() + 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) {
    v.remove_suffix(1);
  }
  return std::string(v);
}

std::optional<uint64_t> ParseCount(const std::string& text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

int AbortWhenStopping(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<std::atomic<bool>*>(user)->load() ? 1 : 0;
}

}  // namespace

PhotoUploadQueue::PhotoUploadQueue(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
}

Status PhotoUploadQueue::Mark(const std::array<uint8_t, 32>& sha256) {
  std::string path = dir_ + "/" + ToHex(sha256);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return hal::ErrnoStatus("mark photo for upload: create " + path, errno);
  ::close(fd);
  return hal::FsyncPath(dir_);
}

std::vector<std::array<uint8_t, 32>> PhotoUploadQueue::Pending() const {
  std::vector<std::pair<int64_t, std::array<uint8_t, 32>>> marks;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    std::optional<std::array<uint8_t, 32>> sha = ParseSha256Hex(entry.path().filename().string());
    if (!sha) continue;
    struct stat st {};
    int64_t mtime_ns = 0;
    if (::stat(entry.path().c_str(), &st) == 0) {
      mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    }
    marks.emplace_back(mtime_ns, *sha);
  }
  std::sort(marks.begin(), marks.end());
  std::vector<std::array<uint8_t, 32>> out;
  for (const auto& m : marks) out.push_back(m.second);
  return out;
}

Status PhotoUploadQueue::Done(const std::array<uint8_t, 32>& sha256) {
  std::string path = dir_ + "/" + ToHex(sha256);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return hal::ErrnoStatus("unlink " + path, errno);
  return hal::FsyncPath(dir_);
}

Status PhotoUploadQueue::Reject(const std::array<uint8_t, 32>& sha256) {
  std::string path = dir_ + "/" + ToHex(sha256);
  if (::rename(path.c_str(), (path + ".rejected").c_str()) != 0 && errno != ENOENT) {
    return hal::ErrnoStatus("rename " + path, errno);
  }
  return hal::FsyncPath(dir_);
}

// One answer of the bridge. `status` 0: the request did not complete (`error` says why).
struct PhotoUploader::Reply {
  long status = 0;
  std::string error;
  std::optional<uint64_t> offset;  // Upload-Offset
  bool complete = false;           // Upload-Complete: 1
  std::string body;
};

PhotoUploader::PhotoUploader(PhotoStore& photos, PhotoUploadQueue& queue,
                             PhotoUploaderOptions options, std::function<bool()> link_up)
    : photos_(photos), queue_(queue), options_(std::move(options)), link_up_(std::move(link_up)) {
  while (!options_.url.empty() && options_.url.back() == '/') options_.url.pop_back();
}

PhotoUploader::~PhotoUploader() {
  Stop();
  if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Status PhotoUploader::Start() {
  static const CURLcode global = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global != CURLE_OK) {
    return Status::FailedPrecondition(std::string("libcurl: ") + curl_easy_strerror(global));
  }
  curl_ = curl_easy_init();
  if (curl_ == nullptr) return Status::FailedPrecondition("libcurl: curl_easy_init failed");
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void PhotoUploader::Nudge() {
  {
    std::lock_guard lock(mu_);
    nudged_ = true;
  }
  cv_.notify_all();
}

void PhotoUploader::Stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  Nudge();
  thread_.join();
}

PhotoUploadStats PhotoUploader::Stats() const {
  PhotoUploadStats s;
  {
    std::lock_guard lock(mu_);
    s = stats_;
  }
  s.pending = queue_.Pending().size();
  return s;
}

void PhotoUploader::Fail(const std::string& error) {
  std::lock_guard lock(mu_);
  ++stats_.attempts_failed;
  stats_.last_error = error;
}

PhotoUploader::Reply PhotoUploader::Request(const std::string& method, const std::string& url,
                                            std::string_view body, uint64_t offset,
                                            uint64_t total) {
  CURL* e = static_cast<CURL*>(curl_);
  curl_easy_reset(e);  // keeps the connection (and its TLS session) for the next request
  Reply reply;
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.cert_file.empty()) {
    curl_easy_setopt(e, CURLOPT_SSLCERT, options_.cert_file.c_str());
    curl_easy_setopt(e, CURLOPT_SSLKEY, options_.key_file.c_str());
  }
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 20'000L);
  // No overall time limit (a chunk over a slow link takes what it takes), but a stalled link is
  // given up after 30 s under 100 bytes/s.
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 100L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, AbortWhenStopping);
  curl_easy_setopt(e, CURLOPT_XFERINFODATA, &stopping_);
  curl_slist* headers = nullptr;
  if (method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
    headers = curl_slist_append(headers, "Content-Type: application/offset+octet-stream");
    headers = curl_slist_append(headers, ("Upload-Offset: " + std::to_string(offset)).c_str());
    headers = curl_slist_append(headers, ("Upload-Length: " + std::to_string(total)).c_str());
    headers = curl_slist_append(headers, "Expect:");
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  auto on_header = +[](char* data, size_t size, size_t n, void* user) -> size_t {
    auto* r = static_cast<Reply*>(user);
    std::string_view line(data, size * n);
    if (auto v = HeaderValue(line, "Upload-Offset")) r->offset = ParseCount(*v);
    if (auto v = HeaderValue(line, "Upload-Complete")) r->complete = *v == "1";
    return size * n;
  };
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &reply);
  auto on_body = +[](char* data, size_t size, size_t n, void* user) -> size_t {
    auto* out = static_cast<std::string*>(user);
    if (out->size() < kMaxResponseBytes) {
      out->append(data, std::min(size * n, kMaxResponseBytes - out->size()));
    }
    return size * n;
  };
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &reply.body);
  CURLcode rc = curl_easy_perform(e);
  curl_off_t uploaded = 0;
  curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &uploaded);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  {
    std::lock_guard lock(mu_);
    stats_.bytes_sent += static_cast<uint64_t>(std::max<curl_off_t>(0, uploaded));
  }
  if (rc != CURLE_OK) {
    reply.error = std::string(curl_easy_strerror(rc));
    return reply;
  }
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &reply.status);
  while (!reply.body.empty() && (reply.body.back() == '\n' || reply.body.back() == '\r')) {
    reply.body.pop_back();
  }
  reply.error =
      "HTTP " + std::to_string(reply.status) + (reply.body.empty() ? "" : " " + reply.body);
  return reply;
}

PhotoUploader::Upload PhotoUploader::UploadOne(const std::array<uint8_t, 32>& sha256) {
  const std::string hex = ToHex(sha256);
  Result<std::string> bytes = photos_.Read(sha256);
  if (!bytes.ok()) {
    if (bytes.status().IsNotFound()) return Upload::kMissing;
    Fail("photo " + hex + ": " + bytes.status().ToString());
    return Upload::kRetry;
  }
  const uint64_t total = bytes->size();
  const std::string url = options_.url + "/v1/photos/" + hex;
  auto failed = [&](const std::string& what, const Reply& r) {
    Fail("photo " + hex + ": " + what + ": " + r.error);
    return Upload::kRetry;
  };
  for (int conflicts = 0; conflicts < kMaxConflictsPerAttempt; ++conflicts) {
    Reply head = Request("HEAD", url, {}, 0, 0);
    if (stopping_.load()) return Upload::kStopped;
    uint64_t offset = 0;
    if (head.status == 200 && head.offset) {
      if (head.complete) return Upload::kDone;
      offset = *head.offset;
    } else if (head.status != 404) {
      return failed("HEAD", head);
    }
    if (offset > total) offset = 0;  // not this photo's bytes: the bridge will say 409
    bool conflict = false;
    while (!conflict) {
      uint64_t n = std::min<uint64_t>(options_.chunk_bytes, total - offset);
      Reply r = Request("PATCH", url, std::string_view(*bytes).substr(offset, n), offset, total);
      if (stopping_.load()) return Upload::kStopped;
      if (r.status == 201) return Upload::kDone;
      if (r.status == 200 && r.offset && *r.offset > offset && *r.offset <= total) {
        offset = *r.offset;
        continue;
      }
      if (r.status == 409) {
        if (r.complete) return Upload::kDone;
        conflict = true;
        continue;
      }
      if (r.status == 422) {
        Fail("photo " + hex + ": the bridge refused it: " + r.error);
        return Upload::kRejected;
      }
      return failed("PATCH at offset " + std::to_string(offset), r);
    }
  }
  Fail("photo " + hex + ": the bridge's offset kept changing (" +
       std::to_string(kMaxConflictsPerAttempt) + " conflicts)");
  return Upload::kRetry;
}

void PhotoUploader::Run() {
  std::random_device seed;
  sync::BackoffOptions bo{std::min(options_.retry_base_ms, options_.retry_cap_ms),
                          options_.retry_cap_ms, 100};
  bo.floor_ms = std::min<int64_t>(bo.floor_ms, bo.base_ms);
  sync::Backoff backoff(bo, (static_cast<uint64_t>(seed()) << 32) ^ seed());
  using SteadyClock = std::chrono::steady_clock;
  SteadyClock::time_point not_before = SteadyClock::now();
  while (!stopping_.load()) {
    if (SteadyClock::now() >= not_before && (!link_up_ || link_up_())) {
      for (const std::array<uint8_t, 32>& sha : queue_.Pending()) {
        if (stopping_.load()) break;
        const std::string hex = ToHex(sha);
        Upload u = UploadOne(sha);
        if (u == Upload::kStopped) break;
        if (u == Upload::kRetry) {
          int64_t delay = backoff.NextDelayMs();
          not_before = SteadyClock::now() + std::chrono::milliseconds(delay);
          spdlog::warn("{}; next attempt in {} ms", Stats().last_error, delay);
          break;
        }
        backoff.Reset();
        if (u == Upload::kDone) {
          // The bridge holds it: the unit's copy (PII) goes first, then the mark. A crash in
          // between leaves a mark without a photo, dropped below at the next pass.
          if (Status s = photos_.Remove(sha); !s.ok()) {
            Fail("photo " + hex + " uploaded, but deleting it failed: " + s.ToString());
          }
          if (Status s = queue_.Done(sha); !s.ok())
            spdlog::error("photo {}: {}", hex, s.ToString());
          std::lock_guard lock(mu_);
          ++stats_.uploaded;
          spdlog::info("photo {} uploaded to the bridge and deleted from the unit", hex);
        } else if (u == Upload::kRejected) {
          if (Status s = queue_.Reject(sha); !s.ok()) {
            spdlog::error("photo {}: {}", hex, s.ToString());
          }
          {
            std::lock_guard lock(mu_);
            ++stats_.rejected;
          }
          spdlog::error(
              "photo {}: the bridge found its bytes do not match its sha256 (422); the photo is "
              "kept on the unit and not sent again",
              hex);
        } else if (u == Upload::kMissing) {
          spdlog::error("photo {} was marked for upload but is no longer on the unit; unmarked",
                        hex);
          if (Status s = queue_.Done(sha); !s.ok())
            spdlog::error("photo {}: {}", hex, s.ToString());
        }
      }
    }
    std::unique_lock lock(mu_);
    SteadyClock::time_point wake =
        SteadyClock::now() + std::chrono::milliseconds(options_.idle_poll_ms);
    if (not_before > SteadyClock::now()) wake = std::min(wake, not_before);
    cv_.wait_until(lock, wake, [this] { return nudged_ || stopping_.load(); });
    nudged_ = false;
  }
}

}  // namespace waybill::firmware
