#include "waybill/firmware/config.h"

#include <gtest/gtest.h>

namespace waybill::firmware {
namespace {

TEST(DaemonConfig, ReadsEverySection) {
  Result<DaemonConfig> cfg = ParseDaemonConfig(R"(
[device]
id = "truck-0042"
board = "rpi4"
[storage]
data_dir = "/var/lib/waybill"
quota_mb = 128
min_free_mb = 8
data_key_file = "/etc/waybill/data.key"
[api]
port = 8181
[gnss]
require_checksum = false
[health]
period_s = 60
)",
                                               "waybill.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->device_id, "truck-0042");
  EXPECT_EQ(cfg->board, "rpi4");
  EXPECT_EQ(cfg->data_dir, "/var/lib/waybill");
  EXPECT_EQ(cfg->data_key_file, "/etc/waybill/data.key");
  EXPECT_EQ(cfg->quota_bytes, 128ull << 20);
  EXPECT_EQ(cfg->min_free_bytes, 8ull << 20);
  EXPECT_EQ(cfg->api_host, "127.0.0.1");
  EXPECT_EQ(cfg->api_port, 8181);
  EXPECT_FALSE(cfg->gnss_require_checksum);
  EXPECT_EQ(cfg->health_period_ms, 60000);
}

TEST(DaemonConfig, ErrorsNameTheFileTheLineAndTheKey) {
  struct Case {
    const char* text;
    const char* expected;
  } cases[] = {
      {"[storage]\nquota_mb = 1\n", "waybill.toml: [device] id is required"},
      {"[device]\nid = \"truck 42\"\n", "waybill.toml:2: device.id must be 1 to 64 letters"},
      {"[device]\nid = \"t\"\n[storage]\nquota_mb = -3\n",
       "waybill.toml:4: quota_mb must be a whole number from 1 to"},
      {"[device]\nid = \"t\"\n[api]\nhost = \"10.0.0.1\"\n", "waybill.toml:4: api.host must be"},
      {"[device]\nid = \"t\"\nidd = 3\n",
       "waybill.toml: unknown key device.idd (known: board, id, key_file)"},
      {"[device]\nid = \"t\"\n[stroage]\n", "waybill.toml: unknown key stroage"},
      {"[device\nid = \"t\"\n", "waybill.toml:1:"},
      {"[device]\nid = \"t\"\nboard = 4\n", "waybill.toml:3: device.board must be a board"},
      {"[device]\nid = \"t\"\n[storage]\ndata_key_file = \"\"\n",
       "waybill.toml:4: storage.data_key_file must be a path"},
  };
  for (const Case& c : cases) {
    Result<DaemonConfig> cfg = ParseDaemonConfig(c.text, "waybill.toml");
    ASSERT_FALSE(cfg.ok()) << c.text;
    EXPECT_EQ(cfg.status().message().rfind(c.expected, 0), 0u)
        << "got: " << cfg.status().message() << "\nexpected prefix: " << c.expected;
  }
}

TEST(DaemonConfig, UplinkSection) {
  Result<DaemonConfig> cfg = ParseDaemonConfig(R"(
[device]
id = "truck-9"
[uplink]
broker = "ssl://127.0.0.1:8883"
mqtt_version = 3
ca_file = "/etc/waybill/ca.pem"
cert_file = "/etc/waybill/device.pem"
key_file = "/etc/waybill/device.key"
keepalive_s = 600
inflight_batches = 40
reconnect_max_s = 20
upload_url = "https://bridge.example.com:8443"
upload_chunk_kib = 64
)",
                                               "waybill.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->uplink.upload_url, "https://bridge.example.com:8443");
  EXPECT_EQ(cfg->uplink.upload_chunk_bytes, 64 * 1024);
  EXPECT_EQ(cfg->uplink.broker, "ssl://127.0.0.1:8883");
  EXPECT_EQ(cfg->uplink.mqtt_version, 3);
  EXPECT_EQ(cfg->uplink.keepalive_s, 600);
  EXPECT_EQ(cfg->uplink.inflight_batches, 40);
  EXPECT_EQ(cfg->uplink.batch_max_events, 60);
  EXPECT_EQ(cfg->uplink.reconnect_max_s, 20);

  struct Case {
    const char* uplink;
    const char* expected;
  } cases[] = {
      {"broker = \"mqtt://x\"", "uplink.broker must start with tcp:// or ssl://"},
      {"broker = \"ssl://x:8883\"", "uplink.ca_file is required"},
      {"broker = \"tcp://x:1883\"\nkeepalive_s = 60",
       "keepalive_s must be a whole number from 240"},
      {"broker = \"tcp://x:1883\"\ninflight_batches = 500", "inflight_batches must be"},
      {"broker = \"tcp://x:1883\"\nmqtt_version = 4", "uplink.mqtt_version must be 5 or 3"},
      {"broker = \"tcp://x:1883\"\nreconnect_max_s = 0", "reconnect_max_s must be a whole number"},
      {"brokr = \"tcp://x:1883\"", "unknown key uplink.brokr"},
      {"upload_url = \"http://bridge:8080\"", "uplink.upload_url must start with https://"},
      {"upload_url = \"https://bridge:8443\"", "upload_url needs uplink.cert_file"},
      {"upload_chunk_kib = 1", "upload_chunk_kib must be a whole number from 4"},
  };
  for (const Case& c : cases) {
    std::string text = std::string("[device]\nid = \"t\"\n[uplink]\n") + c.uplink + "\n";
    Result<DaemonConfig> bad = ParseDaemonConfig(text, "waybill.toml");
    ASSERT_FALSE(bad.ok()) << c.uplink;
    EXPECT_NE(bad.status().message().find(c.expected), std::string::npos) << bad.status().message();
  }
}

TEST(DaemonConfig, ProofsAreSignedWithTheProvisionedKeyUnlessTheDeviceNamesAnother) {
  const char* provisioned = R"(
[device]
id = "truck-9"
[uplink]
broker = "ssl://127.0.0.1:8883"
ca_file = "/etc/waybill/ca.pem"
cert_file = "/etc/waybill/device.pem"
key_file = "/etc/waybill/device.key"
)";
  Result<DaemonConfig> cfg = ParseDaemonConfig(provisioned, "waybill.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->SigningKeyFile(), "/etc/waybill/device.key");

  cfg = ParseDaemonConfig("[device]\nid = \"truck-9\"\nkey_file = \"/etc/waybill/pod.key\"\n",
                          "waybill.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->SigningKeyFile(), "/etc/waybill/pod.key");

  cfg = ParseDaemonConfig("[device]\nid = \"truck-9\"\n", "waybill.toml");
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->SigningKeyFile(), "") << "no key: proofs are recorded unsigned";

  cfg = ParseDaemonConfig("[device]\nid = \"truck-9\"\nkey_file = \"\"\n", "waybill.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("waybill.toml:3: device.key_file"), std::string::npos)
      << cfg.status().message();
}

TEST(DaemonConfig, ApiHostIsLoopbackOrEveryAddressOfAnEmulatedBoard) {
  for (const char* host : {"127.0.0.1", "::1", "localhost", "0.0.0.0"}) {
    Result<DaemonConfig> cfg = ParseDaemonConfig(
        std::string("[device]\nid = \"t\"\n[api]\nhost = \"") + host + "\"\n", "waybill.toml");
    ASSERT_TRUE(cfg.ok()) << host << ": " << cfg.status().ToString();
    EXPECT_EQ(cfg->api_host, host);
  }
  for (const char* host : {"10.0.2.15", "192.168.1.10", "::", ""}) {
    Result<DaemonConfig> cfg = ParseDaemonConfig(
        std::string("[device]\nid = \"t\"\n[api]\nhost = \"") + host + "\"\n", "waybill.toml");
    ASSERT_FALSE(cfg.ok()) << host;
    EXPECT_EQ(cfg.status().message().rfind("waybill.toml:4: api.host must be", 0), 0u)
        << cfg.status().message();
  }
}

// The QEMU board's device file is baked into its HIL image: its API must be reachable through
// QEMU's port forward, which arrives on the guest's 10.0.2.15, not on its loopback.
TEST(DaemonConfig, QemuBoardFileListensOnEveryAddressOfTheGuest) {
  Result<DaemonConfig> cfg =
      LoadDaemonConfig(std::string(WAYBILL_SOURCE_DIR) + "/boards/qemu-virt-aarch64/waybill.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->api_host, "0.0.0.0");
  EXPECT_EQ(cfg->api_port, 8080);
}

TEST(DaemonConfig, MissingFileIsNotFound) {
  Result<DaemonConfig> cfg = LoadDaemonConfig("/nonexistent/waybill.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_TRUE(cfg.status().IsNotFound());
}

}  // namespace
}  // namespace waybill::firmware
