// waybillctl bridge: for bridge operators; reads and repairs the bridge's inbox file, also
// while waybill-bridge runs (SQLite WAL: readers see one snapshot; writers wait their turn).
//
//   waybillctl bridge stats       (--db PATH | --config bridge.toml) [--json]
//   waybillctl bridge dlq list    (--db ... | --config ...) [--limit N] [--before ID] [--json]
//   waybillctl bridge dlq show ID (--db ... | --config ...) [--json]
//   waybillctl bridge dlq replay ID (--db ... | --config ...)
//   waybillctl bridge dlq drop ID (--db ... | --config ...)
//
// replay: a refused request's events are queued again (a new batch, a new Idempotency-Key); a
// refused message or event is judged again with the configuration's limits and stored if it now
// passes (else it stays, and the reason is printed). drop removes the dead letter for good.
#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "format.h"
#include "waybill/bridge/config.h"
#include "waybill/bridge/inbox.h"
#include "waybill/bridge/ingest.h"
#include "waybill/bridge/proof_verifier.h"

namespace waybill::ctl {
namespace {

using nlohmann::json;

struct Target {
  std::string db;
  std::string config;
  bool json = false;
};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Fail(const std::string& what) {
  std::fprintf(stderr, "waybillctl bridge: %s\n", what.c_str());
  SetExitCode(1);
}

// The inbox file and the ingest limits (from the configuration when given).
bool Resolve(const Target& t, std::string* db, bridge::IngestOptions* limits) {
  if (!t.config.empty()) {
    auto cfg = bridge::LoadBridgeConfig(t.config);
    if (!cfg.ok()) {
      Fail(cfg.status().message());
      return false;
    }
    *db = (std::filesystem::path(cfg->data_dir) / "inbox.db").string();
    // A replayed proof is checked like a received one: against the bridge's device certificates.
    *limits = {cfg->min_event_time_ms, cfg->max_future_ms, bridge::MakeProofVerifier(cfg->proofs)};
  } else {
    *db = t.db;
  }
  if (db->empty()) {
    Fail("give --db PATH (the bridge's inbox.db) or --config bridge.toml");
    return false;
  }
  if (!std::filesystem::exists(*db)) {
    Fail("no inbox at " + *db);
    return false;
  }
  return true;
}

std::unique_ptr<bridge::Inbox> OpenInbox(const Target& t, bool write,
                                         bridge::IngestOptions* limits) {
  std::string db;
  bridge::IngestOptions unused;
  if (!Resolve(t, &db, limits != nullptr ? limits : &unused)) return nullptr;
  bridge::InboxOptions o;
  o.path = db;
  o.read_only = !write;
  auto inbox = bridge::Inbox::Open(o);
  if (!inbox.ok()) {
    Fail("cannot open " + db + ": " + inbox.status().ToString());
    return nullptr;
  }
  return std::move(*inbox);
}

json LetterJson(const bridge::DeadLetter& d, bool full) {
  json j = {{"id", d.id},
            {"kind", bridge::ToString(d.kind)},
            {"reason", d.reason},
            {"detail", d.detail},
            {"device", d.device},
            {"created", Iso8601(d.created_ms)},
            {"last_seen", Iso8601(d.last_seen_ms)},
            {"times_seen", d.times_seen},
            {"bytes", d.payload.size()}};
  if (!d.topic.empty()) j["topic"] = d.topic;
  if (d.seq) j["seq"] = *d.seq;
  if (d.route) j["route"] = bridge::ToString(*d.route);
  if (d.http_status != 0) j["http_status"] = d.http_status;
  if (full) {
    if (d.kind == bridge::DeadLetterKind::kForward) {
      j["request_body"] = d.payload;
      j["response"] = d.response;
    } else {
      j["payload_base64"] = Base64(d.payload);
    }
  }
  return j;
}

void Stats(const Target& t) {
  auto inbox = OpenInbox(t, false, nullptr);
  if (!inbox) return;
  auto c = inbox->Counts();
  if (!c.ok()) return Fail(c.status().ToString());
  int64_t now = NowMs();
  if (t.json) {
    json pending = json::object();
    for (int r = 0; r < bridge::kRouteCount; ++r) {
      pending[std::string(bridge::ToString(static_cast<bridge::Route>(r)))] = c->pending[r];
    }
    json j = {
        {"pending", pending},
        {"dead_events", c->dead_events},
        {"dead_letters", c->dead_letters},
        {"oldest_pending_age_s",
         c->oldest_pending_ms == 0 ? json(nullptr) : json((now - c->oldest_pending_ms) / 1000)}};
    std::cout << j.dump() << "\n";
    return;
  }
  std::printf("pending      ");
  for (int r = 0; r < bridge::kRouteCount; ++r) {
    std::printf("%s%s %lld (%lld in batches)", r ? ", " : "",
                std::string(bridge::ToString(static_cast<bridge::Route>(r))).c_str(),
                static_cast<long long>(c->pending[r]), static_cast<long long>(c->in_batches[r]));
  }
  std::printf("\n");
  if (c->oldest_pending_ms != 0) {
    std::printf("oldest      received %s (%lld s ago)\n", Iso8601(c->oldest_pending_ms).c_str(),
                static_cast<long long>((now - c->oldest_pending_ms) / 1000));
  }
  std::printf("dead        %lld dead letters, %lld events refused by the backend\n",
              static_cast<long long>(c->dead_letters), static_cast<long long>(c->dead_events));
}

void List(const Target& t, int limit, int64_t before) {
  auto inbox = OpenInbox(t, false, nullptr);
  if (!inbox) return;
  auto letters = inbox->ListDeadLetters(limit, before);
  if (!letters.ok()) return Fail(letters.status().ToString());
  if (t.json) {
    json out = json::array();
    for (const auto& d : *letters) out.push_back(LetterJson(d, false));
    std::cout << out.dump() << "\n";
    return;
  }
  if (letters->empty()) std::printf("no dead letters\n");
  for (const auto& d : *letters) {
    std::string what = d.device;
    if (d.seq) what += " seq " + std::to_string(*d.seq);
    if (d.route) what += " " + std::string(bridge::ToString(*d.route));
    std::printf("%6lld  %-8s %-16s %-28s x%-4lld %s  %s\n", static_cast<long long>(d.id),
                std::string(bridge::ToString(d.kind)).c_str(), d.reason.c_str(), what.c_str(),
                static_cast<long long>(d.times_seen), Iso8601(d.last_seen_ms).c_str(),
                d.detail.substr(0, 100).c_str());
  }
}

void Show(const Target& t, int64_t id) {
  auto inbox = OpenInbox(t, false, nullptr);
  if (!inbox) return;
  auto d = inbox->GetDeadLetter(id);
  if (!d.ok()) return Fail(d.status().message());
  json j = LetterJson(*d, true);
  std::cout << (t.json ? j.dump() : j.dump(2)) << "\n";
}

void Replay(const Target& t, int64_t id) {
  bridge::IngestOptions limits;
  auto inbox = OpenInbox(t, true, &limits);
  if (!inbox) return;
  auto d = inbox->GetDeadLetter(id);
  if (!d.ok()) return Fail(d.status().message());
  if (d->kind == bridge::DeadLetterKind::kForward) {
    auto moved = inbox->RequeueForwardDeadLetter(id);
    if (!moved.ok()) return Fail(moved.status().message());
    std::printf("dead letter %lld: %lld events queued again for %s\n", static_cast<long long>(id),
                static_cast<long long>(*moved), std::string(bridge::ToString(*d->route)).c_str());
    return;
  }
  bridge::IngestItem item;
  int64_t now = NowMs();
  if (d->kind == bridge::DeadLetterKind::kMessage) {
    item = bridge::Ingest(d->topic, d->payload, now, limits);
  } else {
    item.topic = d->topic;
    item.device = d->device;
    item.historical = d->historical;
    item.received_ms = now;
    item.proofs_verified = limits.proofs != nullptr;
    if (auto verdict = bridge::JudgeEvent(*d->event, now, limits, d->device)) {
      item.rejected.push_back(*verdict);
    } else {
      item.accepted.push_back(*d->event);
    }
  }
  auto stored = inbox->ReplaceDeadLetter(id, item);
  if (!stored.ok()) {
    return Fail("dead letter " + std::to_string(id) + " " + stored.status().message() +
                " (it stays in the dead-letter store)");
  }
  std::printf("dead letter %lld: %zu events stored (%zu already there); the bridge forwards them\n",
              static_cast<long long>(id), stored->inserted, stored->duplicates);
}

void Drop(const Target& t, int64_t id) {
  auto inbox = OpenInbox(t, true, nullptr);
  if (!inbox) return;
  if (Status s = inbox->DropDeadLetter(id); !s.ok()) return Fail(s.message());
  std::printf("dead letter %lld dropped\n", static_cast<long long>(id));
}

}  // namespace

void RegisterBridge(CLI::App& app) {
  auto* bridge_cmd = app.add_subcommand("bridge", "inspect the bridge's inbox and dead letters");
  bridge_cmd->require_subcommand(1);
  auto target = std::make_shared<Target>();
  auto add_target = [target](CLI::App* c) {
    c->add_option("--db", target->db, "the bridge's inbox.db");
    c->add_option("--config", target->config, "the bridge's configuration (finds inbox.db)");
  };
  auto* stats = bridge_cmd->add_subcommand("stats", "pending events per route, dead letters");
  add_target(stats);
  stats->add_flag("--json", target->json, "one JSON object");
  stats->callback([target] { Stats(*target); });

  auto* dlq = bridge_cmd->add_subcommand("dlq", "the dead-letter store");
  dlq->require_subcommand(1);
  auto limit = std::make_shared<int>(50);
  auto before = std::make_shared<int64_t>(0);
  auto id = std::make_shared<int64_t>(0);
  auto* list = dlq->add_subcommand("list", "dead letters, newest first");
  add_target(list);
  list->add_option("--limit", *limit, "at most this many")->capture_default_str();
  list->add_option("--before", *before, "only ids below this one (paging)");
  list->add_flag("--json", target->json, "a JSON array");
  list->callback([target, limit, before] { List(*target, *limit, *before); });
  auto* show = dlq->add_subcommand("show", "one dead letter with its raw bytes");
  add_target(show);
  show->add_option("id", *id, "dead letter id")->required();
  show->add_flag("--json", target->json, "compact JSON");
  show->callback([target, id] { Show(*target, *id); });
  auto* replay = dlq->add_subcommand("replay", "queue or judge a dead letter again");
  add_target(replay);
  replay->add_option("id", *id, "dead letter id")->required();
  replay->callback([target, id] { Replay(*target, *id); });
  auto* drop = dlq->add_subcommand("drop", "remove a dead letter for good");
  add_target(drop);
  drop->add_option("id", *id, "dead letter id")->required();
  drop->callback([target, id] { Drop(*target, *id); });
}

}  // namespace waybill::ctl
