#include "waybill/firmware/config.h"

#include <toml++/toml.h>

#include <climits>
#include <fstream>
#include <set>
#include <sstream>

namespace waybill::firmware {

namespace {

struct Reader {
  const std::string& origin;

  Status Unknown(const toml::table& table, const std::string& section,
                 const std::set<std::string>& known) const {
    for (const auto& [key, value] : table) {
      std::string k(key.str());
      if (!known.count(k)) {
        std::string known_list;
        for (const auto& n : known) known_list += (known_list.empty() ? "" : ", ") + n;
        return Status::InvalidArgument(origin + ": unknown key " + section +
                                       (section.empty() ? "" : ".") + k + " (known: " + known_list +
                                       ")");
      }
    }
    return Status::Ok();
  }

  std::string Where(const std::string& key, const toml::node& node) const {
    return origin + ":" + std::to_string(node.source().begin.line) + ": " + key;
  }
};

bool ValidDeviceId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Result<DaemonConfig> ParseDaemonConfig(std::string_view text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(origin + ":" + std::to_string(e.source().begin.line) + ":" +
                                   std::to_string(e.source().begin.column) + ": " +
                                   std::string(e.description()));
  }
  Reader r{origin};
  DaemonConfig cfg;
  if (Status s =
          r.Unknown(root, "", {"device", "storage", "api", "gnss", "health", "sampling", "uplink"});
      !s.ok()) {
    return s;
  }

  auto section = [&](const char* name) -> const toml::table* { return root[name].as_table(); };
  auto get_int = [&](const toml::table& t, const std::string& key, int64_t lo, int64_t hi,
                     int64_t* out) -> Status {
    const toml::node* n = t.get(key);
    if (!n) return Status::Ok();
    std::optional<int64_t> v = n->value<int64_t>();
    if (!v || *v < lo || *v > hi) {
      return Status::InvalidArgument(r.Where(key, *n) + " must be a whole number from " +
                                     std::to_string(lo) + " to " + std::to_string(hi));
    }
    *out = *v;
    return Status::Ok();
  };

  const toml::table* device = section("device");
  if (!device || !device->get("id")) {
    return Status::InvalidArgument(origin + ": [device] id is required (e.g. id = \"truck-0042\")");
  }
  if (Status s = r.Unknown(*device, "device", {"id", "board", "key_file"}); !s.ok()) return s;
  std::optional<std::string> id = device->get("id")->value<std::string>();
  if (!id || !ValidDeviceId(*id)) {
    return Status::InvalidArgument(
        r.Where("device.id", *device->get("id")) +
        " must be 1 to 64 letters, digits, '-' or '_' (it is part of MQTT topics)");
  }
  cfg.device_id = *id;
  if (const toml::node* n = device->get("board")) {
    std::optional<std::string> board = n->value<std::string>();
    if (!board || board->empty()) {
      return Status::InvalidArgument(r.Where("device.board", *n) +
                                     " must be a board name (e.g. \"rpi4\")");
    }
    cfg.board = *board;
  }
  if (const toml::node* n = device->get("key_file")) {
    std::optional<std::string> key = n->value<std::string>();
    if (!key || key->empty()) {
      return Status::InvalidArgument(r.Where("device.key_file", *n) +
                                     " must be the path of the device's private key (PEM)");
    }
    cfg.key_file = *key;
  }

  if (const toml::table* storage = section("storage")) {
    if (Status s = r.Unknown(*storage, "storage",
                             {"data_dir", "quota_mb", "min_free_mb", "data_key_file"});
        !s.ok()) {
      return s;
    }
    if (const toml::node* n = storage->get("data_key_file")) {
      std::optional<std::string> file = n->value<std::string>();
      if (!file || file->empty()) {
        return Status::InvalidArgument(r.Where("storage.data_key_file", *n) +
                                       " must be a path (e.g. \"/etc/waybill/data.key\")");
      }
      cfg.data_key_file = *file;
    }
    if (const toml::node* n = storage->get("data_dir")) {
      std::optional<std::string> dir = n->value<std::string>();
      if (!dir || dir->empty()) {
        return Status::InvalidArgument(r.Where("storage.data_dir", *n) + " must be a path");
      }
      cfg.data_dir = *dir;
    }
    int64_t quota_mb = static_cast<int64_t>(cfg.quota_bytes >> 20);
    int64_t min_free_mb = static_cast<int64_t>(cfg.min_free_bytes >> 20);
    if (Status s = get_int(*storage, "quota_mb", 1, 1 << 20, &quota_mb); !s.ok()) return s;
    if (Status s = get_int(*storage, "min_free_mb", 0, 1 << 20, &min_free_mb); !s.ok()) return s;
    cfg.quota_bytes = static_cast<uint64_t>(quota_mb) << 20;
    cfg.min_free_bytes = static_cast<uint64_t>(min_free_mb) << 20;
  }

  if (const toml::table* api = section("api")) {
    if (Status s = r.Unknown(*api, "api", {"host", "port"}); !s.ok()) return s;
    if (const toml::node* n = api->get("host")) {
      std::optional<std::string> host = n->value<std::string>();
      if (!host ||
          (*host != "127.0.0.1" && *host != "::1" && *host != "localhost" && *host != "0.0.0.0")) {
        return Status::InvalidArgument(r.Where("api.host", *n) +
                                       " must be 127.0.0.1, ::1 or localhost (the in-cab API "
                                       "is local), or 0.0.0.0 for an emulated board");
      }
      cfg.api_host = *host;
    }
    int64_t port = cfg.api_port;
    if (Status s = get_int(*api, "port", 0, 65535, &port); !s.ok()) return s;
    cfg.api_port = static_cast<int>(port);
  }

  if (const toml::table* gnss = section("gnss")) {
    if (Status s = r.Unknown(*gnss, "gnss", {"require_checksum"}); !s.ok()) return s;
    if (const toml::node* n = gnss->get("require_checksum")) {
      std::optional<bool> v = n->value<bool>();
      if (!v)
        return Status::InvalidArgument(r.Where("gnss.require_checksum", *n) +
                                       " must be true or false");
      cfg.gnss_require_checksum = *v;
    }
  }

  if (const toml::table* health = section("health")) {
    if (Status s = r.Unknown(*health, "health", {"period_s"}); !s.ok()) return s;
    int64_t period_s = cfg.health_period_ms / 1000;
    if (Status s = get_int(*health, "period_s", 10, 86400, &period_s); !s.ok()) return s;
    cfg.health_period_ms = period_s * 1000;
  }
  if (const toml::table* up = section("uplink")) {
    DaemonConfig::Uplink& u = cfg.uplink;
    if (Status s =
            r.Unknown(*up, "uplink",
                      {"broker", "mqtt_version", "ca_file", "cert_file", "key_file", "keepalive_s",
                       "inflight_batches", "batch_max_events", "batch_wait_ms", "ack_timeout_ms",
                       "reconnect_max_s", "upload_url", "upload_chunk_kib"});
        !s.ok()) {
      return s;
    }
    for (auto [key, out] :
         {std::pair{"broker", &u.broker}, std::pair{"ca_file", &u.ca_file},
          std::pair{"cert_file", &u.cert_file}, std::pair{"key_file", &u.key_file},
          std::pair{"upload_url", &u.upload_url}}) {
      if (const toml::node* n = up->get(key)) {
        std::optional<std::string> v = n->value<std::string>();
        if (!v)
          return Status::InvalidArgument(r.Where(std::string("uplink.") + key, *n) +
                                         " must be a string");
        *out = *v;
      }
    }
    if (!u.broker.empty() && u.broker.rfind("tcp://", 0) != 0 && u.broker.rfind("ssl://", 0) != 0) {
      return Status::InvalidArgument(r.Where("uplink.broker", *up->get("broker")) +
                                     " must start with tcp:// or ssl:// (e.g. "
                                     "ssl://mqtt.example.com:8883)");
    }
    if (u.broker.rfind("ssl://", 0) == 0 && u.ca_file.empty()) {
      return Status::InvalidArgument(origin + ": uplink.ca_file is required with an ssl:// broker");
    }
    if (u.cert_file.empty() != u.key_file.empty()) {
      return Status::InvalidArgument(origin + ": uplink.cert_file and uplink.key_file go together");
    }
    int64_t version = u.mqtt_version, keepalive = u.keepalive_s, inflight = u.inflight_batches,
            batch = u.batch_max_events;
    if (Status s = get_int(*up, "mqtt_version", 3, 5, &version); !s.ok()) return s;
    if (version == 4) {
      return Status::InvalidArgument(r.Where("uplink.mqtt_version", *up->get("mqtt_version")) +
                                     " must be 5 or 3 (MQTT 3.1.1)");
    }
    if (Status s = get_int(*up, "keepalive_s", 240, 65535, &keepalive); !s.ok()) return s;
    if (Status s = get_int(*up, "inflight_batches", 1, 100, &inflight); !s.ok()) return s;
    if (Status s = get_int(*up, "batch_max_events", 1, 1024, &batch); !s.ok()) return s;
    if (Status s = get_int(*up, "batch_wait_ms", 0, 3600000, &u.batch_wait_ms); !s.ok()) return s;
    if (Status s = get_int(*up, "ack_timeout_ms", 100, 86400000, &u.ack_timeout_ms); !s.ok()) {
      return s;
    }
    if (Status s = get_int(*up, "reconnect_max_s", 1, 3600, &u.reconnect_max_s); !s.ok()) {
      return s;
    }
    if (!u.upload_url.empty()) {
      if (u.upload_url.rfind("https://", 0) != 0) {
        return Status::InvalidArgument(r.Where("uplink.upload_url", *up->get("upload_url")) +
                                       " must start with https:// (photos travel only over TLS; "
                                       "e.g. https://bridge.example.com:8443)");
      }
      if (u.cert_file.empty()) {
        return Status::InvalidArgument(
            origin +
            ": uplink.upload_url needs uplink.cert_file and uplink.key_file (the bridge "
            "knows the unit by its certificate)");
      }
    }
    int64_t chunk_kib = u.upload_chunk_bytes / 1024;
    if (Status s = get_int(*up, "upload_chunk_kib", 4, 8192, &chunk_kib); !s.ok()) return s;
    u.upload_chunk_bytes = chunk_kib * 1024;
    u.mqtt_version = static_cast<int>(version);
    u.keepalive_s = static_cast<int>(keepalive);
    u.inflight_batches = static_cast<int>(inflight);
    u.batch_max_events = static_cast<int>(batch);
  }

  if (const toml::table* sampling = section("sampling")) {
    SamplerConfig& sc = cfg.sampling;
    struct Key {
      const char* name;
      int64_t* i64;
      int32_t* i32;
    } keys[] = {
        {"min_period_ms", &sc.min_period_ms, nullptr},
        {"max_period_ms", &sc.max_period_ms, nullptr},
        {"min_distance_m", nullptr, &sc.min_distance_m},
        {"heading_change_deg", nullptr, &sc.heading_change_deg},
        {"heading_min_speed_kmh", nullptr, &sc.heading_min_speed_kmh},
        {"speed_change_kmh", nullptr, &sc.speed_change_kmh},
        {"stop_speed_kmh", nullptr, &sc.stop_speed_kmh},
        {"move_speed_kmh", nullptr, &sc.move_speed_kmh},
        {"stop_after_ms", &sc.stop_after_ms, nullptr},
        {"parked_period_ms", &sc.parked_period_ms, nullptr},
        {"outage_after_ms", &sc.outage_after_ms, nullptr},
    };
    std::set<std::string> known;
    for (const Key& k : keys) known.insert(k.name);
    if (Status s = r.Unknown(*sampling, "sampling", known); !s.ok()) return s;
    for (const Key& k : keys) {
      int64_t v = k.i64 ? *k.i64 : *k.i32;
      int64_t hi = k.i64 ? (int64_t{1} << 40) : INT32_MAX;
      if (Status s = get_int(*sampling, k.name, INT32_MIN, hi, &v); !s.ok()) return s;
      if (k.i64)
        *k.i64 = v;
      else
        *k.i32 = static_cast<int32_t>(v);
    }
    if (Status s = ValidateSamplerConfig(sc); !s.ok()) {
      return Status::InvalidArgument(origin + ": " + s.message());
    }
  }
  return cfg;
}

Result<DaemonConfig> LoadDaemonConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("config file " + path + " cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return ParseDaemonConfig(text.str(), path);
}

}  // namespace waybill::firmware
