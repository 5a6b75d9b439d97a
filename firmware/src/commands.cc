#include "waybill/firmware/commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

namespace waybill::firmware {

namespace {

constexpr size_t kRecentResults = 64;

// The fields of ConfigUpdate by name, for JSON and for messages.
template <typename Fn>
void ForEachField(sync::ConfigUpdate& u, Fn fn) {
  fn("min_period_ms", u.min_period_ms);
  fn("max_period_ms", u.max_period_ms);
  fn("min_distance_m", u.min_distance_m);
  fn("heading_change_deg", u.heading_change_deg);
  fn("speed_change_kmh", u.speed_change_kmh);
  fn("stop_after_ms", u.stop_after_ms);
  fn("parked_period_ms", u.parked_period_ms);
  fn("quota_mb", u.quota_mb);
  fn("health_period_s", u.health_period_s);
  fn("keepalive_s", u.keepalive_s);
}

}  // namespace

Result<RuntimeConfig> ApplyConfigUpdate(const RuntimeConfig& current,
                                        const sync::ConfigUpdate& u) {
  RuntimeConfig next = current;
  SamplerConfig& s = next.sampling;
  if (u.min_period_ms) s.min_period_ms = *u.min_period_ms;
  if (u.max_period_ms) s.max_period_ms = *u.max_period_ms;
  if (u.min_distance_m) s.min_distance_m = static_cast<int32_t>(*u.min_distance_m);
  if (u.heading_change_deg) s.heading_change_deg = static_cast<int32_t>(*u.heading_change_deg);
  if (u.speed_change_kmh) s.speed_change_kmh = static_cast<int32_t>(*u.speed_change_kmh);
  if (u.stop_after_ms) s.stop_after_ms = *u.stop_after_ms;
  if (u.parked_period_ms) s.parked_period_ms = *u.parked_period_ms;
  if (Status st = ValidateSamplerConfig(s); !st.ok()) {
    return Status::InvalidArgument("config." + st.message());
  }
  if (u.quota_mb) {
    if (*u.quota_mb < 1 || *u.quota_mb > (1u << 20)) {
      return Status::InvalidArgument("config.quota_mb = " + std::to_string(*u.quota_mb) +
                                     ": must be from 1 to 1048576");
    }
    next.quota_bytes = uint64_t{*u.quota_mb} << 20;
  }
  if (u.health_period_s) {
    if (*u.health_period_s < 10 || *u.health_period_s > 86400) {
      return Status::InvalidArgument("config.health_period_s = " +
                                     std::to_string(*u.health_period_s) +
                                     ": must be from 10 to 86400");
    }
    next.health_period_ms = int64_t{*u.health_period_s} * 1000;
  }
  if (u.keepalive_s) {
    if (*u.keepalive_s < 240 || *u.keepalive_s > 65535) {
      return Status::InvalidArgument("config.keepalive_s = " + std::to_string(*u.keepalive_s) +
                                     ": must be from 240 to 65535 (each ping costs bytes)");
    }
    next.keepalive_s = static_cast<int>(*u.keepalive_s);
  }
  return next;
}

sync::ConfigUpdate MergeConfigUpdates(const sync::ConfigUpdate& earlier,
                                      const sync::ConfigUpdate& later) {
  sync::ConfigUpdate out = earlier;
  sync::ConfigUpdate l = later;
  std::vector<std::optional<uint32_t>> values;
  ForEachField(l, [&](const char*, std::optional<uint32_t>& v) { values.push_back(v); });
  size_t i = 0;
  ForEachField(out, [&](const char*, std::optional<uint32_t>& v) {
    if (values[i]) v = values[i];
    ++i;
  });
  return out;
}

Result<sync::ConfigUpdate> LoadConfigOverrides(const std::string& path) {
  sync::ConfigUpdate u;
  std::ifstream in(path);
  if (!in) return u;
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Corruption(path + ": not a JSON object; delete it to drop the overrides");
  }
  Status bad;
  ForEachField(u, [&](const char* name, std::optional<uint32_t>& v) {
    auto it = j.find(name);
    if (it == j.end()) return;
    if (!it->is_number_unsigned()) {
      bad = Status::Corruption(path + ": " + name + " must be a whole number");
      return;
    }
    v = it->get<uint32_t>();
  });
  if (!bad.ok()) return bad;
  return u;
}

Status SaveConfigOverrides(const std::string& path, const sync::ConfigUpdate& overrides) {
  nlohmann::json j = nlohmann::json::object();
  sync::ConfigUpdate u = overrides;
  ForEachField(u, [&](const char* name, std::optional<uint32_t>& v) {
    if (v) j[name] = *v;
  });
  std::string text = j.dump(2);
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("create " + tmp + ": " + std::strerror(errno));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fdatasync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IOError("write " + path + ": " + std::strerror(ok ? errno : err));
  }
  return Status::Ok();
}

CommandDispatcher::CommandDispatcher(ManifestStore& manifests, std::string overrides_path,
                                     RuntimeConfig current, Hooks hooks)
    : manifests_(manifests),
      overrides_path_(std::move(overrides_path)),
      current_(std::move(current)),
      hooks_(std::move(hooks)) {}

sync::CommandResult CommandDispatcher::HandleConfig(const std::string& id,
                                                    const sync::ConfigUpdate& update) {
  Result<RuntimeConfig> next = ApplyConfigUpdate(current_, update);
  if (!next.ok()) return {id, false, next.status().message(), ""};
  Result<sync::ConfigUpdate> saved = LoadConfigOverrides(overrides_path_);
  sync::ConfigUpdate merged = MergeConfigUpdates(saved.ok() ? *saved : sync::ConfigUpdate{}, update);
  if (Status s = SaveConfigOverrides(overrides_path_, merged); !s.ok()) {
    return {id, false, "not applied: " + s.ToString(), ""};
  }
  bool at_restart = (update.quota_mb && next->quota_bytes != current_.quota_bytes) ||
                    (update.keepalive_s && next->keepalive_s != current_.keepalive_s);
  current_ = std::move(next).value();
  if (hooks_.apply_config) hooks_.apply_config(current_);
  return {id, true,
          at_restart ? "applied; quota_mb and keepalive_s take effect at the next start"
                     : "applied",
          ""};
}

sync::CommandResult CommandDispatcher::Handle(const sync::Command& command) {
  for (const sync::CommandResult& r : recent_) {
    if (r.command_id == command.command_id) return r;
  }
  sync::CommandResult result;
  if (const auto* manifest = std::get_if<sync::Manifest>(&command.body)) {
    int64_t now = hooks_.now_ms ? hooks_.now_ms() : 0;
    Status s = manifests_.Put(*manifest, now);
    result = {command.command_id, s.ok(),
              s.ok() ? "manifest " + manifest->manifest_id + " stored: " +
                           std::to_string(manifest->stops.size()) + " stops"
                     : "manifest not stored: " + s.ToString(),
              ""};
  } else if (const auto* update = std::get_if<sync::ConfigUpdate>(&command.body)) {
    result = HandleConfig(command.command_id, *update);
  } else {
    std::string status = hooks_.status_json ? hooks_.status_json() : "{}";
    if (status.size() > sync::kMaxStatusJsonBytes) {
      result = {command.command_id, false,
                "status of " + std::to_string(status.size()) + " bytes does not fit a result", ""};
    } else {
      result = {command.command_id, true, "status", status};
    }
  }
  // A failed storage write may succeed when the broker delivers the command again.
  if (result.ok) {
    recent_.push_back(result);
    if (recent_.size() > kRecentResults) recent_.pop_front();
  }
  return result;
}

}  // namespace waybill::firmware
