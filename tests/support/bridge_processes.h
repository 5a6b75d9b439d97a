// Test support: waybill-bridge as a child process, and what the tests ask of it (its metrics,
// the order of its inbox). The receiver is support/receiver_process.h.
#pragma once

#include <httplib.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.h"
#include "support/mosquitto.h"
#include "support/receiver_process.h"

namespace waybill::testing {

using nlohmann::json;

// The seqs of `device` the receiver applied on `path` ("/v1/positions"), in application order.
inline std::vector<uint64_t> AppliedSeqs(const ReceiverProcess& receiver, const std::string& path,
                                         const std::string& device) {
  std::vector<uint64_t> seqs;
  json events = receiver.GetJson("/_events?path=" + path + "&device=" + device);
  if (!events.is_array()) return seqs;
  for (const json& e : events) seqs.push_back(e["seq"].get<uint64_t>());
  return seqs;
}

// Polls `done` every 50 ms for at most `timeout_ms`.
template <typename F>
bool WaitFor(F done, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 50) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

struct BridgeOptions {
  std::string broker_uri;
  std::string receiver_url;
  std::string client_id = "bridge-test";
  std::string extra_bridge;    // more lines for [bridge]
  std::string extra_mqtt;      // more lines for [mqtt] (TLS files)
  std::string route_extra;     // more lines for every route
  std::string extra_sections;  // more tables at the end (e.g. [uploads])
  std::string token = "test-api-token";
};

class BridgeProcess {
 public:
  BridgeProcess(std::filesystem::path dir, BridgeOptions options)
      : dir_(std::move(dir)), options_(std::move(options)) {
    std::filesystem::create_directories(dir_);
    api_port_ = FreeLoopbackPort();
  }

  void WriteConfig() {
    std::ofstream conf(dir_ / "bridge.toml");
    conf << "[bridge]\ndata_dir = \"" << (dir_ / "data").string() << "\"\ninstance = \""
         << options_.client_id << "\"\n"
         << options_.extra_bridge << "\n[mqtt]\nuri = \"" << options_.broker_uri
         << "\"\nclient_id = \"" << options_.client_id << "\"\n"
         << options_.extra_mqtt << "\n[api]\nlisten = \"127.0.0.1:" << api_port_
         << "\"\ntoken_file = \"" << (dir_ / "token").string() << "\"\n";
    for (const char* route : {"positions", "deliveries", "proofs", "health"}) {
      conf << "[routes." << route << "]\nurl = \"" << options_.receiver_url << "/v1/{route}\"\n"
           << "timeout_ms = 2000\nretry_base_ms = 50\nretry_cap_ms = 500\n"
           << options_.route_extra << "\n";
    }
    conf << options_.extra_sections;
    std::ofstream(dir_ / "token") << options_.token << "\n";
  }

  // Starts the bridge and waits until /readyz says it is connected to the broker.
  bool Start(std::string* error) {
    WriteConfig();
    if (!process_.Spawn(
            {WAYBILL_BRIDGE_PATH, "-c", (dir_ / "bridge.toml").string(), "--grace-ms", "3000"},
            dir_ / ("bridge-" + std::to_string(++starts_) + ".log"))) {
      *error = "spawn failed";
      return false;
    }
    bool ready = WaitFor(
        [&] {
          httplib::Client c("127.0.0.1", api_port_);
          auto res = c.Get("/readyz");
          return res && res->status == 200;
        },
        15'000);
    if (!ready) *error = "not ready within 15 s:\n" + log();
    return ready;
  }
  std::optional<int> Stop(int sig) { return process_.Stop(sig); }
  bool running() { return !process_.Poll().has_value() && process_.running(); }

  std::string log() const {
    return ReadWholeFile(dir_ / ("bridge-" + std::to_string(starts_) + ".log"));
  }
  int api_port() const { return api_port_; }
  std::filesystem::path inbox_path() const { return dir_ / "data" / "inbox.db"; }
  std::filesystem::path config_path() const { return dir_ / "bridge.toml"; }
  const std::string& token() const { return options_.token; }

  // One value of /metrics ("waybill_bridge_rejected_total{reason=\"identity\"}"); -1 if absent.
  double Metric(const std::string& series) const {
    httplib::Client c("127.0.0.1", api_port_);
    auto res = c.Get("/metrics");
    if (!res || res->status != 200) return -1;
    std::istringstream lines(res->body);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return -1;
  }

  // The order in which the inbox stored a device's events of one route (0 positions, 1
  // deliveries, 2 proofs, 3 health): the order the backend must see them in.
  std::vector<uint64_t> InboxOrder(const std::string& device, int route) const {
    std::vector<uint64_t> seqs;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(inbox_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
      sqlite3_stmt* s = nullptr;
      sqlite3_prepare_v2(db, "SELECT seq FROM events WHERE device = ?1 AND route = ?2 ORDER BY id",
                         -1, &s, nullptr);
      sqlite3_bind_text(s, 1, device.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int(s, 2, route);
      while (sqlite3_step(s) == SQLITE_ROW) seqs.push_back(sqlite3_column_int64(s, 0));
      sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return seqs;
  }

 private:
  std::filesystem::path dir_;
  BridgeOptions options_;
  ChildProcess process_;
  int api_port_ = 0;
  int starts_ = 0;
};

}  // namespace waybill::testing
