// `waybillctl gnss replay` as a tech runs it: the built binary on a broken file and on real logs.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct CliRun {
  int exit_code = -1;
  std::vector<std::string> lines;  // stdout
  std::string err;                 // stderr
};

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/waybill-gnss-cli.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string File(const std::string& name, const std::string& content) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

CliRun Waybillctl(const std::string& args, const TempDir& dir) {
  std::string err_path = dir.path() + "/stderr";
  std::string cmd = std::string(WAYBILLCTL_PATH) + " " + args + " 2>'" + err_path + "'";
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) r.lines.push_back(l);
  std::ifstream e(err_path);
  std::ostringstream es;
  es << e.rdbuf();
  r.err = es.str();
  return r;
}

std::string Sentence(const std::string& body) {
  unsigned sum = 0;
  for (char c : body) sum ^= static_cast<unsigned char>(c);
  char hex[4];
  std::snprintf(hex, sizeof hex, "%02X", sum);
  return "$" + body + "*" + hex + "\r\n";
}

const std::string kGpsd = std::string(WAYBILL_TEST_DATA) + "/nmea/gpsd/";

TEST(GnssReplayCli, BrokenFileExitsZeroAndCountsEveryRejection) {
  TempDir dir;
  std::string broken =
      std::string("\x00\x01\xff garbage\r\n", 14) +
      Sentence("GPRMC,120000.00,A,4807.038,N,01131.000,E,10.0,84.4,150625,,,A") +
      "$GPGGA,120000.00,4807.038,N,01131.000,E,1,05,2.1,14.7,M,,,,*00\r\n" +      // bad checksum
      "$GPGSV,3,1,11,01,78,221,47,0$GPGLL,4916.45,N,12311.12,W,120001,A,A\r\n" +  // spliced
      "$GPRMC,120002.00,A,48\r\n" +                                               // no checksum
      Sentence("GPRMC,120003.00,A,4807.038,N,01131.000,E,,,060180,,") +           // 1980
      "$GPGSV," + std::string(600, '9') + "\r\n" +                                // overlong
      "$GPRMC,120004.00,A,4807.0";                                                // truncated
  CliRun r = Waybillctl(
      "gnss replay --json --min-date 2020-01-01 " + dir.File("broken.nmea", broken), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_GE(r.lines.size(), 2u);
  nlohmann::json summary = nlohmann::json::parse(r.lines.back())["summary"];
  EXPECT_EQ(summary["fixes"], 2);  // 12:00:00 and the 1980-dated 12:00:03
  EXPECT_EQ(summary["sentences"], 2);
  nlohmann::json rejected = summary["rejected"];
  EXPECT_EQ(rejected["garbage"], 1);
  EXPECT_EQ(rejected["bad_checksum"], 1);
  EXPECT_EQ(rejected["spliced"], 1);
  EXPECT_EQ(rejected["missing_checksum"], 2);  // the GLL after the splice and the short RMC
  EXPECT_EQ(rejected["overlong"], 1);
  EXPECT_EQ(rejected["truncated"], 1);
  EXPECT_EQ(rejected["implausible_date"], 1);
  EXPECT_EQ(summary["rejected_total"], 8);

  ASSERT_EQ(r.lines.size(), 3u);
  nlohmann::json fix = nlohmann::json::parse(r.lines[0]);
  EXPECT_EQ(fix["time"], "2025-06-15T12:00:00.000Z");
  EXPECT_DOUBLE_EQ(fix["lat"].get<double>(), 48.1173);
  EXPECT_DOUBLE_EQ(fix["lon"].get<double>(), 11.5166667);
  EXPECT_DOUBLE_EQ(fix["speed_kmh"].get<double>(), 18.5);  // 10 kn = 18.52 km/h, in cm/s
  EXPECT_DOUBLE_EQ(fix["course_deg"].get<double>(), 84.4);
  EXPECT_EQ(fix["mode"], 2);
  EXPECT_TRUE(fix["alt_m"].is_null());
  EXPECT_TRUE(fix["sats"].is_null());
  EXPECT_TRUE(fix["hdop"].is_null());
  EXPECT_TRUE(nlohmann::json::parse(r.lines[1])["time"].is_null());  // 1980: no time

  // Each rejection is explained on stderr with its byte offset (byte 0 is a NUL: dropped).
  EXPECT_NE(r.err.find("bad checksum *00, expected"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("broken.nmea at byte 1: 10 bytes of text outside any sentence"),
            std::string::npos)
      << r.err;
}

TEST(GnssReplayCli, GpsdLogGivesOneJsonLinePerFix) {
  TempDir dir;
  CliRun r =
      Waybillctl("gnss replay --json --min-date 2000-01-01 " + kGpsd + "firefly-II.log", dir);
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_EQ(r.lines.size(), 24u);  // 23 fixes + the summary
  nlohmann::json first = nlohmann::json::parse(r.lines[0]);
  EXPECT_EQ(first["time"], "2010-07-08T00:59:47.000Z");
  EXPECT_NEAR(first["lat"].get<double>(), 37.261026667, 1e-6);  // gpsd's TPV
  EXPECT_NEAR(first["lon"].get<double>(), -121.961181667, 1e-6);
  EXPECT_EQ(first["mode"], 2);
  nlohmann::json summary = nlohmann::json::parse(r.lines.back())["summary"];
  EXPECT_EQ(summary["fixes"], 23);
  EXPECT_EQ(summary["rejected"]["bad_checksum"], 23);
  EXPECT_EQ(summary["by_type"]["ZDA"], 23);
}

TEST(GnssReplayCli, OldDatesGiveNullTimeByDefault) {
  TempDir dir;
  CliRun r = Waybillctl("gnss replay --json -q " + kGpsd + "firefly-II.log", dir);
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_TRUE(nlohmann::json::parse(r.lines[0])["time"].is_null());  // 2010 < build - 1 year
  nlohmann::json summary = nlohmann::json::parse(r.lines.back())["summary"];
  EXPECT_EQ(summary["rejected"]["implausible_date"], 23);
  EXPECT_EQ(r.err, "");  // -q
}

TEST(GnssReplayCli, ChecksumOptionalOnRequest) {
  TempDir dir;
  std::string file = dir.File("nochk.nmea",
                              "$GPGLL,4916.45,N,12311.12,W,225444,A,A\n"
                              "$GPGLL,4916.46,N,12311.12,W,225445,A,A*00\n");
  CliRun strict = Waybillctl("gnss replay --json -q " + file, dir);
  EXPECT_EQ(strict.lines.size(), 1u);  // the summary only
  CliRun lenient = Waybillctl("gnss replay --json -q --no-checksum-required " + file, dir);
  ASSERT_EQ(lenient.lines.size(), 2u);
  nlohmann::json summary = nlohmann::json::parse(lenient.lines.back())["summary"];
  EXPECT_EQ(summary["rejected"]["bad_checksum"], 1);  // a wrong one is still wrong
}

TEST(GnssReplayCli, TableForHumans) {
  TempDir dir;
  CliRun r = Waybillctl("gnss replay -q --min-date 2000-01-01 " + kGpsd + "garmin48.log", dir);
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_GT(r.lines.size(), 3u);
  EXPECT_NE(r.lines[0].find("time (UTC)"), std::string::npos);
  EXPECT_NE(r.lines[1].find("2001-06-06T22:53:08.000Z  -45.4576333  167.1527500"),
            std::string::npos)
      << r.lines[1];
  EXPECT_EQ(r.lines.back(), "rejected: 1 (truncated 1)");
}

TEST(GnssReplayCli, MissingFileIsAClearErrorWithExitOne) {
  TempDir dir;
  CliRun r = Waybillctl("gnss replay /nonexistent/capture.nmea", dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot open /nonexistent/capture.nmea: No such file or directory"),
            std::string::npos)
      << r.err;
}

}  // namespace
