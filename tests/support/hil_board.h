// Test support: the qemu-virt-aarch64 board (docs/HIL.md) as a child process of the test.
//
// Boot() runs boards/qemu-virt-aarch64/run in the foreground, where QEMU takes the script's place:
// the child's pid is QEMU's, so PowerCut() (SIGKILL) is a power cut, and the board dies with the
// test if CTest kills it. The board's state (data.img with the outbox, console.log, monitor.sock)
// lives in the test's folder and survives power cuts; every boot gets the waybill.toml given to
// it. The image must have been built (boards/qemu-virt-aarch64/build-image).
#pragma once

#include <httplib.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "support/child_process.h"
#include "support/mosquitto.h"

namespace waybill::testing {

// Where build-image puts the image (WAYBILL_CACHE, or /var/cache/waybill).
inline std::filesystem::path HilImageDir() {
  const char* cache = std::getenv("WAYBILL_CACHE");
  return std::filesystem::path(cache != nullptr && *cache != '\0' ? cache : "/var/cache/waybill") /
         "qemu-virt-aarch64" / "image";
}

class HilBoard {
 public:
  // `dir` holds the board's state; the API's host port is chosen here and kept across boots.
  explicit HilBoard(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    api_port_ = FreeLoopbackPort();
    child_.set_die_with_parent(true);
  }

  // Powers the board on with `config` as its /etc/waybill/waybill.toml and the GNSS UART fed
  // with the Munich drive at `gnss_speed` (1 real time). False if `run` could not start QEMU.
  bool Boot(const std::string& config, double gnss_speed, std::string* error) {
    std::ofstream(dir_ / "waybill.toml") << config;
    ++boots_;
    bool ok = child_.Spawn(
        {std::string(WAYBILL_SOURCE_DIR) + "/boards/qemu-virt-aarch64/run", "--dir", dir_.string(),
         "--image", HilImageDir().string(), "--config", (dir_ / "waybill.toml").string(), "--port",
         std::to_string(api_port_), "--gnss-speed", std::to_string(gnss_speed)},
        run_log());
    if (!ok && error != nullptr) *error = "cannot start boards/qemu-virt-aarch64/run";
    return ok;
  }

  // Waits until GET /v1/status answers through the forwarded port; false (with the end of the
  // console in `error`) if QEMU exits or `timeout_ms` passes.
  bool WaitForApi(int timeout_ms, std::string* error) {
    for (int waited = 0; waited <= timeout_ms; waited += 250) {
      if (!Status().is_null()) return true;
      if (std::optional<int> status = child_.Poll()) {
        if (error) *error = "QEMU exited (status " + std::to_string(*status) + "):\n" + RunLog();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    if (error) *error = "no answer from the API within " + std::to_string(timeout_ms) + " ms";
    return false;
  }

  // The power cut: SIGKILL to QEMU, then reaped. What the guest had synced is in data.img
  // (cache=none).
  void PowerCut() { child_.Stop(SIGKILL); }
  // Asks the guest nothing: quits QEMU through its monitor, as abrupt as a power cut.
  void Quit() {
    Monitor("quit");
    if (!child_.Stop(0, 5'000)) child_.Stop(SIGKILL);
  }
  bool running() { return !child_.Poll().has_value() && child_.running(); }

  // One line to QEMU's human monitor ("set_link modem off"); returns what it answered. Waits for
  // the monitor's prompt before the line and for the next prompt after it (at most 5 s each), so
  // the command has run when this returns.
  std::string Monitor(const std::string& line) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return {};
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string path = (dir_ / "monitor.sock").string();
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    std::string answer;
    auto read_until_prompt = [&](size_t from) {
      char buf[4096];
      for (int i = 0; i < 50 && answer.find("(qemu)", from) == std::string::npos; ++i) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0) break;
        if (n > 0) answer.append(buf, static_cast<size_t>(n));
      }
      return answer.find("(qemu)", from) != std::string::npos;
    };
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      timeval tv{0, 100'000};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      if (read_until_prompt(0)) {
        size_t after = answer.size();
        std::string out = line + "\n";
        if (write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size())) {
          read_until_prompt(after);
        }
      }
    }
    close(fd);
    return answer;
  }

  // GET /v1/status, or null when the API does not answer.
  nlohmann::json Status() const {
    httplib::Client c("127.0.0.1", api_port_);
    c.set_connection_timeout(2);
    c.set_read_timeout(5);
    auto res = c.Get("/v1/status");
    if (!res || res->status != 200) return nullptr;
    return nlohmann::json::parse(res->body, nullptr, false);
  }
  // POST to the local API through the forward; the result is empty if no answer came.
  httplib::Result Post(const std::string& path, const std::string& body,
                       const std::string& type = "application/json") const {
    httplib::Client c("127.0.0.1", api_port_);
    c.set_connection_timeout(2);
    c.set_read_timeout(10);
    return c.Post(path, body, type);
  }

  int api_port() const { return api_port_; }
  int boots() const { return boots_; }
  const std::filesystem::path& dir() const { return dir_; }
  // What `run` and the guest's console (the kernel, /init, waybilld) printed in this boot.
  std::string RunLog() const { return ReadWholeFile(run_log()); }

 private:
  std::filesystem::path run_log() const {
    return dir_ / ("boot-" + std::to_string(boots_) + ".log");
  }

  std::filesystem::path dir_;
  ChildProcess child_;
  int api_port_ = 0;
  int boots_ = 0;
};

}  // namespace waybill::testing
