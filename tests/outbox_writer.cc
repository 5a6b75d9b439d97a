// outbox_writer: the victim of the outbox crash test. Appends events to an outbox at full speed
// from several threads and reports on stdout, with one write() per line and only AFTER the call
// returned:
//   s <seq>   Append returned this sequence (it must survive a kill)
//   c <seq>   about to acknowledge this sequence (it may or may not survive)
//   a <seq>   Ack returned OK for this sequence (it must be gone)
// Runs until killed. Usage: outbox_writer DB_PATH [THREADS]
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "waybill/sync/outbox.h"

namespace {

void Report(char kind, uint64_t seq) {
  char line[32];
  int n =
      std::snprintf(line, sizeof(line), "%c %llu\n", kind, static_cast<unsigned long long>(seq));
  // Under PIPE_BUF, so a line is never torn; a failed write means the reader is gone.
  if (::write(STDOUT_FILENO, line, static_cast<size_t>(n)) != n) std::_Exit(3);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: outbox_writer DB_PATH [THREADS]\n");
    return 2;
  }
  // stdout carries the results; the outbox's own log goes to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("outbox"));
  waybill::sync::OutboxOptions options;
  options.path = argv[1];
  options.min_free_bytes = 0;
  int threads = argc > 2 ? std::atoi(argv[2]) : 4;
  auto box = waybill::sync::Outbox::Open(options);
  if (!box.ok()) {
    std::fprintf(stderr, "outbox_writer: %s\n", box.status().ToString().c_str());
    return 1;
  }
  waybill::sync::Outbox& outbox = **box;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&outbox, t] {
      for (uint64_t i = 0;; ++i) {
        waybill::sync::NewEvent e;
        e.cls = i % 8 == 0 ? waybill::sync::EventClass::kDelivery : waybill::sync::EventClass::kFix;
        e.ts_ms = 1'700'000'000'000 + static_cast<int64_t>(i);
        e.ts_src = waybill::hal::TimeSource::kGnss;
        e.body = "writer " + std::to_string(t) + " event " + std::to_string(i);
        auto r = outbox.Append(e);
        if (!r.ok()) {
          std::fprintf(stderr, "outbox_writer: %s\n", r.status().ToString().c_str());
          std::_Exit(1);
        }
        Report('s', *r);
      }
    });
  }
  // The drain: claim a few, acknowledge them, as the uplink would.
  for (;;) {
    auto batch = outbox.Claim(16, true);
    if (!batch.ok()) {
      std::fprintf(stderr, "outbox_writer: %s\n", batch.status().ToString().c_str());
      std::_Exit(1);
    }
    std::vector<uint64_t> seqs;
    for (const auto& e : *batch) {
      seqs.push_back(e.seq);
      Report('c', e.seq);
    }
    if (!outbox.Ack(seqs).ok()) std::_Exit(1);
    for (uint64_t seq : seqs) Report('a', seq);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}
