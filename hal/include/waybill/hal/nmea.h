// NmeaParser: NMEA 0183 bytes in, fused GNSS fixes out. Pure: it never opens, reads or waits on
// anything; the serial driver, gpsd client, replay tool, fuzzer and benchmark all feed it bytes.
//
// Three stages, all inside Feed():
//
// 1. Framing. A sentence runs from '$' (or '!') to CR or LF. NUL bytes are dropped wherever they
//    appear (XOR with 0 leaves the checksum unchanged, so a sentence padded with NULs still
//    verifies). A '$' inside a sentence means the receiver or the line spliced a new sentence
//    into an unfinished one: the unfinished one is rejected as `spliced`, the new one goes on.
//    A sentence longer than max_sentence_bytes is rejected as `overlong` and the rest of its line
//    dropped. Text outside any sentence is `garbage`; lines starting with '#' (the header lines
//    of recorded logs) are ignored as comments when skip_comment_lines is set.
//
// 2. Checking and decoding. The checksum is verified (a wrong one is always rejected; a missing
//    one only when require_checksum). Proprietary sentences ($P...) and well-formed standard
//    sentences this parser does not use (GST, TXT, RMB, ...) are ignored and counted, not
//    errors. RMC, GGA, GSA, GSV, VTG, GLL, ZDA and GNS are decoded from any two-letter talker
//    (GP, GN, GL, GA, GB, BD, GQ, ...). Fields are split as string_views over one reused buffer:
//    no heap allocation per sentence.
//
// 3. Fusion. Sentences of one receiver epoch (one UTC time of day) are merged into one GnssFix.
//    An epoch ends when a sentence carrying a time of day brings a different one, or when a
//    talker+sentence that already spoke in this epoch speaks again (a new cycle from a receiver
//    whose clock is stuck or empty), or at Flush(). So a fix comes out when the next epoch's
//    first timed sentence arrives: one cycle of latency, the price of knowing the epoch is
//    complete. Sentences without a time (GSA, GSV, VTG) belong to the epoch in progress.
//    An epoch yields a fix only when one of its sentences reports a valid position (RMC or GLL
//    status A, GGA quality > 0, GNS mode not N); other epochs are counted as no-fix epochs.
//    See docs/GNSS.md for the full rules (which sentence wins, mode, date plausibility).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "waybill/hal/clock.h"
#include "waybill/hal/gnss_fix.h"
#include "waybill/hal/log_limit.h"

namespace waybill::hal {

// Why input was rejected. Every rejection is counted and (rate-limited) logged.
enum class NmeaReject : uint8_t {
  kBadChecksum = 0,  // *hh present but wrong, or not two hex digits
  kMissingChecksum,  // no *hh and require_checksum
  kTruncated,        // checksum cut short, or input ended inside a sentence
  kSpliced,          // a new '$' arrived before the sentence ended
  kOverlong,         // longer than max_sentence_bytes
  kBadField,         // a field that should be a number, time, date or position is not
  kBadAddress,       // the address is neither proprietary nor two-letter talker + 3-letter type
  kGarbage,          // text outside any sentence (counted once per run)
  kImplausibleDate,  // a fix whose date is before min_plausible_utc_ms: utc_ms left empty
  kCount,
};
inline constexpr size_t kNmeaRejectCount = static_cast<size_t>(NmeaReject::kCount);
// "bad_checksum", "missing_checksum", ...: stable names for logs, JSON and tests.
std::string_view ToString(NmeaReject reason);

enum class NmeaSentence : uint8_t { kRmc = 0, kGga, kGsa, kGsv, kVtg, kGll, kZda, kGns, kCount };
inline constexpr size_t kNmeaSentenceCount = static_cast<size_t>(NmeaSentence::kCount);
// "RMC", "GGA", ...
std::string_view ToString(NmeaSentence type);

struct NmeaStats {
  uint64_t bytes = 0;      // fed, including NULs
  uint64_t nul_bytes = 0;  // dropped
  uint64_t sentences = 0;  // accepted and decoded (the types below)
  std::array<uint64_t, kNmeaSentenceCount> by_type{};
  uint64_t ignored_proprietary = 0;  // $P...
  uint64_t ignored_unsupported = 0;  // well-formed, checksum fine, a type not used here
  uint64_t ignored_comments = 0;     // '#' lines (skip_comment_lines)
  std::array<uint64_t, kNmeaRejectCount> rejected{};
  uint64_t epochs = 0;             // closed epochs that had a timed or positioned sentence
  uint64_t fixes = 0;              // epochs with a valid position: the fixes handed out
  uint64_t no_fix_epochs = 0;      // epochs whose sentences said "no fix"
  uint64_t fixes_without_utc = 0;  // fixes with utc_ms empty (no date, or an implausible one)
  // Auxiliary values (HDOP, altitude, speed, ...) that were not numbers: dropped, the sentence
  // kept. Not a rejection: the position and time were good.
  uint64_t fields_dropped = 0;
  // Fixes dated at or before the previous dated fix: the receiver's clock stepped back. The fix
  // is still handed out with the time the receiver gave; a consumer decides what to trust.
  uint64_t time_steps_back = 0;

  uint64_t rejected_total() const {
    uint64_t n = 0;
    for (uint64_t r : rejected) n += r;
    return n;
  }
  uint64_t count(NmeaReject reason) const { return rejected[static_cast<size_t>(reason)]; }
  uint64_t count(NmeaSentence type) const { return by_type[static_cast<size_t>(type)]; }
};

struct NmeaOptions {
  // Reject sentences without *hh. A wrong checksum is rejected whatever this says.
  bool require_checksum = true;
  // NMEA says 82 bytes; real receivers send 100-210 byte proprietary and RTK sentences.
  size_t max_sentence_bytes = 256;
  // Ignore lines starting with '#' (the headers of recorded logs such as gpsd's) instead of
  // counting them as garbage. Off for a live receiver, where such a line is line noise.
  bool skip_comment_lines = false;
  // A date before this (ms since the Unix epoch) is implausible: the 1980/2000 receiver defaults
  // and GPS week-rollover dates 1024 weeks (19.6 years) in the past. Default: one year before the
  // date this file was compiled. Replaying old recordings needs an earlier value.
  int64_t min_plausible_utc_ms = DefaultMinPlausibleUtcMs();
  // Named in log messages: "/dev/ttyS1", "munich-gps.nmea".
  std::string source = "NMEA input";
  // Log rejections (spdlog warn), at most log_max_per_minute per reason per minute of clock's
  // monotonic time; clock nullptr means Clock::System(), else it must outlive the parser.
  // Counting happens either way.
  bool log_rejections = true;
  uint32_t log_max_per_minute = 5;
  const Clock* clock = nullptr;

  static int64_t DefaultMinPlausibleUtcMs();
};

// One parser per byte stream. It owns its buffers; nothing is shared between parsers. No method
// is thread-safe: a parser is used from one thread at a time.
class NmeaParser {
 public:
  // The outcome of reading one field (used by the implementation).
  enum class Parsed : uint8_t { kEmpty, kOk, kBad };

  explicit NmeaParser(NmeaOptions options = {});

  // Consumes bytes in any chunking (a sentence may span calls). Completed fixes queue up for
  // TakeFixes(). Never fails: bad input is counted in stats() and logged. Not thread-safe.
  void Feed(std::span<const uint8_t> bytes);
  void Feed(std::string_view bytes);

  // End of input: a sentence still open is processed if it is complete up to its checksum
  // (a file without a final newline) and rejected as truncated otherwise; the epoch in progress
  // is closed; suppressed-log summaries are written. Feeding may go on afterwards as a new
  // stream whose first epoch may carry over the last date; stats and byte offsets keep counting.
  void Flush();

  // Moves out the fixes completed so far, oldest first; the queue is empty afterwards.
  std::vector<GnssFix> TakeFixes();
  // Number of fixes waiting in TakeFixes().
  size_t pending_fixes() const { return fixes_.size(); }

  // Counters since construction; the reference stays valid for the parser's lifetime.
  const NmeaStats& stats() const { return stats_; }
  const NmeaOptions& options() const { return options_; }

 private:
  struct Epoch {
    bool open = false;               // a sentence with a time or position slot was seen
    bool has_time_sentence = false;  // ... and it was RMC, GGA, GNS, GLL or ZDA
    int32_t tod_ms = -1;             // -1: no time of day yet
    int32_t days = INT32_MIN;        // days since 1970-01-01 from RMC/ZDA; INT32_MIN: none
    bool fix_claimed = false;        // some sentence reported a valid position
    int pos_rank = 0;                // rank of the sentence that gave lat/lon (higher wins)
    int32_t lat_e7 = 0, lon_e7 = 0;
    int alt_rank = 0;  // 0: no altitude
    int32_t alt_cm = 0;
    bool has_speed = false, speed_from_rmc = false;
    uint32_t speed_cmps = 0;
    bool has_course = false;
    uint16_t course_cdeg = 0;
    int hdop_rank = 0;
    uint16_t hdop_c = 0;
    bool sats_seen = false;
    uint32_t sats = 0;                // the largest count of GGA/GNS
    uint32_t gsa_sats = 0;            // satellite ids listed in all GSAs of the epoch
    int gsa_fix_type = 0;             // 0: no GSA, else the largest GSA fix type (1, 2, 3)
    int quality = -1;                 // the largest GGA quality of a valid GGA, -1: none
    int mode_quality = -1;            // implied by RMC/GNS mode characters, for epochs without GGA
    std::array<uint32_t, 16> keys{};  // talker + type of the timed sentences seen
    size_t n_keys = 0;
  };

  void FeedBytes(const uint8_t* data, size_t size);
  void EndSentence();
  void EndGarbage();
  void ProcessSentence(std::string_view s);
  bool Decode(NmeaSentence type, uint32_t key, std::string_view s);
  std::string_view Field(size_t i) const;
  bool RequireFields(std::string_view s, size_t min_fields);
  bool RejectField(std::string_view sentence, size_t index, const char* name);
  // Passes p through; a kBad auxiliary value becomes kEmpty, counted in fields_dropped.
  Parsed Optional(Parsed p, std::string_view sentence, size_t index, const char* name);
  void StartTimed(uint32_t key, int32_t tod_ms);
  void SetPosition(int rank, int32_t lat_e7, int32_t lon_e7);
  void SetHdop(int rank, int64_t hdop_c);
  void CloseEpoch();
  // Counts a rejection; true when it should be logged now (rate limit permitting).
  bool CountReject(NmeaReject reason);
  void LogReject(uint64_t offset, std::string_view what);

  NmeaOptions options_;
  NmeaStats stats_;
  LogLimiter limiter_;
  std::vector<GnssFix> fixes_;

  enum class State : uint8_t { kIdle, kSentence, kSkipLine, kGarbage, kComment };
  State state_ = State::kIdle;
  std::string buf_;            // the sentence in progress, reserved once
  uint64_t offset_ = 0;        // bytes consumed before the current Feed() call
  uint64_t start_offset_ = 0;  // where the sentence or garbage run in progress began
  uint64_t garbage_bytes_ = 0;
  static constexpr size_t kMaxFields = 48;
  std::array<std::string_view, kMaxFields> fields_{};
  size_t n_fields_ = 0;
  bool has_checksum_ = false;

  Epoch epoch_;
  int32_t last_days_ = INT32_MIN;  // date of the last epoch that had one, for carrying over
  int32_t last_tod_ms_ = -1;
  int64_t last_fix_utc_ms_ = INT64_MIN;
};

}  // namespace waybill::hal
