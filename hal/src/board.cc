// The board file loader: toml++ parses, a Checker validates and collects every problem.
//
// toml++ throws toml::parse_error on bad syntax; it is caught here and never leaves this file.
#include "waybill/hal/board.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <vector>

#include "waybill/hal/serial.h"

namespace waybill::hal {

namespace {

constexpr std::string_view kArchs = "aarch64, armhf, x86_64";

std::string TypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

// How a value appears in an error: as written in TOML for scalars.
std::string Render(const toml::node& node) {
  if (node.is_table()) return "{...}";
  if (node.is_array()) return "[...]";
  if (const auto* text = node.as_string()) {
    // As a person typed it: toml++ would print a literal string in single quotes.
    std::string out = "\"";
    for (char ch : text->get()) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    return out + "\"";
  }
  std::ostringstream out;
  node.visit([&out](const auto& value) { out << value; });
  return out.str();
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string Join(std::initializer_list<std::string_view> items) {
  std::string out;
  for (std::string_view item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

bool IsName(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

class Checker {
 public:
  explicit Checker(std::string file) : file_(std::move(file)) {}

  void Error(const toml::source_region& where, const std::string& what) {
    std::string prefix = file_;
    if (where.begin.line > 0) {
      prefix += ":" + std::to_string(where.begin.line) + ":" + std::to_string(where.begin.column);
    }
    errors_.push_back(prefix + ": " + what);
  }
  void Error(const std::string& what) { Error(toml::source_region{}, what); }

  bool ok() const { return errors_.empty(); }
  std::string Joined() const {
    std::string out;
    for (const std::string& e : errors_) {
      if (!out.empty()) out += "\n";
      out += e;
    }
    return out;
  }

  // Flags every key of table not in known. section is "gnss" or "" for the top level.
  void RejectUnknown(const toml::table& table, std::string_view section,
                     std::initializer_list<std::string_view> known) {
    for (auto&& [key, node] : table) {
      bool found = false;
      for (std::string_view k : known) found = found || k == key.str();
      if (found) continue;
      std::string hint;
      for (std::string_view k : known) {
        if (EditDistance(k, key.str()) <= 2) {
          hint = " (did you mean " + std::string(k) + "?)";
          break;
        }
      }
      if (section.empty() && node.is_table()) {
        Error(key.source(), "unknown table [" + std::string(key.str()) + "]" + hint +
                                "; a board file has: " + Join(known));
      } else if (section.empty()) {
        Error(key.source(), "unknown top-level key " + std::string(key.str()) +
                                "; every key belongs in one of: " + Join(known));
      } else {
        Error(key.source(), "unknown key " + std::string(section) + "." + std::string(key.str()) +
                                hint + "; [" + std::string(section) + "] takes: " + Join(known));
      }
    }
  }

  const toml::table* Table(const toml::table& root, std::string_view name, bool required,
                           std::string_view expected) {
    const toml::node* node = root.get(name);
    if (node == nullptr) {
      if (required) {
        Error("[" + std::string(name) + "] is missing (expected " + std::string(expected) + ")");
      }
      return nullptr;
    }
    if (!node->is_table()) {
      Error(node->source(), std::string(name) + " is " + TypeName(*node) + ", expected a table [" +
                                std::string(name) + "] with " + std::string(expected));
      return nullptr;
    }
    return node->as_table();
  }

  // The node at section.key checked for type; nullptr (and an error if required) when absent or
  // of the wrong type.
  const toml::node* Get(const toml::table& table, std::string_view section, std::string_view key,
                        toml::node_type type, bool required, std::string_view expected) {
    const toml::node* node = table.get(key);
    std::string name = std::string(section) + "." + std::string(key);
    if (node == nullptr) {
      if (required) {
        Error(table.source(), name + " is missing (expected " + std::string(expected) + ")");
      }
      return nullptr;
    }
    bool type_ok =
        node->type() == type || (type == toml::node_type::floating_point && node->is_integer());
    if (!type_ok) {
      std::string want = type == toml::node_type::string    ? "a string"
                         : type == toml::node_type::integer ? "an integer"
                         : type == toml::node_type::boolean ? "a boolean (true or false)"
                                                            : "a number";
      Error(node->source(), name + " = " + Render(*node) + " is " + TypeName(*node) +
                                ", expected " + want + " (" + std::string(expected) + ")");
      return nullptr;
    }
    return node;
  }

  std::optional<std::string> String(const toml::table& table, std::string_view section,
                                    std::string_view key, bool required,
                                    std::string_view expected) {
    const toml::node* node = Get(table, section, key, toml::node_type::string, required, expected);
    if (node == nullptr) return std::nullopt;
    return node->value<std::string>();
  }

  std::optional<int64_t> Integer(const toml::table& table, std::string_view section,
                                 std::string_view key, bool required, std::string_view expected) {
    const toml::node* node = Get(table, section, key, toml::node_type::integer, required, expected);
    if (node == nullptr) return std::nullopt;
    return node->value<int64_t>();
  }

  std::optional<double> Number(const toml::table& table, std::string_view section,
                               std::string_view key, bool required, std::string_view expected) {
    const toml::node* node =
        Get(table, section, key, toml::node_type::floating_point, required, expected);
    if (node == nullptr) return std::nullopt;
    return node->value<double>();
  }

  std::optional<bool> Bool(const toml::table& table, std::string_view section, std::string_view key,
                           bool required, std::string_view expected) {
    const toml::node* node = Get(table, section, key, toml::node_type::boolean, required, expected);
    if (node == nullptr) return std::nullopt;
    return node->value<bool>();
  }

  // Reports "section.key = value <problem>" at the value's position.
  void Bad(const toml::table& table, std::string_view section, std::string_view key,
           const std::string& problem) {
    const toml::node* node = table.get(key);
    std::string name = std::string(section) + "." + std::string(key);
    if (node == nullptr) {
      Error(table.source(), name + " " + problem);
    } else {
      Error(node->source(), name + " = " + Render(*node) + " " + problem);
    }
  }

  // Forbids a key that only makes sense for another setting.
  void Forbid(const toml::table& table, std::string_view section, std::string_view key,
              const std::string& why) {
    if (const toml::node* node = table.get(key)) {
      Error(node->source(), std::string(section) + "." + std::string(key) + " " + why);
    }
  }

 private:
  std::string file_;
  std::vector<std::string> errors_;
};

bool IsAbsolutePath(const std::string& s) { return !s.empty() && s[0] == '/'; }

void CheckBoard(Checker& c, const toml::table& root, BoardConfig& config) {
  const toml::table* t = c.Table(root, "board", true, "name, arch and toolchain");
  if (t == nullptr) return;
  c.RejectUnknown(*t, "board", {"name", "arch", "toolchain"});
  constexpr std::string_view kNameHelp = "lower-case letters, digits and '-', like the folder name";
  if (auto name = c.String(*t, "board", "name", true, kNameHelp)) {
    if (!IsName(*name)) {
      c.Bad(*t, "board", "name", "is not a board name (" + std::string(kNameHelp) + ")");
    }
    config.name = *name;
  }
  std::optional<std::string> arch =
      c.String(*t, "board", "arch", true, "one of " + std::string(kArchs));
  if (arch) {
    if (*arch == "aarch64") {
      config.arch = BoardArch::kAarch64;
    } else if (*arch == "armhf") {
      config.arch = BoardArch::kArmhf;
    } else if (*arch == "x86_64") {
      config.arch = BoardArch::kX86_64;
    } else {
      c.Bad(*t, "board", "arch", "is not a supported architecture (" + std::string(kArchs) + ")");
      arch.reset();
    }
  }
  constexpr std::string_view kToolchainHelp =
      "\"native\" or a target triple with a toolchains/<triple>.cmake, e.g. aarch64-linux-gnu";
  if (auto toolchain = c.String(*t, "board", "toolchain", true, kToolchainHelp)) {
    config.toolchain = *toolchain;
    bool shape_ok =
        *toolchain == "native" || (IsName(*toolchain) && toolchain->find('-') != std::string::npos);
    if (!shape_ok) {
      c.Bad(*t, "board", "toolchain", "is not a toolchain (" + std::string(kToolchainHelp) + ")");
    } else if (arch && *toolchain != "native") {
      std::string_view want = config.arch == BoardArch::kAarch64 ? "aarch64-"
                              : config.arch == BoardArch::kArmhf ? "arm-"
                                                                 : "x86_64-";
      if (toolchain->rfind(want, 0) != 0) {
        c.Bad(*t, "board", "toolchain",
              "does not build for arch " + *arch +
                  " (expected \"native\" or a triple starting "
                  "with " +
                  std::string(want) + ")");
      }
    }
  }
}

void CheckGnss(Checker& c, const toml::table& root, const std::filesystem::path& base_dir,
               BoardConfig& config) {
  const toml::table* t = c.Table(root, "gnss", true, "source = \"serial\" or \"replay\"");
  if (t == nullptr) return;
  c.RejectUnknown(
      *t, "gnss",
      {"source", "protocol", "device", "baud", "replay_file", "replay_speed", "replay_loop"});
  if (auto protocol = c.String(*t, "gnss", "protocol", false, "\"nmea\"")) {
    if (*protocol != "nmea") c.Bad(*t, "gnss", "protocol", "is not supported (expected \"nmea\")");
    config.gnss.protocol = *protocol;
  }
  auto source = c.String(*t, "gnss", "source", true, "\"serial\" or \"replay\"");
  if (!source) return;
  const std::string baud_help = "a standard baud rate: " + StandardBaudRatesText();
  if (*source == "serial") {
    config.gnss.source = GnssSourceKind::kSerial;
    if (auto device = c.String(*t, "gnss", "device", true, "a device path like /dev/ttyUSB0")) {
      if (!IsAbsolutePath(*device)) {
        c.Bad(*t, "gnss", "device", "is not an absolute device path (like /dev/ttyUSB0)");
      }
      config.gnss.device = *device;
    }
    if (auto baud = c.Integer(*t, "gnss", "baud", true, baud_help)) {
      if (*baud < 0 || *baud > UINT32_MAX || !IsStandardBaudRate(static_cast<uint32_t>(*baud))) {
        c.Bad(*t, "gnss", "baud", "is not a standard baud rate (" + StandardBaudRatesText() + ")");
      } else {
        config.gnss.baud = static_cast<uint32_t>(*baud);
      }
    }
    for (std::string_view key : {"replay_file", "replay_speed", "replay_loop"}) {
      c.Forbid(*t, "gnss", key, "is only for source = \"replay\" (this board has \"serial\")");
    }
  } else if (*source == "replay") {
    config.gnss.source = GnssSourceKind::kReplay;
    if (auto file = c.String(*t, "gnss", "replay_file", true,
                             "an NMEA file, relative to the board file's folder")) {
      if (file->empty()) {
        c.Bad(*t, "gnss", "replay_file", "is empty (expected the path of an NMEA file)");
      } else {
        std::filesystem::path path(*file);
        if (path.is_relative()) path = base_dir / path;
        config.gnss.replay_file = path.lexically_normal();
      }
    }
    constexpr std::string_view kSpeedHelp = "1 real time, 10 ten times faster, 0 unpaced";
    if (auto speed = c.Number(*t, "gnss", "replay_speed", false, kSpeedHelp)) {
      if (!std::isfinite(*speed) || *speed < 0) {
        c.Bad(*t, "gnss", "replay_speed",
              "is not a speed factor >= 0 (" + std::string(kSpeedHelp) + ")");
      } else {
        config.gnss.replay_speed = *speed;
      }
    }
    if (auto loop = c.Bool(*t, "gnss", "replay_loop", false, "start over at the end")) {
      config.gnss.replay_loop = *loop;
    }
    for (std::string_view key : {"device", "baud"}) {
      c.Forbid(*t, "gnss", key, "is only for source = \"serial\" (this board has \"replay\")");
    }
  } else {
    c.Bad(*t, "gnss", "source", "is not a GNSS source (expected \"serial\" or \"replay\")");
  }
}

// A GPIO chip and line, shared by [ignition] and GPIO LEDs.
void CheckGpio(Checker& c, const toml::table& t, std::string_view section, std::string& chip,
               uint32_t& line, bool& active_low) {
  if (auto value = c.String(t, section, "chip", true, "a GPIO chip like \"gpiochip0\"")) {
    if (value->empty()) c.Bad(t, section, "chip", "is empty (expected a GPIO chip like gpiochip0)");
    chip = *value;
  }
  if (auto value = c.Integer(t, section, "line", true, "the line offset on the chip, 0..65535")) {
    if (*value < 0 || *value > 65535) {
      c.Bad(t, section, "line", "is not a line offset (expected 0..65535)");
    } else {
      line = static_cast<uint32_t>(*value);
    }
  }
  if (auto value = c.Bool(t, section, "active_low", false, "true when a low level means on")) {
    active_low = *value;
  }
}

void CheckIgnition(Checker& c, const toml::table& root, BoardConfig& config) {
  const toml::table* t = c.Table(root, "ignition", false, "chip, line and active_low");
  if (t == nullptr) return;
  c.RejectUnknown(*t, "ignition", {"chip", "line", "active_low"});
  BoardConfig::Ignition ignition;
  CheckGpio(c, *t, "ignition", ignition.chip, ignition.line, ignition.active_low);
  config.ignition = ignition;
}

void CheckWatchdog(Checker& c, const toml::table& root, BoardConfig& config) {
  const toml::table* t = c.Table(root, "watchdog", false, "device and timeout_s");
  if (t == nullptr) return;
  c.RejectUnknown(*t, "watchdog", {"device", "timeout_s"});
  BoardConfig::Watchdog watchdog;
  if (auto device = c.String(*t, "watchdog", "device", true, "a device path like /dev/watchdog")) {
    if (!IsAbsolutePath(*device)) {
      c.Bad(*t, "watchdog", "device", "is not an absolute device path (like /dev/watchdog)");
    }
    watchdog.device = *device;
  }
  if (auto timeout = c.Integer(*t, "watchdog", "timeout_s", true, "seconds, 1..3600")) {
    if (*timeout < 1 || *timeout > 3600) {
      c.Bad(*t, "watchdog", "timeout_s", "is out of range (expected seconds, 1..3600)");
    } else {
      watchdog.timeout_s = static_cast<int>(*timeout);
    }
  }
  config.watchdog = watchdog;
}

void CheckStorage(Checker& c, const toml::table& root, BoardConfig& config) {
  const toml::table* t = c.Table(root, "storage", true, "data_dir = an absolute path");
  if (t == nullptr) return;
  c.RejectUnknown(*t, "storage", {"data_dir"});
  if (auto dir = c.String(*t, "storage", "data_dir", true, "an absolute path")) {
    if (!IsAbsolutePath(*dir)) {
      c.Bad(*t, "storage", "data_dir", "is not an absolute path (like /var/lib/waybill)");
    }
    config.storage.data_dir = *dir;
  }
}

void CheckLeds(Checker& c, const toml::table& root, BoardConfig& config) {
  const toml::table* t = c.Table(root, "leds", false, "name = a sysfs LED path or a GPIO line");
  if (t == nullptr) return;
  constexpr std::string_view kLedHelp =
      "a sysfs LED path like \"/sys/class/leds/ACT\" or { chip = \"gpiochip0\", line = 5 }";
  for (auto&& [key, node] : *t) {
    std::string name(key.str());
    std::string full = "leds." + name;
    if (!IsName(name)) {
      c.Error(key.source(), "LED name " + full +
                                " is not a name (lower-case letters, digits, "
                                "'-' and '_')");
      continue;
    }
    BoardConfig::Led led;
    if (node.is_string()) {
      led.sysfs_path = *node.value<std::string>();
      if (led.sysfs_path.rfind("/sys/class/leds/", 0) != 0 ||
          led.sysfs_path.size() <= std::string_view("/sys/class/leds/").size()) {
        c.Bad(*t, "leds", name, "is not a sysfs LED (expected " + std::string(kLedHelp) + ")");
        continue;
      }
    } else if (const toml::table* gpio = node.as_table()) {
      c.RejectUnknown(*gpio, full, {"chip", "line", "active_low"});
      CheckGpio(c, *gpio, full, led.chip, led.line, led.active_low);
    } else {
      c.Error(node.source(), full + " = " + Render(node) + " is " + TypeName(node) + ", expected " +
                                 std::string(kLedHelp));
      continue;
    }
    config.leds[name] = led;
  }
}

}  // namespace

std::string_view ToString(BoardArch arch) {
  switch (arch) {
    case BoardArch::kAarch64:
      return "aarch64";
    case BoardArch::kArmhf:
      return "armhf";
    case BoardArch::kX86_64:
      return "x86_64";
  }
  return "unknown";
}

std::string_view ToString(GnssSourceKind kind) {
  switch (kind) {
    case GnssSourceKind::kSerial:
      return "serial";
    case GnssSourceKind::kReplay:
      return "replay";
  }
  return "unknown";
}

BoardLoadOptions BoardLoadOptions::FromEnvironment() {
  BoardLoadOptions options;
  const char* data_dir = std::getenv("WAYBILL_DATA_DIR");
  if (data_dir != nullptr && *data_dir != '\0') options.data_dir_override = data_dir;
  const char* replay_dir = std::getenv("WAYBILL_REPLAY_DIR");
  if (replay_dir != nullptr && *replay_dir != '\0') options.replay_base_dir = replay_dir;
  return options;
}

Result<BoardConfig> ParseBoardConfig(std::string_view toml_text, const std::filesystem::path& file,
                                     const BoardLoadOptions& options) {
  std::string file_name = file.string();
  toml::table root;
  try {
    root = toml::parse(toml_text, file_name);
  } catch (const toml::parse_error& e) {
    const toml::source_position& at = e.source().begin;
    return Status::InvalidArgument(file_name + ":" + std::to_string(at.line) + ":" +
                                   std::to_string(at.column) +
                                   ": TOML syntax error: " + std::string(e.description()));
  }

  BoardConfig config;
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(file, ec);
  config.file = ec ? file : absolute.lexically_normal();
  std::filesystem::path base_dir =
      options.replay_base_dir ? *options.replay_base_dir : config.file.parent_path();

  Checker c(file_name);
  c.RejectUnknown(root, "", {"board", "gnss", "ignition", "watchdog", "storage", "leds"});
  CheckBoard(c, root, config);
  CheckGnss(c, root, base_dir, config);
  CheckIgnition(c, root, config);
  CheckWatchdog(c, root, config);
  CheckStorage(c, root, config);
  CheckLeds(c, root, config);
  if (!c.ok()) return Status::InvalidArgument(c.Joined());
  if (options.data_dir_override) config.storage.data_dir = *options.data_dir_override;
  return config;
}

Result<BoardConfig> LoadBoardConfig(const std::filesystem::path& file,
                                    const BoardLoadOptions& options) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    int err = errno;
    std::string msg = "cannot read board file " + file.string() + ": " + std::strerror(err);
    if (err == ENOENT) return Status::NotFound(std::move(msg));
    return Status::IOError(std::move(msg));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::IOError("cannot read board file " + file.string());
  return ParseBoardConfig(text.str(), file, options);
}

}  // namespace waybill::hal
