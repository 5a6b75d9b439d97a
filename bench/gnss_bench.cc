// How fast the NMEA parser turns real receiver output into fixes, against the cheapest possible
// pass over the same bytes (memchr for line ends) measured in the same run, so that the ratio
// means something on a busy machine.
//
// Input: every recording in tests/data/nmea (gpsd logs and the two drives), each parsed by a
// fresh parser as a whole, repeatedly for about 2 s. A receiver at 115200 baud delivers about
// 0.0115 MB/s, so the figure says how much CPU headroom the parser leaves on the truck.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "waybill/hal/nmea.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> LoadRecordings(const std::string& root) {
  std::vector<std::string> files;
  for (const char* sub : {"gpsd", "drives"}) {
    for (const auto& e : std::filesystem::directory_iterator(root + "/tests/data/nmea/" + sub)) {
      std::string name = e.path().filename().string();
      bool recording = name.ends_with(".log") || name.ends_with(".nmea") || name.ends_with(".txt");
      if (!e.is_regular_file() || !recording) continue;
      std::ifstream in(e.path(), std::ios::binary);
      std::ostringstream s;
      s << in.rdbuf();
      files.push_back(s.str());
    }
  }
  return files;
}

// Runs `pass` over all files until `seconds` have passed; returns MB/s (1e6 bytes).
template <typename Pass>
double Measure(const std::vector<std::string>& files, double seconds, Pass pass) {
  size_t bytes = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  for (int round = 0; round < 1'000'000 && elapsed < seconds; ++round) {
    for (const std::string& f : files) {
      pass(f);
      bytes += f.size();
    }
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return bytes / elapsed / 1e6;
}

}  // namespace

int main() {
  const char* env = std::getenv("WAYBILL_SOURCE_DIR");
  const std::string root = env != nullptr ? env : WAYBILL_SOURCE_DIR;
  const std::vector<std::string> files = LoadRecordings(root);
  size_t total = 0;
  for (const std::string& f : files) total += f.size();
  if (files.empty()) {
    std::fprintf(stderr, "gnss bench: no recordings under %s/tests/data/nmea\n", root.c_str());
    return 1;
  }

  uint64_t fixes = 0, lines = 0;
  waybill::hal::NmeaOptions options;
  options.log_rejections = false;
  options.min_plausible_utc_ms = 0;
  options.skip_comment_lines = true;
  auto parse = [&](const std::string& f) {
    waybill::hal::NmeaParser parser(options);
    parser.Feed(f);
    parser.Flush();
    fixes += parser.TakeFixes().size();
  };
  auto scan = [&](const std::string& f) {
    const char* p = f.data();
    const char* end = p + f.size();
    while (const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p))) {
      ++lines;
      p = static_cast<const char*>(nl) + 1;
    }
  };
  // Warm caches and page in the files once before measuring.
  for (const std::string& f : files) {
    parse(f);
    scan(f);
  }
  const double scan_mbps = Measure(files, 1.0, scan);
  const double parse_mbps = Measure(files, 2.0, parse);

  std::fprintf(stderr, "gnss bench: %zu recordings, %.2f MB; %llu fixes, %llu lines seen\n",
               files.size(), total / 1e6, static_cast<unsigned long long>(fixes),
               static_cast<unsigned long long>(lines));
  std::printf("figure gnss.parse_mb_per_s %.1f MB/s\n", parse_mbps);
  std::printf("figure gnss.scan_mb_per_s %.1f MB/s\n", scan_mbps);
  std::printf("figure gnss.parse_ratio_vs_scan %.4f ratio\n", parse_mbps / scan_mbps);
  return 0;
}
