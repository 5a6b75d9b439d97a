// The data key (data_key.h): sealing round trips, and every way a sealed blob can fail to open
// fails with a message that says which; the key file is made once, private, and refused when it
// is not.
#include "waybill/sync/data_key.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "unit/outbox_test_util.h"

namespace waybill::sync {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

using testing::ReadAll;

std::unique_ptr<DataKey> KeyOf(char fill) {
  auto key = DataKey::FromBytes(std::string(kDataKeyBytes, fill));
  EXPECT_TRUE(key.ok()) << key.status().ToString();
  return std::move(key).value();
}

TEST(DataKeyTest, SealedBytesOpenToThePlaintextAndHideIt) {
  auto key = KeyOf('k');
  const std::string plaintext = "recipient Zdenka Quist-Marlowe signed at the back door";
  auto sealed = key->Seal(plaintext, "outbox:pod");
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(sealed->size(), plaintext.size() + kSealedOverheadBytes);
  EXPECT_TRUE(IsSealed(*sealed));
  EXPECT_EQ(SealedKeyIdHex(*sealed), key->KeyIdHex());
  EXPECT_EQ(sealed->find("Zdenka"), std::string::npos);
  auto opened = key->Open(*sealed, "outbox:pod");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(*opened, plaintext);

  // A fresh nonce each time: the same plaintext never seals to the same bytes.
  auto again = key->Seal(plaintext, "outbox:pod");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, *sealed);
  // Empty plaintext works too (a header and a tag).
  auto empty = key->Seal("", "x");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*key->Open(*empty, "x"), "");
}

TEST(DataKeyTest, TamperedBytesAreRefusedAsAltered) {
  auto key = KeyOf('k');
  std::string sealed = *key->Seal("a signature stroke 10,10 50,60", "outbox:pod");
  for (size_t at : {size_t{1 + kSealedKeyIdBytes}, kSealedOverheadBytes - kSealedTagBytes + 3,
                    sealed.size() - 1}) {
    std::string bad = sealed;
    bad[at] = static_cast<char>(bad[at] ^ 0x40);
    auto opened = key->Open(bad, "outbox:pod");
    ASSERT_FALSE(opened.ok()) << "a flipped bit at " << at << " went unnoticed";
    EXPECT_TRUE(opened.status().IsCorruption()) << opened.status().ToString();
    EXPECT_NE(opened.status().message().find("altered or damaged"), std::string::npos)
        << opened.status().message();
  }
}

TEST(DataKeyTest, AnotherKeyIsNamedAsSuch) {
  auto key = KeyOf('k');
  auto other = KeyOf('o');
  ASSERT_NE(key->KeyIdHex(), other->KeyIdHex());
  std::string sealed = *key->Seal("Zdenka", "outbox:pod");
  auto opened = other->Open(sealed, "outbox:pod");
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(opened.status().IsCorruption());
  EXPECT_NE(opened.status().message().find("another data key"), std::string::npos);
  EXPECT_NE(opened.status().message().find(key->KeyIdHex()), std::string::npos);
  EXPECT_NE(opened.status().message().find(other->KeyIdHex()), std::string::npos);
}

TEST(DataKeyTest, ABlobSealedForOnePurposeDoesNotOpenForAnother) {
  auto key = KeyOf('k');
  std::string sealed = *key->Seal("note: leave with Zdenka", "waybill outbox:delivery");
  auto opened = key->Open(sealed, "waybill outbox:pod");
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(opened.status().IsCorruption());
  EXPECT_NE(opened.status().message().find("another purpose"), std::string::npos);
}

TEST(DataKeyTest, TruncatedAndForeignBytesAreToldApart) {
  auto key = KeyOf('k');
  std::string sealed = *key->Seal("Zdenka", "a");
  auto truncated = key->Open(sealed.substr(0, kSealedOverheadBytes - 1), "a");
  ASSERT_FALSE(truncated.ok());
  EXPECT_TRUE(truncated.status().IsCorruption());
  EXPECT_NE(truncated.status().message().find("truncated"), std::string::npos);
  // Cut inside the ciphertext: the tag no longer matches.
  EXPECT_FALSE(key->Open(sealed.substr(0, sealed.size() - 1), "a").ok());

  auto plain = key->Open("\x0a\x05stop1", "a");
  ASSERT_FALSE(plain.ok());
  EXPECT_TRUE(plain.status().IsInvalidArgument()) << plain.status().ToString();
  EXPECT_FALSE(IsSealed("\x0a\x05stop1"));
  EXPECT_FALSE(IsSealed("\xFF\xD8\xFF\xE0 a JPEG"));
}

TEST(DataKeyTest, TheKeyFileIsMadeOncePrivateAndReused) {
  TempDir dir;
  const std::string path = dir.File("keys/data.key");  // the folder does not exist yet
  mode_t old_umask = ::umask(0);                       // the file's mode must not depend on it
  auto first = DataKey::LoadOrCreate(path);
  ::umask(old_umask);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(kDataKeyBytes));
  const std::string bytes = ReadAll(path);

  std::string sealed = *(*first)->Seal("Zdenka Quist-Marlowe", "outbox:pod");
  auto second = DataKey::LoadOrCreate(path);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(ReadAll(path), bytes) << "an existing key file is never rewritten";
  EXPECT_EQ((*second)->KeyIdHex(), (*first)->KeyIdHex());
  EXPECT_EQ(*(*second)->Open(sealed, "outbox:pod"), "Zdenka Quist-Marlowe");
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir.File("keys"))) files += e.is_regular_file();
  EXPECT_EQ(files, 1u) << "no temporary file is left behind";
}

TEST(DataKeyTest, AKeyFileOthersCanReadIsRefusedWithTheFix) {
  TempDir dir;
  const std::string path = dir.File("data.key");
  ASSERT_TRUE(DataKey::LoadOrCreate(path).ok());
  const std::string bytes = ReadAll(path);
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                            fs::perms::others_read);
  auto refused = DataKey::LoadOrCreate(path);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("0644"), std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("chmod 600 " + path), std::string::npos);
  EXPECT_EQ(ReadAll(path), bytes) << "a refused key file is left as it is";
}

TEST(DataKeyTest, AKeyFileOfTheWrongSizeIsRefused) {
  TempDir dir;
  const std::string path = dir.File("data.key");
  std::ofstream(path, std::ios::binary) << std::string(16, 'x');
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  auto refused = DataKey::LoadOrCreate(path);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("16 bytes"), std::string::npos)
      << refused.status().message();

  DataKeyOptions no_create;
  no_create.create_if_missing = false;
  auto missing = DataKey::LoadOrCreate(dir.File("absent.key"), no_create);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsNotFound());
  EXPECT_FALSE(fs::exists(dir.File("absent.key")));
}

}  // namespace
}  // namespace waybill::sync
