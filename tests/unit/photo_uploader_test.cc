// waybilld's photo uploader against a small HTTPS stand-in for the bridge (mutual TLS with the
// test PKI): it waits for the uplink, resumes at the offset the bridge names, and gives up on a
// photo the bridge refuses (422) while keeping it on the unit.
#include "waybill/firmware/photo_uploader.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "support/test_pki.h"
#include "unit/outbox_test_util.h"

namespace waybill::firmware {
namespace {

using testing::GetTestPki;
using testing::TempDir;

template <typename F>
bool WaitFor(F done, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 20) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

// A test double of the bridge's upload endpoint (the real one runs in photo_upload_test.cc): it
// keeps one photo's bytes in memory and answers HEAD and PATCH as the real one does, unless
// `refuse` is set (then every PATCH gets a 422).
class FakeUploadEndpoint {
 public:
  FakeUploadEndpoint()
      : server_(GetTestPki().server.cert.c_str(), GetTestPki().server.key.c_str(),
                GetTestPki().ca.c_str()) {
    server_.Get(R"(/v1/photos/[0-9a-f]{64})",
                [this](const httplib::Request&, httplib::Response& res) {
                  std::lock_guard lock(mu_);
                  ++requests_;
                  if (!started_) {
                    res.status = 404;
                    return;
                  }
                  res.set_header("Upload-Offset", std::to_string(bytes_.size()));
                  if (complete_) res.set_header("Upload-Complete", "1");
                  res.status = 200;
                });
    server_.Patch(R"(/v1/photos/[0-9a-f]{64})",
                  [this](const httplib::Request& req, httplib::Response& res) {
                    std::lock_guard lock(mu_);
                    ++requests_;
                    ++patches_;
                    if (refuse_) {
                      res.status = 422;
                      res.set_content(R"({"error":"the photo's bytes do not match its sha256"})",
                                      "application/json");
                      return;
                    }
                    uint64_t offset = std::stoull(req.get_header_value("Upload-Offset"));
                    uint64_t total = std::stoull(req.get_header_value("Upload-Length"));
                    res.set_header("Upload-Offset", std::to_string(bytes_.size()));
                    if (offset != bytes_.size()) {
                      res.status = 409;
                      return;
                    }
                    started_ = true;
                    bytes_ += req.body;
                    res.set_header("Upload-Offset", std::to_string(bytes_.size()));
                    complete_ = bytes_.size() == total;
                    res.status = complete_ ? 201 : 200;
                  });
    // As the bridge does: resumed sessions with client certificates need a session id context.
    static constexpr unsigned char kContext[] = "fake-upload-endpoint";
    SSL_CTX_set_session_id_context(server_.ssl_context(), kContext, sizeof kContext - 1);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeUploadEndpoint() {
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  void Refuse() {
    std::lock_guard lock(mu_);
    refuse_ = true;
  }
  // The bridge already holds the first `n` bytes (an upload cut earlier).
  void Hold(std::string prefix) {
    std::lock_guard lock(mu_);
    started_ = true;
    bytes_ = std::move(prefix);
  }
  int requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  int patches() {
    std::lock_guard lock(mu_);
    return patches_;
  }
  std::string bytes() {
    std::lock_guard lock(mu_);
    return bytes_;
  }

 private:
  httplib::SSLServer server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::string bytes_;
  bool started_ = false;
  bool complete_ = false;
  bool refuse_ = false;
  int requests_ = 0;
  int patches_ = 0;
};

class PhotoUploaderTest : public ::testing::Test {
 protected:
  PhotoUploaderOptions Options(const std::string& url) {
    PhotoUploaderOptions o;
    o.url = url;
    o.ca_file = GetTestPki().ca.string();
    o.cert_file = GetTestPki().device("truck-1").cert.string();
    o.key_file = GetTestPki().device("truck-1").key.string();
    o.chunk_bytes = 16 * 1024;
    o.retry_base_ms = 20;
    o.retry_cap_ms = 100;
    o.idle_poll_ms = 50;
    return o;
  }
  std::array<uint8_t, 32> Store(const std::string& bytes) {
    Result<PhotoRef> ref = photos_.Put(bytes);
    EXPECT_TRUE(ref.ok()) << ref.status().ToString();
    EXPECT_TRUE(queue_.Mark(ref->sha256).ok());
    return ref->sha256;
  }

  TempDir dir_;
  PhotoStore photos_{dir_.File("photos")};
  PhotoUploadQueue queue_{dir_.File("photo-uploads")};
};

std::string Jpeg(size_t n) {
  std::string p = "\xFF\xD8\xFF\xE0";
  while (p.size() < n) p.push_back(static_cast<char>('a' + p.size() % 26));
  return p;
}

TEST_F(PhotoUploaderTest, WaitsForTheUplinkThenResumesAtTheBridgesOffset) {
  FakeUploadEndpoint bridge;
  const std::string photo = Jpeg(100'000);
  const std::array<uint8_t, 32> sha = Store(photo);
  bridge.Hold(photo.substr(0, 30'000));
  std::atomic<bool> link_up{false};
  PhotoUploader uploader(photos_, queue_, Options(bridge.url()), [&] { return link_up.load(); });
  ASSERT_TRUE(uploader.Start().ok());
  // While the uplink is down, nothing is tried, however often the queue is looked at.
  for (int i = 0; i < 5; ++i) {
    uploader.Nudge();
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
  }
  EXPECT_EQ(bridge.requests(), 0);
  EXPECT_EQ(uploader.Stats().pending, 1u);

  link_up = true;
  uploader.Nudge();
  ASSERT_TRUE(WaitFor([&] { return uploader.Stats().uploaded == 1; }, 20'000))
      << uploader.Stats().last_error;
  EXPECT_EQ(bridge.bytes(), photo);
  // Only the 70,000 bytes the bridge lacked were sent, in 16 KiB chunks.
  EXPECT_EQ(uploader.Stats().bytes_sent, 70'000u);
  EXPECT_EQ(bridge.patches(), 5);
  EXPECT_EQ(uploader.Stats().pending, 0u);
  EXPECT_TRUE(photos_.Find(sha).status().IsNotFound()) << "the unit's copy is deleted";
}

TEST_F(PhotoUploaderTest, APhotoTheBridgeRefusesStaysOnTheUnitAndIsNotSentAgain) {
  FakeUploadEndpoint bridge;
  bridge.Refuse();
  const std::array<uint8_t, 32> sha = Store(Jpeg(20'000));
  PhotoUploader uploader(photos_, queue_, Options(bridge.url()), {});
  ASSERT_TRUE(uploader.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return uploader.Stats().rejected == 1; }, 20'000))
      << uploader.Stats().last_error;
  for (int i = 0; i < 5; ++i) {
    uploader.Nudge();
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
  }
  uploader.Stop();
  EXPECT_EQ(bridge.patches(), 1);
  PhotoUploadStats stats = uploader.Stats();
  EXPECT_EQ(stats.pending, 0u);
  EXPECT_EQ(stats.uploaded, 0u);
  EXPECT_NE(stats.last_error.find("422"), std::string::npos) << stats.last_error;
  EXPECT_TRUE(photos_.Find(sha).ok()) << "kept on the unit";
}

}  // namespace
}  // namespace waybill::firmware
