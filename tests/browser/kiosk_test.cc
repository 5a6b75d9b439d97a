// The kiosk page in headless Chromium against the whole system: Mosquitto, waybill-receiver as
// the backend, waybill-bridge and waybilld, all real processes on loopback. The backend sends the
// day's manifest down through the bridge's command API; the driver's side is tests/browser/
// kiosk.mjs (playwright-core), which works the page like a driver would; then the proof is
// checked where it must end up, at the backend.
//
// Needs /usr/bin/chromium (Debian `chromium`), node and tests/browser/node_modules (`npm ci` in
// tests/browser). Without them the test is skipped, saying how to install them, unless
// WAYBILL_REQUIRE_BROWSER=1 (scripts/test sets it), where it fails.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "support/bridge_processes.h"
#include "support/waybilld_process.h"
#include "unit/outbox_test_util.h"

namespace waybill::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kChromium = "/usr/bin/chromium";
constexpr int kNodeTimeoutMs = 150'000;

std::optional<fs::path> FindOnPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t from = 0;
  while (from <= dirs.size()) {
    size_t to = dirs.find(':', from);
    if (to == std::string::npos) to = dirs.size();
    fs::path candidate = fs::path(dirs.substr(from, to - from)) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    from = to + 1;
  }
  return std::nullopt;
}

// What is missing to run the browser, in words that say how to get it; empty if nothing is.
std::string MissingBrowserParts(const std::optional<fs::path>& node) {
  std::string missing;
  if (::access(kChromium, X_OK) != 0) {
    missing += "no " + std::string(kChromium) +
               " (install Debian's chromium: apt-get install "
               "chromium, or ./scripts/bootstrap); ";
  }
  if (!node) missing += "no node on PATH (apt-get install nodejs npm); ";
  fs::path module = fs::path(WAYBILL_BROWSER_DIR) / "node_modules" / "playwright-core";
  if (!fs::exists(module / "package.json")) {
    missing += "no " + module.string() + " (run: cd tests/browser && npm ci); ";
  }
  return missing;
}

// The bodies the backend received on `path`, read from the receiver's own database.
std::vector<json> ReceivedBodies(const ReceiverProcess& receiver, const std::string& path) {
  std::vector<json> bodies;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(receiver.db_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(db);
    return bodies;
  }
  sqlite3_busy_timeout(db, 2000);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT body FROM requests WHERE path = ?1 ORDER BY rowid", -1, &s,
                         nullptr) == SQLITE_OK) {
    sqlite3_bind_text(s, 1, path.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(s) == SQLITE_ROW) {
      const char* text = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      json body = json::parse(text ? text : "", nullptr, false);
      if (!body.is_discarded()) bodies.push_back(std::move(body));
    }
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return bodies;
}

// Every proof object in the bodies (a body holds one event or a batch of them).
void CollectProofs(const json& j, std::vector<json>* out) {
  if (j.is_object()) {
    if (j.contains("proof") && j["proof"].is_object()) out->push_back(j["proof"]);
    for (const auto& [key, value] : j.items()) {
      if (key != "proof") CollectProofs(value, out);
    }
  } else if (j.is_array()) {
    for (const json& v : j) CollectProofs(v, out);
  }
}

TEST(KioskBrowser, ADriverDeliversWithASignatureAndTheBackendGetsTheProof) {
  std::optional<fs::path> node = FindOnPath("node");
  if (std::string missing = MissingBrowserParts(node); !missing.empty()) {
    const char* require = std::getenv("WAYBILL_REQUIRE_BROWSER");
    if (require && std::string(require) == "1") {
      FAIL() << "WAYBILL_REQUIRE_BROWSER=1 but the browser tests cannot run: " << missing;
    }
    GTEST_SKIP() << "browser test skipped: " << missing
                 << "set WAYBILL_REQUIRE_BROWSER=1 to make this a failure";
  }

  TempDir dir;
  Mosquitto broker(dir.File("broker"), MosquittoOptions{});
  std::string error;
  ASSERT_TRUE(broker.Start(&error)) << error;
  ReceiverProcess receiver(WAYBILL_RECEIVER_PATH, dir.File("receiver"));
  ASSERT_GT(receiver.Start({}, &error), 0) << error;
  BridgeOptions o;
  o.broker_uri = broker.uri();
  o.receiver_url = "http://127.0.0.1:" + std::to_string(receiver.port());
  o.client_id = "kiosk-bridge";
  o.extra_bridge = "min_event_time_ms = 1000000000000\n";  // the replayed drive is from 2009
  BridgeProcess bridge(dir.File("bridge"), o);
  ASSERT_TRUE(bridge.Start(&error)) << error;
  WaybilldProcess daemon(dir.File("waybilld"));
  daemon.set_device_id("truck-1");
  daemon.set_extra_config("[uplink]\nbroker = \"" + broker.uri() +
                          "\"\nbatch_wait_ms = 200\nack_timeout_ms = 5000\n");
  int port = daemon.Start(20, &error);
  ASSERT_GT(port, 0) << error;
  ASSERT_TRUE(daemon.WaitForStatus(
      [](const json& st) { return st["uplink"].value("connected", false); }, 15'000))
      << daemon.log();

  // The backend sends the day's three stops, with their delivery windows, down to the truck.
  constexpr int64_t kDay = 1795478400000;  // 2026-11-24T00:00:00Z
  constexpr int64_t kHour = 3'600'000;
  json manifest = {{"command_id", "cmd-kiosk"},
                   {"manifest",
                    {{"manifest_id", "route-24"},
                     {"date", "2026-11-24"},
                     {"stops",
                      {{{"stop_id", "s1"},
                        {"order_id", "ORD-1001"},
                        {"address", "Leopoldstraße 12, 80802 München"},
                        {"sequence", 1},
                        {"window_start_ms", kDay + 8 * kHour},
                        {"window_end_ms", kDay + 9 * kHour + kHour / 2}},
                       {{"stop_id", "s2"},
                        {"order_id", "ORD-1002"},
                        {"address", "Schwanthalerstraße 40, 80336 München"},
                        {"sequence", 2},
                        {"window_start_ms", kDay + 9 * kHour + kHour / 2},
                        {"window_end_ms", kDay + 11 * kHour}},
                       {{"stop_id", "s3"},
                        {"order_id", "ORD-1003"},
                        {"address", "Rosenheimer Platz 4, 81669 München"},
                        {"sequence", 3},
                        {"window_start_ms", kDay + 13 * kHour},
                        {"window_end_ms", kDay + 15 * kHour}}}}}}};
  httplib::Client downlink("127.0.0.1", bridge.api_port());
  httplib::Headers auth = {{"Authorization", "Bearer " + bridge.token()}};
  auto accepted =
      downlink.Post("/v1/devices/truck-1/commands", auth, manifest.dump(), "application/json");
  ASSERT_TRUE(accepted);
  ASSERT_EQ(accepted->status, 202) << accepted->body;
  json state;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto res = downlink.Get("/v1/devices/truck-1/commands/cmd-kiosk", auth);
        if (!res || res->status != 200) return false;
        state = json::parse(res->body);
        return state["state"] == "ok";
      },
      15'000))
      << state.dump() << bridge.log();

  // The driver's side, in the browser.
  fs::path artifacts = WAYBILL_BROWSER_ARTIFACTS;
  fs::remove_all(artifacts);  // no screenshot of an earlier run is taken for this one's
  fs::create_directories(artifacts);
  const std::string recipient = "Erika Mustermann";
  ::setenv("KIOSK_URL", ("http://127.0.0.1:" + std::to_string(port) + "/").c_str(), 1);
  ::setenv("KIOSK_SCREENSHOTS", artifacts.c_str(), 1);
  ::setenv("KIOSK_RECIPIENT", recipient.c_str(), 1);
  ::setenv("KIOSK_CHROMIUM", kChromium, 1);
  ChildProcess driver;
  fs::path driver_log = artifacts / "kiosk.log";
  ASSERT_TRUE(driver.Spawn({node->string(), (fs::path(WAYBILL_BROWSER_DIR) / "kiosk.mjs").string()},
                           driver_log));
  std::optional<int> exit_status;
  WaitFor([&] { return (exit_status = driver.Poll()).has_value(); }, kNodeTimeoutMs);
  if (!exit_status) exit_status = driver.Stop(SIGKILL);
  std::string driver_output = ReadWholeFile(driver_log);
  ASSERT_TRUE(exit_status && WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
      << "kiosk.mjs failed:\n"
      << driver_output << "\nwaybilld:\n"
      << daemon.log();
  EXPECT_NE(driver_output.find("kiosk: all steps passed"), std::string::npos) << driver_output;
  EXPECT_EQ(driver_output.find(recipient), std::string::npos)
      << "the recipient's name reached the browser console or the script's output";
  for (const char* shot : {"stop-list.png", "signature.png", "saved.png"}) {
    EXPECT_TRUE(fs::exists(artifacts / shot)) << shot;
  }

  // What the driver saved is at the backend: the proof with the name and the drawn strokes.
  std::vector<json> proofs;
  ASSERT_TRUE(WaitFor(
      [&] {
        proofs.clear();
        for (const json& body : ReceivedBodies(receiver, "/v1/proofs")) {
          CollectProofs(body, &proofs);
        }
        return !proofs.empty();
      },
      30'000))
      << "no proof reached the backend\n"
      << bridge.log() << daemon.log();
  const json* proof = nullptr;
  for (const json& p : proofs) {
    if (p.value("stop_id", "") == "s1") proof = &p;
  }
  ASSERT_NE(proof, nullptr) << json(proofs).dump();
  EXPECT_EQ((*proof)["order_id"], "ORD-1001");
  EXPECT_EQ((*proof)["recipient_name"], recipient);
  const json& signature = (*proof)["signature"];
  ASSERT_TRUE(signature["strokes"].is_array()) << proof->dump();
  ASSERT_FALSE(signature["strokes"].empty()) << proof->dump();
  size_t points = 0;
  for (const json& stroke : signature["strokes"]) points += stroke.size();
  EXPECT_GE(points, 10u) << "a drawn signature has many points: " << proof->dump();
  EXPECT_GT(signature["width"].get<int>(), 100);
  EXPECT_GT(signature["height"].get<int>(), 50);
  EXPECT_EQ((*proof)["photo"].value("mime", ""), "image/png") << "the photo the driver took";

  // And the stop's status, as the unit keeps it for the page, after all the driver did.
  httplib::Client kiosk("127.0.0.1", port);
  auto stops = kiosk.Get("/v1/manifest");
  ASSERT_TRUE(stops);
  ASSERT_EQ(stops->status, 200);
  json m = json::parse(stops->body);
  ASSERT_EQ(m["stops"].size(), 3u);
  EXPECT_EQ(m["stops"][0]["status"], "delivered");
  EXPECT_EQ(m["stops"][0]["proof"], true);
  EXPECT_EQ(m["stops"][1]["status"], "failed");
  EXPECT_EQ(m["stops"][1]["reason"], "refused");
  EXPECT_EQ(m["stops"][2]["status"], "partial");
  EXPECT_EQ(m["stops"][2]["items"], 2);
}

}  // namespace
}  // namespace waybill::testing
