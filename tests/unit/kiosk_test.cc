// The kiosk's side of waybilld: the stops' statuses kept in the manifest store (across a restart
// and a new manifest), the local API recording them, and the page's files served from the program.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>

#include "fakes/memory_outbox.h"
#include "waybill/firmware/local_api.h"
#include "waybill/firmware/manifest_store.h"

namespace waybill::firmware {
namespace {

using nlohmann::json;

constexpr int64_t kDayMs = 1764000000000;  // 2025-11-24

std::filesystem::path TestDir() {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("waybill-kiosk-" + std::to_string(::getpid()) + "-" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

sync::Manifest ThreeStops() {
  return {"route-7",
          "2025-11-24",
          {{"s1", "ORD-1", "Leopoldstr. 12", kDayMs, kDayMs + 5'400'000, 1},
           {"s2", "ORD-2", "Marienplatz 8", 0, 0, 2},
           {"s3", "ORD-3", "Rosenheimer Platz 4", 0, kDayMs + 9'000'000, 3}}};
}

const json& StopOf(const json& manifest, const std::string& id) {
  for (const json& s : manifest["stops"]) {
    if (s["stop_id"] == id) return s;
  }
  static const json kNone;
  ADD_FAILURE() << "no stop " << id << " in " << manifest.dump();
  return kNone;
}

StopUpdate Delivery(const std::string& stop, uint64_t seq, sync::DeliveryKind kind) {
  return {
      stop,        seq, kDayMs + static_cast<int64_t>(seq) * 1000, kind, sync::FailReason::kNone,
      std::nullopt};
}

TEST(KioskStopStatus, SurvivesARestartOfTheDaemon) {
  std::filesystem::path dir = TestDir();
  std::string path = (dir / "manifest.json").string();
  {
    ManifestStore store(path);
    ASSERT_TRUE(store.Put(ThreeStops(), kDayMs).ok());
    std::optional<json> fresh = store.Get();
    ASSERT_TRUE(fresh);
    EXPECT_TRUE(StopOf(*fresh, "s1")["status"].is_null()) << "no status before any event";
    EXPECT_EQ(StopOf(*fresh, "s1")["proof"], false);

    ASSERT_TRUE(store.Record(Delivery("s1", 10, sync::DeliveryKind::kArrived)).ok());
    ASSERT_TRUE(
        store.Record({"s1", 11, kDayMs, std::nullopt, sync::FailReason::kNone, std::nullopt}).ok());
    ASSERT_TRUE(store.Record(Delivery("s1", 12, sync::DeliveryKind::kDelivered)).ok());
    StopUpdate failed = Delivery("s2", 13, sync::DeliveryKind::kFailed);
    failed.reason = sync::FailReason::kRefused;
    ASSERT_TRUE(store.Record(failed).ok());
    StopUpdate partial = Delivery("s3", 14, sync::DeliveryKind::kPartial);
    partial.items = 2;
    ASSERT_TRUE(store.Record(partial).ok());
  }
  ManifestStore again(path);  // what a restarted daemon opens
  std::optional<json> m = again.Get();
  ASSERT_TRUE(m);
  const json& s1 = StopOf(*m, "s1");
  EXPECT_EQ(s1["status"], "delivered");
  EXPECT_EQ(s1["status_seq"], 12);
  EXPECT_EQ(s1["proof"], true);
  EXPECT_EQ(s1["proof_seq"], 11);
  EXPECT_EQ(s1["status_at"], "2025-11-24T16:00:12Z");
  EXPECT_EQ(StopOf(*m, "s2")["status"], "failed");
  EXPECT_EQ(StopOf(*m, "s2")["reason"], "refused");
  EXPECT_EQ(StopOf(*m, "s2")["proof"], false);
  EXPECT_EQ(StopOf(*m, "s3")["status"], "partial");
  EXPECT_EQ(StopOf(*m, "s3")["items"], 2);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  std::filesystem::remove_all(dir);
}

TEST(KioskStopStatus, AnEarlierEventArrivingLateDoesNotOverwriteALaterOne) {
  std::filesystem::path dir = TestDir();
  ManifestStore store((dir / "manifest.json").string());
  ASSERT_TRUE(store.Put(ThreeStops(), kDayMs).ok());
  ASSERT_TRUE(store.Record(Delivery("s1", 20, sync::DeliveryKind::kDelivered)).ok());
  ASSERT_TRUE(store.Record(Delivery("s1", 19, sync::DeliveryKind::kArrived)).ok());
  EXPECT_EQ(StopOf(*store.Get(), "s1")["status"], "delivered");
  ASSERT_TRUE(store.Record(Delivery("s1", 21, sync::DeliveryKind::kPickedUp)).ok());
  EXPECT_EQ(StopOf(*store.Get(), "s1")["status"], "picked_up");
  std::filesystem::remove_all(dir);
}

TEST(KioskStopStatus, UnknownStopsAndNoManifestAreNotFoundAndChangeNothing) {
  std::filesystem::path dir = TestDir();
  std::string path = (dir / "manifest.json").string();
  ManifestStore store(path);
  Status none = store.Record(Delivery("s1", 1, sync::DeliveryKind::kArrived));
  EXPECT_TRUE(none.IsNotFound()) << none.ToString();
  EXPECT_FALSE(std::filesystem::exists(path));
  ASSERT_TRUE(store.Put(ThreeStops(), kDayMs).ok());
  Status unknown = store.Record(Delivery("s9", 2, sync::DeliveryKind::kArrived));
  EXPECT_TRUE(unknown.IsNotFound());
  EXPECT_NE(unknown.message().find("s9"), std::string::npos) << unknown.message();
  json after = *store.Get();  // a local: the range of a for loop must outlive it
  for (const json& s : after["stops"]) EXPECT_TRUE(s["status"].is_null());
  std::filesystem::remove_all(dir);
}

TEST(KioskStopStatus, ANewManifestKeepsTheStatusOfTheStopsItKeeps) {
  std::filesystem::path dir = TestDir();
  ManifestStore store((dir / "manifest.json").string());
  ASSERT_TRUE(store.Put(ThreeStops(), kDayMs).ok());
  ASSERT_TRUE(store.Record(Delivery("s1", 5, sync::DeliveryKind::kDelivered)).ok());
  ASSERT_TRUE(store.Record(Delivery("s2", 6, sync::DeliveryKind::kArrived)).ok());

  // The office revises the day's route: s1 stays, s2 now is another order, s3 goes, s4 comes.
  sync::Manifest revised = ThreeStops();
  revised.manifest_id = "route-7b";
  revised.stops[1].order_id = "ORD-22";
  revised.stops.pop_back();
  revised.stops.push_back({"s4", "ORD-4", "Odeonsplatz 1", 0, 0, 4});
  ASSERT_TRUE(store.Put(revised, kDayMs + 60'000).ok());
  std::optional<json> m = store.Get();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["manifest_id"], "route-7b");
  EXPECT_EQ(StopOf(*m, "s1")["status"], "delivered");
  EXPECT_TRUE(StopOf(*m, "s2")["status"].is_null()) << "another order under the same stop id";
  EXPECT_TRUE(StopOf(*m, "s4")["status"].is_null());
  EXPECT_EQ((*m)["stops"].size(), 3u);

  // The next day's manifest starts afresh, even with the same stop ids.
  sync::Manifest tomorrow = revised;
  tomorrow.manifest_id = "route-8";
  tomorrow.date = "2025-11-25";
  ASSERT_TRUE(store.Put(tomorrow, kDayMs + 86'400'000).ok());
  json fresh = *store.Get();
  for (const json& s : fresh["stops"]) EXPECT_TRUE(s["status"].is_null()) << s.dump();
  std::filesystem::remove_all(dir);
}

class KioskApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TestDir();
    manifests_ = std::make_unique<ManifestStore>((dir_ / "manifest.json").string());
    photos_ = std::make_unique<PhotoStore>((dir_ / "photos").string());
    recorder_ = std::make_unique<Recorder>(outbox_, [] {
      return Stamp{kDayMs, hal::TimeSource::kGnss};
    });
    LocalApiHooks hooks;
    hooks.manifest = [this] { return manifests_->Get(); };
    hooks.stop_update = [this](const StopUpdate& u) { return manifests_->Record(u); };
    api_ = std::make_unique<LocalApi>(*recorder_, *photos_, hooks);
    ASSERT_TRUE(api_->Start("127.0.0.1", 0).ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", api_->port());
  }
  void TearDown() override {
    api_->Stop();
    std::filesystem::remove_all(dir_);
  }

  json Manifest() {
    auto res = client_->Get("/v1/manifest");
    EXPECT_TRUE(res);
    if (!res || res->status != 200) return json();
    return json::parse(res->body);
  }

  std::filesystem::path dir_;
  fakes::MemoryOutbox outbox_;
  std::unique_ptr<ManifestStore> manifests_;
  std::unique_ptr<PhotoStore> photos_;
  std::unique_ptr<Recorder> recorder_;
  std::unique_ptr<LocalApi> api_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(KioskApiTest, StoredEventsGiveTheirStopAStatusThatTheManifestShows) {
  ASSERT_TRUE(manifests_->Put(ThreeStops(), kDayMs).ok());
  auto res = client_->Post("/v1/deliveries", R"({"stop_id":"s2","order_id":"ORD-2",
      "kind":"failed","reason":"access_blocked"})",
                           "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  json stored = json::parse(res->body);
  EXPECT_EQ(stored["stop_recorded"], true);
  json proof = {
      {"stop_id", "s1"},
      {"order_id", "ORD-1"},
      {"recipient_name", "Jana Novak"},
      {"signature", {{"width", 500}, {"height", 200}, {"strokes", {{{1, 2}, {30, 40}}}}}}};
  res = client_->Post("/v1/proofs", proof.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  uint64_t proof_seq = json::parse(res->body)["seq"];

  json m = Manifest();
  EXPECT_EQ(StopOf(m, "s2")["status"], "failed");
  EXPECT_EQ(StopOf(m, "s2")["reason"], "access_blocked");
  EXPECT_EQ(StopOf(m, "s2")["status_seq"], stored["seq"]);
  EXPECT_EQ(StopOf(m, "s1")["proof"], true);
  EXPECT_EQ(StopOf(m, "s1")["proof_seq"], proof_seq);
  EXPECT_TRUE(StopOf(m, "s1")["status"].is_null()) << "a proof alone is not a delivery event";
  EXPECT_EQ(m.dump().find("Jana"), std::string::npos) << "no name in the stop list";
}

TEST_F(KioskApiTest, AnEventOfAStopNotInTheManifestIsStoredAllTheSame) {
  ASSERT_TRUE(manifests_->Put(ThreeStops(), kDayMs).ok());
  auto res = client_->Post("/v1/deliveries", R"({"stop_id":"s9","order_id":"ORD-9",
      "kind":"arrived"})",
                           "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  EXPECT_EQ(json::parse(res->body)["stop_recorded"], false);
  EXPECT_EQ(outbox_.events().size(), 1u);
  // Without a stop id there is no stop to mark, and nothing to say about it.
  res = client_->Post("/v1/deliveries", R"({"order_id":"ORD-9","kind":"arrived"})",
                      "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  EXPECT_FALSE(json::parse(res->body).contains("stop_recorded"));
}

TEST_F(KioskApiTest, ARefusedEventLeavesTheStopAsItWas) {
  ASSERT_TRUE(manifests_->Put(ThreeStops(), kDayMs).ok());
  outbox_.FailWith(Status::NoSpace("disk full"));
  auto res = client_->Post("/v1/deliveries", R"({"stop_id":"s1","order_id":"ORD-1",
      "kind":"delivered"})",
                           "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 507);
  EXPECT_TRUE(StopOf(Manifest(), "s1")["status"].is_null());
}

TEST_F(KioskApiTest, ThePageIsServedFromTheProgramWithAStrictPolicy) {
  struct Case {
    const char* path;
    const char* type;
    const char* contains;
  };
  for (const Case& c : {Case{"/", "text/html", "<canvas id=\"pad\""},
                        Case{"/kiosk/index.html", "text/html", "/kiosk/kiosk.js"},
                        Case{"/kiosk/kiosk.css", "text/css", "touch-action: none"},
                        Case{"/kiosk/kiosk.js", "text/javascript", "/v1/proofs"}}) {
    SCOPED_TRACE(c.path);
    auto res = client_->Get(c.path);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->get_header_value("Content-Type").rfind(c.type, 0), 0u)
        << res->get_header_value("Content-Type");
    std::string csp = res->get_header_value("Content-Security-Policy");
    EXPECT_EQ(csp.rfind("default-src 'self'; img-src 'self' blob: data:", 0), 0u) << csp;
    EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
    EXPECT_EQ(res->get_header_value("X-Content-Type-Options"), "nosniff");
    EXPECT_EQ(res->get_header_value("Cache-Control"), "no-cache");
    EXPECT_NE(res->body.find(c.contains), std::string::npos);
    // Offline in the cab: nothing may come from the internet.
    EXPECT_EQ(res->body.find("http://"), std::string::npos);
    EXPECT_EQ(res->body.find("https://"), std::string::npos);
  }
  for (const char* path :
       {"/kiosk/missing.js", "/kiosk/", "/kiosk/..%2Fmanifest.json", "/index.html"}) {
    SCOPED_TRACE(path);
    auto res = client_->Get(path);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404);
  }
  auto res = client_->Get("/kiosk/missing.js");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("no such kiosk file: missing.js"), std::string::npos) << res->body;
}

}  // namespace
}  // namespace waybill::firmware
