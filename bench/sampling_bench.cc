// Sampling policy on real drives: how many fixes it keeps, and how far the thinned track strays
// from the full one (the largest distance of a received fix to the line between the kept fixes
// around it). The policy's speed is not the point: it is O(1) per fix.
#include <cstdio>
#include <string>
#include <vector>

#include "support/drive_track.h"
#include "waybill/firmware/sampler.h"

namespace {

struct Drive {
  const char* name;
  const char* file;
};

int Run(const std::string& dir, const Drive& drive) {
  std::vector<waybill::testing::TrackPoint> track =
      waybill::testing::ReadRmcTrack(dir + drive.file);
  if (track.empty()) {
    std::fprintf(stderr, "sampling: no $GPRMC fix read from %s%s\n", dir.c_str(), drive.file);
    return 1;
  }
  waybill::firmware::Sampler sampler;
  const std::vector<bool> kept = waybill::testing::ThinWithSampler(track, sampler);
  const waybill::testing::ThinningFigures f = waybill::testing::MeasureThinning(track, kept);
  const auto& s = sampler.stats();
  std::printf("figure sampling.%s.fixes_received %zu fixes\n", drive.name, f.received);
  std::printf("figure sampling.%s.fixes_kept %zu fixes\n", drive.name, f.kept);
  std::printf("figure sampling.%s.kept_ratio %.4f ratio\n", drive.name,
              static_cast<double>(f.kept) / static_cast<double>(f.received));
  std::printf("figure sampling.%s.max_deviation_m %.1f m\n", drive.name, f.max_deviation_m);
  std::printf("figure sampling.%s.p99_deviation_m %.1f m\n", drive.name, f.p99_deviation_m);
  std::fprintf(stderr, "sampling.%s: %zu with a position; worst point #%zu at %.7f,%.7f; kept by:",
               drive.name, f.with_position, f.worst_index, track[f.worst_index].fix.lat_e7 / 1e7,
               track[f.worst_index].fix.lon_e7 / 1e7);
  for (size_t r = 0; r < waybill::firmware::kSampleReasonCount; ++r) {
    if (s.by_reason[r] == 0) continue;
    std::fprintf(stderr, " %s=%llu",
                 std::string(ToString(static_cast<waybill::firmware::SampleReason>(r))).c_str(),
                 static_cast<unsigned long long>(s.by_reason[r]));
  }
  std::fprintf(stderr, "\n");
  return 0;
}

}  // namespace

int main() {
  const std::string dir = std::string(WAYBILL_SOURCE_DIR) + "/tests/data/nmea/drives/";
  int status = 0;
  status |= Run(dir, {"munich", "munich-gps.nmea"});
  status |= Run(dir, {"regensburg", "20100411_Geko_Regensburg.txt"});
  return status;
}
