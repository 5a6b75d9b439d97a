#include "connect_diagnosis.h"

#include <MQTTAsync.h>
#include <MQTTReasonCodes.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>

namespace waybill::sync::internal {
namespace {

struct SslCtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslFree {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct FileClose {
  void operator()(FILE* f) const { std::fclose(f); }
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string HostPort(const BrokerAddress& b) {
  return (b.host.find(':') != std::string::npos ? "[" + b.host + "]" : b.host) + ":" +
         std::to_string(b.port);
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// The reason of the last OpenSSL error, or `fallback`.
std::string OpenSslReason(const char* fallback) {
  unsigned long e = ERR_peek_last_error();
  const char* reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
  return reason != nullptr ? reason : fallback;
}

std::string FormatAsn1Time(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "an unreadable date";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// Opens a TCP connection to one of the addresses of `b`, within timeout_ms per address.
int ConnectTcp(const BrokerAddress& b, int timeout_ms, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string port = std::to_string(b.port);
  int rc = getaddrinfo(b.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    *error = "DNS lookup of " + b.host + " failed: " +
             (rc == EAI_SYSTEM ? std::string(std::strerror(errno)) : gai_strerror(rc));
    return -1;
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, &freeaddrinfo);
  std::string last = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    int c = connect(fd, a->ai_addr, a->ai_addrlen);
    if (c != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int ready = poll(&p, 1, timeout_ms);
      if (ready == 0) {
        last = "no answer within " + std::to_string(timeout_ms) + " ms";
        close(fd);
        continue;
      }
      int so_error = 0;
      socklen_t len = sizeof so_error;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
      c = so_error == 0 ? 0 : -1;
      errno = so_error;
    }
    if (c != 0) {
      last = std::strerror(errno);
      close(fd);
      continue;
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
  }
  *error = "TCP connection to " + HostPort(b) + " failed: " + last;
  return -1;
}

std::string VerifyWords(long result, const BrokerAddress& b, const UplinkTlsOptions& tls) {
  switch (result) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return "the broker's certificate has expired (TLS verify error " + std::to_string(result) +
             ")";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "the broker's certificate is not valid yet: is this device's clock right? (TLS "
             "verify error " +
             std::to_string(result) + ")";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return "the broker's certificate is not signed by a CA in " + tls.ca_file +
             ": unknown CA (TLS verify error " + std::to_string(result) + ": " +
             X509_verify_cert_error_string(result) + ")";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "host name mismatch: the broker's certificate is not for " + b.host +
             " (TLS verify error " + std::to_string(result) + ")";
    default:
      return std::string("the broker's certificate was rejected: ") +
             X509_verify_cert_error_string(result) + " (TLS verify error " +
             std::to_string(result) + ")";
  }
}

// The broker's TLS alert (or another handshake error) in words.
std::string AlertWords(const std::string& reason) {
  auto has = [&](const char* s) { return reason.find(s) != std::string::npos; };
  if (has("unknown ca")) {
    return "the broker rejected this device's certificate: it does not trust the CA that signed "
           "it (TLS alert: " +
           reason + ")";
  }
  if (has("certificate expired")) {
    return "the broker rejected this device's certificate: it has expired (TLS alert: " + reason +
           ")";
  }
  if (has("certificate required")) {
    return "the broker requires a client certificate and none is configured (TLS alert: " + reason +
           ")";
  }
  if (has("bad certificate") || has("certificate unknown") || has("unsupported certificate")) {
    return "the broker rejected this device's certificate (TLS alert: " + reason + ")";
  }
  if (has("wrong version number") || has("packet length too long") || has("record layer")) {
    return "the broker did not answer in TLS: is the port a plain MQTT one? (" + reason + ")";
  }
  if (has("unexpected eof")) {
    return "the broker closed the connection during the TLS handshake (" + reason + ")";
  }
  return "TLS handshake failed: " + reason;
}

std::string ProbeTls(int fd, const BrokerAddress& b, const UplinkTlsOptions& tls, int timeout_ms) {
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return "TLS set-up failed: " + OpenSslReason("out of memory");
  if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca_file.c_str(), nullptr) != 1) {
    return "cannot load the CA file " + tls.ca_file + ": " + OpenSslReason("unreadable");
  }
  if (!tls.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert_file.c_str()) != 1) {
      return "cannot load the client certificate " + tls.cert_file + ": " +
             OpenSslReason("unreadable");
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx.get()) != 1) {
      return "cannot use the client key " + tls.key_file + ": " + OpenSslReason("unreadable");
    }
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
  if (!ssl) return "TLS set-up failed: " + OpenSslReason("out of memory");
  SSL_set_fd(ssl.get(), fd);
  bool ip = IsIpLiteral(b.host);
  if (!ip) SSL_set_tlsext_host_name(ssl.get(), b.host.c_str());
  if (tls.verify_host) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    if (ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, b.host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, b.host.c_str(), 0);
    }
  }
  if (SSL_connect(ssl.get()) != 1) {
    long verify = SSL_get_verify_result(ssl.get());
    if (verify != X509_V_OK) return VerifyWords(verify, b, tls);
    return AlertWords(OpenSslReason("connection closed during the handshake"));
  }
  // With TLS 1.3 the client finishes its handshake before the broker has judged the client
  // certificate; the broker's verdict arrives as an alert on the first read. An MQTT broker says
  // nothing before CONNECT, so silence until the timeout means the certificate was accepted.
  pollfd p{fd, POLLIN, 0};
  if (SSL_pending(ssl.get()) == 0 && poll(&p, 1, timeout_ms) <= 0) return "";
  char byte;
  ERR_clear_error();
  int n = SSL_read(ssl.get(), &byte, 1);
  if (n > 0) return "";
  int err = SSL_get_error(ssl.get(), n);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return "";
  if (err == SSL_ERROR_ZERO_RETURN) {
    return "the broker closed the TLS connection right after the handshake";
  }
  return AlertWords(OpenSslReason("connection closed after the handshake"));
}

}  // namespace

Result<BrokerAddress> ParseBrokerUri(std::string_view uri) {
  BrokerAddress b;
  size_t scheme_end = uri.find("://");
  if (scheme_end == std::string_view::npos) {
    return Status::InvalidArgument("broker URI \"" + std::string(uri) +
                                   "\": no scheme, expected tcp://host:port or ssl://host:port");
  }
  std::string_view scheme = uri.substr(0, scheme_end);
  if (scheme == "tcp" || scheme == "mqtt") {
    b.tls = false;
  } else if (scheme == "ssl" || scheme == "mqtts") {
    b.tls = true;
  } else {
    return Status::InvalidArgument("broker URI \"" + std::string(uri) + "\": scheme \"" +
                                   std::string(scheme) + "\" is not tcp, mqtt, ssl or mqtts");
  }
  std::string_view rest = uri.substr(scheme_end + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    size_t close_at = rest.find(']');
    if (close_at == std::string_view::npos) {
      return Status::InvalidArgument("broker URI \"" + std::string(uri) + "\": unclosed [");
    }
    b.host = std::string(rest.substr(1, close_at - 1));
    rest = rest.substr(close_at + 1);
    if (!rest.empty() && rest.front() == ':')
      port_text = rest.substr(1);
    else if (!rest.empty()) {
      return Status::InvalidArgument("broker URI \"" + std::string(uri) + "\": junk after ]");
    }
  } else {
    size_t colon = rest.rfind(':');
    b.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
  }
  if (b.host.empty() || b.host.find('/') != std::string::npos) {
    return Status::InvalidArgument("broker URI \"" + std::string(uri) + "\": no host");
  }
  b.port = b.tls ? 8883 : 1883;
  if (!port_text.empty()) {
    int port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 ||
        port > 65535) {
      return Status::InvalidArgument("broker URI \"" + std::string(uri) + "\": port \"" +
                                     std::string(port_text) + "\" is not 1..65535");
    }
    b.port = port;
  }
  return b;
}

Status CheckTlsFiles(const UplinkTlsOptions& tls) {
  if (tls.ca_file.empty()) {
    return Status::InvalidArgument(
        "tls ca_file: required for an ssl:// broker (the CA that "
        "signed the broker's certificate)");
  }
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return Status::IOError("TLS set-up failed: " + OpenSslReason("out of memory"));
  if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca_file.c_str(), nullptr) != 1) {
    return Status::InvalidArgument("tls ca_file " + tls.ca_file +
                                   ": cannot load: " + OpenSslReason("unreadable"));
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return Status::InvalidArgument("tls cert_file and key_file: give both or neither");
  }
  if (tls.cert_file.empty()) return Status::Ok();
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert_file.c_str()) != 1) {
    return Status::InvalidArgument("tls cert_file " + tls.cert_file +
                                   ": cannot load: " + OpenSslReason("unreadable"));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Status::InvalidArgument("tls key_file " + tls.key_file +
                                   ": cannot load: " + OpenSslReason("unreadable"));
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return Status::InvalidArgument("tls key_file " + tls.key_file +
                                   " does not belong to the certificate " + tls.cert_file);
  }
  X509* cert = SSL_CTX_get0_certificate(ctx.get());
  if (cert != nullptr) {
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
      return Status::FailedPrecondition("client certificate " + tls.cert_file + " expired on " +
                                        FormatAsn1Time(X509_get0_notAfter(cert)));
    }
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
      return Status::FailedPrecondition(
          "client certificate " + tls.cert_file + " is not valid before " +
          FormatAsn1Time(X509_get0_notBefore(cert)) + ": is this device's clock right?");
    }
  }
  return Status::Ok();
}

std::string DiagnoseConnectFailure(const BrokerAddress& broker, const UplinkTlsOptions& tls,
                                   int timeout_ms) {
  if (broker.tls) {
    Status files = CheckTlsFiles(tls);
    if (!files.ok()) return files.message();
  }
  std::string error;
  Fd fd(ConnectTcp(broker, timeout_ms, &error));
  if (fd.get() < 0) return error;
  if (!broker.tls) return "";
  return ProbeTls(fd.get(), broker, tls, timeout_ms);
}

std::string ConnackWords(int rc) {
  switch (rc) {
    case 1:
      return "the broker refused the connection: unacceptable protocol version (CONNACK 1)";
    case 2:
      return "the broker refused the client id (CONNACK 2)";
    case 3:
      return "the broker refused the connection: server unavailable (CONNACK 3)";
    case 4:
      return "the broker refused the connection: bad user name or password (CONNACK 4)";
    case 5:
      return "the broker refused the connection: not authorized (CONNACK 5)";
    default:
      return "the broker refused the connection (CONNACK " + std::to_string(rc) + ")";
  }
}

std::string ReasonWords(int reason) {
  const char* text = MQTTReasonCode_toString(static_cast<MQTTReasonCodes>(reason));
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", reason & 0xff);
  return std::string(text != nullptr ? text : "Unknown reason") + " (" + hex + ")";
}

std::string PahoWords(int rc) {
  const char* text = MQTTAsync_strerror(rc);
  return std::string(text != nullptr ? text : "unknown error") + " (Paho " + std::to_string(rc) +
         ")";
}

}  // namespace waybill::sync::internal
