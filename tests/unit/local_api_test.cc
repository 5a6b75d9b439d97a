#include "waybill/firmware/local_api.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>

#include "fakes/memory_outbox.h"
#include "waybill/firmware/manifest_store.h"
#include "waybill/firmware/photo_uploader.h"

namespace waybill::firmware {
namespace {

using nlohmann::json;

class LocalApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("waybill-api-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    photos_ = std::make_unique<PhotoStore>(dir_.string() + "/photos");
    recorder_ = std::make_unique<Recorder>(outbox_, [] {
      return Stamp{1764000000000, hal::TimeSource::kNtp};
    });
    LocalApiHooks hooks;
    hooks.last_fix = [] {
      hal::GnssFix fix;
      fix.lat_e7 = 481234567;
      fix.lon_e7 = 115678901;
      fix.mode = hal::FixMode::k3D;
      return std::optional<hal::GnssFix>(fix);
    };
    hooks.status = [] { return json{{"gnss", {{"mode", 3}}}}; };
    api_ = std::make_unique<LocalApi>(*recorder_, *photos_, hooks);
    ASSERT_TRUE(api_->Start("127.0.0.1", 0).ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", api_->port());
  }
  void TearDown() override {
    api_->Stop();
    std::filesystem::remove_all(dir_);
  }

  httplib::Result PostJson(const std::string& path, const std::string& body) {
    return client_->Post(path, body, "application/json");
  }

  std::filesystem::path dir_;
  fakes::MemoryOutbox outbox_;
  std::unique_ptr<PhotoStore> photos_;
  std::unique_ptr<Recorder> recorder_;
  std::unique_ptr<LocalApi> api_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(LocalApiTest, DeliveryIsStoredWithPositionAndTime) {
  auto res = PostJson("/v1/deliveries",
                      R"({"stop_id":"s1","order_id":"ORD-1","kind":"delivered","items":3})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 201) << res->body;
  json body = json::parse(res->body);
  EXPECT_EQ(body["stored"], true);
  EXPECT_EQ(body["time_source"], "ntp");
  auto events = outbox_.events();
  ASSERT_EQ(events.size(), 1u);
  const sync::StoredEvent& ev = events.begin()->second;
  EXPECT_EQ(ev.seq, body["seq"].get<uint64_t>());
  EXPECT_EQ(ev.cls, sync::EventClass::kDelivery);
  Result<sync::DeliveryEvent> back = sync::DecodeDelivery(ev.body);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->order_id, "ORD-1");
  EXPECT_EQ(back->items, 3u);
  EXPECT_EQ(back->lat_e7, 481234567);
}

TEST_F(LocalApiTest, BadRequestsNameTheFieldAndStoreNothing) {
  struct Case {
    std::string body;
    std::string field;
    std::string error_part;
  } cases[] = {
      {R"({"order_id":"A","kind":"teleported"})", "kind", "\"teleported\" is not one of"},
      {R"({"order_id":"A"})", "kind", "required"},
      {R"({"order_id":"A","kind":"failed"})", "reason", "required when kind is \"failed\""},
      {R"({"order_id":"A","kind":"failed","reason":"aliens"})", "reason", "\"aliens\""},
      {R"({"order_id":42,"kind":"arrived"})", "order_id", "expected a string, got number"},
      {R"({"kind":"arrived"})", "stop_id or order_id", "one of them is required"},
      {R"({"order_id":"A","kind":"partial","items":-1})", "items", "whole number"},
  };
  for (const Case& c : cases) {
    auto res = PostJson("/v1/deliveries", c.body);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << c.body;
    json body = json::parse(res->body);
    EXPECT_EQ(body.value("field", ""), c.field) << res->body;
    EXPECT_NE(body["error"].get<std::string>().find(c.error_part), std::string::npos) << res->body;
  }
  auto res = PostJson("/v1/deliveries", R"({"order_id": "A", "kind": )");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("not valid JSON: error at byte"), std::string::npos) << res->body;
  EXPECT_TRUE(outbox_.events().empty());
  EXPECT_EQ(api_->rejected(), std::size(cases) + 1);
}

TEST_F(LocalApiTest, ProofWithSignatureAndPhoto) {
  std::string jpeg = "\xFF\xD8\xFF\xE0 not really a photo but starts like one";
  auto photo = client_->Post("/v1/photos", jpeg, "image/jpeg");
  ASSERT_TRUE(photo);
  ASSERT_EQ(photo->status, 201) << photo->body;
  std::string sha = json::parse(photo->body)["sha256"];
  EXPECT_EQ(sha, ToHex(Sha256(jpeg)));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "photos" / sha));

  json proof = {
      {"order_id", "ORD-9"},
      {"recipient_name", "Jana Novak"},
      {"signature", {{"width", 760}, {"height", 300}, {"strokes", {{{1, 2}, {3, 4}}, {{9, 9}}}}}},
      {"photo_sha256", sha}};
  auto res = PostJson("/v1/proofs", proof.dump());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  auto events = outbox_.events();
  ASSERT_EQ(events.size(), 1u);
  Result<sync::ProofOfDelivery> back = sync::DecodeProof(events.begin()->second.body);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->recipient_name, "Jana Novak");
  ASSERT_EQ(back->signature.size(), 2u);
  EXPECT_EQ(back->signature[0][1], (sync::SignaturePoint{3, 4}));
  EXPECT_EQ(back->photo_bytes, jpeg.size());
  EXPECT_EQ(back->photo_mime, "image/jpeg");

  // What the uploader reads is what the driver's camera gave; once the bridge has it, it goes.
  Result<std::string> bytes = photos_->Read(*back->photo_sha256);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(*bytes, jpeg);
  ASSERT_TRUE(photos_->Remove(*back->photo_sha256).ok());
  EXPECT_TRUE(photos_->Read(*back->photo_sha256).status().IsNotFound());
  EXPECT_TRUE(photos_->Remove(*back->photo_sha256).ok()) << "removing twice is harmless";
}

TEST_F(LocalApiTest, ProofReferencingAMissingPhotoIsRejected) {
  json proof = {{"order_id", "ORD-9"},
                {"recipient_name", "Jana Novak"},
                {"photo_sha256", std::string(64, 'a')}};
  auto res = PostJson("/v1/proofs", proof.dump());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["field"], "photo_sha256");
  auto not_image = client_->Post("/v1/photos", "hello", "image/jpeg");
  ASSERT_TRUE(not_image);
  EXPECT_EQ(not_image->status, 400);
  EXPECT_TRUE(outbox_.events().empty());
}

TEST_F(LocalApiTest, OnlyPhotosThatAStoredProofNamesAreMarkedForUpload) {
  PhotoUploadQueue queue(dir_.string() + "/photo-uploads");
  bool marking_fails = false;
  LocalApiHooks hooks;
  hooks.photo_referenced = [&](const std::array<uint8_t, 32>& sha) {
    return marking_fails ? Status::IOError("create photo-uploads/x: Input/output error")
                         : queue.Mark(sha);
  };
  LocalApi api(*recorder_, *photos_, hooks);
  ASSERT_TRUE(api.Start("127.0.0.1", 0).ok());
  httplib::Client client("127.0.0.1", api.port());
  auto post_photo = [&](const std::string& bytes) {
    auto res = client.Post("/v1/photos", bytes, "image/jpeg");
    EXPECT_TRUE(res && res->status == 201);
    return res ? json::parse(res->body)["sha256"].get<std::string>() : std::string();
  };
  const std::string used = post_photo("\xFF\xD8\xFF\xE0 the doorstep");
  const std::string unused = post_photo("\xFF\xD8\xFF\xE0 a blurred one");
  const std::string failing = post_photo("\xFF\xD8\xFF\xE0 the parcel");
  EXPECT_TRUE(queue.Pending().empty()) << "a photo alone is not sent";

  json proof = {{"order_id", "ORD-9"}, {"recipient_name", "Jana Novak"}, {"photo_sha256", used}};
  auto res = client.Post("/v1/proofs", proof.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  auto pending = queue.Pending();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(ToHex(pending[0]), used);

  // A proof whose photo cannot be marked is not stored: the app keeps it and retries.
  marking_fails = true;
  proof["photo_sha256"] = failing;
  res = client.Post("/v1/proofs", proof.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503) << res->body;
  EXPECT_EQ(outbox_.events().size(), 1u);
  EXPECT_EQ(queue.Pending().size(), 1u);

  // Uploaded photos leave the queue; refused ones are set aside, not retried.
  ASSERT_TRUE(queue.Reject(pending[0]).ok());
  EXPECT_TRUE(queue.Pending().empty());
  ASSERT_TRUE(queue.Mark(*ParseSha256Hex(unused)).ok());
  ASSERT_TRUE(queue.Done(*ParseSha256Hex(unused)).ok());
  EXPECT_TRUE(queue.Pending().empty());
  api.Stop();
}

TEST_F(LocalApiTest, StorageFailureIsNotReportedAsStored) {
  outbox_.FailWith(Status::NoSpace("disk full"));
  auto res = PostJson("/v1/deliveries", R"({"order_id":"A","kind":"arrived"})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 507);
  EXPECT_NE(res->body.find("not stored"), std::string::npos);
  outbox_.FailWith(Status::IOError("fsync failed"));
  res = PostJson("/v1/deliveries", R"({"order_id":"A","kind":"arrived"})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
}

TEST_F(LocalApiTest, StatusAndUnknownEndpoints) {
  auto res = client_->Get("/v1/status");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["gnss"]["mode"], 3);
  auto missing = client_->Get("/v1/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("no such endpoint"), std::string::npos);
}

}  // namespace
}  // namespace waybill::firmware

namespace waybill::firmware {
namespace {

TEST(ManifestStore, SurvivesAReopenAndReplacesTheOldOne) {
  std::string path = std::filesystem::temp_directory_path() /
                     ("waybill-manifest-" + std::to_string(::getpid()) + ".json");
  std::filesystem::remove(path);
  {
    ManifestStore store(path);
    EXPECT_FALSE(store.Get().has_value());
    sync::Manifest m{"m-1", "2025-11-24", {{"s1", "ORD-1", "Hauptstr. 1, München", 0, 0, 1}}};
    ASSERT_TRUE(store.Put(m, 1764000000000).ok());
    m.manifest_id = "m-2";
    m.stops.push_back({"s2", "ORD-2", "Marienplatz 8", 1764003600000, 1764010800000, 2});
    ASSERT_TRUE(store.Put(m, 1764000001000).ok());
  }
  ManifestStore again(path);
  std::optional<nlohmann::json> j = again.Get();
  ASSERT_TRUE(j.has_value());
  EXPECT_EQ((*j)["manifest_id"], "m-2");
  ASSERT_EQ((*j)["stops"].size(), 2u);
  EXPECT_EQ((*j)["stops"][1]["window_start"], "2025-11-24T17:00:00Z");
  EXPECT_TRUE((*j)["stops"][0]["window_start"].is_null());
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace waybill::firmware
