#include "waybill/hal/nmea.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <climits>
#include <cstring>

namespace waybill::hal {

namespace {

constexpr int64_t kDayMs = 86'400'000;

using Parsed = NmeaParser::Parsed;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "[-+]digits[.digits]" as value * 10^decimals, rounded half up on the dropped digits. At most
// 15 integer digits so that nothing overflows; anything else is kBad.
Parsed ParseScaled(std::string_view f, int decimals, int64_t* out) {
  if (f.empty()) return Parsed::kEmpty;
  size_t i = 0;
  bool negative = false;
  if (f[0] == '-' || f[0] == '+') {
    negative = f[0] == '-';
    i = 1;
  }
  int64_t value = 0;
  int int_digits = 0;
  while (i < f.size() && IsDigit(f[i])) {
    if (++int_digits > 15) return Parsed::kBad;
    value = value * 10 + (f[i] - '0');
    ++i;
  }
  int frac_digits = 0;
  bool round_up = false;
  if (i < f.size() && f[i] == '.') {
    ++i;
    while (i < f.size() && IsDigit(f[i])) {
      if (frac_digits < decimals) {
        value = value * 10 + (f[i] - '0');
      } else if (frac_digits == decimals) {
        round_up = f[i] >= '5';
      }
      ++frac_digits;
      ++i;
    }
  }
  if (i != f.size() || int_digits + frac_digits == 0) return Parsed::kBad;
  for (int d = frac_digits; d < decimals; ++d) value *= 10;
  if (round_up) ++value;
  *out = negative ? -value : value;
  return Parsed::kOk;
}

// A non-negative integer field of at most 9 digits.
Parsed ParseUint(std::string_view f, uint32_t* out) {
  if (f.empty()) return Parsed::kEmpty;
  if (f.size() > 9) return Parsed::kBad;
  uint32_t v = 0;
  for (char c : f) {
    if (!IsDigit(c)) return Parsed::kBad;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  *out = v;
  return Parsed::kOk;
}

// "hhmmss" with an optional fraction of any length (2 or 3 decimals in practice): ms of day.
Parsed ParseTimeOfDay(std::string_view f, int32_t* tod_ms) {
  if (f.empty()) return Parsed::kEmpty;
  if (f.size() < 6) return Parsed::kBad;
  for (size_t i = 0; i < 6; ++i) {
    if (!IsDigit(f[i])) return Parsed::kBad;
  }
  int hh = (f[0] - '0') * 10 + (f[1] - '0');
  int mm = (f[2] - '0') * 10 + (f[3] - '0');
  int ss = (f[4] - '0') * 10 + (f[5] - '0');
  if (hh > 23 || mm > 59 || ss > 60) return Parsed::kBad;  // 60: a leap second
  int ms = 0;
  if (f.size() > 6) {
    if (f[6] != '.') return Parsed::kBad;
    int scale = 100;
    for (size_t i = 7; i < f.size(); ++i) {
      if (!IsDigit(f[i])) return Parsed::kBad;
      ms += (f[i] - '0') * scale;
      scale /= 10;
    }
  }
  *tod_ms = ((hh * 60 + mm) * 60 + ss) * 1000 + ms;
  return Parsed::kOk;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int32_t DaysFromCivil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int32_t>(doe) - 719468;
}

struct Civil {
  int y;
  unsigned m, d;
};

Civil CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int>(yoe + era * 400 + (m <= 2)), m, d};
}

bool ValidDate(int y, unsigned m, unsigned d) {
  static constexpr unsigned kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m < 1 || m > 12 || d < 1 || d > kDays[m - 1]) return false;
  if (m == 2 && d == 29) return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
  return true;
}

// RMC "ddmmyy". Two-digit years 80..99 are 1980..1999 (the receiver defaults and rollover dates
// that the plausibility check then refuses), 00..79 are 2000..2079.
Parsed ParseDdmmyy(std::string_view f, int32_t* days) {
  if (f.empty()) return Parsed::kEmpty;
  if (f.size() != 6) return Parsed::kBad;
  for (char c : f) {
    if (!IsDigit(c)) return Parsed::kBad;
  }
  unsigned d = static_cast<unsigned>((f[0] - '0') * 10 + (f[1] - '0'));
  unsigned m = static_cast<unsigned>((f[2] - '0') * 10 + (f[3] - '0'));
  int yy = (f[4] - '0') * 10 + (f[5] - '0');
  int y = yy >= 80 ? 1900 + yy : 2000 + yy;
  if (!ValidDate(y, m, d)) return Parsed::kBad;
  *days = DaysFromCivil(y, m, d);
  return Parsed::kOk;
}

// "ddmm.mmmm" / "dddmm.mmmm" plus hemisphere letter, to degrees * 1e7.
Parsed ParseCoordinate(std::string_view f, std::string_view hemi, bool is_lon, int32_t* e7) {
  if (f.empty() && hemi.empty()) return Parsed::kEmpty;
  if (f.empty() || hemi.size() != 1) return Parsed::kBad;
  size_t dot = f.find('.');
  std::string_view int_part = f.substr(0, dot);
  if (int_part.size() < 3 || int_part.size() > 5) return Parsed::kBad;
  int64_t ip = 0;
  for (char c : int_part) {
    if (!IsDigit(c)) return Parsed::kBad;
    ip = ip * 10 + (c - '0');
  }
  int64_t frac_e9 = 0;
  if (dot != std::string_view::npos) {
    std::string_view frac = f.substr(dot + 1);
    int64_t scale = 100'000'000;
    for (char c : frac) {
      if (!IsDigit(c)) return Parsed::kBad;
      frac_e9 += (c - '0') * scale;
      scale /= 10;
    }
  }
  int64_t deg = ip / 100;
  int64_t min = ip % 100;
  if (min >= 60) return Parsed::kBad;
  const int64_t minutes_e9 = min * 1'000'000'000 + frac_e9;
  // minutes * 1e9 / 60 is degrees * 1e9; another / 100 makes it degrees * 1e7 (rounded).
  int64_t value = deg * 10'000'000 + (minutes_e9 + 3000) / 6000;
  int64_t limit = is_lon ? 1'800'000'000 : 900'000'000;
  if (value > limit) return Parsed::kBad;
  char h = hemi[0];
  if (is_lon ? (h != 'E' && h != 'W') : (h != 'N' && h != 'S')) return Parsed::kBad;
  if (h == 'S' || h == 'W') value = -value;
  *e7 = static_cast<int32_t>(value);
  return Parsed::kOk;
}

NmeaSentence TypeOf(std::string_view t, bool* known) {
  *known = true;
  if (t == "RMC") return NmeaSentence::kRmc;
  if (t == "GGA") return NmeaSentence::kGga;
  if (t == "GSA") return NmeaSentence::kGsa;
  if (t == "GSV") return NmeaSentence::kGsv;
  if (t == "VTG") return NmeaSentence::kVtg;
  if (t == "GLL") return NmeaSentence::kGll;
  if (t == "ZDA") return NmeaSentence::kZda;
  if (t == "GNS") return NmeaSentence::kGns;
  *known = false;
  return NmeaSentence::kCount;
}

// XOR of all bytes, eight at a time: XOR commutes, so folding the word at the end is exact.
uint8_t XorChecksum(std::string_view s) {
  uint64_t wide = 0;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    wide ^= w;
  }
  wide ^= wide >> 32;
  wide ^= wide >> 16;
  wide ^= wide >> 8;
  auto sum = static_cast<uint8_t>(wide);
  for (; i < s.size(); ++i) sum ^= static_cast<uint8_t>(s[i]);
  return sum;
}

bool IsAddressChar(char c) { return (c >= 'A' && c <= 'Z') || IsDigit(c); }

// Printable excerpt of input for a log line: at most 90 characters, odd bytes as \xNN.
std::string Excerpt(std::string_view s) {
  std::string out;
  size_t n = std::min<size_t>(s.size(), 90);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (s.size() > n) out += "...";
  return out;
}

std::string FormatDate(int64_t days) {
  Civil c = CivilFromDays(days);
  return fmt::format("{:04}-{:02}-{:02}", c.y, c.m, c.d);
}

std::string FormatTod(int32_t tod_ms) {
  return fmt::format("{:02}:{:02}:{:02}.{:03}", tod_ms / 3'600'000, tod_ms / 60'000 % 60,
                     tod_ms / 1000 % 60, tod_ms % 1000);
}

// Ranks of the sentences that may give a value: the higher one wins within an epoch. GGA is
// the richest position sentence (quality, altitude), GNS its multi-constellation twin.
constexpr int kRankGga = 4, kRankGns = 3, kRankRmc = 2, kRankGll = 1, kRankGsa = 1;

uint32_t KeyOf(std::string_view address, NmeaSentence type) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(address[0])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(address[1])) << 8) |
         static_cast<uint32_t>(type);
}

// Fix quality implied by an RMC/GNS mode character, for epochs without GGA.
int QualityFromModeChar(char c) {
  switch (c) {
    case 'A':
      return 1;
    case 'D':
      return 2;
    case 'P':
      return 3;
    case 'R':
      return 4;
    case 'F':
      return 5;
    case 'E':
      return 6;
    case 'M':
      return 7;
    case 'S':
      return 8;
    default:
      return 0;
  }
}

}  // namespace

std::string_view ToString(NmeaReject reason) {
  switch (reason) {
    case NmeaReject::kBadChecksum:
      return "bad_checksum";
    case NmeaReject::kMissingChecksum:
      return "missing_checksum";
    case NmeaReject::kTruncated:
      return "truncated";
    case NmeaReject::kSpliced:
      return "spliced";
    case NmeaReject::kOverlong:
      return "overlong";
    case NmeaReject::kBadField:
      return "bad_field";
    case NmeaReject::kBadAddress:
      return "bad_address";
    case NmeaReject::kGarbage:
      return "garbage";
    case NmeaReject::kImplausibleDate:
      return "implausible_date";
    case NmeaReject::kCount:
      break;
  }
  return "unknown";
}

std::string_view ToString(NmeaSentence type) {
  switch (type) {
    case NmeaSentence::kRmc:
      return "RMC";
    case NmeaSentence::kGga:
      return "GGA";
    case NmeaSentence::kGsa:
      return "GSA";
    case NmeaSentence::kGsv:
      return "GSV";
    case NmeaSentence::kVtg:
      return "VTG";
    case NmeaSentence::kGll:
      return "GLL";
    case NmeaSentence::kZda:
      return "ZDA";
    case NmeaSentence::kGns:
      return "GNS";
    case NmeaSentence::kCount:
      break;
  }
  return "unknown";
}

int64_t NmeaOptions::DefaultMinPlausibleUtcMs() {
  // __DATE__ is "Mmm dd yyyy". A receiver cannot be right about a date a year before the
  // software that reads it was built; a week-rollover date is 19.6 years earlier.
  static const int64_t value = [] {
    static constexpr char kMonths[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const char* date = __DATE__;
    unsigned m = 1;
    for (unsigned i = 0; i < 12; ++i) {
      if (std::strncmp(kMonths + i * 3, date, 3) == 0) m = i + 1;
    }
    unsigned d = static_cast<unsigned>((date[4] == ' ' ? 0 : date[4] - '0') * 10 + (date[5] - '0'));
    int y = std::atoi(date + 7);
    return (static_cast<int64_t>(DaysFromCivil(y, m, d)) - 365) * kDayMs;
  }();
  return value;
}

NmeaParser::NmeaParser(NmeaOptions options)
    : options_(std::move(options)), limiter_(options_.log_max_per_minute, 60'000) {
  options_.max_sentence_bytes = std::clamp<size_t>(options_.max_sentence_bytes, 16, 4096);
  buf_.reserve(options_.max_sentence_bytes + 1);
}

void NmeaParser::Feed(std::span<const uint8_t> bytes) { FeedBytes(bytes.data(), bytes.size()); }

void NmeaParser::Feed(std::string_view bytes) {
  FeedBytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::vector<GnssFix> NmeaParser::TakeFixes() {
  std::vector<GnssFix> out;
  out.swap(fixes_);
  return out;
}

namespace {
// Bytes that end a run of ordinary sentence characters.
constexpr std::array<bool, 256> MakeStopTable() {
  std::array<bool, 256> t{};
  t['\r'] = t['\n'] = t['$'] = t['!'] = t[0] = true;
  return t;
}
constexpr std::array<bool, 256> kStop = MakeStopTable();

bool EndsWithChecksum(std::string_view s) {
  return s.size() >= 4 && s[s.size() - 3] == '*' && HexValue(s[s.size() - 2]) >= 0 &&
         HexValue(s[s.size() - 1]) >= 0;
}
}  // namespace

void NmeaParser::FeedBytes(const uint8_t* data, size_t size) {
  stats_.bytes += size;
  size_t i = 0;
  while (i < size) {
    const uint64_t pos = offset_ + i;
    const uint8_t c = data[i];
    if (state_ == State::kSentence && !kStop[c]) {
      // The hot path: copy the run of ordinary characters in one go.
      size_t j = i + 1;
      while (j < size && !kStop[data[j]]) ++j;
      size_t room = options_.max_sentence_bytes - buf_.size();
      if (j - i > room) {
        buf_.append(reinterpret_cast<const char*>(data + i), room);
        if (CountReject(NmeaReject::kOverlong)) {
          LogReject(start_offset_, fmt::format("longer than {} bytes ({})",
                                               options_.max_sentence_bytes, Excerpt(buf_)));
        }
        buf_.clear();
        state_ = State::kSkipLine;
      } else {
        buf_.append(reinterpret_cast<const char*>(data + i), j - i);
      }
      i = j;
      continue;
    }
    ++i;
    if (c == 0) {
      ++stats_.nul_bytes;
      continue;
    }
    const bool eol = c == '\r' || c == '\n';
    const bool start = c == '$' || c == '!';
    switch (state_) {
      case State::kSentence:
        if (eol) {
          EndSentence();
          state_ = State::kIdle;
        } else if (start) {
          if (EndsWithChecksum(buf_)) {
            // Complete and verifiable, only its line end is missing: keep it.
            EndSentence();
          } else {
            if (CountReject(NmeaReject::kSpliced)) {
              LogReject(start_offset_,
                        fmt::format("cut off after {} bytes by a new sentence at byte {} ({})",
                                    buf_.size(), pos, Excerpt(buf_)));
            }
          }
          buf_.assign(1, static_cast<char>(c));
          start_offset_ = pos;
        }
        break;
      case State::kIdle:
        if (start) {
          buf_.assign(1, static_cast<char>(c));
          start_offset_ = pos;
          state_ = State::kSentence;
        } else if (eol || c == ' ' || c == '\t') {
          // blank lines and line-end pairs
        } else if (c == '#' && options_.skip_comment_lines) {
          state_ = State::kComment;
        } else {
          start_offset_ = pos;
          garbage_bytes_ = 1;
          state_ = State::kGarbage;
        }
        break;
      case State::kSkipLine:
        if (eol) {
          state_ = State::kIdle;
        } else if (start) {
          buf_.assign(1, static_cast<char>(c));
          start_offset_ = pos;
          state_ = State::kSentence;
        }
        break;
      case State::kGarbage:
        if (eol || start) {
          EndGarbage();
          state_ = State::kIdle;
          if (start) {
            buf_.assign(1, static_cast<char>(c));
            start_offset_ = pos;
            state_ = State::kSentence;
          }
        } else {
          ++garbage_bytes_;
        }
        break;
      case State::kComment:
        if (eol) {
          ++stats_.ignored_comments;
          state_ = State::kIdle;
        }
        break;
    }
  }
  offset_ += size;
}

void NmeaParser::EndGarbage() {
  if (CountReject(NmeaReject::kGarbage)) {
    LogReject(start_offset_, fmt::format("{} bytes of text outside any sentence", garbage_bytes_));
  }
  garbage_bytes_ = 0;
}

void NmeaParser::EndSentence() {
  std::string_view s = buf_;
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  ProcessSentence(s);
  buf_.clear();
}

void NmeaParser::Flush() {
  switch (state_) {
    case State::kSentence:
      if (EndsWithChecksum(buf_)) {
        EndSentence();
      } else {
        if (CountReject(NmeaReject::kTruncated)) {
          LogReject(start_offset_, fmt::format("input ended inside a sentence after {} bytes ({})",
                                               buf_.size(), Excerpt(buf_)));
        }
        buf_.clear();
      }
      break;
    case State::kGarbage:
      EndGarbage();
      break;
    case State::kComment:
      ++stats_.ignored_comments;
      break;
    case State::kIdle:
    case State::kSkipLine:
      break;
  }
  state_ = State::kIdle;
  CloseEpoch();
  if (options_.log_rejections) {
    for (const LogLimiter::Pending& p : limiter_.TakePending()) {
      spdlog::warn("{}: {} more NMEA rejections ({}) suppressed; {} rejected since start",
                   options_.source, p.suppressed, p.reason, stats_.rejected_total());
    }
  }
}

bool NmeaParser::CountReject(NmeaReject reason) {
  ++stats_.rejected[static_cast<size_t>(reason)];
  if (!options_.log_rejections) return false;
  const Clock& clock = options_.clock != nullptr ? *options_.clock : Clock::System();
  std::string_view name = ToString(reason);
  LogLimiter::Decision d = limiter_.Allow(name, clock.mono_ms());
  if (d.suppressed > 0) {
    spdlog::warn("{}: {} more NMEA rejections ({}) were suppressed in the last minute",
                 options_.source, d.suppressed, name);
  }
  return d.log;
}

void NmeaParser::LogReject(uint64_t offset, std::string_view what) {
  spdlog::warn("rejected NMEA sentence on {} at byte {}: {}; {} rejected since start",
               options_.source, offset, what, stats_.rejected_total());
}

bool NmeaParser::RejectField(std::string_view sentence, size_t index, const char* name) {
  if (CountReject(NmeaReject::kBadField)) {
    std::string_view value = index < n_fields_ ? fields_[index] : std::string_view("(missing)");
    LogReject(start_offset_, fmt::format("field {} ({}) is '{}' in {}", index, name, Excerpt(value),
                                         Excerpt(sentence)));
  }
  return false;
}

void NmeaParser::ProcessSentence(std::string_view s) {
  std::string_view body = s.substr(1);
  const size_t star = body.find('*');
  const std::string_view payload = body.substr(0, star);
  const bool has_checksum = star != std::string_view::npos;
  if (has_checksum) {
    std::string_view given = body.substr(star + 1);
    const uint8_t sum = XorChecksum(payload);
    if (given.size() < 2 && (given.empty() || HexValue(given[0]) >= 0)) {
      if (CountReject(NmeaReject::kTruncated)) {
        LogReject(start_offset_, fmt::format("checksum cut short '*{}', expected *{:02X} ({})",
                                             Excerpt(given), sum, Excerpt(s)));
      }
      return;
    }
    const int hi = HexValue(given[0]);
    const int lo = given.size() > 1 ? HexValue(given[1]) : -1;
    if (given.size() != 2 || hi < 0 || lo < 0 || ((hi << 4) | lo) != sum) {
      if (CountReject(NmeaReject::kBadChecksum)) {
        LogReject(start_offset_, fmt::format("bad checksum *{}, expected *{:02X} ({})",
                                             Excerpt(given), sum, Excerpt(s)));
      }
      return;
    }
  }
  const size_t comma = payload.find(',');
  const std::string_view address = payload.substr(0, comma);
  if (!address.empty() && address[0] == 'P') {
    // Proprietary: vendor-specific layouts that the fix does not need, with or without a
    // checksum (some, like MediaTek's $POLYN, never carry one).
    ++stats_.ignored_proprietary;
    return;
  }
  if (!has_checksum && options_.require_checksum) {
    if (CountReject(NmeaReject::kMissingChecksum)) {
      LogReject(start_offset_, fmt::format("no *hh checksum ({})", Excerpt(s)));
    }
    return;
  }
  if (address.size() < 2 || address.size() > 10 ||
      !std::all_of(address.begin(), address.end(), IsAddressChar)) {
    if (CountReject(NmeaReject::kBadAddress)) {
      LogReject(start_offset_, fmt::format("address '{}' is not a talker and a sentence type ({})",
                                           Excerpt(address), Excerpt(s)));
    }
    return;
  }
  bool known = false;
  // Well-formed but not talker + 3 letters ($GYOACC, $LOG108): a vendor's own sentence with a
  // good checksum, so ignored like the types this parser does not use.
  const NmeaSentence type =
      address.size() == 5 ? TypeOf(address.substr(2), &known) : NmeaSentence::kCount;
  if (!known) {
    ++stats_.ignored_unsupported;
    return;
  }
  // Split into fields: fields_[0] is the address.
  n_fields_ = 0;
  size_t from = 0;
  while (true) {
    if (n_fields_ == kMaxFields) {
      if (CountReject(NmeaReject::kBadField)) {
        LogReject(start_offset_,
                  fmt::format("more than {} fields ({})", kMaxFields - 1, Excerpt(s)));
      }
      return;
    }
    size_t next = payload.find(',', from);
    fields_[n_fields_++] =
        payload.substr(from, next == std::string_view::npos ? next : next - from);
    if (next == std::string_view::npos) break;
    from = next + 1;
  }
  has_checksum_ = has_checksum;
  if (Decode(type, KeyOf(address, type), s)) {
    ++stats_.sentences;
    ++stats_.by_type[static_cast<size_t>(type)];
  }
}

std::string_view NmeaParser::Field(size_t i) const {
  return i < n_fields_ ? fields_[i] : std::string_view();
}

bool NmeaParser::RequireFields(std::string_view s, size_t min_fields) {
  if (n_fields_ > min_fields) return true;
  // Fewer fields than the oldest NMEA version sends: a line cut short (only detectable as such
  // when there is no checksum) or a malformed sentence.
  NmeaReject reason = has_checksum_ ? NmeaReject::kBadField : NmeaReject::kTruncated;
  if (CountReject(reason)) {
    LogReject(start_offset_, fmt::format("{} fields where at least {} are needed ({})",
                                         n_fields_ - 1, min_fields, Excerpt(s)));
  }
  return false;
}

void NmeaParser::StartTimed(uint32_t key, int32_t tod_ms) {
  if (epoch_.has_time_sentence) {
    bool repeated = std::find(epoch_.keys.begin(), epoch_.keys.begin() + epoch_.n_keys, key) !=
                    epoch_.keys.begin() + epoch_.n_keys;
    bool new_time = tod_ms >= 0 && tod_ms != epoch_.tod_ms;
    if (repeated || new_time) CloseEpoch();
  }
  epoch_.open = true;
  epoch_.has_time_sentence = true;
  if (tod_ms >= 0) epoch_.tod_ms = tod_ms;
  if (epoch_.n_keys < epoch_.keys.size()) epoch_.keys[epoch_.n_keys++] = key;
}

void NmeaParser::SetPosition(int rank, int32_t lat_e7, int32_t lon_e7) {
  epoch_.fix_claimed = true;
  if (rank > epoch_.pos_rank) {
    epoch_.pos_rank = rank;
    epoch_.lat_e7 = lat_e7;
    epoch_.lon_e7 = lon_e7;
  }
}

void NmeaParser::SetHdop(int rank, int64_t hdop_c) {
  if (rank > epoch_.hdop_rank && hdop_c >= 0 && hdop_c <= 65535) {
    epoch_.hdop_rank = rank;
    epoch_.hdop_c = static_cast<uint16_t>(hdop_c);
  }
}

namespace {
// Speed in knots * 1000 to cm/s (1 kn = 1852 m/h).
uint32_t KnotsMilliToCmps(int64_t knots_milli) {
  // Capped first: a field of 15 digits would overflow the multiplication.
  knots_milli = std::min<int64_t>(knots_milli, 1'000'000'000'000);
  return static_cast<uint32_t>(std::min<int64_t>((knots_milli * 1852 + 18000) / 36000, UINT32_MAX));
}
uint16_t CdegNormalized(int64_t cdeg) {
  cdeg %= 36000;
  if (cdeg < 0) cdeg += 36000;
  return static_cast<uint16_t>(cdeg);
}
}  // namespace

NmeaParser::Parsed NmeaParser::Optional(Parsed p, std::string_view s, size_t index,
                                        const char* name) {
  if (p != Parsed::kBad) return p;
  // An auxiliary value (HDOP, altitude, speed, ...) that is not a number: the position and time
  // of the sentence are still good, so only the value is dropped.
  ++stats_.fields_dropped;
  if (options_.log_rejections) {
    const Clock& clock = options_.clock != nullptr ? *options_.clock : Clock::System();
    LogLimiter::Decision d = limiter_.Allow("dropped_field", clock.mono_ms());
    if (d.suppressed > 0) {
      spdlog::warn("{}: {} more dropped NMEA fields were not logged", options_.source,
                   d.suppressed);
    }
    if (d.log) {
      spdlog::warn(
          "NMEA sentence on {} at byte {}: field {} ({}) '{}' is not a number, dropped "
          "it and kept the sentence ({}); {} fields dropped since start",
          options_.source, start_offset_, index, name, Excerpt(Field(index)), Excerpt(s),
          stats_.fields_dropped);
    }
  }
  return Parsed::kEmpty;
}

bool NmeaParser::Decode(NmeaSentence type, uint32_t key, std::string_view s) {
  // Each case checks every field it uses before touching the epoch, so that a rejected sentence
  // leaves no trace in the fix. Position fields matter only when the sentence claims a fix:
  // receivers fill them with defaults like 8960.000000 before the first one.
  switch (type) {
    case NmeaSentence::kRmc: {
      // RMC,time,status,lat,N,lon,E,speed_kn,course,ddmmyy,magvar,E[,mode[,navstatus]]
      if (!RequireFields(s, 9)) return false;
      int32_t tod = -1, lat = 0, lon = 0, days = INT32_MIN;
      int64_t knots_milli = 0, course_cdeg = 0;
      if (ParseTimeOfDay(Field(1), &tod) == Parsed::kBad) return RejectField(s, 1, "time");
      std::string_view status = Field(2);
      if (status.size() > 1 || (status.size() == 1 && status[0] != 'A' && status[0] != 'V')) {
        return RejectField(s, 2, "status");
      }
      Parsed pdate = ParseDdmmyy(Field(9), &days);
      if (pdate == Parsed::kBad) return RejectField(s, 9, "date");
      const char mode = Field(12).empty() ? 0 : Field(12)[0];
      const bool valid = status == "A" && mode != 'N';
      if (valid) {
        if (ParseCoordinate(Field(3), Field(4), false, &lat) != Parsed::kOk) {
          return RejectField(s, 3, "latitude");
        }
        if (ParseCoordinate(Field(5), Field(6), true, &lon) != Parsed::kOk) {
          return RejectField(s, 5, "longitude");
        }
      }
      Parsed pspeed = ParseScaled(Field(7), 3, &knots_milli);
      if (pspeed == Parsed::kOk && knots_milli < 0) pspeed = Parsed::kBad;
      pspeed = Optional(pspeed, s, 7, "speed");
      Parsed pcourse = Optional(ParseScaled(Field(8), 2, &course_cdeg), s, 8, "course");
      StartTimed(key, tod);
      if (pdate == Parsed::kOk) epoch_.days = days;
      if (valid) {
        SetPosition(kRankRmc, lat, lon);
        if (pspeed == Parsed::kOk) {
          epoch_.has_speed = epoch_.speed_from_rmc = true;
          epoch_.speed_cmps = KnotsMilliToCmps(knots_milli);
        }
        if (pcourse == Parsed::kOk) {
          epoch_.has_course = true;
          epoch_.course_cdeg = CdegNormalized(course_cdeg);
        }
        if (epoch_.mode_quality < 0 && mode != 0) epoch_.mode_quality = QualityFromModeChar(mode);
      }
      return true;
    }
    case NmeaSentence::kGga:
    case NmeaSentence::kGns: {
      // GGA,time,lat,N,lon,E,quality,sats,hdop,alt,M,sep,M,age,station
      // GNS,time,lat,N,lon,E,modes,sats,hdop,alt,sep,age,station[,navstatus]
      const bool gga = type == NmeaSentence::kGga;
      if (!RequireFields(s, 6)) return false;
      int32_t tod = -1, lat = 0, lon = 0;
      uint32_t quality = 0, sats = 0;
      int64_t hdop_c = 0, alt_cm = 0;
      if (ParseTimeOfDay(Field(1), &tod) == Parsed::kBad) return RejectField(s, 1, "time");
      if (gga) {
        Parsed pq = ParseUint(Field(6), &quality);
        if (pq == Parsed::kBad || quality > 9) return RejectField(s, 6, "quality");
      } else {
        for (char m : Field(6)) {
          if (m < 'A' || m > 'Z') return RejectField(s, 6, "mode");
          quality = std::max<uint32_t>(quality, static_cast<uint32_t>(QualityFromModeChar(m)));
        }
      }
      const bool valid = quality > 0;
      if (valid) {
        if (ParseCoordinate(Field(2), Field(3), false, &lat) != Parsed::kOk) {
          return RejectField(s, 2, "latitude");
        }
        if (ParseCoordinate(Field(4), Field(5), true, &lon) != Parsed::kOk) {
          return RejectField(s, 4, "longitude");
        }
      }
      Parsed psats = Optional(ParseUint(Field(7), &sats), s, 7, "satellites");
      Parsed phdop = ParseScaled(Field(8), 2, &hdop_c);
      if (phdop == Parsed::kOk && (hdop_c < 0 || hdop_c > 65535)) phdop = Parsed::kBad;
      phdop = Optional(phdop, s, 8, "HDOP");
      Parsed palt = ParseScaled(Field(9), 2, &alt_cm);
      if (palt == Parsed::kOk && (alt_cm > INT32_MAX || alt_cm < INT32_MIN)) palt = Parsed::kBad;
      palt = Optional(palt, s, 9, "altitude");
      StartTimed(key, tod);
      if (valid) {
        const int rank = gga ? kRankGga : kRankGns;
        SetPosition(rank, lat, lon);
        if (gga) {
          epoch_.quality = std::max(epoch_.quality, static_cast<int>(quality));
        } else {
          epoch_.mode_quality = std::max(epoch_.mode_quality, static_cast<int>(quality));
        }
        if (palt == Parsed::kOk && rank > epoch_.alt_rank) {
          epoch_.alt_rank = rank;
          epoch_.alt_cm = static_cast<int32_t>(alt_cm);
        }
        if (psats == Parsed::kOk) {
          epoch_.sats_seen = true;
          epoch_.sats = std::max(epoch_.sats, sats);
        }
        if (phdop == Parsed::kOk) SetHdop(rank, hdop_c);
      }
      return true;
    }
    case NmeaSentence::kGll: {
      // GLL,lat,N,lon,E[,time[,status[,mode]]]: NMEA 1.5 receivers stop after the position.
      if (!RequireFields(s, 4)) return false;
      int32_t tod = -1, lat = 0, lon = 0;
      if (ParseTimeOfDay(Field(5), &tod) == Parsed::kBad) return RejectField(s, 5, "time");
      std::string_view status = Field(6);
      if (status.size() > 1 || (status.size() == 1 && status[0] != 'A' && status[0] != 'V')) {
        return RejectField(s, 6, "status");
      }
      const char mode = Field(7).empty() ? 0 : Field(7)[0];
      const bool claims = (status == "A" || n_fields_ <= 6) && mode != 'N';
      Parsed plat = ParseCoordinate(Field(1), Field(2), false, &lat);
      Parsed plon = ParseCoordinate(Field(3), Field(4), true, &lon);
      // Without a status (NMEA 1.5) an empty position is the only way to say "no fix".
      const bool valid = claims && (status == "A" || plat != Parsed::kEmpty);
      if (valid && plat != Parsed::kOk) return RejectField(s, 1, "latitude");
      if (valid && plon != Parsed::kOk) return RejectField(s, 3, "longitude");
      StartTimed(key, tod);
      if (valid) SetPosition(kRankGll, lat, lon);
      return true;
    }
    case NmeaSentence::kZda: {
      // ZDA,time,dd,mm,yyyy,tz_h,tz_m
      if (!RequireFields(s, 4)) return false;
      int32_t tod = -1;
      uint32_t d = 0, m = 0, y = 0;
      if (ParseTimeOfDay(Field(1), &tod) == Parsed::kBad) return RejectField(s, 1, "time");
      Parsed pd = ParseUint(Field(2), &d);
      Parsed pm = ParseUint(Field(3), &m);
      Parsed py = ParseUint(Field(4), &y);
      const bool any = pd == Parsed::kOk || pm == Parsed::kOk || py == Parsed::kOk;
      const bool all = pd == Parsed::kOk && pm == Parsed::kOk && py == Parsed::kOk;
      if (pd == Parsed::kBad || pm == Parsed::kBad || py == Parsed::kBad || (any && !all) ||
          (all && (y < 1980 || y > 2200 || !ValidDate(static_cast<int>(y), m, d)))) {
        return RejectField(s, 2, "date");
      }
      StartTimed(key, tod);
      if (all) epoch_.days = DaysFromCivil(static_cast<int>(y), m, d);
      return true;
    }
    case NmeaSentence::kGsa: {
      // GSA,selection,fix(1/2/3),12 satellite ids,pdop,hdop,vdop[,system id]
      if (!RequireFields(s, 2)) return false;
      uint32_t fix = 0;
      Parsed pfix = ParseUint(Field(2), &fix);
      if (pfix == Parsed::kBad || (pfix == Parsed::kOk && (fix < 1 || fix > 3))) {
        return RejectField(s, 2, "fix type");
      }
      uint32_t used = 0;
      for (size_t i = 3; i <= 14 && i < n_fields_; ++i) {
        uint32_t prn = 0;
        if (Optional(ParseUint(fields_[i], &prn), s, i, "satellite id") == Parsed::kOk) ++used;
      }
      int64_t hdop_c = 0;
      Parsed phdop = ParseScaled(Field(16), 2, &hdop_c);
      if (phdop == Parsed::kOk && (hdop_c < 0 || hdop_c > 65535)) phdop = Parsed::kBad;
      phdop = Optional(phdop, s, 16, "HDOP");
      epoch_.gsa_fix_type = std::max(epoch_.gsa_fix_type, static_cast<int>(fix));
      epoch_.gsa_sats += used;
      if (phdop == Parsed::kOk && fix >= 2) SetHdop(kRankGsa, hdop_c);
      return true;
    }
    case NmeaSentence::kGsv: {
      // GSV,total,number,in_view,{id,elevation,azimuth,snr}*[,signal]: feeds nothing in the fix.
      if (!RequireFields(s, 3)) return false;
      uint32_t v = 0;
      if (ParseUint(Field(1), &v) == Parsed::kBad) return RejectField(s, 1, "message count");
      if (ParseUint(Field(2), &v) == Parsed::kBad) return RejectField(s, 2, "message number");
      if (ParseUint(Field(3), &v) == Parsed::kBad) return RejectField(s, 3, "satellites in view");
      return true;
    }
    case NmeaSentence::kVtg: {
      // VTG,course,T,course_mag,M,speed_kn,N,speed_kmh,K[,mode]; NMEA 1.5: VTG,course,mag,kn,kmh
      if (!RequireFields(s, 4)) return false;
      const bool legacy = Field(2) != "T" && n_fields_ == 5;
      const size_t kn_index = legacy ? 3 : 5, kmh_index = legacy ? 4 : 7;
      const char mode = Field(9).empty() ? 0 : Field(9)[0];
      if (mode == 'N') return true;
      int64_t course_cdeg = 0, knots_milli = 0, kmh_milli = 0;
      Parsed pcourse = Optional(ParseScaled(Field(1), 2, &course_cdeg), s, 1, "course");
      Parsed pkn = ParseScaled(Field(kn_index), 3, &knots_milli);
      if (pkn == Parsed::kOk && knots_milli < 0) pkn = Parsed::kBad;
      pkn = Optional(pkn, s, kn_index, "speed");
      Parsed pkmh = ParseScaled(Field(kmh_index), 3, &kmh_milli);
      if (pkmh == Parsed::kOk && kmh_milli < 0) pkmh = Parsed::kBad;
      pkmh = Optional(pkmh, s, kmh_index, "speed");
      if (!epoch_.speed_from_rmc) {
        if (pkn == Parsed::kOk) {
          epoch_.has_speed = true;
          epoch_.speed_cmps = KnotsMilliToCmps(knots_milli);
        } else if (pkmh == Parsed::kOk) {
          epoch_.has_speed = true;
          epoch_.speed_cmps =
              static_cast<uint32_t>(std::min<int64_t>((kmh_milli + 18) / 36, UINT32_MAX));
        }
      }
      if (!epoch_.has_course && pcourse == Parsed::kOk) {
        epoch_.has_course = true;
        epoch_.course_cdeg = CdegNormalized(course_cdeg);
      }
      return true;
    }
    case NmeaSentence::kCount:
      break;
  }
  return false;
}

void NmeaParser::CloseEpoch() {
  Epoch e = epoch_;
  epoch_ = Epoch{};
  if (!e.open) return;
  ++stats_.epochs;
  // The date of an epoch without RMC or ZDA is carried over from the last one that had it,
  // a day later if the time of day wrapped past midnight.
  int32_t days = e.days;
  if (days == INT32_MIN && last_days_ != INT32_MIN && e.tod_ms >= 0) {
    days = last_days_;
    if (last_tod_ms_ >= 0 && e.tod_ms + kDayMs / 2 < last_tod_ms_) ++days;
  }
  if (days != INT32_MIN) last_days_ = days;
  if (e.tod_ms >= 0) last_tod_ms_ = e.tod_ms;

  if (!e.fix_claimed) {
    ++stats_.no_fix_epochs;
    return;
  }
  GnssFix fix;
  fix.lat_e7 = e.lat_e7;
  fix.lon_e7 = e.lon_e7;
  if (e.alt_rank > 0) fix.alt_cm = e.alt_cm;
  if (e.has_speed) fix.speed_cmps = e.speed_cmps;
  if (e.has_course) fix.course_cdeg = e.course_cdeg;
  if (e.hdop_rank > 0) fix.hdop_c = e.hdop_c;
  uint32_t sats = std::max(e.sats, e.gsa_sats);
  if (sats > 0 || e.sats_seen) fix.sats = static_cast<uint8_t>(std::min<uint32_t>(sats, 255));
  // Mode: the receiver's own GSA verdict when it reports a fix; otherwise 3D when a GGA or GNS
  // with a valid fix gave an altitude, else 2D (RMC and GLL carry no altitude).
  if (e.gsa_fix_type >= 2) {
    fix.mode = e.gsa_fix_type == 3 ? FixMode::k3D : FixMode::k2D;
  } else {
    fix.mode = e.alt_rank > 0 ? FixMode::k3D : FixMode::k2D;
  }
  if (e.quality > 0) {
    fix.quality = static_cast<uint8_t>(e.quality);
  } else {
    fix.quality = static_cast<uint8_t>(e.mode_quality > 0 ? e.mode_quality : 1);
  }
  if (days != INT32_MIN && e.tod_ms >= 0) {
    int64_t utc_ms = static_cast<int64_t>(days) * kDayMs + e.tod_ms;
    if (utc_ms >= options_.min_plausible_utc_ms) {
      fix.utc_ms = utc_ms;
    } else if (CountReject(NmeaReject::kImplausibleDate)) {
      spdlog::warn(
          "NMEA fix on {} before byte {} at {} UTC is dated {}, before the plausible minimum {} "
          "(receiver default or GPS week rollover): kept without a date; {} rejected since start",
          options_.source, start_offset_, FormatTod(e.tod_ms), FormatDate(days),
          FormatDate(options_.min_plausible_utc_ms / kDayMs), stats_.rejected_total());
    }
  }
  if (!fix.utc_ms) {
    ++stats_.fixes_without_utc;
  } else {
    if (*fix.utc_ms <= last_fix_utc_ms_) ++stats_.time_steps_back;
    last_fix_utc_ms_ = *fix.utc_ms;
  }
  ++stats_.fixes;
  fixes_.push_back(fix);
}

}  // namespace waybill::hal
