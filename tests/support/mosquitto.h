// Test support: a real Mosquitto broker on a free loopback port, owned by one test.
//
// The broker binds 127.0.0.1 only, keeps its persistence and log in the test's directory, and can
// be stopped (SIGTERM: it saves its database), killed (SIGKILL: it loses what it had not saved)
// and started again on the same port, so that clients see the same URI come back. Plain brokers
// allow anonymous clients; TLS brokers require a client certificate signed by the test CA, take
// the certificate's CN as the user name and apply the fleet ACL (see FleetAcl()).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

#include "support/test_pki.h"

namespace waybill::testing {

struct MosquittoOptions {
  bool tls = false;
  // For TLS: the server certificate (default: the PKI's server cert for 127.0.0.1/localhost).
  CertPair server;
  // For TLS: the CA file client certificates must chain to (may hold several CAs); empty = the
  // PKI's CA.
  std::filesystem::path client_ca;
  // For TLS: the ACL file contents; empty = FleetAcl().
  std::string acl;
  // Lines appended to mosquitto.conf (e.g. "max_queued_messages 100000\n").
  std::string extra_config;
};

// Devices write only under fleet/<their CN>/ (up, status, cmd/result) and read their ack and cmd
// topics; the bridge (CN=bridge) reads every device's up, status and cmd/result and writes acks
// and commands.
std::string FleetAcl();

class Mosquitto {
 public:
  // `dir` holds mosquitto.conf, the ACL, persistence and mosquitto.log; created if needed. The
  // port is chosen at the first Start() and kept for restarts.
  Mosquitto(std::filesystem::path dir, MosquittoOptions options);
  ~Mosquitto();  // kills the broker if it runs
  Mosquitto(const Mosquitto&) = delete;
  Mosquitto& operator=(const Mosquitto&) = delete;

  // Starts the broker and waits (at most 10 s) until its port accepts connections. Returns false
  // (with the log in `error`) if it exited or never listened.
  bool Start(std::string* error = nullptr);
  // SIGTERM, then waits for the exit (SIGKILL after 5 s).
  void Stop();
  // SIGKILL, then waits for the exit.
  void Kill();
  bool running() const { return pid_ > 0; }

  int port() const { return port_; }
  // tcp://127.0.0.1:PORT or ssl://127.0.0.1:PORT (host may be replaced, e.g. "localhost").
  std::string uri(const std::string& host = "127.0.0.1") const;
  std::string log() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  void WriteConfig();
  void Reap(int signal, int grace_ms);

  std::filesystem::path dir_;
  MosquittoOptions options_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// A free TCP port on 127.0.0.1 (bound, read, released: another process could take it in between,
// which the callers accept).
int FreeLoopbackPort();

}  // namespace waybill::testing
