#include "support/test_pki.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;

// One shell script, so that a failure shows every command and openssl's own words.
std::string Script() {
  return R"SH(set -eu
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
mkca() {  # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "$2" -days 3650 -sha256 -out "$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
sign() {  # name subject ca extfile-line
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -days 825 \
    -sha256 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}
# A certificate whose validity ended long ago: only `openssl ca` takes explicit dates.
sign_expired() {  # name subject ca extfile-line
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  mkdir -p "ca-$3"
  : > "ca-$3/index.txt"
  printf '%s\n' "$4" > "$1.ext"
  cat > "ca-$3/ca.cnf" <<EOF
[ ca ]
default_ca = test
[ test ]
database = ca-$3/index.txt
new_certs_dir = ca-$3
certificate = $3.crt
private_key = $3.key
serial = ca-$3/serial
default_md = sha256
policy = any
unique_subject = no
[ any ]
commonName = supplied
EOF
  [ -f "ca-$3/serial" ] || echo 1000 > "ca-$3/serial"
  openssl ca -batch -config "ca-$3/ca.cnf" -in "$1.csr" -out "$1.crt" -notext \
    -startdate 20190101000000Z -enddate 20200101000000Z -extfile "$1.ext" 2>/dev/null
}
SERVER_EXT="subjectAltName=DNS:localhost,IP:127.0.0.1"
CLIENT_EXT="extendedKeyUsage=clientAuth"
mkca ca "/O=Waybill Test/CN=Waybill Test Fleet CA"
mkca rogue-ca "/O=Nobody/CN=Rogue CA"
sign server "/O=Waybill Test/CN=localhost" ca "$SERVER_EXT"
sign server-other-host "/O=Waybill Test/CN=broker.elsewhere.example" ca \
  "subjectAltName=DNS:broker.elsewhere.example"
sign_expired server-expired "/O=Waybill Test/CN=localhost" ca "$SERVER_EXT"
sign bridge "/O=Waybill Test/CN=bridge" ca "$CLIENT_EXT"
for d in truck-1 truck-2 truck-3; do sign "$d" "/O=Waybill Test/CN=$d" ca "$CLIENT_EXT"; done
sign rogue-truck-1 "/O=Nobody/CN=truck-1" rogue-ca "$CLIENT_EXT"
sign_expired expired-truck-1 "/O=Waybill Test/CN=truck-1" ca "$CLIENT_EXT"
)SH";
}

TestPki Make() {
  TestPki pki;
  pki.dir = fs::temp_directory_path() / ("waybill-pki-" + std::to_string(getpid()));
  fs::remove_all(pki.dir);
  fs::create_directories(pki.dir);
  fs::path script = pki.dir / "make.sh";
  std::ofstream(script) << Script();
  std::string cmd = "cd '" + pki.dir.string() + "' && sh make.sh > make.log 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream log(pki.dir / "make.log");
    std::stringstream s;
    s << log.rdbuf();
    std::cerr << "making the test PKI with the openssl CLI failed:\n" << s.str() << std::endl;
    std::abort();
  }
  auto pair = [&](const std::string& name) {
    return CertPair{pki.dir / (name + ".crt"), pki.dir / (name + ".key")};
  };
  pki.ca = pki.dir / "ca.crt";
  pki.rogue_ca = pki.dir / "rogue-ca.crt";
  pki.server = pair("server");
  pki.server_other_host = pair("server-other-host");
  pki.server_expired = pair("server-expired");
  pki.bridge = pair("bridge");
  pki.rogue_device = pair("rogue-truck-1");
  pki.expired_device = pair("expired-truck-1");
  return pki;
}

// Removes the PKI when the test binary exits.
struct PkiHolder {
  TestPki pki = Make();
  ~PkiHolder() {
    std::error_code ec;
    fs::remove_all(pki.dir, ec);
  }
};

}  // namespace

CertPair TestPki::device(const std::string& id) const {
  return CertPair{dir / (id + ".crt"), dir / (id + ".key")};
}

const TestPki& GetTestPki() {
  static PkiHolder holder;
  return holder.pki;
}

}  // namespace waybill::testing
