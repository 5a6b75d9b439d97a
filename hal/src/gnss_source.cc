#include "waybill/hal/gnss_source.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

namespace waybill::hal {

namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr int64_t kLoopGapMs = 1000;

class SerialGnssSource final : public GnssSource {
 public:
  explicit SerialGnssSource(std::unique_ptr<SerialPort> port)
      : port_(std::move(port)), name_(port_->device()) {}

  Result<size_t> Read(std::span<uint8_t> buffer, int64_t timeout_ms) override {
    if (!port_->is_open()) {
      Status opened = port_->Open();
      // A reconnecting port stays armed after a failed first attempt: its Read() takes over.
      if (!opened.ok() && !port_->is_open()) return opened;
    }
    return port_->Read(buffer, timeout_ms);
  }
  bool exhausted() const override { return false; }
  const std::string& name() const override { return name_; }

 private:
  std::unique_ptr<SerialPort> port_;
  std::string name_;
};

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

int TwoDigits(std::string_view s, size_t at) { return (s[at] - '0') * 10 + (s[at + 1] - '0'); }

}  // namespace

std::unique_ptr<GnssSource> NewSerialGnssSource(std::unique_ptr<SerialPort> port) {
  return std::make_unique<SerialGnssSource>(std::move(port));
}

std::optional<int64_t> NmeaTimeOfDayMs(std::string_view sentence) {
  if (sentence.empty() || sentence[0] != '$') return std::nullopt;
  size_t comma = sentence.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  std::string_view address = sentence.substr(1, comma - 1);
  if (address.size() < 5) return std::nullopt;
  std::string_view type = address.substr(address.size() - 3);
  if (type != "RMC" && type != "GGA") return std::nullopt;
  std::string_view rest = sentence.substr(comma + 1);
  std::string_view field = rest.substr(0, rest.find_first_of(",*\r\n"));
  std::string_view whole = field.substr(0, field.find('.'));
  if (whole.size() != 6 || !AllDigits(whole)) return std::nullopt;
  int hh = TwoDigits(whole, 0), mm = TwoDigits(whole, 2), ss = TwoDigits(whole, 4);
  if (hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  int64_t frac_ms = 0;
  if (field.size() > 6) {
    std::string_view frac = field.substr(7);
    if (!frac.empty() && !AllDigits(frac)) return std::nullopt;
    int64_t scale = 100;
    for (size_t i = 0; i < frac.size() && i < 3; ++i, scale /= 10)
      frac_ms += (frac[i] - '0') * scale;
  }
  return ((hh * 60LL + mm) * 60 + ss) * 1000 + frac_ms;
}

NmeaReplaySource::NmeaReplaySource(std::string text, std::string name, NmeaReplayOptions options,
                                   Clock& clock, Sleeper& sleeper)
    : text_(std::move(text)),
      name_(std::move(name)),
      options_(options),
      clock_(clock),
      sleeper_(sleeper) {}

Result<std::unique_ptr<NmeaReplaySource>> NmeaReplaySource::Open(const std::filesystem::path& file,
                                                                 NmeaReplayOptions options,
                                                                 Clock& clock, Sleeper& sleeper) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    int err = errno;
    std::string msg = "cannot open NMEA replay file " + file.string() + ": " + std::strerror(err);
    if (err == ENOENT) return Status::NotFound(std::move(msg));
    return Status::IOError(std::move(msg));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::IOError("cannot read NMEA replay file " + file.string());
  return FromText(std::move(text).str(), "replay of " + file.filename().string(), options, clock,
                  sleeper);
}

Result<std::unique_ptr<NmeaReplaySource>> NmeaReplaySource::FromText(
    std::string text, std::string name, NmeaReplayOptions options, Clock& clock, Sleeper& sleeper) {
  if (!std::isfinite(options.speed) || options.speed < 0) {
    return Status::InvalidArgument(name + ": replay speed " + std::to_string(options.speed) +
                                   " is not a factor >= 0 (1 real time, 10 ten times faster, 0 "
                                   "as fast as possible)");
  }
  bool has_sentence = !text.empty() && text[0] == '$';
  has_sentence = has_sentence || text.find("\n$") != std::string::npos;
  if (!has_sentence) {
    return Status::InvalidArgument(name + ": holds no NMEA sentence (no line starts with '$')");
  }
  return std::unique_ptr<NmeaReplaySource>(
      new NmeaReplaySource(std::move(text), std::move(name), options, clock, sleeper));
}

bool NmeaReplaySource::PlanNextEpoch() {
  bool wrapped = false;
  if (released_end_ >= text_.size()) {
    if (!options_.loop) {
      passes_ = 1;
      return false;
    }
    ++passes_;
    spdlog::info("{}: end of file after {} epochs, starting pass {}", name_, epochs_released_,
                 passes_ + 1);
    released_end_ = 0;
    read_pos_ = 0;
    wrapped = true;
  }
  std::optional<int64_t> epoch_tod;
  size_t pos = released_end_;
  while (pos < text_.size()) {
    size_t eol = text_.find('\n', pos);
    size_t next = eol == std::string::npos ? text_.size() : eol + 1;
    std::optional<int64_t> tod = NmeaTimeOfDayMs(std::string_view(text_).substr(pos, next - pos));
    if (tod) {
      if (!epoch_tod) {
        epoch_tod = tod;
      } else if (*tod != *epoch_tod) {
        break;
      }
    }
    pos = next;
  }
  next_end_ = pos;

  if (wrapped) {
    replay_elapsed_ms_ += kLoopGapMs;
  } else if (epoch_tod && last_tod_ms_) {
    int64_t delta_ms = *epoch_tod - *last_tod_ms_;
    if (delta_ms < -kDayMs / 2) delta_ms += kDayMs;
    if (delta_ms > 0) replay_elapsed_ms_ += delta_ms;
  }
  if (epoch_tod) last_tod_ms_ = epoch_tod;

  if (!started_ || options_.speed == 0) {
    next_due_mono_ms_ = INT64_MIN;
  } else {
    next_due_mono_ms_ = anchor_mono_ms_ +
                        static_cast<int64_t>(
                            std::llround(static_cast<double>(replay_elapsed_ms_) / options_.speed));
  }
  return true;
}

Result<size_t> NmeaReplaySource::Read(std::span<uint8_t> buffer, int64_t timeout_ms) {
  if (buffer.empty()) return size_t{0};
  if (read_pos_ >= released_end_) {
    if (!planned_) {
      if (!PlanNextEpoch()) {
        // Exhausted: wait out the timeout so that a reader that ignores exhausted() idles
        // instead of spinning.
        sleeper_.SleepFor(timeout_ms);
        return size_t{0};
      }
      planned_ = true;
    }
    int64_t now = clock_.mono_ms();
    if (now < next_due_mono_ms_) {
      int64_t wait_ms = std::min(next_due_mono_ms_ - now, std::max<int64_t>(timeout_ms, 0));
      sleeper_.SleepFor(wait_ms);
      now = clock_.mono_ms();
      if (now < next_due_mono_ms_) return size_t{0};
    }
    if (!started_) {
      started_ = true;
      anchor_mono_ms_ = now;
    }
    released_end_ = next_end_;
    planned_ = false;
    ++epochs_released_;
  }
  size_t n = std::min(buffer.size(), released_end_ - read_pos_);
  std::memcpy(buffer.data(), text_.data() + read_pos_, n);
  read_pos_ += n;
  return n;
}

bool NmeaReplaySource::exhausted() const {
  return !options_.loop && released_end_ >= text_.size() && read_pos_ >= text_.size();
}

}  // namespace waybill::hal
