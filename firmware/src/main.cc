// waybilld: the in-cab unit's daemon.
//
//   waybilld --board /usr/share/waybill/boards/rpi4/board.toml --config /etc/waybill/waybill.toml
//
// Exit codes: 0 after a clean stop (SIGTERM, SIGINT), 1 when the outbox could not be flushed,
// 2 for a bad command line, board file or config file (the message says which line and why),
// 3 when the hardware or the storage could not be opened.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <atomic>
#include <thread>

#include <spdlog/spdlog.h>

#include "waybill/firmware/config.h"
#include "waybill/firmware/daemon.h"
#include "waybill/hal/board.h"
#include "waybill/hal/sleeper.h"

int main(int argc, char** argv) {
  using namespace waybill;
  CLI::App app{"waybilld: records GNSS fixes, deliveries and proofs of delivery, store first"};
  std::string board_file, config_file, data_dir, log_level = "info";
  std::optional<double> replay_speed;
  std::optional<int> api_port;
  bool stop_at_end = false;
  app.add_option("--board", board_file, "board file (boards/<board>/board.toml)")->required();
  app.add_option("--config", config_file, "device file (waybill.toml)")->required();
  app.add_option("--data-dir", data_dir, "overrides the data directory of both files");
  app.add_option("--replay-speed", replay_speed,
                 "replay boards: 1 real time, 10 ten times faster, 0 as fast as possible");
  app.add_option("--api-port", api_port, "overrides [api] port (0: any free port)");
  app.add_flag("--stop-at-end-of-replay", stop_at_end,
               "replay boards: stop once the recording has been replayed");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.set_version_flag("--version", WAYBILL_VERSION);
  CLI11_PARSE(app, argc, argv);

  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  hal::BoardLoadOptions board_opts = hal::BoardLoadOptions::FromEnvironment();
  if (!data_dir.empty()) board_opts.data_dir_override = data_dir;
  Result<hal::BoardConfig> board = hal::LoadBoardConfig(board_file, board_opts);
  if (!board.ok()) {
    std::fprintf(stderr, "waybilld: board file: %s\n", board.status().message().c_str());
    return 2;
  }
  Result<firmware::DaemonConfig> config = firmware::LoadDaemonConfig(config_file);
  if (!config.ok()) {
    std::fprintf(stderr, "waybilld: config file: %s\n", config.status().message().c_str());
    return 2;
  }

  // A config provisioned for one board and started with another's file is a wrong image or a
  // wrong unit: the serial port, GPIO lines and data directory would all be someone else's.
  if (!config->board.empty() && config->board != board->name) {
    std::fprintf(stderr,
                 "waybilld: config file %s was provisioned for board \"%s\", but --board %s is "
                 "board \"%s\"\n",
                 config_file.c_str(), config->board.c_str(), board_file.c_str(),
                 board->name.c_str());
    return 2;
  }

  firmware::DaemonOptions options;
  options.board = std::move(board).value();
  options.config = std::move(config).value();
  if (!data_dir.empty()) options.config.data_dir = data_dir;
  if (api_port) options.config.api_port = *api_port;
  options.replay_speed = replay_speed;
  options.stop_at_end_of_replay = stop_at_end;

  // Signals are taken by one thread with sigwait; every other thread has them blocked.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // The address the API really listens on, for the line below (IPv6 in brackets).
  std::string api_host = options.config.api_host;
  if (api_host.find(':') != std::string::npos) api_host = "[" + api_host + "]";
  Result<std::unique_ptr<firmware::Daemon>> daemon =
      firmware::Daemon::Create(std::move(options), hal::Clock::System(), hal::Sleeper::System());
  if (!daemon.ok()) {
    spdlog::critical("cannot start: {}", daemon.status().ToString());
    return daemon.status().IsInvalidArgument() ? 2 : 3;
  }
  firmware::Daemon* d = daemon->get();
  std::printf("waybilld: local API on http://%s:%d\n", api_host.c_str(), d->api_port());
  std::fflush(stdout);

  std::atomic<bool> stopped_by_itself{false};
  std::thread signals([&stop_signals, &stopped_by_itself, d] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (!stopped_by_itself.load()) spdlog::info("signal {}: stopping", sig);
    d->RequestStop();
  });
  Status s = d->Run();
  // Wake the signal thread if the daemon stopped by itself (end of replay).
  stopped_by_itself = true;
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  daemon->reset();
  return s.ok() ? 0 : 1;
}
