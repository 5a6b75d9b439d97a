// Test support: waybill-receiver (the stand-in backend) as a child process.
//
// The receiver keeps its database, port file and logs in the directory given; starting it again
// on the same directory reopens the same database, as a restarted backend would. Start() waits
// for the port file the receiver writes once it listens.
#pragma once

#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.h"

namespace waybill::testing {

class ReceiverProcess {
 public:
  // `exe`: the built waybill-receiver; `dir` is created if missing.
  ReceiverProcess(std::filesystem::path exe, std::filesystem::path dir)
      : exe_(std::move(exe)), dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
  }

  std::filesystem::path db_path() const { return dir_ / "receiver.db"; }
  const std::filesystem::path& log_path() const { return log_; }
  std::string log() const { return ReadWholeFile(log_); }
  int port() const { return port_; }

  // Starts the receiver with `flags` added (e.g. {"--fail-rate", "0.1"}) and waits at most 10 s
  // for it to listen. Returns its port, or -1 with `error` set.
  int Start(const std::vector<std::string>& flags, std::string* error) {
    const std::filesystem::path port_file = dir_ / "port";
    std::filesystem::remove(port_file);
    log_ = dir_ / ("receiver-" + std::to_string(++starts_) + ".log");
    std::vector<std::string> argv = {exe_.string(), "--db", db_path().string(), "--port-file",
                                     port_file.string()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    if (!child_.Spawn(argv, log_)) {
      if (error) *error = "cannot start the receiver (still running, or fork failed)";
      return -1;
    }
    for (int waited_ms = 0; waited_ms < 10'000; waited_ms += 20) {
      // The receiver renames a complete file into place: if it exists, it is whole.
      if (std::filesystem::exists(port_file)) {
        return port_ = std::stoi(ReadWholeFile(port_file));
      }
      if (child_.Poll()) {
        if (error) *error = "the receiver exited early:\n" + log();
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (error) *error = "the receiver did not listen within 10 s:\n" + log();
    return -1;
  }

  // Sends `sig` and waits at most 10 s; returns the waitpid status, or nullopt if it still runs.
  std::optional<int> Stop(int sig) { return child_.Stop(sig, 10'000); }

  // GET /_stats, or a null JSON if the receiver does not answer.
  nlohmann::json Stats() const { return GetJson("/_stats"); }

  // GET `target` (path and query), or a null JSON if the receiver does not answer 200.
  nlohmann::json GetJson(const std::string& target) const {
    httplib::Client client("127.0.0.1", port_);
    auto res = client.Get(target.c_str());
    return res && res->status == 200 ? nlohmann::json::parse(res->body) : nlohmann::json();
  }

  // POST /_faults with `patch`; returns the settings now in force, or a null JSON on failure.
  nlohmann::json SetFaults(const nlohmann::json& patch) const {
    httplib::Client client("127.0.0.1", port_);
    auto res = client.Post("/_faults", patch.dump(), "application/json");
    return res && res->status == 200 ? nlohmann::json::parse(res->body) : nlohmann::json();
  }

 private:
  std::filesystem::path exe_;
  std::filesystem::path dir_;
  std::filesystem::path log_;
  ChildProcess child_;
  int port_ = -1;
  int starts_ = 0;
};

}  // namespace waybill::testing
