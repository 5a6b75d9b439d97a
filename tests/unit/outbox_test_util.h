// Helpers shared by the outbox tests: a scratch directory and shorthands for events.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "waybill/sync/outbox.h"

namespace waybill::testing {

// A file's raw bytes (empty if it cannot be read): what an attacker copying it would see.
inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/waybill-outbox-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << tmpl << " failed";
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline sync::NewEvent Event(sync::EventClass cls, std::string body = "body",
                            int64_t ts_ms = 1'700'000'000'000,
                            hal::TimeSource src = hal::TimeSource::kGnss) {
  sync::NewEvent e;
  e.cls = cls;
  e.ts_ms = ts_ms;
  e.ts_src = src;
  e.body = std::move(body);
  return e;
}

// An 18-byte breadcrumb body of protobuf-style varints (delta lat/lon, speed, course, hdop...).
inline std::string FixBody(uint32_t i) {
  std::string b;
  auto varint = [&b](uint64_t v) {
    do {
      uint8_t byte = v & 0x7f;
      v >>= 7;
      b.push_back(static_cast<char>(v != 0 ? byte | 0x80 : byte));
    } while (v != 0);
  };
  b.push_back(0x08);
  varint(1000 + i % 5000);  // zigzag delta lat_e7
  b.push_back(0x10);
  varint(2000 + i % 7000);  // zigzag delta lon_e7
  b.push_back(0x18);
  varint(2500 + i % 300);  // speed_cmps
  b.push_back(0x20);
  varint(17000 + i % 1000);  // course_cdeg
  b.push_back(0x28);
  varint(90 + i % 30);  // hdop_c
  b.resize(18, '\0');
  return b;
}

}  // namespace waybill::testing
