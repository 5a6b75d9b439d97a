// Why did a connection to the broker fail? In words an operator can act on.
//
// Paho reports every network-level failure as "TCP/TLS connect failure" (-1): a DNS failure, a
// refused port, an expired certificate and an unknown CA all look the same. So after a failed
// attempt the uplink asks this module, which retraces the steps itself: resolve the host, open a
// TCP connection, and for ssl:// run one TLS handshake with OpenSSL using the same CA, client
// certificate and host name check, then read the OpenSSL verify result or the broker's alert.
// The probe costs one handshake (a few kB on a cellular link), which is why the uplink does not
// run it on every attempt of a long outage (see uplink.cc).
#pragma once

#include <string>
#include <string_view>

#include "waybill/status.h"
#include "waybill/sync/uplink.h"

namespace waybill::sync::internal {

struct BrokerAddress {
  bool tls = false;
  std::string host;
  int port = 0;
};

// tcp://host:port, mqtt://host:port, ssl://host:port, mqtts://host:port; IPv6 hosts in brackets.
// The port defaults to 1883 (8883 with TLS).
Result<BrokerAddress> ParseBrokerUri(std::string_view uri);

// Checks, without any network, that the TLS files exist, parse, that the key matches the
// certificate, and that the device's own certificate is within its validity period.
// "client certificate /etc/waybill/device.crt expired on 2020-01-01 00:00:00 UTC".
Status CheckTlsFiles(const UplinkTlsOptions& tls);

// Retraces a connect to `broker`: DNS, TCP, then TLS (with `tls`) when broker.tls. Returns the
// first step that fails, in words ("DNS lookup of broker.example failed: Name or service not
// known"), or an empty string when every step succeeded (the failure then came from MQTT or was
// transient). Blocks for at most about 2 * timeout_ms. Thread-safe.
std::string DiagnoseConnectFailure(const BrokerAddress& broker, const UplinkTlsOptions& tls,
                                   int timeout_ms);

// A CONNACK return code of MQTT 3.1.1 (1..5) in words.
std::string ConnackWords(int rc);
// An MQTT 5 reason code in words ("Not authorized (0x87)").
std::string ReasonWords(int reason);
// A Paho return code (MQTTASYNC_*, negative) in words.
std::string PahoWords(int rc);

}  // namespace waybill::sync::internal
