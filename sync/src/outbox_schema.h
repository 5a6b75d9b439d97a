// The outbox's on-disk schema and its migrations, shared by the writer (outbox.cc) and the
// read-only inspector (outbox_reader.cc). Private to waybill_sync.
//
// PRAGMA user_version is the schema version; kMigrations[i] takes a file from version i to i+1.
// A migration is appended, never edited: files in the field were made by the old text.
// PRAGMA application_id marks the file as a Waybill outbox so that we never migrate, or move
// aside, some other SQLite database that a misconfigured path points at.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace waybill::sync::internal {

// 'WBOX'.
inline constexpr int64_t kOutboxApplicationId = 0x57424F58;

// Version 1:
//  * fixes: the breadcrumbs, by far the most rows. seq is the rowid (INTEGER PRIMARY KEY): no
//    index besides the table's own b-tree, rows appended in key order fill leaf pages completely.
//    ts_src is hal::TimeSource as an integer.
//  * events: delivery, proof of delivery and health (cls = EventClass value). Kept apart from the
//    fixes so that claiming by priority scans this small table and never needs an index.
//  * meta: next_seq, the next sequence to hand out, updated in the same transaction as the rows.
inline constexpr std::array<std::string_view, 1> kMigrations = {
    R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES('next_seq', 1);
CREATE TABLE fixes(
  seq INTEGER PRIMARY KEY,
  ts_ms INTEGER NOT NULL,
  ts_src INTEGER NOT NULL,
  body BLOB NOT NULL);
CREATE TABLE events(
  seq INTEGER PRIMARY KEY,
  cls INTEGER NOT NULL,
  ts_ms INTEGER NOT NULL,
  ts_src INTEGER NOT NULL,
  body BLOB NOT NULL);
PRAGMA application_id = 1463963480;
)sql",
};

inline constexpr int64_t kSchemaVersion = static_cast<int64_t>(kMigrations.size());

}  // namespace waybill::sync::internal
