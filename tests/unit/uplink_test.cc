// Uplink without a broker: option checks, and the reconnect loop paced by the injected clock.
// A refused loopback port and an unresolvable name stand in for a broker that is not there.
#include "waybill/sync/uplink.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "fakes/memory_outbox.h"
#include "support/mosquitto.h"
#include "waybill/hal/fake_clock.h"

namespace waybill::sync {
namespace {

UplinkOptions Plain(const std::string& uri) {
  UplinkOptions o;
  o.broker_uri = uri;
  o.device_id = "truck-1";
  o.firmware_version = "1.2.3";
  o.poll_ms = 10;
  o.backoff = {.base_ms = 1000, .cap_ms = 8000, .floor_ms = 100};
  return o;
}

// Polls `pred` every 5 ms for at most `timeout_ms` of real time.
template <typename P>
bool WaitFor(P pred, int timeout_ms = 10000) {
  for (int waited = 0; waited < timeout_ms; waited += 5) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

TEST(UplinkOptionsTest, DefaultsAreValid) {
  EXPECT_TRUE(Validate(Plain("tcp://127.0.0.1:1883")).ok());
}

TEST(UplinkOptionsTest, BadValuesAreRefusedWithTheFieldNamed) {
  struct Case {
    const char* field;
    void (*change)(UplinkOptions&);
  } cases[] = {
      {"broker URI", [](UplinkOptions& o) { o.broker_uri = "127.0.0.1:1883"; }},
      {"scheme", [](UplinkOptions& o) { o.broker_uri = "http://127.0.0.1:1883"; }},
      {"port", [](UplinkOptions& o) { o.broker_uri = "tcp://127.0.0.1:99999"; }},
      {"device_id", [](UplinkOptions& o) { o.device_id = "truck/1"; }},
      {"device_id", [](UplinkOptions& o) { o.device_id = ""; }},
      {"keepalive_s", [](UplinkOptions& o) { o.keepalive_s = 30; }},
      {"inflight_batches", [](UplinkOptions& o) { o.inflight_batches = 0; }},
      {"inflight_batches", [](UplinkOptions& o) { o.inflight_batches = 101; }},
      {"batch_max_events", [](UplinkOptions& o) { o.batch_max_events = 0; }},
      {"batch_max_events", [](UplinkOptions& o) { o.batch_max_events = kMaxBatchEvents + 1; }},
      {"ack_timeout_ms", [](UplinkOptions& o) { o.ack_timeout_ms = 10; }},
      {"cap_ms", [](UplinkOptions& o) { o.backoff.cap_ms = 10; }},
      {"ca_file", [](UplinkOptions& o) { o.broker_uri = "ssl://127.0.0.1:8883"; }},
      {"clear text", [](UplinkOptions& o) { o.tls.ca_file = "/etc/ssl/certs/ca.pem"; }},
  };
  for (const Case& c : cases) {
    UplinkOptions o = Plain("tcp://127.0.0.1:1883");
    c.change(o);
    Status s = Validate(o);
    EXPECT_TRUE(s.IsInvalidArgument()) << c.field << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s.ToString();
    hal::FakeClock clock;
    fakes::MemoryOutbox outbox;
    EXPECT_FALSE(Uplink::Create(outbox, clock, o).ok()) << c.field;
  }
}

TEST(UplinkOptionsTest, MissingTlsFilesAreNamed) {
  UplinkOptions o = Plain("ssl://127.0.0.1:8883");
  o.tls.ca_file = "/nonexistent/ca.crt";
  Status s = Validate(o);
  EXPECT_NE(s.message().find("/nonexistent/ca.crt"), std::string::npos) << s.ToString();
}

TEST(UplinkReconnectTest, RetriesArePacedByTheInjectedClockNeverAHotLoop) {
  int port = testing::FreeLoopbackPort();  // nothing listens there
  hal::FakeClock clock;
  fakes::MemoryOutbox outbox;
  auto uplink = Uplink::Create(outbox, clock, Plain("tcp://127.0.0.1:" + std::to_string(port)));
  ASSERT_TRUE(uplink.ok()) << uplink.status().ToString();
  ASSERT_TRUE((*uplink)->Start().ok());

  ASSERT_TRUE(WaitFor([&] { return !(*uplink)->Stats().last_connect_error.empty(); }));
  UplinkStats s = (*uplink)->Stats();
  EXPECT_EQ(s.connect_attempts, 1u);
  EXPECT_NE(s.last_connect_error.find("Connection refused"), std::string::npos)
      << s.last_connect_error;
  // First retry: full jitter in [floor, base].
  EXPECT_GE(s.next_attempt_in_ms, 100);
  EXPECT_LE(s.next_attempt_in_ms, 1000);

  // Fake time stands still: however long the real wait, no new attempt.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ((*uplink)->Stats().connect_attempts, 1u);

  // Each failure doubles the ceiling up to the cap; moving the fake clock past it lets exactly
  // the next attempt happen.
  for (uint64_t attempt = 2; attempt <= 6; ++attempt) {
    int64_t wait_ms = (*uplink)->Stats().next_attempt_in_ms;
    int64_t ceiling = std::min<int64_t>(8000, 1000LL << (attempt - 2));
    EXPECT_GE(wait_ms, 1) << "attempt " << attempt;
    EXPECT_LE(wait_ms, ceiling) << "attempt " << attempt;
    clock.Advance(wait_ms);
    ASSERT_TRUE(WaitFor([&] { return (*uplink)->Stats().connect_attempts == attempt; }))
        << "attempt " << attempt;
    ASSERT_TRUE(WaitFor([&] { return (*uplink)->Stats().next_attempt_in_ms > 0; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ((*uplink)->Stats().connect_attempts, attempt);
  }
  (*uplink)->Stop();
  EXPECT_FALSE((*uplink)->Stats().connected);
}

TEST(UplinkReconnectTest, AnUnresolvableBrokerIsReportedAsADnsFailure) {
  hal::FakeClock clock;
  fakes::MemoryOutbox outbox;
  auto uplink = Uplink::Create(outbox, clock, Plain("tcp://no-such-broker.invalid:1883"));
  ASSERT_TRUE(uplink.ok());
  ASSERT_TRUE((*uplink)->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return !(*uplink)->Stats().last_connect_error.empty(); }, 30000));
  std::string error = (*uplink)->Stats().last_connect_error;
  EXPECT_NE(error.find("DNS lookup of no-such-broker.invalid failed"), std::string::npos) << error;
  (*uplink)->Stop();
}

TEST(UplinkReconnectTest, StartTwiceIsRefusedAndStopIsIdempotent) {
  hal::FakeClock clock;
  fakes::MemoryOutbox outbox;
  auto uplink = Uplink::Create(
      outbox, clock, Plain("tcp://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort())));
  ASSERT_TRUE(uplink.ok());
  ASSERT_TRUE((*uplink)->Start().ok());
  EXPECT_EQ((*uplink)->Start().code(), Status::Code::kFailedPrecondition);
  (*uplink)->Stop();
  (*uplink)->Stop();
}

}  // namespace
}  // namespace waybill::sync
