// A fault-injecting SQLite VFS for tests: wraps the default (unix) VFS and, while a fault is set,
// makes the main database and WAL files fail the way real storage does: seeded one-in-N write
// errors (optionally after writing a prefix: a short write), SQLITE_FULL once the files have grown
// by a byte budget (what fits is written first, as a full disk does), and fsync failures (the data
// stays in the page cache unsynced, as after a failed fsync on Linux).
//
// Registered under its own name, never as the default; open with OutboxOptions::vfs_name =
// FaultVfs::Register(). The fault settings are process-wide; Set and Clear are thread-safe.
#pragma once

#include <cstdint>

namespace waybill::testing {

struct FaultVfsConfig {
  uint64_t seed = 1;
  uint32_t write_error_one_in = 0;  // 0 = off: each write fails with probability 1/N
  bool short_writes = false;        // a failing write first writes a random prefix
  int64_t full_after_bytes = -1;    // < 0 = off: SQLITE_FULL for writes that would grow the
                                    // files by more than this many bytes in all (overwrites of
                                    // existing bytes still work, as on a full file system)
  uint32_t sync_error_one_in = 0;   // 0 = off, 1 = every sync fails
};

struct FaultVfsCounters {
  uint64_t writes = 0;
  uint64_t write_errors = 0;
  uint64_t short_writes = 0;
  uint64_t full_errors = 0;
  uint64_t syncs = 0;
  uint64_t sync_errors = 0;
};

class FaultVfs {
 public:
  // Registers the VFS (once per process) and returns its name, "waybill-fault".
  static const char* Register();
  // Starts injecting `config`'s faults; resets the byte budget and the counters.
  static void Set(const FaultVfsConfig& config);
  // Stops injecting; the VFS then behaves exactly like the one it wraps.
  static void Clear();
  static FaultVfsCounters Counters();
};

}  // namespace waybill::testing
