// The kiosk page's files (firmware/kiosk/), compiled into waybilld by cmake/WaybillEmbed.cmake so
// that the unit serves the page with no file installed beside the program.
#pragma once

#include <span>
#include <string_view>

namespace waybill::firmware {

struct EmbeddedFile {
  std::string_view name;          // base name: "index.html"
  std::string_view content_type;  // "text/html; charset=utf-8"
  std::string_view body;
};

// Every kiosk file, in the order CMake lists them. The views point into static storage.
std::span<const EmbeddedFile> KioskFiles();

}  // namespace waybill::firmware
