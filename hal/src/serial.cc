#include "waybill/hal/serial.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

namespace waybill::hal {

namespace {

constexpr std::array<uint32_t, 9> kBauds = {4800,   9600,   19200,  38400, 57600,
                                            115200, 230400, 460800, 921600};

// "1 s", "1.5 s", "250 ms": how a person reads a retry interval.
std::string Duration(int64_t ms) {
  if (ms < 1000) return std::to_string(ms) + " ms";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms / 1000) + "." + std::to_string((ms % 1000) / 100) + " s";
}

}  // namespace

std::span<const uint32_t> StandardBaudRates() { return kBauds; }

bool IsStandardBaudRate(uint32_t baud) {
  for (uint32_t b : kBauds) {
    if (b == baud) return true;
  }
  return false;
}

std::string StandardBaudRatesText() {
  std::string out;
  for (uint32_t b : kBauds) {
    if (!out.empty()) out += ", ";
    out += std::to_string(b);
  }
  return out;
}

ReconnectingSerialPort::ReconnectingSerialPort(std::unique_ptr<SerialPort> inner, Clock& clock,
                                               Sleeper& sleeper, ReconnectOptions options)
    : inner_(std::move(inner)), clock_(clock), sleeper_(sleeper), options_(std::move(options)) {
  if (options_.initial_retry_ms < 1) options_.initial_retry_ms = 1;
  if (options_.max_retry_ms < options_.initial_retry_ms) {
    options_.max_retry_ms = options_.initial_retry_ms;
  }
  if (!options_.logger) options_.logger = spdlog::default_logger();
  retry_ms_ = options_.initial_retry_ms;
}

ReconnectingSerialPort::~ReconnectingSerialPort() { Close(); }

std::string ReconnectingSerialPort::Reason(const Status& status) const {
  const std::string& msg = status.message();
  std::string prefix = inner_->device() + ": ";
  if (msg.rfind(prefix, 0) == 0) return msg.substr(prefix.size());
  return msg;
}

Status ReconnectingSerialPort::GoneStatus() const {
  int64_t wait_ms = std::max<int64_t>(next_attempt_mono_ms_ - clock_.mono_ms(), 0);
  std::string reason = last_open_reason_.empty() ? gone_reason_ : last_open_reason_;
  return Status::Unavailable(options_.role + " " + inner_->device() + " is gone (" + reason +
                             "); next attempt in " + Duration(wait_ms));
}

Status ReconnectingSerialPort::Open() {
  armed_ = true;
  if (inner_->is_open()) return Status::Ok();
  Status status = inner_->Open();
  if (status.ok()) return status;
  int64_t now = clock_.mono_ms();
  gone_since_mono_ms_ = now;
  attempts_since_gone_ = 1;
  retry_ms_ = options_.initial_retry_ms;
  next_attempt_mono_ms_ = now + retry_ms_;
  gone_reason_ = Reason(status);
  last_open_reason_ = gone_reason_;
  options_.logger->warn("{} {} is not there ({}); retrying every {}, backing off to every {}",
                        options_.role, inner_->device(), gone_reason_,
                        Duration(options_.initial_retry_ms), Duration(options_.max_retry_ms));
  return status;
}

void ReconnectingSerialPort::MarkGone(const Status& why) {
  inner_->Close();
  ++disconnects_;
  int64_t now = clock_.mono_ms();
  gone_since_mono_ms_ = now;
  attempts_since_gone_ = 0;
  retry_ms_ = options_.initial_retry_ms;
  next_attempt_mono_ms_ = now + retry_ms_;
  gone_reason_ = Reason(why);
  last_open_reason_.clear();
  options_.logger->warn("{} {} disappeared ({}); retrying every {}, backing off to every {}",
                        options_.role, inner_->device(), gone_reason_,
                        Duration(options_.initial_retry_ms), Duration(options_.max_retry_ms));
}

bool ReconnectingSerialPort::MaybeReopen() {
  if (inner_->is_open()) return true;
  int64_t now = clock_.mono_ms();
  if (now < next_attempt_mono_ms_) return false;
  ++attempts_since_gone_;
  Status status = inner_->Open();
  if (status.ok()) {
    ++reconnects_;
    options_.logger->info("{} {} is back after {} ({} attempt{})", options_.role, inner_->device(),
                          Duration(now - gone_since_mono_ms_), attempts_since_gone_,
                          attempts_since_gone_ == 1 ? "" : "s");
    last_open_reason_.clear();
    retry_ms_ = options_.initial_retry_ms;
    return true;
  }
  std::string reason = Reason(status);
  // The first failure after a loss is expected (the device is simply absent); a different reason
  // later ("Permission denied", "Device or resource busy") usually needs a person.
  if (!last_open_reason_.empty() && reason != last_open_reason_) {
    options_.logger->warn("{} {} still cannot be opened ({}); still retrying", options_.role,
                          inner_->device(), reason);
  } else {
    options_.logger->debug("{} {}: open attempt {} failed ({})", options_.role, inner_->device(),
                           attempts_since_gone_, reason);
  }
  last_open_reason_ = std::move(reason);
  retry_ms_ = std::min(retry_ms_ * 2, options_.max_retry_ms);
  next_attempt_mono_ms_ = now + retry_ms_;
  return false;
}

Result<size_t> ReconnectingSerialPort::Read(std::span<uint8_t> buffer, int64_t timeout_ms) {
  if (!armed_) return Status::FailedPrecondition(inner_->device() + ": read on a closed port");
  int64_t deadline = clock_.mono_ms() + std::max<int64_t>(timeout_ms, 0);
  // Bounded: every turn either reads, returns, or sleeps towards the deadline. A Sleeper that does
  // not move the Clock (a misconfigured test) ends the loop by count instead of spinning forever.
  for (int turn = 0; turn < 64; ++turn) {
    if (MaybeReopen()) {
      int64_t remaining = std::max<int64_t>(deadline - clock_.mono_ms(), 0);
      Result<size_t> got = inner_->Read(buffer, remaining);
      if (got.ok() || got.status().code() == Status::Code::kFailedPrecondition) return got;
      MarkGone(got.status());
      return GoneStatus();
    }
    int64_t now = clock_.mono_ms();
    if (now >= deadline) break;
    sleeper_.SleepFor(std::min(next_attempt_mono_ms_, deadline) - now);
  }
  return GoneStatus();
}

Status ReconnectingSerialPort::Write(std::span<const uint8_t> bytes, int64_t timeout_ms) {
  if (!armed_) return Status::FailedPrecondition(inner_->device() + ": write on a closed port");
  if (!MaybeReopen()) return GoneStatus();
  Status status = inner_->Write(bytes, timeout_ms);
  if (status.IsUnavailable()) {
    MarkGone(status);
    return GoneStatus();
  }
  return status;
}

void ReconnectingSerialPort::Close() {
  armed_ = false;
  if (inner_) inner_->Close();
}

}  // namespace waybill::hal
