#include "waybill/firmware/manifest_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace waybill::firmware {

namespace {

std::string Iso8601(int64_t ms) {
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

}  // namespace

nlohmann::json ManifestStore::ToJson(const sync::Manifest& manifest, int64_t received_ms) {
  nlohmann::json stops = nlohmann::json::array();
  for (const sync::ManifestStop& s : manifest.stops) {
    nlohmann::json stop = {{"stop_id", s.stop_id},
                           {"order_id", s.order_id},
                           {"address", s.address},
                           {"sequence", s.sequence}};
    stop["window_start"] = s.window_start_ms ? nlohmann::json(Iso8601(s.window_start_ms)) : nullptr;
    stop["window_end"] = s.window_end_ms ? nlohmann::json(Iso8601(s.window_end_ms)) : nullptr;
    stops.push_back(std::move(stop));
  }
  return {{"manifest_id", manifest.manifest_id},
          {"date", manifest.date},
          {"received_at", Iso8601(received_ms)},
          {"stops", std::move(stops)}};
}

namespace {

// The fields a stop gains from the driver's events; carried over by Put() with the stop.
constexpr const char* kStatusFields[] = {"status",    "reason", "items",    "status_seq",
                                         "status_at", "proof",  "proof_seq"};

void DefaultStatus(nlohmann::json& stop) {
  if (!stop.contains("status")) stop["status"] = nullptr;
  if (!stop.contains("proof")) stop["proof"] = false;
}

}  // namespace

Status ManifestStore::Put(const sync::Manifest& manifest, int64_t received_ms) {
  nlohmann::json next = ToJson(manifest, received_ms);
  std::lock_guard lock(mu_);
  std::optional<nlohmann::json> previous = ReadLocked();
  if (previous && previous->value("date", "") == manifest.date) {
    for (nlohmann::json& stop : next["stops"]) {
      for (const nlohmann::json& old : (*previous)["stops"]) {
        if (old.value("stop_id", "") != stop["stop_id"] ||
            old.value("order_id", "") != stop["order_id"]) {
          continue;
        }
        for (const char* field : kStatusFields) {
          if (old.contains(field)) stop[field] = old[field];
        }
        break;
      }
    }
  }
  return WriteLocked(next);
}

Status ManifestStore::Record(const StopUpdate& update) {
  std::lock_guard lock(mu_);
  std::optional<nlohmann::json> manifest = ReadLocked();
  if (!manifest) {
    return Status::NotFound("no manifest: stop " + update.stop_id + " has no place to go");
  }
  nlohmann::json* stop = nullptr;
  for (nlohmann::json& s : (*manifest)["stops"]) {
    if (s.value("stop_id", "") == update.stop_id) {
      stop = &s;
      break;
    }
  }
  if (!stop) {
    return Status::NotFound("stop \"" + update.stop_id + "\" is not in manifest " +
                            manifest->value("manifest_id", ""));
  }
  if (!update.kind) {
    (*stop)["proof"] = true;
    (*stop)["proof_seq"] = std::max(update.seq, stop->value("proof_seq", uint64_t{0}));
  } else {
    // Requests run on several threads: an earlier event may reach this after a later one.
    if (stop->value("status_seq", uint64_t{0}) > update.seq) return Status::Ok();
    (*stop)["status"] = std::string(sync::ToString(*update.kind));
    (*stop)["reason"] = update.reason == sync::FailReason::kNone
                            ? nlohmann::json(nullptr)
                            : nlohmann::json(std::string(sync::ToString(update.reason)));
    (*stop)["items"] = update.items ? nlohmann::json(*update.items) : nlohmann::json(nullptr);
    (*stop)["status_seq"] = update.seq;
    (*stop)["status_at"] = Iso8601(update.ts_ms);
  }
  return WriteLocked(*manifest);
}

std::optional<nlohmann::json> ManifestStore::Get() const {
  std::lock_guard lock(mu_);
  std::optional<nlohmann::json> j = ReadLocked();
  if (j && j->contains("stops") && (*j)["stops"].is_array()) {
    for (nlohmann::json& stop : (*j)["stops"]) DefaultStatus(stop);
  }
  return j;
}

std::optional<nlohmann::json> ManifestStore::ReadLocked() const {
  std::ifstream in(path_);
  if (!in) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  if (!j.contains("stops") || !j["stops"].is_array()) j["stops"] = nlohmann::json::array();
  return j;
}

Status ManifestStore::WriteLocked(const nlohmann::json& manifest) {
  std::string text = manifest.dump(2);
  std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("create " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Status::IOError("write " + tmp + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return Status::IOError("fdatasync " + tmp + ": " + std::strerror(err));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    return Status::IOError("rename " + tmp + ": " + std::strerror(errno));
  }
  std::string dir = std::filesystem::path(path_).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

}  // namespace waybill::firmware
