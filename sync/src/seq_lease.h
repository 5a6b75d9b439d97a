// The sequence lease: a small file beside the outbox (<db>.seq) holding the first sequence the
// database has NOT been allowed to use. The outbox writes a higher lease, atomically and durably,
// before it commits any row whose sequence reaches the current one; so the lease is always above
// every sequence that any version of the database file ever held, and a fresh file started after
// corruption (or after the database was deleted) continues from the lease without going back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "waybill/status.h"

namespace waybill::sync::internal {

// Reads the lease. nullopt when the file does not exist; kCorruption when it exists but does not
// hold a well-formed lease (the checksum catches a torn or overwritten file); kIOError otherwise.
Result<std::optional<uint64_t>> ReadSeqLease(const std::string& path);

// Replaces the lease with `next_unleased`: writes <path>.tmp, fsyncs it, renames it over <path>,
// fsyncs the directory. On error the old lease is still in place (rename is atomic), so the
// caller must not use sequences at or above the old value.
Status WriteSeqLease(const std::string& path, uint64_t next_unleased);

}  // namespace waybill::sync::internal
