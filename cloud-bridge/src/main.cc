// waybill-bridge: the cloud side of Waybill (docs/BRIDGE.md).
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>

#include "waybill/bridge/bridge.h"

int main(int argc, char** argv) {
  CLI::App app{
      "waybill-bridge: stores the trucks' events, acknowledges them and forwards them "
      "to the backend"};
  std::string config_path = "/etc/waybill/bridge.toml";
  bool check = false;
  std::string log_level = "info";
  int64_t grace_ms = 10'000;
  app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  app.add_flag("--check", check, "validate the configuration and exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  app.add_option("--grace-ms", grace_ms, "at SIGTERM, wait this long for requests in flight")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  auto config = waybill::bridge::LoadBridgeConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "waybill-bridge: %s\n", config.status().message().c_str());
    return 2;
  }
  if (check) {
    std::printf("waybill-bridge: %s is valid\n", config_path.c_str());
    return 0;
  }
  // Signals are taken by sigwait below, never by a thread of a library.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  waybill::bridge::Bridge bridge(std::move(*config));
  if (waybill::Status s = bridge.Start(); !s.ok()) {
    std::fprintf(stderr, "waybill-bridge: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("waybill-bridge: API on port %d\n", bridge.api_port());
  std::fflush(stdout);
  sd_notify(0, "READY=1");
  int sig = 0;
  sigwait(&signals, &sig);
  sd_notify(0, "STOPPING=1");
  spdlog::info("bridge: {} received: storing what was received, finishing requests in flight",
               sig == SIGTERM ? "SIGTERM" : "SIGINT");
  bridge.Stop(grace_ms);
  spdlog::info("bridge: stopped cleanly");
  return 0;
}
