#include "waybill/firmware/daemon.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <array>
#include <filesystem>

#include "waybill/hal/serial.h"
#include "waybill/sync/data_key.h"
#include "waybill/sync/pki.h"
#include "waybill/sync/proof_signature.h"

namespace waybill::firmware {

namespace {

constexpr int64_t kGnssReadTimeoutMs = 200;
constexpr int64_t kSupervisorTickMs = 1000;
// The GNSS thread is stuck if it has not come round its loop for this long: stop kicking the
// watchdogs so that systemd (or the hardware) restarts the daemon.
constexpr int64_t kGnssStallMs = 30000;
// Recordings from before this date still replay on host-sim (the parser's default would call the
// 2010 drives implausible); real receivers get the parser's stricter default.
constexpr int64_t kReplayMinPlausibleUtcMs = 946684800000;  // 2000-01-01

std::string Iso8601(int64_t ms) {
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

hal::NmeaOptions ParserOptions(const DaemonOptions& o, const hal::Clock& clock) {
  hal::NmeaOptions opts;
  opts.require_checksum = o.config.gnss_require_checksum;
  opts.clock = &clock;
  if (o.board.gnss.source == hal::GnssSourceKind::kReplay) {
    opts.min_plausible_utc_ms = kReplayMinPlausibleUtcMs;
    opts.source = "replay of " + o.board.gnss.replay_file.filename().string();
  } else {
    opts.source = o.board.gnss.device;
  }
  return opts;
}

}  // namespace

Daemon::Daemon(DaemonOptions options, hal::Clock& clock, hal::Sleeper& sleeper)
    : options_(std::move(options)),
      clock_(clock),
      sleeper_(sleeper),
      parser_(ParserOptions(options_, clock)) {}

Daemon::~Daemon() {
  // The API's hooks reach into members destroyed before it (the uploader).
  if (api_) api_->Stop();
  RequestStop();
  if (gnss_thread_.joinable()) gnss_thread_.join();
}

Result<std::unique_ptr<Daemon>> Daemon::Create(DaemonOptions options, hal::Clock& clock,
                                               hal::Sleeper& sleeper) {
  std::unique_ptr<Daemon> d(new Daemon(std::move(options), clock, sleeper));
  DaemonOptions& o = d->options_;
  d->started_mono_ms_ = clock.mono_ms();

  std::filesystem::path data_dir = o.config.data_dir.empty()
                                       ? o.board.storage.data_dir
                                       : std::filesystem::path(o.config.data_dir);
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    return Status::IOError("data directory " + data_dir.string() +
                           " cannot be created: " + ec.message());
  }

  // Settings changed by the backend's config commands override waybill.toml. A bad overrides
  // file must not keep the truck from recording: it is reported and ignored.
  std::string overrides_path = (data_dir / "config-overrides.json").string();
  RuntimeConfig runtime{o.config.sampling, o.config.quota_bytes, o.config.health_period_ms,
                        o.config.uplink.keepalive_s};
  Result<sync::ConfigUpdate> overrides = LoadConfigOverrides(overrides_path);
  if (!overrides.ok()) {
    spdlog::error("config overrides ignored: {}", overrides.status().message());
  } else if (Result<RuntimeConfig> applied = ApplyConfigUpdate(runtime, *overrides); applied.ok()) {
    runtime = std::move(applied).value();
  } else {
    spdlog::error("config overrides in {} ignored: {}", overrides_path, applied.status().message());
  }
  o.config.sampling = runtime.sampling;
  o.config.quota_bytes = runtime.quota_bytes;
  o.config.health_period_ms = runtime.health_period_ms;
  o.config.uplink.keepalive_s = runtime.keepalive_s;
  d->health_period_ms_ = runtime.health_period_ms;

  Result<Sampler> sampler = Sampler::Create(o.config.sampling);
  if (!sampler.ok()) return sampler.status();
  d->sampler_ = std::move(sampler).value();

  TimeKeeperConfig tk_config;
  if (o.board.gnss.source == hal::GnssSourceKind::kReplay) {
    tk_config.min_utc_ms = kReplayMinPlausibleUtcMs;
  }
  Result<std::unique_ptr<TimeKeeper>> tk = TimeKeeper::Create(clock, tk_config);
  if (!tk.ok()) return tk.status();
  d->time_keeper_ = std::move(tk).value();

  // Personal data at rest (proofs, deliveries, photos) is sealed with this key. A key file that
  // others may read, or that is damaged, stops the start: sealing with it would protect nothing.
  std::string key_file =
      o.config.data_key_file.empty() ? (data_dir / "data.key").string() : o.config.data_key_file;
  Result<std::unique_ptr<sync::DataKey>> data_key = sync::DataKey::LoadOrCreate(key_file);
  if (!data_key.ok()) {
    return Status::FailedPrecondition("[storage] data_key_file: " + data_key.status().message());
  }
  std::shared_ptr<const sync::DataKey> key(std::move(data_key).value());
  spdlog::info("personal data at rest sealed with data key {} ({})", key->KeyIdHex(), key_file);

  sync::OutboxOptions ob;
  ob.path = (data_dir / "outbox.db").string();
  ob.data_key = key;
  ob.quota_bytes = o.config.quota_bytes;
  ob.min_free_bytes = o.config.min_free_bytes;
  Result<std::unique_ptr<sync::Outbox>> outbox = sync::Outbox::Open(ob);
  if (!outbox.ok()) return outbox.status();
  d->outbox_ = std::move(outbox).value();
  for (const std::string& alarm : d->outbox_->Stats().alarms) {
    spdlog::error("outbox alarm: {}", alarm);
  }

  TimeKeeper* keeper = d->time_keeper_.get();
  d->recorder_ = std::make_unique<Recorder>(*d->outbox_, [keeper] {
    Timestamp t = keeper->Now();
    return Stamp{t.ts_ms, t.source};
  });
  if (Status s = d->SetUpProofSigning(); !s.ok()) return s;
  d->photos_ = std::make_unique<PhotoStore>((data_dir / "photos").string(), key);
  d->manifests_ = std::make_unique<ManifestStore>((data_dir / "manifest.json").string());
  CommandDispatcher::Hooks command_hooks;
  command_hooks.apply_config = [self = d.get()](const RuntimeConfig& cfg) {
    std::lock_guard lock(self->mu_);
    self->pending_sampling_ = cfg.sampling;
    self->health_period_ms_ = cfg.health_period_ms;
  };
  command_hooks.status_json = [self = d.get()] { return self->CompactStatusJson(); };
  command_hooks.now_ms = [keeper] { return keeper->Now().ts_ms; };
  d->commands_ = std::make_unique<CommandDispatcher>(*d->manifests_, overrides_path, runtime,
                                                     std::move(command_hooks));
  d->storage_ = hal::NewLinuxStorageHealth(data_dir.string());

  // The GNSS source: a replayed recording or the receiver on its serial port.
  const hal::BoardConfig::Gnss& g = o.board.gnss;
  if (g.source == hal::GnssSourceKind::kReplay) {
    hal::NmeaReplayOptions ro;
    ro.speed = o.replay_speed.value_or(g.replay_speed);
    ro.loop = g.replay_loop && !o.stop_at_end_of_replay;
    auto src = hal::NmeaReplaySource::Open(g.replay_file, ro, clock, sleeper);
    if (!src.ok()) return src.status();
    d->gnss_ = std::move(src).value();
  } else {
    auto port = hal::NewLinuxSerialPort(g.device, g.baud);
    if (!port.ok()) return port.status();
    hal::ReconnectOptions rc;
    rc.role = "GNSS receiver";
    d->gnss_ = hal::NewSerialGnssSource(
        std::make_unique<hal::ReconnectingSerialPort>(std::move(port).value(), clock, sleeper, rc));
  }

  if (o.board.watchdog) {
    d->watchdog_ = hal::NewLinuxWatchdog(o.board.watchdog->device);
    if (Status s = d->watchdog_->Start(o.board.watchdog->timeout_s); !s.ok()) {
      return Status::Unavailable("watchdog " + o.board.watchdog->device + ": " + s.message());
    }
  } else {
    d->watchdog_ = std::make_unique<hal::NullWatchdog>();
  }

  if (!o.config.uplink.broker.empty()) {
    const DaemonConfig::Uplink& u = o.config.uplink;
    sync::UplinkOptions uo;
    uo.broker_uri = u.broker;
    uo.device_id = o.config.device_id;
    uo.firmware_version = WAYBILL_VERSION;
    uo.mqtt_version = u.mqtt_version == 3 ? sync::MqttVersion::kV311 : sync::MqttVersion::kV5;
    uo.tls.ca_file = u.ca_file;
    uo.tls.cert_file = u.cert_file;
    uo.tls.key_file = u.key_file;
    uo.keepalive_s = u.keepalive_s;
    uo.inflight_batches = u.inflight_batches;
    uo.batch_max_events = static_cast<size_t>(u.batch_max_events);
    uo.batch_wait_ms = u.batch_wait_ms;
    uo.ack_timeout_ms = u.ack_timeout_ms;
    uo.backoff.cap_ms = u.reconnect_max_s * 1000;
    uo.backoff.base_ms = std::min(uo.backoff.base_ms, uo.backoff.cap_ms);
    Result<std::unique_ptr<sync::Uplink>> uplink = sync::Uplink::Create(*d->outbox_, clock, uo);
    if (!uplink.ok()) {
      return Status::InvalidArgument("[uplink]: " + uplink.status().message());
    }
    d->uplink_ = std::move(uplink).value();
    CommandDispatcher* commands = d->commands_.get();
    d->uplink_->SetCommandHandler(
        [commands](const sync::Command& command) { return commands->Handle(command); });
    sync::Uplink* up = d->uplink_.get();
    d->recorder_->SetOnStored([up](sync::EventClass) { up->Nudge(); });
  }

  // Photos referenced by a stored proof are marked for upload whether or not an upload_url is
  // set, so that configuring one later sends the photos of earlier proofs too.
  d->upload_queue_ = std::make_unique<PhotoUploadQueue>((data_dir / "photo-uploads").string());
  if (!o.config.uplink.upload_url.empty()) {
    const DaemonConfig::Uplink& u = o.config.uplink;
    PhotoUploaderOptions po;
    po.url = u.upload_url;
    po.ca_file = u.ca_file;
    po.cert_file = u.cert_file;
    po.key_file = u.key_file;
    po.chunk_bytes = static_cast<uint64_t>(u.upload_chunk_bytes);
    po.retry_cap_ms = u.reconnect_max_s * 1000;
    std::function<bool()> link_up;
    if (sync::Uplink* up = d->uplink_.get()) link_up = [up] { return up->Stats().connected; };
    d->uploader_ = std::make_unique<PhotoUploader>(*d->photos_, *d->upload_queue_, std::move(po),
                                                   std::move(link_up));
  }

  LocalApiHooks hooks;
  Daemon* self = d.get();
  hooks.photo_referenced = [self](const std::array<uint8_t, 32>& sha256) {
    Status s = self->upload_queue_->Mark(sha256);
    if (s.ok() && self->uploader_) self->uploader_->Nudge();
    return s;
  };
  hooks.last_fix = [self] {
    std::lock_guard lock(self->mu_);
    return self->last_fix_;
  };
  hooks.status = [self] { return self->StatusJson(); };
  hooks.manifest = [self] { return self->manifests_->Get(); };
  hooks.stop_update = [self](const StopUpdate& u) { return self->manifests_->Record(u); };
  d->api_ = std::make_unique<LocalApi>(*d->recorder_, *d->photos_, std::move(hooks));
  if (Status s = d->api_->Start(o.config.api_host, o.config.api_port); !s.ok()) return s;
  return d;
}

Status Daemon::SetUpProofSigning() {
  const std::string& path = options_.config.SigningKeyFile();
  if (path.empty()) {
    spdlog::warn(
        "no device key ([device] key_file or [uplink] key_file): proofs of delivery are recorded "
        "unsigned, and a bridge that verifies proofs will dead-letter them");
    return Status::Ok();
  }
  // Loaded once: a key that cannot be read now would fail every proof of the day.
  Result<std::unique_ptr<sync::DeviceKey>> key = sync::DeviceKey::Load(path);
  if (!key.ok()) {
    return Status::InvalidArgument(
        "the key that signs proofs of delivery: " + key.status().message() +
        " (fix the file or the [device]/[uplink] key_file setting)");
  }
  proof_key_ = std::move(key).value();
  sync::DeviceKey* signer = proof_key_.get();
  recorder_->SetProofSigner(
      [signer, device = options_.config.device_id](const sync::ProofOfDelivery& proof) {
        return signer->SignSha256(sync::CanonicalProofBytes(device, proof));
      });
  spdlog::info("proofs of delivery are signed with the key {}", path);
  return Status::Ok();
}

void Daemon::RequestStop() {
  {
    std::lock_guard lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
}

bool Daemon::WaitForStop(int64_t timeout_ms) {
  std::unique_lock lock(stop_mu_);
  return stop_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] {
    return stop_.load() || (options_.stop_at_end_of_replay && replay_done_.load());
  });
}

Stamp Daemon::StampFor(const hal::GnssFix& fix, bool gnss_time_accepted, int64_t age_ms) {
  if (gnss_time_accepted && fix.utc_ms) return {*fix.utc_ms, hal::TimeSource::kGnss};
  Timestamp now = time_keeper_->Now();
  return {now.ts_ms - age_ms, now.source};
}

void Daemon::HandleFix(const hal::GnssFix& fix, int64_t mono_ms) {
  GnssTimeUpdate update = time_keeper_->OnGnssFix(fix);
  bool accepted = update.verdict == GnssTimeVerdict::kAccepted;
  if (update.correction_offset_ms) {
    Result<uint64_t> n = outbox_->CorrectTime(*update.correction_offset_ms);
    if (n.ok()) {
      spdlog::info("first GNSS time of this boot: {} events recorded before it corrected by {} ms",
                   *n, *update.correction_offset_ms);
    } else {
      spdlog::error("first GNSS time: correcting earlier events failed: {}", n.status().ToString());
    }
  }

  // A replay may run faster than real time: its own GNSS times pace the sampler there (a fix
  // without one is taken as one second after the last). A receiver is paced by the clock.
  int64_t sample_ms = mono_ms;
  if (options_.board.gnss.source == hal::GnssSourceKind::kReplay) {
    sample_ms = fix.utc_ms ? *fix.utc_ms : last_sample_ms_ + 1000;
    last_sample_ms_ = sample_ms;
  }
  SampleDecision decision = sampler_.Offer(fix, sample_ms);
  auto record = [&](const hal::GnssFix& f, Stamp stamp) {
    Result<Recorded> r = recorder_->RecordFix(f, stamp);
    if (!r.ok()) {
      std::lock_guard lock(mu_);
      ++record_errors_;
      last_record_error_ = r.status().ToString();
      // A refused breadcrumb (quota, disk full) is logged by the outbox once per episode.
      if (!r.status().IsNoSpace()) spdlog::error("fix not stored: {}", last_record_error_);
    }
  };
  if (decision.late) {
    record(decision.late->fix, StampFor(decision.late->fix, accepted && decision.late->fix.utc_ms,
                                        sample_ms - decision.late->mono_ms));
  }
  if (decision.keep) record(fix, StampFor(fix, accepted, 0));

  std::lock_guard lock(mu_);
  last_fix_ = fix;
}

void Daemon::GnssLoop() {
  std::array<uint8_t, 4096> buf;
  while (!stop_.load()) {
    gnss_heartbeat_mono_ms_ = clock_.mono_ms();
    if (std::optional<SamplerConfig> cfg = TakePendingSampling()) {
      if (Result<Sampler> next = Sampler::Create(*cfg); next.ok()) {
        sampler_ = std::move(next).value();
        spdlog::info("sampling policy changed by a config command");
      }
    }
    Result<size_t> n = gnss_->Read(buf, kGnssReadTimeoutMs);
    if (n.ok() && *n > 0) {
      parser_.Feed(std::span<const uint8_t>(buf.data(), *n));
    } else if (gnss_->exhausted()) {
      parser_.Flush();
    } else if (!n.ok()) {
      // The serial source reconnects by itself and has logged the cause; do not spin.
      sleeper_.SleepFor(kGnssReadTimeoutMs);
    }
    int64_t now = clock_.mono_ms();
    for (const hal::GnssFix& fix : parser_.TakeFixes()) HandleFix(fix, now);
    {
      std::lock_guard lock(mu_);
      nmea_stats_ = parser_.stats();
      sampler_stats_ = sampler_.stats();
    }
    if (gnss_->exhausted() && parser_.pending_fixes() == 0) {
      spdlog::info("GNSS source {} ended", gnss_->name());
      replay_done_ = true;
      stop_cv_.notify_all();
      return;
    }
  }
}

std::optional<SamplerConfig> Daemon::TakePendingSampling() {
  std::lock_guard lock(mu_);
  std::optional<SamplerConfig> cfg = std::move(pending_sampling_);
  pending_sampling_.reset();
  return cfg;
}

void Daemon::RecordHealth() {
  sync::OutboxStats ob = outbox_->Stats();
  sync::Health h;
  h.uptime_s = static_cast<uint64_t>((clock_.mono_ms() - started_mono_ms_) / 1000);
  h.outbox_events = ob.events;
  h.outbox_bytes = ob.bytes;
  if (Result<hal::StorageStats> st = storage_->Check(); st.ok()) {
    h.free_bytes = st->free_bytes;
    h.storage_read_only = st->read_only;
  }
  {
    std::lock_guard lock(mu_);
    h.gnss_mode = last_fix_ ? static_cast<uint32_t>(last_fix_->mode) : 0;
    h.nmea_rejected = nmea_stats_.rejected_total();
  }
  if (Result<Recorded> r = recorder_->RecordHealth(h); !r.ok()) {
    spdlog::warn("health event not stored: {}", r.status().ToString());
  }
}

Status Daemon::Run() {
  gnss_thread_ = std::thread([this] { GnssLoop(); });
  if (uplink_) {
    if (Status s = uplink_->Start(); !s.ok()) spdlog::error("uplink: {}", s.ToString());
  }
  if (uploader_) {
    if (Status s = uploader_->Start(); !s.ok()) spdlog::error("photo uploads: {}", s.ToString());
  }
  sd_notify(0, "READY=1\nSTATUS=recording");
  uint64_t watchdog_usec = 0;
  bool systemd_watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  spdlog::info("waybilld {} running: device {}, board {}, local API on {}:{}", WAYBILL_VERSION,
               options_.config.device_id, options_.board.name, options_.config.api_host,
               api_->port());

  int64_t next_health = clock_.mono_ms();
  while (!WaitForStop(kSupervisorTickMs)) {
    int64_t now = clock_.mono_ms();
    bool healthy = now - gnss_heartbeat_mono_ms_.load() < kGnssStallMs || replay_done_.load();
    if (healthy) {
      if (Status s = watchdog_->Kick(); !s.ok()) spdlog::warn("watchdog kick: {}", s.message());
      if (systemd_watchdog) sd_notify(0, "WATCHDOG=1");
    } else {
      spdlog::error("GNSS thread has not run for {} ms: no longer kicking the watchdog",
                    now - gnss_heartbeat_mono_ms_.load());
    }
    if (now >= next_health) {
      RecordHealth();
      next_health = now + health_period_ms_.load();
    }
  }

  sd_notify(0, "STOPPING=1");
  spdlog::info("stopping: finishing API requests, flushing the outbox");
  api_->Stop();
  RequestStop();
  if (gnss_thread_.joinable()) gnss_thread_.join();
  // In-flight events are released: they stay in the outbox and go out after the next start.
  if (uplink_) uplink_->Stop();
  // A photo upload in flight is cut; the bridge keeps what it synced and the next start resumes.
  if (uploader_) uploader_->Stop();
  Status flushed = outbox_->Flush();
  if (Status s = watchdog_->Stop(); !s.ok()) spdlog::warn("watchdog stop: {}", s.message());
  if (!flushed.ok()) spdlog::error("outbox flush failed: {}", flushed.ToString());
  return flushed;
}

std::string Daemon::CompactStatusJson() {
  nlohmann::json full = StatusJson();
  nlohmann::json compact = {{"device_id", full["device_id"]}, {"version", full["version"]},
                            {"uptime_s", full["uptime_s"]},   {"gnss", full["gnss"]},
                            {"outbox", full["outbox"]},       {"storage", full["storage"]},
                            {"uplink", full["uplink"]}};
  compact["gnss"].erase("rejected_by_reason");
  return compact.dump();
}

nlohmann::json Daemon::StatusJson() {
  using nlohmann::json;
  sync::OutboxStats ob = outbox_->Stats();
  Timestamp now = time_keeper_->Now();
  json j;
  j["device_id"] = options_.config.device_id;
  j["version"] = WAYBILL_VERSION;
  j["board"] = options_.board.name;
  j["uptime_s"] = (clock_.mono_ms() - started_mono_ms_) / 1000;
  {
    std::lock_guard lock(mu_);
    json g = {{"source", gnss_->name()},
              {"time", Iso8601(now.ts_ms)},
              {"time_source", std::string(hal::ToString(now.source))},
              {"sentences", nmea_stats_.sentences},
              {"fixes", nmea_stats_.fixes},
              {"rejected", nmea_stats_.rejected_total()}};
    json rejected = json::object();
    for (size_t i = 0; i < hal::kNmeaRejectCount; ++i) {
      if (nmea_stats_.rejected[i]) {
        rejected[std::string(hal::ToString(static_cast<hal::NmeaReject>(i)))] =
            nmea_stats_.rejected[i];
      }
    }
    g["rejected_by_reason"] = rejected;
    if (last_fix_) {
      g["mode"] = static_cast<int>(last_fix_->mode);
      g["lat"] = last_fix_->lat_e7 / 1e7;
      g["lon"] = last_fix_->lon_e7 / 1e7;
      if (last_fix_->speed_cmps) g["speed_kmh"] = *last_fix_->speed_cmps * 0.036;
      if (last_fix_->sats) g["sats"] = *last_fix_->sats;
    } else {
      g["mode"] = 1;
    }
    j["gnss"] = g;
    j["sampling"] = {{"received", sampler_stats_.received},
                     {"kept", sampler_stats_.kept},
                     {"state", std::string(ToString(sampler_.motion_state()))},
                     {"record_errors", record_errors_}};
    if (!last_record_error_.empty()) j["sampling"]["last_error"] = last_record_error_;
  }
  using sync::EventClass;
  auto by = [&](EventClass c) { return ob.by_class[static_cast<int>(c)]; };
  j["outbox"] = {{"events", ob.events},
                 {"fixes", by(EventClass::kFix)},
                 {"health", by(EventClass::kHealth)},
                 {"deliveries", by(EventClass::kDelivery)},
                 {"proofs", by(EventClass::kProofOfDelivery)},
                 {"bytes", ob.bytes},
                 {"next_seq", ob.next_seq},
                 {"evicted", ob.evicted},
                 {"refused", ob.refused},
                 {"burned", ob.burned},
                 {"unopenable", ob.unopenable},
                 {"alarms", ob.alarms}};
  if (uplink_) {
    sync::UplinkStats u = uplink_->Stats();
    j["uplink"] = {{"connected", u.connected},
                   {"broker", options_.config.uplink.broker},
                   {"connects", u.connects},
                   {"events_sent", u.events_sent},
                   {"events_acked", u.events_acked},
                   {"resends", u.resends},
                   {"inflight_events", u.inflight_events},
                   {"bytes_published", u.bytes_published},
                   {"last_ack", u.last_ack_wall_ms ? nlohmann::json(Iso8601(u.last_ack_wall_ms))
                                                   : nlohmann::json(nullptr)}};
    if (!u.connected && !u.last_connect_error.empty()) {
      j["uplink"]["last_connect_error"] = u.last_connect_error;
    }
    if (!u.last_disconnect_cause.empty()) {
      j["uplink"]["last_disconnect_cause"] = u.last_disconnect_cause;
    }
  } else {
    j["uplink"] = {{"connected", false}, {"broker", nullptr}};
  }
  if (uploader_) {
    PhotoUploadStats p = uploader_->Stats();
    j["photos"] = {{"upload_url", options_.config.uplink.upload_url},
                   {"pending", p.pending},
                   {"uploaded", p.uploaded},
                   {"bytes_sent", p.bytes_sent},
                   {"rejected", p.rejected},
                   {"last_error", p.last_error.empty() ? json(nullptr) : json(p.last_error)}};
  } else {
    // No [uplink] upload_url: marked photos wait on the unit until one is configured.
    j["photos"] = {{"upload_url", nullptr}, {"pending", upload_queue_->Pending().size()},
                   {"uploaded", 0},         {"bytes_sent", 0},
                   {"rejected", 0},         {"last_error", nullptr}};
  }
  if (Result<hal::StorageStats> st = storage_->Check(); st.ok()) {
    j["storage"] = {{"data_dir", storage_->data_dir()},
                    {"free_bytes", st->free_bytes},
                    {"total_bytes", st->total_bytes},
                    {"read_only", st->read_only}};
  } else {
    j["storage"] = {{"error", st.status().ToString()}};
  }
  return j;
}

}  // namespace waybill::firmware
