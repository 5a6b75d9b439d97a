// waybill_chaos: the whole system as host processes, driven through random faults, then checked.
//
// The run starts Mosquitto, waybill-receiver (the backend), waybill-bridge and K waybilld
// devices on the host-sim board replaying the Munich drive, each device behind its own TCP proxy
// (support/tcp_proxy.h) to the broker. For --seconds it records deliveries and proofs through
// every device's local API, as the in-cab app would, and keeps each event whose answer was 201
// ("stored"). Meanwhile a seeded scheduler injects one fault at a time, each for a few seconds:
//
//   broker_restart          SIGKILL Mosquitto, start it again on the same port
//   bridge_kill             SIGKILL waybill-bridge, start it again on the same inbox
//   backend_500             the receiver answers 500 to half the requests, nothing applied
//   backend_500_after_apply the receiver applies, then answers 500 (a lost answer)
//   backend_hang            the receiver holds requests past the bridge's timeout
//   link_blackhole          a device's link stops carrying bytes, connections stay open
//   link_reset              a device's connections are reset, new ones refused
//   device_kill             SIGKILL a waybilld, start it again on the same data directory
//   disk_full               a ballast file fills the file system of one device's data
//                           directory (a loop-mounted ext4: needs root; else skipped, said so)
//
// Then everything heals, the devices' outboxes drain (bounded), and the checker compares:
//
//   - what must arrive: every event whose API call answered 201, and every sequence each device
//     process's outbox handed out (from the sequence it opened at, in its log, up to the highest
//     next_seq its /v1/status showed; polled every 500 ms and just before each SIGKILL). Fixes
//     and health events are accounted this way: a process's outbox hands out sequences without
//     gaps, except fixes and health events it evicted by policy and sequences burned by
//     transactions that failed, both of which it reports (outbox.evicted, outbox.burned). Gaps up
//     to those numbers are "policy gaps", not losses; on a device whose storage never ran short
//     both are 0 and every gap is a loss.
//   - lost: must-arrive events that the backend never applied;
//   - duplicates_applied: applications beyond the first of a (device, seq), over all routes (the
//     receiver's "duplicate" flags are among them);
//   - order_violations: per device and route, the backend's application order against the
//     order in which the bridge's inbox stored the events (events table, rowid order), which is
//     what docs/BRIDGE.md promises: each time an applied event was stored before the event the
//     backend applied just before it, one violation.
//
// It prints `figure chaos.NAME VALUE UNIT` lines and exits 0 only when nothing was lost, nothing
// applied twice, no order broken and the drain finished in time; otherwise it says what is
// missing (device, seq) in words. The work directory is kept when the run fails (or --keep).
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/bridge_processes.h"
#include "support/mosquitto.h"
#include "support/receiver_process.h"
#include "support/tcp_proxy.h"
#include "support/waybilld_process.h"
#include "waybill/sync/outbox_reader.h"

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_interrupted{false};

__attribute__((format(printf, 1, 2))) void Say(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::fprintf(stderr, "chaos: ");
  std::vfprintf(stderr, fmt, args);
  std::fprintf(stderr, "\n");
  va_end(args);
}

const char* const kRoutes[] = {"positions", "deliveries", "proofs", "health"};

enum class Fault {
  kBrokerRestart,
  kBridgeKill,
  kBackend500,
  kBackend500AfterApply,
  kBackendHang,
  kLinkBlackhole,
  kLinkReset,
  kDeviceKill,
  kDiskFull,
};
constexpr int kFaultKinds = 9;
const char* Name(Fault f) {
  static const char* const names[] = {
      "broker_restart", "bridge_kill",    "backend_500", "backend_500_after_apply",
      "backend_hang",   "link_blackhole", "link_reset",  "device_kill",
      "disk_full"};
  return names[static_cast<int>(f)];
}

struct Options {
  int seconds = 75;
  int devices = 3;
  uint64_t seed = 0;
  double speed = 0;  // 0: chosen so that the drive lasts the run
  int drain_timeout_s = 180;
  std::string dir;
  bool keep = false;
  bool require_every_fault = false;
  bool sabotage = false;
};

// One waybilld process's life: its outbox opened at `start_seq`; /v1/status showed sequences up
// to `hi_seq` handed out, `evicted` of them thinned by policy and `burned` by failed transactions.
struct Lifetime {
  uint64_t start_seq = 0;
  uint64_t hi_seq = 0;  // start_seq - 1 until a status answer
  uint64_t evicted = 0;
  uint64_t burned = 0;
};

struct StoredEvent {
  uint64_t seq;
  const char* kind;  // "delivery" or "proof"
};

struct Device {
  std::string id;
  std::unique_ptr<WaybilldProcess> process;
  std::unique_ptr<TcpProxy> proxy;
  bool on_loop_fs = false;
  bool had_disk_fault = false;

  std::mutex mu;  // guards what follows
  int port = -1;
  bool up = false;
  std::vector<Lifetime> lifetimes;
  std::vector<StoredEvent> stored;
  std::map<int, long> refusals;  // HTTP status (0: no answer) -> count
};

// The small ext4 file system under one device's data directory, for the disk_full fault.
class LoopFs {
 public:
  // Mounts a fresh `size_mb` ext4 image at `mount_point`; false with the reason when not root or
  // when mkfs/mount fail (the fault is then skipped).
  bool Mount(const fs::path& image, const fs::path& mount_point, int size_mb, std::string* why) {
    if (geteuid() != 0) {
      *why = "not running as root (a loop mount needs it)";
      return false;
    }
    fs::create_directories(mount_point);
    std::string cmd = "truncate -s " + std::to_string(size_mb) + "M " + image.string() +
                      " && mkfs.ext4 -q -F -m 0 " + image.string() +
                      " >/dev/null 2>&1 && mount -o loop " + image.string() + " " +
                      mount_point.string() + " 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      *why = "cannot create or loop-mount an ext4 image (" + cmd + " failed)";
      return false;
    }
    image_ = image;
    mount_point_ = mount_point;
    return true;
  }
  ~LoopFs() {
    if (mount_point_.empty()) return;
    std::string cmd =
        "umount " + mount_point_.string() + " 2>/dev/null || umount -l " + mount_point_.string();
    if (std::system(cmd.c_str()) != 0) {
      Say("could not unmount %s", mount_point_.c_str());
    }
    std::error_code ec;
    fs::remove(image_, ec);
  }
  bool mounted() const { return !mount_point_.empty(); }
  // Fills the file system but for about `leave_bytes`; Clear() takes the ballast away again.
  // Written until ENOSPC rather than fallocated: fallocate of all the free space fails for lack
  // of room for its own extent tree. A reserve file of `leave_bytes`, removed at the end, keeps
  // the sliver free.
  bool Fill(uint64_t leave_bytes, std::string* why) {
    const fs::path reserve = mount_point_ / "reserve";
    if (leave_bytes > 0 && !WriteUntilFull(reserve, leave_bytes)) {
      *why = "cannot write " + reserve.string();
      return false;
    }
    bool ok = WriteUntilFull(ballast(), UINT64_MAX);
    std::error_code ec;
    fs::remove(reserve, ec);
    if (!ok) *why = "cannot write " + ballast().string();
    return ok;
  }
  void Clear() {
    std::error_code ec;
    fs::remove(ballast(), ec);
  }

 private:
  fs::path ballast() const { return mount_point_ / "ballast"; }
  // Appends zeros to `path` until `max_bytes` or the file system is full (1 MiB, then 4 KiB
  // writes); fsyncs. False only on an error other than ENOSPC.
  static bool WriteUntilFull(const fs::path& path, uint64_t max_bytes) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    static const std::vector<char> zeros(1 << 20, 0);
    uint64_t written = 0;
    bool ok = true;
    for (size_t chunk : {size_t{1} << 20, size_t{4096}}) {
      while (written < max_bytes) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, max_bytes - written));
        ssize_t w = write(fd, zeros.data(), n);
        if (w > 0) {
          written += static_cast<uint64_t>(w);
          continue;
        }
        if (w < 0 && errno != ENOSPC) ok = false;
        break;
      }
    }
    if (fsync(fd) != 0 && errno != ENOSPC) ok = false;
    close(fd);
    return ok;
  }
  fs::path image_;
  fs::path mount_point_;
};

class Chaos {
 public:
  explicit Chaos(Options o) : o_(std::move(o)), rng_(o_.seed) {}

  int Run();

 private:
  bool Setup();
  bool StartDevice(Device& d);
  void PollStatus(Device& d);
  void RecordLoop(Device& d, uint64_t seed);
  void PollLoop();
  void Inject(Fault f, int hold_ms);
  bool HealAll();
  // The checker's own test: loses one stored delivery on purpose (see --sabotage).
  bool Sabotage();
  // Events that must arrive but have not: per device, the missing seqs; `policy_gaps` gets the
  // gaps explained by the devices' own reports.
  struct Check {
    std::map<std::string, std::vector<uint64_t>> missing;
    long policy_gaps = 0;
    long duplicates = 0;
    long order_violations = 0;
    long must_arrive = 0;
    long events_stored_api = 0;
    long applied = 0;
    std::vector<std::string> order_details;
    std::vector<std::string> duplicate_details;
    std::vector<std::string> notes;
  };
  // How many events with a sequence up to the last one that must arrive are still in the
  // device's outbox (read-only, beside the running writer); -1 if it cannot be read.
  long StillOnTheTruck(Device& d);
  Check Compare(bool with_order);
  void SleepMs(int ms) {
    for (int slept = 0; slept < ms && !g_interrupted.load(); slept += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50, ms - slept)));
    }
  }
  double Elapsed() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }

  Options o_;
  std::mt19937_64 rng_;
  fs::path dir_;
  Clock::time_point t0_;
  std::unique_ptr<Mosquitto> broker_;
  std::unique_ptr<ReceiverProcess> receiver_;
  std::unique_ptr<BridgeProcess> bridge_;
  std::vector<std::unique_ptr<Device>> devices_;
  std::unique_ptr<LoopFs> loop_;
  Device* disk_device_ = nullptr;
  std::string disk_skip_reason_;
  std::map<std::string, long> faults_;
  std::atomic<bool> recording_{false};
  std::atomic<bool> polling_{false};
  int unclean_exits_ = 0;
};

bool Chaos::Setup() {
  std::string error;
  broker_ = std::make_unique<Mosquitto>(dir_ / "broker", MosquittoOptions{});
  if (!broker_->Start(&error)) {
    Say("the broker did not start: %s", error.c_str());
    return false;
  }
  receiver_ = std::make_unique<ReceiverProcess>(WAYBILL_RECEIVER_PATH, dir_ / "receiver");
  if (receiver_->Start({"--seed", std::to_string(o_.seed)}, &error) < 0) {
    Say("the receiver did not start: %s", error.c_str());
    return false;
  }
  BridgeOptions bo;
  bo.broker_uri = broker_->uri();
  bo.receiver_url = "http://127.0.0.1:" + std::to_string(receiver_->port());
  bo.client_id = "chaos-bridge";
  // The replayed drive was recorded in 2009: its GNSS times are real but old.
  bo.extra_bridge = "min_event_time_ms = 1000000000000\n";
  bridge_ = std::make_unique<BridgeProcess>(dir_ / "bridge", bo);
  if (!bridge_->Start(&error)) {
    Say("the bridge did not start: %s", error.c_str());
    return false;
  }
  for (int i = 1; i <= o_.devices; ++i) {
    auto d = std::make_unique<Device>();
    d->id = "chaos-truck-" + std::to_string(i);
    d->process = std::make_unique<WaybilldProcess>(dir_ / d->id);
    d->process->set_device_id(d->id);
    d->proxy = std::make_unique<TcpProxy>(broker_->port());
    if (!d->proxy->Start(&error)) {
      Say("%s", error.c_str());
      return false;
    }
    d->process->set_extra_config(
        "[uplink]\nbroker = \"tcp://127.0.0.1:" + std::to_string(d->proxy->port()) +
        "\"\nbatch_wait_ms = 500\nack_timeout_ms = 3000\n");
    devices_.push_back(std::move(d));
  }
  // The last device keeps its data on a small file system of its own, for disk_full.
  disk_device_ = devices_.back().get();
  loop_ = std::make_unique<LoopFs>();
  if (loop_->Mount(dir_ / "disk.img", disk_device_->process->data_dir(), 64, &disk_skip_reason_)) {
    disk_device_->on_loop_fs = true;
  } else {
    Say("disk_full will be skipped: %s", disk_skip_reason_.c_str());
    disk_device_ = nullptr;
  }
  for (auto& d : devices_) {
    if (!StartDevice(*d)) return false;
  }
  return true;
}

bool Chaos::StartDevice(Device& d) {
  std::string error;
  int port = d.process->Start(o_.speed, &error);
  if (port < 0) {
    Say("%s did not start: %s", d.id.c_str(), error.c_str());
    return false;
  }
  // The outbox logs the sequence it opened at before the API listens.
  std::smatch m;
  std::string log = d.process->log();
  static const std::regex kOpen(R"(open: [^,\n]*, \d+ events, next sequence (\d+))");
  if (!std::regex_search(log, m, kOpen)) {
    Say("%s: no 'next sequence' in its log:\n%s", d.id.c_str(), log.c_str());
    return false;
  }
  std::lock_guard lock(d.mu);
  Lifetime life;
  life.start_seq = std::stoull(m[1]);
  life.hi_seq = life.start_seq - 1;
  d.lifetimes.push_back(life);
  d.port = port;
  d.up = true;
  return true;
}

void Chaos::PollStatus(Device& d) {
  int port;
  size_t life;
  {
    std::lock_guard lock(d.mu);
    if (!d.up) return;
    port = d.port;
    life = d.lifetimes.size();
  }
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2);
  c.set_read_timeout(5);
  auto res = c.Get("/v1/status");
  if (!res || res->status != 200) return;
  json st = json::parse(res->body, nullptr, false);
  if (!st.is_object() || !st.contains("outbox")) return;
  std::lock_guard lock(d.mu);
  if (life != d.lifetimes.size()) return;  // the answer came from a process since killed
  Lifetime& l = d.lifetimes.back();
  uint64_t next = st["outbox"].value("next_seq", uint64_t{0});
  if (next > 0) l.hi_seq = std::max(l.hi_seq, next - 1);
  l.evicted = std::max(l.evicted, st["outbox"].value("evicted", uint64_t{0}));
  l.burned = std::max(l.burned, st["outbox"].value("burned", uint64_t{0}));
}

void Chaos::PollLoop() {
  while (polling_.load()) {
    for (auto& d : devices_) PollStatus(*d);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

// The in-cab app: a delivery or a proof every 250 to 750 ms, each kept only if answered 201.
void Chaos::RecordLoop(Device& d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  long n = 0;
  while (recording_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250 + rng() % 500));
    int port;
    {
      std::lock_guard lock(d.mu);
      if (!d.up) continue;
      port = d.port;
    }
    ++n;
    std::string order = "ORD-" + d.id + "-" + std::to_string(n);
    bool proof = rng() % 3 == 0;
    json body;
    if (proof) {
      body = {{"stop_id", "stop-" + std::to_string(n)},
              {"order_id", order},
              {"recipient_name", "R. Chaos"},
              {"signature",
               {{"width", 300}, {"height", 100}, {"strokes", {{{10, 20}, {40, 60}, {90, 30}}}}}}};
    } else {
      body = {{"stop_id", "stop-" + std::to_string(n)},
              {"order_id", order},
              {"kind", "delivered"},
              {"items", static_cast<int>(n % 7)}};
    }
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(2);
    c.set_read_timeout(10);
    auto res = c.Post(proof ? "/v1/proofs" : "/v1/deliveries", body.dump(), "application/json");
    std::lock_guard lock(d.mu);
    if (res && res->status == 201) {
      json answer = json::parse(res->body, nullptr, false);
      if (answer.is_object() && answer.value("stored", false) && answer.contains("seq")) {
        d.stored.push_back({answer["seq"].get<uint64_t>(), proof ? "proof" : "delivery"});
        continue;
      }
      Say("%s answered 201 without a seq: %s", d.id.c_str(), res->body.c_str());
    }
    int status = res ? res->status : 0;
    ++d.refusals[status];
  }
}

void Chaos::Inject(Fault f, int hold_ms) {
  ++faults_[Name(f)];
  std::string error;
  Device* target = nullptr;
  if (f == Fault::kLinkBlackhole || f == Fault::kLinkReset || f == Fault::kDeviceKill) {
    target = devices_[rng_() % devices_.size()].get();
  } else if (f == Fault::kDiskFull) {
    target = disk_device_;
  }
  Say("t=%5.1fs fault %s%s%s for %.1f s", Elapsed(), Name(f), target ? " on " : "",
      target ? target->id.c_str() : "", hold_ms / 1000.0);
  switch (f) {
    case Fault::kBrokerRestart:
      broker_->Kill();
      SleepMs(hold_ms);
      if (!broker_->Start(&error)) Say("broker restart failed: %s", error.c_str());
      break;
    case Fault::kBridgeKill:
      bridge_->Stop(SIGKILL);
      SleepMs(hold_ms);
      if (!bridge_->Start(&error)) Say("bridge restart failed: %s", error.c_str());
      break;
    case Fault::kBackend500:
    case Fault::kBackend500AfterApply:
    case Fault::kBackendHang: {
      json patch = f == Fault::kBackend500 ? json{{"fail_rate", 0.5}}
                   : f == Fault::kBackend500AfterApply
                       ? json{{"fail_after_apply_rate", 0.5}}
                       : json{{"hang_rate", 0.4}, {"hang_ms", 3000}};
      if (receiver_->SetFaults(patch).is_null())
        Say("the receiver refused %s", patch.dump().c_str());
      SleepMs(hold_ms);
      receiver_->SetFaults(
          {{"fail_rate", 0}, {"fail_after_apply_rate", 0}, {"hang_rate", 0}, {"throttle_rate", 0}});
      break;
    }
    case Fault::kLinkBlackhole:
    case Fault::kLinkReset:
      target->proxy->SetMode(f == Fault::kLinkBlackhole ? TcpProxy::Mode::kBlackhole
                                                        : TcpProxy::Mode::kRefuse);
      SleepMs(hold_ms);
      target->proxy->SetMode(TcpProxy::Mode::kForward);
      break;
    case Fault::kDeviceKill: {
      PollStatus(*target);  // the last committed sequence this process showed
      {
        std::lock_guard lock(target->mu);
        target->up = false;
      }
      target->process->Stop(SIGKILL);
      SleepMs(hold_ms);
      StartDevice(*target);
      break;
    }
    case Fault::kDiskFull:
      target->had_disk_fault = true;
      {
        // Either nothing left at all, or a sliver: SQLite fails differently on each.
        const uint64_t leave_bytes = rng_() % 2 == 0 ? 0 : 64 * 1024;
        Say("disk_full: %s leaves %" PRIu64 " bytes free", target->id.c_str(), leave_bytes);
        if (!loop_->Fill(leave_bytes, &error)) Say("disk_full: %s", error.c_str());
        SleepMs(hold_ms);
        loop_->Clear();
        break;
      }
  }
}

bool Chaos::HealAll() {
  std::string error;
  bool ok = true;
  receiver_->SetFaults(
      {{"fail_rate", 0}, {"fail_after_apply_rate", 0}, {"hang_rate", 0}, {"throttle_rate", 0}});
  if (loop_) loop_->Clear();
  if (!broker_->running() && !broker_->Start(&error)) {
    Say("heal: the broker does not start: %s", error.c_str());
    ok = false;
  }
  if (!bridge_->running() && !bridge_->Start(&error)) {
    Say("heal: the bridge does not start: %s", error.c_str());
    ok = false;
  }
  for (auto& d : devices_) {
    d->proxy->SetMode(TcpProxy::Mode::kForward);
    bool up;
    {
      std::lock_guard lock(d->mu);
      up = d->up;
    }
    if (!up && !StartDevice(*d)) ok = false;
  }
  return ok;
}

// Seqs as "12, 15-19, 40" in words, at most `max` ranges.
std::string Ranges(const std::vector<uint64_t>& seqs, size_t max = 20) {
  std::string out;
  size_t ranges = 0;
  for (size_t i = 0; i < seqs.size();) {
    size_t j = i;
    while (j + 1 < seqs.size() && seqs[j + 1] == seqs[j] + 1) ++j;
    if (ranges++ == max) {
      out += ", ...";
      break;
    }
    if (!out.empty()) out += ", ";
    out += std::to_string(seqs[i]);
    if (j > i) out += "-" + std::to_string(seqs[j]);
    i = j + 1;
  }
  return out;
}

Chaos::Check Chaos::Compare(bool with_order) {
  Check c;
  // The inbox's storing order, per device and route; its dead events (refused by the bridge or
  // the backend) are reported as missing with their reason further down.
  std::map<std::pair<std::string, int>, std::vector<uint64_t>> inbox_order;
  std::map<std::string, std::set<uint64_t>> dead;
  if (with_order) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(bridge_->inbox_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
        SQLITE_OK) {
      sqlite3_busy_timeout(db, 2000);
      sqlite3_stmt* s = nullptr;
      sqlite3_prepare_v2(db, "SELECT device, route, seq, state FROM events ORDER BY id", -1, &s,
                         nullptr);
      while (s != nullptr && sqlite3_step(s) == SQLITE_ROW) {
        std::string device = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        if (sqlite3_column_int(s, 3) == 2) dead[device].insert(sqlite3_column_int64(s, 2));
        inbox_order[{device, sqlite3_column_int(s, 1)}].push_back(sqlite3_column_int64(s, 2));
      }
      sqlite3_finalize(s);
      sqlite3_prepare_v2(db, "SELECT device, seq FROM dead_letters WHERE seq IS NOT NULL", -1, &s,
                         nullptr);
      while (s != nullptr && sqlite3_step(s) == SQLITE_ROW) {
        dead[reinterpret_cast<const char*>(sqlite3_column_text(s, 0))].insert(
            sqlite3_column_int64(s, 1));
      }
      sqlite3_finalize(s);
    }
    sqlite3_close(db);
  }
  for (auto& d : devices_) {
    std::map<uint64_t, int> times_applied;
    for (int route = 0; route < 4; ++route) {
      json events = receiver_->GetJson(std::string("/_events?path=/v1/") + kRoutes[route] +
                                       "&device=" + d->id + "&limit=100000000");
      std::vector<uint64_t> applied_order;
      if (events.is_array()) {
        for (const json& e : events) {
          uint64_t seq = e["seq"].get<uint64_t>();
          if (++times_applied[seq] == 1) applied_order.push_back(seq);
        }
      }
      if (!with_order) continue;
      std::map<uint64_t, size_t> position;
      const auto& order = inbox_order[{d->id, route}];
      for (size_t i = 0; i < order.size(); ++i) position.emplace(order[i], i);
      std::optional<size_t> last;
      uint64_t last_seq = 0;
      for (uint64_t seq : applied_order) {
        auto at = position.find(seq);
        if (at == position.end()) {
          ++c.order_violations;
          c.order_details.push_back(d->id + " " + kRoutes[route] + ": seq " + std::to_string(seq) +
                                    " applied but not in the bridge's inbox");
          continue;
        }
        if (last && at->second < *last) {
          ++c.order_violations;
          c.order_details.push_back(d->id + " " + kRoutes[route] + ": seq " + std::to_string(seq) +
                                    " applied after seq " + std::to_string(last_seq) +
                                    " though the inbox stored it first");
        }
        last = at->second;
        last_seq = seq;
      }
    }
    for (auto [seq, n] : times_applied) {
      c.applied += 1;
      if (n > 1) {
        c.duplicates += n - 1;
        c.duplicate_details.push_back(d->id + " seq " + std::to_string(seq) + " applied " +
                                      std::to_string(n) + " times");
      }
    }
    std::lock_guard lock(d->mu);
    std::set<uint64_t> api;
    for (const StoredEvent& e : d->stored) api.insert(e.seq);
    c.events_stored_api += static_cast<long>(api.size());
    std::vector<uint64_t>& missing = c.missing[d->id];
    std::set<uint64_t> must;
    for (uint64_t seq : api) {
      must.insert(seq);
      if (!times_applied.count(seq)) missing.push_back(seq);
    }
    // Fixes and health: the sequences each process committed.
    for (const Lifetime& l : d->lifetimes) {
      std::vector<uint64_t> gaps;
      for (uint64_t seq = l.start_seq; seq <= l.hi_seq; ++seq) {
        if (!must.insert(seq).second) continue;
        if (!times_applied.count(seq)) gaps.push_back(seq);
      }
      // The outbox reports its only two kinds of gap: fixes and health events evicted by its
      // storage policy, and sequences burned by transactions that failed (a full disk). They
      // explain as many gaps; on a device whose storage never ran short both are 0.
      const uint64_t allowance = l.evicted + l.burned;
      const uint64_t explained = std::min<uint64_t>(allowance, gaps.size());
      c.policy_gaps += static_cast<long>(explained);
      if (explained < gaps.size()) {
        missing.insert(missing.end(), gaps.begin(), gaps.end());
        c.notes.push_back(d->id + ": " + std::to_string(gaps.size()) +
                          " sequences of one process not at the backend, but the device reported "
                          "only " +
                          std::to_string(l.evicted) + " evicted and " + std::to_string(l.burned) +
                          " burned");
      } else if (!gaps.empty()) {
        c.notes.push_back(d->id + ": " + std::to_string(gaps.size()) +
                          " sequences not at the backend, within what the device reported (" +
                          std::to_string(l.evicted) + " evicted by policy, " +
                          std::to_string(l.burned) + " burned by failed appends): seqs " +
                          Ranges(gaps));
      }
    }
    c.must_arrive += static_cast<long>(must.size());
    std::sort(missing.begin(), missing.end());
    missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
    if (!dead[d->id].empty()) {
      std::vector<uint64_t> dl(dead[d->id].begin(), dead[d->id].end());
      c.notes.push_back(d->id + ": the bridge holds dead letters for seqs " + Ranges(dl));
    }
  }
  return c;
}

// With the first device's link refusing every connection (nothing can leave it), records one
// delivery, SIGKILLs the device, deletes that delivery from its outbox with SQLite, and starts
// the device again: a stored event is gone, and the checker must say so.
bool Chaos::Sabotage() {
  Device& d = *devices_.front();
  d.proxy->SetMode(TcpProxy::Mode::kRefuse);
  SleepMs(500);
  httplib::Client c("127.0.0.1", d.port);
  auto res = c.Post("/v1/deliveries", R"({"order_id":"ORD-SABOTAGE","kind":"delivered"})",
                    "application/json");
  if (!res || res->status != 201) {
    Say("sabotage: the delivery was not stored");
    return false;
  }
  uint64_t seq = json::parse(res->body)["seq"].get<uint64_t>();
  {
    std::lock_guard lock(d.mu);
    d.stored.push_back({seq, "delivery"});
    d.up = false;
  }
  d.process->Stop(SIGKILL);
  sqlite3* db = nullptr;
  std::string sql = "DELETE FROM events WHERE seq = " + std::to_string(seq);
  bool deleted = sqlite3_open((d.process->data_dir() / "outbox.db").c_str(), &db) == SQLITE_OK &&
                 sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK &&
                 sqlite3_changes(db) == 1;
  sqlite3_close(db);
  Say("sabotage: delivery seq %" PRIu64 " of %s stored, then %s its outbox", seq, d.id.c_str(),
      deleted ? "deleted from" : "NOT deleted from");
  d.proxy->SetMode(TcpProxy::Mode::kForward);
  return deleted && StartDevice(d);
}

long Chaos::StillOnTheTruck(Device& d) {
  uint64_t last = 0;
  {
    std::lock_guard lock(d.mu);
    for (const Lifetime& l : d.lifetimes) last = std::max(last, l.hi_seq);
  }
  auto reader = sync::OutboxReader::Open((d.process->data_dir() / "outbox.db").string());
  if (!reader.ok()) return -1;
  long n = 0;
  Status s = (*reader)->ForEach(std::nullopt, 0, [&](const sync::StoredEvent& e) {
    if (e.seq > last) return false;
    ++n;
    return true;
  });
  return s.ok() ? n : -1;
}

int Chaos::Run() {
  if (o_.seed == 0) o_.seed = std::random_device{}() | 1;
  rng_.seed(o_.seed);
  if (o_.speed <= 0) o_.speed = std::clamp(1800.0 / std::max(o_.seconds, 1), 1.0, 10.0);
  if (o_.dir.empty()) {
    std::string tmpl = "/var/tmp/waybill-chaos.XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      Say("cannot create a work directory under /var/tmp");
      return 2;
    }
    dir_ = tmpl;
  } else {
    dir_ = o_.dir;
    fs::create_directories(dir_);
  }
  // Mosquitto, once it drops to its own user, saves its database below it.
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  Say("seed %" PRIu64 " (repeat the fault schedule with --seed %" PRIu64
      "), %d devices, %d s, "
      "replay speed %.1f, work directory %s",
      o_.seed, o_.seed, o_.devices, o_.seconds, o_.speed, dir_.c_str());
  std::printf("chaos: seed %" PRIu64 "\n", o_.seed);
  std::fflush(stdout);  // before any fork: a child must not inherit unwritten output
  t0_ = Clock::now();
  if (!Setup()) {
    Say("setup failed; everything is in %s", dir_.c_str());
    return 2;
  }
  // Let every device connect before the first fault.
  WaitFor(
      [&] {
        for (auto& d : devices_) {
          json st = d->process->Status();
          if (st.is_null() || !st["uplink"].value("connected", false)) return false;
        }
        return true;
      },
      15'000);
  if (o_.sabotage && !Sabotage()) return 2;

  polling_ = true;
  recording_ = true;
  std::thread poller([&] { PollLoop(); });
  std::vector<std::thread> recorders;
  for (size_t i = 0; i < devices_.size(); ++i) {
    recorders.emplace_back([this, i] { RecordLoop(*devices_[i], o_.seed + 1000 + i); });
  }

  // The schedule: every kind once, in a seeded order, then kinds at random; one fault at a time,
  // a calm of 1 to 3 s between.
  std::vector<Fault> first;
  for (int k = 0; k < kFaultKinds; ++k) {
    if (static_cast<Fault>(k) == Fault::kDiskFull && disk_device_ == nullptr) continue;
    first.push_back(static_cast<Fault>(k));
  }
  std::shuffle(first.begin(), first.end(), rng_);
  const auto deadline = t0_ + std::chrono::seconds(o_.seconds);
  size_t next = 0;
  while (Clock::now() < deadline && !g_interrupted.load()) {
    SleepMs(1000 + static_cast<int>(rng_() % 2000));
    if (Clock::now() >= deadline) break;
    Fault f = next < first.size() ? first[next++] : first[rng_() % first.size()];
    int hold_ms = 1500 + static_cast<int>(rng_() % 3500);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    Inject(f, std::max<int>(500, std::min<int>(hold_ms, static_cast<int>(left.count()))));
  }
  recording_ = false;
  for (auto& t : recorders) t.join();
  Say("t=%5.1fs faults over; healing", Elapsed());
  bool healed = HealAll();
  // Freeze what must arrive: one more status of each device.
  for (auto& d : devices_) PollStatus(*d);
  polling_ = false;
  poller.join();

  // The drain: until nothing that must arrive is missing, bounded.
  Say("t=%5.1fs waiting (at most %d s) for every stored event to reach the backend", Elapsed(),
      o_.drain_timeout_s);
  auto drain_deadline = Clock::now() + std::chrono::seconds(o_.drain_timeout_s);
  auto drain_done = [&] {
    Check c = Compare(false);
    for (auto& [id, missing] : c.missing) {
      if (!missing.empty()) return false;
    }
    // A policy gap is final only once nothing it could be is still on its way.
    for (auto& d : devices_) {
      if (d->had_disk_fault && StillOnTheTruck(*d) != 0) return false;
    }
    return true;
  };
  bool drained = false;
  while (!g_interrupted.load() && !(drained = drain_done()) && Clock::now() < drain_deadline) {
    SleepMs(1000);
  }
  // Stop the devices, then let the bridge forward what they sent last, so that the inbox and the
  // backend are compared at rest.
  for (auto& d : devices_) {
    {
      std::lock_guard lock(d->mu);
      d->up = false;
    }
    // A clean stop is part of the check: under the sanitizers a report makes the exit non-zero.
    std::optional<int> status = d->process->Stop(SIGTERM);
    if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      Say("%s did not exit cleanly on SIGTERM (wait status %d); its log: %s", d->id.c_str(),
          status.value_or(-1), d->process->log_path().c_str());
      unclean_exits_++;
    }
  }
  WaitFor(
      [&] {
        double pending = 0;
        for (const char* r : kRoutes) {
          double p =
              bridge_->Metric(std::string("waybill_bridge_inbox_pending{route=\"") + r + "\"}");
          if (p < 0) return false;
          pending += p;
        }
        return pending == 0;
      },
      30'000);
  Say("t=%5.1fs %s; checking", Elapsed(), drained ? "drained" : "NOT drained in time");
  Check c = Compare(true);
  json stats = receiver_->Stats();

  long lost = 0;
  for (auto& [id, missing] : c.missing) lost += static_cast<long>(missing.size());
  long total_faults = 0;
  for (auto& [k, n] : faults_) total_faults += n;
  long api_refused = 0;
  for (auto& d : devices_) {
    std::lock_guard lock(d->mu);
    for (auto& [status, n] : d->refusals) api_refused += n;
  }
  std::printf("figure chaos.devices %d devices\n", o_.devices);
  std::printf("figure chaos.seconds %d s\n", o_.seconds);
  std::printf("figure chaos.events_stored %ld events\n", c.events_stored_api);
  std::printf("figure chaos.events_must_arrive %ld events\n", c.must_arrive);
  std::printf("figure chaos.events_applied %ld events\n", c.applied);
  std::printf("figure chaos.api_not_stored %ld requests\n", api_refused);
  std::printf("figure chaos.policy_gaps %ld events\n", c.policy_gaps);
  std::printf("figure chaos.lost %ld events\n", lost);
  std::printf("figure chaos.duplicates_applied %ld events\n", c.duplicates);
  std::printf("figure chaos.order_violations %ld events\n", c.order_violations);
  std::printf("figure chaos.faults %ld faults\n", total_faults);
  for (int k = 0; k < kFaultKinds; ++k) {
    const char* name = Name(static_cast<Fault>(k));
    std::printf("figure chaos.faults.%s %ld faults\n", name,
                faults_.count(name) ? faults_[name] : 0);
  }
  if (stats.is_object()) {
    std::printf("figure chaos.backend_event_duplicates %lld events\n",
                static_cast<long long>(stats.value("event_duplicates", -1)));
    std::printf("figure chaos.backend_key_conflicts %lld requests\n",
                static_cast<long long>(stats.value("key_conflicts", -1)));
  }
  std::fflush(stdout);

  bool ok = healed && drained && lost == 0 && c.duplicates == 0 && c.order_violations == 0 &&
            unclean_exits_ == 0;
  if (stats.is_object() && stats.value("event_duplicates", 0) != 0) ok = false;
  if (!disk_skip_reason_.empty()) Say("disk_full was skipped: %s", disk_skip_reason_.c_str());
  if (o_.require_every_fault) {
    for (int k = 0; k < kFaultKinds; ++k) {
      Fault f = static_cast<Fault>(k);
      if (f == Fault::kDiskFull && disk_device_ == nullptr) continue;
      if (!faults_.count(Name(f))) {
        Say("fault %s was never injected (the run is too short for every kind)", Name(f));
        ok = false;
      }
    }
  }
  for (auto& [id, missing] : c.missing) {
    if (!missing.empty()) {
      Say("LOST: %s: %zu events stored on the device never reached the backend: seqs %s",
          id.c_str(), missing.size(), Ranges(missing).c_str());
    }
  }
  for (size_t i = 0; i < c.duplicate_details.size() && i < 20; ++i) {
    Say("DUPLICATE: %s", c.duplicate_details[i].c_str());
  }
  for (size_t i = 0; i < c.order_details.size() && i < 20; ++i) {
    Say("ORDER: %s", c.order_details[i].c_str());
  }
  for (const std::string& note : c.notes) Say("%s", note.c_str());
  for (auto& d : devices_) {
    std::lock_guard lock(d->mu);
    for (auto& [status, n] : d->refusals) {
      Say("%s: %ld API requests answered %s (not stored, not counted)", d->id.c_str(), n,
          status == 0 ? "nothing (the device was down)" : std::to_string(status).c_str());
    }
  }
  if (!healed) Say("the system did not come back after the faults");
  if (!drained) Say("the drain did not finish within %d s", o_.drain_timeout_s);

  // Every process down before the loop file system goes.
  devices_.clear();
  std::optional<int> bridge_status = bridge_->Stop(SIGTERM);
  if (!bridge_status || !WIFEXITED(*bridge_status) || WEXITSTATUS(*bridge_status) != 0) {
    Say("waybill-bridge did not exit cleanly on SIGTERM (wait status %d)",
        bridge_status.value_or(-1));
    ok = false;
  }
  bridge_.reset();
  receiver_.reset();
  broker_.reset();
  loop_.reset();
  // A sabotaged run is expected to fail: its directory holds nothing new.
  if ((ok || o_.sabotage) && !o_.keep) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    Say("passed");
  } else {
    Say("%s; everything is in %s", ok ? "passed" : "FAILED", dir_.c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace waybill::testing

int main(int argc, char** argv) {
  waybill::testing::Options o;
  CLI::App app{
      "waybill_chaos: the whole system through random faults, then a loss/duplicate/"
      "order check (docs/SOAK.md)"};
  app.add_option("--seconds", o.seconds, "length of the fault phase")->check(CLI::Range(5, 86400));
  app.add_option("--devices", o.devices, "simulated trucks (waybilld processes)")
      ->check(CLI::Range(1, 32));
  app.add_option("--seed", o.seed, "seed of the fault schedule (default: random, printed)");
  app.add_option("--speed", o.speed, "GNSS replay speed (default: the drive lasts the run)");
  app.add_option("--drain-timeout", o.drain_timeout_s, "seconds to wait for the drain")
      ->check(CLI::Range(1, 3600));
  app.add_option("--dir", o.dir, "work directory (default: a new one under /var/tmp)");
  app.add_flag("--keep", o.keep, "keep the work directory after a passing run");
  app.add_flag("--sabotage", o.sabotage,
               "lose one stored delivery on purpose (the checker must report it)");
  app.add_flag("--require-every-fault", o.require_every_fault,
               "fail unless every fault kind was injected at least once");
  CLI11_PARSE(app, argc, argv);
  struct sigaction sa {};
  sa.sa_handler = [](int) { waybill::testing::g_interrupted = true; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return waybill::testing::Chaos(o).Run();
}
