#include "support/mosquitto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;

bool CanConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string FleetAcl() {
  // Pattern lines apply to every user, %u being the CN of the client certificate. Mosquitto
  // grants what any line grants, so the bridge also gets the device patterns for the user name
  // "bridge", which no device can have (the CA signs CN=bridge for the bridge only).
  return "pattern write fleet/%u/up\n"
         "pattern write fleet/%u/status\n"
         "pattern write fleet/%u/cmd/result\n"
         "pattern read fleet/%u/ack\n"
         "pattern read fleet/%u/cmd\n"
         "\n"
         "user bridge\n"
         "topic read fleet/+/up\n"
         "topic read fleet/+/status\n"
         "topic read fleet/+/cmd/result\n"
         "topic write fleet/+/ack\n"
         "topic write fleet/+/cmd\n";
}

Mosquitto::Mosquitto(fs::path dir, MosquittoOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {
  fs::create_directories(dir_ / "db");
  if (options_.tls && options_.server.cert.empty()) options_.server = GetTestPki().server;
}

Mosquitto::~Mosquitto() {
  if (pid_ > 0) Kill();
}

void Mosquitto::WriteConfig() {
  std::ofstream conf(dir_ / "mosquitto.conf");
  conf << "user root\n"
       << "per_listener_settings false\n"
       << "persistence true\n"
       << "persistence_location " << (dir_ / "db").string() << "/\n"
       << "log_dest file " << (dir_ / "mosquitto.log").string() << "\n"
       << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
       << "connection_messages true\n"
       << "log_timestamp_format %H:%M:%S\n"
       << "listener " << port_ << " 127.0.0.1\n";
  if (options_.tls) {
    const TestPki& pki = GetTestPki();
    std::ofstream(dir_ / "acl") << (options_.acl.empty() ? FleetAcl() : options_.acl);
    conf << "cafile " << (options_.client_ca.empty() ? pki.ca : options_.client_ca).string() << "\n"
         << "certfile " << options_.server.cert.string() << "\n"
         << "keyfile " << options_.server.key.string() << "\n"
         << "require_certificate true\n"
         << "use_identity_as_username true\n"
         << "allow_anonymous false\n"
         << "acl_file " << (dir_ / "acl").string() << "\n";
  } else {
    conf << "allow_anonymous true\n";
  }
  conf << options_.extra_config;
}

bool Mosquitto::Start(std::string* error) {
  if (pid_ > 0) return true;
  if (port_ == 0) port_ = FreeLoopbackPort();
  WriteConfig();
  pid_ = fork();
  if (pid_ == 0) {
    std::string out = (dir_ / "mosquitto.stdout").string();
    FILE* f = freopen(out.c_str(), "a", stdout);
    FILE* g = freopen(out.c_str(), "a", stderr);
    (void)f;
    (void)g;
    std::string conf = (dir_ / "mosquitto.conf").string();
    execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 200; ++i) {
    if (CanConnect(port_)) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (error != nullptr) {
    std::ifstream out(dir_ / "mosquitto.stdout");
    std::stringstream s;
    s << out.rdbuf();
    *error =
        "mosquitto did not listen on 127.0.0.1:" + std::to_string(port_) + ": " + s.str() + log();
  }
  if (pid_ > 0) Kill();
  return false;
}

void Mosquitto::Reap(int signal, int grace_ms) {
  if (pid_ <= 0) return;
  kill(pid_, signal);
  for (int waited_ms = 0; waited_ms < grace_ms; waited_ms += 10) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void Mosquitto::Stop() { Reap(SIGTERM, 5000); }

void Mosquitto::Kill() { Reap(SIGKILL, 5000); }

std::string Mosquitto::uri(const std::string& host) const {
  return std::string(options_.tls ? "ssl://" : "tcp://") + host + ":" + std::to_string(port_);
}

std::string Mosquitto::log() const {
  std::ifstream in(dir_ / "mosquitto.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace waybill::testing
