// Test support: waybilld as a child process with its own data directory and waybill.toml.
//
// Start() writes the config ([device], [storage] in the test's directory, [api] on a free port,
// plus whatever the test adds), execs the built waybilld on the host-sim board replaying the
// Munich drive, and waits until its local API listens. Stop() sends a signal and reaps it.
#pragma once

#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.h"

namespace waybill::testing {

class WaybilldProcess {
 public:
  explicit WaybilldProcess(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
  }

  // Extra TOML appended to waybill.toml (e.g. an [uplink] section).
  void set_extra_config(std::string toml) { extra_config_ = std::move(toml); }
  void set_device_id(std::string id) { device_id_ = std::move(id); }
  // More lines for the [device] section (e.g. key_file = "...").
  void set_device_config(std::string toml) { device_config_ = std::move(toml); }
  // Starts with this waybill.toml as it is (e.g. one written by `waybillctl provision`) instead
  // of writing one; only the API port is overridden (0: any free port).
  void set_config_file(std::filesystem::path path) { config_file_ = std::move(path); }
  std::filesystem::path data_dir() const { return dir_ / "data"; }
  const std::filesystem::path& log_path() const { return log_; }
  std::string log() const { return ReadWholeFile(log_); }
  int port() const { return port_; }

  // Starts waybilld replaying at `speed`; returns its API port, or -1 with `error` set.
  int Start(double speed, std::string* error) {
    std::vector<std::string> argv;
    if (config_file_.empty()) {
      std::ofstream(dir_ / "waybill.toml")
          << "[device]\nid = \"" << device_id_ << "\"\n"
          << device_config_ << "[storage]\ndata_dir = \"" << data_dir().string()
          << "\"\n[api]\nport = 0\n[health]\nperiod_s = 10\n"
          << extra_config_;
      argv = {"--config", (dir_ / "waybill.toml").string()};
    } else {
      argv = {"--config", config_file_.string(), "--api-port", "0"};
    }
    log_ = dir_ / ("waybilld-" + std::to_string(++starts_) + ".log");
    std::string board = std::string(WAYBILL_SOURCE_DIR) + "/boards/host-sim/board.toml";
    argv.insert(argv.begin(), {WAYBILLD_PATH, "--board", board});
    argv.insert(argv.end(), {"--replay-speed", std::to_string(speed)});
    if (!child_.Spawn(argv, log_)) {
      if (error) *error = "cannot start waybilld (still running, or fork failed)";
      return -1;
    }
    for (int i = 0; i < 300; ++i) {
      std::string text = log();
      auto at = text.find("local API on http://127.0.0.1:");
      if (at != std::string::npos) return port_ = std::atoi(text.c_str() + at + 30);
      if (child_.Poll()) {
        if (error) *error = "waybilld exited early:\n" + text;
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (error) *error = "waybilld did not start within 15 s:\n" + log();
    return -1;
  }

  // Sends `sig` and waits at most 10 s; returns the waitpid status, or nullopt if it still runs.
  std::optional<int> Stop(int sig) { return child_.Stop(sig, 10'000); }

  // GET /v1/status, or a null JSON if it does not answer.
  nlohmann::json Status() const {
    httplib::Client client("127.0.0.1", port_);
    auto res = client.Get("/v1/status");
    return res && res->status == 200 ? nlohmann::json::parse(res->body) : nlohmann::json();
  }

  // Polls GET /v1/status until `pred` holds, at most `timeout_ms`.
  template <typename Pred>
  bool WaitForStatus(Pred pred, int timeout_ms) const {
    for (int waited = 0; waited < timeout_ms; waited += 50) {
      nlohmann::json st = Status();
      if (!st.is_null() && pred(st)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

 private:
  std::filesystem::path dir_;
  std::filesystem::path log_;
  std::string extra_config_;
  std::string device_id_ = "it-truck";
  std::string device_config_;
  std::filesystem::path config_file_;
  ChildProcess child_;  // killed with SIGKILL if still running when this is destroyed
  int port_ = -1;
  int starts_ = 0;
};

}  // namespace waybill::testing
