#include "byte_relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace waybill::bench {
namespace {

constexpr size_t kMaxLoggedTransfers = 4096;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

ByteRelay::ByteRelay(int target_port) : target_port_(target_port) {}

ByteRelay::~ByteRelay() { Stop(); }

bool ByteRelay::Start(std::string* error) {
  if (pipe2(wake_pipe_, O_CLOEXEC) != 0) {
    *error = std::string("relay: pipe: ") + std::strerror(errno);
    return false;
  }
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = Loopback(0);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, 8) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    *error = std::string("relay: cannot listen on 127.0.0.1: ") + std::strerror(errno);
    return false;
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return true;
}

void ByteRelay::Stop() {
  if (stop_.exchange(true)) return;
  if (wake_pipe_[1] >= 0) {
    // Every poll() of the relay watches the read end: closing the write end wakes them all.
    close(wake_pipe_[1]);
    wake_pipe_[1] = -1;
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> pumps;
  {
    std::lock_guard<std::mutex> lk(mu_);
    pumps.swap(pumps_);
  }
  for (std::thread& t : pumps) t.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (wake_pipe_[0] >= 0) close(wake_pipe_[0]);
  listen_fd_ = wake_pipe_[0] = -1;
}

std::vector<RelayTransfer> ByteRelay::TransfersSince(int64_t since_mono_ms) const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<RelayTransfer> out;
  for (const RelayTransfer& t : log_) {
    if (t.mono_ms >= since_mono_ms) out.push_back(t);
  }
  return out;
}

void ByteRelay::Note(bool upstream, size_t bytes) {
  (upstream ? up_ : down_) += bytes;
  const int64_t now = SteadyMs();
  last_ms_ = now;
  std::lock_guard<std::mutex> lk(mu_);
  if (log_.size() >= kMaxLoggedTransfers) log_.erase(log_.begin());
  log_.push_back(RelayTransfer{now, upstream, bytes});
}

void ByteRelay::AcceptLoop() {
  while (!stop_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    int target = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = Loopback(target_port_);
    if (target < 0 || connect(target, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      if (target >= 0) close(target);
      close(client);
      continue;
    }
    // Both ends see their writes forwarded at once, as they would on a direct connection.
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(target, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ++connections_;
    std::lock_guard<std::mutex> lk(mu_);
    pumps_.emplace_back([this, client, target] { Pump(client, target); });
  }
}

void ByteRelay::Pump(int client_fd, int target_fd) {
  char buf[64 * 1024];
  while (!stop_) {
    pollfd fds[3] = {{client_fd, POLLIN, 0}, {target_fd, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[2].revents != 0) break;
    bool closed = false;
    for (int i = 0; i < 2 && !closed; ++i) {
      if (fds[i].revents == 0) continue;
      const int from = i == 0 ? client_fd : target_fd;
      const int to = i == 0 ? target_fd : client_fd;
      ssize_t n = recv(from, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || !WriteAll(to, buf, static_cast<size_t>(n))) {
        closed = true;
        break;
      }
      Note(i == 0, static_cast<size_t>(n));
    }
    if (closed) break;
  }
  close(client_fd);
  close(target_fd);
}

}  // namespace waybill::bench
