// waybillctl ca: a small fleet CA for tests, labs and small fleets (docs/PROVISIONING.md).
//
//   waybillctl ca init --dir DIR [--days N] [--name CN] [--force]
//   waybillctl ca sign --ca DIR --csr FILE --out FILE [--days N] [--force]
//
// The CA is a folder holding ca.key (0600) and ca.crt. It keeps no record of what it signed and
// cannot revoke: a fleet that needs either uses its own PKI and signs the same CSRs there.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "commands.h"
#include "format.h"
#include "waybill/hal/clock.h"
#include "waybill/sync/pki.h"

namespace waybill::ctl {
namespace {

int64_t NowUnixSeconds() { return hal::Clock::System().wall_ms() / 1000; }

void Fail(const char* cmd, const Status& s, int code = 1) {
  std::fprintf(stderr, "waybillctl %s: %s\n", cmd, s.message().c_str());
  SetExitCode(code);
}

void RunInit(const std::string& dir, int days, const std::string& name, bool force) {
  sync::CaInitOptions options;
  options.common_name = name;
  options.validity_days = days;
  options.now_unix_s = NowUnixSeconds();
  options.files.replace = force;
  Status s = sync::InitCa(dir, options);
  if (!s.ok()) {
    Fail("ca init", s, s.IsInvalidArgument() ? 2 : 1);
    return;
  }
  std::string cert = dir + "/" + sync::kCaCertFile;
  auto info = sync::ReadCertificate(cert);
  std::printf("fleet CA \"%s\" created in %s\n", name.c_str(), dir.c_str());
  std::printf("  %-8s certificate, give it to brokers and to `waybillctl provision --ca-cert`\n",
              sync::kCaCertFile);
  std::printf("  %-8s private key, mode 0600: keep it off the trucks and off shared disks\n",
              sync::kCaKeyFile);
  if (info.ok()) {
    std::printf("  valid until %s\n", Iso8601(info->not_after_unix_s * 1000).c_str());
  }
}

void RunSign(const std::string& ca_dir, const std::string& csr_path, const std::string& out,
             int days, bool force) {
  std::ifstream in(csr_path, std::ios::binary);
  if (!in) {
    Fail("ca sign", Status::NotFound("CSR " + csr_path + " cannot be read"));
    return;
  }
  std::stringstream csr;
  csr << in.rdbuf();
  sync::SignOptions options;
  options.validity_days = days;
  options.now_unix_s = NowUnixSeconds();
  Result<std::string> cert = sync::SignCsr(ca_dir, csr.str(), csr_path, options);
  if (!cert.ok()) {
    Fail("ca sign", cert.status(), cert.status().IsInvalidArgument() ? 2 : 1);
    return;
  }
  sync::FileWriteOptions files;
  files.mode = 0644;
  files.replace = force;
  if (Status s = sync::WriteFileAtomically(out, *cert, files); !s.ok()) {
    Fail("ca sign", s);
    return;
  }
  auto info = sync::ReadCertificate(out);
  if (!info.ok()) {
    Fail("ca sign", info.status());
    return;
  }
  std::printf("signed %s: %s\n", info->common_name.c_str(), out.c_str());
  std::printf("  serial %s, valid %s .. %s, client authentication only\n", info->serial_hex.c_str(),
              Iso8601(info->not_before_unix_s * 1000).c_str(),
              Iso8601(info->not_after_unix_s * 1000).c_str());
}

}  // namespace

void RegisterCa(CLI::App& app) {
  CLI::App* ca = app.add_subcommand("ca", "A small fleet CA for tests and small fleets");
  ca->require_subcommand(1);

  struct InitArgs {
    std::string dir;
    int days = 3650;
    std::string name = "Waybill Fleet CA";
    bool force = false;
  };
  auto init_args = std::make_shared<InitArgs>();
  CLI::App* init = ca->add_subcommand("init", "Create a CA key and a self-signed CA certificate");
  init->footer(
      "Example:\n"
      "  waybillctl ca init --dir ~/fleet-ca --name \"Acme Fleet CA\" --days 3650\n"
      "Writes DIR/ca.key (mode 0600, in a 0700 folder) and DIR/ca.crt. An existing CA is kept\n"
      "unless --force: replacing it orphans every certificate it signed.");
  init->add_option("--dir", init_args->dir, "Folder for ca.key and ca.crt (created)")->required();
  init->add_option("--days", init_args->days, "Validity of the CA certificate")
      ->check(CLI::Range(1, 36500));
  init->add_option("--name", init_args->name, "CN of the CA (letters, digits, spaces, - _ . ( ))");
  init->add_flag("--force", init_args->force, "Replace an existing CA in DIR");
  init->callback(
      [init_args] { RunInit(init_args->dir, init_args->days, init_args->name, init_args->force); });

  struct SignArgs {
    std::string ca;
    std::string csr;
    std::string out;
    int days = 825;
    bool force = false;
  };
  auto sign_args = std::make_shared<SignArgs>();
  CLI::App* sign =
      ca->add_subcommand("sign", "Sign a device's CSR: a client certificate, CN = device id");
  sign->footer(
      "Example:\n"
      "  waybillctl ca sign --ca ~/fleet-ca --csr truck-0042.csr --out truck-0042.pem\n"
      "The CSR's signature must verify and its CN must be a valid device id (the broker makes\n"
      "the CN the MQTT user). The certificate has a random serial, keyUsage digitalSignature,\n"
      "extendedKeyUsage clientAuth, and ends no later than the CA.");
  sign->add_option("--ca", sign_args->ca, "CA folder (from `ca init`)")->required();
  sign->add_option("--csr", sign_args->csr, "The device's CSR (PEM or DER)")->required();
  sign->add_option("--out", sign_args->out, "Where to write the certificate (PEM)")->required();
  sign->add_option("--days", sign_args->days, "Validity of the certificate")
      ->check(CLI::Range(1, 36500));
  sign->add_flag("--force", sign_args->force, "Overwrite --out if it exists");
  sign->callback([sign_args] {
    RunSign(sign_args->ca, sign_args->csr, sign_args->out, sign_args->days, sign_args->force);
  });
}

}  // namespace waybill::ctl
