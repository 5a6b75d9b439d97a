// waybillctl outbox stats/export against an outbox that is being written, as a fleet tech would
// run them on a live device: they must see committed events, and must not write the file.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "unit/outbox_test_util.h"
#include "waybill/sync/outbox.h"

namespace waybill::sync {
namespace {

using testing::Event;
using testing::FixBody;
using testing::TempDir;

struct CtlRun {
  int exit_code = -1;
  std::string out;
};

CtlRun Ctl(const std::string& args) {
  CtlRun run;
  std::string cmd = std::string(WAYBILLCTL) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return run;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) run.out.append(buf, n);
  int status = ::pclose(p);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

TEST(OutboxToolTest, StatsAndExportReadALiveOutbox) {
  TempDir dir;
  OutboxOptions o;
  o.path = dir.File("outbox.db");
  o.min_free_bytes = 0;
  auto box = Outbox::Open(o);
  ASSERT_TRUE(box.ok()) << box.status().ToString();
  uint64_t first_delivery = 0;
  for (uint32_t i = 0; i < 200; ++i) {
    auto r = (*box)->Append(Event(i % 20 == 0 ? EventClass::kDelivery : EventClass::kFix,
                                  FixBody(i), 1'714'564'800'000 + i * 1000));
    ASSERT_TRUE(r.ok());
    if (first_delivery == 0 && i == 0) first_delivery = *r;
  }
  // Keep writing while the tool reads.
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint32_t i = 0; i < 100'000 && !stop; ++i) {
      if (!(*box)->Append(Event(EventClass::kFix, FixBody(i))).ok()) break;
    }
  });

  CtlRun stats = Ctl("outbox stats --db " + o.path + " --json");
  ASSERT_EQ(stats.exit_code, 0) << stats.out;
  auto j = nlohmann::json::parse(stats.out);
  EXPECT_GE(j["events"].get<uint64_t>(), 200u);
  EXPECT_EQ(j["by_class"]["delivery"].get<uint64_t>(), 10u);
  EXPECT_GT(j["next_seq"].get<uint64_t>(), first_delivery);
  EXPECT_EQ(j["schema_version"].get<int>(), 1);

  CtlRun text = Ctl("outbox stats --db " + o.path);
  ASSERT_EQ(text.exit_code, 0) << text.out;
  EXPECT_NE(text.out.find("delivery 10"), std::string::npos) << text.out;

  CtlRun exported = Ctl("outbox export --db " + o.path + " --class delivery --limit 3");
  ASSERT_EQ(exported.exit_code, 0) << exported.out;
  auto lines = JsonLines(exported.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["seq"].get<uint64_t>(), first_delivery);
  EXPECT_EQ(lines[0]["class"], "delivery");
  EXPECT_EQ(lines[0]["ts"], "2024-05-01T12:00:00.000Z");
  EXPECT_EQ(lines[0]["ts_src"], "gnss");
  EXPECT_EQ(lines[0]["body_b64"].get<std::string>().size(), 24u);  // 18 bytes
  EXPECT_LT(lines[0]["seq"].get<uint64_t>(), lines[1]["seq"].get<uint64_t>());

  CtlRun all = Ctl("outbox export --db " + o.path + " --limit 150");
  ASSERT_EQ(all.exit_code, 0) << all.out;
  EXPECT_EQ(JsonLines(all.out).size(), 150u);

  stop = true;
  writer.join();
  // The writer was never disturbed: it still appends.
  EXPECT_TRUE((*box)->Append(Event(EventClass::kFix)).ok());
}

TEST(OutboxToolTest, ReadingAClosedOutboxLeavesItsFileUntouched) {
  TempDir dir;
  OutboxOptions o;
  o.path = dir.File("outbox.db");
  o.min_free_bytes = 0;
  {
    auto box = Outbox::Open(o);
    ASSERT_TRUE(box.ok());
    for (uint32_t i = 0; i < 50; ++i) ASSERT_TRUE((*box)->Append(Event(EventClass::kFix)).ok());
  }
  auto read_all = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  std::string before = read_all(o.path);
  ASSERT_FALSE(before.empty());
  CtlRun stats = Ctl("outbox stats --db " + o.path);
  ASSERT_EQ(stats.exit_code, 0) << stats.out;
  EXPECT_NE(stats.out.find("events      50"), std::string::npos) << stats.out;
  CtlRun exported = Ctl("outbox export --db " + o.path);
  ASSERT_EQ(exported.exit_code, 0) << exported.out;
  EXPECT_EQ(JsonLines(exported.out).size(), 50u);
  EXPECT_EQ(read_all(o.path), before) << "the read-only tool changed the database file";
  struct stat st {};
  if (::stat((o.path + "-wal").c_str(), &st) == 0) {
    EXPECT_EQ(st.st_size, 0) << "the read-only tool wrote a WAL";
  }
}

TEST(OutboxToolTest, ClearErrorsForAMissingFileAndABadClass) {
  TempDir dir;
  CtlRun missing = Ctl("outbox stats --db " + dir.File("nope.db"));
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.out.find("nope.db"), std::string::npos) << missing.out;
  CtlRun bad = Ctl("outbox export --db " + dir.File("nope.db") + " --class parcel");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.out.find("parcel"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace waybill::sync
