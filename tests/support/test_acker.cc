// test_acker: the bridge's ack path as a program, for tests and for trying the uplink by hand.
//
//   test_acker --broker tcp://127.0.0.1:1883 [--out FILE] [--drop-acks] [--ack-delay-ms N]
//              [--die-after-batches N] [--ca F --cert F --key F] [--client-id ID]
//
// Prints "acker ready" once subscribed, then one line per event received ("<device> <seq>
// <class> <h|l> <batch>") to --out (default: stdout). --die-after-batches exits with status 3
// right after recording batch N, without acking it (a bridge crash before it stored the batch).
// Runs until SIGTERM or SIGINT.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "support/acker.h"

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

int Usage() {
  std::fprintf(stderr,
               "usage: test_acker --broker URI [--out FILE] [--drop-acks] [--ack-delay-ms N] "
               "[--die-after-batches N] [--ca F --cert F --key F] [--client-id ID]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  waybill::testing::AckerOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (arg == "--drop-acks") {
      options.drop_acks = true;
      continue;
    }
    if ((v = value()) == nullptr) return Usage();
    if (arg == "--broker")
      options.broker_uri = v;
    else if (arg == "--out")
      options.record_path = v;
    else if (arg == "--ack-delay-ms")
      options.ack_delay_ms = std::atoi(v);
    else if (arg == "--die-after-batches")
      options.die_after_batches = std::atol(v);
    else if (arg == "--ca")
      options.ca_file = v;
    else if (arg == "--cert")
      options.cert_file = v;
    else if (arg == "--key")
      options.key_file = v;
    else if (arg == "--client-id")
      options.client_id = v;
    else
      return Usage();
  }
  if (options.broker_uri.empty()) return Usage();
  if (options.record_path.empty()) options.record_path = "/dev/stdout";
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  waybill::testing::TestAcker acker(options);
  std::string error;
  if (!acker.Start(&error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  std::fprintf(stderr, "acker ready\n");
  while (g_stop == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  acker.Stop();
  return 0;
}
