// Test support: a throw-away PKI made with the openssl CLI, once per test binary.
//
// What the uplink's TLS tests need: a fleet CA, a server certificate for 127.0.0.1 and localhost
// (subjectAltName, since host names are verified against SAN), device certificates whose CN is the
// device id (Mosquitto's use_identity_as_username turns it into the ACL user), a bridge
// certificate (CN=bridge), a device certificate from a CA the broker does not trust, an expired
// device certificate, a server certificate for another host name, and an expired server
// certificate. Keys are EC P-256: quick to make, small on the wire.
#pragma once

#include <filesystem>
#include <string>

namespace waybill::testing {

struct CertPair {
  std::filesystem::path cert;
  std::filesystem::path key;
};

struct TestPki {
  std::filesystem::path dir;
  std::filesystem::path ca;    // the fleet CA certificate (trusted by broker and devices)
  CertPair server;             // CN=localhost, SAN DNS:localhost, IP:127.0.0.1
  CertPair server_other_host;  // SAN DNS:broker.elsewhere.example only
  CertPair server_expired;     // right host names, validity ended in 2020
  CertPair bridge;             // CN=bridge
  CertPair device(const std::string& id) const;  // CN=<id>: made for truck-1, truck-2 and truck-3
  CertPair rogue_device;                         // CN=truck-1, signed by a CA nobody trusts
  CertPair expired_device;                       // CN=truck-1, validity ended in 2020
  std::filesystem::path rogue_ca;                // the CA nobody trusts
};

// Makes the PKI under a temp dir the first time it is called in this process, then returns the
// same one. Aborts the test binary (with the openssl output) if the openssl CLI fails.
const TestPki& GetTestPki();

}  // namespace waybill::testing
