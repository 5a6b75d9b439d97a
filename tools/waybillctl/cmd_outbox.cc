// waybillctl outbox: inspect a device's outbox, safely while waybilld runs.
//
//   waybillctl outbox stats  --db PATH [--json]
//   waybillctl outbox export --db PATH [--class fix|delivery|pod|health] [--limit N]
//                            [--data-key FILE]
//
// Both read through OutboxReader: a read-only SQLite connection that never writes and never
// checkpoints, reading one WAL snapshot beside the running writer. Deliveries and proofs are
// sealed at rest (docs/PERSONAL-DATA.md): export shows them as "sealed" with the key id that
// sealed them, and opens them only when given the data key (which never gets created here).
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "commands.h"
#include "format.h"
#include "waybill/hal/clock.h"
#include "waybill/sync/data_key.h"
#include "waybill/sync/outbox_reader.h"

namespace waybill::ctl {
namespace {

using sync::EventClass;

std::string Size(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

std::optional<EventClass> ParseClass(const std::string& name) {
  for (auto cls : {EventClass::kFix, EventClass::kHealth, EventClass::kDelivery,
                   EventClass::kProofOfDelivery}) {
    if (name == sync::ToString(cls)) return cls;
  }
  return std::nullopt;
}

std::unique_ptr<sync::OutboxReader> OpenOrReport(const std::string& db) {
  auto reader = sync::OutboxReader::Open(db);
  if (!reader.ok()) {
    std::fprintf(stderr, "waybillctl outbox: cannot read %s: %s\n", db.c_str(),
                 reader.status().ToString().c_str());
    SetExitCode(1);
    return nullptr;
  }
  return std::move(reader).value();
}

void RunStats(const std::string& db, bool json) {
  auto reader = OpenOrReport(db);
  if (!reader) return;
  auto summary = reader->Summary();
  if (!summary.ok()) {
    std::fprintf(stderr, "waybillctl outbox stats: %s\n", summary.status().ToString().c_str());
    SetExitCode(1);
    return;
  }
  const sync::OutboxSummary& s = *summary;
  auto count = [&s](EventClass c) { return s.by_class[static_cast<int>(c)]; };
  if (json) {
    nlohmann::json j;
    j["db"] = db;
    j["schema_version"] = s.schema_version;
    j["events"] = s.events;
    j["by_class"] = {{"fix", count(EventClass::kFix)},
                     {"health", count(EventClass::kHealth)},
                     {"delivery", count(EventClass::kDelivery)},
                     {"pod", count(EventClass::kProofOfDelivery)}};
    j["live_bytes"] = s.live_bytes;
    j["file_bytes"] = s.file_bytes;
    j["wal_bytes"] = s.wal_bytes;
    j["page_size"] = s.page_size;
    j["next_seq"] = s.next_seq;
    j["lease"] = s.lease ? nlohmann::json(*s.lease) : nlohmann::json(nullptr);
    j["min_seq"] = s.min_seq ? nlohmann::json(*s.min_seq) : nlohmann::json(nullptr);
    j["max_seq"] = s.max_seq ? nlohmann::json(*s.max_seq) : nlohmann::json(nullptr);
    j["oldest_ts"] = s.oldest_ts_ms ? nlohmann::json(Iso8601(*s.oldest_ts_ms)) : nullptr;
    j["newest_ts"] = s.newest_ts_ms ? nlohmann::json(Iso8601(*s.newest_ts_ms)) : nullptr;
    std::cout << j.dump() << "\n";
    return;
  }
  std::printf("outbox      %s (schema v%lld)\n", db.c_str(),
              static_cast<long long>(s.schema_version));
  std::printf("events      %llu (fix %llu, health %llu, delivery %llu, pod %llu)\n",
              static_cast<unsigned long long>(s.events),
              static_cast<unsigned long long>(count(EventClass::kFix)),
              static_cast<unsigned long long>(count(EventClass::kHealth)),
              static_cast<unsigned long long>(count(EventClass::kDelivery)),
              static_cast<unsigned long long>(count(EventClass::kProofOfDelivery)));
  std::printf("storage     %s live of a %s file (page size %llu), WAL %s\n",
              Size(s.live_bytes).c_str(), Size(s.file_bytes).c_str(),
              static_cast<unsigned long long>(s.page_size), Size(s.wal_bytes).c_str());
  std::printf("sequences   ");
  if (s.min_seq) {
    std::printf("%llu..%llu stored, ", static_cast<unsigned long long>(*s.min_seq),
                static_cast<unsigned long long>(*s.max_seq));
  } else {
    std::printf("none stored, ");
  }
  std::printf("next %llu, lease %s\n", static_cast<unsigned long long>(s.next_seq),
              s.lease ? std::to_string(*s.lease).c_str() : "unreadable");
  if (s.oldest_ts_ms) {
    std::printf("time span   %s .. %s\n", Iso8601(*s.oldest_ts_ms).c_str(),
                Iso8601(*s.newest_ts_ms).c_str());
  }
}

void RunExport(const std::string& db, const std::string& cls_name, uint64_t limit,
               const std::string& data_key_file) {
  std::optional<EventClass> cls;
  if (!cls_name.empty()) {
    cls = ParseClass(cls_name);
    if (!cls) {
      std::fprintf(stderr,
                   "waybillctl outbox export: unknown class '%s' (fix, health, delivery, "
                   "pod)\n",
                   cls_name.c_str());
      SetExitCode(2);
      return;
    }
  }
  std::unique_ptr<sync::DataKey> key;
  if (!data_key_file.empty()) {
    sync::DataKeyOptions load_only;
    load_only.create_if_missing = false;
    auto loaded = sync::DataKey::LoadOrCreate(data_key_file, load_only);
    if (!loaded.ok()) {
      std::fprintf(stderr, "waybillctl outbox export: %s\n", loaded.status().ToString().c_str());
      SetExitCode(1);
      return;
    }
    key = std::move(loaded).value();
  }
  auto reader = OpenOrReport(db);
  if (!reader) return;
  uint64_t unopened = 0;
  Status s = reader->ForEach(cls, limit, [&](const sync::StoredEvent& e) {
    nlohmann::json j;
    j["seq"] = e.seq;
    j["class"] = sync::ToString(e.cls);
    j["ts"] = Iso8601(e.ts_ms);
    j["ts_ms"] = e.ts_ms;
    j["ts_src"] = std::string(hal::ToString(e.ts_src));
    if (sync::IsSealed(e.body)) {
      // Never the sealed bytes: without the key they are noise, with it the plaintext is shown.
      j["sealed"] = sync::SealedKeyIdHex(e.body);
      if (key) {
        auto opened = sync::OpenStoredBody(key.get(), e.cls, e.body);
        if (opened.ok()) {
          j["body_b64"] = Base64(*opened);
        } else {
          j["open_error"] = opened.status().message();
          ++unopened;
        }
      }
    } else {
      j["body_b64"] = Base64(e.body);
    }
    std::cout << j.dump() << "\n";
    return static_cast<bool>(std::cout);
  });
  if (unopened > 0) {
    std::fprintf(stderr,
                 "waybillctl outbox export: %llu sealed events did not open with %s (see "
                 "open_error)\n",
                 static_cast<unsigned long long>(unopened), data_key_file.c_str());
    SetExitCode(1);
  }
  std::cout.flush();
  if (!s.ok()) {
    std::fprintf(stderr, "waybillctl outbox export: %s\n", s.ToString().c_str());
    SetExitCode(1);
  }
}

}  // namespace

void RegisterOutbox(CLI::App& app) {
  CLI::App* outbox = app.add_subcommand("outbox",
                                        "Inspect a device's outbox (read-only, safe "
                                        "while waybilld runs)");
  outbox->require_subcommand(1);

  struct StatsArgs {
    std::string db;
    bool json = false;
  };
  auto stats_args = std::make_shared<StatsArgs>();
  CLI::App* stats = outbox->add_subcommand("stats", "Counts, sizes and sequence state");
  stats->add_option("--db", stats_args->db, "Outbox file, e.g. /var/lib/waybill/outbox.db")
      ->required();
  stats->add_flag("--json", stats_args->json, "One JSON object instead of text");
  stats->callback([stats_args] { RunStats(stats_args->db, stats_args->json); });

  struct ExportArgs {
    std::string db;
    std::string cls;
    uint64_t limit = 0;
    std::string data_key;
  };
  auto export_args = std::make_shared<ExportArgs>();
  CLI::App* exp = outbox->add_subcommand(
      "export",
      "Stored events as JSON lines: seq, class, ts (ISO 8601), ts_src, body_b64; sealed "
      "deliveries and proofs show \"sealed\": <key id> and a body only with --data-key");
  exp->add_option("--db", export_args->db, "Outbox file")->required();
  exp->add_option("--class", export_args->cls, "Only this class")
      ->check(CLI::IsMember({"fix", "health", "delivery", "pod"}));
  exp->add_option("--limit", export_args->limit, "At most N events (default: all)");
  exp->add_option("--data-key", export_args->data_key,
                  "The unit's data key ([storage] data_key_file) to open sealed bodies");
  exp->callback([export_args] {
    RunExport(export_args->db, export_args->cls, export_args->limit, export_args->data_key);
  });
}

}  // namespace waybill::ctl
