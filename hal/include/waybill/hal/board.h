// BoardConfig: the hardware map of one board, read from boards/<board>/board.toml.
//
// A board is data, not #ifdefs: the daemon reads this file at start to learn which serial port the
// GNSS receiver is on, which GPIO line carries the ignition, which watchdog to kick and where to
// keep its data. The loader is strict because a typo in a board file would otherwise surface as a
// truck that silently records nothing: unknown keys, wrong types and out-of-range values are errors
// that name the file, the line, the key and what is expected. It checks the file's shape only; it
// does not look for the devices, which may appear later. boards/README.md documents every key.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "waybill/status.h"

namespace waybill::hal {

enum class BoardArch : uint8_t { kAarch64, kArmhf, kX86_64 };
std::string_view ToString(BoardArch arch);

enum class GnssSourceKind : uint8_t { kSerial, kReplay };
std::string_view ToString(GnssSourceKind kind);

struct BoardConfig {
  std::filesystem::path file;  // the board file, absolute

  // [board]
  std::string name;  // "rpi4"; equals the folder name under boards/
  BoardArch arch = BoardArch::kX86_64;
  std::string toolchain;  // "native" or a target triple with toolchains/<triple>.cmake

  // [gnss]
  struct Gnss {
    GnssSourceKind source = GnssSourceKind::kSerial;
    std::string protocol = "nmea";
    std::string device;                 // serial only: "/dev/serial0"
    uint32_t baud = 0;                  // serial only: a standard rate, see IsStandardBaudRate()
    std::filesystem::path replay_file;  // replay only: absolute, resolved
    double replay_speed = 1.0;          // replay only: 1 real time, 10 faster, 0 unpaced
    bool replay_loop = true;            // replay only
  } gnss;

  // [ignition]; absent on boards without an ignition input.
  struct Ignition {
    std::string chip;  // "gpiochip0"
    uint32_t line = 0;
    bool active_low = false;
  };
  std::optional<Ignition> ignition;

  // [watchdog]; absent on boards without a hardware watchdog (use NullWatchdog).
  struct Watchdog {
    std::string device;  // "/dev/watchdog"
    int timeout_s = 0;
  };
  std::optional<Watchdog> watchdog;

  // [storage]
  struct Storage {
    std::filesystem::path data_dir;  // absolute; BoardLoadOptions::data_dir_override wins
  } storage;

  // [leds]: name -> a sysfs LED or a GPIO line. Optional.
  struct Led {
    std::string sysfs_path;  // "/sys/class/leds/ACT"; empty for a GPIO LED
    std::string chip;        // GPIO LED only
    uint32_t line = 0;
    bool active_low = false;
    bool is_gpio() const { return sysfs_path.empty(); }
  };
  std::map<std::string, Led> leds;
};

struct BoardLoadOptions {
  // Base for a relative gnss.replay_file; default: the board file's folder.
  std::optional<std::filesystem::path> replay_base_dir;
  // Replaces storage.data_dir (which must still be valid in the file).
  std::optional<std::filesystem::path> data_dir_override;

  // data_dir_override from $WAYBILL_DATA_DIR and replay_base_dir from $WAYBILL_REPLAY_DIR, when
  // set and not empty. Thread-safe as long as nobody calls setenv() concurrently.
  static BoardLoadOptions FromEnvironment();
};

// Reads and validates a board file. NotFound/IOError if it cannot be read; InvalidArgument with
// every problem found, one per line, each "<file>:<line>:<column>: <what>" (a TOML syntax error
// included). Pure apart from reading file; thread-safe.
Result<BoardConfig> LoadBoardConfig(const std::filesystem::path& file,
                                    const BoardLoadOptions& options = {});

// The same for text already in memory; file names it in errors and anchors relative paths.
Result<BoardConfig> ParseBoardConfig(std::string_view toml_text, const std::filesystem::path& file,
                                     const BoardLoadOptions& options = {});

}  // namespace waybill::hal
