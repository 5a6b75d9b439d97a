// Personal data at rest in the outbox: with a data key, no recipient name, note or signature is
// in the bytes of outbox.db or its WAL, before or after a checkpoint, and an acked proof leaves
// not even its sealed bytes behind; Claim still hands the uplink the plaintext. A sealed event
// that does not open (the key file was replaced) is kept and reported, and the others go on.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "unit/outbox_test_util.h"
#include "waybill/sync/data_key.h"
#include "waybill/sync/events.h"
#include "waybill/sync/outbox.h"
#include "waybill/sync/outbox_reader.h"

namespace waybill::testing {
namespace {

using sync::EventClass;

constexpr const char* kName = "Zdenka Quist-Marlowe";

using testing::ReadAll;

std::shared_ptr<const sync::DataKey> KeyOf(char fill) {
  auto key = sync::DataKey::FromBytes(std::string(sync::kDataKeyBytes, fill));
  EXPECT_TRUE(key.ok());
  return std::shared_ptr<const sync::DataKey>(std::move(key).value());
}

// A proof whose signature is a distinctive pattern of points, different for each i.
std::string ProofBody(int i) {
  sync::ProofOfDelivery p;
  p.stop_id = "stop-" + std::to_string(i);
  p.order_id = "ORD-" + std::to_string(i);
  p.recipient_name = kName;
  p.signature_width = 760;
  p.signature_height = 300;
  for (int s = 0; s < 4; ++s) {
    sync::SignatureStroke stroke;
    for (int k = 0; k < 60; ++k) stroke.push_back({7919 + 13 * k + i, 6007 - 17 * k + s});
    p.signature.push_back(std::move(stroke));
  }
  auto body = sync::EncodeProof(p);
  EXPECT_TRUE(body.ok()) << body.status().ToString();
  return body.ok() ? *body : std::string();
}

std::string DeliveryBody(int i) {
  sync::DeliveryEvent d;
  d.order_id = "ORD-" + std::to_string(i);
  d.kind = sync::DeliveryKind::kFailed;
  d.reason = sync::FailReason::kRecipientAbsent;
  d.note = std::string("left a card for ") + kName;
  auto body = sync::EncodeDelivery(d);
  EXPECT_TRUE(body.ok()) << body.status().ToString();
  return body.ok() ? *body : std::string();
}

// Where in the outbox's files any 16-byte window of `secret` occurs ("" if nowhere).
std::string FindInFiles(const std::string& db, const std::string& secret) {
  for (const char* suffix : {"", "-wal"}) {
    std::string bytes = ReadAll(db + suffix);
    for (size_t at = 0; at + 16 <= secret.size(); at += 4) {
      if (bytes.find(secret.substr(at, 16)) != std::string::npos) {
        return db + suffix + " holds bytes " + std::to_string(at) + ".." + std::to_string(at + 16) +
               " of the secret";
      }
    }
    if (bytes.find(kName) != std::string::npos) return db + suffix + " holds the name";
  }
  return "";
}

void CheckpointTruncate(const std::string& db) {
  sqlite3* c = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db.c_str(), &c, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(c, 5000);
  int log = -1, done = -1;
  EXPECT_EQ(sqlite3_wal_checkpoint_v2(c, "main", SQLITE_CHECKPOINT_TRUNCATE, &log, &done),
            SQLITE_OK)
      << sqlite3_errmsg(c);
  sqlite3_close(c);
}

class OutboxSealedTest : public ::testing::Test {
 protected:
  std::unique_ptr<sync::Outbox> Open(std::shared_ptr<const sync::DataKey> key,
                                     bool secure_delete = true) {
    sync::OutboxOptions o;
    o.path = path_;
    o.data_key = std::move(key);
    o.secure_delete = secure_delete;
    auto outbox = sync::Outbox::Open(o);
    EXPECT_TRUE(outbox.ok()) << outbox.status().ToString();
    return outbox.ok() ? std::move(outbox).value() : nullptr;
  }
  // Every body as the file holds it, by sequence.
  std::map<uint64_t, std::string> RawBodies() {
    std::map<uint64_t, std::string> out;
    auto reader = sync::OutboxReader::Open(path_);
    EXPECT_TRUE(reader.ok());
    if (!reader.ok()) return out;
    EXPECT_TRUE((*reader)
                    ->ForEach(std::nullopt, 0,
                              [&](const sync::StoredEvent& e) {
                                out[e.seq] = e.body;
                                return true;
                              })
                    .ok());
    return out;
  }

  TempDir dir_;
  std::string path_ = dir_.File("outbox.db");
};

TEST_F(OutboxSealedTest, NoNameOrSignatureIsInTheFilesAndClaimReturnsThePlaintext) {
  auto key = KeyOf('k');
  auto outbox = Open(key);
  ASSERT_TRUE(outbox);
  std::map<uint64_t, std::string> plain;
  for (int i = 0; i < 20; ++i) {
    std::string proof = ProofBody(i);
    auto seq = outbox->Append(Event(EventClass::kProofOfDelivery, proof));
    ASSERT_TRUE(seq.ok()) << seq.status().ToString();
    plain[*seq] = proof;
    std::string delivery = DeliveryBody(i);
    seq = outbox->Append(Event(EventClass::kDelivery, delivery));
    ASSERT_TRUE(seq.ok());
    plain[*seq] = delivery;
    ASSERT_TRUE(outbox->Append(Event(EventClass::kFix, FixBody(i))).ok());
  }
  ASSERT_GT(ReadAll(path_ + "-wal").size(), 0u) << "the rows are in the WAL before a checkpoint";
  for (const auto& [seq, body] : plain) {
    ASSERT_EQ(FindInFiles(path_, body), "") << "seq " << seq << " before the checkpoint";
  }

  // What the file holds is sealed, with this key, for its class.
  std::map<uint64_t, std::string> raw = RawBodies();
  for (const auto& [seq, body] : plain) {
    ASSERT_TRUE(sync::IsSealed(raw[seq])) << "seq " << seq;
    EXPECT_EQ(sync::SealedKeyIdHex(raw[seq]), key->KeyIdHex());
  }

  CheckpointTruncate(path_);
  for (const auto& [seq, body] : plain) {
    ASSERT_EQ(FindInFiles(path_, body), "") << "seq " << seq << " after the checkpoint";
  }

  auto claimed = outbox->Claim(100, false);
  ASSERT_TRUE(claimed.ok()) << claimed.status().ToString();
  std::vector<uint64_t> acked;
  for (const sync::StoredEvent& e : *claimed) {
    if (e.cls == EventClass::kFix) continue;
    ASSERT_TRUE(plain.count(e.seq));
    EXPECT_EQ(e.body, plain[e.seq]) << "Claim hands the uplink the plaintext";
    acked.push_back(e.seq);
  }
  ASSERT_EQ(acked.size(), plain.size());
  auto proof = sync::DecodeProof(plain.begin()->second);
  ASSERT_TRUE(proof.ok());
  EXPECT_EQ(proof->recipient_name, kName);

  ASSERT_TRUE(outbox->Ack(acked).ok());
  EXPECT_EQ(outbox->Stats().by_class[static_cast<int>(EventClass::kProofOfDelivery)], 0u);
  EXPECT_EQ(outbox->Stats().by_class[static_cast<int>(EventClass::kDelivery)], 0u);
  outbox.reset();  // closing checkpoints and removes the WAL

  // Acked: gone, and not even the sealed bytes are left in the freed space of the file.
  std::string file = ReadAll(path_);
  for (const auto& [seq, body] : plain) {
    EXPECT_EQ(FindInFiles(path_, body), "") << "seq " << seq << " after the ack";
    std::string sealed = raw[seq];
    EXPECT_EQ(file.find(sealed.substr(sync::kSealedOverheadBytes - sync::kSealedTagBytes, 16)),
              std::string::npos)
        << "seq " << seq << ": its sealed bytes are still in the file after the ack";
  }
  EXPECT_TRUE(RawBodies().size() == 20u) << "only the fixes are left";
}

// The reason for secure_delete: without it, an acked row's bytes stay in the file's free space.
TEST_F(OutboxSealedTest, WithoutSecureDeleteAnAckedRowsBytesStayInTheFile) {
  auto outbox = Open(nullptr, /*secure_delete=*/false);
  ASSERT_TRUE(outbox);
  std::string proof = ProofBody(1);
  auto seq = outbox->Append(Event(EventClass::kProofOfDelivery, proof));
  ASSERT_TRUE(seq.ok());
  ASSERT_TRUE(outbox->Append(Event(EventClass::kFix, FixBody(1))).ok());
  uint64_t s = *seq;
  ASSERT_TRUE(outbox->Ack(std::span<const uint64_t>(&s, 1)).ok());
  outbox.reset();
  EXPECT_NE(ReadAll(path_).find(kName), std::string::npos)
      << "this SQLite zeroes deleted rows anyway: the secure_delete check above proves nothing";
}

TEST_F(OutboxSealedTest, EventsThatDoNotOpenAreKeptAndReportedAndTheOthersGoOut) {
  {
    auto outbox = Open(KeyOf('a'));
    ASSERT_TRUE(outbox);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(outbox->Append(Event(EventClass::kProofOfDelivery, ProofBody(i))).ok());
    }
  }
  // The key file was lost and a new key made: the old proofs cannot be opened.
  auto outbox = Open(KeyOf('b'));
  ASSERT_TRUE(outbox);
  std::string fresh = ProofBody(9);
  auto fresh_seq = outbox->Append(Event(EventClass::kProofOfDelivery, fresh));
  ASSERT_TRUE(fresh_seq.ok());
  ASSERT_TRUE(outbox->Append(Event(EventClass::kFix, FixBody(1))).ok());

  auto claimed = outbox->Claim(100, false);
  ASSERT_TRUE(claimed.ok()) << claimed.status().ToString();
  ASSERT_EQ(claimed->size(), 2u) << "the new proof and the fix go out";
  EXPECT_EQ((*claimed)[0].seq, *fresh_seq);
  EXPECT_EQ((*claimed)[0].body, fresh);
  sync::OutboxStats st = outbox->Stats();
  EXPECT_EQ(st.unopenable, 3u);
  EXPECT_EQ(st.by_class[static_cast<int>(EventClass::kProofOfDelivery)], 4u) << "kept";
  ASSERT_FALSE(st.alarms.empty());
  EXPECT_NE(st.alarms.back().find("another data key"), std::string::npos) << st.alarms.back();
  EXPECT_EQ(st.alarms.back().find(kName), std::string::npos);

  // Claiming again does not count them twice, nor hand them out.
  auto again = outbox->Claim(100, false);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  EXPECT_EQ(outbox->Stats().unopenable, 3u);
  outbox.reset();

  // With the right key they open and go out.
  outbox = Open(KeyOf('a'));
  auto recovered = outbox->Claim(100, false);
  ASSERT_TRUE(recovered.ok());
  size_t opened = 0;
  for (const auto& e : *recovered) opened += e.body.find(kName) != std::string::npos;
  EXPECT_EQ(opened, 3u);
  EXPECT_EQ(outbox->Stats().unopenable, 1u) << "the one sealed with the other key";
}

TEST_F(OutboxSealedTest, ProofsStoredBeforeSealingWasOnStillGoOut) {
  std::string proof = ProofBody(3);
  {
    auto outbox = Open(nullptr);
    ASSERT_TRUE(outbox);
    ASSERT_TRUE(outbox->Append(Event(EventClass::kProofOfDelivery, proof)).ok());
  }
  auto outbox = Open(KeyOf('k'));
  ASSERT_TRUE(outbox);
  auto claimed = outbox->Claim(10, false);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0].body, proof);
  EXPECT_EQ(outbox->Stats().unopenable, 0u);
}

TEST_F(OutboxSealedTest, TheReaderOpensSealedBodiesWithTheKeyAndLeavesThemSealedWithout) {
  auto key = KeyOf('k');
  std::string proof = ProofBody(4);
  {
    auto outbox = Open(key);
    ASSERT_TRUE(outbox);
    ASSERT_TRUE(outbox->Append(Event(EventClass::kProofOfDelivery, proof)).ok());
  }
  auto with_key = sync::OutboxReader::Open(path_, 500, key);
  ASSERT_TRUE(with_key.ok());
  std::string body;
  ASSERT_TRUE((*with_key)
                  ->ForEach(EventClass::kProofOfDelivery, 0,
                            [&](const sync::StoredEvent& e) {
                              body = e.body;
                              return true;
                            })
                  .ok());
  EXPECT_EQ(body, proof);
  std::string sealed = RawBodies().begin()->second;
  EXPECT_TRUE(sync::IsSealed(sealed));
  auto no_key = sync::OpenStoredBody(nullptr, EventClass::kProofOfDelivery, sealed);
  ASSERT_FALSE(no_key.ok());
  EXPECT_NE(no_key.status().message().find(key->KeyIdHex()), std::string::npos);
  auto as_delivery = sync::OpenStoredBody(key.get(), EventClass::kDelivery, sealed);
  EXPECT_FALSE(as_delivery.ok()) << "a proof's sealed body does not open as a delivery";
}

}  // namespace
}  // namespace waybill::testing
