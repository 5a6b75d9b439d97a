#include "waybill/bridge/bridge.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "waybill/bridge/consumer.h"
#include "waybill/bridge/forwarder.h"
#include "waybill/bridge/inbox.h"
#include "waybill/bridge/metrics.h"
#include "waybill/bridge/upload_store.h"
#include "waybill/bridge/uploads.h"
#include "waybill/hal/clock.h"
#include "waybill/sync/pki.h"
#include "waybill/sync/wire.h"

namespace waybill::bridge {

namespace {

using nlohmann::json;

bool ValidCommandId(const std::string& id) {
  if (id.empty() || id.size() > sync::kMaxIdBytes) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
        c != ':') {
      return false;
    }
  }
  return true;
}

std::string NewCommandId() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[32];
  snprintf(buf, sizeof buf, "cmd-%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

// A JSON number that must be an unsigned integer that fits T.
template <typename T>
bool GetUnsigned(const json& j, const std::string& field, T* out, std::string* error) {
  if (!j.is_number_unsigned() || j.get<uint64_t>() > std::numeric_limits<T>::max()) {
    *error = field + ": must be an integer 0.." + std::to_string(std::numeric_limits<T>::max());
    return false;
  }
  *out = static_cast<T>(j.get<uint64_t>());
  return true;
}

bool GetString(const json& obj, const char* key, const std::string& where, bool required,
               std::string* out, std::string* error) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) *error = where + key + ": missing";
    return !required;
  }
  if (!it->is_string()) {
    *error = where + key + ": must be a string";
    return false;
  }
  *out = it->get<std::string>();
  return true;
}

// The body of POST /v1/devices/{id}/commands: {"command_id"?, "manifest" | "config" |
// "request_status"} (docs/BRIDGE.md). Every error names the field.
std::optional<sync::Command> ParseCommand(const json& j, std::string* kind, std::string* error) {
  if (!j.is_object()) {
    *error = "the body must be a JSON object";
    return std::nullopt;
  }
  sync::Command c;
  if (!GetString(j, "command_id", "", false, &c.command_id, error)) return std::nullopt;
  if (c.command_id.empty()) c.command_id = NewCommandId();
  if (!ValidCommandId(c.command_id)) {
    *error = "command_id: 1..64 of [A-Za-z0-9_.:-]";
    return std::nullopt;
  }
  int bodies = static_cast<int>(j.contains("manifest")) + static_cast<int>(j.contains("config")) +
               static_cast<int>(j.contains("request_status"));
  if (bodies != 1) {
    *error = "give exactly one of manifest, config, request_status";
    return std::nullopt;
  }
  for (const auto& [key, value] : j.items()) {
    if (key != "command_id" && key != "manifest" && key != "config" && key != "request_status") {
      *error = key + ": unknown field";
      return std::nullopt;
    }
  }
  if (j.contains("manifest")) {
    *kind = "manifest";
    const json& m = j["manifest"];
    if (!m.is_object()) {
      *error = "manifest: must be an object";
      return std::nullopt;
    }
    sync::Manifest manifest;
    if (!GetString(m, "manifest_id", "manifest.", true, &manifest.manifest_id, error) ||
        !GetString(m, "date", "manifest.", true, &manifest.date, error)) {
      return std::nullopt;
    }
    auto stops = m.find("stops");
    if (stops == m.end() || !stops->is_array()) {
      *error = "manifest.stops: must be an array";
      return std::nullopt;
    }
    for (size_t i = 0; i < stops->size(); ++i) {
      const json& s = (*stops)[i];
      std::string where = "manifest.stops[" + std::to_string(i) + "].";
      if (!s.is_object()) {
        *error = where.substr(0, where.size() - 1) + ": must be an object";
        return std::nullopt;
      }
      sync::ManifestStop stop;
      if (!GetString(s, "stop_id", where, true, &stop.stop_id, error) ||
          !GetString(s, "order_id", where, false, &stop.order_id, error) ||
          !GetString(s, "address", where, false, &stop.address, error)) {
        return std::nullopt;
      }
      for (auto [key, out] : {std::pair{"window_start_ms", &stop.window_start_ms},
                              std::pair{"window_end_ms", &stop.window_end_ms}}) {
        if (auto it = s.find(key); it != s.end()) {
          if (!it->is_number_integer()) {
            *error = where + key + ": must be an integer (ms since the Unix epoch)";
            return std::nullopt;
          }
          *out = it->get<int64_t>();
        }
      }
      if (auto it = s.find("sequence"); it != s.end()) {
        if (!GetUnsigned(*it, where + "sequence", &stop.sequence, error)) return std::nullopt;
      }
      manifest.stops.push_back(std::move(stop));
    }
    c.body = std::move(manifest);
  } else if (j.contains("config")) {
    *kind = "config";
    const json& cfg = j["config"];
    if (!cfg.is_object() || cfg.empty()) {
      *error = "config: must be an object with at least one setting";
      return std::nullopt;
    }
    sync::ConfigUpdate update;
    std::pair<const char*, std::optional<uint32_t>*> fields[] = {
        {"min_period_ms", &update.min_period_ms},
        {"max_period_ms", &update.max_period_ms},
        {"min_distance_m", &update.min_distance_m},
        {"heading_change_deg", &update.heading_change_deg},
        {"speed_change_kmh", &update.speed_change_kmh},
        {"stop_after_ms", &update.stop_after_ms},
        {"parked_period_ms", &update.parked_period_ms},
        {"quota_mb", &update.quota_mb},
        {"health_period_s", &update.health_period_s},
        {"keepalive_s", &update.keepalive_s}};
    for (const auto& [key, value] : cfg.items()) {
      bool known = false;
      for (auto& [name, out] : fields) {
        if (key != name) continue;
        known = true;
        uint32_t v = 0;
        if (!GetUnsigned(value, "config." + key, &v, error)) return std::nullopt;
        *out = v;
      }
      if (!known) {
        *error = "config." + key + ": unknown setting";
        return std::nullopt;
      }
    }
    c.body = update;
  } else {
    *kind = "request_status";
    c.body = sync::RequestStatus{};
  }
  return c;
}

json CommandJson(const Command& c) {
  json j = {
      {"command_id", c.command_id}, {"device", c.device},         {"kind", c.kind},
      {"state", c.state},           {"created_ms", c.created_ms}, {"updated_ms", c.updated_ms}};
  if (!c.message.empty()) j["message"] = c.message;
  if (!c.status_json.empty()) {
    json status = json::parse(c.status_json, nullptr, false);
    j["status"] = status.is_discarded() ? json(c.status_json) : status;
  }
  return j;
}

void Reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                  "application/json");
}

// The folder and the CA of [proofs], checked once at start so that a typo is a start error rather
// than a dead letter per proof. The certificates in the folder are read when proofs arrive.
Status CheckProofsConfig(const ProofsConfig& proofs) {
  if (proofs.device_certs_dir.empty()) {
    spdlog::warn(
        "bridge: proofs of delivery are NOT verified ([proofs] device_certs_dir is not set); "
        "they are forwarded with \"signature_verified\": false");
    return Status::Ok();
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(proofs.device_certs_dir, ec)) {
    return Status::InvalidArgument("proofs.device_certs_dir: " + proofs.device_certs_dir +
                                   " is not a directory");
  }
  auto ca = sync::ReadCertificate(proofs.ca_file);
  if (!ca.ok()) return Status::InvalidArgument("proofs.ca_file: " + ca.status().message());
  if (!ca->is_ca) {
    return Status::InvalidArgument("proofs.ca_file: " + proofs.ca_file + " (" + ca->subject +
                                   ") is not a CA certificate");
  }
  spdlog::info("bridge: proofs of delivery are verified against the certificates in {} (CA {})",
               proofs.device_certs_dir, ca->subject);
  return Status::Ok();
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

Bridge::Bridge(BridgeConfig config) : config_(std::move(config)) {}

Bridge::~Bridge() { Stop(0); }

Status Bridge::Start() {
  if (Status s = CheckProofsConfig(config_.proofs); !s.ok()) return s;
  std::error_code ec;
  std::filesystem::create_directories(config_.data_dir, ec);
  if (ec) {
    return Status::IOError("cannot create the data directory " + config_.data_dir + ": " +
                           ec.message());
  }
  InboxOptions io;
  io.path = (std::filesystem::path(config_.data_dir) / "inbox.db").string();
  for (int r = 0; r < kRouteCount; ++r) io.lanes[r] = config_.routes[r].lanes;
  auto inbox = Inbox::Open(io);
  if (!inbox.ok()) return inbox.status();
  inbox_ = std::move(*inbox);
  metrics_ = std::make_unique<Metrics>();

  api_ = std::make_unique<httplib::Server>();
  ServeApi();
  std::string host = config_.api.listen.substr(0, config_.api.listen.rfind(':'));
  int port = std::atoi(config_.api.listen.substr(config_.api.listen.rfind(':') + 1).c_str());
  if (port == 0) {
    api_port_ = api_->bind_to_any_port(host);
  } else {
    api_port_ = api_->bind_to_port(host, port) ? port : -1;
  }
  if (api_port_ <= 0) {
    api_.reset();
    inbox_.reset();
    return Status::Unavailable("cannot listen on " + config_.api.listen +
                               " (api.listen): address in use or not local");
  }
  api_thread_ = std::thread([this] { api_->listen_after_bind(); });

  forwarder_ = std::make_unique<Forwarder>(config_, inbox_.get(), metrics_.get());
  if (Status s = forwarder_->Start(); !s.ok()) {
    Stop(0);
    return s;
  }
  if (config_.uploads.enabled) {
    auto store = UploadStore::Open({config_.uploads.dir, config_.uploads.max_bytes});
    if (!store.ok()) {
      Stop(0);
      return store.status();
    }
    upload_store_ = std::move(store).value();
    photo_forwarder_ =
        std::make_unique<PhotoForwarder>(config_.uploads, upload_store_.get(), metrics_.get());
    if (Status s = photo_forwarder_->Start(); !s.ok()) {
      Stop(0);
      return s;
    }
    upload_server_ = std::make_unique<UploadServer>(
        config_.uploads, upload_store_.get(), metrics_.get(), [this] { photo_forwarder_->Wake(); });
    if (Status s = upload_server_->Start(); !s.ok()) {
      Stop(0);
      return s;
    }
  }
  consumer_ = std::make_unique<Consumer>(config_, inbox_.get(), metrics_.get(),
                                         [this] { forwarder_->Wake(); });
  if (Status s = consumer_->Start(5000); !s.ok()) {
    Stop(0);
    return s;
  }
  started_ = true;
  spdlog::info("bridge {}: inbox {}, API on {}:{}, broker {}", config_.instance, io.path, host,
               api_port_, config_.mqtt.uri);
  return Status::Ok();
}

int Bridge::upload_port() const { return upload_server_ ? upload_server_->port() : 0; }

void Bridge::Stop(int64_t grace_ms) {
  if (upload_server_) upload_server_->Stop();
  if (photo_forwarder_) photo_forwarder_->Stop();
  if (consumer_) consumer_->Stop();
  if (forwarder_) forwarder_->Stop(grace_ms);
  if (api_) api_->stop();
  if (api_thread_.joinable()) api_thread_.join();
  upload_server_.reset();
  photo_forwarder_.reset();
  upload_store_.reset();
  consumer_.reset();
  forwarder_.reset();
  api_.reset();
  inbox_.reset();
  started_ = false;
}

void Bridge::ServeApi() {
  httplib::Server& s = *api_;
  s.new_task_queue = [] { return new httplib::ThreadPool(4); };
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (!consumer_ || !consumer_->connected()) {
      res.status = 503;
      res.set_content("not ready: not connected to the broker " + config_.mqtt.uri + "\n",
                      "text/plain");
      return;
    }
    res.set_content("ready\n", "text/plain");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    auto counts = inbox_->Counts();
    res.set_content(metrics_->Render(counts.ok() ? &*counts : nullptr, config_.instance),
                    "text/plain; version=0.0.4");
  });
  auto authorized = [this](const httplib::Request& req, httplib::Response& res) {
    if (config_.api.token.empty()) {
      Reply(res, 403, {{"error", "the downlink API is off: set api.token_env or api.token_file"}});
      return false;
    }
    std::string header = req.get_header_value("Authorization");
    if (header.rfind("Bearer ", 0) != 0 ||
        !ConstantTimeEquals(header.substr(7), config_.api.token)) {
      res.set_header("WWW-Authenticate", "Bearer");
      Reply(res, 401, {{"error", "missing or wrong bearer token"}});
      return false;
    }
    return true;
  };
  s.Post(R"(/v1/devices/([^/]+)/commands)",
         [this, authorized](const httplib::Request& req, httplib::Response& res) {
           if (!authorized(req, res)) return;
           std::string device = req.matches[1];
           if (!sync::IsValidDeviceId(device)) {
             Reply(res, 400, {{"error", "device id: 1..64 of [A-Za-z0-9_-]"}});
             return;
           }
           json body = json::parse(req.body, nullptr, false);
           if (body.is_discarded()) {
             Reply(res, 400, {{"error", "the body is not JSON"}});
             return;
           }
           std::string kind, error;
           auto command = ParseCommand(body, &kind, &error);
           if (!command) {
             Reply(res, 400, {{"error", error}});
             return;
           }
           auto payload = sync::EncodeCommand(*command);
           if (!payload.ok()) {
             Reply(res, 400, {{"error", payload.status().message()}});
             return;
           }
           Command stored{command->command_id,
                          device,
                          kind,
                          hal::Clock::System().wall_ms(),
                          hal::Clock::System().wall_ms(),
                          "queued",
                          "",
                          "",
                          *payload};
           if (Status st = inbox_->PutCommand(stored); !st.ok()) {
             Reply(res, st.code() == Status::Code::kFailedPrecondition ? 409 : 500,
                   {{"error", st.message()}});
             return;
           }
           consumer_->PublishCommand(stored);
           res.set_header("Location", "/v1/devices/" + device + "/commands/" + stored.command_id);
           Reply(res, 202, CommandJson(stored));
         });
  s.Get(R"(/v1/devices/([^/]+)/commands/([^/]+))",
        [this, authorized](const httplib::Request& req, httplib::Response& res) {
          if (!authorized(req, res)) return;
          auto command = inbox_->GetCommand(req.matches[2]);
          if (!command.ok()) {
            Reply(res, 500, {{"error", command.status().message()}});
            return;
          }
          if (!command->has_value() || (*command)->device != req.matches[1]) {
            Reply(res, 404,
                  {{"error", "no command " + std::string(req.matches[2]) + " for device " +
                                 std::string(req.matches[1])}});
            return;
          }
          Reply(res, 200, CommandJson(**command));
        });
  s.Get(R"(/v1/devices/([^/]+)/commands)",
        [this, authorized](const httplib::Request& req, httplib::Response& res) {
          if (!authorized(req, res)) return;
          auto list = inbox_->ListCommands(req.matches[1], 100);
          if (!list.ok()) {
            Reply(res, 500, {{"error", list.status().message()}});
            return;
          }
          json out = json::array();
          for (const Command& c : *list) out.push_back(CommandJson(c));
          Reply(res, 200, {{"commands", out}});
        });
}

}  // namespace waybill::bridge
