// A fused GNSS fix: what one receiver epoch says about where and when the truck is.
//
// Plain struct with units in every name. Produced by the NMEA pipeline (waybill/hal/nmea.h),
// thinned by the sampling policy, stored in the outbox, encoded at the edge.
#pragma once

#include <cstdint>
#include <optional>

namespace waybill::hal {

enum class FixMode : uint8_t { kNoFix = 1, k2D = 2, k3D = 3 };

struct GnssFix {
  // UTC time of the epoch in ms since the Unix epoch; nullopt when the receiver gave no
  // plausible date and time (see NmeaParser: the 1980 default or a rollover date is rejected).
  std::optional<int64_t> utc_ms;
  int32_t lat_e7 = 0;  // degrees * 1e7, north positive
  int32_t lon_e7 = 0;  // degrees * 1e7, east positive
  std::optional<int32_t> alt_cm;        // above mean sea level
  std::optional<uint32_t> speed_cmps;   // over ground, cm/s
  std::optional<uint16_t> course_cdeg;  // true, 0..35999 hundredths of a degree
  std::optional<uint16_t> hdop_c;       // HDOP * 100
  std::optional<uint8_t> sats;          // satellites used
  FixMode mode = FixMode::kNoFix;
  uint8_t quality = 0;  // GGA fix quality: 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 estimated

  bool has_position() const { return mode != FixMode::kNoFix; }
};

}  // namespace waybill::hal
