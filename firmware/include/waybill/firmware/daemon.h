// Daemon: waybilld's composition of the board's hardware, the GNSS pipeline, the outbox and the
// local API.
//
// Threads: the GNSS thread owns the source and the parser (bytes -> fixes -> time keeper ->
// sampler -> outbox); the API server has its own; the photo uploader has its own; Run() is the
// supervisor: it records health events, kicks the hardware and systemd watchdogs while the GNSS
// thread and the outbox make progress, and on RequestStop() stops the API (in-flight requests
// finish), the GNSS thread, flushes the outbox and returns.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "waybill/firmware/commands.h"
#include "waybill/firmware/config.h"
#include "waybill/firmware/local_api.h"
#include "waybill/firmware/manifest_store.h"
#include "waybill/firmware/photo_store.h"
#include "waybill/firmware/photo_uploader.h"
#include "waybill/firmware/recorder.h"
#include "waybill/firmware/sampler.h"
#include "waybill/firmware/time_keeper.h"
#include "waybill/hal/board.h"
#include "waybill/hal/gnss_source.h"
#include "waybill/hal/nmea.h"
#include "waybill/hal/storage_health.h"
#include "waybill/hal/watchdog.h"
#include "waybill/sync/outbox.h"
#include "waybill/sync/pki.h"
#include "waybill/sync/uplink.h"

namespace waybill::firmware {

struct DaemonOptions {
  hal::BoardConfig board;
  DaemonConfig config;
  std::optional<double> replay_speed;  // overrides the board's gnss.replay_speed
  bool stop_at_end_of_replay = false;  // for tests and benchmarks
};

class Daemon {
 public:
  // Opens the outbox (with its integrity check and recovery), the GNSS source, the watchdog and
  // binds the local API. Errors say which part failed and why; nothing is left running.
  static Result<std::unique_ptr<Daemon>> Create(DaemonOptions options, hal::Clock& clock,
                                                hal::Sleeper& sleeper);
  ~Daemon();

  // Runs until RequestStop() (or the replay ends, if asked), then shuts down cleanly: the
  // returned Status is the outbox flush's.
  Status Run();
  // Thread-safe and async-signal-tolerant enough for a signal-watching thread.
  void RequestStop();

  int api_port() const { return api_->port(); }
  nlohmann::json StatusJson();
  // The status answered to a request-status command: small enough for one MQTT message.
  std::string CompactStatusJson();

 private:
  Daemon(DaemonOptions options, hal::Clock& clock, hal::Sleeper& sleeper);
  // Loads the device key and gives the recorder a signer (see DaemonConfig::SigningKeyFile);
  // kInvalidArgument naming the file when the key cannot be used.
  Status SetUpProofSigning();
  void GnssLoop();
  void HandleFix(const hal::GnssFix& fix, int64_t mono_ms);
  Stamp StampFor(const hal::GnssFix& fix, bool gnss_time_accepted, int64_t age_ms);
  void RecordHealth();
  std::optional<SamplerConfig> TakePendingSampling();
  bool WaitForStop(int64_t timeout_ms);

  DaemonOptions options_;
  hal::Clock& clock_;
  hal::Sleeper& sleeper_;
  int64_t started_mono_ms_ = 0;

  std::unique_ptr<sync::Outbox> outbox_;
  std::unique_ptr<TimeKeeper> time_keeper_;
  std::unique_ptr<sync::DeviceKey> proof_key_;  // null: proofs are recorded unsigned
  std::unique_ptr<Recorder> recorder_;
  std::unique_ptr<PhotoStore> photos_;
  std::unique_ptr<PhotoUploadQueue> upload_queue_;
  std::unique_ptr<ManifestStore> manifests_;
  std::unique_ptr<CommandDispatcher> commands_;
  std::unique_ptr<LocalApi> api_;
  std::unique_ptr<hal::GnssSource> gnss_;
  std::unique_ptr<hal::Watchdog> watchdog_;
  std::unique_ptr<hal::StorageHealth> storage_;
  std::unique_ptr<sync::Uplink> uplink_;     // null when waybill.toml names no broker
  std::unique_ptr<PhotoUploader> uploader_;  // null without [uplink] upload_url

  // Owned by the GNSS thread; the snapshot below is what others read.
  hal::NmeaParser parser_;
  Sampler sampler_;
  int64_t last_sample_ms_ = 0;  // replay boards: the sampler's time base, see HandleFix

  mutable std::mutex mu_;  // guards the snapshot
  std::optional<hal::GnssFix> last_fix_;
  hal::NmeaStats nmea_stats_;
  SamplerStats sampler_stats_;
  uint64_t record_errors_ = 0;
  std::string last_record_error_;
  std::optional<SamplerConfig> pending_sampling_;  // set by a config command
  std::atomic<int64_t> health_period_ms_{0};

  std::atomic<int64_t> gnss_heartbeat_mono_ms_{0};
  std::atomic<bool> replay_done_{false};
  std::atomic<bool> stop_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::thread gnss_thread_;
};

}  // namespace waybill::firmware
