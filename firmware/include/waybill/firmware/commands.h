// Commands from the backend (fleet/<device>/cmd), handled on the unit.
//
//   manifest        stored durably for the in-cab app (ManifestStore), replacing the last one;
//   config          validated as a whole (a bad field rejects the whole update, naming it), then
//                   applied at once where the daemon can (sampling, health period) and kept in
//                   <data_dir>/config-overrides.json, which is applied over waybill.toml at every
//                   start (quota and keep-alive take effect then: the result says so);
//   request-status  answered with the unit's status as JSON.
//
// Every command gets a CommandResult. Handling is idempotent on command_id: the broker may
// deliver a command again after a reconnect, and a repeated id gets the first result without
// being applied twice. Thread-compatible: the uplink calls Handle() from one thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>

#include "waybill/firmware/manifest_store.h"
#include "waybill/firmware/sampler.h"
#include "waybill/status.h"
#include "waybill/sync/wire.h"

namespace waybill::firmware {

// The settings a config command may change.
struct RuntimeConfig {
  SamplerConfig sampling;
  uint64_t quota_bytes = 0;
  int64_t health_period_ms = 0;
  int keepalive_s = 0;
};

// `current` with `update` applied, or InvalidArgument naming the field ("config.min_period_ms:
// ..."). Nothing is partially applied.
Result<RuntimeConfig> ApplyConfigUpdate(const RuntimeConfig& current,
                                        const sync::ConfigUpdate& update);

// `later` over `earlier`: the fields set in `later` win.
sync::ConfigUpdate MergeConfigUpdates(const sync::ConfigUpdate& earlier,
                                      const sync::ConfigUpdate& later);

// The overrides file: JSON of the ConfigUpdate fields. A missing file is an empty update.
Result<sync::ConfigUpdate> LoadConfigOverrides(const std::string& path);
Status SaveConfigOverrides(const std::string& path, const sync::ConfigUpdate& overrides);

class CommandDispatcher {
 public:
  struct Hooks {
    // Applies a validated configuration now (sampling, health period). Must not fail.
    std::function<void(const RuntimeConfig&)> apply_config;
    // The answer to request-status: compact JSON of at most sync::kMaxStatusJsonBytes.
    std::function<std::string()> status_json;
    // Wall time for the manifest's received_at.
    std::function<int64_t()> now_ms;
  };

  CommandDispatcher(ManifestStore& manifests, std::string overrides_path, RuntimeConfig current,
                    Hooks hooks);

  sync::CommandResult Handle(const sync::Command& command);

  const RuntimeConfig& current() const { return current_; }

 private:
  sync::CommandResult HandleConfig(const std::string& id, const sync::ConfigUpdate& update);

  ManifestStore& manifests_;
  std::string overrides_path_;
  RuntimeConfig current_;
  Hooks hooks_;
  std::deque<sync::CommandResult> recent_;  // the last results, for repeated command ids
};

}  // namespace waybill::firmware
