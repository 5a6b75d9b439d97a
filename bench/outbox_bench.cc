// Outbox benchmark: how many events per second become durable, how long one durable append
// takes, how many breadcrumbs fit in 128 MiB, what zeroing deleted rows (secure_delete) costs the
// drain of acked fixes, and what sealing personal data (data_key.h) costs a proof. Every rate is
// compared with the raw fsync rate of the same disk measured in the same run, so the ratios mean
// something on a busy machine.
//
// Data directory: $WAYBILL_BENCH_DIR (a real disk, not tmpfs), else a fresh folder in /var/tmp.
// Prints `figure NAME VALUE UNIT` on stdout, diagnostics on stderr.
#include <fcntl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "waybill/sync/data_key.h"
#include "waybill/sync/events.h"
#include "waybill/sync/outbox.h"

namespace {

using Clock = std::chrono::steady_clock;
using waybill::sync::EventClass;
using waybill::sync::NewEvent;
using waybill::sync::Outbox;
using waybill::sync::OutboxOptions;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

void Figure(const char* name, double value, const char* unit) {
  std::printf("figure %s %.6g %s\n", name, value, unit);
  std::fflush(stdout);
}

// The body waybilld stores for a breadcrumb (sync::EncodeFix), for a truck moving through a
// city: every field a receiver reports is set, so the body is as large as real ones (~25 bytes).
std::string FixBody(uint32_t i) {
  waybill::hal::GnssFix fix;
  fix.lat_e7 = 481366123 + static_cast<int32_t>(i % 100000) * 13;
  fix.lon_e7 = 115754980 + static_cast<int32_t>(i % 100000) * 17;
  fix.alt_cm = 52000 + static_cast<int32_t>(i % 300);
  fix.speed_cmps = 800 + i % 1500;
  fix.course_cdeg = static_cast<uint16_t>((i * 37) % 36000);
  fix.hdop_c = static_cast<uint16_t>(80 + i % 40);
  fix.sats = static_cast<uint8_t>(7 + i % 6);
  fix.mode = waybill::hal::FixMode::k3D;
  fix.quality = 1;
  return waybill::sync::EncodeFix(fix);
}

NewEvent Fix(uint32_t i) {
  NewEvent e;
  e.cls = EventClass::kFix;
  e.ts_ms = 1'714'564'800'000 + static_cast<int64_t>(i) * 1000;
  e.ts_src = waybill::hal::TimeSource::kGnss;
  e.body = FixBody(i);
  return e;
}

// A proof of delivery as the kiosk records it: a name and a signature of 4 strokes of 80 points
// (about 1.3 KB encoded).
std::string ProofBody(uint32_t i) {
  waybill::sync::ProofOfDelivery p;
  p.stop_id = "stop-" + std::to_string(i);
  p.order_id = "ORD-" + std::to_string(100000 + i);
  p.recipient_name = "Recipient " + std::to_string(i);
  p.signature_width = 760;
  p.signature_height = 300;
  for (int s = 0; s < 4; ++s) {
    waybill::sync::SignatureStroke stroke;
    for (int k = 0; k < 80; ++k) {
      stroke.push_back(
          {static_cast<int32_t>(40 + 8 * k), static_cast<int32_t>(150 + (k * 37 + s * 11) % 120)});
    }
    p.signature.push_back(std::move(stroke));
  }
  auto body = waybill::sync::EncodeProof(p);
  if (!body.ok()) {
    std::fprintf(stderr, "outbox bench: %s\n", body.status().ToString().c_str());
    std::exit(1);
  }
  return *body;
}

std::unique_ptr<Outbox> OpenFresh(const std::string& dir, const std::string& name,
                                  int group_commit_max_events = 1024, bool secure_delete = true,
                                  std::shared_ptr<const waybill::sync::DataKey> key = nullptr) {
  OutboxOptions o;
  o.secure_delete = secure_delete;
  o.data_key = std::move(key);
  o.path = dir + "/" + name;
  o.quota_bytes = 4ull << 30;  // measure appends, not eviction
  o.min_free_bytes = 0;
  o.group_commit_max_events = group_commit_max_events;
  for (const char* suffix : {"", "-wal", "-shm", ".seq", ".lock"}) {
    std::filesystem::remove(o.path + suffix);
  }
  auto r = Outbox::Open(o);
  if (!r.ok()) {
    std::fprintf(stderr, "outbox bench: %s\n", r.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(r).value();
}

// Raw baseline: overwrite one 4 KiB block and fdatasync it, for about `secs` or `max_ops`
// operations. Returns the latency of each operation in microseconds.
std::vector<double> RawFsyncs(const std::string& dir, double secs, uint64_t max_ops) {
  std::string path = dir + "/fsync.bin";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror("outbox bench: open fsync.bin");
    std::exit(1);
  }
  char block[4096];
  std::memset(block, 'x', sizeof(block));
  // Allocate the block first so the loop measures a plain data sync, as a recycled WAL does.
  if (::pwrite(fd, block, sizeof(block), 0) != static_cast<ssize_t>(sizeof(block)) ||
      ::fsync(fd) != 0) {
    std::perror("outbox bench: prepare fsync.bin");
    std::exit(1);
  }
  std::vector<double> us;
  auto end = Clock::now() + std::chrono::duration<double>(secs);
  for (uint64_t n = 0; n < max_ops && Clock::now() < end; ++n) {
    block[0] = static_cast<char>(n);
    auto t0 = Clock::now();
    if (::pwrite(fd, block, sizeof(block), 0) != static_cast<ssize_t>(sizeof(block)) ||
        ::fdatasync(fd) != 0) {
      std::perror("outbox bench: fdatasync");
      std::exit(1);
    }
    us.push_back(Seconds(Clock::now() - t0) * 1e6);
  }
  ::close(fd);
  std::filesystem::remove(path);
  return us;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double Sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

}  // namespace

int main() {
  // stdout carries the results; the outbox's own log goes to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("outbox"));
  std::string dir;
  if (const char* env = std::getenv("WAYBILL_BENCH_DIR"); env != nullptr && *env != '\0') {
    dir = env;
    std::filesystem::create_directories(dir);
  } else {
    char tmpl[] = "/var/tmp/waybill-bench.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      std::perror("outbox bench: mkdtemp");
      return 1;
    }
    dir = tmpl;
  }
  std::fprintf(stderr, "outbox bench: data in %s\n", dir.c_str());

  const std::vector<double> baseline = RawFsyncs(dir, 2.0, 10'000'000);
  const double fsync_per_s = static_cast<double>(baseline.size()) / (Sum(baseline) / 1e6);
  std::fprintf(stderr,
               "outbox bench: raw 4 KiB write + fdatasync: %zu in 2 s, p50 %.0f us, "
               "p99 %.0f us\n",
               baseline.size(), Percentile(baseline, 0.5), Percentile(baseline, 0.99));
  Figure("outbox.fsync_per_s", fsync_per_s, "1/s");

  // Group commit: 64 threads, each appending one durable event at a time.
  {
    auto box = OpenFresh(dir, "group.db");
    constexpr int kThreads = 64;
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> appended{0}, failed{0};
    waybill::sync::OutboxStats before = box->Stats();
    std::vector<std::thread> threads;
    auto start = Clock::now();
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (uint32_t i = 0; !stop && i < 10'000'000; ++i) {
          if (box->Append(Fix(static_cast<uint32_t>(t) * 1'000'000 + i)).ok()) {
            ++appended;
          } else {
            ++failed;
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::seconds(3));
    stop = true;
    for (auto& th : threads) th.join();
    double elapsed = Seconds(Clock::now() - start);
    waybill::sync::OutboxStats after = box->Stats();
    double rate = static_cast<double>(appended) / elapsed;
    double commits = static_cast<double>(after.commits - before.commits);
    std::fprintf(stderr,
                 "outbox bench: %d threads, %llu durable appends (%llu failed) in %.2f s, "
                 "%.0f commits\n",
                 kThreads, static_cast<unsigned long long>(appended.load()),
                 static_cast<unsigned long long>(failed.load()), elapsed, commits);
    Figure("outbox.durable_events_per_s", rate, "1/s");
    Figure("outbox.events_per_fsync", commits > 0 ? static_cast<double>(appended) / commits : 0,
           "events");
    Figure("outbox.durable_ratio_vs_fsync", rate / fsync_per_s, "x");
  }

  // Latency: one thread, one durable append at a time.
  {
    auto box = OpenFresh(dir, "latency.db");
    // Warm up into the steady state of a running device: the WAL has grown to its working size
    // once, been checkpointed, and is now rewritten in place (a growing file makes each
    // fdatasync also commit the file size, which happens only in the first minutes after boot).
    for (uint32_t i = 0; i < 1500; ++i) (void)box->Append(Fix(i));
    constexpr int kAppends = 500;
    std::vector<double> us;
    us.reserve(kAppends);
    for (uint32_t i = 0; i < kAppends; ++i) {
      auto t0 = Clock::now();
      auto r = box->Append(Fix(i));
      us.push_back(Seconds(Clock::now() - t0) * 1e6);
      if (!r.ok()) {
        std::fprintf(stderr, "outbox bench: %s\n", r.status().ToString().c_str());
        return 1;
      }
    }
    // The disk's own tail, measured right after under the same load: a single bare fdatasync
    // here has a p99 of several times its mean, so the tail of an append is compared with the
    // tail of one fsync.
    std::vector<double> raw = RawFsyncs(dir, 10.0, kAppends);
    double p99 = Percentile(us, 0.99);
    double raw_p99 = Percentile(raw, 0.99);
    double raw_mean = Sum(raw) / static_cast<double>(raw.size());
    std::fprintf(stderr,
                 "outbox bench: single durable append p50 %.0f us, p99 %.0f us, max %.0f us; "
                 "bare fdatasync p50 %.0f us, p99 %.0f us, mean %.0f us\n",
                 Percentile(us, 0.5), p99, Percentile(us, 1.0), Percentile(raw, 0.5), raw_p99,
                 raw_mean);
    Figure("outbox.append_p99_us", p99, "us");
    Figure("outbox.fsync_p99_us", raw_p99, "us");
    Figure("outbox.append_p99_in_fsyncs", p99 / raw_p99, "fsyncs");
    Figure("outbox.append_p99_in_mean_fsyncs", p99 / raw_mean, "fsyncs");
  }

  // Density: live bytes of 200k fixes, extrapolated to 128 MiB (filling 128 MiB takes minutes on
  // a slow disk and gives the same answer: rows are appended in key order and pack pages full).
  {
    auto box = OpenFresh(dir, "density.db");
    uint64_t base = box->Stats().bytes;
    constexpr uint32_t kFixes = 200'000;
    for (uint32_t i = 0; i < kFixes; ++i) {
      box->AppendAsync(Fix(i), [](waybill::Result<uint64_t> r) {
        if (!r.ok()) {
          std::fprintf(stderr, "outbox bench: %s\n", r.status().ToString().c_str());
          std::exit(1);
        }
      });
    }
    (void)box->Flush();
    uint64_t bytes = box->Stats().bytes - base;
    double per_fix = static_cast<double>(bytes) / kFixes;
    std::fprintf(stderr,
                 "outbox bench: %u fixes with %zu-byte bodies take %llu live bytes (%.1f B each); "
                 "extrapolated to 128 MiB\n",
                 kFixes, FixBody(kFixes / 2).size(), static_cast<unsigned long long>(bytes),
                 per_fix);
    Figure("outbox.fixes_per_128MiB", static_cast<double>(128ull << 20) / per_fix, "fixes");
  }

  // secure_delete on the fix path: the uplink's drain of a backlog, claim 60 and ack 60 (one
  // commit, one fsync per ack), with deleted rows zeroed (ON, what waybilld runs) and not (OFF).
  // Appending does not delete, so its cost shows only here and in eviction. The two runs
  // alternate, three rounds each, and the best of each counts (the disk is shared).
  {
    constexpr uint32_t kBacklog = 30'000;
    constexpr size_t kBatch = 60;
    auto drain_rate = [&](bool secure_delete) {
      auto box = OpenFresh(dir, "drain.db", 1024, secure_delete);
      for (uint32_t i = 0; i < kBacklog; ++i) {
        box->AppendAsync(Fix(i), [](waybill::Result<uint64_t>) {});
      }
      (void)box->Flush();
      auto t0 = Clock::now();
      uint64_t acked = 0;
      for (int round = 0; round < 100'000; ++round) {
        auto batch = box->Claim(kBatch, false);
        if (!batch.ok() || batch->empty()) break;
        std::vector<uint64_t> seqs;
        for (const auto& e : *batch) seqs.push_back(e.seq);
        if (!box->Ack(seqs).ok()) {
          std::fprintf(stderr, "outbox bench: ack failed\n");
          std::exit(1);
        }
        acked += seqs.size();
      }
      return static_cast<double>(acked) / Seconds(Clock::now() - t0);
    };
    double on = 0, off = 0;
    for (int round = 0; round < 3; ++round) {
      off = std::max(off, drain_rate(false));
      on = std::max(on, drain_rate(true));
    }
    std::fprintf(stderr,
                 "outbox bench: drain of %u fixes in acks of %zu: %.0f/s with secure_delete=ON, "
                 "%.0f/s with OFF\n",
                 kBacklog, kBatch, on, off);
    Figure("outbox.drain_acked_per_s_secure_delete", on, "1/s");
    Figure("outbox.drain_acked_per_s_no_secure_delete", off, "1/s");
    Figure("outbox.secure_delete_drain_ratio", on / off, "x");
  }

  // Sealing: AES-256-GCM of a proof's body, and what it adds to a durable append of a proof.
  {
    auto key = waybill::sync::DataKey::FromBytes(std::string(waybill::sync::kDataKeyBytes, 'k'));
    if (!key.ok()) return 1;
    std::shared_ptr<const waybill::sync::DataKey> data_key(std::move(key).value());
    const std::string proof = ProofBody(7);
    constexpr int kSeals = 20'000;
    auto t0 = Clock::now();
    size_t sink = 0;
    for (int i = 0; i < kSeals; ++i) {
      auto sealed = data_key->Seal(proof, "waybill outbox:pod");
      sink += sealed.ok() ? sealed->size() : 0;
    }
    double seal_per_s = kSeals / Seconds(Clock::now() - t0);
    std::fprintf(stderr, "outbox bench: %d seals of a %zu-byte proof body (%zu bytes out)\n",
                 kSeals, proof.size(), sink);
    Figure("outbox.seal_per_s", seal_per_s, "1/s");
    Figure("outbox.seal_us", 1e6 / seal_per_s, "us");

    // What the kiosk waits for: one proof appended durably, with and without sealing. The two
    // alternate append by append on two outboxes of the same disk, so both see the same load.
    auto sealed_box = OpenFresh(dir, "proofs-sealed.db", 1024, true, data_key);
    auto plain_box = OpenFresh(dir, "proofs-plain.db", 1024, true, nullptr);
    std::vector<double> sealed_us, plain_us;
    for (uint32_t i = 0; i < 300; ++i) {
      NewEvent e;
      e.cls = EventClass::kProofOfDelivery;
      e.ts_ms = 1'714'564'800'000;
      e.ts_src = waybill::hal::TimeSource::kGnss;
      e.body = ProofBody(i);
      for (int which = 0; which < 2; ++which) {
        bool seal = (i + which) % 2 == 0;
        auto begin = Clock::now();
        auto r = (seal ? sealed_box : plain_box)->Append(e);
        (seal ? sealed_us : plain_us).push_back(Seconds(Clock::now() - begin) * 1e6);
        if (!r.ok()) {
          std::fprintf(stderr, "outbox bench: %s\n", r.status().ToString().c_str());
          return 1;
        }
      }
    }
    double sealed_p50 = Percentile(sealed_us, 0.5), plain_p50 = Percentile(plain_us, 0.5);
    std::fprintf(stderr,
                 "outbox bench: one durable proof: p50 %.0f us sealed, %.0f us plain; p99 %.0f us "
                 "sealed, %.0f us plain\n",
                 sealed_p50, plain_p50, Percentile(sealed_us, 0.99), Percentile(plain_us, 0.99));
    Figure("outbox.proof_append_p50_us_sealed", sealed_p50, "us");
    Figure("outbox.proof_append_sealed_ratio", sealed_p50 / plain_p50, "x");
  }
  return 0;
}
