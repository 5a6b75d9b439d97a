// waybillctl gnss: look at what a GNSS receiver says, through the same parser as the daemon.
//
//   waybillctl gnss replay FILE [--json] [--no-checksum-required] [--min-date YYYY-MM-DD]
//
// Replays a recorded NMEA stream (a serial capture, a gpsd log) and prints the fused fixes and
// what was rejected and why. It exits 0 on any input however broken, since garbled input is
// exactly what a tech is looking at; only a file that cannot be read exits 1.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "waybill/hal/nmea.h"

namespace waybill::ctl {

namespace {

using hal::GnssFix;
using hal::NmeaParser;
using hal::NmeaReject;
using hal::NmeaSentence;
using hal::NmeaStats;

struct ReplayArgs {
  std::string file;
  bool json = false;
  bool no_checksum_required = false;
  std::string min_date;
  bool quiet = false;
};

// "2024-03-01T12:00:05.250Z".
std::string IsoTime(int64_t utc_ms) {
  int64_t days = utc_ms >= 0 ? utc_ms / 86'400'000 : (utc_ms - 86'399'999) / 86'400'000;
  int64_t ms_of_day = utc_ms - days * 86'400'000;
  // civil_from_days (Howard Hinnant)
  int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = yoe + era * 400 + (m <= 2);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03lldZ",
                static_cast<long long>(y), static_cast<long long>(m), static_cast<long long>(d),
                static_cast<long long>(ms_of_day / 3'600'000),
                static_cast<long long>(ms_of_day / 60'000 % 60),
                static_cast<long long>(ms_of_day / 1000 % 60),
                static_cast<long long>(ms_of_day % 1000));
  return buf;
}

// "YYYY-MM-DD" to ms since the Unix epoch; false when it is not such a date.
bool ParseDate(const std::string& s, int64_t* utc_ms) {
  int y = 0;
  unsigned m = 0, d = 0;
  char tail = 0;
  if (std::sscanf(s.c_str(), "%4d-%2u-%2u%c", &y, &m, &d, &tail) != 3) return false;
  if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31) return false;
  int yy = y - (m <= 2);
  const int era = yy / 400;
  const unsigned yoe = static_cast<unsigned>(yy - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  *utc_ms = (static_cast<int64_t>(era) * 146097 + doe - 719468) * 86'400'000;
  return true;
}

nlohmann::json FixJson(const GnssFix& f) {
  nlohmann::json j;
  j["time"] = f.utc_ms ? nlohmann::json(IsoTime(*f.utc_ms)) : nlohmann::json(nullptr);
  j["lat"] = f.lat_e7 / 1e7;
  j["lon"] = f.lon_e7 / 1e7;
  j["alt_m"] = f.alt_cm ? nlohmann::json(*f.alt_cm / 100.0) : nlohmann::json(nullptr);
  j["speed_kmh"] =
      f.speed_cmps ? nlohmann::json(std::round(*f.speed_cmps * 0.036 * 100) / 100) : nullptr;
  j["course_deg"] = f.course_cdeg ? nlohmann::json(*f.course_cdeg / 100.0) : nullptr;
  j["mode"] = static_cast<int>(f.mode);
  j["quality"] = f.quality;
  j["sats"] = f.sats ? nlohmann::json(*f.sats) : nullptr;
  j["hdop"] = f.hdop_c ? nlohmann::json(*f.hdop_c / 100.0) : nullptr;
  return j;
}

nlohmann::json SummaryJson(const NmeaStats& s) {
  nlohmann::json by_type = nlohmann::json::object();
  for (size_t i = 0; i < hal::kNmeaSentenceCount; ++i) {
    by_type[std::string(hal::ToString(static_cast<NmeaSentence>(i)))] = s.by_type[i];
  }
  nlohmann::json rejected = nlohmann::json::object();
  for (size_t i = 0; i < hal::kNmeaRejectCount; ++i) {
    rejected[std::string(hal::ToString(static_cast<NmeaReject>(i)))] = s.rejected[i];
  }
  nlohmann::json j;
  j["bytes"] = s.bytes;
  j["sentences"] = s.sentences;
  j["by_type"] = by_type;
  j["ignored"] = {{"proprietary", s.ignored_proprietary},
                  {"unsupported", s.ignored_unsupported},
                  {"comments", s.ignored_comments},
                  {"nul_bytes", s.nul_bytes}};
  j["rejected"] = rejected;
  j["rejected_total"] = s.rejected_total();
  j["epochs"] = s.epochs;
  j["fixes"] = s.fixes;
  j["no_fix_epochs"] = s.no_fix_epochs;
  j["fixes_without_time"] = s.fixes_without_utc;
  j["fields_dropped"] = s.fields_dropped;
  j["time_steps_back"] = s.time_steps_back;
  return nlohmann::json{{"summary", j}};
}

void PrintTableRow(const GnssFix& f) {
  auto opt = [](bool has, double v, int decimals) {
    char buf[32];
    if (!has) return std::string("-");
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return std::string(buf);
  };
  std::printf("%-24s %12.7f %12.7f %8s %8s %7s %4d %4s %5s\n",
              f.utc_ms ? IsoTime(*f.utc_ms).c_str() : "(no date)", f.lat_e7 / 1e7, f.lon_e7 / 1e7,
              opt(f.alt_cm.has_value(), f.alt_cm.value_or(0) / 100.0, 1).c_str(),
              opt(f.speed_cmps.has_value(), f.speed_cmps.value_or(0) * 0.036, 1).c_str(),
              opt(f.course_cdeg.has_value(), f.course_cdeg.value_or(0) / 100.0, 1).c_str(),
              static_cast<int>(f.mode), opt(f.sats.has_value(), f.sats.value_or(0), 0).c_str(),
              opt(f.hdop_c.has_value(), f.hdop_c.value_or(0) / 100.0, 2).c_str());
}

void PrintTableSummary(const NmeaStats& s) {
  std::printf(
      "\n%llu bytes, %llu sentences decoded, %llu epochs: %llu fixes (%llu without a "
      "plausible date), %llu without a fix\n",
      static_cast<unsigned long long>(s.bytes), static_cast<unsigned long long>(s.sentences),
      static_cast<unsigned long long>(s.epochs), static_cast<unsigned long long>(s.fixes),
      static_cast<unsigned long long>(s.fixes_without_utc),
      static_cast<unsigned long long>(s.no_fix_epochs));
  if (s.fields_dropped > 0 || s.time_steps_back > 0) {
    std::printf("%llu non-numeric values dropped from kept sentences, %llu steps back in time\n",
                static_cast<unsigned long long>(s.fields_dropped),
                static_cast<unsigned long long>(s.time_steps_back));
  }
  std::printf("ignored: %llu proprietary, %llu unsupported, %llu comment lines, %llu NUL bytes\n",
              static_cast<unsigned long long>(s.ignored_proprietary),
              static_cast<unsigned long long>(s.ignored_unsupported),
              static_cast<unsigned long long>(s.ignored_comments),
              static_cast<unsigned long long>(s.nul_bytes));
  std::printf("rejected: %llu", static_cast<unsigned long long>(s.rejected_total()));
  const char* sep = " (";
  for (size_t i = 0; i < hal::kNmeaRejectCount; ++i) {
    if (s.rejected[i] == 0) continue;
    std::printf("%s%s %llu", sep, std::string(hal::ToString(static_cast<NmeaReject>(i))).c_str(),
                static_cast<unsigned long long>(s.rejected[i]));
    sep = ", ";
  }
  std::printf("%s\n", sep[0] == ',' ? ")" : "");
}

int Replay(const ReplayArgs& args) {
  // Log lines go to stderr so that --json output stays one JSON object per line.
  auto logger = std::make_shared<spdlog::logger>(
      "waybillctl", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  spdlog::set_default_logger(logger);

  hal::NmeaOptions options;
  options.require_checksum = !args.no_checksum_required;
  options.skip_comment_lines = true;  // recordings start with '#' header lines
  options.source = args.file;
  options.log_rejections = !args.quiet;
  if (!args.min_date.empty() && !ParseDate(args.min_date, &options.min_plausible_utc_ms)) {
    std::fprintf(stderr, "waybillctl gnss replay: --min-date '%s' is not a YYYY-MM-DD date\n",
                 args.min_date.c_str());
    return 2;
  }
  std::FILE* in = std::fopen(args.file.c_str(), "rb");
  if (in == nullptr) {
    std::fprintf(stderr, "waybillctl gnss replay: cannot open %s: %s\n", args.file.c_str(),
                 std::strerror(errno));
    return 1;
  }
  NmeaParser parser(options);
  if (!args.json) {
    std::printf("%-24s %12s %12s %8s %8s %7s %4s %4s %5s\n", "time (UTC)", "lat", "lon", "alt_m",
                "km/h", "course", "mode", "sats", "hdop");
  }
  auto print = [&](const std::vector<GnssFix>& fixes) {
    for (const GnssFix& f : fixes) {
      if (args.json) {
        std::printf("%s\n", FixJson(f).dump().c_str());
      } else {
        PrintTableRow(f);
      }
    }
  };
  std::vector<uint8_t> chunk(64 * 1024);
  int read_error = 0;
  while (true) {
    size_t n = std::fread(chunk.data(), 1, chunk.size(), in);
    if (n > 0) {
      parser.Feed(std::span<const uint8_t>(chunk.data(), n));
      print(parser.TakeFixes());
    }
    if (n < chunk.size()) {
      if (std::ferror(in)) read_error = errno;
      break;
    }
  }
  std::fclose(in);
  parser.Flush();
  print(parser.TakeFixes());
  if (args.json) {
    std::printf("%s\n", SummaryJson(parser.stats()).dump().c_str());
  } else {
    PrintTableSummary(parser.stats());
  }
  if (read_error != 0) {
    std::fprintf(stderr, "waybillctl gnss replay: reading %s stopped early: %s\n",
                 args.file.c_str(), std::strerror(read_error));
  }
  return 0;
}

}  // namespace

void RegisterGnss(CLI::App& app) {
  CLI::App* gnss = app.add_subcommand("gnss", "GNSS receiver: replay and inspect NMEA streams");
  gnss->require_subcommand(1);
  auto args = std::make_shared<ReplayArgs>();
  CLI::App* replay = gnss->add_subcommand(
      "replay", "Parse a recorded NMEA file and print the fused fixes and what was rejected");
  replay->add_option("file", args->file, "NMEA file (raw receiver output or a gpsd log)")
      ->required();
  replay->add_flag("--json", args->json,
                   "One JSON object per fix, then a last line {\"summary\": ...}");
  replay->add_flag("--no-checksum-required", args->no_checksum_required,
                   "Accept sentences without *hh (a wrong checksum is still rejected)");
  replay->add_option("--min-date", args->min_date,
                     "Earliest plausible date, YYYY-MM-DD (default: a year before this build); "
                     "fixes dated earlier get no time");
  replay->add_flag("-q,--quiet", args->quiet, "Do not log each rejection on stderr");
  replay->callback([args] { SetExitCode(Replay(*args)); });
}

}  // namespace waybill::ctl
