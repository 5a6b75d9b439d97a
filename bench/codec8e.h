// A reference encoder for Teltonika Codec 8 Extended (codec id 0x8E), the de-facto binary AVL
// protocol of truck trackers, written from Teltonika's public protocol description. Used only by
// the wire benchmark to compare Waybill's bytes per fix with what a common tracker would send.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "waybill/hal/gnss_fix.h"

namespace waybill::bench {

struct AvlRecord {
  int64_t ts_ms = 0;
  hal::GnssFix fix;
};

// One TCP packet: preamble (4 zero bytes), data field length (4), codec id 0x8E, number of
// data 1, the AVL records (timestamp 8, priority 1, GPS element 15, IO element with no IOs 14),
// number of data 2, CRC-16/IBM (4). At most 255 records.
std::string EncodeCodec8e(std::span<const AvlRecord> records);

// CRC-16/IBM (reflected polynomial 0xA001, initial value 0), as Teltonika specifies.
uint16_t Crc16Ibm(std::string_view bytes);

}  // namespace waybill::bench
