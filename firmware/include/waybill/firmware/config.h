// waybill.toml: the device's own settings (identity, storage, API, GNSS options).
//
// The board file (boards/<board>/board.toml) says what hardware is where; this file says who the
// device is and how it behaves. Unknown keys are errors, so a typo never passes silently.
#pragma once

#include <cstdint>
#include <string>

#include "waybill/firmware/sampler.h"
#include "waybill/status.h"

namespace waybill::firmware {

struct DaemonConfig {
  std::string device_id;  // [device] id: letters, digits, '-', '_', at most 64
  std::string board;      // [device] board: the board this unit was provisioned for, if set
  // [device] key_file: the key that signs proofs of delivery; unset, [uplink] key_file (the
  // provisioned key) does. See SigningKeyFile().
  std::string key_file;
  std::string data_dir;  // [storage] data_dir: overrides the board's when set
  // [storage] data_key_file: the key that seals personal data at rest (docs/PERSONAL-DATA.md);
  // empty: <data_dir>/data.key. Created on the first start when missing.
  std::string data_key_file;
  uint64_t quota_bytes = 256ull << 20;    // [storage] quota_mb
  uint64_t min_free_bytes = 16ull << 20;  // [storage] min_free_mb
  std::string api_host = "127.0.0.1";     // [api] host
  int api_port = 8080;                    // [api] port (0: any free port, printed at start)
  bool gnss_require_checksum = true;      // [gnss] require_checksum
  int64_t health_period_ms = 300000;      // [health] period_s
  SamplerConfig sampling;                 // [sampling], see docs/SAMPLING.md

  // [uplink]: absent or without broker, the unit records and does not send.
  struct Uplink {
    std::string broker;              // tcp://host:port or ssl://host:port
    int mqtt_version = 5;            // 5, or 3 for MQTT 3.1.1
    std::string ca_file;             // ssl://: the CA that signed the broker's certificate
    std::string cert_file;           // ssl://: this device's certificate (mutual TLS)
    std::string key_file;            // ssl://: its private key
    int keepalive_s = 300;           // 240..65535: each ping costs cellular bytes
    int inflight_batches = 20;       // 1..100
    int batch_max_events = 60;       // 1..1024
    int64_t batch_wait_ms = 5000;    // how long live events wait for a batch to fill
    int64_t ack_timeout_ms = 60000;  // unacknowledged batches are sent again after this
    int64_t reconnect_max_s = 300;   // the longest wait between two connect attempts
    // https://host:port of the bridge's photo upload endpoint; empty: photos stay on the unit.
    // Uses ca_file, cert_file and key_file (mutual TLS: the bridge knows the unit by its CN).
    std::string upload_url;
    int64_t upload_chunk_bytes = 256 * 1024;  // upload_chunk_kib: what a cut link costs at most
  } uplink;

  // The key that signs proofs of delivery: [device] key_file, else [uplink] key_file; empty when
  // neither is set (proofs are then recorded unsigned).
  const std::string& SigningKeyFile() const {
    return key_file.empty() ? uplink.key_file : key_file;
  }
};

// Reads and validates the file. Errors name the file, the key and what is expected.
Result<DaemonConfig> LoadDaemonConfig(const std::string& path);
// Same, from text (for tests); `origin` names the text in error messages.
Result<DaemonConfig> ParseDaemonConfig(std::string_view text, const std::string& origin);

}  // namespace waybill::firmware
