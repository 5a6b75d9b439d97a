#include "waybill/firmware/config.h"

#include <gtest/gtest.h>

namespace waybill::firmware {
namespace {

TEST(DaemonConfig, ReadsEverySection) {
  Result<DaemonConfig> cfg = ParseDaemonConfig(R"(
[device]
id = "truck-0042"
[storage]
data_dir = "/var/lib/waybill"
quota_mb = 128
min_free_mb = 8
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
  EXPECT_EQ(cfg->data_dir, "/var/lib/waybill");
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
      {"[device]\nid = \"t\"\nidd = 3\n", "waybill.toml: unknown key device.idd (known: id)"},
      {"[device]\nid = \"t\"\n[stroage]\n", "waybill.toml: unknown key stroage"},
      {"[device\nid = \"t\"\n", "waybill.toml:1:"},
  };
  for (const Case& c : cases) {
    Result<DaemonConfig> cfg = ParseDaemonConfig(c.text, "waybill.toml");
    ASSERT_FALSE(cfg.ok()) << c.text;
    EXPECT_EQ(cfg.status().message().rfind(c.expected, 0), 0u)
        << "got: " << cfg.status().message() << "\nexpected prefix: " << c.expected;
  }
}

TEST(DaemonConfig, MissingFileIsNotFound) {
  Result<DaemonConfig> cfg = LoadDaemonConfig("/nonexistent/waybill.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_TRUE(cfg.status().IsNotFound());
}

}  // namespace
}  // namespace waybill::firmware
