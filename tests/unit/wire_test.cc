#include "waybill/sync/wire.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "waybill/hal/nmea.h"
#include "waybill/sync/events.h"

namespace waybill::sync {
namespace {

constexpr char kDevice[] = "truck-0042";

// ---- helpers ----

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out.push_back(kDigits[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(c) & 15]);
  }
  return out;
}

std::string Unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// A hand-written protobuf message, to forge what the encoder would never write.
class Pb {
 public:
  Pb& Varint(uint32_t field, uint64_t v) {
    Key(field, 0);
    Raw(v);
    return *this;
  }
  Pb& Bytes(uint32_t field, std::string_view b) {
    Key(field, 2);
    Raw(b.size());
    out_.append(b);
    return *this;
  }
  Pb& Signed(uint32_t field, std::initializer_list<int64_t> values) {
    Pb packed;
    for (int64_t v : values) {
      packed.Raw((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
    }
    return Bytes(field, packed.out_);
  }
  Pb& Unsigned(uint32_t field, std::initializer_list<uint64_t> values) {
    Pb packed;
    for (uint64_t v : values) packed.Raw(v);
    return Bytes(field, packed.out_);
  }
  Pb& Message(uint32_t field, const Pb& sub) { return Bytes(field, sub.out_); }
  const std::string& str() const { return out_; }

 private:
  void Key(uint32_t field, int wire_type) { Raw((uint64_t{field} << 3) | wire_type); }
  void Raw(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

// A batch header as the encoder writes it, for forged batches.
Pb Header() {
  Pb b;
  b.Varint(1, kSchemaVersion).Bytes(2, kDevice);
  return b;
}

hal::GnssFix Fix(int32_t lat_e7, int32_t lon_e7) {
  hal::GnssFix fix;
  fix.lat_e7 = lat_e7;
  fix.lon_e7 = lon_e7;
  fix.alt_cm = 51230;
  fix.speed_cmps = 1234;
  fix.course_cdeg = 9010;
  fix.hdop_c = 90;
  fix.sats = 9;
  fix.mode = hal::FixMode::k3D;
  fix.quality = 1;
  return fix;
}

StoredEvent FixEvent(uint64_t seq, int64_t ts_ms, const hal::GnssFix& fix,
                     hal::TimeSource src = hal::TimeSource::kGnss) {
  return {seq, EventClass::kFix, ts_ms, src, EncodeFix(fix)};
}

StoredEvent DeliveryEventAt(uint64_t seq, int64_t ts_ms) {
  DeliveryEvent d;
  d.stop_id = "stop-7";
  d.order_id = "ORD-20261124-0042";
  d.kind = DeliveryKind::kDelivered;
  d.items = 3;
  return {seq, EventClass::kDelivery, ts_ms, hal::TimeSource::kGnss, EncodeDelivery(d).value()};
}

StoredEvent HealthEventAt(uint64_t seq, int64_t ts_ms) {
  Health h;
  h.uptime_s = 3600;
  h.outbox_events = 12;
  h.ignition_on = true;
  return {seq, EventClass::kHealth, ts_ms, hal::TimeSource::kNtp, EncodeHealth(h)};
}

StoredEvent ProofEventAt(uint64_t seq, int64_t ts_ms) {
  ProofOfDelivery p;
  p.stop_id = "stop-7";
  p.recipient_name = "R. Receiver";
  p.signature_width = 300;
  p.signature_height = 100;
  p.signature = {{{10, 10}, {20, 15}, {30, 12}}, {{40, 40}}};
  return {seq, EventClass::kProofOfDelivery, ts_ms, hal::TimeSource::kGnss, EncodeProof(p).value()};
}

bool SameEvent(const StoredEvent& a, const StoredEvent& b) {
  return a.seq == b.seq && a.cls == b.cls && a.ts_ms == b.ts_ms && a.ts_src == b.ts_src &&
         a.body == b.body;
}

void ExpectSameEvents(std::vector<StoredEvent> sent, const std::vector<StoredEvent>& got) {
  std::sort(sent.begin(), sent.end(),
            [](const StoredEvent& a, const StoredEvent& b) { return a.seq < b.seq; });
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_TRUE(SameEvent(sent[i], got[i]))
        << "event " << i << " seq " << sent[i].seq << " came back as seq " << got[i].seq << " ts "
        << got[i].ts_ms << " body " << Hex(got[i].body) << ", sent ts " << sent[i].ts_ms << " body "
        << Hex(sent[i].body);
  }
}

DecodedBatch RoundTrip(const std::vector<StoredEvent>& events, bool historical = false) {
  Result<std::string> bytes = EncodeBatch(kDevice, historical, events);
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  if (!bytes.ok()) return {};
  Result<DecodedBatch> batch = DecodeBatch(*bytes);
  EXPECT_TRUE(batch.ok()) << batch.status().ToString();
  if (!batch.ok()) return {};
  EXPECT_EQ(batch->schema_version, kSchemaVersion);
  EXPECT_EQ(batch->device_id, kDevice);
  EXPECT_EQ(batch->historical, historical);
  ExpectSameEvents(events, batch->events);
  return std::move(batch).value();
}

std::vector<StoredEvent> DriveEvents(const std::string& file) {
  std::ifstream in(std::string(WAYBILL_TEST_DATA) + "/nmea/drives/" + file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  hal::NmeaOptions options;
  options.log_rejections = false;
  options.skip_comment_lines = true;
  options.min_plausible_utc_ms = 946684800000;  // recorded in 2009 and 2010
  hal::NmeaParser parser(options);
  parser.Feed(text.str());
  parser.Flush();
  std::vector<StoredEvent> events;
  int64_t ts_ms = 0;
  uint64_t seq = 77000;
  for (const hal::GnssFix& fix : parser.TakeFixes()) {
    ts_ms = fix.utc_ms ? *fix.utc_ms : ts_ms + 1000;
    events.push_back(FixEvent(seq++, ts_ms, fix));
  }
  return events;
}

// ---- topics ----

TEST(WireTopics, NameEveryTopicOfADevice) {
  EXPECT_EQ(TopicUp("truck-7"), "fleet/truck-7/up");
  EXPECT_EQ(TopicAck("truck-7"), "fleet/truck-7/ack");
  EXPECT_EQ(TopicCmd("truck-7"), "fleet/truck-7/cmd");
  EXPECT_EQ(TopicCmdResult("truck-7"), "fleet/truck-7/cmd/result");
  EXPECT_EQ(TopicStatus("truck-7"), "fleet/truck-7/status");
}

TEST(WireTopics, DeviceFromTopicAcceptsOnlyFleetTopicsWithAValidId) {
  EXPECT_EQ(DeviceFromTopic("fleet/truck-7/up"), "truck-7");
  EXPECT_EQ(DeviceFromTopic("fleet/A_b-9/cmd/result"), "A_b-9");
  EXPECT_EQ(DeviceFromTopic("fleet/x/status"), "x");
  EXPECT_EQ(DeviceFromTopic(TopicAck(std::string(64, 'a'))), std::string(64, 'a'));
  EXPECT_EQ(DeviceFromTopic(TopicAck(std::string(65, 'a'))), std::nullopt);
  EXPECT_EQ(DeviceFromTopic("fleet//up"), std::nullopt);
  EXPECT_EQ(DeviceFromTopic("fleet/truck 7/up"), std::nullopt);
  EXPECT_EQ(DeviceFromTopic("fleet/truck.7/up"), std::nullopt);
  EXPECT_EQ(DeviceFromTopic("fleet/+/up"), std::nullopt);
  EXPECT_EQ(DeviceFromTopic("fleet/truck-7/down"), std::nullopt);
  EXPECT_EQ(DeviceFromTopic("fleet/truck-7/up/x"), std::nullopt);
  EXPECT_EQ(DeviceFromTopic("fleet/truck-7"), std::nullopt);
  EXPECT_EQ(DeviceFromTopic("other/truck-7/up"), std::nullopt);
  EXPECT_EQ(DeviceFromTopic("$share/g/fleet/truck-7/up"), std::nullopt);
}

TEST(WireTopics, StatusPayloadIsJsonWithTheFirmwareEscaped) {
  EXPECT_EQ(StatusPayload(true, "0.3.1"), R"({"state":"online","firmware":"0.3.1"})");
  EXPECT_EQ(StatusPayload(false, "0.3.1"), R"({"state":"offline","firmware":"0.3.1"})");
  EXPECT_EQ(StatusPayload(true, "a\"b\\c\n"), R"({"state":"online","firmware":"a\"b\\c\u000a"})");
}

// ---- batches ----

TEST(WireBatch, RoundTripsEveryClassMixedAndUnsorted) {
  std::vector<StoredEvent> events = {
      FixEvent(105, 1'700'000'003'000, Fix(481366123, 115754980)),
      DeliveryEventAt(101, 1'700'000'000'500),
      FixEvent(102, 1'700'000'001'000, Fix(481366000, 115755100)),
      HealthEventAt(107, 1'700'000'004'000),
      ProofEventAt(100, 1'700'000'000'000),
      FixEvent(103, 1'700'000'002'000, Fix(481365800, 115755300)),
  };
  DecodedBatch batch = RoundTrip(events, /*historical=*/true);
  ASSERT_EQ(batch.events.size(), 6u);
  EXPECT_EQ(batch.events.front().cls, EventClass::kProofOfDelivery);
  // Every class decodes the same way, from the bodies.
  EXPECT_TRUE(DecodeProof(batch.events[0].body).ok());
  EXPECT_EQ(DecodeDelivery(batch.events[1].body)->items, 3u);
  EXPECT_EQ(DecodeFix(batch.events[2].body)->lat_e7, 481366000);
  EXPECT_TRUE(DecodeHealth(batch.events[5].body)->ignition_on);
}

TEST(WireBatch, RoundTripsFixesWithAnyMixOfOptionalFields) {
  std::vector<StoredEvent> events;
  for (int i = 0; i < 40; ++i) {
    hal::GnssFix fix;
    fix.lat_e7 = 481366123 + i * 37;
    fix.lon_e7 = 115754980 - i * i;
    if (i % 2) fix.alt_cm = 50000 + i;
    if (i % 3) fix.speed_cmps = static_cast<uint32_t>(i * 10);
    if (i % 5) fix.course_cdeg = static_cast<uint16_t>((35900 + i * 50) % 36000);
    if (i % 7) fix.hdop_c = static_cast<uint16_t>(100 + i);
    if (i % 4) fix.sats = static_cast<uint8_t>(i % 12);
    fix.mode = i % 6 ? hal::FixMode::k3D : hal::FixMode::k2D;
    fix.quality = static_cast<uint8_t>(i % 3);
    auto src = i < 20 ? hal::TimeSource::kMonotonic : hal::TimeSource::kGnssCorrected;
    events.push_back(FixEvent(5000 + i * 3 + i % 3, 1'700'000'000'000 + i * 997, fix, src));
  }
  RoundTrip(events);
}

TEST(WireBatch, RoundTripsTheEdgesOfTheGlobeTimeAndSequence) {
  hal::GnssFix south_west = Fix(-900000000, -1800000000);
  south_west.course_cdeg = 35999;
  hal::GnssFix north_east = Fix(900000000, 1800000000);
  north_east.course_cdeg = 0;
  north_east.alt_cm = -42000;
  hal::GnssFix bare;  // only a position: no optional field at all
  bare.lat_e7 = 1;
  bare.lon_e7 = -1;
  bare.mode = hal::FixMode::k2D;
  RoundTrip({FixEvent(UINT64_MAX - 3, 0, south_west), FixEvent(UINT64_MAX - 2, -5, north_east),
             FixEvent(UINT64_MAX - 1, INT64_MAX, bare), HealthEventAt(UINT64_MAX, INT64_MIN)});
  RoundTrip({FixEvent(0, 1'700'000'000'000, bare)});
  RoundTrip({HealthEventAt(9, 1)});
  RoundTrip({});
}

TEST(WireBatch, RoundTripsWholeDrivesAtAFewBytesPerFix) {
  for (const char* drive : {"munich-gps.nmea", "20100411_Geko_Regensburg.txt"}) {
    std::vector<StoredEvent> events = DriveEvents(drive);
    ASSERT_GT(events.size(), 500u) << drive;
    size_t bytes = 0;
    for (size_t i = 0; i < events.size(); i += 60) {
      std::vector<StoredEvent> part(
          events.begin() + static_cast<ptrdiff_t>(i),
          events.begin() + static_cast<ptrdiff_t>(std::min(events.size(), i + 60)));
      Result<std::string> payload = EncodeBatch(kDevice, false, part);
      ASSERT_TRUE(payload.ok()) << payload.status().ToString();
      bytes += payload->size();
      Result<DecodedBatch> back = DecodeBatch(*payload);
      ASSERT_TRUE(back.ok()) << drive << " batch at " << i << ": " << back.status().ToString();
      ExpectSameEvents(part, back->events);
    }
    // What the truck pays for: the payload alone stays well under 8 bytes per fix (the
    // benchmark adds the MQTT header).
    EXPECT_LT(static_cast<double>(bytes) / events.size(), 7.5) << drive;
  }
}

TEST(WireBatch, EncoderRefusesWhatItCannotSendFaithfully) {
  auto fix = FixEvent(1, 1000, Fix(1, 2));
  EXPECT_EQ(EncodeBatch("truck/7", false, {&fix, 1}).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_FALSE(EncodeBatch("", false, {&fix, 1}).ok());
  EXPECT_FALSE(EncodeBatch(std::string(65, 'a'), false, {&fix, 1}).ok());

  std::vector<StoredEvent> dup = {FixEvent(1, 1000, Fix(1, 2)), HealthEventAt(1, 1000)};
  Result<std::string> r = EncodeBatch(kDevice, false, dup);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("seq 1 appears twice"), std::string::npos)
      << r.status().message();

  StoredEvent garbage = fix;
  garbage.body = "\xff\xff";
  EXPECT_FALSE(EncodeBatch(kDevice, false, {&garbage, 1}).ok());
  StoredEvent unknown = HealthEventAt(2, 1000);
  unknown.cls = static_cast<EventClass>(9);
  EXPECT_FALSE(EncodeBatch(kDevice, false, {&unknown, 1}).ok());

  std::vector<StoredEvent> many;
  for (uint64_t i = 0; i <= kMaxBatchEvents; ++i) many.push_back(FixEvent(i, 1000, Fix(1, 2)));
  EXPECT_FALSE(EncodeBatch(kDevice, false, many).ok());

  // Bodies too big together: the caller sends fewer per batch.
  std::vector<StoredEvent> big;
  for (uint64_t i = 0; i < 5; ++i) {
    StoredEvent e = HealthEventAt(i, 1000);
    e.body = std::string(60 * 1024, 'x');
    big.push_back(e);
  }
  r = EncodeBatch(kDevice, false, big);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("send fewer"), std::string::npos) << r.status().message();
}

// The bytes on the wire for a fixed batch. A change of the encoding breaks this test: then the
// protocol changed, and docs/PROTOCOL.md, schema_version and every decoder must follow.
constexpr char kGoldenBatchHex[] =
    "0801120a747275636b2d30303432225708031204d00f00021a08e09b8e9b8c48d00f2201023205baefc81b2b"
    "3a07fecfa56eb90b214203bca0064a04a41320145203e48c015a02b40162031200016a01067201027a03088c"
    "8b8001d634880180029201031032032a2f08ea0710cc99c78d8624180120032a1f0a0673746f702d3712114f"
    "52442d32303236313132342d30303432180240032a2108ec0710a8a5c78d8624180220022a1108901c100c18"
    "0020002800300038014000";

std::vector<StoredEvent> GoldenBatchEvents() {
  hal::GnssFix a = Fix(481808483, 115651583);
  hal::GnssFix b = Fix(481808117, 115650850);
  b.speed_cmps = 1250;
  b.course_cdeg = 9080;
  hal::GnssFix c = Fix(481807750, 115650100);
  c.speed_cmps = 1260;
  c.sats = 8;
  return {FixEvent(1000, 1'238'589'622'000, a), FixEvent(1001, 1'238'589'623'000, b),
          DeliveryEventAt(1002, 1'238'589'623'500), FixEvent(1003, 1'238'589'624'000, c),
          HealthEventAt(1004, 1'238'589'625'000)};
}

TEST(WireGolden, BatchBytesAreFixed) {
  Result<std::string> bytes = EncodeBatch(kDevice, false, GoldenBatchEvents());
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(Hex(*bytes), kGoldenBatchHex);
  Result<DecodedBatch> back = DecodeBatch(Unhex(kGoldenBatchHex));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameEvents(GoldenBatchEvents(), back->events);
}

TEST(WireBatch, EveryTruncationIsRejectedOrAConsistentPrefix) {
  const std::string bytes = Unhex(kGoldenBatchHex);
  std::vector<StoredEvent> sent = GoldenBatchEvents();
  size_t accepted = 0;
  for (size_t n = 0; n < bytes.size(); ++n) {
    Result<DecodedBatch> r = DecodeBatch(std::string_view(bytes).substr(0, n));
    if (!r.ok()) {
      EXPECT_FALSE(r.status().message().empty());
      continue;
    }
    ++accepted;
    // A cut between two whole events: what is there is exactly what was sent.
    for (const StoredEvent& e : r->events) {
      EXPECT_TRUE(std::any_of(sent.begin(), sent.end(),
                              [&](const StoredEvent& s) { return SameEvent(s, e); }))
          << "prefix of " << n << " bytes invented seq " << e.seq;
    }
    EXPECT_LT(r->events.size(), sent.size());
  }
  EXPECT_LT(accepted, bytes.size() / 4) << "most cuts land inside a field and must fail";
}

TEST(WireBatch, DecoderRejectsOversizedAndVersionsItDoesNotKnow) {
  std::string huge(kMaxBatchBytes + 1, '\0');
  Result<DecodedBatch> r = DecodeBatch(huge);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("at most"), std::string::npos);

  r = DecodeBatch(Pb().Bytes(2, kDevice).str());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("schema_version"), std::string::npos);
  r = DecodeBatch(Pb().Varint(1, kSchemaVersion + 1).Bytes(2, kDevice).str());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("newer"), std::string::npos) << r.status().message();
  // Fields a newer encoder added are skipped.
  r = DecodeBatch(Header().Varint(99, 7).Bytes(98, "future").str());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST(WireBatch, DecoderRejectsForgedDeviceIds) {
  for (std::string id :
       std::vector<std::string>{"", "truck/7", "+", "#", "a b", std::string(65, 'x')}) {
    Result<DecodedBatch> r = DecodeBatch(Pb().Varint(1, 1).Bytes(2, id).str());
    EXPECT_FALSE(r.ok()) << "device id \"" << id << "\" accepted";
  }
  std::string golden = Unhex(kGoldenBatchHex);
  size_t at = golden.find(kDevice);
  ASSERT_NE(at, std::string::npos);
  golden[at + 5] = '/';
  Result<DecodedBatch> r = DecodeBatch(golden);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("device id"), std::string::npos) << r.status().message();
}

// Columns of a fixes message with count fixes, each column as given.
Result<DecodedBatch> DecodeColumns(const Pb& columns) {
  return DecodeBatch(Header().Message(4, columns).str());
}

TEST(WireBatch, DecoderRejectsInconsistentColumns) {
  // Three fixes, all mandatory columns right: decodes.
  auto good = [] {
    Pb c;
    c.Varint(1, 3).Signed(2, {10, 0, 0}).Signed(3, {1000, 1000, 0}).Signed(4, {1, 0, 0});
    return c;
  };
  Pb ok = good();
  ok.Signed(6, {100, 1, 0}).Signed(7, {200, 2, 0});
  ASSERT_TRUE(DecodeColumns(ok).ok()) << DecodeColumns(ok).status().ToString();

  struct Case {
    const char* what;
    Pb columns;
    const char* reason;
  };
  std::vector<Case> cases;
  {
    Pb c = good();
    c.Signed(6, {100, 1}).Signed(7, {200, 2, 0});
    cases.push_back({"lat has a value too few", c, "column lat has 2 values for 3"});
  }
  {
    Pb c;
    c.Varint(1, 3).Signed(2, {10, -2, 0}).Signed(3, {1000, 1000, 0}).Signed(4, {1, 0, 0});
    c.Signed(6, {100, 1, 0}).Signed(7, {200, 2, 0});
    cases.push_back({"seq goes back", c, "not strictly increasing"});
  }
  {
    Pb c = good();
    c.Signed(6, {100, 1, 0}).Signed(7, {200, 2, 0}).Signed(8, {5, 5, 5, 5});
    cases.push_back({"alt longer than the batch", c, "column alt has 4 values"});
  }
  {
    Pb c = good();
    c.Signed(5, {1, 0, 0}).Signed(6, {100, 1, 0}).Signed(7, {200, 2, 0}).Signed(8, {5});
    cases.push_back({"alt shorter than its presence says", c, "fixes that have the field"});
  }
  {
    Pb c = good();
    c.Signed(6, {900000001, 0, 0}).Signed(7, {200, 2, 0});
    cases.push_back({"latitude past the pole", c, "lat_e7"});
  }
  {
    Pb c;
    c.Varint(1, 3).Signed(2, {10, 0, 0}).Signed(3, {1000, 1000, 0}).Signed(4, {9, 0, 0});
    c.Signed(6, {100, 1, 0}).Signed(7, {200, 2, 0});
    cases.push_back({"unknown time source", c, "time source"});
  }
  {
    Pb c = good();
    c.Signed(6, {100, 1, 0}).Signed(7, {200, 2, 0}).Signed(10, {36000});
    c.Signed(5, {4, 0, 0});
    cases.push_back({"course past the circle", c, "course"});
  }
  {
    Pb c = good();
    c.Signed(6, {100, 0, 7}).Signed(7, {200, 2, 0}).Varint(16, 1u << 4);
    cases.push_back({"a run of zeros past the column", c, "zeros"});
  }
  {
    Pb c = good();
    c.Signed(6, {100}).Signed(7, {200, 2, 0}).Varint(17, 1u << 4).Bytes(15, std::string("\x09", 1));
    cases.push_back({"bit-packed bytes too few", c, "bit-packed"});
  }
  {
    Pb c = good();
    c.Signed(6, {100, 1, 0}).Signed(7, {200, 2, 0}).Bytes(15, std::string("\x00", 1));
    cases.push_back({"bit-packed bytes left over", c, "left over"});
  }
  {
    Pb c = good();
    c.Signed(6, {100, 1, 0}).Signed(7, {200, 2, 0}).Unsigned(18, {1u << 4, 0, 3});
    cases.push_back({"scale of zero", c, "scale"});
  }
  {
    Pb c = good();
    c.Signed(6, {100, 1, 0}).Signed(7, {200, 2, 0}).Unsigned(18, {1u << 0, 10, 1});
    cases.push_back({"scale on the seq column", c, "scale"});
  }
  {
    Pb c = good();
    c.Signed(6, {100, 1, 0}).Signed(7, {200, 2, 0}).Signed(10, {9000}).Signed(5, {4, 0, 0});
    c.Unsigned(18, {1u << 8, 7, 1});
    cases.push_back({"course scale not dividing the circle", c, "36000"});
  }
  {
    Pb c;
    c.Varint(1, 5000).Signed(2, {1});
    cases.push_back({"more fixes than a batch holds", c, "at most"});
  }
  for (const Case& c : cases) {
    Result<DecodedBatch> r = DecodeColumns(c.columns);
    ASSERT_FALSE(r.ok()) << c.what << " was accepted";
    EXPECT_NE(r.status().message().find(c.reason), std::string::npos)
        << c.what << ": " << r.status().message();
  }
}

TEST(WireBatch, DecoderRejectsBadEnvelopes) {
  auto with = [](const Pb& envelope) { return DecodeBatch(Header().Message(5, envelope).str()); };
  Pb ok;
  ok.Varint(1, 7).Varint(2, 1000).Varint(3, 1).Varint(4, 2).Bytes(5, "");
  EXPECT_TRUE(with(ok).ok()) << with(ok).status().ToString();

  Pb no_body;
  no_body.Varint(1, 7).Varint(2, 1000).Varint(3, 1).Varint(4, 2);
  EXPECT_NE(with(no_body).status().message().find("no body"), std::string::npos);
  Pb unknown_class;
  unknown_class.Varint(1, 7).Varint(4, 9).Bytes(5, "x");
  EXPECT_NE(with(unknown_class).status().message().find("unknown event class 9"),
            std::string::npos);
  Pb fix_in_envelope;
  fix_in_envelope.Varint(1, 7).Varint(4, 1).Bytes(5, "x");
  EXPECT_NE(with(fix_in_envelope).status().message().find("columns"), std::string::npos);
  Pb bad_source;
  bad_source.Varint(1, 7).Varint(3, 6).Varint(4, 2).Bytes(5, "x");
  EXPECT_NE(with(bad_source).status().message().find("time source"), std::string::npos);
  Pb no_seq;
  no_seq.Varint(4, 2).Bytes(5, "x");
  EXPECT_NE(with(no_seq).status().message().find("without a seq"), std::string::npos);

  std::string twice = Header().Message(5, ok).Message(5, ok).str();
  Result<DecodedBatch> r = DecodeBatch(twice);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("seq 7 appears twice"), std::string::npos);
}

// ---- acks ----

constexpr char kGoldenAckHex[] = "0a0a747275636b2d303034321205e807040501";

TEST(WireAck, RoundTripsAsSortedMergedRanges) {
  std::vector<uint64_t> seqs = {12, 10, 11, 11, 40, 13, 41, 7, UINT64_MAX - 1, UINT64_MAX};
  std::string bytes = EncodeAck(kDevice, seqs);
  std::string device;
  Result<std::vector<uint64_t>> back = DecodeAck(bytes, &device);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(device, kDevice);
  EXPECT_EQ(*back, (std::vector<uint64_t>{7, 10, 11, 12, 13, 40, 41, UINT64_MAX - 1, UINT64_MAX}));
  EXPECT_TRUE(DecodeAck(EncodeAck(kDevice, {}), nullptr)->empty());
}

TEST(WireAck, ABatchOfSixtyIsAckedInAFewBytes) {
  std::vector<uint64_t> seqs(60);
  for (size_t i = 0; i < seqs.size(); ++i) seqs[i] = 1'000'000 + i;
  EXPECT_LE(EncodeAck(kDevice, seqs).size(), 2 + sizeof(kDevice) + 8);
}

TEST(WireAck, KeepsTheLowestSequencesWithinItsBounds) {
  std::vector<uint64_t> seqs;
  for (uint64_t i = 0; i < 3 * kMaxAckRanges; ++i) seqs.push_back(i * 2);  // no two adjacent
  Result<std::vector<uint64_t>> back = DecodeAck(EncodeAck(kDevice, seqs), nullptr);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), kMaxAckRanges);
  EXPECT_EQ(back->back(), (kMaxAckRanges - 1) * 2);
}

TEST(WireGolden, AckBytesAreFixed) {
  std::vector<uint64_t> seqs = {1000, 1001, 1002, 1003, 1004, 1010, 1011};
  EXPECT_EQ(Hex(EncodeAck(kDevice, seqs)), kGoldenAckHex);
  EXPECT_EQ(*DecodeAck(Unhex(kGoldenAckHex), nullptr), seqs);
}

TEST(WireAck, DecoderRejectsForgedAndHugeAcks) {
  auto reason = [](const std::string& bytes) {
    Result<std::vector<uint64_t>> r = DecodeAck(bytes, nullptr);
    return r.ok() ? std::string("accepted") : r.status().message();
  };
  EXPECT_NE(reason(Pb().Bytes(1, "a/b").Unsigned(2, {1, 0}).str()).find("device id"),
            std::string::npos);
  EXPECT_NE(reason(Pb().Bytes(1, kDevice).Unsigned(2, {1, 0, 5}).str()).find("pairs"),
            std::string::npos);
  EXPECT_NE(reason(Pb().Bytes(1, kDevice).Unsigned(2, {1, 1ull << 40}).str()).find("more than"),
            std::string::npos);
  EXPECT_NE(reason(Pb().Bytes(1, kDevice).Unsigned(2, {UINT64_MAX, 5}).str()).find("2^64"),
            std::string::npos);
  EXPECT_NE(reason(std::string(kMaxAckBytes + 1, '\0')).find("at most"), std::string::npos);
  const std::string golden = Unhex(kGoldenAckHex);
  for (size_t n = 0; n < golden.size(); ++n) {
    Result<std::vector<uint64_t>> r = DecodeAck(std::string_view(golden).substr(0, n), nullptr);
    if (r.ok()) {
      EXPECT_LT(r->size(), 7u) << "prefix of " << n << " bytes";
    }
  }
}

// ---- commands ----

Command ManifestCommand() {
  Manifest m;
  m.manifest_id = "mf-2026-11-24-t42";
  m.date = "2026-11-24";
  m.stops = {
      {"stop-1", "ORD-1", "Petuelring 130, 80809 Munich", 1'795'510'800'000, 1'795'518'000'000, 1},
      {"stop-2", "", "", 0, 0, 2}};
  return {"cmd-1", m};
}

constexpr char kGoldenCommandHex[] =
    "08011205636d642d311a6a0a116d662d323032362d31312d32342d743432120a323032362d31312d32341a3d"
    "0a0673746f702d3112054f52442d311a1c50657475656c72696e67203133302c203830383039204d756e6963"
    "6820809da2e6a0342880d7d9e9a03430011a0a0a0673746f702d323002";

TEST(WireCommand, RoundTripsEveryKind) {
  ConfigUpdate config;
  config.min_period_ms = 1000;
  config.min_distance_m = 250;
  config.keepalive_s = 30;
  config.quota_mb = 0;  // set, to zero: not the same as unset
  std::vector<Command> commands = {ManifestCommand(),
                                   {"cmd-2", config},
                                   {"cmd-3", RequestStatus{}},
                                   {"cmd-4", Manifest{"mf-empty", "2026-01-01", {}}}};
  for (const Command& c : commands) {
    Result<std::string> bytes = EncodeCommand(c);
    ASSERT_TRUE(bytes.ok()) << c.command_id << ": " << bytes.status().ToString();
    Result<Command> back = DecodeCommand(*bytes);
    ASSERT_TRUE(back.ok()) << c.command_id << ": " << back.status().ToString();
    EXPECT_EQ(*back, c) << c.command_id;
  }
}

TEST(WireCommand, AFullManifestFits) {
  Manifest m{"mf-full", "2026-11-24", {}};
  for (size_t i = 0; i < kMaxManifestStops; ++i) {
    m.stops.push_back({std::string(kMaxIdBytes, 's'), std::string(kMaxIdBytes, 'o'),
                       std::string(kMaxAddressBytes, 'a'), 1, 2, static_cast<uint32_t>(i)});
  }
  Command c{std::string(kMaxIdBytes, 'c'), m};
  Result<std::string> bytes = EncodeCommand(c);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_LE(bytes->size(), kMaxCommandBytes);
  Result<Command> back = DecodeCommand(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, c);
}

TEST(WireCommand, EncoderNamesTheBadField) {
  auto reason = [](Command c) {
    Result<std::string> r = EncodeCommand(c);
    return r.ok() ? std::string("accepted") : r.status().message();
  };
  Command c = ManifestCommand();
  c.command_id = "";
  EXPECT_EQ(reason(c), "command_id: required");
  c = ManifestCommand();
  std::get<Manifest>(c.body).date = "24.11.2026";
  EXPECT_NE(reason(c).find("date"), std::string::npos);
  c = ManifestCommand();
  std::get<Manifest>(c.body).stops[1].address = std::string(kMaxAddressBytes + 1, 'a');
  EXPECT_EQ(reason(c), "stops[1].address: 257 bytes, at most 256");
  c = ManifestCommand();
  std::get<Manifest>(c.body).stops[0].window_end_ms = 5;
  EXPECT_NE(reason(c).find("stops[0].window: ends at 5 ms"), std::string::npos) << reason(c);
  c = ManifestCommand();
  std::get<Manifest>(c.body).stops.resize(kMaxManifestStops + 1, {"s", "", "", 0, 0, 0});
  EXPECT_EQ(reason(c), "stops: 201, at most 200");
  c = ManifestCommand();
  std::get<Manifest>(c.body).stops[0].stop_id = std::string("a\0b", 3);
  EXPECT_NE(reason(c).find("NUL"), std::string::npos);
}

TEST(WireGolden, CommandBytesAreFixed) {
  Result<std::string> bytes = EncodeCommand(ManifestCommand());
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(Hex(*bytes), kGoldenCommandHex);
  Result<Command> back = DecodeCommand(Unhex(kGoldenCommandHex));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, ManifestCommand());
}

TEST(WireCommand, DecoderRefusesNewerMajorsUnknownKindsAndBrokenInput) {
  Result<Command> r = DecodeCommand(Pb().Varint(1, kSchemaVersion + 1).Bytes(2, "c9").str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("c9"), std::string::npos) << r.status().message();

  r = DecodeCommand(Pb().Varint(1, kSchemaVersion).Bytes(2, "c9").Message(40, Pb()).str());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("newer command type"), std::string::npos);
  r = DecodeCommand(Pb().Bytes(2, "c9").Message(5, Pb()).str());
  EXPECT_NE(r.status().message().find("schema_version"), std::string::npos);

  Pb many;
  many.Varint(1, 1).Bytes(2, "mf");
  Pb manifest;
  manifest.Bytes(1, "mf").Bytes(2, "2026-11-24");
  for (size_t i = 0; i <= kMaxManifestStops; ++i) manifest.Message(3, Pb().Bytes(1, "s"));
  r = DecodeCommand(Pb().Varint(1, 1).Bytes(2, "c1").Message(3, manifest).str());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("more than 200 stops"), std::string::npos)
      << r.status().message();

  EXPECT_FALSE(DecodeCommand(std::string(kMaxCommandBytes + 1, '\0')).ok());
  const std::string golden = Unhex(kGoldenCommandHex);
  for (size_t n = 0; n < golden.size(); ++n) {
    Result<Command> cut = DecodeCommand(std::string_view(golden).substr(0, n));
    if (cut.ok()) {
      EXPECT_NE(*cut, ManifestCommand()) << "prefix of " << n << " bytes";
    }
  }
}

TEST(WireCommandResult, RoundTripsAndBoundsItsStrings) {
  CommandResult result{"cmd-3", true, "ok", R"({"outbox_events":12})"};
  Result<std::string> bytes = EncodeCommandResult(result);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(*DecodeCommandResult(*bytes), result);
  CommandResult failed{"cmd-4", false, "manifest refused: date 2026-13-01 is not a date", ""};
  EXPECT_EQ(*DecodeCommandResult(*EncodeCommandResult(failed)), failed);

  result.message = std::string(kMaxResultMessageBytes + 1, 'm');
  EXPECT_EQ(EncodeCommandResult(result).status().message(), "message: 513 bytes, at most 512");
  result.message.clear();
  result.status_json = std::string(kMaxStatusJsonBytes + 1, ' ');
  EXPECT_FALSE(EncodeCommandResult(result).ok());
  EXPECT_FALSE(DecodeCommandResult(Pb().Bytes(3, std::string(600, 'm')).str()).ok());
}

}  // namespace
}  // namespace waybill::sync

namespace waybill::sync {
namespace {

TEST(CommandPeek, ABrokenBodyStillHasAnIdToAnswer) {
  Command cmd{"cmd-broken-1", RequestStatus{}};
  Result<std::string> bytes = EncodeCommand(cmd);
  ASSERT_TRUE(bytes.ok());
  // A manifest body (field 3) whose content is not a message.
  std::string broken = *bytes + std::string("\x1a\x03\xff\xff\xff", 5);
  EXPECT_FALSE(DecodeCommand(broken).ok());
  EXPECT_EQ(PeekCommandId(broken), "cmd-broken-1");
  EXPECT_EQ(PeekCommandId(*bytes), "cmd-broken-1");
  EXPECT_EQ(PeekCommandId(std::string("\xff\xff", 2)), "");
  EXPECT_EQ(PeekCommandId(""), "");
}

}  // namespace
}  // namespace waybill::sync
