// uplink_driver: a device process for the uplink's crash tests: opens an outbox, appends events,
// runs the Uplink until the outbox is empty or until killed.
//
//   uplink_driver --outbox PATH --broker URI --device ID [--ca F --cert F --key F]
//                 [--fixes N] [--deliveries N] [--batch N] [--window N] [--ack-timeout-ms N]
//                 [--batch-wait-ms N] [--backoff-base-ms N] [--backoff-cap-ms N]
//                 [--exit-when-drained]
//
// Prints on stdout "appended <first> <last>" after the appends, "connected" once the uplink is,
// and "drained" (then exits 0) when --exit-when-drained and the outbox holds no event.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "support/uplink_events.h"
#include "waybill/hal/clock.h"
#include "waybill/sync/outbox.h"
#include "waybill/sync/uplink.h"

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

int Usage() {
  std::fprintf(stderr, "usage: uplink_driver --outbox PATH --broker URI --device ID [options]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace waybill;
  spdlog::set_default_logger(spdlog::stderr_color_mt("driver"));
  sync::OutboxOptions outbox_options;
  sync::UplinkOptions options;
  options.firmware_version = "test-driver";
  options.batch_wait_ms = 20;
  options.poll_ms = 50;
  options.backoff = {.base_ms = 100, .cap_ms = 500, .floor_ms = 20};
  long fixes = 0, deliveries = 0;
  bool exit_when_drained = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--exit-when-drained") {
      exit_when_drained = true;
      continue;
    }
    if (i + 1 >= argc) return Usage();
    std::string v = argv[++i];
    if (arg == "--outbox")
      outbox_options.path = v;
    else if (arg == "--broker")
      options.broker_uri = v;
    else if (arg == "--device")
      options.device_id = v;
    else if (arg == "--ca")
      options.tls.ca_file = v;
    else if (arg == "--cert")
      options.tls.cert_file = v;
    else if (arg == "--key")
      options.tls.key_file = v;
    else if (arg == "--fixes")
      fixes = std::atol(v.c_str());
    else if (arg == "--deliveries")
      deliveries = std::atol(v.c_str());
    else if (arg == "--batch")
      options.batch_max_events = std::strtoul(v.c_str(), nullptr, 10);
    else if (arg == "--window")
      options.inflight_batches = std::atoi(v.c_str());
    else if (arg == "--ack-timeout-ms")
      options.ack_timeout_ms = std::atol(v.c_str());
    else if (arg == "--batch-wait-ms")
      options.batch_wait_ms = std::atol(v.c_str());
    else if (arg == "--backoff-base-ms")
      options.backoff.base_ms = std::atol(v.c_str());
    else if (arg == "--backoff-cap-ms")
      options.backoff.cap_ms = std::atol(v.c_str());
    else
      return Usage();
  }
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  auto outbox = sync::Outbox::Open(outbox_options);
  if (!outbox.ok()) {
    std::fprintf(stderr, "%s\n", outbox.status().ToString().c_str());
    return 1;
  }
  // One go, group-committed; every append must succeed.
  uint64_t first = 0, last = 0;
  bool failed = false;
  std::mutex mu;
  long every = deliveries > 0 ? (fixes + deliveries) / deliveries : 0;
  for (long i = 0; i < fixes + deliveries; ++i) {
    // Deliveries spread among the fixes, as a day's route has them.
    bool delivery = every > 0 && i % every == 0 && i / every < deliveries;
    (*outbox)->AppendAsync(delivery ? testing::MakeDeliveryEvent(i) : testing::MakeFixEvent(i),
                           [&](Result<uint64_t> seq) {
                             std::lock_guard<std::mutex> lk(mu);
                             if (!seq.ok()) {
                               std::fprintf(stderr, "append: %s\n",
                                            seq.status().ToString().c_str());
                               failed = true;
                               return;
                             }
                             if (first == 0 || *seq < first) first = *seq;
                             last = std::max(last, *seq);
                           });
  }
  if (!(*outbox)->Flush().ok() || failed) return 1;
  std::printf("appended %llu %llu\n", static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(last));
  std::fflush(stdout);
  auto uplink = sync::Uplink::Create(**outbox, hal::Clock::System(), options);
  if (!uplink.ok()) {
    std::fprintf(stderr, "%s\n", uplink.status().ToString().c_str());
    return 1;
  }
  Status started = (*uplink)->Start();
  if (!started.ok()) return 1;
  bool said_connected = false;
  // Bounded by the test's own timeout; the driver has no reason to give up by itself.
  while (g_stop == 0) {
    sync::UplinkStats stats = (*uplink)->Stats();
    if (stats.connected && !said_connected) {
      std::printf("connected\n");
      std::fflush(stdout);
      said_connected = true;
    }
    if (exit_when_drained && (*outbox)->Stats().events == 0) {
      (*uplink)->Stop();
      std::printf("drained\n");
      std::fflush(stdout);
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  (*uplink)->Stop();
  return 0;
}
