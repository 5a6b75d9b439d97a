// Bridge benchmark: waybill-bridge end to end (MQTT in, durable inbox, acks, HTTP out to
// waybill-receiver), and the Node-RED flow an operator might run instead, in the same run.
//
// Every phase starts its own Mosquitto (tests/support, plain TCP, anonymous, no ACL), its own
// waybill-receiver (a fresh database) and the program under test, all as child processes on
// loopback. A simulated fleet of 1,000 devices (bench-0001..bench-1000) publishes real Batch
// payloads (sync::EncodeBatch of sync::EncodeFix bodies, plausible fixes stamped now) on
// fleet/<id>/up, QoS 1, MQTT 5. The fleet is a handful of MQTT connections (kConnections) that
// publish on behalf of many device topics: the broker has no ACL, so one connection may. Every
// message also carries two MQTT 5 user properties, first_seq and count, which only Node-RED
// reads (see NODE-RED below); the bridge ignores them.
//
// THROUGHPUT (bridge.events_per_s). Each device has a backlog of kBacklogBatches batches of
// kBacklogBatchEvents fixes (historical = true), encoded before the clock starts and published as
// fast as the connections allow, round-robin over the devices. The clock runs from the first
// publish until the receiver's GET /_stats says every event was applied. Meanwhile a subscriber
// on fleet/+/ack decodes every Ack (sync::DecodeAck) and counts the distinct events acknowledged
// (bridge.acked_events). The phase fails if an event is missing at the receiver or in the acks,
// or if the receiver counted an event applied twice (event_duplicates).
//
// LATENCY (bridge.forward_p99_ms). An offered load of kLatencyEventsPerS: each device sends a
// batch of kLatencyBatchEvents live fixes once a second, the devices spread evenly over the second,
// for kLatencySeconds. The harness notes the wall-clock time of each publish; the receiver's
// GET /_events gives the wall-clock time each event was applied (received_ms). The figure is the
// 99th percentile of the difference over every event. Both clocks are this machine's.
//
// NODE-RED (bridge.nodered_events_per_s, bridge.ratio_vs_nodered). node-red@4 is installed from
// npm into the bench directory (or taken from $WAYBILL_BENCH_NODE_RED, a folder where
// `npm install --prefix` put it) and runs headless (no editor, no admin API) with a flow of three
// nodes: `mqtt in` on fleet/+/up (MQTT 5, QoS 1, binary payload), a `function` that builds the
// receiver's body and Idempotency-Key, and an `http request` POSTing it to the receiver. The
// function does not decode the nanopb batch: it takes the device from the topic and the events'
// sequences from the user properties first_seq and count. It stores nothing, acknowledges
// nothing to the devices, does not retry a failed request and does not deduplicate: that is the
// flow as an operator would first write it, but for one header: Connection: close. Node-RED
// sends every message's request at once, each on its own connection, and leaves them open;
// waybill-receiver serves a connection per thread (32) and holds an idle one for 5 s, which
// starves it to about 15 requests/s. Closing each connection spares Node-RED that (it only
// helps the baseline). It gets the same messages as the throughput phase.
// When Node-RED cannot be installed or run, its figures are printed as nan and the benchmark
// exits 1 after everything else has been measured.
//
// Prints `figure NAME VALUE UNIT` on stdout, diagnostics on stderr. Every wait is bounded and
// every child process is killed when its phase ends, on failure too.
#include <httplib.h>
#include <mqtt/async_client.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "support/child_process.h"
#include "support/mosquitto.h"
#include "waybill/hal/gnss_fix.h"
#include "waybill/sync/events.h"
#include "waybill/sync/outbox.h"
#include "waybill/sync/wire.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using waybill::testing::ChildProcess;
using waybill::testing::ReadWholeFile;

constexpr int kDevices = 1000;
constexpr int kConnections = 4;           // MQTT connections publishing for all the devices
constexpr int kWindowPerConnection = 64;  // QoS 1 publishes awaiting PUBACK, per connection
constexpr int kBacklogBatches = 4;
constexpr int kBacklogBatchEvents = 75;
constexpr int kLatencyBatchEvents = 5;
constexpr int kLatencySeconds = 20;
constexpr int kLatencyEventsPerS = kDevices * kLatencyBatchEvents;
// The bench's bridge configuration for the positions route (documented in docs/BENCH_BRIDGE.md).
constexpr int kPositionsBatchSize = 500;
constexpr int kPositionsLanes = 4;

constexpr int kBrokerQueuedMessages = 100'000;
constexpr int kStartTimeoutS = 30;   // a process listening, a probe through the pipeline
constexpr int kApplyTimeoutS = 180;  // every event at the receiver after the last publish
constexpr int kStallTimeoutS = 30;   // ...or no progress at all for this long
constexpr int kNpmTimeoutS = 300;
constexpr int kAptTimeoutS = 600;
constexpr char kProbeDevice[] = "bench-probe";
constexpr char kPath[] = "/v1/positions";

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Figure(const char* name, double value, const char* unit) {
  std::printf("figure %s %.6g %s\n", name, value, unit);
  std::fflush(stdout);
}

__attribute__((format(printf, 1, 2))) void Log(const char* format, ...) {
  std::va_list args;
  va_start(args, format);
  std::fprintf(stderr, "bridge bench: ");
  std::vfprintf(stderr, format, args);
  std::fputc('\n', stderr);
  va_end(args);
}

std::string DeviceId(int index) {
  char id[24];
  std::snprintf(id, sizeof id, "bench-%04d", index + 1);
  return id;
}

// utime + stime of a process in seconds, or -1 when it is gone.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  long ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stol(field);
  }
  return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// ---- The fleet's messages ----

struct Message {
  int device = 0;  // index; -1 = the probe
  uint64_t first_seq = 0;
  int count = 0;
  std::string topic;
  std::string payload;
};

// A plausible fix of device `device` at step `step`: around Munich, 50 km/h heading east.
waybill::hal::GnssFix MakeFix(int device, uint64_t step, int64_t ts_ms) {
  waybill::hal::GnssFix fix;
  fix.utc_ms = ts_ms;
  fix.lat_e7 = 480'000'000 + (device % 40) * 25'000 + static_cast<int32_t>(step % 100) * 3;
  fix.lon_e7 = 113'000'000 + (device / 40) * 25'000 + static_cast<int32_t>(step % 1000) * 125;
  fix.alt_cm = 52'000 + static_cast<int32_t>(step % 50);
  fix.speed_cmps = 1389 + static_cast<uint32_t>(step % 7) * 10;
  fix.course_cdeg = static_cast<uint16_t>(9000 + (step % 11) * 50);
  fix.hdop_c = 90;
  fix.sats = 11;
  fix.mode = waybill::hal::FixMode::k3D;
  fix.quality = 1;
  return fix;
}

std::optional<Message> MakeMessage(int device, const std::string& id, uint64_t first_seq, int count,
                                   bool historical) {
  const int64_t now_ms = WallMs();
  std::vector<waybill::sync::StoredEvent> events;
  events.reserve(count);
  for (int i = 0; i < count; ++i) {
    waybill::sync::StoredEvent e;
    e.seq = first_seq + i;
    e.cls = waybill::sync::EventClass::kFix;
    e.ts_ms = now_ms - (count - 1 - i) * 1000;
    e.ts_src = waybill::hal::TimeSource::kGnss;
    e.body = waybill::sync::EncodeFix(MakeFix(device, e.seq, e.ts_ms));
    events.push_back(std::move(e));
  }
  auto payload = waybill::sync::EncodeBatch(id, historical, events);
  if (!payload.ok()) {
    Log("cannot encode a batch of %d fixes for %s: %s", count, id.c_str(),
        payload.status().message().c_str());
    return std::nullopt;
  }
  return Message{device, first_seq, count, waybill::sync::TopicUp(id), std::move(*payload)};
}

// Every device's backlog, round-robin: batch 0 of every device, then batch 1...
std::vector<Message> MakeBacklog() {
  std::vector<Message> out;
  out.reserve(static_cast<size_t>(kDevices) * kBacklogBatches);
  for (int b = 0; b < kBacklogBatches; ++b) {
    for (int d = 0; d < kDevices; ++d) {
      auto m = MakeMessage(d, DeviceId(d), 1 + static_cast<uint64_t>(b) * kBacklogBatchEvents,
                           kBacklogBatchEvents, true);
      if (!m) return {};
      out.push_back(std::move(*m));
    }
  }
  return out;
}

size_t EventsIn(const std::vector<Message>& messages) {
  size_t n = 0;
  for (const Message& m : messages) n += m.count;
  return n;
}

// ---- MQTT: the fleet's connections and the ack watcher ----

std::unique_ptr<mqtt::async_client> Connect(const std::string& uri, const std::string& client_id,
                                            int max_inflight) {
  try {
    auto client =
        std::make_unique<mqtt::async_client>(uri, client_id, mqtt::create_options(MQTTVERSION_5));
    mqtt::connect_options o;
    o.set_mqtt_version(MQTTVERSION_5);
    o.set_clean_start(true);
    o.set_keep_alive_interval(60);
    o.set_connect_timeout(10);
    o.set_max_inflight(max_inflight);
    if (!client->connect(o)->wait_for(std::chrono::seconds(15))) {
      Log("%s: no CONNACK from %s within 15 s", client_id.c_str(), uri.c_str());
      return nullptr;
    }
    return client;
  } catch (const mqtt::exception& e) {
    Log("%s: cannot connect to %s: %s", client_id.c_str(), uri.c_str(), e.what());
    return nullptr;
  }
}

// kConnections clients; device d publishes through client d % kConnections. Not thread-safe:
// one thread publishes.
class Fleet {
 public:
  bool Connect(const std::string& uri) {
    for (int i = 0; i < kConnections; ++i) {
      auto c = ::Connect(uri, "bench-fleet-" + std::to_string(i), kWindowPerConnection + 8);
      if (!c) return false;
      clients_.push_back(std::move(c));
      pending_.emplace_back();
    }
    return true;
  }

  // Publishes at QoS 1; waits for the oldest PUBACK of the connection when its window is full.
  bool Publish(const Message& m) {
    const size_t c = static_cast<size_t>(m.device < 0 ? 0 : m.device) % clients_.size();
    auto& pending = pending_[c];
    while (pending.size() >= kWindowPerConnection) {
      if (!WaitFront(pending)) return false;
    }
    try {
      auto msg = mqtt::make_message(m.topic, m.payload, 1, false);
      msg->set_properties(mqtt::properties{
          mqtt::property(mqtt::property::USER_PROPERTY, "first_seq", std::to_string(m.first_seq)),
          mqtt::property(mqtt::property::USER_PROPERTY, "count", std::to_string(m.count))});
      pending.push_back(clients_[c]->publish(msg));
    } catch (const mqtt::exception& e) {
      Log("publish on %s failed: %s", m.topic.c_str(), e.what());
      return false;
    }
    return true;
  }

  // Waits for every PUBACK.
  bool Flush() {
    for (auto& pending : pending_) {
      while (!pending.empty()) {
        if (!WaitFront(pending)) return false;
      }
    }
    return true;
  }

  void Disconnect() {
    for (auto& c : clients_) {
      try {
        c->disconnect()->wait_for(std::chrono::seconds(5));
      } catch (const mqtt::exception&) {
      }
    }
    clients_.clear();
    pending_.clear();
  }

  ~Fleet() { Disconnect(); }

 private:
  static bool WaitFront(std::deque<mqtt::delivery_token_ptr>& pending) {
    try {
      if (!pending.front()->wait_for(std::chrono::seconds(10))) {
        Log("no PUBACK within 10 s");
        return false;
      }
    } catch (const mqtt::exception& e) {
      Log("publish failed: %s", e.what());
      return false;
    }
    pending.pop_front();
    return true;
  }

  std::vector<std::unique_ptr<mqtt::async_client>> clients_;
  std::vector<std::deque<mqtt::delivery_token_ptr>> pending_;
};

// Subscribes to fleet/+/ack and counts the distinct (device, seq) acknowledged.
class AckWatcher {
 public:
  bool Start(const std::string& uri) {
    client_ = Connect(uri, "bench-acks", 64);
    if (!client_) return false;
    client_->set_message_callback([this](mqtt::const_message_ptr msg) {
      std::string device;
      auto seqs = waybill::sync::DecodeAck(msg->get_payload(), &device);
      std::lock_guard lock(mu_);
      if (!seqs.ok()) {
        ++decode_errors_;
        return;
      }
      ++acks_;
      auto& set = acked_[device];
      for (uint64_t s : *seqs) set.insert(s);
    });
    try {
      if (!client_->subscribe("fleet/+/ack", 1)->wait_for(std::chrono::seconds(10))) {
        Log("no SUBACK for fleet/+/ack within 10 s");
        return false;
      }
    } catch (const mqtt::exception& e) {
      Log("cannot subscribe to fleet/+/ack: %s", e.what());
      return false;
    }
    return true;
  }

  // Distinct events acknowledged, the probe's excluded.
  size_t acked_events() const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& [device, seqs] : acked_) {
      if (device != kProbeDevice) n += seqs.size();
    }
    return n;
  }
  size_t acks() const {
    std::lock_guard lock(mu_);
    return acks_;
  }
  size_t decode_errors() const {
    std::lock_guard lock(mu_);
    return decode_errors_;
  }

  ~AckWatcher() {
    if (client_) {
      try {
        client_->disconnect()->wait_for(std::chrono::seconds(5));
      } catch (const mqtt::exception&) {
      }
    }
  }

 private:
  std::unique_ptr<mqtt::async_client> client_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::unordered_set<uint64_t>> acked_;
  size_t acks_ = 0;
  size_t decode_errors_ = 0;
};

// ---- Child processes ----

// Waits at most `timeout_s` for `line_start` in `log` and returns the integer after it, or -1.
int WaitForNumberAfter(ChildProcess& child, const fs::path& log, const std::string& line_start,
                       int timeout_s) {
  const auto deadline = SteadyClock::now() + std::chrono::seconds(timeout_s);
  while (SteadyClock::now() < deadline) {
    const std::string text = ReadWholeFile(log);
    if (size_t at = text.find(line_start); at != std::string::npos) {
      return std::atoi(text.c_str() + at + line_start.size());
    }
    if (child.Poll()) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

std::string Tail(const fs::path& log, size_t bytes = 2000) {
  const std::string text = ReadWholeFile(log);
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}

class Receiver {
 public:
  bool Start(const fs::path& dir) {
    log_ = dir / "receiver.log";
    const fs::path port_file = dir / "receiver.port";
    if (!child_.Spawn({WAYBILL_RECEIVER_PATH, "--listen", "127.0.0.1:0", "--db",
                       (dir / "receiver.db").string(), "--port-file", port_file.string()},
                      log_)) {
      Log("cannot start %s", WAYBILL_RECEIVER_PATH);
      return false;
    }
    port_ = WaitForNumberAfter(child_, log_,
                               "waybill-receiver: listening on http://127.0.0.1:", kStartTimeoutS);
    if (port_ <= 0) {
      Log("the receiver did not listen within %d s:\n%s", kStartTimeoutS, Tail(log_).c_str());
      return false;
    }
    return true;
  }

  // GET `target`, parsed; null when the receiver does not answer 200 with JSON.
  json Get(const std::string& target, int timeout_s = 10) const {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(timeout_s, 0);
    auto res = client.Get(target);
    if (!res || res->status != 200) return json();
    return json::parse(res->body, nullptr, false);
  }
  json Stats() const { return Get("/_stats"); }
  // nullopt when the receiver does not answer (busy with other connections).
  std::optional<uint64_t> EventsApplied() const {
    json s = Stats();
    if (!s.is_object() || !s.contains("events_applied")) return std::nullopt;
    return s["events_applied"].get<uint64_t>();
  }

  int port() const { return port_; }
  pid_t pid() const { return child_.pid(); }
  const fs::path& log() const { return log_; }
  void Stop() { child_.Stop(SIGTERM, 10'000); }

 private:
  ChildProcess child_;
  fs::path log_;
  int port_ = -1;
};

class BridgeProcess {
 public:
  bool Start(const fs::path& dir, const std::string& broker_uri, int receiver_port) {
    const fs::path config = dir / "bridge.toml";
    const std::string url = "http://127.0.0.1:" + std::to_string(receiver_port) + "/v1/{route}";
    {
      std::ofstream out(config);
      out << "[bridge]\ndata_dir = \"" << (dir / "bridge").string() << "\"\n"
          << "[mqtt]\nuri = \"" << broker_uri << "\"\nclient_id = \"bench-bridge\"\n"
          << "[api]\nlisten = \"127.0.0.1:0\"\n"
          << "[routes.positions]\nurl = \"" << url << "\"\nbatch_size = " << kPositionsBatchSize
          << "\nlanes = " << kPositionsLanes << "\n";
      for (const char* route : {"deliveries", "proofs", "health"}) {
        out << "[routes." << route << "]\nurl = \"" << url << "\"\n";
      }
    }
    log_ = dir / "bridge.log";
    if (!child_.Spawn({WAYBILL_BRIDGE_PATH, "-c", config.string(), "--log-level", "warn"}, log_)) {
      Log("cannot start %s", WAYBILL_BRIDGE_PATH);
      return false;
    }
    api_port_ = WaitForNumberAfter(child_, log_, "waybill-bridge: API on port ", kStartTimeoutS);
    if (api_port_ <= 0) {
      Log("the bridge did not start within %d s:\n%s", kStartTimeoutS, Tail(log_).c_str());
      return false;
    }
    return true;
  }

  // The bridge's /metrics lines that name one of `prefixes` (for the diagnostics).
  std::string Metrics(const std::vector<std::string>& prefixes) const {
    httplib::Client client("127.0.0.1", api_port_);
    auto res = client.Get("/metrics");
    if (!res || res->status != 200) return "";
    std::istringstream in(res->body);
    std::string line, out;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      for (const std::string& p : prefixes) {
        if (line.rfind(p, 0) == 0) {
          out += "  " + line + "\n";
          break;
        }
      }
    }
    return out;
  }

  pid_t pid() const { return child_.pid(); }
  const fs::path& log() const { return log_; }
  void Stop() { child_.Stop(SIGTERM, 15'000); }

 private:
  ChildProcess child_;
  fs::path log_;
  int api_port_ = -1;
};

// ---- Node-RED ----

// Runs `argv` with its output in `log`, killed after `timeout_s`. Returns true on exit code 0.
bool RunBounded(const std::vector<std::string>& argv, const fs::path& log, int timeout_s) {
  ChildProcess child;
  if (!child.Spawn(argv, log)) return false;
  const auto deadline = SteadyClock::now() + std::chrono::seconds(timeout_s);
  while (SteadyClock::now() < deadline) {
    if (std::optional<int> status = child.Poll()) {
      return WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  Log("%s did not finish within %d s: killed", argv[1].c_str(), timeout_s);
  return false;
}

bool OnPath(const char* program) {
  return std::system(("command -v " + std::string(program) + " >/dev/null 2>&1").c_str()) == 0;
}

// The folder holding node_modules/node-red, installed if needed; nullopt with the reason logged.
std::optional<fs::path> InstallNodeRed(const fs::path& dir) {
  if (const char* env = std::getenv("WAYBILL_BENCH_NODE_RED"); env != nullptr && *env != '\0') {
    if (fs::exists(fs::path(env) / "node_modules/node-red/red.js")) return fs::path(env);
    Log("$WAYBILL_BENCH_NODE_RED=%s holds no node_modules/node-red/red.js", env);
    return std::nullopt;
  }
  if (!OnPath("node") || !OnPath("npm")) {
    if (geteuid() != 0) {
      Log("Node.js or npm is missing and this is not root: install the Debian packages nodejs "
          "and npm to measure the Node-RED baseline");
      return std::nullopt;
    }
    Log("Node.js or npm is missing: running apt-get install -y nodejs npm (log: %s)",
        (dir / "apt.log").c_str());
    if (!RunBounded(
            {"/usr/bin/apt-get", "install", "-y", "--no-install-recommends", "nodejs", "npm"},
            dir / "apt.log", kAptTimeoutS) ||
        !OnPath("node") || !OnPath("npm")) {
      Log("apt-get install nodejs npm failed:\n%s", Tail(dir / "apt.log").c_str());
      return std::nullopt;
    }
  }
  const fs::path prefix = dir / "node-red-install";
  fs::create_directories(prefix);
  Log("installing node-red@4 from npm into %s (not timed; log: %s)", prefix.c_str(),
      (dir / "npm.log").c_str());
  const auto start = SteadyClock::now();
  if (!RunBounded({"/usr/bin/env", "npm", "install", "--prefix", prefix.string(), "--no-audit",
                   "--no-fund", "--loglevel", "error", "node-red@4"},
                  dir / "npm.log", kNpmTimeoutS) ||
      !fs::exists(prefix / "node_modules/node-red/red.js")) {
    Log("npm install node-red@4 failed (no network?):\n%s", Tail(dir / "npm.log").c_str());
    return std::nullopt;
  }
  Log("installed node-red@4 in %.0f s", Seconds(SteadyClock::now() - start));
  return prefix;
}

// The function node's code: the device from the topic, the sequences from the user properties.
constexpr char kFunctionCode[] = R"js(const props = msg.userProperties || {};
const device = msg.topic.split("/")[1];
const first = Number(props.first_seq);
const count = Number(props.count);
const events = [];
for (let i = 0; i < count; i++) events.push({ device: device, seq: first + i });
const key = "nr-" + device + "-" + first + "-" + count;
msg.headers = { "Idempotency-Key": key, "Content-Type": "application/json", "Connection": "close" };
msg.payload = { route: "positions", batch: key, events: events };
return msg;)js";

json NodeRedFlow(int broker_port, int receiver_port) {
  return json::array({
      {{"id", "bench-tab"}, {"type", "tab"}, {"label", "waybill bench"}},
      {{"id", "bench-broker"},
       {"type", "mqtt-broker"},
       {"name", "mosquitto"},
       {"broker", "127.0.0.1"},
       {"port", std::to_string(broker_port)},
       {"clientid", "bench-node-red"},
       {"autoConnect", true},
       {"usetls", false},
       {"protocolVersion", "5"},
       {"keepalive", "60"},
       {"cleansession", true}},
      {{"id", "bench-in"},
       {"type", "mqtt in"},
       {"z", "bench-tab"},
       {"name", "fleet up"},
       {"topic", "fleet/+/up"},
       {"qos", "1"},
       {"datatype", "buffer"},
       {"broker", "bench-broker"},
       {"nl", false},
       {"rap", true},
       {"rh", 0},
       {"inputs", 0},
       {"wires", json::array({json::array({"bench-fn"})})}},
      {{"id", "bench-fn"},
       {"type", "function"},
       {"z", "bench-tab"},
       {"name", "to receiver body"},
       {"func", kFunctionCode},
       {"outputs", 1},
       {"wires", json::array({json::array({"bench-http"})})}},
      {{"id", "bench-http"},
       {"type", "http request"},
       {"z", "bench-tab"},
       {"name", "POST positions"},
       {"method", "POST"},
       {"ret", "txt"},
       {"paytoqs", "ignore"},
       {"url", "http://127.0.0.1:" + std::to_string(receiver_port) + kPath},
       {"persist", false},
       {"senderr", false},
       {"wires", json::array({json::array()})}},
  });
}

class NodeRed {
 public:
  bool Start(const fs::path& install, const fs::path& dir, int broker_port, int receiver_port) {
    const fs::path user_dir = dir / "node-red";
    fs::create_directories(user_dir);
    std::ofstream(user_dir / "flows.json") << NodeRedFlow(broker_port, receiver_port).dump(2);
    const int ui_port = waybill::testing::FreeLoopbackPort();
    std::ofstream(user_dir / "settings.js")
        << "module.exports = {\n"
        << "  uiHost: \"127.0.0.1\",\n"
        << "  uiPort: " << ui_port << ",\n"
        << "  httpAdminRoot: false,\n"
        << "  httpNodeRoot: false,\n"
        << "  flowFile: \"flows.json\",\n"
        << "  credentialSecret: false,\n"
        << "  telemetry: { enabled: false },\n"
        << "  diagnostics: { enabled: false },\n"
        << "  logging: { console: { level: \"warn\", metrics: false, audit: false } },\n"
        << "};\n";
    log_ = dir / "node-red.log";
    if (!child_.Spawn(
            {"/usr/bin/env", "node", (install / "node_modules/node-red/red.js").string(),
             "--settings", (user_dir / "settings.js").string(), "--userDir", user_dir.string()},
            log_)) {
      Log("cannot start node");
      return false;
    }
    return true;
  }

  bool running() { return child_.running() && !child_.Poll(); }
  pid_t pid() const { return child_.pid(); }
  const fs::path& log() const { return log_; }
  void Stop() { child_.Stop(SIGTERM, 10'000); }

 private:
  ChildProcess child_;
  fs::path log_;
};

// ---- Phases ----

// Publishes the probe (one batch of one fix from kProbeDevice) until the receiver has applied
// it: the subscriber is subscribed and the whole pipeline is up. Returns the events applied.
std::optional<uint64_t> Probe(Fleet& fleet, const Receiver& receiver) {
  auto probe = MakeMessage(-1, kProbeDevice, 1, 1, false);
  if (!probe) return std::nullopt;
  const auto deadline = SteadyClock::now() + std::chrono::seconds(kStartTimeoutS);
  while (SteadyClock::now() < deadline) {
    if (!fleet.Publish(*probe) || !fleet.Flush()) return std::nullopt;
    for (int i = 0; i < 10; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (std::optional<uint64_t> n = receiver.EventsApplied(); n && *n > 0) return *n;
    }
  }
  Log("the probe did not reach the receiver within %d s", kStartTimeoutS);
  return std::nullopt;
}

struct Drain {
  bool ok = false;
  double seconds = 0;
  uint64_t applied = 0;
};

// Waits until the receiver has applied `base + events` events: at most kApplyTimeoutS, and at
// most kStallTimeoutS without progress. `start` is when the first message was published.
Drain WaitApplied(const Receiver& receiver, uint64_t base, size_t events,
                  SteadyClock::time_point start, const char* who) {
  Drain d;
  const auto deadline = SteadyClock::now() + std::chrono::seconds(kApplyTimeoutS);
  auto last_progress = SteadyClock::now();
  auto last_report = SteadyClock::now();
  uint64_t last = 0;
  while (SteadyClock::now() < deadline) {
    const uint64_t applied = receiver.EventsApplied().value_or(last);
    const auto now = SteadyClock::now();
    d.applied = applied > base ? applied - base : 0;
    if (d.applied >= events) {
      d.seconds = Seconds(now - start);
      d.ok = true;
      return d;
    }
    if (applied != last) {
      last = applied;
      last_progress = now;
    } else if (now - last_progress > std::chrono::seconds(kStallTimeoutS)) {
      break;
    }
    if (now - last_report >= std::chrono::seconds(5)) {
      last_report = now;
      Log("%s: %.0f s: %llu of %zu events applied", who, Seconds(now - start),
          static_cast<unsigned long long>(d.applied), events);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Log("%s: only %llu of %zu events reached the receiver (no progress for %d s or %d s over)", who,
      static_cast<unsigned long long>(d.applied), events, kStallTimeoutS, kApplyTimeoutS);
  return d;
}

// Broker, receiver and ack watcher of one phase; the program under test comes on top.
struct Rig {
  fs::path dir;
  std::unique_ptr<waybill::testing::Mosquitto> broker;
  Receiver receiver;
  Fleet fleet;

  bool Start(const fs::path& phase_dir) {
    dir = phase_dir;
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir);
    waybill::testing::MosquittoOptions options;
    // Mosquitto queues at most 1,000 QoS 1 messages per subscriber by default and drops the rest
    // (a truck would send them again; the simulated fleet does not). A bridge's broker holds more.
    options.extra_config = "max_queued_messages " + std::to_string(kBrokerQueuedMessages) + "\n";
    broker = std::make_unique<waybill::testing::Mosquitto>(dir / "broker", options);
    std::string error;
    if (!broker->Start(&error)) {
      Log("cannot start Mosquitto: %s", error.c_str());
      return false;
    }
    return receiver.Start(dir);
  }
};

struct ThroughputResult {
  bool drained = false;  // every event reached the receiver: the rate is a figure
  bool ok = false;       // ...and none twice, and every one acknowledged
  double events_per_s = 0;
  size_t acked = 0;
};

// The bridge's throughput phase (see the file comment).
ThroughputResult BridgeThroughput(const fs::path& dir, const std::vector<Message>& backlog) {
  ThroughputResult r;
  const size_t events = EventsIn(backlog);
  Rig rig;
  if (!rig.Start(dir)) return r;
  BridgeProcess bridge;
  AckWatcher acks;
  if (!bridge.Start(dir, rig.broker->uri(), rig.receiver.port()) ||
      !acks.Start(rig.broker->uri()) || !rig.fleet.Connect(rig.broker->uri())) {
    return r;
  }
  auto base = Probe(rig.fleet, rig.receiver);
  if (!base) return r;
  Log(
      "throughput: %zu messages (%d devices x %d batches x %d fixes = %zu events, %zu bytes) "
      "over %d connections",
      backlog.size(), kDevices, kBacklogBatches, kBacklogBatchEvents, events,
      [&] {
        size_t n = 0;
        for (const Message& m : backlog) n += m.payload.size();
        return n;
      }(),
      kConnections);
  const double bridge_cpu0 = CpuSeconds(bridge.pid());
  const double receiver_cpu0 = CpuSeconds(rig.receiver.pid());
  const auto start = SteadyClock::now();
  for (const Message& m : backlog) {
    if (!rig.fleet.Publish(m)) return r;
  }
  if (!rig.fleet.Flush()) return r;
  const double publish_s = Seconds(SteadyClock::now() - start);
  const Drain d = WaitApplied(rig.receiver, *base, events, start, "throughput");
  const double bridge_cpu = CpuSeconds(bridge.pid()) - bridge_cpu0;
  const double receiver_cpu = CpuSeconds(rig.receiver.pid()) - receiver_cpu0;
  // Acks go out before the forwarder sends: they are all in by now, or lost.
  const auto ack_deadline = SteadyClock::now() + std::chrono::seconds(10);
  while (acks.acked_events() < events && SteadyClock::now() < ack_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.acked = acks.acked_events();
  const json stats = rig.receiver.Stats();
  Log("throughput: published (PUBACKs) in %.2f s; applied %llu events in %.2f s; %zu acks "
      "naming %zu events (%zu undecodable); CPU over the drain: bridge %.2f s, receiver %.2f s",
      publish_s, static_cast<unsigned long long>(d.applied), d.seconds, acks.acks(), r.acked,
      acks.decode_errors(), bridge_cpu, receiver_cpu);
  Log("throughput: receiver /_stats %s", stats.dump().c_str());
  Log("throughput: bridge /metrics:\n%s",
      bridge
          .Metrics({"waybill_bridge_messages_received_total", "waybill_bridge_events_",
                    "waybill_bridge_acks_sent_total", "waybill_bridge_forwarded_total",
                    "waybill_bridge_requests_total", "waybill_bridge_retries_total",
                    "waybill_bridge_rejected_total", "waybill_bridge_forward_latency_ms_sum",
                    "waybill_bridge_forward_latency_ms_count"})
          .c_str());
  bridge.Stop();
  rig.fleet.Disconnect();
  if (!d.ok) {
    Log("throughput: FAILED: events missing at the receiver (bridge log %s)", bridge.log().c_str());
    return r;
  }
  r.events_per_s = static_cast<double>(events) / d.seconds;
  r.drained = true;
  const uint64_t duplicates = stats.is_object() ? stats.value("event_duplicates", uint64_t{1}) : 1;
  if (duplicates != 0) {
    Log("throughput: FAILED: the receiver applied %llu events twice",
        static_cast<unsigned long long>(duplicates));
    return r;
  }
  if (r.acked != events) {
    Log("throughput: FAILED: %zu of %zu events acknowledged", r.acked, events);
    return r;
  }
  r.ok = true;
  return r;
}

struct LatencyResult {
  bool ok = false;
  double p50_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  double offered_events_per_s = 0;
};

// Nearest rank: the smallest value with at least a share `p` of the values at or below it.
double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return NAN;
  const double rank = std::ceil(p * static_cast<double>(sorted.size()));
  const size_t i = rank < 1 ? 0 : std::min(sorted.size(), static_cast<size_t>(rank)) - 1;
  return static_cast<double>(sorted[i]);
}

// The bridge's latency phase (see the file comment).
LatencyResult BridgeLatency(const fs::path& dir) {
  LatencyResult r;
  Rig rig;
  if (!rig.Start(dir)) return r;
  BridgeProcess bridge;
  if (!bridge.Start(dir, rig.broker->uri(), rig.receiver.port()) ||
      !rig.fleet.Connect(rig.broker->uri())) {
    return r;
  }
  auto base = Probe(rig.fleet, rig.receiver);
  if (!base) return r;
  const int messages = kDevices * kLatencySeconds;
  const size_t events = static_cast<size_t>(messages) * kLatencyBatchEvents;
  Log("latency: %d devices x 1 batch of %d fixes per second, spread evenly, for %d s (%d "
      "events/s offered)",
      kDevices, kLatencyBatchEvents, kLatencySeconds, kLatencyEventsPerS);
  // publish_ms[device][round]: when the batch of seqs round*5+1.. was published.
  std::vector<std::vector<int64_t>> publish_ms(kDevices, std::vector<int64_t>(kLatencySeconds));
  const double bridge_cpu0 = CpuSeconds(bridge.pid());
  const auto start = SteadyClock::now();
  const auto step = std::chrono::microseconds(1'000'000 / kDevices);
  int late = 0;
  for (int j = 0; j < messages; ++j) {
    const int device = j % kDevices;
    const int round = j / kDevices;
    const auto due = start + step * j;
    if (SteadyClock::now() > due + std::chrono::milliseconds(10)) ++late;
    std::this_thread::sleep_until(due);
    auto m = MakeMessage(device, DeviceId(device),
                         1 + static_cast<uint64_t>(round) * kLatencyBatchEvents,
                         kLatencyBatchEvents, false);
    if (!m) return r;
    publish_ms[device][round] = WallMs();
    if (!rig.fleet.Publish(*m)) return r;
  }
  if (!rig.fleet.Flush()) return r;
  const double publish_s = Seconds(SteadyClock::now() - start);
  r.offered_events_per_s = static_cast<double>(events) / publish_s;
  const Drain d = WaitApplied(rig.receiver, *base, events, start, "latency");
  const double bridge_cpu = CpuSeconds(bridge.pid()) - bridge_cpu0;
  Log("latency: published %zu events in %.2f s (%.0f events/s; %d messages more than 10 ms "
      "late); bridge CPU %.2f s",
      events, publish_s, r.offered_events_per_s, late, bridge_cpu);
  Log("latency: bridge /metrics (receipt to the backend's 2xx, the bridge's own view):\n%s",
      bridge.Metrics({"waybill_bridge_forward_latency_ms", "waybill_bridge_requests_total"})
          .c_str());
  bridge.Stop();
  rig.fleet.Disconnect();
  if (!d.ok) return r;
  const json applied = rig.receiver.Get(
      std::string("/_events?path=") + kPath + "&limit=" + std::to_string(events + 100), 60);
  if (!applied.is_array()) {
    Log("latency: GET /_events failed");
    return r;
  }
  std::vector<int64_t> latency_ms;
  latency_ms.reserve(events);
  size_t without_time = 0;
  for (const json& e : applied) {
    const std::string device = e.value("device", "");
    if (device == kProbeDevice) continue;
    if (!e.contains("received_ms")) {
      ++without_time;
      continue;
    }
    const int index = std::atoi(device.c_str() + 6) - 1;
    const uint64_t seq = e.value("seq", uint64_t{0});
    const int64_t round = static_cast<int64_t>((seq - 1) / kLatencyBatchEvents);
    if (index < 0 || index >= kDevices || round < 0 || round >= kLatencySeconds) continue;
    latency_ms.push_back(e["received_ms"].get<int64_t>() - publish_ms[index][round]);
  }
  if (without_time > 0) {
    Log("latency: the receiver's /_events gives no received_ms (%zu events): no figure",
        without_time);
    return r;
  }
  if (latency_ms.size() != events) {
    Log("latency: %zu events in /_events, expected %zu", latency_ms.size(), events);
    return r;
  }
  std::sort(latency_ms.begin(), latency_ms.end());
  r.p50_ms = Percentile(latency_ms, 0.50);
  r.p99_ms = Percentile(latency_ms, 0.99);
  r.max_ms = static_cast<double>(latency_ms.back());
  Log("latency: publish to applied at the receiver over %zu events: p50 %.0f ms, p90 %.0f ms, "
      "p99 %.0f ms, p99.9 %.0f ms, max %.0f ms",
      latency_ms.size(), r.p50_ms, Percentile(latency_ms, 0.90), r.p99_ms,
      Percentile(latency_ms, 0.999), r.max_ms);
  r.ok = true;
  return r;
}

// Node-RED fed the throughput phase's messages (see the file comment).
ThroughputResult NodeRedThroughput(const fs::path& dir, const std::vector<Message>& backlog) {
  ThroughputResult r;
  auto install = InstallNodeRed(dir.parent_path());
  if (!install) return r;
  const size_t events = EventsIn(backlog);
  Rig rig;
  if (!rig.Start(dir)) return r;
  NodeRed node_red;
  if (!node_red.Start(*install, dir, rig.broker->port(), rig.receiver.port()) ||
      !rig.fleet.Connect(rig.broker->uri())) {
    return r;
  }
  auto base = Probe(rig.fleet, rig.receiver);
  if (!base) {
    Log("node-red: not through the flow; its log:\n%s", Tail(node_red.log()).c_str());
    return r;
  }
  Log("node-red: the same %zu messages (%zu events)", backlog.size(), events);
  const double cpu0 = CpuSeconds(node_red.pid());
  const double receiver_cpu0 = CpuSeconds(rig.receiver.pid());
  const auto start = SteadyClock::now();
  for (const Message& m : backlog) {
    if (!rig.fleet.Publish(m)) return r;
  }
  if (!rig.fleet.Flush()) return r;
  const double publish_s = Seconds(SteadyClock::now() - start);
  const Drain d = WaitApplied(rig.receiver, *base, events, start, "node-red");
  const json stats = rig.receiver.Stats();
  Log("node-red: published (PUBACKs) in %.2f s; applied %llu events in %.2f s; CPU: node-red "
      "%.2f s, receiver %.2f s",
      publish_s, static_cast<unsigned long long>(d.applied), d.seconds,
      CpuSeconds(node_red.pid()) - cpu0, CpuSeconds(rig.receiver.pid()) - receiver_cpu0);
  Log("node-red: receiver /_stats %s", stats.dump().c_str());
  node_red.Stop();
  rig.fleet.Disconnect();
  if (!d.ok) {
    Log("node-red: FAILED: events missing at the receiver (it neither retries nor acks); log "
        "%s:\n%s",
        node_red.log().c_str(), Tail(node_red.log()).c_str());
    return r;
  }
  r.events_per_s = static_cast<double>(events) / d.seconds;
  r.drained = r.ok = true;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  bool run_node_red = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--no-node-red") {
      run_node_red = false;
    } else {
      std::fprintf(stderr,
                   "usage: bench_bridge [--no-node-red]\n"
                   "  $WAYBILL_BENCH_NODE_RED: a folder with node_modules/node-red (skips npm)\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  const char* env_dir = std::getenv("WAYBILL_BENCH_DIR");
  const fs::path dir =
      fs::path(env_dir != nullptr && *env_dir != '\0' ? env_dir : "/var/tmp/waybill-bench") /
      "bridge";
  fs::create_directories(dir);

  const std::vector<Message> backlog = MakeBacklog();
  if (backlog.empty()) return 1;
  int status = 0;

  const ThroughputResult bridge = BridgeThroughput(dir / "throughput", backlog);
  if (bridge.drained) {
    Figure("bridge.events_per_s", bridge.events_per_s, "events/s");
    Figure("bridge.acked_events", static_cast<double>(bridge.acked), "events");
  }
  if (!bridge.ok) status = 1;

  const LatencyResult latency = BridgeLatency(dir / "latency");
  if (latency.ok) {
    Figure("bridge.forward_p99_ms", latency.p99_ms, "ms");
  } else {
    status = 1;
  }

  ThroughputResult node_red;
  if (run_node_red) node_red = NodeRedThroughput(dir / "node-red", backlog);
  if (node_red.ok) {
    Figure("bridge.nodered_events_per_s", node_red.events_per_s, "events/s");
  } else {
    Log("no Node-RED baseline%s: its figures are nan and the benchmark fails",
        run_node_red ? "" : " (--no-node-red)");
    Figure("bridge.nodered_events_per_s", NAN, "events/s");
    status = 1;
  }
  Figure("bridge.ratio_vs_nodered",
         bridge.drained && node_red.ok ? bridge.events_per_s / node_red.events_per_s : NAN, "x");
  return status;
}
