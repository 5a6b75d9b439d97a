// Uplink benchmark: how fast a backlog drains end to end, compared with a naive publisher in the
// same run, and what a parked truck that stays connected costs in bytes per hour.
//
// DRAIN. A million breadcrumbs (the Munich drive, driven there and back again and again with the
// times running on, so bodies and deltas are those of a real receiver) are appended to a real
// outbox file under $WAYBILL_BENCH_DIR (not timed). A real Uplink, tuned for a backlog (the most
// batches in flight it allows, the biggest batches the wire allows), drains it over plain TCP to
// a local Mosquitto; the TestAcker (the bridge's stand-in, in this process) decodes every batch
// and publishes the Ack, and the uplink deletes what was acked. The clock runs from Start() (the
// connect is included) until every event has been acked and deleted.
//
// NAIVE. The same broker, a Paho C++ client publishing each event's stored Fix body as its own
// QoS 1 message and waiting for its PUBACK before the next: what a straightforward "one message
// per event" uplink does. It is flattered: no outbox read, no delete, no end-to-end ack. Bounded
// to kNaiveMaxEvents or kNaiveMaxSeconds, whichever comes first.
//
// IDLE. A TLS Mosquitto (mutual TLS, the test PKI, the fleet ACL) and a byte-counting relay
// between it and an Uplink with default options (keep-alive 300 s) and an empty outbox. After the
// connection is up and quiet (handshake, CONNECT, SUBSCRIBE, the retained status and their
// answers: `uplink.idle_bytes_connect`), the relay counts for the window
// ($WAYBILL_BENCH_IDLE_SECONDS, default 660: two keep-alive periods and a margin). Bytes are TCP
// payload in both directions (TLS records whole, TCP/IP headers not). The hourly figure divides
// by the whole keep-alive periods in the window (600 s of 660), so a PINGREQ sent late in the
// window is not diluted by the margin after it. The idle part runs on its own thread while the
// drain and the naive run are measured: it only sleeps, and bytes do not depend on CPU load.
//
// Prints `figure NAME VALUE UNIT` on stdout, diagnostics on stderr. Every wait is bounded.
#include <mqtt/async_client.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "byte_relay.h"
#include "support/acker.h"
#include "support/mosquitto.h"
#include "support/test_pki.h"
#include "waybill/hal/clock.h"
#include "waybill/hal/nmea.h"
#include "waybill/sync/events.h"
#include "waybill/sync/outbox.h"
#include "waybill/sync/uplink.h"
#include "waybill/sync/wire.h"

namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;
using waybill::sync::EventClass;
using waybill::sync::NewEvent;
using waybill::sync::Outbox;
using waybill::sync::Uplink;
using waybill::sync::UplinkOptions;

// The defaults; --events, --batch and --inflight change them (figures are named for a million).
constexpr size_t kBacklogEvents = 1'000'000;
constexpr size_t kBatchMaxEvents = waybill::sync::kMaxBatchEvents;
constexpr int kInflightBatches = 100;
constexpr int64_t kDrainTimeoutS = 300;
constexpr size_t kNaiveMaxEvents = 20'000;
constexpr double kNaiveMaxSeconds = 20;
constexpr int kDefaultIdleSeconds = 660;
// At most this many appends wait in the outbox's queue while loading (bounds memory).
constexpr size_t kLoadOutstanding = 50'000;
// Device ids of at most 15 characters stay in std::string's inline buffer: the acker keeps one per
// event it records, a million of them.
constexpr char kDrainDevice[] = "bench-truck";
constexpr char kIdleDevice[] = "truck-1";  // the test PKI made its certificate

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

void Figure(const char* name, double value, const char* unit) {
  std::printf("figure %s %.6g %s\n", name, value, unit);
  std::fflush(stdout);
}

// ---- The track ----

std::vector<waybill::hal::GnssFix> LoadDrive(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  waybill::hal::NmeaOptions options;
  options.log_rejections = false;
  options.skip_comment_lines = true;
  options.min_plausible_utc_ms = 946684800000;  // 2000-01-01: the drive is from 2009
  options.source = path.filename().string();
  waybill::hal::NmeaParser parser(options);
  parser.Feed(text.str());
  parser.Flush();
  return parser.TakeFixes();
}

// `count` fixes: the drive forwards, then backwards (course turned round), then forwards again...
// so the track stays continuous and on the map however long it runs; times keep the drive's own
// steps and never go back.
std::vector<NewEvent> MakeBacklog(const std::vector<waybill::hal::GnssFix>& drive, size_t count) {
  std::vector<int64_t> step_ms(drive.size(), 1000);
  for (size_t i = 1; i < drive.size(); ++i) {
    if (drive[i].utc_ms && drive[i - 1].utc_ms && *drive[i].utc_ms > *drive[i - 1].utc_ms) {
      step_ms[i] = *drive[i].utc_ms - *drive[i - 1].utc_ms;
    }
  }
  std::vector<NewEvent> out;
  out.reserve(count);
  int64_t ts_ms = drive.front().utc_ms.value_or(1'262'304'000'000);
  for (size_t lap = 0; out.size() < count; ++lap) {
    const bool back = lap % 2 == 1;
    for (size_t k = 0; k < drive.size() && out.size() < count; ++k) {
      const size_t i = back ? drive.size() - 1 - k : k;
      waybill::hal::GnssFix fix = drive[i];
      // Going back, the step into fix i is the one that led out of it going forwards.
      ts_ms += k == 0 ? 1000 : step_ms[back ? i + 1 : i];
      fix.utc_ms = ts_ms;
      if (back && fix.course_cdeg) {
        fix.course_cdeg = static_cast<uint16_t>((*fix.course_cdeg + 18000) % 36000);
      }
      NewEvent e;
      e.cls = EventClass::kFix;
      e.ts_ms = ts_ms;
      e.ts_src = waybill::hal::TimeSource::kGnss;
      e.body = waybill::sync::EncodeFix(fix);
      out.push_back(std::move(e));
    }
  }
  return out;
}

// Appends everything (AppendAsync, group commits) and waits for the last commit.
bool Load(Outbox& outbox, std::vector<NewEvent> events) {
  std::mutex mu;
  std::condition_variable cv;
  size_t outstanding = 0;
  std::atomic<size_t> failed{0};
  std::string first_error;
  for (NewEvent& e : events) {
    {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return outstanding < kLoadOutstanding; });
      ++outstanding;
    }
    outbox.AppendAsync(std::move(e), [&](waybill::Result<uint64_t> r) {
      std::lock_guard<std::mutex> lk(mu);
      if (!r.ok() && failed++ == 0) first_error = r.status().message();
      --outstanding;
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return outstanding == 0; });
  }
  (void)outbox.Flush();
  if (failed > 0) {
    std::fprintf(stderr, "uplink bench: %zu appends failed, the first: %s\n", failed.load(),
                 first_error.c_str());
    return false;
  }
  return true;
}

// ---- Drain ----

struct DrainResult {
  bool ok = false;
  double seconds = 0;
  double connect_seconds = 0;
  waybill::sync::UplinkStats stats;
};

struct Config {
  size_t events = kBacklogEvents;
  size_t batch_max_events = kBatchMaxEvents;
  int inflight_batches = kInflightBatches;
  bool idle = true;
};

DrainResult Drain(Outbox& outbox, const std::string& broker_uri, const Config& config) {
  const size_t events = config.events;
  DrainResult result;
  UplinkOptions o;
  o.broker_uri = broker_uri;
  o.device_id = kDrainDevice;
  o.firmware_version = "bench";
  o.batch_max_events = config.batch_max_events;
  o.inflight_batches = config.inflight_batches;
  auto uplink = Uplink::Create(outbox, waybill::hal::Clock::System(), o);
  if (!uplink.ok()) {
    std::fprintf(stderr, "uplink bench: %s\n", uplink.status().message().c_str());
    return result;
  }
  const auto start = SteadyClock::now();
  const auto deadline = start + std::chrono::seconds(kDrainTimeoutS);
  if (waybill::Status s = (*uplink)->Start(); !s.ok()) {
    std::fprintf(stderr, "uplink bench: %s\n", s.message().c_str());
    return result;
  }
  auto last_report = start;
  while (SteadyClock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const waybill::sync::UplinkStats st = (*uplink)->Stats();
    if (st.connected && result.connect_seconds == 0) {
      result.connect_seconds = Seconds(SteadyClock::now() - start);
    }
    // events_acked counts sequences the uplink handed to Outbox::Ack after a decoded ack; the
    // outbox's own count confirms that nothing is left.
    if (st.events_acked >= events && outbox.Stats().events == 0) {
      result.seconds = Seconds(SteadyClock::now() - start);
      result.ok = true;
      break;
    }
    if (SteadyClock::now() - last_report >= std::chrono::seconds(5)) {
      last_report = SteadyClock::now();
      std::fprintf(stderr,
                   "uplink bench: drain %.0f s: %llu sent, %llu acked, %llu batches in flight\n",
                   Seconds(last_report - start), static_cast<unsigned long long>(st.events_sent),
                   static_cast<unsigned long long>(st.events_acked),
                   static_cast<unsigned long long>(st.inflight_batches));
    }
  }
  result.stats = (*uplink)->Stats();
  (*uplink)->Stop();
  if (!result.ok) {
    std::fprintf(stderr,
                 "uplink bench: the drain did not finish within %lld s (%llu of %zu acked)\n",
                 static_cast<long long>(kDrainTimeoutS),
                 static_cast<unsigned long long>(result.stats.events_acked), events);
  }
  return result;
}

// ---- Naive ----

struct NaiveResult {
  bool ok = false;
  size_t events = 0;
  double seconds = 0;
};

NaiveResult Naive(const std::string& broker_uri, const std::vector<std::string>& bodies) {
  NaiveResult result;
  try {
    mqtt::async_client client(broker_uri, "bench-naive", mqtt::create_options(MQTTVERSION_5),
                              nullptr);
    mqtt::connect_options o;
    o.set_mqtt_version(MQTTVERSION_5);
    o.set_clean_start(true);
    o.set_keep_alive_interval(60);
    o.set_connect_timeout(10);
    if (!client.connect(o)->wait_for(std::chrono::seconds(15))) {
      std::fprintf(stderr, "uplink bench: naive client: no CONNACK within 15 s\n");
      return result;
    }
    // Nobody subscribes: the broker only stores and PUBACKs, as for a bridge that is keeping up.
    const std::string topic = "bench/naive/fix";
    const auto start = SteadyClock::now();
    for (const std::string& body : bodies) {
      if (result.events >= kNaiveMaxEvents ||
          Seconds(SteadyClock::now() - start) >= kNaiveMaxSeconds) {
        break;
      }
      if (!client.publish(mqtt::make_message(topic, body, 1, false))
               ->wait_for(std::chrono::seconds(5))) {
        std::fprintf(stderr, "uplink bench: naive client: no PUBACK within 5 s\n");
        return result;
      }
      ++result.events;
    }
    result.seconds = Seconds(SteadyClock::now() - start);
    client.disconnect()->wait_for(std::chrono::seconds(5));
    result.ok = result.events > 0;
  } catch (const mqtt::exception& e) {
    std::fprintf(stderr, "uplink bench: naive client: %s\n", e.what());
  }
  return result;
}

// ---- Idle ----

struct IdleResult {
  bool ok = false;
  uint64_t connect_bytes = 0;
  uint64_t window_bytes = 0;
  double bytes_per_hour = 0;
  int window_s = 0;
};

int IdleWindowSeconds() {
  const char* env = std::getenv("WAYBILL_BENCH_IDLE_SECONDS");
  if (env == nullptr || *env == '\0') return kDefaultIdleSeconds;
  const int v = std::atoi(env);
  return std::clamp(v, 1, 24 * 3600);
}

IdleResult Idle(const fs::path& dir, int window_s) {
  IdleResult result;
  result.window_s = window_s;
  const waybill::testing::TestPki& pki = waybill::testing::GetTestPki();
  waybill::testing::MosquittoOptions mo;
  mo.tls = true;
  waybill::testing::Mosquitto broker(dir / "broker-tls", mo);
  std::string error;
  if (!broker.Start(&error)) {
    std::fprintf(stderr, "uplink bench: idle: %s\n", error.c_str());
    return result;
  }
  waybill::bench::ByteRelay relay(broker.port());
  if (!relay.Start(&error)) {
    std::fprintf(stderr, "uplink bench: idle: %s\n", error.c_str());
    return result;
  }
  waybill::sync::OutboxOptions oo;
  oo.path = (dir / "idle-outbox.db").string();
  auto outbox = Outbox::Open(oo);
  if (!outbox.ok()) {
    std::fprintf(stderr, "uplink bench: idle: %s\n", outbox.status().message().c_str());
    return result;
  }
  UplinkOptions o;  // defaults, keep-alive 300 s
  o.broker_uri = "ssl://127.0.0.1:" + std::to_string(relay.port());
  o.device_id = kIdleDevice;
  o.firmware_version = "bench";
  const waybill::testing::CertPair cert = pki.device(kIdleDevice);
  o.tls.ca_file = pki.ca.string();
  o.tls.cert_file = cert.cert.string();
  o.tls.key_file = cert.key.string();
  o.tls.verify_host = true;
  auto uplink = Uplink::Create(**outbox, waybill::hal::Clock::System(), o);
  if (!uplink.ok()) {
    std::fprintf(stderr, "uplink bench: idle: %s\n", uplink.status().message().c_str());
    return result;
  }
  (void)(*uplink)->Start();
  // Connected, then quiet for 3 s: the handshake, CONNECT, SUBSCRIBE, the retained status and
  // their answers (and TLS 1.3 session tickets) are through, and the empty outbox is drained.
  const auto connect_deadline = SteadyClock::now() + std::chrono::seconds(60);
  bool quiet = false;
  while (SteadyClock::now() < connect_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!(*uplink)->Stats().connected) continue;
    if (SteadyMs() - relay.last_transfer_mono_ms() >= 3000) {
      quiet = true;
      break;
    }
  }
  if (!quiet) {
    std::fprintf(stderr, "uplink bench: idle: not connected and quiet within 60 s: %s\n",
                 (*uplink)->Stats().last_connect_error.c_str());
    (*uplink)->Stop();
    return result;
  }
  result.connect_bytes = relay.total_bytes();
  std::fprintf(stderr,
               "uplink bench: idle: connected over TLS through the relay: %llu bytes up, %llu "
               "down; measuring %d s\n",
               static_cast<unsigned long long>(relay.upstream_bytes()),
               static_cast<unsigned long long>(relay.downstream_bytes()), window_s);
  const int64_t window_start_ms = SteadyMs();
  const uint64_t base = relay.total_bytes();
  const waybill::sync::UplinkStats before = (*uplink)->Stats();
  std::this_thread::sleep_for(std::chrono::seconds(window_s));
  result.window_bytes = relay.total_bytes() - base;
  const waybill::sync::UplinkStats after = (*uplink)->Stats();
  for (const waybill::bench::RelayTransfer& t : relay.TransfersSince(window_start_ms)) {
    std::fprintf(stderr, "uplink bench: idle: +%7.1f s %s %zu bytes\n",
                 static_cast<double>(t.mono_ms - window_start_ms) / 1000,
                 t.upstream ? "truck->broker" : "broker->truck", t.bytes);
  }
  (*uplink)->Stop();
  if (after.disconnects != before.disconnects || relay.connections() != 1) {
    std::fprintf(stderr,
                 "uplink bench: idle: the connection dropped during the window (%llu "
                 "connections through the relay): no figure\n",
                 static_cast<unsigned long long>(relay.connections()));
    return result;
  }
  // Whole keep-alive periods in the window (or the window, if shorter than one).
  const int periods = window_s / o.keepalive_s;
  const double span_s = periods > 0 ? static_cast<double>(periods) * o.keepalive_s : window_s;
  if (periods < 2) {
    std::fprintf(stderr,
                 "uplink bench: idle: the window of %d s holds fewer than two keep-alive periods "
                 "of %d s: the hourly figure is not representative\n",
                 window_s, o.keepalive_s);
  }
  result.bytes_per_hour = static_cast<double>(result.window_bytes) * 3600.0 / span_s;
  std::fprintf(stderr,
               "uplink bench: idle: %llu bytes in %d s, counted over %.0f s (%d keep-alive "
               "periods): %.0f bytes/hour\n",
               static_cast<unsigned long long>(result.window_bytes), window_s, span_s, periods,
               result.bytes_per_hour);
  result.ok = true;
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("uplink"));
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--events" && has_value) {
      config.events = std::clamp<size_t>(std::strtoull(argv[++i], nullptr, 10), kNaiveMaxEvents,
                                         10 * kBacklogEvents);
    } else if (arg == "--batch" && has_value) {
      config.batch_max_events = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--inflight" && has_value) {
      config.inflight_batches = std::atoi(argv[++i]);
    } else if (arg == "--no-idle") {
      config.idle = false;
    } else {
      std::fprintf(stderr,
                   "usage: bench_uplink [--events N] [--batch N] [--inflight N] [--no-idle]\n"
                   "  the idle window is $WAYBILL_BENCH_IDLE_SECONDS (default %d s)\n",
                   kDefaultIdleSeconds);
      return 2;
    }
  }
  const char* env_dir = std::getenv("WAYBILL_BENCH_DIR");
  const fs::path dir =
      fs::path(env_dir != nullptr && *env_dir != '\0' ? env_dir : "/var/tmp/waybill-bench") /
      "uplink";
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  const char* env_src = std::getenv("WAYBILL_SOURCE_DIR");
  const fs::path source = env_src != nullptr && *env_src != '\0' ? env_src : WAYBILL_SOURCE_DIR;

  // The idle measurement only waits: it runs beside everything else.
  const int idle_window_s = IdleWindowSeconds();
  IdleResult idle;
  std::thread idle_thread([&] {
    if (config.idle) idle = Idle(dir, idle_window_s);
  });

  int status = 0;
  const fs::path drive_path = source / "tests/data/nmea/drives/munich-gps.nmea";
  const std::vector<waybill::hal::GnssFix> drive = LoadDrive(drive_path);
  if (drive.size() < 2) {
    std::fprintf(stderr, "uplink bench: no fixes in %s\n", drive_path.c_str());
    idle_thread.join();
    return 1;
  }
  std::vector<NewEvent> backlog = MakeBacklog(drive, config.events);
  std::vector<std::string> naive_bodies;
  for (size_t i = 0; i < kNaiveMaxEvents; ++i) naive_bodies.push_back(backlog[i].body);
  size_t body_bytes = 0;
  for (const NewEvent& e : backlog) body_bytes += e.body.size();
  std::fprintf(stderr,
               "uplink bench: %zu fixes from %s (%zu in the drive), %.1f bytes of body each\n",
               backlog.size(), drive_path.filename().c_str(), drive.size(),
               static_cast<double>(body_bytes) / backlog.size());

  waybill::sync::OutboxOptions oo;
  oo.path = (dir / "outbox.db").string();
  auto outbox = Outbox::Open(oo);
  if (!outbox.ok()) {
    std::fprintf(stderr, "uplink bench: %s\n", outbox.status().message().c_str());
    idle_thread.join();
    return 1;
  }
  const auto load_start = SteadyClock::now();
  if (!Load(**outbox, std::move(backlog))) {
    idle_thread.join();
    return 1;
  }
  std::fprintf(stderr, "uplink bench: loaded %llu events in %.1f s (not timed)\n",
               static_cast<unsigned long long>((*outbox)->Stats().events),
               Seconds(SteadyClock::now() - load_start));

  waybill::testing::Mosquitto broker(dir / "broker-plain", {});
  std::string error;
  if (!broker.Start(&error)) {
    std::fprintf(stderr, "uplink bench: %s\n", error.c_str());
    idle_thread.join();
    return 1;
  }
  waybill::testing::AckerOptions ao;
  ao.broker_uri = broker.uri();
  ao.client_id = "bench-bridge";
  waybill::testing::TestAcker acker(ao);
  if (!acker.Start(&error)) {
    std::fprintf(stderr, "uplink bench: %s\n", error.c_str());
    idle_thread.join();
    return 1;
  }
  std::fprintf(stderr,
               "uplink bench: draining over plain TCP (%s), batches of up to %zu events, %d "
               "batches in flight\n",
               broker.uri().c_str(), config.batch_max_events, config.inflight_batches);
  const DrainResult drain = Drain(**outbox, broker.uri(), config);
  if (drain.ok) {
    const double rate = static_cast<double>(config.events) / drain.seconds;
    std::fprintf(stderr,
                 "uplink bench: drained %zu events in %.2f s (connected after %.2f s): %llu "
                 "batches, %llu events sent, %llu resends, acker saw %zu batches, %zu decode "
                 "errors\n",
                 config.events, drain.seconds, drain.connect_seconds,
                 static_cast<unsigned long long>(drain.stats.batches_sent),
                 static_cast<unsigned long long>(drain.stats.events_sent),
                 static_cast<unsigned long long>(drain.stats.resends), acker.batches(),
                 acker.decode_errors());
    std::fprintf(stderr, "uplink bench: %.0f events/s from the CONNACK on (not a figure)\n",
                 static_cast<double>(config.events) / (drain.seconds - drain.connect_seconds));
    Figure("uplink.drain_events_per_s", rate, "events/s");
    Figure("uplink.drain_seconds_1M", drain.seconds * 1e6 / static_cast<double>(config.events),
           "s");
    Figure("uplink.bytes_per_event",
           static_cast<double>(drain.stats.bytes_published) / static_cast<double>(config.events),
           "bytes");
  } else {
    status = 1;
  }
  acker.Stop();
  // The drained file is small, its WAL is not: leave nothing big behind in the bench directory.
  outbox->reset();
  for (const char* suffix : {"", "-wal", "-shm", ".seq", ".lock"}) fs::remove(oo.path + suffix, ec);

  const NaiveResult naive = Naive(broker.uri(), naive_bodies);
  if (naive.ok) {
    const double rate = naive.events / naive.seconds;
    std::fprintf(stderr, "uplink bench: naive: %zu events, one QoS 1 PUBLISH each, in %.2f s\n",
                 naive.events, naive.seconds);
    Figure("uplink.naive_events_per_s", rate, "events/s");
    if (drain.ok) {
      Figure("uplink.drain_ratio_vs_naive",
             static_cast<double>(config.events) / drain.seconds / rate, "x");
    }
  } else {
    status = 1;
  }
  broker.Stop();

  if (config.idle) {
    std::fprintf(stderr, "uplink bench: waiting for the idle measurement (%d s window)\n",
                 idle_window_s);
  }
  idle_thread.join();
  if (!config.idle) return status;
  if (idle.ok) {
    Figure("uplink.idle_window_s", idle.window_s, "s");
    Figure("uplink.idle_bytes_connect", static_cast<double>(idle.connect_bytes), "bytes");
    Figure("uplink.idle_bytes_per_hour", idle.bytes_per_hour, "bytes/h");
  } else {
    status = 1;
  }
  return status;
}
