// Test support: waybilld as a child process with its own data directory and waybill.toml.
//
// Start() writes the config ([device], [storage] in the test's directory, [api] on a free port,
// plus whatever the test adds), execs the built waybilld on the host-sim board replaying the
// Munich drive, and waits until its local API listens. Stop() sends a signal and reaps it.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace waybill::testing {

inline std::string ReadWholeFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class WaybilldProcess {
 public:
  explicit WaybilldProcess(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
  }
  ~WaybilldProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Extra TOML appended to waybill.toml (e.g. an [uplink] section).
  void set_extra_config(std::string toml) { extra_config_ = std::move(toml); }
  void set_device_id(std::string id) { device_id_ = std::move(id); }
  std::filesystem::path data_dir() const { return dir_ / "data"; }
  const std::filesystem::path& log_path() const { return log_; }
  std::string log() const { return ReadWholeFile(log_); }
  int port() const { return port_; }

  // Starts waybilld replaying at `speed`; returns its API port, or -1 with `error` set.
  int Start(double speed, std::string* error) {
    std::ofstream(dir_ / "waybill.toml")
        << "[device]\nid = \"" << device_id_ << "\"\n[storage]\ndata_dir = \""
        << data_dir().string()
        << "\"\n[api]\nport = 0\n[health]\nperiod_s = 10\n"
        << extra_config_;
    log_ = dir_ / ("waybilld-" + std::to_string(++starts_) + ".log");
    std::string board = std::string(WAYBILL_SOURCE_DIR) + "/boards/host-sim/board.toml";
    pid_ = fork();
    if (pid_ == 0) {
      FILE* out = freopen(log_.c_str(), "w", stdout);
      FILE* err = freopen(log_.c_str(), "a", stderr);
      (void)out;
      (void)err;
      std::string speed_arg = std::to_string(speed);
      execl(WAYBILLD_PATH, "waybilld", "--board", board.c_str(), "--config",
            (dir_ / "waybill.toml").c_str(), "--replay-speed", speed_arg.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 300; ++i) {
      std::string text = log();
      auto at = text.find("local API on http://127.0.0.1:");
      if (at != std::string::npos) return port_ = std::atoi(text.c_str() + at + 30);
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        if (error) *error = "waybilld exited early:\n" + text;
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (error) *error = "waybilld did not start within 15 s:\n" + log();
    return -1;
  }

  // Sends `sig` and waits at most 10 s; returns the waitpid status, or nullopt if it still runs.
  std::optional<int> Stop(int sig) {
    kill(pid_, sig);
    for (int i = 0; i < 200; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::nullopt;
  }

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
  pid_t pid_ = -1;
  int port_ = -1;
  int starts_ = 0;
};

}  // namespace waybill::testing
