// waybill-receiver as a process, over real HTTP: what the bridge and its tests rely on. A batch
// is applied once per Idempotency-Key, even across a restart; an event applied under a second key
// is counted; bad input is a 400 naming the field; each injected fault does what it says.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/receiver_process.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

using waybill::testing::ReceiverProcess;

constexpr const char* kPath = "/v1/positions";

// A body as the bridge sends it: one event per sequence, with a field the receiver ignores.
std::string Batch(const std::string& device, const std::vector<uint64_t>& seqs) {
  json events = json::array();
  for (uint64_t seq : seqs) {
    events.push_back({{"device", device}, {"seq", seq}, {"lat_e7", 481372000 + seq}});
  }
  return json{{"route", "positions"}, {"batch", "b"}, {"events", events}}.dump();
}

class ReceiverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("receiver-it-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    receiver_ = std::make_unique<ReceiverProcess>(WAYBILL_RECEIVER_PATH, dir_);
  }
  void TearDown() override {
    receiver_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  int Start(const std::vector<std::string>& flags = {}) {
    std::string error;
    int port = receiver_->Start(flags, &error);
    if (port < 0) ADD_FAILURE() << error;
    return port;
  }

  httplib::Result Post(const std::string& key, const std::string& body,
                       const std::string& path = kPath) {
    httplib::Client client("127.0.0.1", receiver_->port());
    httplib::Headers headers;
    if (!key.empty()) headers.emplace("Idempotency-Key", key);
    return client.Post(path.c_str(), headers, body, "application/json");
  }

  // The applied events of `device` on kPath as (seq, key) pairs, in order of application.
  std::vector<std::pair<uint64_t, std::string>> Events(const std::string& device) {
    json list = receiver_->GetJson(std::string("/_events?path=") + kPath + "&device=" + device);
    EXPECT_TRUE(list.is_array()) << list.dump();
    std::vector<std::pair<uint64_t, std::string>> out;
    for (const json& ev : list) out.emplace_back(ev["seq"].get<uint64_t>(), ev["key"]);
    return out;
  }

  fs::path dir_;
  std::unique_ptr<ReceiverProcess> receiver_;
};

using Applied = std::vector<std::pair<uint64_t, std::string>>;

TEST_F(ReceiverTest, AppliesABatchOnceAndTheSameKeyAgainIsADuplicate) {
  ASSERT_GT(Start(), 0);
  auto res = Post("batch-1", Batch("truck-7", {1042, 1043, 1044}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body), json({{"applied", 3}}));

  json stats = receiver_->Stats();
  EXPECT_EQ(stats["applied_requests"], 1);
  EXPECT_EQ(stats["events_applied"], 3);
  EXPECT_EQ(stats["by_path"][kPath], 3);
  EXPECT_EQ(stats["event_duplicates"], 0);
  const Applied expected = {{1042, "batch-1"}, {1043, "batch-1"}, {1044, "batch-1"}};
  EXPECT_EQ(Events("truck-7"), expected);

  // A retry of the same batch, as after a lost answer: answered, nothing changes.
  res = Post("batch-1", Batch("truck-7", {1042, 1043, 1044}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body), json({{"duplicate", true}}));
  stats = receiver_->Stats();
  EXPECT_EQ(stats["requests"], 2);
  EXPECT_EQ(stats["applied_requests"], 1);
  EXPECT_EQ(stats["duplicate_requests"], 1);
  EXPECT_EQ(stats["events_applied"], 3);
  EXPECT_EQ(stats["event_duplicates"], 0);
  EXPECT_EQ(stats["key_conflicts"], 0);
  EXPECT_EQ(Events("truck-7"), expected);
  EXPECT_EQ(Events("truck-8"), Applied{});
}

TEST_F(ReceiverTest, AnEventAppliedAgainUnderAnotherKeyIsCountedAsAnEventDuplicate) {
  ASSERT_GT(Start(), 0);
  ASSERT_EQ(Post("batch-1", Batch("truck-7", {1, 2}))->status, 200);
  // The same event of another truck, or on another route, is not a duplicate.
  ASSERT_EQ(Post("batch-2", Batch("truck-8", {2}))->status, 200);
  ASSERT_EQ(Post("batch-3", Batch("truck-7", {2}), "/v1/deliveries")->status, 200);
  EXPECT_EQ(receiver_->Stats()["event_duplicates"], 0);

  auto res = Post("batch-4", Batch("truck-7", {2, 3}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  json stats = receiver_->Stats();
  EXPECT_EQ(stats["event_duplicates"], 1);
  EXPECT_EQ(stats["events_applied"], 6);
  EXPECT_EQ(stats["by_path"][kPath], 5);
  EXPECT_EQ(stats["by_path"]["/v1/deliveries"], 1);
  EXPECT_EQ(Events("truck-7"),
            (Applied{{1, "batch-1"}, {2, "batch-1"}, {2, "batch-4"}, {3, "batch-4"}}));
}

TEST_F(ReceiverTest, BadRequestsAre400NamingWhatIsWrongAndApplyNothing) {
  ASSERT_GT(Start(), 0);
  struct Case {
    std::string key;
    std::string body;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"", Batch("truck-7", {1}), "Idempotency-Key: missing header"},
      {"k", "{\"events\": [", "body: not valid JSON"},
      {"k", "[1, 2]", "body: expected a JSON object"},
      {"k", "{\"route\": \"positions\"}", "events: missing"},
      {"k", "{\"events\": {}}", "events: expected an array"},
      {"k", R"({"events": [{"device": "t", "seq": 1}, {"device": "t"}]})",
       "events[1].seq: missing"},
      {"k", R"({"events": [{"seq": 1}]})", "events[0].device: missing"},
      {"k", R"({"events": [{"device": 7, "seq": 1}]})", "events[0].device: expected a string"},
      {"k", R"({"events": [{"device": "t", "seq": -1}]})",
       "events[0].seq: expected an unsigned integer"},
      {"k", R"({"events": [{"device": "t", "seq": 1.5}]})",
       "events[0].seq: expected an unsigned integer"},
      {"k", R"({"events": [{"device": "t", "seq": "1"}]})",
       "events[0].seq: expected an unsigned integer"},
      {"k", R"({"events": [3]})", "events[0]: expected an object"},
      {"k", R"({"events": [{"device": "t", "seq": 1e400}]})", "body: not valid JSON"},
      {"k", std::string("\xff\xfe{\"events\": []}"), "body: not valid JSON"},
  };
  for (const Case& c : cases) {
    auto res = Post(c.key, c.body);
    ASSERT_TRUE(res) << c.body;
    EXPECT_EQ(res->status, 400) << c.body;
    json answer = json::parse(res->body, nullptr, false);
    ASSERT_TRUE(answer.contains("error")) << res->body;
    EXPECT_NE(answer["error"].get<std::string>().find(c.error), std::string::npos)
        << "for " << c.body << ": " << res->body;
  }
  json stats = receiver_->Stats();
  EXPECT_EQ(stats["bad_requests"], cases.size());
  EXPECT_EQ(stats["applied_requests"], 0);
  EXPECT_EQ(stats["events_applied"], 0);
  // A key refused with a bad body was not consumed: the corrected request is applied.
  auto res = Post("k", Batch("truck-7", {1}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
}

TEST_F(ReceiverTest, ALargeBatchIsAppliedWhateverItsContentType) {
  ASSERT_GT(Start(), 0);
  std::vector<uint64_t> seqs;
  for (uint64_t seq = 1; seq <= 5000; ++seq) seqs.push_back(seq);
  const std::string body = Batch("truck-7", seqs);
  ASSERT_GT(body.size(), 100'000u);
  // libcurl's default for a POST body, which a web framework might refuse above a few KiB.
  httplib::Client client("127.0.0.1", receiver_->port());
  auto res =
      client.Post(kPath, {{"Idempotency-Key", "big"}}, body, "application/x-www-form-urlencoded");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(receiver_->Stats()["events_applied"], 5000);
}

TEST_F(ReceiverTest, FailRateOneAnswers500AndAppliesNothing) {
  ASSERT_GT(Start(), 0);
  json settings = receiver_->SetFaults({{"fail_rate", 1}});
  ASSERT_EQ(settings["fail_rate"], 1.0) << settings.dump();
  EXPECT_EQ(receiver_->GetJson("/_faults"), settings);
  for (int i = 0; i < 3; ++i) {
    auto res = Post("batch-1", Batch("truck-7", {1}));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 500) << res->body;
  }
  json stats = receiver_->Stats();
  EXPECT_EQ(stats["faults"]["500"], 3);
  EXPECT_EQ(stats["events_applied"], 0);

  // The key was never applied: once the backend recovers, the retry goes through.
  receiver_->SetFaults({{"fail_rate", 0}});
  auto res = Post("batch-1", Batch("truck-7", {1}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body), json({{"applied", 1}}));
}

TEST_F(ReceiverTest, FailAfterApplyAppliesThen500AndTheRetryIsADuplicate) {
  ASSERT_GT(Start({"--fail-after-apply-rate", "1"}), 0);
  auto res = Post("batch-1", Batch("truck-7", {5, 6}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500) << res->body;
  EXPECT_EQ(Events("truck-7"), (Applied{{5, "batch-1"}, {6, "batch-1"}}));

  receiver_->SetFaults({{"fail_after_apply_rate", 0}});
  res = Post("batch-1", Batch("truck-7", {5, 6}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body), json({{"duplicate", true}}));
  json stats = receiver_->Stats();
  EXPECT_EQ(stats["faults"]["500_after_apply"], 1);
  EXPECT_EQ(stats["events_applied"], 2);
  EXPECT_EQ(stats["event_duplicates"], 0);
}

TEST_F(ReceiverTest, ThrottleAnswers429WithRetryAfterAndAppliesNothing) {
  ASSERT_GT(Start({"--throttle-rate", "1", "--retry-after-s", "7"}), 0);
  auto res = Post("batch-1", Batch("truck-7", {1}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 429) << res->body;
  EXPECT_EQ(res->get_header_value("Retry-After"), "7");
  json stats = receiver_->Stats();
  EXPECT_EQ(stats["faults"]["429"], 1);
  EXPECT_EQ(stats["events_applied"], 0);
}

TEST_F(ReceiverTest, AHangingRequestDoesNotHoldUpOthersAndAppliesNothing) {
  ASSERT_GT(Start(), 0);
  receiver_->SetFaults({{"hang_rate", 1}, {"hang_ms", 1500}});
  const int port = receiver_->port();
  const std::string body = Batch("truck-7", {1});
  const Clock::time_point hang_started = Clock::now();
  auto hung = std::async(std::launch::async, [port, body] {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(0, 500'000);
    httplib::Headers headers = {{"Idempotency-Key", "hung"}};
    return static_cast<bool>(client.Post(kPath, headers, body, "application/json"));
  });
  // Once the first request holds its thread, let the others through: they must all be answered
  // well before the hang ends (a receiver serving one request at a time would answer them after).
  bool holding = false;
  for (int i = 0; i < 100 && !holding; ++i) {
    holding = receiver_->Stats()["faults"]["hang"] == 1;
    if (!holding) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(holding) << receiver_->Stats().dump();
  receiver_->SetFaults({{"hang_rate", 0}});
  auto res = Post("normal", Batch("truck-8", {1}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_LT(Clock::now() - hang_started, std::chrono::milliseconds(1200));

  EXPECT_FALSE(hung.get()) << "the client should have given up after 500 ms";
  // After the hang the request is answered 500 without applying, to nobody.
  std::this_thread::sleep_until(hang_started + std::chrono::milliseconds(1700));
  EXPECT_EQ(Events("truck-7"), Applied{});
  EXPECT_EQ(receiver_->Stats()["events_applied"], 1);
}

TEST_F(ReceiverTest, AppliedKeysSurviveARestart) {
  ASSERT_GT(Start(), 0);
  ASSERT_EQ(Post("batch-1", Batch("truck-7", {1, 2}))->status, 200);
  std::optional<int> status = receiver_->Stop(SIGTERM);
  ASSERT_TRUE(status) << "the receiver did not stop within 10 s of SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << receiver_->log();

  ASSERT_GT(Start(), 0);
  auto res = Post("batch-1", Batch("truck-7", {1, 2}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body), json({{"duplicate", true}}));
  // The same events under a new key are still recognised as applied before.
  ASSERT_EQ(Post("batch-2", Batch("truck-7", {2}))->status, 200);
  json stats = receiver_->Stats();
  EXPECT_EQ(stats["applied_requests"], 2);
  EXPECT_EQ(stats["events_applied"], 3);
  EXPECT_EQ(stats["event_duplicates"], 1);
}

TEST_F(ReceiverTest, SigtermDuringAHangStopsPromptly) {
  ASSERT_GT(Start({"--hang-rate", "1", "--hang-ms", "30000"}), 0);
  const int port = receiver_->port();
  auto hung = std::async(std::launch::async, [port] {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(10, 0);
    httplib::Headers headers = {{"Idempotency-Key", "hung"}};
    auto res = client.Post(kPath, headers, Batch("truck-7", {1}), "application/json");
    return res ? res->status : -1;
  });
  bool holding = false;
  for (int i = 0; i < 100 && !holding; ++i) {
    holding = receiver_->Stats()["faults"]["hang"] == 1;
    if (!holding) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(holding);
  Clock::time_point t0 = Clock::now();
  std::optional<int> status = receiver_->Stop(SIGTERM);
  ASSERT_TRUE(status);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << receiver_->log();
  EXPECT_EQ(hung.get(), 500);
}

TEST_F(ReceiverTest, FaultSettingsOutOfRangeAreRefused) {
  ASSERT_GT(Start(), 0);
  httplib::Client client("127.0.0.1", receiver_->port());
  for (const char* patch :
       {R"({"fail_rate": 1.5})", R"({"hang_ms": -1})", R"({"typo_rate": 0})", R"([1])", "{"}) {
    auto res = client.Post("/_faults", patch, "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << patch << ": " << res->body;
  }
  EXPECT_EQ(receiver_->GetJson("/_faults")["fail_rate"], 0.0);
  EXPECT_EQ(receiver_->GetJson("/_faults")["hang_ms"], 30000);
}

}  // namespace
