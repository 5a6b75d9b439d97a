// The NMEA parser, sentence by sentence and pathology by pathology. Inputs are built with
// correct checksums by Sentence() unless a test is about the checksum itself.
#include "waybill/hal/nmea.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "waybill/hal/log_limit.h"

namespace waybill::hal {
namespace {

constexpr int64_t k2020Ms = 1'577'836'800'000;        // 2020-01-01T00:00:00Z
constexpr int64_t k2025_06_15Ms = 1'749'945'600'000;  // 2025-06-15T00:00:00Z

// "$BODY*hh\r\n" with the right checksum.
std::string Sentence(std::string_view body) {
  uint8_t sum = 0;
  for (char c : body) sum ^= static_cast<uint8_t>(c);
  char hex[4];
  std::snprintf(hex, sizeof hex, "%02X", sum);
  return "$" + std::string(body) + "*" + hex + "\r\n";
}

class FakeClock final : public Clock {
 public:
  int64_t wall_ms() const override { return k2025_06_15Ms + now_ms; }
  int64_t mono_ms() const override { return now_ms; }
  TimeSource wall_source() const override { return TimeSource::kMonotonic; }
  int64_t now_ms = 1000;
};

NmeaOptions Quiet() {
  NmeaOptions o;
  o.log_rejections = false;
  o.min_plausible_utc_ms = k2020Ms;
  return o;
}

std::vector<GnssFix> ParseAll(NmeaParser& p, std::string_view input) {
  p.Feed(input);
  p.Flush();
  return p.TakeFixes();
}

// One complete 1 Hz cycle of a GPS-only receiver on 2025-06-15 at 12:00:SS.
std::string Cycle(int ss, const char* lat = "4807.0380") {
  char rmc[128], gga[128];
  std::snprintf(rmc, sizeof rmc, "GPRMC,1200%02d.00,A,%s,N,01131.0000,E,10.0,84.40,150625,,,A", ss,
                lat);
  std::snprintf(gga, sizeof gga, "GPGGA,1200%02d.00,%s,N,01131.0000,E,1,08,0.90,545.4,M,46.9,M,,",
                ss, lat);
  return Sentence(rmc) + Sentence(gga) + Sentence("GPGSA,A,3,04,05,09,12,24,,,,,,,,2.5,1.3,2.1");
}

TEST(NmeaRmc, DecodesPositionSpeedCourseDateAndTime) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(
      p, Sentence("GPRMC,123519.25,A,4807.038,N,01131.000,W,022.4,084.4,150625,003.1,W,A"));
  ASSERT_EQ(fixes.size(), 1u);
  const GnssFix& f = fixes[0];
  EXPECT_EQ(f.lat_e7, 481173000);   // 48 + 7.038/60
  EXPECT_EQ(f.lon_e7, -115166667);  // -(11 + 31/60)
  EXPECT_EQ(f.speed_cmps, 1152u);   // 22.4 kn = 11.5236 m/s
  EXPECT_EQ(f.course_cdeg, 8440);
  ASSERT_TRUE(f.utc_ms.has_value());
  EXPECT_EQ(*f.utc_ms, k2025_06_15Ms + ((12 * 60 + 35) * 60 + 19) * 1000 + 250);
  EXPECT_EQ(f.mode, FixMode::k2D);  // no altitude, no GSA
  EXPECT_EQ(f.quality, 1);          // mode character A
  EXPECT_FALSE(f.alt_cm.has_value());
  EXPECT_EQ(p.stats().count(NmeaSentence::kRmc), 1u);
  EXPECT_EQ(p.stats().rejected_total(), 0u);
}

TEST(NmeaRmc, StatusVoidIsANoFixEpochNotAnError) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, Sentence("GPRMC,,V,,,,,,,,,,N") +
                               Sentence("GPRMC,081433.591,V,8960.000000,N,00000.000000,E,0.000,"
                                        "0.00,120180,,,N"));
  EXPECT_TRUE(fixes.empty());
  EXPECT_EQ(p.stats().no_fix_epochs, 2u);
  EXPECT_EQ(p.stats().rejected_total(), 0u);  // receiver defaults in a no-fix sentence are fine
}

TEST(NmeaGga, DecodesAltitudeSatellitesHdopQualityAsA3DFix) {
  NmeaParser p(Quiet());
  p.Feed(Sentence("GPZDA,120001.00,15,06,2025,00,00"));
  auto fixes = ParseAll(
      p, Sentence("GNGGA,120001.00,4134.49795459,N,09345.03431408,W,4,14,0.9,278.161,M,-31.4,M,,"));
  ASSERT_EQ(fixes.size(), 1u);
  const GnssFix& f = fixes[0];
  EXPECT_EQ(f.lat_e7, 415749659);  // 41 + 34.49795459/60 = 41.5749659098
  EXPECT_EQ(f.lon_e7, -937505719);
  EXPECT_EQ(f.alt_cm, 27816);
  EXPECT_EQ(f.sats, 14);
  EXPECT_EQ(f.hdop_c, 90);
  EXPECT_EQ(f.quality, 4);  // RTK fixed
  EXPECT_EQ(f.mode, FixMode::k3D);
  EXPECT_EQ(f.utc_ms, k2025_06_15Ms + 12 * 3600 * 1000 + 1000);  // date from ZDA
}

TEST(NmeaGga, QualityZeroIsNoFix) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(
      p, Sentence("GPGGA,212406.000,0000.0000000,N,00000.0000000,E,0,00,0.0,0.000,M,0.000,M,,"));
  EXPECT_TRUE(fixes.empty());
  EXPECT_EQ(p.stats().no_fix_epochs, 1u);
  EXPECT_EQ(p.stats().epochs, 1u);
}

TEST(NmeaGsa, ModeComesFromGsaWhenItReportsAFix) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, Sentence("GPGGA,120000,4807.038,N,01131.000,E,1,03,2.1,545.4,M,,,,") +
                               Sentence("GPGSA,A,2,04,05,09,,,,,,,,,,3.0,2.0,2.2"));
  ASSERT_EQ(fixes.size(), 1u);
  EXPECT_EQ(fixes[0].mode, FixMode::k2D);  // GSA says 2D although GGA has an altitude
  EXPECT_EQ(fixes[0].hdop_c, 210);         // GGA's HDOP wins over GSA's
}

TEST(NmeaGsa, SatellitesUsedAreTheLargestOfGgaAndAllGsaLists) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, Sentence("GNGGA,120000,4807.038,N,01131.000,E,1,12,0.5,545.4,M,,,,") +
                               Sentence("GNGSA,A,3,01,02,03,04,05,06,07,08,,,,,1.0,0.5,0.8,1") +
                               Sentence("GNGSA,A,3,65,66,67,68,69,,,,,,,,1.0,0.5,0.8,2") +
                               Sentence("GNGSA,A,3,301,302,,,,,,,,,,,1.0,0.5,0.8,3"));
  ASSERT_EQ(fixes.size(), 1u);
  EXPECT_EQ(fixes[0].sats, 15);  // GGA caps at 12 on NMEA 2.x receivers; the GSAs list 15
  EXPECT_EQ(p.stats().count(NmeaSentence::kGsa), 3u);
}

TEST(NmeaGsa, FixTypeOneDoesNotVetoAPositionSentence) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, Sentence("GPGGA,120000,4807.038,N,01131.000,E,1,03,2.1,545.4,M,,,,") +
                               Sentence("GPGSA,A,1,,,,,,,,,,,,,,,"));
  ASSERT_EQ(fixes.size(), 1u);
  EXPECT_EQ(fixes[0].mode, FixMode::k3D);  // the fallback rule: GGA fix with altitude
}

TEST(NmeaGsv, IsCountedAndNeitherOpensAnEpochNorBreaksOne) {
  NmeaParser p(Quiet());
  auto fixes =
      ParseAll(p, Sentence("GPGSV,3,1,11,01,78,221,47,03,09,042,00,04,05,242,00,06,04,149,00") +
                      Sentence("GPRMC,120000,A,4807.038,N,01131.000,E,0.0,0.0,150625,,") +
                      Sentence("GLGSV,1,1,02,78,38,036,22,79,53,313,19,1") +
                      Sentence("GPGGA,120000,4807.038,N,01131.000,E,1,05,2.1,14.7,M,1.1,M,,"));
  EXPECT_EQ(fixes.size(), 1u);
  EXPECT_EQ(p.stats().count(NmeaSentence::kGsv), 2u);
  EXPECT_EQ(p.stats().epochs, 1u);
}

TEST(NmeaVtg, GivesSpeedAndCourseWhenRmcDoesNot) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, Sentence("GPGGA,120000,4807.038,N,01131.000,E,1,05,2.1,14.7,M,,,,") +
                               Sentence("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A"));
  ASSERT_EQ(fixes.size(), 1u);
  EXPECT_EQ(fixes[0].course_cdeg, 5470);
  EXPECT_EQ(fixes[0].speed_cmps, 283u);  // 5.5 kn
}

TEST(NmeaVtg, KilometresPerHourAloneAndModeNIgnored) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, Sentence("GPGGA,120000,4807.038,N,01131.000,E,1,05,2.1,14.7,M,,,,") +
                               Sentence("GPVTG,,T,,M,,N,36.0,K,A") +
                               Sentence("GPGGA,120001,4807.038,N,01131.000,E,1,05,2.1,14.7,M,,,,") +
                               Sentence("GPVTG,10.0,T,,M,5.0,N,9.3,K,N"));
  ASSERT_EQ(fixes.size(), 2u);
  EXPECT_EQ(fixes[0].speed_cmps, 1000u);  // 36 km/h
  EXPECT_FALSE(fixes[1].speed_cmps.has_value());
  EXPECT_FALSE(fixes[1].course_cdeg.has_value());
}

TEST(NmeaRmc, SpeedFromRmcWinsOverVtgAndCourse360IsZero) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, Sentence("GPRMC,120000,A,4807.038,N,01131.000,E,10.0,360.0,150625,,") +
                               Sentence("GPVTG,90.0,T,,M,20.0,N,37.0,K,A"));
  ASSERT_EQ(fixes.size(), 1u);
  EXPECT_EQ(fixes[0].speed_cmps, 514u);
  EXPECT_EQ(fixes[0].course_cdeg, 0);
}

TEST(NmeaRmc, AbsurdNumbersSaturateInsteadOfOverflowing) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(
      p, Sentence("GPRMC,120000,A,4807.038,N,01131.000,E,999999999999999.999,-725.5,150625,,"));
  ASSERT_EQ(fixes.size(), 1u);
  EXPECT_EQ(fixes[0].speed_cmps, UINT32_MAX);
  EXPECT_EQ(fixes[0].course_cdeg, 35450);  // -725.5 degrees is 354.5
}

TEST(NmeaGll, ValidGllIsA2DFixAndVoidIsNot) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, Sentence("GPGLL,4916.45,N,12311.12,W,225444,A,A") +
                               Sentence("GPGLL,4916.46,N,12311.12,W,225445,V,N") +
                               Sentence("GPGLL,4527.458,S,16709.165,E,225309,A"));
  ASSERT_EQ(fixes.size(), 2u);
  EXPECT_EQ(fixes[0].lat_e7, 492741667);
  EXPECT_EQ(fixes[0].mode, FixMode::k2D);
  EXPECT_EQ(fixes[1].lat_e7, -454576333);  // NMEA 2.x GLL without a mode character
  EXPECT_EQ(p.stats().no_fix_epochs, 1u);
}

TEST(NmeaGll, Nmea15GllWithoutTimeOrStatusStillGivesAPosition) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, Sentence("GPGLL,4916.45,N,12311.12,W"));
  ASSERT_EQ(fixes.size(), 1u);
  EXPECT_FALSE(fixes[0].utc_ms.has_value());
  EXPECT_EQ(p.stats().fixes_without_utc, 1u);
}

TEST(NmeaZda, DateAppliesToTheEpochAndCarriesOverPastMidnight) {
  NmeaParser p(Quiet());
  auto fixes =
      ParseAll(p, Sentence("GPGGA,235959.50,4807.038,N,01131.000,E,1,05,2.1,14.7,M,,,,") +
                      Sentence("GPZDA,235959.50,14,06,2025,00,00") +
                      Sentence("GPGGA,000000.50,4807.038,N,01131.000,E,1,05,2.1,14.7,M,,,,"));
  ASSERT_EQ(fixes.size(), 2u);
  EXPECT_EQ(fixes[0].utc_ms, k2025_06_15Ms - 500);
  EXPECT_EQ(fixes[1].utc_ms, k2025_06_15Ms + 500);  // the day after, from the carried date
}

TEST(NmeaGns, ModeCharactersDecideTheFix) {
  NmeaParser p(Quiet());
  auto fixes =
      ParseAll(p, Sentence("GNGNS,053232.438,3114.8789,N,12135.2442,E,ANNA,07,1.2,153.8,8.3,,") +
                      Sentence("GNGNS,053233.438,,,,,NNNN,00,,,0.0,,0000"));
  ASSERT_EQ(fixes.size(), 1u);
  EXPECT_EQ(fixes[0].lat_e7, 312479817);
  EXPECT_EQ(fixes[0].alt_cm, 15380);
  EXPECT_EQ(fixes[0].mode, FixMode::k3D);
  EXPECT_EQ(fixes[0].sats, 7);
  EXPECT_EQ(fixes[0].quality, 1);
  EXPECT_EQ(p.stats().no_fix_epochs, 1u);
  EXPECT_EQ(p.stats().count(NmeaSentence::kGns), 2u);
}

TEST(NmeaTalkers, EveryTalkerIsDecodedIncludingUnknownOnes) {
  for (const char* talker : {"GP", "GN", "GL", "GA", "GB", "BD", "GQ", "QZ", "XY"}) {
    NmeaParser p(Quiet());
    std::string body = std::string(talker) + "RMC,120000,A,4807.038,N,01131.000,E,0.0,0.0,150625,,";
    auto fixes = ParseAll(p, Sentence(body));
    EXPECT_EQ(fixes.size(), 1u) << talker;
    EXPECT_EQ(p.stats().count(NmeaSentence::kRmc), 1u) << talker;
  }
}

TEST(NmeaFusion, OneFixPerEpochAndOnlyOnceTheEpochIsOver) {
  NmeaParser p(Quiet());
  p.Feed(Cycle(0));
  EXPECT_EQ(p.pending_fixes(), 0u);  // the epoch could still get sentences
  p.Feed(Cycle(1, "4807.0390"));
  EXPECT_EQ(p.pending_fixes(), 1u);  // the RMC of 12:00:01 closed 12:00:00
  p.Flush();
  auto fixes = p.TakeFixes();
  ASSERT_EQ(fixes.size(), 2u);
  EXPECT_EQ(*fixes[1].utc_ms - *fixes[0].utc_ms, 1000);
  EXPECT_EQ(fixes[0].mode, FixMode::k3D);
  EXPECT_EQ(fixes[0].sats, 8);
  EXPECT_EQ(fixes[0].hdop_c, 90);
  EXPECT_EQ(fixes[0].alt_cm, 54540);
  EXPECT_EQ(fixes[0].speed_cmps, 514u);
  EXPECT_EQ(fixes[1].lat_e7 - fixes[0].lat_e7, 167);  // 0.001 minute
  EXPECT_EQ(p.stats().epochs, 2u);
  EXPECT_EQ(p.stats().sentences, 6u);
}

TEST(NmeaFusion, ARepeatedSentenceWithoutTimeStartsANewCycle) {
  // Receivers without a time yet send empty RMC/GGA every second: each cycle is an epoch.
  NmeaParser p(Quiet());
  std::string cycle = Sentence("GPGGA,,,,,,0,,,,M,,M,,") + Sentence("GPRMC,,V,,,,,,,,,,N");
  ParseAll(p, cycle + cycle + cycle);
  EXPECT_EQ(p.stats().epochs, 3u);
  EXPECT_EQ(p.stats().no_fix_epochs, 3u);
}

TEST(NmeaFusion, TwoTalkersOfTheSameSentenceShareAnEpoch) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(
      p, Sentence("GPGGA,043539.00,4333.190206,N,00127.618380,E,1,05,1.3,250.8,M,50.0,M,,") +
             Sentence("GAGGA,043539.00,4333.190206,N,00127.618380,E,1,01,1.3,250.8,M,50.0,M,,") +
             Sentence("GNGNS,043539.00,4333.190206,N,00127.618380,E,AAAAN,14,1.3,250.8,50.0,,,V"));
  ASSERT_EQ(fixes.size(), 1u);
  EXPECT_EQ(fixes[0].sats, 14);
}

TEST(NmeaChecksum, WrongChecksumIsRejectedWhateverTheOptions) {
  for (bool require : {true, false}) {
    NmeaOptions o = Quiet();
    o.require_checksum = require;
    NmeaParser p(o);
    auto fixes = ParseAll(p, "$GPGGA,120000,4807.038,N,01131.000,E,1,05,2.1,14.7,M,,,,*00\r\n");
    EXPECT_TRUE(fixes.empty());
    EXPECT_EQ(p.stats().count(NmeaReject::kBadChecksum), 1u);
    EXPECT_EQ(p.stats().sentences, 0u);
  }
}

TEST(NmeaChecksum, LowercaseHexIsAccepted) {
  std::string s = Sentence("GPGLL,4916.45,N,12311.12,W,225444,A,A");
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  s[0] = '$';  // only the hex digits matter: the body is lowercased too, so restore it
  s.replace(1, s.find('*') - 1, "GPGLL,4916.45,N,12311.12,W,225444,A,A");
  ASSERT_NE(s, Sentence("GPGLL,4916.45,N,12311.12,W,225444,A,A"));  // has a hex letter
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, s);
  EXPECT_EQ(fixes.size(), 1u);
  EXPECT_EQ(p.stats().rejected_total(), 0u);
}

TEST(NmeaChecksum, MissingChecksumDependsOnTheOption) {
  const std::string line = "$GPGLL,4916.45,N,12311.12,W,225444,A,A\r\n";
  {
    NmeaParser p(Quiet());
    EXPECT_TRUE(ParseAll(p, line).empty());
    EXPECT_EQ(p.stats().count(NmeaReject::kMissingChecksum), 1u);
  }
  {
    NmeaOptions o = Quiet();
    o.require_checksum = false;
    NmeaParser p(o);
    EXPECT_EQ(ParseAll(p, line).size(), 1u);
    EXPECT_EQ(p.stats().rejected_total(), 0u);
  }
}

TEST(NmeaChecksum, TruncatedChecksumIsRejectedAsTruncated) {
  NmeaParser p(Quiet());
  ParseAll(p,
           "$GPGSV,3,1,11,01,78,221,47,03,09,042,00,04,05,242,00,06,04,149,00*7\r\n"
           "$GPGSV,3,1,11,01,78,221,47,03,09,042,00,04,05,242,00,06,04,149,00*\r\n");
  EXPECT_EQ(p.stats().count(NmeaReject::kTruncated), 2u);
  EXPECT_EQ(p.stats().count(NmeaSentence::kGsv), 0u);
}

TEST(NmeaChecksum, NonHexOrTrailingTextIsABadChecksum) {
  NmeaParser p(Quiet());
  ParseAll(p,
           "$GPGLL,4916.45,N,12311.12,W,225444,A,A*ZZ\r\n"
           "$GPGLL,4916.45,N,12311.12,W,225444,A,A*5D9\r\n");
  EXPECT_EQ(p.stats().count(NmeaReject::kBadChecksum), 2u);
}

TEST(NmeaFraming, LineEndsCrlfLfAndCrAloneAllWork) {
  std::string input;
  const char* ends[] = {"\r\n", "\n", "\r", "\n\r"};
  for (int i = 0; i < 4; ++i) {
    std::string s = Sentence("GPGLL,4916.45,N,12311.12,W,22544" + std::to_string(i) + ",A,A");
    input += s.substr(0, s.size() - 2) + ends[i];
  }
  NmeaParser p(Quiet());
  EXPECT_EQ(ParseAll(p, input).size(), 4u);
  EXPECT_EQ(p.stats().rejected_total(), 0u);
}

TEST(NmeaFraming, NulBytesAnywhereAreDroppedAndCounted) {
  std::string s = Cycle(0) + Cycle(1);
  std::string with_nuls;
  for (size_t i = 0; i < s.size(); ++i) {
    with_nuls.push_back(s[i]);
    if (i % 7 == 0) with_nuls.push_back('\0');
  }
  NmeaParser p(Quiet());
  EXPECT_EQ(ParseAll(p, with_nuls).size(), 2u);
  EXPECT_EQ(p.stats().rejected_total(), 0u);
  EXPECT_EQ(p.stats().nul_bytes, s.size() / 7 + 1);
}

TEST(NmeaFraming, AnyChunkingGivesTheSameFixes) {
  std::string input = Cycle(0) + "junk\r\n" + Cycle(1) + "$GPGGA,12" + Cycle(2);
  NmeaParser whole(Quiet());
  auto expected = ParseAll(whole, input);
  NmeaParser bytewise(Quiet());
  for (char c : input) bytewise.Feed(std::string_view(&c, 1));
  bytewise.Flush();
  auto got = bytewise.TakeFixes();
  ASSERT_EQ(got.size(), expected.size());
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].lat_e7, expected[i].lat_e7);
    EXPECT_EQ(got[i].utc_ms, expected[i].utc_ms);
  }
  EXPECT_EQ(bytewise.stats().rejected, whole.stats().rejected);
}

TEST(NmeaFraming, ASplicedSentenceIsRejectedAndTheInterruptingOneKept) {
  // From the iSync log: a GSV cut by a proprietary sentence whose tail follows on the next line.
  NmeaParser p(Quiet());
  std::string gll = Sentence("GPGLL,4916.45,N,12311.12,W,225444,A,A");
  ParseAll(p, "$GPGSV,4,1,15,02,11,115,36,0" + gll + "5,34,060,48,07,00,023,,13,56,090,49*71\r\n");
  EXPECT_EQ(p.stats().count(NmeaReject::kSpliced), 1u);
  EXPECT_EQ(p.stats().count(NmeaSentence::kGll), 1u);
  EXPECT_EQ(p.stats().count(NmeaReject::kGarbage), 1u);  // the orphaned tail
  EXPECT_EQ(p.stats().fixes, 1u);
}

TEST(NmeaFraming, ACompleteSentenceWithoutItsLineEndIsKept) {
  std::string a = Sentence("GPGLL,4916.45,N,12311.12,W,225444,A,A");
  std::string b = Sentence("GPGLL,4916.46,N,12311.12,W,225445,A,A");
  NmeaParser p(Quiet());
  EXPECT_EQ(ParseAll(p, a.substr(0, a.size() - 2) + b.substr(0, b.size() - 2)).size(), 2u);
  EXPECT_EQ(p.stats().rejected_total(), 0u);  // the last one ends at end of input: also kept
}

TEST(NmeaFraming, InputEndingInsideASentenceIsTruncated) {
  NmeaParser p(Quiet());
  ParseAll(p, Cycle(0) + "$GPRMC,120001.00,A,4807.0");
  EXPECT_EQ(p.stats().count(NmeaReject::kTruncated), 1u);
  EXPECT_EQ(p.stats().fixes, 1u);
}

TEST(NmeaFraming, CutShortWithoutChecksumIsTruncatedNotMissingFields) {
  NmeaOptions o = Quiet();
  o.require_checksum = false;
  NmeaParser p(o);
  ParseAll(p, "$GPRMC,120001.00,A,4807.0\r\n");
  EXPECT_EQ(p.stats().count(NmeaReject::kTruncated), 1u);
  // The same with a valid checksum is a malformed sentence.
  NmeaParser q(Quiet());
  ParseAll(q, Sentence("GPRMC,120001.00,A,4807.0"));
  EXPECT_EQ(q.stats().count(NmeaReject::kBadField), 1u);
}

TEST(NmeaFraming, OverlongLinesAreRejectedAndTheNextSentenceIsFine) {
  NmeaParser p(Quiet());
  std::string vendor = Sentence("PMTKCHN," + std::string(190, '1'));  // 203 bytes: lenient
  std::string flood = "$GPGSV," + std::string(1000, '7') + "\r\n";
  auto fixes = ParseAll(p, vendor + flood + Cycle(0));
  EXPECT_EQ(fixes.size(), 1u);
  EXPECT_EQ(p.stats().count(NmeaReject::kOverlong), 1u);
  EXPECT_EQ(p.stats().ignored_proprietary, 1u);
  EXPECT_EQ(p.stats().rejected_total(), 1u);
}

TEST(NmeaTime, TwoAndThreeDecimalSecondsAndNone) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(p, Sentence("GPRMC,120000.25,A,4807.038,N,01131.000,E,,,150625,,") +
                               Sentence("GPRMC,120000.125,A,4807.038,N,01131.000,E,,,150625,,") +
                               Sentence("GPRMC,120001,A,4807.038,N,01131.000,E,,,150625,,"));
  ASSERT_EQ(fixes.size(), 3u);
  EXPECT_EQ(*fixes[0].utc_ms % 1000, 250);
  EXPECT_EQ(*fixes[1].utc_ms % 1000, 125);
  EXPECT_EQ(*fixes[2].utc_ms - *fixes[1].utc_ms, 875);
}

TEST(NmeaIgnored, ProprietaryAndUnsupportedAreCountedNotRejected) {
  NmeaParser p(Quiet());
  ParseAll(p, Sentence("PGRME,9.1,M,15.0,M,12.0,M") + "$POLYN,TIME,RESTART_OCCURRED\r\n" +
                  Sentence("GPGST,212406.000,,,,,,,") + Sentence("GPRMB,A,,,,,,,,,,,,V") +
                  Sentence("GYOACC,090624,000653.10,0.004960") + Sentence("LOG108,1,100,100"));
  EXPECT_EQ(p.stats().ignored_proprietary, 2u);
  EXPECT_EQ(p.stats().ignored_unsupported, 4u);
  EXPECT_EQ(p.stats().rejected_total(), 0u);
}

TEST(NmeaIgnored, CommentLinesOnlyWhenAskedFor) {
  std::string input = "# Name: a log header\r\n# $GPRMC in a comment\r\n" + Cycle(0);
  NmeaOptions o = Quiet();
  o.skip_comment_lines = true;
  NmeaParser p(o);
  EXPECT_EQ(ParseAll(p, input).size(), 1u);
  EXPECT_EQ(p.stats().ignored_comments, 2u);
  EXPECT_EQ(p.stats().rejected_total(), 0u);
  // A live receiver (the default): a '#' line is line noise.
  NmeaParser q(Quiet());
  ParseAll(q, input);
  EXPECT_EQ(q.stats().count(NmeaReject::kGarbage), 2u);
  // "# $GPRMC in a comment": the '$' starts a sentence, then missing its checksum
  EXPECT_EQ(q.stats().count(NmeaReject::kMissingChecksum), 1u);
}

TEST(NmeaRejects, BadAddressIsRejected) {
  NmeaParser p(Quiet());
  ParseAll(p, Sentence("GP RMC,1") + Sentence(",GPRMC") + Sentence("gprmc,1"));
  EXPECT_EQ(p.stats().count(NmeaReject::kBadAddress), 3u);
}

TEST(NmeaRejects, BadStructuralFieldsRejectTheSentence) {
  NmeaParser p(Quiet());
  auto fixes = ParseAll(
      p, Sentence("GPRMC,120000,A,48x7.038,N,01131.000,E,,,150625,,") +             // latitude
             Sentence("GPRMC,250000,A,4807.038,N,01131.000,E,,,150625,,") +         // hour 25
             Sentence("GPRMC,120001,A,4807.038,Q,01131.000,E,,,150625,,") +         // hemisphere
             Sentence("GPRMC,120002,A,4807.038,N,01131.000,E,,,310225,,") +         // 31 February
             Sentence("GPGGA,120003,4807.038,N,01131.000,E,X,05,2.1,14.7,M,,,,") +  // quality
             Sentence("GPGGA,120004,4807.038,N,01131.000,E,1,05,2.1,14.7,M,,,,"));
  EXPECT_EQ(p.stats().count(NmeaReject::kBadField), 5u);
  ASSERT_EQ(fixes.size(), 1u);  // only the good GGA
  EXPECT_EQ(p.stats().sentences, 1u);
}

TEST(NmeaRejects, ABadAuxiliaryValueIsDroppedAndTheFixKept) {
  // From the Munich drive: a receiver printing NaN for HDOP.
  NmeaParser p(Quiet());
  auto fixes = ParseAll(
      p, Sentence("GPGGA,130849.00,4810.6734,N,01134.4500,E,1,03,0NaN,00524.3,M,0046.3,M,,") +
             Sentence("GPGSA,A,2,13,,04,25,,,,,,,,,0NaN,0NaN,"));
  ASSERT_EQ(fixes.size(), 1u);
  EXPECT_FALSE(fixes[0].hdop_c.has_value());
  EXPECT_EQ(fixes[0].alt_cm, 52430);
  EXPECT_EQ(p.stats().fields_dropped, 2u);
  EXPECT_EQ(p.stats().rejected_total(), 0u);
}

TEST(NmeaRejects, GarbageBetweenSentencesIsCountedOncePerRun) {
  NmeaParser p(Quiet());
  ParseAll(p, "\x01\x02 noise noise\r\n" + Cycle(0) + "\xff\xfe\r\n\r\n");
  EXPECT_EQ(p.stats().count(NmeaReject::kGarbage), 2u);
  EXPECT_EQ(p.stats().fixes, 1u);
}

TEST(NmeaDate, The1980DefaultAndRolloverDatesGiveNoTime) {
  NmeaOptions o = Quiet();
  o.min_plausible_utc_ms = k2025_06_15Ms - 365LL * 86'400'000;
  NmeaParser p(o);
  auto fixes = ParseAll(
      p, Sentence("GPRMC,120000,A,4807.038,N,01131.000,E,,,060180,,") +      // GPS epoch default
             Sentence("GPRMC,120001,A,4807.038,N,01131.000,E,,,301105,,") +  // 2025 - 1024 weeks
             Sentence("GPRMC,120002,A,4807.038,N,01131.000,E,,,150625,,") +
             Sentence("GPGGA,120003,4807.038,N,01131.000,E,1,05,2.1,14.7,M,,,,"));
  ASSERT_EQ(fixes.size(), 4u);
  EXPECT_FALSE(fixes[0].utc_ms.has_value());
  EXPECT_FALSE(fixes[1].utc_ms.has_value());
  EXPECT_EQ(fixes[2].utc_ms, k2025_06_15Ms + 12 * 3600 * 1000 + 2000);
  EXPECT_EQ(fixes[3].utc_ms, k2025_06_15Ms + 12 * 3600 * 1000 + 3000);  // carried date
  EXPECT_EQ(fixes[0].lat_e7, 481173000);  // the position is still good
  EXPECT_EQ(p.stats().count(NmeaReject::kImplausibleDate), 2u);
  EXPECT_EQ(p.stats().fixes_without_utc, 2u);
}

TEST(NmeaDate, DefaultMinimumIsAYearBeforeTheBuild) {
  int64_t min_ms = NmeaOptions{}.min_plausible_utc_ms;
  EXPECT_EQ(min_ms, NmeaOptions::DefaultMinPlausibleUtcMs());
  EXPECT_GT(min_ms, 1'704'067'200'000);  // 2024-01-01: this code was written in 2025 or later
  // The build happened before this test runs, so the minimum is more than a year in the past.
  EXPECT_LT(min_ms, Clock::System().wall_ms() - 364LL * 86'400'000);
}

TEST(LogLimiter, LetsNPerWindowThroughThenReportsTheSuppressedCount) {
  LogLimiter limiter(3, 60'000);
  int logged = 0;
  for (int i = 0; i < 10; ++i) logged += limiter.Allow("bad_checksum", 1000 + i).log;
  EXPECT_EQ(logged, 3);
  EXPECT_TRUE(limiter.Allow("overlong", 1020).log);  // reasons are limited separately
  LogLimiter::Decision next = limiter.Allow("bad_checksum", 61'000);
  EXPECT_TRUE(next.log);
  EXPECT_EQ(next.suppressed, 7u);
  EXPECT_EQ(limiter.Allow("bad_checksum", 61'001).suppressed, 0u);  // reported once
}

TEST(LogLimiter, TakePendingReturnsUnreportedCountsOnce) {
  LogLimiter limiter(1, 60'000);
  for (int i = 0; i < 5; ++i) (void)limiter.Allow("spliced", 0);
  (void)limiter.Allow("garbage", 0);
  auto pending = limiter.TakePending();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].reason, "spliced");
  EXPECT_EQ(pending[0].suppressed, 4u);
  EXPECT_TRUE(limiter.TakePending().empty());
}

class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("%v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines;
    std::istringstream in(out_.str());
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST(NmeaLogging, MessagesSayWhatAndWhereAndDoNotFlood) {
  CapturedLog log;
  FakeClock clock;
  NmeaOptions o;
  o.source = "/dev/ttyS1";
  o.clock = &clock;
  o.log_max_per_minute = 5;
  NmeaParser p(o);
  const std::string bad = "$GPGLL,4916.45,N,12311.12,W,225444,A,A*3A\r\n";  // expected *5C
  for (int i = 0; i < 100; ++i) p.Feed(bad);
  clock.now_ms += 61'000;
  p.Feed(bad);  // a new minute: logged, with the count of the 95 suppressed before it
  for (int i = 0; i < 10; ++i) p.Feed(bad);
  p.Flush();
  std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 5u + 1 + 1 + 4 + 1);
  EXPECT_EQ(lines[0],
            "rejected NMEA sentence on /dev/ttyS1 at byte 0: bad checksum *3A, expected *5C "
            "($GPGLL,4916.45,N,12311.12,W,225444,A,A*3A); 1 rejected since start");
  EXPECT_NE(lines[1].find("at byte " + std::to_string(bad.size())), std::string::npos);
  EXPECT_NE(lines[5].find("95 more NMEA rejections (bad_checksum)"), std::string::npos);
  EXPECT_NE(lines[6].find("101 rejected since start"), std::string::npos);
  EXPECT_NE(lines[11].find("6 more NMEA rejections (bad_checksum) suppressed"), std::string::npos);
  EXPECT_EQ(p.stats().count(NmeaReject::kBadChecksum), 111u);
}

}  // namespace
}  // namespace waybill::hal
