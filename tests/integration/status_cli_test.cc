// `waybillctl status` against a running waybilld with a real Mosquitto: what a tech sees after
// flashing, when the link is gone, and when the daemon is not running.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <string>

#include "support/mosquitto.h"
#include "support/waybilld_process.h"

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct CtlResult {
  int exit_code = -1;
  std::string out;
};

CtlResult Status(const fs::path& dir, int port, const std::string& flags = "") {
  fs::path out = dir / "status.out";
  std::string cmd = std::string(WAYBILLCTL_PATH) +
                    " status --timeout 5 --api http://127.0.0.1:" + std::to_string(port) + " " +
                    flags + " > " + out.string() + " 2>&1";
  int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, ReadWholeFile(out)};
}

TEST(StatusCli, HealthyThenTheLinkIsGoneThenTheDaemonIsNotRunning) {
  fs::path dir = fs::temp_directory_path() / ("waybill-status-cli-" + std::to_string(getpid()));
  fs::remove_all(dir);
  Mosquitto broker(dir / "broker", MosquittoOptions{});
  std::string error;
  ASSERT_TRUE(broker.Start(&error)) << error;
  WaybilldProcess daemon(dir / "truck");
  daemon.set_device_id("truck-7");
  daemon.set_extra_config("[uplink]\nbroker = \"" + broker.uri() + "\"\nreconnect_max_s = 1\n");
  int port = daemon.Start(20, &error);
  ASSERT_GT(port, 0) << error;
  ASSERT_TRUE(daemon.WaitForStatus(
      [](const json& st) {
        return st["uplink"].value("connected", false) && st["gnss"].value("mode", 1) >= 2;
      },
      15000))
      << daemon.log();

  CtlResult healthy = Status(dir, port);
  EXPECT_EQ(healthy.exit_code, 0) << healthy.out;
  EXPECT_NE(healthy.out.find("ok device   truck-7 on board host-sim"), std::string::npos)
      << healthy.out;
  EXPECT_NE(healthy.out.find("ok uplink   connected to " + broker.uri()), std::string::npos)
      << healthy.out;
  EXPECT_EQ(healthy.out.find("!!"), std::string::npos) << healthy.out;

  // The broker goes away: the uplink line says so and the exit code asks for attention.
  broker.Stop();
  ASSERT_TRUE(daemon.WaitForStatus(
      [](const json& st) { return !st["uplink"].value("connected", true); }, 15000));
  CtlResult down = Status(dir, port);
  EXPECT_EQ(down.exit_code, 3) << down.out;
  EXPECT_NE(down.out.find("!! uplink   NOT connected to " + broker.uri()), std::string::npos)
      << down.out;
  CtlResult as_json = Status(dir, port, "--json");
  EXPECT_EQ(as_json.exit_code, 3) << as_json.out;
  json parsed = json::parse(as_json.out, nullptr, false);
  ASSERT_TRUE(parsed.is_object()) << as_json.out;
  EXPECT_FALSE(parsed["healthy"].get<bool>());
  EXPECT_EQ(parsed["status"]["device_id"], "truck-7");

  // No daemon: a clear sentence and exit 1.
  ASSERT_TRUE(daemon.Stop(SIGTERM));
  CtlResult gone = Status(dir, port);
  EXPECT_EQ(gone.exit_code, 1) << gone.out;
  EXPECT_NE(gone.out.find("is waybilld running"), std::string::npos) << gone.out;
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace waybill::testing
