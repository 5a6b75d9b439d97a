// waybillctl provision: give a unit its identity (docs/PROVISIONING.md).
//
// Two runs, with the signing in between:
//   1. provision --device-id ID --broker URL --board NAME   key (0600) + CSR + waybill.toml
//   2. provision --install-cert CERT --ca-cert CA            checks and installs the certificate
// Each run reads what an earlier run wrote to DIR/waybill.toml, so step 2 needs no repetition and
// a re-provisioning (new broker, renewed certificate, new id) changes only what it is given.
//
// What provisioning never does: print or copy the private key, replace an existing key (only
// --rotate-key does), touch the data directory. The outbox and its sequence lease live there, so
// a unit's sequence carries on across any re-provisioning. Changing the device id of a unit whose
// outbox still holds events is refused without --force: those events would leave under the new
// id.
#include <pwd.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "commands.h"
#include "format.h"
#include "waybill/firmware/config.h"
#include "waybill/hal/board.h"
#include "waybill/hal/clock.h"
#include "waybill/sync/data_key.h"
#include "waybill/sync/outbox_reader.h"
#include "waybill/sync/pki.h"
#include "waybill/sync/wire.h"

namespace waybill::ctl {
namespace {

namespace fs = std::filesystem;

constexpr const char* kConfigFile = "waybill.toml";
constexpr const char* kKeyFile = "device.key";
constexpr const char* kDataKeyFile = "data.key";
constexpr const char* kCsrFile = "device.csr";
constexpr const char* kCertFile = "device.pem";
constexpr const char* kCaFile = "ca.pem";

struct ProvisionArgs {
  std::string dir = "/etc/waybill";
  std::string install_dir;  // default: dir
  std::string device_id;
  std::string broker;
  std::string board;
  std::string board_file;
  std::string data_dir;
  std::string install_cert;
  std::string ca_cert;
  std::string broker_ca;
  std::string csr_out;
  std::string owner;
  bool rotate_key = false;
  bool force = false;
};

void Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "waybillctl provision: %s\n", message.c_str());
  SetExitCode(code);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string ModeString(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "missing";
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04o", st.st_mode & 07777);
  return buf;
}

// The string at table[section][key], if any.
std::string Get(const toml::table& root, const char* section, const char* key) {
  if (const toml::table* t = root[section].as_table()) {
    if (auto v = (*t)[key].value<std::string>()) return *v;
  }
  return "";
}

void Set(toml::table& root, const char* section, const char* key, const std::string& value) {
  if (!root[section].as_table()) root.insert_or_assign(section, toml::table{});
  root[section].as_table()->insert_or_assign(key, value);
}

// Where the unit's outbox lives: --data-dir, the config's [storage] data_dir, else the board's.
std::optional<fs::path> DataDir(const ProvisionArgs& a, const toml::table& config,
                                const std::string& board) {
  if (!a.data_dir.empty()) return fs::path(a.data_dir);
  if (std::string d = Get(config, "storage", "data_dir"); !d.empty()) return fs::path(d);
  fs::path board_file = !a.board_file.empty()
                            ? fs::path(a.board_file)
                            : fs::path("/usr/share/waybill/boards") / board / "board.toml";
  if (board.empty() && a.board_file.empty()) return std::nullopt;
  Result<hal::BoardConfig> b = hal::LoadBoardConfig(board_file);
  if (!b.ok()) return std::nullopt;
  return b->storage.data_dir;
}

// Owner of the key: --owner, else the `waybill` user (the one waybilld runs as) when run as root.
Status KeyOwner(const std::string& owner, sync::FileWriteOptions* files, std::string* shown) {
  std::string name = owner;
  if (name.empty()) {
    if (::geteuid() != 0 || ::getpwnam("waybill") == nullptr) return Status::Ok();
    name = "waybill";
  }
  const struct passwd* pw = ::getpwnam(name.c_str());
  if (pw == nullptr) {
    return Status::InvalidArgument("--owner " + name + ": no such user");
  }
  files->owner = pw->pw_uid;
  files->group = pw->pw_gid;
  *shown = name;
  return Status::Ok();
}

void Run(ProvisionArgs a) {
  const std::string dir = a.dir;
  // waybilld may start from any working directory: the paths it reads are absolute.
  const std::string on_unit =
      a.install_dir.empty() ? fs::absolute(dir).lexically_normal().string() : a.install_dir;
  const std::string config_path = dir + "/" + kConfigFile;
  const std::string key_path = dir + "/" + kKeyFile;
  const std::string csr_path = dir + "/" + kCsrFile;
  const std::string cert_path = dir + "/" + kCertFile;
  const std::string ca_path = dir + "/" + kCaFile;
  const std::string data_key_path = dir + "/" + kDataKeyFile;

  if (!a.install_cert.empty() && a.ca_cert.empty()) {
    return Fail("--install-cert needs --ca-cert, the CA that signed it (to check the chain)", 2);
  }

  // What an earlier run (or the tech's hand) left in waybill.toml.
  toml::table config;
  bool had_config = fs::exists(config_path);
  if (had_config) {
    try {
      config = toml::parse_file(config_path);
    } catch (const toml::parse_error& e) {
      Fail(config_path + ":" + std::to_string(e.source().begin.line) + ": " +
           std::string(e.description()) + " (fix or remove it; nothing was changed)");
      return;
    }
  }
  const std::string old_id = Get(config, "device", "id");

  // The certificate to install decides the id when none is given or stored.
  std::optional<sync::CertificateInfo> cert_info;
  if (!a.install_cert.empty()) {
    auto info = sync::ReadCertificate(a.install_cert);
    if (!info.ok()) return Fail(info.status().message());
    cert_info = *info;
  }
  std::string id = !a.device_id.empty() ? a.device_id : old_id;
  if (id.empty() && cert_info) id = cert_info->common_name;
  std::string broker = !a.broker.empty() ? a.broker : Get(config, "uplink", "broker");
  std::string board = !a.board.empty() ? a.board : Get(config, "device", "board");

  if (id.empty()) return Fail("--device-id is required on a unit that has none yet", 2);
  if (!sync::IsValidDeviceId(id)) {
    return Fail("--device-id \"" + id +
                    "\" must be 1 to 64 letters, digits, '-' or '_' (it is part of MQTT topics "
                    "and the certificate's CN)",
                2);
  }
  if (broker.empty()) return Fail("--broker is required (e.g. ssl://mqtt.example.com:8883)", 2);
  if (broker.rfind("ssl://", 0) != 0) {
    return Fail("--broker " + broker +
                    " must start with ssl://: a provisioned unit authenticates with its "
                    "certificate over TLS",
                2);
  }
  if (board.empty()) return Fail("--board is required (e.g. rpi4)", 2);

  // A new id on a unit with unsent events would send them under the new id: refuse.
  std::optional<fs::path> data_dir = DataDir(a, config, board);
  std::optional<sync::OutboxSummary> outbox;
  std::string outbox_path;
  if (data_dir) {
    outbox_path = (*data_dir / "outbox.db").string();
    if (fs::exists(outbox_path)) {
      auto reader = sync::OutboxReader::Open(outbox_path);
      if (!reader.ok()) return Fail("cannot read the outbox: " + reader.status().message());
      auto summary = (*reader)->Summary();
      if (!summary.ok()) return Fail("cannot read the outbox: " + summary.status().message());
      outbox = *summary;
    }
  }
  if (!old_id.empty() && old_id != id) {
    if (!data_dir && !a.force) {
      return Fail("the device id changes from " + old_id + " to " + id +
                      ", and the unit's data directory is unknown, so its outbox cannot be "
                      "checked for unsent events; pass --data-dir DIR, or --force",
                  3);
    }
    if (outbox && outbox->events > 0) {
      std::string waiting = std::to_string(outbox->events) + " events are waiting in " +
                            outbox_path + " (recorded as " + old_id + ")";
      if (!a.force) {
        return Fail("the device id changes from " + old_id + " to " + id + ", but " + waiting +
                        "; they would be sent as " + id +
                        ". Let the unit drain its outbox first, or pass --force",
                    3);
      }
      std::printf("warning: %s; --force: they will be sent as %s\n", waiting.c_str(), id.c_str());
    }
  }

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Fail("cannot create " + dir + ": " + ec.message());

  // The key: made once, here, with mode 0600; reused on every later run.
  sync::FileWriteOptions key_files;
  std::string owner_shown;
  if (Status s = KeyOwner(a.owner, &key_files, &owner_shown); !s.ok()) {
    return Fail(s.message(), 2);
  }
  bool key_exists = fs::exists(key_path);
  bool new_key = !key_exists || a.rotate_key;
  if (new_key) {
    key_files.replace = a.rotate_key;
    if (Status s = sync::GenerateKeyFile(key_path, key_files); !s.ok()) return Fail(s.message());
  } else if (!owner_shown.empty()) {
    if (::chown(key_path.c_str(), *key_files.owner, *key_files.group) != 0) {
      return Fail("cannot give " + key_path + " to " + owner_shown + ": " + std::strerror(errno));
    }
  }
  auto key = sync::DeviceKey::Load(key_path);
  if (!key.ok()) return Fail(key.status().message());

  // The data key that seals personal data at rest: made once, beside the device key and owned
  // like it, and never rotated here (what it sealed would no longer open). A config that names
  // another place (secure storage) keeps it; so does a unit that already made its own key in its
  // data directory before it was provisioned (its outbox and photos are sealed with that one).
  std::string data_key_setting = Get(config, "storage", "data_key_file");
  const std::string data_key_here = on_unit + "/" + kDataKeyFile;
  std::string data_key_note;
  if (data_key_setting.empty() && data_dir && fs::exists(*data_dir / kDataKeyFile)) {
    data_key_setting = (*data_dir / kDataKeyFile).string();
    data_key_note = "data key (kept where waybilld made it before provisioning)";
  }
  if (data_key_setting.empty() || data_key_setting == data_key_here) {
    bool fresh = !fs::exists(data_key_path);
    sync::DataKeyOptions dk;
    dk.owner = key_files.owner;
    dk.group = key_files.group;
    auto data_key = sync::DataKey::LoadOrCreate(data_key_path, dk);
    if (!data_key.ok()) return Fail(data_key.status().message());
    data_key_setting = data_key_here;
    data_key_note = fresh ? "data key (new)" : "data key (kept)";
  }

  // A CSR whenever there is no certificate to install, or the key or the id is new.
  bool write_csr = a.install_cert.empty() || new_key || old_id != id;
  if (write_csr) {
    auto csr = (*key)->MakeCsrPem(id);
    if (!csr.ok()) return Fail(csr.status().message());
    sync::FileWriteOptions files;
    files.replace = true;
    for (const std::string& p : {csr_path, a.csr_out}) {
      if (p.empty()) continue;
      if (Status s = sync::WriteFileAtomically(p, *csr, files); !s.ok()) return Fail(s.message());
    }
  }

  // The certificate: ours (the key's), for this id, signed by the fleet CA, valid now.
  if (cert_info) {
    if (Status s = (*key)->CheckCertificate(a.install_cert); !s.ok()) {
      return Fail(s.message() + "; was it signed from this unit's CSR (" + csr_path + ")?");
    }
    if (cert_info->common_name != id) {
      return Fail("certificate " + a.install_cert + " is for \"" + cert_info->common_name +
                      "\", but this unit is \"" + id + "\"",
                  3);
    }
    if (Status s = sync::VerifyCertificateChain(a.install_cert, a.ca_cert); !s.ok()) {
      return Fail(s.message());
    }
    sync::FileWriteOptions files;
    files.replace = true;
    if (Status s = sync::WriteFileAtomically(cert_path, ReadAll(a.install_cert), files); !s.ok()) {
      return Fail(s.message());
    }
  }
  std::string broker_ca = !a.broker_ca.empty() ? a.broker_ca : a.ca_cert;
  if (!broker_ca.empty()) {
    if (auto info = sync::ReadCertificate(broker_ca); !info.ok()) {
      return Fail(info.status().message());
    }
    sync::FileWriteOptions files;
    files.replace = true;
    if (Status s = sync::WriteFileAtomically(ca_path, ReadAll(broker_ca), files); !s.ok()) {
      return Fail(s.message());
    }
  }

  // waybill.toml: the keys provisioning owns; every other setting stays as it was.
  Set(config, "device", "id", id);
  Set(config, "device", "board", board);
  if (!a.data_dir.empty()) Set(config, "storage", "data_dir", a.data_dir);
  Set(config, "storage", "data_key_file", data_key_setting);
  Set(config, "uplink", "broker", broker);
  Set(config, "uplink", "ca_file", on_unit + "/" + kCaFile);
  Set(config, "uplink", "cert_file", on_unit + "/" + kCertFile);
  Set(config, "uplink", "key_file", on_unit + "/" + kKeyFile);
  std::stringstream text;
  text << "# waybill.toml, written by `waybillctl provision` on "
       << Iso8601(hal::Clock::System().wall_ms()) << ".\n"
       << "# Provisioning owns [device] id and board, [uplink] broker, ca_file, cert_file and\n"
       << "# key_file, and [storage] data_key_file when unset; it keeps every other key (not\n"
       << "# comments). See docs/PROVISIONING.md and docs/PERSONAL-DATA.md.\n"
       << config << "\n";
  if (Result<firmware::DaemonConfig> check = firmware::ParseDaemonConfig(text.str(), config_path);
      !check.ok()) {
    return Fail("the resulting config would not load, nothing was written to it: " +
                check.status().message());
  }
  sync::FileWriteOptions files;
  files.replace = true;
  if (Status s = sync::WriteFileAtomically(config_path, text.str(), files); !s.ok()) {
    return Fail(s.message());
  }

  // Complete when the installed certificate is this key's and names this id (after a new id or
  // a new key, the old certificate is neither).
  bool complete = false;
  if (fs::exists(cert_path) && fs::exists(ca_path) && (*key)->CheckCertificate(cert_path).ok()) {
    auto installed = sync::ReadCertificate(cert_path);
    complete = installed.ok() && installed->common_name == id;
  }
  std::printf("device %s on board %s, broker %s\n", id.c_str(), board.c_str(), broker.c_str());
  auto line = [](const std::string& path, const char* what) {
    std::printf("  %s  %s  %s\n", ModeString(path).c_str(), path.c_str(), what);
  };
  line(config_path, "config");
  line(key_path, new_key ? (a.rotate_key && key_exists ? "private key (new, replaced the old one)"
                                                       : "private key (new)")
                         : "private key (kept)");
  if (!data_key_note.empty()) {
    line(data_key_setting == data_key_here ? data_key_path : data_key_setting,
         data_key_note.c_str());
  }
  if (fs::exists(csr_path)) line(csr_path, write_csr ? "CSR (new)" : "CSR");
  line(cert_path, cert_info ? "certificate (installed)" : "certificate");
  line(ca_path, !broker_ca.empty() ? "broker CA (installed)" : "broker CA");
  if (!owner_shown.empty()) std::printf("  the key belongs to %s\n", owner_shown.c_str());
  if (outbox) {
    std::printf("  outbox %s kept: %llu events waiting, next sequence %llu\n", outbox_path.c_str(),
                static_cast<unsigned long long>(outbox->events),
                static_cast<unsigned long long>(outbox->next_seq));
  }
  if (complete) {
    std::printf("provisioned: waybilld can connect as %s\n", id.c_str());
    return;
  }
  std::string next = a.csr_out.empty() ? csr_path : a.csr_out;
  std::printf(
      "not complete yet: sign %s with the fleet CA, e.g.\n"
      "  waybillctl ca sign --ca FLEET_CA_DIR --csr %s --out %s.pem\n"
      "then install it:\n"
      "  waybillctl provision --dir %s --install-cert %s.pem --ca-cert FLEET_CA_DIR/ca.crt\n",
      next.c_str(), next.c_str(), id.c_str(), dir.c_str(), id.c_str());
}

}  // namespace

void RegisterProvision(CLI::App& app) {
  auto args = std::make_shared<ProvisionArgs>();
  CLI::App* p = app.add_subcommand(
      "provision", "Give a unit its identity: key pair, CSR, certificate, CA, waybill.toml");
  p->footer(
      "On the unit (the key never leaves it):\n"
      "  waybillctl provision --device-id truck-0042 --board rpi4 \\\n"
      "      --broker ssl://mqtt.fleet.example:8883\n"
      "  waybillctl ca sign --ca ~/fleet-ca --csr device.csr --out truck-0042.pem   (tech)\n"
      "  waybillctl provision --install-cert truck-0042.pem --ca-cert fleet-ca.crt\n"
      "\n"
      "On the tech's machine, then copied to the unit's /etc/waybill:\n"
      "  waybillctl provision --dir ./truck-0042 --install-dir /etc/waybill \\\n"
      "      --device-id truck-0042 --board rpi4 --broker ssl://mqtt.fleet.example:8883\n"
      "  waybillctl ca sign --ca ~/fleet-ca --csr truck-0042/device.csr --out truck-0042.pem\n"
      "  waybillctl provision --dir ./truck-0042 --install-dir /etc/waybill \\\n"
      "      --install-cert truck-0042.pem --ca-cert ~/fleet-ca/ca.crt\n"
      "\n"
      "Files in DIR: waybill.toml, device.key (0600, owned by the waybill user when run as\n"
      "root), device.csr, device.pem, ca.pem. An existing key is kept (--rotate-key makes a new\n"
      "one); the data directory and the outbox's sequence are never touched. A new --device-id\n"
      "on a unit whose outbox holds events is refused without --force.");
  p->add_option("--dir", args->dir, "Folder for the unit's files")->capture_default_str();
  p->add_option("--install-dir", args->install_dir,
                "Where DIR will be on the unit, for the paths in waybill.toml (default: DIR)");
  p->add_option("--device-id", args->device_id,
                "The unit's id: MQTT topics and certificate CN (default: as before)");
  p->add_option("--broker", args->broker, "ssl://host:port (default: as before)");
  p->add_option("--board", args->board, "Board name, e.g. rpi4 (default: as before)");
  p->add_option("--board-file", args->board_file,
                "Board file for the data directory (default: "
                "/usr/share/waybill/boards/BOARD/board.toml)");
  p->add_option("--data-dir", args->data_dir,
                "Sets [storage] data_dir (default: as before, else the board's)");
  p->add_option("--install-cert", args->install_cert,
                "The signed certificate to install (must match the unit's key)");
  p->add_option("--ca-cert", args->ca_cert,
                "The fleet CA that signed the certificate; also installed as ca.pem unless "
                "--broker-ca");
  p->add_option("--broker-ca", args->broker_ca,
                "The CA of the broker's certificate when it is not the fleet CA");
  p->add_option("--csr-out", args->csr_out, "Also write the CSR here");
  p->add_option("--owner", args->owner, "User owning device.key (default: waybill, when root)");
  p->add_flag("--rotate-key", args->rotate_key,
              "Replace the existing key with a new one (its certificate must be signed again)");
  p->add_flag("--force", args->force,
              "Change the device id even though the outbox holds unsent events");
  p->callback([args] { Run(*args); });
}

}  // namespace waybill::ctl
