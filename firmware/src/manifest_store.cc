#include "waybill/firmware/manifest_store.h"

#include <fcntl.h>
#include <unistd.h>

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
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
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

Status ManifestStore::Put(const sync::Manifest& manifest, int64_t received_ms) {
  std::string text = ToJson(manifest, received_ms).dump(2);
  std::lock_guard lock(mu_);
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

std::optional<nlohmann::json> ManifestStore::Get() const {
  std::lock_guard lock(mu_);
  std::ifstream in(path_);
  if (!in) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

}  // namespace waybill::firmware
