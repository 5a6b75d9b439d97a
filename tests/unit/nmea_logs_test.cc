// The NMEA parser against real receivers: the gpsd regression logs (checked against gpsd's own
// decoding in the .chk files) and two real drives replayed end to end.
//
// Matching against gpsd. gpsd writes a TPV report after many sentences, not once per epoch, and
// skips some epochs in its regression output, so a one-to-one pairing does not exist. Instead,
// with positions compared within 1e-6 degrees:
//   (a) every fix we fuse has the position of some TPV with mode >= 2 (we invent nothing);
//   (b) every TPV position with mode >= 2 is the position of one of our fixes (we miss nothing),
//       except where a log's entry below says why gpsd is wrong;
//   (c) every fix whose time of day appears among the TPV times has the position of a TPV with
//       that time of day (we fuse the right sentences into the right epoch). Dates are not
//       compared: gpsd applies its own week-rollover logic (see tests/data/nmea/README.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "waybill/hal/nmea.h"

namespace waybill::hal {
namespace {

const std::string kData = std::string(WAYBILL_TEST_DATA) + "/nmea/";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

NmeaOptions LogOptions(const std::string& name, int64_t min_plausible_utc_ms = 0) {
  NmeaOptions o;
  o.source = name;
  o.log_rejections = false;
  o.skip_comment_lines = true;  // the '#' header lines of the recordings
  o.min_plausible_utc_ms = min_plausible_utc_ms;
  return o;
}

struct Tpv {
  double lat, lon;
  int32_t tod_ms;  // -1 when the report had no time
};

int32_t TodOfIso(const std::string& t) {
  // "2015-03-02T05:32:33.438Z"
  int hh = std::stoi(t.substr(11, 2)), mm = std::stoi(t.substr(14, 2));
  double ss = std::stod(t.substr(17, t.size() - 18));
  return static_cast<int32_t>(std::lround(((hh * 60 + mm) * 60 + ss) * 1000));
}

std::vector<Tpv> ReadTpvs(const std::string& chk) {
  std::vector<Tpv> out;
  std::istringstream in(ReadFile(chk));
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{') continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || j.value("class", "") != "TPV") continue;
    if (j.value("mode", 0) < 2 || !j.contains("lat") || !j.contains("lon")) continue;
    out.push_back({j["lat"].get<double>(), j["lon"].get<double>(),
                   j.contains("time") ? TodOfIso(j["time"].get<std::string>()) : -1});
  }
  return out;
}

bool Near(const GnssFix& f, const Tpv& t) {
  return std::abs(f.lat_e7 / 1e7 - t.lat) <= 1e-6 && std::abs(f.lon_e7 / 1e7 - t.lon) <= 1e-6;
}

struct LogCase {
  const char* name;
  size_t fixes;
  std::map<NmeaReject, uint64_t> rejected;  // everything else is zero
  // TPV positions gpsd reports that are rightly absent from our fixes, with the reason.
  std::vector<std::pair<double, double>> gpsd_only;
};

// The real numbers each log holds. Every rejection is a real defect of the recording:
const LogCase kLogs[] = {
    {"beidou-gb", 2, {}, {}},
    {"bu353-glonass", 9, {}, {}},
    // Every GGA carries a wrong checksum (the file's point); RMC alone gives the 23 fixes.
    {"firefly-II", 23, {{NmeaReject::kBadChecksum, 23}}, {}},
    // One GSV ends in "*7".
    {"garmin48", 14, {{NmeaReject::kTruncated, 1}}, {}},
    // One GSV cut by a $PTNTA; its orphaned tail on the next line is garbage.
    {"isync", 12, {{NmeaReject::kSpliced, 1}, {NmeaReject::kGarbage, 1}}, {}},
    // gpsd reports this position from a GGA with quality 0 ("fix not available") while the
    // RMC of the same epoch says V: we follow the receiver and report no fix.
    {"mtk-3301", 4, {}, {{52.21631655, 6.8849651}}},
    {"nmea-rtk", 122, {}, {}},
    {"quectel-eg25-g", 23, {}, {}},
    {"quectel-l76k-nmea", 151, {}, {}},
    {"rgm3800", 2, {}, {}},
    {"skytraq", 0, {}, {}},  // cold start: never a fix
    {"telit-he910", 187, {}, {}},
    {"telit-pls83-w", 10, {}, {}},
    {"ublox-neo-m9n-nmea", 61, {}, {}},
    {"ublox-zed-f9p-nmea", 29, {}, {}},
    {"unicore-um621", 16, {}, {}},
};

class GpsdLog : public testing::TestWithParam<LogCase> {};

TEST_P(GpsdLog, FixesMatchGpsdAndRejectionsAreTheRealOnes) {
  const LogCase& c = GetParam();
  const std::string path = kData + "gpsd/" + c.name + ".log";
  NmeaParser parser(LogOptions(c.name));
  parser.Feed(ReadFile(path));
  parser.Flush();
  std::vector<GnssFix> fixes = parser.TakeFixes();
  const NmeaStats& stats = parser.stats();

  EXPECT_EQ(fixes.size(), c.fixes);
  EXPECT_EQ(stats.fixes, c.fixes);
  for (size_t i = 0; i < kNmeaRejectCount; ++i) {
    auto reason = static_cast<NmeaReject>(i);
    auto it = c.rejected.find(reason);
    EXPECT_EQ(stats.rejected[i], it == c.rejected.end() ? 0u : it->second) << ToString(reason);
  }
  EXPECT_GT(stats.sentences, 0u);

  std::vector<Tpv> tpvs = ReadTpvs(path + ".chk");
  for (const GnssFix& f : fixes) {
    EXPECT_TRUE(std::any_of(tpvs.begin(), tpvs.end(), [&](const Tpv& t) { return Near(f, t); }))
        << "(a) fix at " << f.lat_e7 << "," << f.lon_e7 << " is no gpsd position";
    ASSERT_TRUE(f.utc_ms.has_value());
    int32_t tod = static_cast<int32_t>(*f.utc_ms % 86'400'000);
    bool timed = false, matched = false;
    for (const Tpv& t : tpvs) {
      if (t.tod_ms != tod) continue;
      timed = true;
      matched = matched || Near(f, t);
    }
    EXPECT_TRUE(!timed || matched) << "(c) fix at time of day " << tod << " ms has position "
                                   << f.lat_e7 << "," << f.lon_e7 << ", gpsd says otherwise";
  }
  for (const Tpv& t : tpvs) {
    bool ours =
        std::any_of(fixes.begin(), fixes.end(), [&](const GnssFix& f) { return Near(f, t); });
    bool excused = std::any_of(c.gpsd_only.begin(), c.gpsd_only.end(), [&](const auto& p) {
      return std::abs(p.first - t.lat) <= 1e-6 && std::abs(p.second - t.lon) <= 1e-6;
    });
    EXPECT_TRUE(ours != excused) << "(b) gpsd position " << t.lat << "," << t.lon
                                 << (excused ? " is excused but we have it" : " is missing");
  }
}

TEST_P(GpsdLog, AnyChunkingGivesTheSameResult) {
  const LogCase& c = GetParam();
  const std::string data = ReadFile(kData + "gpsd/" + c.name + ".log");
  NmeaParser whole(LogOptions(c.name));
  whole.Feed(data);
  whole.Flush();
  std::vector<GnssFix> expected = whole.TakeFixes();

  NmeaParser chunked(LogOptions(c.name));
  uint32_t seed = 12345;
  for (size_t at = 0; at < data.size();) {
    seed = seed * 1103515245 + 12345;
    size_t n = std::min<size_t>(1 + (seed >> 16) % 97, data.size() - at);
    chunked.Feed(std::string_view(data).substr(at, n));
    at += n;
  }
  chunked.Flush();
  std::vector<GnssFix> got = chunked.TakeFixes();
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].lat_e7, expected[i].lat_e7);
    EXPECT_EQ(got[i].lon_e7, expected[i].lon_e7);
    EXPECT_EQ(got[i].utc_ms, expected[i].utc_ms);
  }
  EXPECT_EQ(chunked.stats().rejected, whole.stats().rejected);
  EXPECT_EQ(chunked.stats().sentences, whole.stats().sentences);
}

INSTANTIATE_TEST_SUITE_P(Nmea, GpsdLog, testing::ValuesIn(kLogs),
                         [](const testing::TestParamInfo<LogCase>& param_info) {
                           std::string n = param_info.param.name;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(GpsdLogs, SkytraqColdStartGivesNoFixButCountsItsEpochs) {
  NmeaParser parser(LogOptions("skytraq"));
  parser.Feed(ReadFile(kData + "gpsd/skytraq.log"));
  parser.Flush();
  EXPECT_TRUE(parser.TakeFixes().empty());
  EXPECT_EQ(parser.stats().no_fix_epochs, 17u);        // one per second of the recording
  EXPECT_EQ(parser.stats().ignored_proprietary, 17u);  // $PSTI
}

struct Drive {
  std::vector<GnssFix> fixes;
  NmeaStats stats;
};

Drive Replay(const std::string& file) {
  // 2009-01-01: the drives were recorded in 2009 and 2010.
  NmeaParser parser(LogOptions(file, 1'230'768'000'000));
  parser.Feed(ReadFile(kData + "drives/" + file));
  parser.Flush();
  return {parser.TakeFixes(), parser.stats()};
}

// Every fix dated, on whole seconds; returns the indexes where the time went backwards.
std::vector<size_t> DatedAndStepsBack(const std::vector<GnssFix>& fixes) {
  std::vector<size_t> back;
  for (size_t i = 0; i < fixes.size(); ++i) {
    EXPECT_TRUE(fixes[i].utc_ms.has_value()) << "fix " << i;
    if (!fixes[i].utc_ms) return back;
    EXPECT_EQ(*fixes[i].utc_ms % 1000, 0) << "fix " << i;
    if (i > 0 && *fixes[i].utc_ms <= *fixes[i - 1].utc_ms) back.push_back(i);
  }
  return back;
}

TEST(Drives, MunichReplaysEndToEnd) {
  Drive d = Replay("munich-gps.nmea");
  // 1867 one-second cycles (RMC, GGA, GSA, 3 GSV); 20 of them say no fix (RMC V, GGA 0).
  EXPECT_EQ(d.stats.epochs, 1867u);
  EXPECT_EQ(d.fixes.size(), 1847u);
  EXPECT_EQ(d.stats.no_fix_epochs, 20u);
  // The file is clean: nothing rejected. Its receiver printed "0NaN" for HDOP in one GGA and
  // one GSA: those two values are dropped, their sentences kept.
  EXPECT_EQ(d.stats.rejected_total(), 0u);
  EXPECT_EQ(d.stats.fields_dropped, 2u);
  // Times increase by one second, except once: after 12:43:42 the recording holds 12:43:41 and
  // 12:43:42 a second time with other positions (lines 1215-1222 of the file). The parser hands
  // them out as the receiver said and counts the step back.
  std::vector<size_t> back = DatedAndStepsBack(d.fixes);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(*d.fixes[back[0] - 1].utc_ms - *d.fixes[back[0]].utc_ms, 1000);
  EXPECT_EQ(d.stats.time_steps_back, 1u);
  int64_t span_ms = *d.fixes.back().utc_ms - *d.fixes.front().utc_ms;
  EXPECT_NEAR(span_ms / 60'000.0, 31, 1);  // "about 31 minutes"
  for (const GnssFix& f : d.fixes) {
    EXPECT_NEAR(f.lat_e7 / 1e7, 48.17, 0.05);  // Munich, Petuelring
    EXPECT_NEAR(f.lon_e7 / 1e7, 11.56, 0.08);
    EXPECT_NE(f.mode, FixMode::kNoFix);
  }
}

TEST(Drives, RegensburgReplaysEndToEnd) {
  Drive d = Replay("20100411_Geko_Regensburg.txt");
  // A Garmin Geko: one cycle every 2 s, CR and CRLF line ends, many Garmin and route sentences.
  EXPECT_EQ(d.stats.epochs, 790u);
  EXPECT_EQ(d.fixes.size(), 774u);
  EXPECT_EQ(d.stats.no_fix_epochs, 16u);
  EXPECT_EQ(d.stats.rejected_total(), 0u);  // clean file
  EXPECT_EQ(d.stats.fields_dropped, 0u);
  EXPECT_EQ(d.stats.ignored_proprietary, 1578u);    // $PGRME, $PGRMZ
  EXPECT_EQ(d.stats.ignored_unsupported, 3157u);    // BOD, RMB, RTE, HCHDG
  EXPECT_TRUE(DatedAndStepsBack(d.fixes).empty());  // strictly increasing
  EXPECT_EQ(d.stats.time_steps_back, 0u);
  int64_t span_ms = *d.fixes.back().utc_ms - *d.fixes.front().utc_ms;
  EXPECT_NEAR(span_ms / 60'000.0, 26, 1.5);  // "about 26 minutes"
  uint32_t max_cmps = 0;
  for (const GnssFix& f : d.fixes) max_cmps = std::max(max_cmps, f.speed_cmps.value_or(0));
  EXPECT_NEAR(max_cmps * 0.036, 104, 3);  // "up to about 104 km/h"
}

}  // namespace
}  // namespace waybill::hal
