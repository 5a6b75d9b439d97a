// ByteRelay: a TCP relay on 127.0.0.1 that counts what crosses it, for the uplink benchmark.
//
// It listens on a free loopback port, and for every connection it accepts it opens one to the
// target port and copies bytes both ways until either side closes. What it counts is TCP payload:
// every byte the two ends wrote to their sockets (for TLS, whole records: headers, padding and
// tags included), none of the TCP/IP headers. Each read is also logged with its time, so that a
// benchmark can show which exchanges made up the total (a keep-alive is one small read each way).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace waybill::bench {

struct RelayTransfer {
  int64_t mono_ms = 0;   // steady clock, ms
  bool upstream = true;  // client -> target
  size_t bytes = 0;
};

class ByteRelay {
 public:
  explicit ByteRelay(int target_port);
  // Stops.
  ~ByteRelay();
  ByteRelay(const ByteRelay&) = delete;
  ByteRelay& operator=(const ByteRelay&) = delete;

  // Binds a free port on 127.0.0.1 and starts accepting. False with the reason in `error`.
  bool Start(std::string* error);
  // Closes every connection and joins every thread. Idempotent.
  void Stop();

  int port() const { return port_; }
  // Bytes copied so far in each direction, and connections accepted. Thread-safe.
  uint64_t upstream_bytes() const { return up_.load(); }
  uint64_t downstream_bytes() const { return down_.load(); }
  uint64_t total_bytes() const { return up_.load() + down_.load(); }
  uint64_t connections() const { return connections_.load(); }
  // Steady-clock ms of the last read in either direction (0 = none yet). Thread-safe.
  int64_t last_transfer_mono_ms() const { return last_ms_.load(); }
  // Every read since `since_mono_ms`, oldest first (at most the last 4096 reads are kept).
  // Thread-safe.
  std::vector<RelayTransfer> TransfersSince(int64_t since_mono_ms) const;

 private:
  void AcceptLoop();
  void Pump(int client_fd, int target_fd);
  void Note(bool upstream, size_t bytes);

  const int target_port_;
  int port_ = 0;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> up_{0}, down_{0}, connections_{0};
  std::atomic<int64_t> last_ms_{0};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> pumps_;
  std::vector<RelayTransfer> log_;
};

}  // namespace waybill::bench
