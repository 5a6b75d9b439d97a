#include <gtest/gtest.h>
#include <stdlib.h>

#include "waybill/bridge/config.h"
#include "waybill/bridge/forwarder.h"

namespace waybill::bridge {
namespace {

constexpr const char* kRoutes = R"(
[routes.positions]
url = "http://127.0.0.1:9000/v1/{route}"
[routes.deliveries]
url = "https://backend.example/v1/devices/{device}/deliveries"
batch_size = 50
lanes = 2
[routes.proofs]
url = "http://127.0.0.1:9000/v1/proofs"
[routes.health]
enabled = false
)";

TEST(BridgeConfig, DefaultsAndRoutes) {
  auto cfg = ParseBridgeConfig(kRoutes, "bridge.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->mqtt.share_group, "waybill");
  const RouteConfig& d = cfg->routes[static_cast<int>(Route::kDeliveries)];
  EXPECT_EQ(d.batch_size, 50);
  EXPECT_EQ(d.lanes, 2);
  EXPECT_FALSE(cfg->routes[static_cast<int>(Route::kHealth)].enabled);
  EXPECT_EQ(ExpandUrl(d.url, Route::kDeliveries, "truck-7"),
            "https://backend.example/v1/devices/truck-7/deliveries");
  EXPECT_EQ(ExpandUrl(cfg->routes[0].url, Route::kPositions, ""),
            "http://127.0.0.1:9000/v1/positions");
}

TEST(BridgeConfig, ProofsNeedTheCertificateFolderAndTheFleetCaTogether) {
  auto off = ParseBridgeConfig(kRoutes, "bridge.toml");
  ASSERT_TRUE(off.ok());
  EXPECT_TRUE(off->proofs.device_certs_dir.empty()) << "not verified unless configured";

  auto on = ParseBridgeConfig(std::string(kRoutes) +
                                  "[proofs]\ndevice_certs_dir = \"/etc/waybill-bridge/devices\"\n"
                                  "ca_file = \"/etc/waybill-bridge/fleet-ca.crt\"\n",
                              "bridge.toml");
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  EXPECT_EQ(on->proofs.device_certs_dir, "/etc/waybill-bridge/devices");
  EXPECT_EQ(on->proofs.ca_file, "/etc/waybill-bridge/fleet-ca.crt");

  auto half = ParseBridgeConfig(
      std::string(kRoutes) + "[proofs]\ndevice_certs_dir = \"/etc/waybill-bridge/devices\"\n",
      "bridge.toml");
  ASSERT_FALSE(half.ok());
  EXPECT_NE(half.status().message().find("device_certs_dir and ca_file go together"),
            std::string::npos)
      << half.status().message();
  auto typo = ParseBridgeConfig(std::string(kRoutes) + "[proofs]\ndevice_cert_dir = \"/x\"\n",
                                "bridge.toml");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("proofs.device_cert_dir: unknown key"), std::string::npos)
      << typo.status().message();
}

TEST(BridgeConfig, ErrorsNameTheFileLineAndKey) {
  std::string text = std::string("[bridge]\ninstance = \"b1\"\n") + kRoutes;
  text += "[mqtt]\nkeepalive_s = 1\n";
  auto cfg = ParseBridgeConfig(text, "bridge.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("mqtt.keepalive_s"), std::string::npos)
      << cfg.status().message();
  EXPECT_NE(cfg.status().message().find("bridge.toml:"), std::string::npos);

  auto unknown = ParseBridgeConfig(std::string(kRoutes) + "[api]\nlisten_on = \"x\"\n", "b.toml");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("api.listen_on"), std::string::npos);

  auto missing = ParseBridgeConfig("[routes.positions]\nurl = \"http://x/\"\n", "b.toml");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("routes.deliveries"), std::string::npos);

  auto scheme = ParseBridgeConfig(std::string(kRoutes) + "", "b.toml");
  ASSERT_TRUE(scheme.ok());
  std::string ftp = kRoutes;
  ftp.replace(ftp.find("http://127.0.0.1:9000/v1/proofs"), 4, "ftp");
  auto bad_url = ParseBridgeConfig(ftp, "b.toml");
  ASSERT_FALSE(bad_url.ok());
  EXPECT_NE(bad_url.status().message().find("routes.proofs.url"), std::string::npos);
}

TEST(BridgeConfig, SecretsComeFromTheEnvironmentOrAFileAndAreNeverEchoed) {
  ::setenv("WAYBILL_TEST_BACKEND_TOKEN", "s3cret-token", 1);
  std::string text = kRoutes;
  text.insert(text.find("[routes.deliveries]"),
              "auth_token_env = \"WAYBILL_TEST_BACKEND_TOKEN\"\n");
  auto cfg = ParseBridgeConfig(text, "b.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->routes[0].auth_token, "s3cret-token");

  ::unsetenv("WAYBILL_TEST_BACKEND_TOKEN");
  auto unset = ParseBridgeConfig(text, "b.toml");
  ASSERT_FALSE(unset.ok());
  EXPECT_NE(unset.status().message().find("WAYBILL_TEST_BACKEND_TOKEN is not set"),
            std::string::npos);

  ::setenv("WAYBILL_TEST_BACKEND_TOKEN", "has space", 1);
  auto spaced = ParseBridgeConfig(text, "b.toml");
  ASSERT_FALSE(spaced.ok());
  EXPECT_EQ(spaced.status().message().find("has space"), std::string::npos)
      << "the secret itself is never in a message";
  ::unsetenv("WAYBILL_TEST_BACKEND_TOKEN");
}

TEST(BridgeForwarder, ClassifiesAnswers) {
  EXPECT_EQ(Classify(true, 200), Outcome::kDone);
  EXPECT_EQ(Classify(true, 204), Outcome::kDone);
  EXPECT_EQ(Classify(false, 0), Outcome::kRetry);
  EXPECT_EQ(Classify(true, 500), Outcome::kRetry);
  EXPECT_EQ(Classify(true, 503), Outcome::kRetry);
  EXPECT_EQ(Classify(true, 408), Outcome::kRetry);
  EXPECT_EQ(Classify(true, 429), Outcome::kThrottled);
  EXPECT_EQ(Classify(true, 400), Outcome::kDeadLetter);
  EXPECT_EQ(Classify(true, 422), Outcome::kDeadLetter);
  EXPECT_EQ(Classify(true, 301), Outcome::kDeadLetter);
}

}  // namespace
}  // namespace waybill::bridge
