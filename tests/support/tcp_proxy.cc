#include "support/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

namespace waybill::testing {
namespace {

struct Pair {
  int client = -1;
  int upstream = -1;
};

// Closes with RST: SO_LINGER with a zero timeout discards unsent data and resets the peer.
void Reset(int fd) {
  if (fd < 0) return;
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

// A write that blocks at most a second: loopback peers read fast, and one that stopped reading
// (a broker being killed) must not hold the proxy's only thread.
void SetSendTimeout(int fd) {
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Copies what `from` has, at most `max` bytes, to `to`, adding the count to `*copied`; false when
// either side is done (EOF, error, or a stuck peer).
bool Copy(int from, int to, size_t max = SIZE_MAX, long* copied = nullptr) {
  char buf[16384];
  ssize_t n = recv(from, buf, std::min(sizeof buf, max), MSG_DONTWAIT);
  if (n == 0) return false;
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  for (ssize_t sent = 0; sent < n;) {
    ssize_t w = send(to, buf + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    sent += w;
  }
  if (copied != nullptr) *copied += n;
  return true;
}

}  // namespace

TcpProxy::~TcpProxy() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

bool TcpProxy::Start(std::string* error) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, 16) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (error != nullptr)
      *error = std::string("proxy: cannot listen on 127.0.0.1: ") + strerror(errno);
    return false;
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { Run(); });
  return true;
}

void TcpProxy::Run() {
  std::vector<Pair> pairs;
  auto drop_all = [&] {
    for (Pair& p : pairs) {
      Reset(p.client);
      Reset(p.upstream);
    }
    pairs.clear();
  };
  while (!stop_.load()) {
    const Mode mode = mode_.load();
    if (mode == Mode::kRefuse && !pairs.empty()) drop_all();
    std::vector<pollfd> fds;
    fds.push_back({listen_fd_, POLLIN, 0});
    if (mode == Mode::kForward) {
      for (const Pair& p : pairs) {
        fds.push_back({p.client, POLLIN, 0});
        fds.push_back({p.upstream, POLLIN, 0});
      }
    }
    if (poll(fds.data(), fds.size(), 50) <= 0) continue;
    if (fds[0].revents & POLLIN) {
      int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) {
        accepted_.fetch_add(1);
        int upstream = mode == Mode::kRefuse ? -1 : ConnectLoopback(upstream_port_);
        if (upstream < 0) {
          Reset(client);
        } else {
          SetSendTimeout(client);
          SetSendTimeout(upstream);
          pairs.push_back({client, upstream});
        }
      }
    }
    if (mode != Mode::kForward) continue;
    // fds[1 + 2i] is pairs[i].client, fds[2 + 2i] its upstream; pairs accepted above are last.
    std::vector<Pair> kept;
    for (size_t i = 0; i < pairs.size(); ++i) {
      bool alive = true;
      if (1 + 2 * i + 1 < fds.size()) {
        const pollfd& c = fds[1 + 2 * i];
        const pollfd& u = fds[2 + 2 * i];
        const long budget = upstream_budget_.load();
        if (budget != 0 && (c.revents & (POLLIN | POLLHUP | POLLERR))) {
          long copied = 0;
          alive = Copy(pairs[i].client, pairs[i].upstream,
                       budget < 0 ? SIZE_MAX : static_cast<size_t>(budget), &copied);
          upstream_bytes_.fetch_add(copied);
          if (budget > 0 && copied >= budget) {
            upstream_budget_.store(-1);
            mode_.store(Mode::kRefuse);
          } else if (budget > 0) {
            upstream_budget_.fetch_sub(copied);
          }
        }
        if (alive && (u.revents & (POLLIN | POLLHUP | POLLERR))) {
          alive = Copy(pairs[i].upstream, pairs[i].client);
        }
      }
      if (alive) {
        kept.push_back(pairs[i]);
      } else {
        // One side ended: end the other as abruptly, as a cut link would.
        Reset(pairs[i].client);
        Reset(pairs[i].upstream);
      }
    }
    pairs.swap(kept);
  }
  drop_all();
}

}  // namespace waybill::testing
