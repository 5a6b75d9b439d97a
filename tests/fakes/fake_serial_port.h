// FakeSerialPort: a scripted SerialPort for tests of code that reads a device.
//
// The test keeps a raw pointer after handing the port over (to a ReconnectingSerialPort or a
// GnssSource) and scripts it: Feed() bytes, Unplug() the device (the next Read fails, Opens fail),
// Plug() it back, change why opening fails. Single-threaded, like the ports it stands in for.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>

#include "waybill/hal/serial.h"

namespace waybill::hal {

class FakeSerialPort final : public SerialPort {
 public:
  explicit FakeSerialPort(std::string device) : device_(std::move(device)) {}

  Status Open() override {
    ++open_calls_;
    if (open_) return Status::Ok();
    if (!present_) return Status::Unavailable(device_ + ": " + open_failure_);
    open_ = true;
    return Status::Ok();
  }

  Result<size_t> Read(std::span<uint8_t> buffer, int64_t /*timeout_ms*/) override {
    if (!open_) return Status::FailedPrecondition(device_ + ": read on a closed port");
    if (!present_) return Status::Unavailable(device_ + ": " + read_failure_);
    size_t n = std::min(buffer.size(), pending_.size());
    std::memcpy(buffer.data(), pending_.data(), n);
    pending_.erase(0, n);
    return n;
  }

  Status Write(std::span<const uint8_t> bytes, int64_t /*timeout_ms*/) override {
    if (!open_) return Status::FailedPrecondition(device_ + ": write on a closed port");
    if (!present_) return Status::Unavailable(device_ + ": " + read_failure_);
    written_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return Status::Ok();
  }

  void Close() override { open_ = false; }
  bool is_open() const override { return open_; }
  const std::string& device() const override { return device_; }

  // Bytes the next Reads return (while present and open).
  void Feed(const std::string& bytes) { pending_ += bytes; }
  // The device goes away: Read/Write fail with read_failure, Open with open_failure.
  void Unplug(std::string read_failure = "read failed: No such device") {
    present_ = false;
    read_failure_ = std::move(read_failure);
  }
  void Plug() { present_ = true; }
  void SetOpenFailure(std::string reason) { open_failure_ = std::move(reason); }

  int open_calls() const { return open_calls_; }
  const std::string& written() const { return written_; }

 private:
  std::string device_;
  bool present_ = true;
  bool open_ = false;
  std::string pending_;
  std::string written_;
  std::string read_failure_ = "read failed: No such device";
  std::string open_failure_ = "open failed: No such file or directory";
  int open_calls_ = 0;
};

}  // namespace waybill::hal
