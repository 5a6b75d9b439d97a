// waybill-receiver: a stand-in for the order/fulfilment backend (docs/RECEIVER.md).
//
// Exit codes: 0 after a clean stop (SIGTERM, SIGINT); CLI11's code for bad arguments, 2 for a bad
// --listen; 3 when the database cannot be opened or the address bound; 1 when the listening
// socket fails while serving.
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "server.h"

namespace {

using waybill::Result;
using waybill::Status;
using waybill::receiver::Receiver;
using waybill::receiver::ReceiverOptions;

// "127.0.0.1:0" into host and port.
Status ParseListen(const std::string& text, ReceiverOptions* options) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument("--listen " + text + ": expected HOST:PORT");
  }
  std::string port = text.substr(colon + 1);
  size_t used = 0;
  int value = -1;
  try {
    value = std::stoi(port, &used);
  } catch (const std::exception&) {
  }
  if (used != port.size() || value < 0 || value > 65535) {
    return Status::InvalidArgument("--listen " + text + ": port must be 0 to 65535");
  }
  options->host = text.substr(0, colon);
  options->port = value;
  return Status::Ok();
}

// Written to a temporary file and renamed, so that a reader polling for it never sees it half
// written.
Status WritePortFile(const std::filesystem::path& path, int port) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    out.close();
    if (!out) return Status::IOError("cannot write " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IOError("cannot rename " + tmp.string() + ": " + ec.message());
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"waybill-receiver: a stand-in backend that records, dedups and injects faults"};
  ReceiverOptions options;
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  auto rate = CLI::Range(0.0, 1.0);
  app.add_option("--listen", listen, "HOST:PORT to listen on; port 0 picks a free one")
      ->capture_default_str();
  app.add_option("--db", options.db_path, "SQLite file of applied requests and events")
      ->capture_default_str();
  app.add_option("--port-file", port_file, "write the bound port to this file once listening");
  app.add_option("--fail-rate", options.faults.fail_rate, "share answered 500, not applied")
      ->check(rate);
  app.add_option("--fail-after-apply-rate", options.faults.fail_after_apply_rate,
                 "share applied, then answered 500")
      ->check(rate);
  app.add_option("--throttle-rate", options.faults.throttle_rate,
                 "share answered 429 with Retry-After, not applied")
      ->check(rate);
  app.add_option("--retry-after-s", options.faults.retry_after_s, "Retry-After of a 429")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--hang-rate", options.faults.hang_rate,
                 "share held for --hang-ms, then answered 500, not applied")
      ->check(rate);
  app.add_option("--hang-ms", options.faults.hang_ms, "how long a hang holds a request")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--latency-ms", options.faults.latency_ms, "delay added to every ingest request")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", options.seed, "seed of the fault generator")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (Status s = ParseListen(listen, &options); !s.ok()) {
    std::fprintf(stderr, "waybill-receiver: %s\n", s.message().c_str());
    return 2;
  }

  // Signals are taken by one thread with sigwait; every other thread, the server's pool
  // included, has them blocked.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Result<std::unique_ptr<Receiver>> receiver =
      Receiver::Create(options, waybill::hal::Clock::System());
  if (!receiver.ok()) {
    spdlog::critical("cannot start: {}", receiver.status().ToString());
    return receiver.status().IsInvalidArgument() ? 2 : 3;
  }
  Receiver* r = receiver->get();
  if (!port_file.empty()) {
    if (Status s = WritePortFile(port_file, r->port()); !s.ok()) {
      spdlog::critical("cannot start: {}", s.ToString());
      return 3;
    }
  }
  std::printf("waybill-receiver: listening on http://%s:%d\n", options.host.c_str(), r->port());
  std::fflush(stdout);

  std::atomic<bool> run_returned{false};
  std::thread signals([&stop_signals, &run_returned, r] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (run_returned.load()) return;
    spdlog::info("signal {}: stopping", sig);
    // Repeated because a stop that lands before the server has started listening is lost.
    while (!run_returned.load()) {
      r->Stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  Status s = r->Run();
  run_returned = true;
  // Wakes the signal thread if the server stopped by itself.
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  receiver->reset();
  if (!s.ok()) {
    spdlog::critical("stopped: {}", s.ToString());
    return 1;
  }
  spdlog::info("stopped");
  return 0;
}
