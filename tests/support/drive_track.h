// Test support: real drives as fix streams, and how far a thinned track strays from the full one.
//
// A deliberately small $GPRMC reader (the project's NMEA parser lives in hal/), enough to replay
// the recorded drives in tests/data/nmea/drives through the sampler: checksum checked, other
// sentences skipped, the receiver's UTC doubling as the monotonic time of reception.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "waybill/firmware/sampler.h"
#include "waybill/hal/gnss_fix.h"

namespace waybill::testing {

struct TrackPoint {
  hal::GnssFix fix;
  int64_t mono_ms = 0;
};

namespace detail {

inline std::vector<std::string_view> SplitFields(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == ',') {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

inline bool ChecksumOk(std::string_view line) {
  size_t star = line.find('*');
  if (line.empty() || line[0] != '$' || star == std::string_view::npos || star + 3 > line.size()) {
    return false;
  }
  unsigned sum = 0;
  for (size_t i = 1; i < star; ++i) sum ^= static_cast<unsigned char>(line[i]);
  return std::strtoul(std::string(line.substr(star + 1, 2)).c_str(), nullptr, 16) == sum;
}

// "4810.8509" + "N" -> degrees * 1e7.
inline std::optional<int32_t> ParseCoordE7(std::string_view value, std::string_view hemi,
                                           int degree_digits) {
  if (value.size() < static_cast<size_t>(degree_digits) + 2) return std::nullopt;
  double deg = std::atof(std::string(value.substr(0, degree_digits)).c_str());
  double min = std::atof(std::string(value.substr(degree_digits)).c_str());
  double e7 = (deg + min / 60.0) * 1e7;
  if (hemi == "S" || hemi == "W") e7 = -e7;
  return static_cast<int32_t>(std::llround(e7));
}

// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
inline int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

inline std::optional<int64_t> ParseUtcMs(std::string_view hhmmss, std::string_view ddmmyy) {
  if (hhmmss.size() < 6 || ddmmyy.size() != 6) return std::nullopt;
  auto num = [](std::string_view s) { return std::atoi(std::string(s).c_str()); };
  const int hh = num(hhmmss.substr(0, 2)), mm = num(hhmmss.substr(2, 2));
  const double ss = std::atof(std::string(hhmmss.substr(4)).c_str());
  const int day = num(ddmmyy.substr(0, 2)), mon = num(ddmmyy.substr(2, 2));
  const int yy = num(ddmmyy.substr(4, 2));
  const int64_t days =
      DaysFromCivil(2000 + yy, static_cast<unsigned>(mon), static_cast<unsigned>(day));
  return days * 86400000 + (hh * 3600 + mm * 60) * 1000LL + std::llround(ss * 1000);
}

}  // namespace detail

// Every $GPRMC sentence of an NMEA file with a good checksum, in order. A fix with status V has
// mode kNoFix. mono_ms counts from the first sentence with a time; a sentence without a time
// gets the previous one's. Returns an empty vector if the file cannot be read.
inline std::vector<TrackPoint> ReadRmcTrack(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  std::vector<TrackPoint> out;
  std::optional<int64_t> first_utc_ms;
  int64_t last_mono_ms = 0;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && text[i] != '\r' && text[i] != '\n') continue;
    std::string_view line(text.data() + start, i - start);
    start = i + 1;
    if (!line.starts_with("$GPRMC,") || !detail::ChecksumOk(line)) continue;
    line = line.substr(0, line.find('*'));
    const std::vector<std::string_view> f = detail::SplitFields(line);
    if (f.size() < 10) continue;
    TrackPoint p;
    p.fix.utc_ms = detail::ParseUtcMs(f[1], f[9]);
    if (p.fix.utc_ms) {
      if (!first_utc_ms) first_utc_ms = p.fix.utc_ms;
      last_mono_ms = *p.fix.utc_ms - *first_utc_ms;
    }
    p.mono_ms = last_mono_ms;
    std::optional<int32_t> lat = detail::ParseCoordE7(f[3], f[4], 2);
    std::optional<int32_t> lon = detail::ParseCoordE7(f[5], f[6], 3);
    if (f[2] == "A" && lat && lon) {
      p.fix.mode = hal::FixMode::k2D;
      p.fix.quality = 1;
      p.fix.lat_e7 = *lat;
      p.fix.lon_e7 = *lon;
      if (!f[7].empty()) {
        p.fix.speed_cmps =
            static_cast<uint32_t>(std::llround(std::atof(std::string(f[7]).c_str()) * 51.4444));
      }
      if (!f[8].empty()) {
        p.fix.course_cdeg =
            static_cast<uint16_t>(std::llround(std::atof(std::string(f[8]).c_str()) * 100) % 36000);
      }
    }
    out.push_back(p);
  }
  return out;
}

// Distance in metres from point p to the segment a-b, on a local plane tangent at a
// (equirectangular; exact enough for the tens of metres this measures).
inline double PointToSegmentM(const hal::GnssFix& p, const hal::GnssFix& a, const hal::GnssFix& b) {
  constexpr double kMPerE7 = 6371008.8 * 3.14159265358979323846 / 180.0 / 1e7;
  const double cos_lat = std::cos(a.lat_e7 / 1e7 * 3.14159265358979323846 / 180.0);
  auto x = [&](const hal::GnssFix& q) {
    return (static_cast<double>(q.lon_e7) - a.lon_e7) * cos_lat * kMPerE7;
  };
  auto y = [&](const hal::GnssFix& q) {
    return (static_cast<double>(q.lat_e7) - a.lat_e7) * kMPerE7;
  };
  const double bx = x(b), by = y(b), px = x(p), py = y(p);
  const double len2 = bx * bx + by * by;
  double t = len2 > 0 ? (px * bx + py * by) / len2 : 0.0;
  t = std::clamp(t, 0.0, 1.0);
  return std::hypot(px - t * bx, py - t * by);
}

struct ThinningFigures {
  size_t received = 0;       // fixes offered (every RMC)
  size_t with_position = 0;  // of which had a position
  size_t kept = 0;
  double max_deviation_m = 0;  // largest distance of a full-track point to the thinned track
  double p99_deviation_m = 0;  // 99th percentile of the same, over the dropped points
  size_t worst_index = 0;      // index in the track of that point
};

// For every point with a position, the distance to the thinned polyline between the kept fixes
// around it (the last kept at or before it and the first kept after it; only the last kept one
// when none follows). `kept[i]` says whether track[i] was kept.
inline ThinningFigures MeasureThinning(const std::vector<TrackPoint>& track,
                                       const std::vector<bool>& kept) {
  ThinningFigures out;
  out.received = track.size();
  std::vector<double> deviations_m;
  std::optional<size_t> prev;
  size_t next_search = 0;
  size_t next = 0;  // the first kept point after i; track.size() when there is none
  for (size_t i = 0; i < track.size(); ++i) {
    if (!track[i].fix.has_position()) continue;
    ++out.with_position;
    if (kept[i]) {
      ++out.kept;
      prev = i;
      continue;
    }
    if (!prev) continue;  // nothing kept yet: the sampler keeps the first fix, so never here
    if (next <= i) {
      next = track.size();
      for (next_search = std::max(next_search, i + 1); next_search < track.size(); ++next_search) {
        if (kept[next_search]) {
          next = next_search;
          break;
        }
      }
    }
    const hal::GnssFix& a = track[*prev].fix;
    const hal::GnssFix& b = next < track.size() ? track[next].fix : a;
    const double d = PointToSegmentM(track[i].fix, a, b);
    deviations_m.push_back(d);
    if (d > out.max_deviation_m) {
      out.max_deviation_m = d;
      out.worst_index = i;
    }
  }
  if (!deviations_m.empty()) {
    const size_t k = deviations_m.size() * 99 / 100;
    std::nth_element(deviations_m.begin(), deviations_m.begin() + static_cast<ptrdiff_t>(k),
                     deviations_m.end());
    out.p99_deviation_m = deviations_m[k];
  }
  return out;
}

// Offers the whole track to `sampler`; returns which points were kept, late keeps included.
inline std::vector<bool> ThinWithSampler(const std::vector<TrackPoint>& track,
                                         firmware::Sampler& sampler) {
  std::vector<bool> kept(track.size());
  std::optional<size_t> last_with_position;
  for (size_t i = 0; i < track.size(); ++i) {
    const firmware::SampleDecision d = sampler.Offer(track[i].fix, track[i].mono_ms);
    if (d.late && last_with_position) kept[*last_with_position] = true;
    kept[i] = d.keep;
    if (track[i].fix.has_position()) last_with_position = i;
  }
  return kept;
}

}  // namespace waybill::testing
