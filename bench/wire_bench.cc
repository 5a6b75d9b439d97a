// What a breadcrumb costs on the cellular link: Waybill's Batch against Teltonika Codec 8
// Extended and against plain JSON, on real drives, every fix kept (sampling off, the worst case
// for bytes: the sampler only ever removes fixes).
//
//   bench_wire                      the drives in tests/data/nmea/drives
//   bench_wire --nmea F [--nmea G]  these recordings
//
// Bytes are counted as they leave the device: for Waybill and JSON the whole MQTT 5 PUBLISH at
// QoS 1 on fleet/<16-character device id>/up (fixed header, remaining length, topic, packet id,
// properties length, payload); for Codec 8E the whole TCP payload of its AVL packet (it does not
// use MQTT). TCP/IP and TLS overheads are the same for all three and left out.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "codec8e.h"
#include "waybill/hal/nmea.h"
#include "waybill/sync/events.h"
#include "waybill/sync/wire.h"

namespace {

using SteadyClock = std::chrono::steady_clock;
using waybill::sync::StoredEvent;

constexpr char kDeviceId[] = "wb-7f3a9c01d2e4b";  // 16 characters, like a provisioned id
constexpr size_t kBatchSizes[] = {1, 10, 60};

struct Drive {
  std::string name;
  std::vector<StoredEvent> events;
  std::vector<waybill::bench::AvlRecord> records;
};

size_t VarintBytes(size_t v) { return v < 128 ? 1 : 1 + VarintBytes(v >> 7); }

// MQTT 5 PUBLISH, QoS 1, no properties.
size_t MqttPublishBytes(size_t topic_bytes, size_t payload_bytes) {
  size_t remaining = 2 + topic_bytes + 2 + 1 + payload_bytes;
  return 1 + VarintBytes(remaining) + remaining;
}

Drive LoadDrive(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  waybill::hal::NmeaOptions options;
  options.log_rejections = false;
  options.skip_comment_lines = true;
  options.min_plausible_utc_ms = 946684800000;  // 2000-01-01: the drives are from 2009 and 2010
  options.source = path.filename().string();
  waybill::hal::NmeaParser parser(options);
  parser.Feed(text.str());
  parser.Flush();
  Drive drive;
  drive.name = path.stem().string();
  for (char& c : drive.name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  int64_t ts_ms = 0;
  uint64_t seq = 1000;
  for (const waybill::hal::GnssFix& fix : parser.TakeFixes()) {
    ts_ms = fix.utc_ms ? *fix.utc_ms : ts_ms + 1000;
    StoredEvent e;
    e.seq = seq++;
    e.cls = waybill::sync::EventClass::kFix;
    e.ts_ms = ts_ms;
    e.ts_src = waybill::hal::TimeSource::kGnss;
    e.body = waybill::sync::EncodeFix(fix);
    drive.events.push_back(std::move(e));
    drive.records.push_back({ts_ms, fix});
  }
  return drive;
}

// One JSON object per fix, as the bridge would hand it to the backend.
nlohmann::json FixJson(const StoredEvent& e) {
  waybill::hal::GnssFix fix = waybill::sync::DecodeFix(e.body).value();
  nlohmann::json j = {{"device_id", kDeviceId}, {"seq", e.seq},         {"ts_ms", e.ts_ms},
                      {"ts_src", "gnss"},       {"lat_e7", fix.lat_e7}, {"lon_e7", fix.lon_e7}};
  if (fix.alt_cm) j["alt_cm"] = *fix.alt_cm;
  if (fix.speed_cmps) j["speed_cmps"] = *fix.speed_cmps;
  if (fix.course_cdeg) j["course_cdeg"] = *fix.course_cdeg;
  if (fix.hdop_c) j["hdop_c"] = *fix.hdop_c;
  if (fix.sats) j["sats"] = *fix.sats;
  j["mode"] = static_cast<int>(fix.mode);
  if (fix.quality != 0) j["quality"] = fix.quality;
  return j;
}

struct Bytes {
  size_t waybill = 0, codec8e = 0, json = 0, fixes = 0;
};

Bytes Measure(const Drive& drive, size_t batch) {
  const size_t topic = waybill::sync::TopicUp(kDeviceId).size();
  Bytes b;
  for (size_t i = 0; i < drive.events.size(); i += batch) {
    const size_t n = std::min(batch, drive.events.size() - i);
    std::span<const StoredEvent> events(drive.events.data() + i, n);
    auto payload = waybill::sync::EncodeBatch(kDeviceId, false, events);
    if (!payload.ok()) {
      std::fprintf(stderr, "wire bench: %s\n", payload.status().ToString().c_str());
      std::exit(1);
    }
    b.waybill += MqttPublishBytes(topic, payload->size());
    b.codec8e += waybill::bench::EncodeCodec8e({drive.records.data() + i, n}).size();
    nlohmann::json array = nlohmann::json::array();
    for (const StoredEvent& e : events) array.push_back(FixJson(e));
    b.json += MqttPublishBytes(topic, array.dump().size());
    b.fixes += n;
  }
  return b;
}

// Encodes (or decodes) all drives in batches of 60 for about `seconds`; fixes per second.
template <typename Pass>
double Rate(const std::vector<Drive>& drives, double seconds, Pass pass) {
  size_t fixes = 0;
  const auto start = SteadyClock::now();
  double elapsed = 0;
  for (int round = 0; round < 100000 && elapsed < seconds; ++round) {
    for (const Drive& d : drives) fixes += pass(d);
    elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
  }
  return fixes / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("WAYBILL_SOURCE_DIR");
  const std::string root = env != nullptr ? env : WAYBILL_SOURCE_DIR;
  std::vector<std::filesystem::path> paths;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--nmea" && i + 1 < argc) {
      paths.emplace_back(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_wire [--nmea FILE]...\n");
      return 2;
    }
  }
  if (paths.empty()) {
    for (const auto& e : std::filesystem::directory_iterator(root + "/tests/data/nmea/drives")) {
      std::string name = e.path().filename().string();
      if (e.is_regular_file() && (name.ends_with(".nmea") || name.ends_with(".txt"))) {
        paths.push_back(e.path());
      }
    }
    std::sort(paths.begin(), paths.end());
  }
  std::vector<Drive> drives;
  for (const auto& p : paths) {
    Drive d = LoadDrive(p);
    if (d.events.empty()) {
      std::fprintf(stderr, "wire bench: no fixes in %s\n", p.c_str());
      return 1;
    }
    std::fprintf(stderr, "wire bench: %s: %zu fixes\n", p.c_str(), d.events.size());
    drives.push_back(std::move(d));
  }

  Bytes all;
  for (const Drive& d : drives) {
    for (size_t batch : kBatchSizes) {
      Bytes b = Measure(d, batch);
      const double per_fix = static_cast<double>(b.waybill) / b.fixes;
      std::printf("figure wire.%s.bytes_per_fix.b%zu %.2f bytes\n", d.name.c_str(), batch, per_fix);
      std::printf("figure wire.%s.ratio_vs_codec8e.b%zu %.2f x\n", d.name.c_str(), batch,
                  static_cast<double>(b.codec8e) / b.waybill);
      std::printf("figure wire.%s.ratio_vs_json.b%zu %.2f x\n", d.name.c_str(), batch,
                  static_cast<double>(b.json) / b.waybill);
      std::fprintf(stderr,
                   "wire bench: %s batch %zu: waybill %.2f, codec8e %.2f, json %.2f B/fix\n",
                   d.name.c_str(), batch, per_fix, static_cast<double>(b.codec8e) / b.fixes,
                   static_cast<double>(b.json) / b.fixes);
      if (batch == 60) {
        all.waybill += b.waybill;
        all.codec8e += b.codec8e;
        all.json += b.json;
        all.fixes += b.fixes;
      }
    }
  }
  std::printf("figure wire.bytes_per_fix %.2f bytes\n",
              static_cast<double>(all.waybill) / all.fixes);
  std::printf("figure wire.ratio_vs_codec8e %.2f x\n",
              static_cast<double>(all.codec8e) / all.waybill);
  std::printf("figure wire.ratio_vs_json %.2f x\n", static_cast<double>(all.json) / all.waybill);

  // Speed, batches of 60 as the uplink sends them.
  std::vector<std::vector<std::string>> payloads(drives.size());
  for (size_t d = 0; d < drives.size(); ++d) {
    for (size_t i = 0; i < drives[d].events.size(); i += 60) {
      size_t n = std::min<size_t>(60, drives[d].events.size() - i);
      payloads[d].push_back(
          waybill::sync::EncodeBatch(kDeviceId, false, {drives[d].events.data() + i, n}).value());
    }
  }
  const double encode = Rate(drives, 1.0, [](const Drive& d) {
    size_t n = 0;
    for (size_t i = 0; i < d.events.size(); i += 60) {
      size_t k = std::min<size_t>(60, d.events.size() - i);
      n += waybill::sync::EncodeBatch(kDeviceId, false, {d.events.data() + i, k}).ok() ? k : 0;
    }
    return n;
  });
  size_t which = 0;
  const double decode = Rate(drives, 1.0, [&](const Drive&) {
    size_t n = 0;
    for (const std::string& p : payloads[which]) {
      auto batch = waybill::sync::DecodeBatch(p);
      n += batch.ok() ? batch->events.size() : 0;
    }
    which = (which + 1) % drives.size();
    return n;
  });
  std::printf("figure wire.encode_fixes_per_s %.0f fixes/s\n", encode);
  std::printf("figure wire.decode_fixes_per_s %.0f fixes/s\n", decode);
  return 0;
}
