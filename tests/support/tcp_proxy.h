// Test support: a TCP proxy on 127.0.0.1 that can cut the link it carries.
//
// A device connects to the proxy's port instead of the broker's; every accepted connection gets
// its own connection to the upstream port and bytes are copied both ways by one thread. The link
// can then fail the two ways a cellular link fails:
//
//   - black hole: bytes stop flowing in both directions, but no connection is closed. The client
//     sees silence (lost coverage) and must notice it by its own keepalive; new connections are
//     accepted and stay silent too. What was sent meanwhile waits in the kernel's buffers and
//     flows when forwarding resumes, unless one side gave up on the connection.
//   - refuse: every connection is reset (RST, not FIN) at once, and new ones are reset as soon as
//     they are accepted, until forwarding resumes.
//
// A connection whose upstream refuses (the broker is down) is reset too, as a dead broker would.
// RefuseAfterUpstreamBytes() cuts the link in the middle of a transfer: after a given number of
// bytes from the clients, the proxy turns to refuse by itself.
#pragma once

#include <atomic>
#include <string>
#include <thread>

namespace waybill::testing {

class TcpProxy {
 public:
  enum class Mode { kForward, kBlackhole, kRefuse };

  explicit TcpProxy(int upstream_port) : upstream_port_(upstream_port) {}
  ~TcpProxy();  // stops the thread and closes every connection
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // Binds 127.0.0.1 on a free port and starts forwarding. False (with `error`) if it cannot bind.
  bool Start(std::string* error);
  int port() const { return port_; }

  // Takes effect within the thread's poll interval (50 ms). Thread-safe.
  void SetMode(Mode mode) { mode_.store(mode); }
  Mode mode() const { return mode_.load(); }
  // Connections accepted since Start (a measure of the client's reconnects). Thread-safe.
  long accepted() const { return accepted_.load(); }
  // Forwards at most `bytes` more from the clients to the upstream (all connections together),
  // then switches to kRefuse. Thread-safe.
  void RefuseAfterUpstreamBytes(long bytes) { upstream_budget_.store(bytes); }
  // Bytes forwarded from the clients to the upstream since Start. Thread-safe.
  long upstream_bytes() const { return upstream_bytes_.load(); }

 private:
  void Run();

  const int upstream_port_;
  int port_ = 0;
  int listen_fd_ = -1;
  std::atomic<Mode> mode_{Mode::kForward};
  std::atomic<bool> stop_{false};
  std::atomic<long> accepted_{0};
  std::atomic<long> upstream_budget_{-1};  // -1: no limit
  std::atomic<long> upstream_bytes_{0};
  std::thread thread_;
};

}  // namespace waybill::testing
