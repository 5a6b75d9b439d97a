#include "codec8e.h"

#include <algorithm>
#include <cassert>

namespace waybill::bench {

namespace {

void PutBig(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

}  // namespace

uint16_t Crc16Ibm(std::string_view bytes) {
  uint16_t crc = 0;
  for (char c : bytes) {
    crc ^= static_cast<uint8_t>(c);
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ 0xA001 : crc >> 1;
  }
  return crc;
}

std::string EncodeCodec8e(std::span<const AvlRecord> records) {
  assert(records.size() <= 255);
  std::string data;
  data.push_back(static_cast<char>(0x8E));
  data.push_back(static_cast<char>(records.size()));
  for (const AvlRecord& r : records) {
    PutBig(data, static_cast<uint64_t>(r.ts_ms), 8);
    data.push_back(0);  // priority: low
    PutBig(data, static_cast<uint32_t>(r.fix.lon_e7), 4);
    PutBig(data, static_cast<uint32_t>(r.fix.lat_e7), 4);
    PutBig(data, static_cast<uint16_t>(static_cast<int16_t>(r.fix.alt_cm.value_or(0) / 100)), 2);
    PutBig(data, r.fix.course_cdeg.value_or(0) / 100, 2);
    PutBig(data, r.fix.sats.value_or(0), 1);
    PutBig(data, std::min<uint32_t>(r.fix.speed_cmps.value_or(0) * 36 / 1000, 0xFFFF), 2);
    PutBig(data, 0, 2);                                          // event IO id
    PutBig(data, 0, 2);                                          // total IO count
    for (int width = 0; width < 5; ++width) PutBig(data, 0, 2);  // 1, 2, 4, 8 and X-byte IOs
  }
  data.push_back(static_cast<char>(records.size()));
  std::string packet(4, '\0');
  PutBig(packet, data.size(), 4);
  packet += data;
  PutBig(packet, Crc16Ibm(data), 4);
  return packet;
}

}  // namespace waybill::bench
