// Small durable-file helpers shared by the outbox's neighbours (photos on the unit, uploads on the
// bridge): errno turned into a Status that says what failed and where, whole writes and reads
// that survive EINTR, and the directory fsync that makes a rename durable.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "waybill/status.h"

namespace waybill::hal {

// "<what>: <strerror>"; ENOSPC and EDQUOT give kNoSpace, everything else kIOError.
Status ErrnoStatus(const std::string& what, int err);

// Writes all of `bytes` to `fd`; `path` names the file in the error.
Status WriteAll(int fd, std::string_view bytes, const std::string& path);

// The whole file. kNotFound if it does not exist.
Result<std::string> ReadWholeFile(const std::string& path);

// fsync of a directory (or any path opened read-only): after a rename or unlink in `dir`, this
// makes the change survive a power cut.
Status FsyncPath(const std::string& dir);

// Lower-case hex of the bytes.
std::string ToHex(std::span<const uint8_t> bytes);

}  // namespace waybill::hal
