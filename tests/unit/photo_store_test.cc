// Photos sealed at rest: the file is named by the photo's sha256 and holds none of its bytes;
// Find() knows the type and size without opening it; Read() gives the photo back; a sealed file
// moved to another photo's name does not open; Remove() deletes it.
#include "waybill/firmware/photo_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "unit/outbox_test_util.h"
#include "waybill/sync/data_key.h"

namespace waybill::firmware {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

using testing::ReadAll;

std::shared_ptr<const sync::DataKey> KeyOf(char fill) {
  auto key = sync::DataKey::FromBytes(std::string(sync::kDataKeyBytes, fill));
  EXPECT_TRUE(key.ok());
  return std::shared_ptr<const sync::DataKey>(std::move(key).value());
}

std::string Png(int n) {
  std::string png = "\x89PNG\r\n\x1a\n";
  for (int i = 0; i < n; ++i) png += "doorstep-with-parcel-" + std::to_string(i) + ";";
  return png;
}

TEST(PhotoStoreTest, ASealedPhotoHoldsNoneOfItsBytesAndReadsBackWhole) {
  TempDir dir;
  PhotoStore store(dir.File("photos"), KeyOf('k'));
  const std::string png = Png(200);
  auto ref = store.Put(png);
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_EQ(ref->path, dir.File("photos") + "/" + ToHex(Sha256(png)));
  EXPECT_EQ(ref->mime, "image/png");

  std::string file = ReadAll(ref->path);
  EXPECT_EQ(file.size(), png.size() + 1 + sync::kSealedOverheadBytes);
  EXPECT_EQ(file.find("doorstep-with-parcel"), std::string::npos);
  EXPECT_EQ(file.find("PNG"), std::string::npos);

  auto found = store.Find(ref->sha256);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->mime, "image/png") << "from the type byte, not sniffed from sealed bytes";
  EXPECT_EQ(found->bytes, png.size());

  auto read = store.Read(ref->sha256);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, png);

  ASSERT_TRUE(store.Remove(ref->sha256).ok());
  EXPECT_FALSE(fs::exists(ref->path));
  EXPECT_TRUE(store.Read(ref->sha256).status().IsNotFound());
  EXPECT_TRUE(store.Remove(ref->sha256).ok()) << "removing twice is not an error";
}

TEST(PhotoStoreTest, ASealedPhotoUnderAnotherNameOrKeyDoesNotOpen) {
  TempDir dir;
  PhotoStore store(dir.File("photos"), KeyOf('k'));
  auto a = store.Put(Png(10));
  auto b = store.Put(Png(20));
  ASSERT_TRUE(a.ok() && b.ok());
  fs::copy_file(a->path, b->path, fs::copy_options::overwrite_existing);
  auto swapped = store.Read(b->sha256);
  ASSERT_FALSE(swapped.ok());
  EXPECT_TRUE(swapped.status().IsCorruption()) << swapped.status().ToString();

  PhotoStore other(dir.File("photos"), KeyOf('o'));
  auto wrong_key = other.Read(a->sha256);
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_NE(wrong_key.status().message().find("another data key"), std::string::npos);

  PhotoStore no_key(dir.File("photos"));
  EXPECT_FALSE(no_key.Read(a->sha256).ok()) << "sealed bytes are never handed out as a photo";
}

TEST(PhotoStoreTest, PhotosStoredBeforeSealingAreStillFoundAndRead) {
  TempDir dir;
  const std::string jpeg = "\xFF\xD8\xFF\xE0 an old photo";
  PhotoRef old;
  {
    PhotoStore plain(dir.File("photos"));
    auto ref = plain.Put(jpeg);
    ASSERT_TRUE(ref.ok());
    old = *ref;
  }
  PhotoStore store(dir.File("photos"), KeyOf('k'));
  auto found = store.Find(old.sha256);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->mime, "image/jpeg");
  EXPECT_EQ(found->bytes, jpeg.size());
  auto read = store.Read(old.sha256);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, jpeg);
}

}  // namespace
}  // namespace waybill::firmware
