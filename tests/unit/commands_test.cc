#include "waybill/firmware/commands.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace waybill::firmware {
namespace {

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("waybill-cmd-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    manifests_ = std::make_unique<ManifestStore>((dir_ / "manifest.json").string());
    RuntimeConfig cfg;
    cfg.quota_bytes = 256ull << 20;
    cfg.health_period_ms = 300000;
    cfg.keepalive_s = 300;
    CommandDispatcher::Hooks hooks;
    hooks.apply_config = [this](const RuntimeConfig& c) {
      ++applied_;
      last_applied_ = c;
    };
    hooks.status_json = [] { return std::string(R"({"gnss":{"mode":3}})"); };
    hooks.now_ms = [] { return int64_t{1764000000000}; };
    dispatcher_ = std::make_unique<CommandDispatcher>(
        *manifests_, (dir_ / "config-overrides.json").string(), cfg, hooks);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::unique_ptr<ManifestStore> manifests_;
  std::unique_ptr<CommandDispatcher> dispatcher_;
  int applied_ = 0;
  RuntimeConfig last_applied_;
};

TEST_F(CommandsTest, ManifestIsStoredForTheKiosk) {
  sync::Command cmd{"c-1", sync::Manifest{"m-7", "2026-11-24", {{"s1", "ORD-1", "Hauptstr. 1", 0, 0, 1}}}};
  sync::CommandResult r = dispatcher_->Handle(cmd);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.command_id, "c-1");
  EXPECT_EQ(r.message, "manifest m-7 stored: 1 stops");
  auto stored = manifests_->Get();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ((*stored)["stops"][0]["address"], "Hauptstr. 1");
}

TEST_F(CommandsTest, ConfigIsValidatedAsAWholeAndNamesTheField) {
  sync::ConfigUpdate bad;
  bad.min_distance_m = 50;
  bad.keepalive_s = 30;
  sync::CommandResult r = dispatcher_->Handle({"c-2", bad});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("config.keepalive_s = 30"), std::string::npos) << r.message;
  EXPECT_EQ(applied_, 0) << "nothing of a bad update is applied";
  EXPECT_FALSE(std::filesystem::exists(dir_ / "config-overrides.json"));
}

TEST_F(CommandsTest, ConfigIsAppliedKeptAcrossRestartsAndNotAppliedTwice) {
  sync::ConfigUpdate u;
  u.min_distance_m = 120;
  u.health_period_s = 60;
  sync::CommandResult r = dispatcher_->Handle({"c-3", u});
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.message, "applied");
  EXPECT_EQ(applied_, 1);
  EXPECT_EQ(last_applied_.sampling.min_distance_m, 120);
  EXPECT_EQ(last_applied_.health_period_ms, 60000);

  sync::ConfigUpdate q;
  q.quota_mb = 64;
  r = dispatcher_->Handle({"c-4", q});
  ASSERT_TRUE(r.ok);
  EXPECT_NE(r.message.find("next start"), std::string::npos);

  // Redelivered by the broker after a reconnect: same answer, not applied again.
  r = dispatcher_->Handle({"c-3", u});
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(applied_, 2);

  Result<sync::ConfigUpdate> saved =
      LoadConfigOverrides((dir_ / "config-overrides.json").string());
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->min_distance_m, 120u);
  EXPECT_EQ(saved->health_period_s, 60u);
  EXPECT_EQ(saved->quota_mb, 64u);
  EXPECT_FALSE(saved->keepalive_s.has_value());
}

TEST_F(CommandsTest, RequestStatusAnswersWithJson) {
  sync::CommandResult r = dispatcher_->Handle({"c-5", sync::RequestStatus{}});
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.status_json, R"({"gnss":{"mode":3}})");
}

TEST(ConfigOverrides, ACorruptFileIsAClearError) {
  std::string path = std::filesystem::temp_directory_path() /
                     ("waybill-overrides-" + std::to_string(getpid()) + ".json");
  {
    std::ofstream(path) << "{\"quota_mb\": \"lots\"}";
  }
  Result<sync::ConfigUpdate> r = LoadConfigOverrides(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("quota_mb must be a whole number"), std::string::npos);
  std::filesystem::remove(path);
  EXPECT_TRUE(LoadConfigOverrides(path).ok()) << "a missing file is an empty update";
}

}  // namespace
}  // namespace waybill::firmware
