// libFuzzer target for the NMEA parser: any bytes, in any chunking, under any options, must
// neither crash nor break the parser's promises about what it hands out.
//
// The first two input bytes choose the options and the chunking; the rest is the stream. Built
// with clang++ -fsanitize=fuzzer,address,undefined by tests/CMakeLists.txt; run by
// `ctest -L fuzz` (a short run) and `./scripts/fuzz nmea --minutes N` (a long one).
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "waybill/hal/nmea.h"

namespace {

class FixedClock final : public waybill::hal::Clock {
 public:
  int64_t wall_ms() const override { return 1'750'000'000'000; }
  int64_t mono_ms() const override { return mono_ms_; }
  waybill::hal::TimeSource wall_source() const override {
    return waybill::hal::TimeSource::kMonotonic;
  }
  int64_t mono_ms_ = 0;
};

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace waybill::hal;
  static const bool init = [] {
    // Exercise the logging paths without writing anything.
    spdlog::set_default_logger(
        std::make_shared<spdlog::logger>("fuzz", std::make_shared<spdlog::sinks::null_sink_mt>()));
    return true;
  }();
  (void)init;
  if (size < 2) return 0;
  static FixedClock clock;
  NmeaOptions options;
  options.require_checksum = (data[0] & 1) != 0;
  options.skip_comment_lines = (data[0] & 2) != 0;
  options.log_rejections = (data[0] & 4) != 0;
  options.max_sentence_bytes = (data[0] & 8) != 0 ? 82 : 256;
  options.min_plausible_utc_ms = (data[0] & 16) != 0 ? 0 : NmeaOptions::DefaultMinPlausibleUtcMs();
  options.clock = &clock;
  const size_t chunk = 1 + data[1];
  data += 2;
  size -= 2;

  NmeaParser parser(options);
  size_t fixes = 0;
  for (size_t at = 0; at < size; at += chunk) {
    parser.Feed(std::span<const uint8_t>(data + at, std::min(chunk, size - at)));
    clock.mono_ms_ += 7'000;
    for (const GnssFix& f : parser.TakeFixes()) {
      ++fixes;
      Check(f.mode == FixMode::k2D || f.mode == FixMode::k3D);
      Check(f.lat_e7 >= -900'000'000 && f.lat_e7 <= 900'000'000);
      Check(f.lon_e7 >= -1'800'000'000 && f.lon_e7 <= 1'800'000'000);
      Check(!f.course_cdeg || *f.course_cdeg < 36'000);
      Check(!f.utc_ms || *f.utc_ms >= options.min_plausible_utc_ms);
      Check(f.quality > 0);
    }
  }
  parser.Flush();
  fixes += parser.TakeFixes().size();
  const NmeaStats& s = parser.stats();
  Check(s.fixes == fixes);
  Check(s.bytes == size);
  Check(s.fixes + s.no_fix_epochs == s.epochs);
  // Every decoded or rejected sentence needs at least its '$' or a byte of garbage.
  Check(s.sentences + s.rejected_total() - s.count(NmeaReject::kImplausibleDate) <= size);
  return 0;
}
