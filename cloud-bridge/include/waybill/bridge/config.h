// waybill-bridge's configuration: one TOML file (docs/BRIDGE.md lists every key).
//
// The file is validated as a whole at start; an error names the file, the line and the key
// ("bridge.toml:14: routes.positions.batch_size: 0, must be 1..5000"). Secrets (the backend's
// token, the API token) are never in the file: it names an environment variable or a file that
// holds them, read once at start and never logged.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "waybill/status.h"
#include "waybill/sync/outbox.h"  // EventClass

namespace waybill::bridge {

// Where an event class goes in the backend. One queue per route: a failing route never holds
// the others back.
enum class Route : uint8_t { kPositions = 0, kDeliveries = 1, kProofs = 2, kHealth = 3 };
inline constexpr int kRouteCount = 4;
std::string_view ToString(Route route);  // "positions", "deliveries", "proofs", "health"
Route RouteOf(sync::EventClass cls);

struct RetryPolicy {
  int64_t base_ms = 500;                 // backoff ceiling after the first failure
  int64_t cap_ms = 60'000;               // the ceiling never grows past this
  int64_t max_retry_after_ms = 600'000;  // a Retry-After longer than this is cut to it
};

struct RouteConfig {
  // URL template. Placeholders: {route}, {device} (then every request holds one device's
  // events). http:// or https://; TLS peers are always verified.
  std::string url;
  std::string method = "POST";
  std::map<std::string, std::string> headers;  // static headers (no secrets: see auth_token_*)
  std::string auth_token;  // resolved from auth_token_env / auth_token_file; sent as Bearer
  int batch_size = 500;    // events per request, 1..5000
  int64_t timeout_ms = 10'000;
  int lanes = 4;  // requests in flight per route; a device always uses the same lane (order)
  RetryPolicy retry;
  std::string ca_file;  // extra CA bundle for the backend's certificate; empty = system store
  bool enabled = true;  // false: events of the route are kept in the inbox, not forwarded
};

struct MqttConfig {
  std::string uri = "tcp://127.0.0.1:1883";
  std::string client_id = "waybill-bridge";
  // Shared-subscription group: the bridge subscribes $share/<group>/fleet/+/up so that many
  // instances split the load. Empty = a plain subscription to fleet/+/up (one instance only).
  std::string share_group = "waybill";
  std::string ca_file;  // TLS: trust store, client certificate and key
  std::string cert_file;
  std::string key_file;
  int keepalive_s = 30;
};

struct ApiConfig {
  std::string listen = "127.0.0.1:8480";  // host:port of /metrics, /healthz, /readyz, /v1/...
  std::string token;  // resolved from token_env / token_file; empty = downlink API disabled
};

// [proofs]: the device signatures of proofs of delivery (proof_verifier.h, docs/PROOFS.md).
struct ProofsConfig {
  // Holds <device id>.pem for every device. Empty: proofs are not verified (and are forwarded
  // with "signature_verified": false).
  std::string device_certs_dir;
  std::string ca_file;  // the fleet CA every device certificate must chain to
};

// [uploads]: the HTTPS endpoint where trucks upload proof-of-delivery photos (docs/BRIDGE.md),
// and the forwarding of complete photos to the backend. Absent: no endpoint.
struct UploadsConfig {
  bool enabled = false;
  std::string listen;     // host:port, HTTPS only
  std::string cert_file;  // the endpoint's certificate and key
  std::string key_file;
  std::string client_ca_file;       // the fleet CA: a device is known by its certificate's CN
  std::string dir;                  // default <data_dir>/photos
  uint64_t max_bytes = 8ull << 20;  // the largest photo accepted
  // Where complete photos go: {sha256} and {device} are replaced. http:// or https://.
  std::string forward_url;
  std::string forward_ca_file;     // extra CA bundle for the backend; empty = system store
  std::string forward_auth_token;  // from forward_auth_token_env / _file; sent as Bearer
  int64_t forward_timeout_ms = 60'000;
  RetryPolicy forward_retry{1000, 60'000, 600'000};
  // How long a forwarded photo stays on the bridge (0: deleted as soon as the backend has it).
  int64_t retention_h = 24;
};

struct BridgeConfig {
  std::string data_dir = "/var/lib/waybill-bridge";  // holds inbox.db
  std::string instance = "bridge";                   // names this instance in logs and metrics
  MqttConfig mqtt;
  ApiConfig api;
  RouteConfig routes[kRouteCount];
  ProofsConfig proofs;
  UploadsConfig uploads;
  // Validation of incoming batches.
  int64_t max_future_ms = 86'400'000;  // event times later than now + this are implausible
  int64_t min_event_time_ms = 1'577'836'800'000;  // 2020-01-01: earlier times are implausible
  // Forwarded events are kept (without their body) this long to recognise resends.
  int64_t dedup_window_h = 168;
  // Dead letters (refused input, with its raw bytes: names and signatures of refused proofs) are
  // deleted this long after they were last seen; 0 keeps them until an operator drops them.
  int64_t dead_letter_retention_h = 0;
  int ingest_queue = 4096;  // messages received but not yet stored; a full queue slows MQTT
};

// Parses and validates a configuration; `origin` names it in errors (a path). Relative paths in
// it stay relative to the working directory. Secrets named by *_env / *_file are resolved here.
Result<BridgeConfig> ParseBridgeConfig(std::string_view text, const std::string& origin);
Result<BridgeConfig> LoadBridgeConfig(const std::string& path);

// The URL of one request: `url` with {route} and {device} replaced (the device id is safe in a
// URL: [A-Za-z0-9_-]).
std::string ExpandUrl(const std::string& url, Route route, std::string_view device);

}  // namespace waybill::bridge
