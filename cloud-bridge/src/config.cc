#include "waybill/bridge/config.h"

#include <toml++/toml.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace waybill::bridge {

std::string_view ToString(Route route) {
  switch (route) {
    case Route::kPositions:
      return "positions";
    case Route::kDeliveries:
      return "deliveries";
    case Route::kProofs:
      return "proofs";
    case Route::kHealth:
      return "health";
  }
  return "unknown";
}

Route RouteOf(sync::EventClass cls) {
  switch (cls) {
    case sync::EventClass::kFix:
      return Route::kPositions;
    case sync::EventClass::kDelivery:
      return Route::kDeliveries;
    case sync::EventClass::kProofOfDelivery:
      return Route::kProofs;
    case sync::EventClass::kHealth:
      return Route::kHealth;
  }
  return Route::kHealth;
}

std::string ExpandUrl(const std::string& url, Route route, std::string_view device) {
  std::string out;
  out.reserve(url.size() + 32);
  for (size_t i = 0; i < url.size();) {
    if (url.compare(i, 7, "{route}") == 0) {
      out += ToString(route);
      i += 7;
    } else if (url.compare(i, 8, "{device}") == 0) {
      out += device;
      i += 8;
    } else {
      out += url[i++];
    }
  }
  return out;
}

namespace {

class Reader {
 public:
  explicit Reader(const std::string& origin) : origin_(origin) {}

  std::string Where(const toml::node& node, const std::string& key) const {
    return origin_ + ":" + std::to_string(node.source().begin.line) + ": " + key;
  }

  Status Unknown(const toml::table& table, const std::string& section,
                 const std::set<std::string>& known) const {
    for (const auto& [key, value] : table) {
      std::string k(key.str());
      if (known.count(k)) continue;
      std::string list;
      for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
      return Status::InvalidArgument(Where(value, (section.empty() ? "" : section + ".") + k) +
                                     ": unknown key (known: " + list + ")");
    }
    return Status::Ok();
  }

  Status String(const toml::table& t, const std::string& section, const char* key,
                std::string* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return Status::Ok();
    auto v = n->value<std::string>();
    if (!v) return Status::InvalidArgument(Where(*n, section + "." + key) + ": must be a string");
    *out = *v;
    return Status::Ok();
  }

  Status Int(const toml::table& t, const std::string& section, const char* key, int64_t lo,
             int64_t hi, int64_t* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return Status::Ok();
    auto v = n->value<int64_t>();
    if (!v || *v < lo || *v > hi) {
      return Status::InvalidArgument(Where(*n, section + "." + key) + ": " +
                                     (v ? std::to_string(*v) : std::string("not an integer")) +
                                     ", must be " + std::to_string(lo) + ".." + std::to_string(hi));
    }
    *out = *v;
    return Status::Ok();
  }

  template <typename T>
  Status IntAs(const toml::table& t, const std::string& section, const char* key, int64_t lo,
               int64_t hi, T* out) const {
    int64_t v = *out;
    Status s = Int(t, section, key, lo, hi, &v);
    *out = static_cast<T>(v);
    return s;
  }

  Status Bool(const toml::table& t, const std::string& section, const char* key, bool* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return Status::Ok();
    auto v = n->value<bool>();
    if (!v)
      return Status::InvalidArgument(Where(*n, section + "." + key) + ": must be true or false");
    *out = *v;
    return Status::Ok();
  }

  // A secret named by <key>_env (an environment variable) or <key>_file (a file; one trailing
  // newline is dropped). Neither: empty. The value is never part of an error message.
  Status Secret(const toml::table& t, const std::string& section, const std::string& key,
                std::string* out) const {
    std::string env, file;
    if (Status s = String(t, section, (key + "_env").c_str(), &env); !s.ok()) return s;
    if (Status s = String(t, section, (key + "_file").c_str(), &file); !s.ok()) return s;
    if (!env.empty() && !file.empty()) {
      return Status::InvalidArgument(origin_ + ": " + section + ": set " + key + "_env or " + key +
                                     "_file, not both");
    }
    if (!env.empty()) {
      const char* v = std::getenv(env.c_str());
      if (v == nullptr || *v == '\0') {
        return Status::InvalidArgument(origin_ + ": " + section + "." + key +
                                       "_env: the "
                                       "environment variable " +
                                       env + " is not set");
      }
      *out = v;
    } else if (!file.empty()) {
      std::ifstream in(file);
      if (!in) {
        return Status::InvalidArgument(origin_ + ": " + section + "." + key +
                                       "_file: cannot "
                                       "read " +
                                       file);
      }
      std::stringstream ss;
      ss << in.rdbuf();
      *out = ss.str();
      while (!out->empty() && (out->back() == '\n' || out->back() == '\r')) out->pop_back();
      if (out->empty()) {
        return Status::InvalidArgument(origin_ + ": " + section + "." + key + "_file: " + file +
                                       " is empty");
      }
    }
    for (char c : *out) {
      if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
        return Status::InvalidArgument(origin_ + ": " + section + "." + key +
                                       ": the secret holds a space or control character");
      }
    }
    return Status::Ok();
  }

 private:
  const std::string& origin_;
};

Status ParseRoute(const Reader& r, const toml::table& t, const std::string& section,
                  RouteConfig* route) {
  if (Status s = r.Unknown(t, section,
                           {"url", "method", "headers", "auth_token_env", "auth_token_file",
                            "batch_size", "timeout_ms", "lanes", "retry_base_ms", "retry_cap_ms",
                            "max_retry_after_ms", "ca_file", "enabled"});
      !s.ok()) {
    return s;
  }
  if (Status s = r.Bool(t, section, "enabled", &route->enabled); !s.ok()) return s;
  if (Status s = r.String(t, section, "url", &route->url); !s.ok()) return s;
  if (route->enabled && route->url.rfind("http://", 0) != 0 &&
      route->url.rfind("https://", 0) != 0) {
    return Status::InvalidArgument(r.Where(t, section + ".url") + ": '" + route->url +
                                   "' must start with http:// or https://");
  }
  if (Status s = r.String(t, section, "method", &route->method); !s.ok()) return s;
  if (route->method != "POST" && route->method != "PUT") {
    return Status::InvalidArgument(r.Where(t, section + ".method") + ": '" + route->method +
                                   "', must be POST or PUT");
  }
  if (const toml::node* h = t.get("headers")) {
    const toml::table* headers = h->as_table();
    if (headers == nullptr) {
      return Status::InvalidArgument(r.Where(*h, section + ".headers") + ": must be a table");
    }
    for (const auto& [name, value] : *headers) {
      auto v = value.value<std::string>();
      std::string n(name.str());
      if (!v || n.empty() || n.find_first_of(":\r\n ") != std::string::npos ||
          v->find_first_of("\r\n") != std::string::npos) {
        return Status::InvalidArgument(r.Where(value, section + ".headers." + n) +
                                       ": a header needs a name without ':' or spaces and a "
                                       "one-line string value");
      }
      route->headers[n] = *v;
    }
  }
  if (Status s = r.Secret(t, section, "auth_token", &route->auth_token); !s.ok()) return s;
  if (Status s = r.IntAs(t, section, "batch_size", 1, 5000, &route->batch_size); !s.ok()) return s;
  if (Status s = r.Int(t, section, "timeout_ms", 100, 600'000, &route->timeout_ms); !s.ok()) {
    return s;
  }
  if (Status s = r.IntAs(t, section, "lanes", 1, 64, &route->lanes); !s.ok()) return s;
  if (Status s = r.Int(t, section, "retry_base_ms", 10, 600'000, &route->retry.base_ms); !s.ok()) {
    return s;
  }
  if (Status s =
          r.Int(t, section, "retry_cap_ms", route->retry.base_ms, 3'600'000, &route->retry.cap_ms);
      !s.ok()) {
    return s;
  }
  if (Status s = r.Int(t, section, "max_retry_after_ms", 1000, 86'400'000,
                       &route->retry.max_retry_after_ms);
      !s.ok()) {
    return s;
  }
  return r.String(t, section, "ca_file", &route->ca_file);
}

Status ParseUploads(const Reader& r, const toml::table& t, const std::string& origin,
                    UploadsConfig* u) {
  const std::string section = "uploads";
  if (Status s = r.Unknown(
          t, section,
          {"listen", "cert_file", "key_file", "client_ca_file", "dir", "max_bytes", "forward_url",
           "forward_ca_file", "forward_auth_token_env", "forward_auth_token_file",
           "forward_timeout_ms", "retry_base_ms", "retry_cap_ms", "retention_h"});
      !s.ok()) {
    return s;
  }
  u->enabled = true;
  for (auto [key, out] :
       {std::pair{"listen", &u->listen}, std::pair{"cert_file", &u->cert_file},
        std::pair{"key_file", &u->key_file}, std::pair{"client_ca_file", &u->client_ca_file},
        std::pair{"dir", &u->dir}, std::pair{"forward_url", &u->forward_url},
        std::pair{"forward_ca_file", &u->forward_ca_file}}) {
    if (Status s = r.String(t, section, key, out); !s.ok()) return s;
  }
  if (u->listen.rfind(':') == std::string::npos) {
    return Status::InvalidArgument(origin + ": uploads.listen: '" + u->listen +
                                   "' must be host:port");
  }
  if (u->cert_file.empty() || u->key_file.empty() || u->client_ca_file.empty()) {
    return Status::InvalidArgument(origin +
                                   ": uploads: the endpoint is HTTPS with client certificates: "
                                   "set cert_file, key_file and client_ca_file (the fleet CA)");
  }
  if (u->forward_url.rfind("http://", 0) != 0 && u->forward_url.rfind("https://", 0) != 0) {
    return Status::InvalidArgument(r.Where(t, "uploads.forward_url") + ": '" + u->forward_url +
                                   "' must start with http:// or https:// (e.g. "
                                   "https://backend.example.com/v1/photos/{sha256})");
  }
  if (Status s = r.Secret(t, section, "forward_auth_token", &u->forward_auth_token); !s.ok()) {
    return s;
  }
  int64_t max_bytes = static_cast<int64_t>(u->max_bytes);
  if (Status s = r.Int(t, section, "max_bytes", 1024, 1LL << 30, &max_bytes); !s.ok()) return s;
  u->max_bytes = static_cast<uint64_t>(max_bytes);
  if (Status s = r.Int(t, section, "forward_timeout_ms", 100, 600'000, &u->forward_timeout_ms);
      !s.ok()) {
    return s;
  }
  if (Status s = r.Int(t, section, "retry_base_ms", 10, 600'000, &u->forward_retry.base_ms);
      !s.ok()) {
    return s;
  }
  if (Status s = r.Int(t, section, "retry_cap_ms", u->forward_retry.base_ms, 3'600'000,
                       &u->forward_retry.cap_ms);
      !s.ok()) {
    return s;
  }
  return r.Int(t, section, "retention_h", 0, 24 * 365, &u->retention_h);
}

}  // namespace

Result<BridgeConfig> ParseBridgeConfig(std::string_view text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(origin + ":" + std::to_string(e.source().begin.line) + ":" +
                                   std::to_string(e.source().begin.column) + ": " +
                                   std::string(e.description()));
  }
  Reader r(origin);
  BridgeConfig cfg;
  if (Status s = r.Unknown(root, "", {"bridge", "mqtt", "api", "routes", "proofs", "uploads"});
      !s.ok()) {
    return s;
  }
  auto table = [&](const toml::table& parent, const char* key,
                   const std::string& name) -> Result<const toml::table*> {
    const toml::node* n = parent.get(key);
    if (n == nullptr) return static_cast<const toml::table*>(nullptr);
    if (!n->is_table()) return Status::InvalidArgument(r.Where(*n, name) + ": must be a table");
    return n->as_table();
  };
  static const toml::table kEmpty;
  auto bridge = table(root, "bridge", "bridge");
  if (!bridge.ok()) return bridge.status();
  if (const toml::table* t = *bridge ? *bridge : &kEmpty) {
    if (Status s = r.Unknown(*t, "bridge",
                             {"data_dir", "instance", "max_future_ms", "min_event_time_ms",
                              "dedup_window_h", "ingest_queue", "dead_letter_retention_h"});
        !s.ok()) {
      return s;
    }
    if (Status s = r.String(*t, "bridge", "data_dir", &cfg.data_dir); !s.ok()) return s;
    if (Status s = r.String(*t, "bridge", "instance", &cfg.instance); !s.ok()) return s;
    if (Status s = r.Int(*t, "bridge", "max_future_ms", 0, 30LL * 86'400'000, &cfg.max_future_ms);
        !s.ok()) {
      return s;
    }
    if (Status s =
            r.Int(*t, "bridge", "min_event_time_ms", 0, 4'102'444'800'000, &cfg.min_event_time_ms);
        !s.ok()) {
      return s;
    }
    if (Status s = r.Int(*t, "bridge", "dedup_window_h", 1, 24 * 365, &cfg.dedup_window_h);
        !s.ok()) {
      return s;
    }
    if (Status s = r.Int(*t, "bridge", "dead_letter_retention_h", 0, 24 * 3650,
                         &cfg.dead_letter_retention_h);
        !s.ok()) {
      return s;
    }
    if (Status s = r.IntAs(*t, "bridge", "ingest_queue", 16, 1'000'000, &cfg.ingest_queue);
        !s.ok()) {
      return s;
    }
  }
  auto mqtt = table(root, "mqtt", "mqtt");
  if (!mqtt.ok()) return mqtt.status();
  if (const toml::table* t = *mqtt) {
    if (Status s = r.Unknown(
            *t, "mqtt",
            {"uri", "client_id", "share_group", "ca_file", "cert_file", "key_file", "keepalive_s"});
        !s.ok()) {
      return s;
    }
    for (auto [key, out] :
         {std::pair{"uri", &cfg.mqtt.uri}, std::pair{"client_id", &cfg.mqtt.client_id},
          std::pair{"share_group", &cfg.mqtt.share_group}, std::pair{"ca_file", &cfg.mqtt.ca_file},
          std::pair{"cert_file", &cfg.mqtt.cert_file}, std::pair{"key_file", &cfg.mqtt.key_file}}) {
      if (Status s = r.String(*t, "mqtt", key, out); !s.ok()) return s;
    }
    if (Status s = r.IntAs(*t, "mqtt", "keepalive_s", 5, 3600, &cfg.mqtt.keepalive_s); !s.ok()) {
      return s;
    }
    if (cfg.mqtt.share_group.find_first_of("/+#") != std::string::npos) {
      return Status::InvalidArgument(r.Where(*t, "mqtt.share_group") +
                                     ": must not hold '/', '+' or '#'");
    }
    bool tls = cfg.mqtt.uri.rfind("ssl://", 0) == 0 || cfg.mqtt.uri.rfind("mqtts://", 0) == 0;
    if (tls &&
        (cfg.mqtt.ca_file.empty() || cfg.mqtt.cert_file.empty() || cfg.mqtt.key_file.empty())) {
      return Status::InvalidArgument(origin + ": mqtt: " + cfg.mqtt.uri +
                                     " is TLS: set ca_file, cert_file and key_file");
    }
  }
  auto api = table(root, "api", "api");
  if (!api.ok()) return api.status();
  if (const toml::table* t = *api) {
    if (Status s = r.Unknown(*t, "api", {"listen", "token_env", "token_file"}); !s.ok()) return s;
    if (Status s = r.String(*t, "api", "listen", &cfg.api.listen); !s.ok()) return s;
    if (Status s = r.Secret(*t, "api", "token", &cfg.api.token); !s.ok()) return s;
  }
  if (cfg.api.listen.rfind(':') == std::string::npos) {
    return Status::InvalidArgument(origin + ": api.listen: '" + cfg.api.listen +
                                   "' must be host:port");
  }
  auto proofs = table(root, "proofs", "proofs");
  if (!proofs.ok()) return proofs.status();
  if (const toml::table* t = *proofs) {
    if (Status s = r.Unknown(*t, "proofs", {"device_certs_dir", "ca_file"}); !s.ok()) return s;
    if (Status s = r.String(*t, "proofs", "device_certs_dir", &cfg.proofs.device_certs_dir);
        !s.ok()) {
      return s;
    }
    if (Status s = r.String(*t, "proofs", "ca_file", &cfg.proofs.ca_file); !s.ok()) return s;
    if (cfg.proofs.device_certs_dir.empty() != cfg.proofs.ca_file.empty()) {
      return Status::InvalidArgument(
          r.Where(*t, "proofs") +
          ": device_certs_dir and ca_file go together (the device certificates must chain to "
          "the fleet CA)");
    }
  }
  auto routes = table(root, "routes", "routes");
  if (!routes.ok()) return routes.status();
  if (*routes == nullptr) {
    return Status::InvalidArgument(origin +
                                   ": no [routes]: name the backend's URL for "
                                   "positions, deliveries, proofs and health");
  }
  if (Status s = r.Unknown(**routes, "routes", {"positions", "deliveries", "proofs", "health"});
      !s.ok()) {
    return s;
  }
  for (int i = 0; i < kRouteCount; ++i) {
    std::string name(ToString(static_cast<Route>(i)));
    std::string section = "routes." + name;
    auto t = table(**routes, name.c_str(), section);
    if (!t.ok()) return t.status();
    if (*t == nullptr) {
      return Status::InvalidArgument(origin + ": no [" + section +
                                     "]: every route needs a url "
                                     "(or enabled = false)");
    }
    if (Status s = ParseRoute(r, **t, section, &cfg.routes[i]); !s.ok()) return s;
  }
  auto uploads = table(root, "uploads", "uploads");
  if (!uploads.ok()) return uploads.status();
  if (*uploads != nullptr) {
    if (Status s = ParseUploads(r, **uploads, origin, &cfg.uploads); !s.ok()) return s;
    if (cfg.uploads.dir.empty()) cfg.uploads.dir = cfg.data_dir + "/photos";
  }
  return cfg;
}

Result<BridgeConfig> LoadBridgeConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read the configuration " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseBridgeConfig(ss.str(), path);
}

}  // namespace waybill::bridge
