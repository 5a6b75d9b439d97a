// The bridge's photo upload store without HTTP or TLS: the offset rules, the digest check, the
// devices kept apart, and the forwarding markers.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "unit/outbox_test_util.h"
#include "waybill/bridge/config.h"
#include "waybill/bridge/upload_store.h"

namespace waybill::bridge {
namespace {

using testing::TempDir;

// A JPEG-headed photo of `n` bytes whose content depends on `seed`.
std::string Photo(size_t n, int seed = 1) {
  std::string p = "\xFF\xD8\xFF\xE0";
  p.reserve(n);
  uint32_t x = static_cast<uint32_t>(seed) * 2654435761u;
  while (p.size() < n) {
    x = x * 1664525u + 1013904223u;
    p.push_back(static_cast<char>(x >> 24));
  }
  p.resize(n);
  return p;
}

using testing::ReadAll;

class UploadStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = Open(); }
  std::unique_ptr<UploadStore> Open() {
    auto store = UploadStore::Open({dir_.File("photos"), 1 << 20});
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }
  AppendResult Append(const std::string& device, const std::string& sha, uint64_t offset,
                      uint64_t total, std::string_view bytes) {
    auto r = store_->Append(device, sha, offset, total, bytes);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : AppendResult{};
  }

  TempDir dir_;
  std::unique_ptr<UploadStore> store_;
};

TEST_F(UploadStoreTest, AppendsAtTheStoredOffsetAndCompletesWithTheRightDigest) {
  const std::string photo = Photo(100'000);
  const std::string sha = Sha256Hex(photo);
  EXPECT_TRUE(store_->Head("truck-1", sha).status().IsNotFound());

  AppendResult first = Append("truck-1", sha, 0, photo.size(), photo.substr(0, 40'000));
  EXPECT_EQ(first.verdict, AppendVerdict::kAccepted);
  EXPECT_EQ(first.offset, 40'000u);
  auto head = store_->Head("truck-1", sha);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->offset, 40'000u);
  EXPECT_FALSE(head->complete);

  // The offset survives a restart of the bridge: a new store on the same folder sees it.
  store_ = Open();
  head = store_->Head("truck-1", sha);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->offset, 40'000u);

  AppendResult last = Append("truck-1", sha, 40'000, photo.size(), photo.substr(40'000));
  EXPECT_EQ(last.verdict, AppendVerdict::kCompleted);
  EXPECT_EQ(last.offset, photo.size());
  head = store_->Head("truck-1", sha);
  ASSERT_TRUE(head.ok());
  EXPECT_TRUE(head->complete);
  EXPECT_EQ(head->offset, photo.size());

  auto listed = store_->List();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].device, "truck-1");
  EXPECT_EQ((*listed)[0].sha256_hex, sha);
  EXPECT_EQ((*listed)[0].bytes, photo.size());
  EXPECT_FALSE((*listed)[0].forwarded);
  EXPECT_EQ(ReadAll((*listed)[0].path), photo);
  EXPECT_FALSE(std::filesystem::exists((*listed)[0].path + ".part"));

  // Once whole, more bytes are refused, and nothing changes.
  AppendResult again = Append("truck-1", sha, 0, photo.size(), photo.substr(0, 10));
  EXPECT_EQ(again.verdict, AppendVerdict::kAlreadyComplete);
  EXPECT_EQ(again.offset, photo.size());
  EXPECT_EQ(ReadAll((*listed)[0].path), photo);
}

TEST_F(UploadStoreTest, AWrongOffsetWritesNothingAndNamesTheStoredOne) {
  const std::string photo = Photo(50'000);
  const std::string sha = Sha256Hex(photo);
  Append("truck-1", sha, 0, photo.size(), photo.substr(0, 20'000));

  AppendResult behind = Append("truck-1", sha, 0, photo.size(), photo.substr(0, 20'000));
  EXPECT_EQ(behind.verdict, AppendVerdict::kWrongOffset);
  EXPECT_EQ(behind.offset, 20'000u);
  EXPECT_EQ(behind.appended, 0u);
  AppendResult ahead = Append("truck-1", sha, 30'000, photo.size(), photo.substr(30'000, 100));
  EXPECT_EQ(ahead.verdict, AppendVerdict::kWrongOffset);
  EXPECT_EQ(ahead.offset, 20'000u);
  EXPECT_EQ(store_->Head("truck-1", sha)->offset, 20'000u);

  // A resume from the stored offset still gives the right photo.
  EXPECT_EQ(Append("truck-1", sha, 20'000, photo.size(), photo.substr(20'000)).verdict,
            AppendVerdict::kCompleted);
}

TEST_F(UploadStoreTest, ADigestMismatchDiscardsThePart) {
  const std::string photo = Photo(30'000);
  const std::string sha = Sha256Hex(Photo(30'000, 2));  // the name of other bytes
  Append("truck-1", sha, 0, photo.size(), photo.substr(0, 10'000));
  AppendResult last = Append("truck-1", sha, 10'000, photo.size(), photo.substr(10'000));
  EXPECT_EQ(last.verdict, AppendVerdict::kDigestMismatch);
  EXPECT_EQ(last.offset, 0u);
  EXPECT_TRUE(store_->Head("truck-1", sha).status().IsNotFound());
  EXPECT_TRUE(store_->List()->empty());

  // The right bytes under that name, sent again from the start, are taken.
  const std::string right = Photo(30'000, 2);
  EXPECT_EQ(Append("truck-1", sha, 0, right.size(), right).verdict, AppendVerdict::kCompleted);
}

TEST_F(UploadStoreTest, ADeviceCannotSeeOrTouchAnothersPhoto) {
  const std::string photo = Photo(60'000);
  const std::string sha = Sha256Hex(photo);
  Append("truck-1", sha, 0, photo.size(), photo.substr(0, 25'000));

  EXPECT_TRUE(store_->Head("truck-2", sha).status().IsNotFound());
  // truck-2 claiming truck-1's offset writes nothing anywhere.
  AppendResult other = Append("truck-2", sha, 25'000, photo.size(), std::string(35'000, 'x'));
  EXPECT_EQ(other.verdict, AppendVerdict::kWrongOffset);
  EXPECT_EQ(other.offset, 0u);
  EXPECT_EQ(store_->Head("truck-1", sha)->offset, 25'000u);

  // A device id that would leave its folder is refused, not used as a path.
  for (const char* device : {"../truck-1", "truck-1/..", "", "."}) {
    auto r = store_->Append(device, sha, 25'000, photo.size(), photo.substr(25'000));
    EXPECT_TRUE(r.status().IsInvalidArgument()) << device;
    EXPECT_TRUE(store_->Head(device, sha).status().IsInvalidArgument()) << device;
  }
  EXPECT_EQ(store_->Head("truck-1", sha)->offset, 25'000u);

  // truck-2 uploading the same bytes gets its own copy; truck-1's is unchanged.
  EXPECT_EQ(Append("truck-2", sha, 0, photo.size(), photo).verdict, AppendVerdict::kCompleted);
  EXPECT_FALSE(store_->Head("truck-1", sha)->complete);
  auto listed = store_->List();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].device, "truck-2");
}

TEST_F(UploadStoreTest, BadRequestsAreRefusedWithTheReason) {
  const std::string photo = Photo(2'000);
  const std::string sha = Sha256Hex(photo);
  auto bad_name = store_->Append("truck-1", "abc", 0, photo.size(), photo);
  EXPECT_TRUE(bad_name.status().IsInvalidArgument());
  EXPECT_NE(bad_name.status().message().find("64 hex digits"), std::string::npos);
  auto too_large = store_->Append("truck-1", sha, 0, (1 << 20) + 1, photo);
  EXPECT_TRUE(too_large.status().IsInvalidArgument());
  EXPECT_NE(too_large.status().message().find("Upload-Length"), std::string::npos);
  auto past_end = store_->Append("truck-1", sha, 0, 1'000, photo);
  EXPECT_TRUE(past_end.status().IsInvalidArgument());
  auto empty_total = store_->Append("truck-1", sha, 0, 0, "");
  EXPECT_TRUE(empty_total.status().IsInvalidArgument());
  EXPECT_TRUE(store_->Head("truck-1", sha).status().IsNotFound());

  // Upper-case digests name the same photo.
  std::string upper = sha;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(Append("truck-1", upper, 0, photo.size(), photo).verdict, AppendVerdict::kCompleted);
  EXPECT_TRUE(store_->Head("truck-1", sha)->complete);
}

TEST_F(UploadStoreTest, ForwardedPhotosAreMarkedDurablyAndPrunedAfterRetention) {
  const std::string a = Photo(5'000, 1), b = Photo(5'000, 2);
  Append("truck-1", Sha256Hex(a), 0, a.size(), a);
  Append("truck-1", Sha256Hex(b), 0, b.size(), b);
  auto listed = store_->List();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  for (const StoredPhoto& p : *listed) {
    if (p.sha256_hex == Sha256Hex(a)) {
      ASSERT_TRUE(store_->MarkForwarded(p).ok());
    } else {
      ASSERT_TRUE(store_->MarkRefused(p, "HTTP 400 no such order").ok());
    }
  }
  store_ = Open();  // markers are files: a restart sees them
  listed = store_->List();
  ASSERT_TRUE(listed.ok());
  for (const StoredPhoto& p : *listed) {
    EXPECT_EQ(p.forwarded, p.sha256_hex == Sha256Hex(a));
    EXPECT_EQ(p.refused, p.sha256_hex == Sha256Hex(b));
  }
  EXPECT_EQ(*store_->PruneForwarded(0), 0u) << "forwarded after the cut-off: kept";
  int64_t later = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count() +
                  60'000;
  EXPECT_EQ(*store_->PruneForwarded(later), 1u);
  EXPECT_TRUE(store_->Head("truck-1", Sha256Hex(a)).status().IsNotFound());
  EXPECT_TRUE(store_->Head("truck-1", Sha256Hex(b))->complete) << "refused photos stay";
}

TEST(UploadsConfig, ParsedWithDefaultsAndCheckedAsAWhole) {
  constexpr const char* kRoutes = R"(
[bridge]
data_dir = "/var/lib/wb"
[routes.positions]
url = "http://127.0.0.1:9/v1/{route}"
[routes.deliveries]
url = "http://127.0.0.1:9/v1/{route}"
[routes.proofs]
url = "http://127.0.0.1:9/v1/{route}"
[routes.health]
url = "http://127.0.0.1:9/v1/{route}"
)";
  auto none = ParseBridgeConfig(kRoutes, "bridge.toml");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->uploads.enabled);

  std::string uploads = std::string(kRoutes) + R"(
[uploads]
listen = "0.0.0.0:8443"
cert_file = "server.crt"
key_file = "server.key"
client_ca_file = "fleet-ca.crt"
forward_url = "http://127.0.0.1:9/v1/photos/{sha256}"
)";
  auto cfg = ParseBridgeConfig(uploads, "bridge.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_TRUE(cfg->uploads.enabled);
  EXPECT_EQ(cfg->uploads.dir, "/var/lib/wb/photos");
  EXPECT_EQ(cfg->uploads.max_bytes, 8u << 20);
  EXPECT_EQ(cfg->uploads.retention_h, 24);

  auto no_ca = ParseBridgeConfig(std::string(kRoutes) +
                                     "[uploads]\nlisten = \"127.0.0.1:0\"\ncert_file = \"a\"\n"
                                     "key_file = \"b\"\nforward_url = \"http://x/{sha256}\"\n",
                                 "bridge.toml");
  ASSERT_FALSE(no_ca.ok());
  EXPECT_NE(no_ca.status().message().find("client_ca_file"), std::string::npos);
  auto typo = ParseBridgeConfig(uploads + "max_byte = 5\n", "bridge.toml");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("uploads.max_byte"), std::string::npos);
}

}  // namespace
}  // namespace waybill::bridge
