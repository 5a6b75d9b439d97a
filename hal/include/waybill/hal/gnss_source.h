// GnssSource: where the NMEA pipeline's bytes come from.
//
// The pipeline (waybill/hal/nmea.h) is a pure parser fed with chunks of bytes; a GnssSource is the
// impure end that produces them: a serial port on a truck, or an NMEA file replayed at a chosen
// pace on a laptop and in tests. Chunks carry no framing guarantee: a sentence may be split across
// two reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "waybill/hal/clock.h"
#include "waybill/hal/serial.h"
#include "waybill/hal/sleeper.h"
#include "waybill/status.h"

namespace waybill::hal {

class GnssSource {
 public:
  virtual ~GnssSource() = default;

  // Waits at most timeout_ms for bytes and copies up to buffer.size() of them into buffer; returns
  // how many, 0 when none arrived in time or (after waiting) when the source is exhausted().
  // Unavailable while the receiver is gone (keep calling: a serial source reconnects by itself).
  // Not thread-safe: one reader thread owns a source.
  virtual Result<size_t> Read(std::span<uint8_t> buffer, int64_t timeout_ms) = 0;

  // True once the source will never yield another byte (a replay that reached its end without
  // looping). A serial source is never exhausted.
  virtual bool exhausted() const = 0;

  // Names the source in logs: "/dev/ttyUSB0" or "replay of munich-gps.nmea".
  virtual const std::string& name() const = 0;
};

// A GNSS receiver on a serial port. port is usually a ReconnectingSerialPort, opened (or armed)
// by the caller or by the first Read(), which opens it if it is not open.
std::unique_ptr<GnssSource> NewSerialGnssSource(std::unique_ptr<SerialPort> port);

// The time of day, in ms since midnight UTC, that an RMC or GGA sentence (any talker: GP, GN, GL,
// GA, BD...) carries in field 1 as hhmmss or hhmmss.sss; nullopt for any other sentence or a
// missing or malformed time. Used for pacing only: this is not an NMEA parser (no checksum check).
std::optional<int64_t> NmeaTimeOfDayMs(std::string_view sentence);

struct NmeaReplayOptions {
  // 1: real time; 10: ten times faster; 0: as fast as the reader reads.
  double speed = 1.0;
  // Start again from the first sentence after the last one, forever.
  bool loop = false;
};

// Replays an NMEA file, paced by epochs.
//
// An epoch starts at an RMC or GGA sentence whose time of day differs from the current epoch's;
// the sentences after it without a time (GSA, GSV, VTG...) belong to it. The first epoch is
// released at once; each later one when the Clock reaches start + (its time - the first epoch's
// time) / speed, so pacing does not drift with slow readers. Read() waits for that moment on the
// Sleeper, never longer than its timeout. A time earlier than the previous by more than 12 h is a
// midnight wrap (+24 h); a smaller step back (out-of-order sentences) or a missing time releases
// at once. On looping, the first epoch of the new pass follows the last one after 1 s / speed.
class NmeaReplaySource final : public GnssSource {
 public:
  // Reads the whole file into memory. NotFound/IOError if it cannot be read; InvalidArgument if it
  // holds no line starting with '$' or if speed is negative or not finite. clock and sleeper must
  // outlive the source.
  static Result<std::unique_ptr<NmeaReplaySource>> Open(const std::filesystem::path& file,
                                                        NmeaReplayOptions options, Clock& clock,
                                                        Sleeper& sleeper);
  // The same from text in memory; name is used in logs and errors.
  static Result<std::unique_ptr<NmeaReplaySource>> FromText(std::string text, std::string name,
                                                            NmeaReplayOptions options, Clock& clock,
                                                            Sleeper& sleeper);

  Result<size_t> Read(std::span<uint8_t> buffer, int64_t timeout_ms) override;
  bool exhausted() const override;
  const std::string& name() const override { return name_; }

  // Epochs released so far, over all passes.
  int64_t epochs_released() const { return epochs_released_; }
  // Completed passes over the file.
  int64_t passes() const { return passes_; }

 private:
  NmeaReplaySource(std::string text, std::string name, NmeaReplayOptions options, Clock& clock,
                   Sleeper& sleeper);
  // Finds the end of the epoch starting at released_end_ and when it is due; false at the end.
  bool PlanNextEpoch();

  std::string text_;
  std::string name_;
  NmeaReplayOptions options_;
  Clock& clock_;
  Sleeper& sleeper_;

  size_t read_pos_ = 0;      // next byte handed to the reader
  size_t released_end_ = 0;  // bytes before this are released (due)
  bool planned_ = false;     // next_end_/next_due_mono_ms_ describe the next epoch
  size_t next_end_ = 0;
  int64_t next_due_mono_ms_ = 0;

  bool started_ = false;
  int64_t anchor_mono_ms_ = 0;     // Clock time when replay time 0 was released
  int64_t replay_elapsed_ms_ = 0;  // file time since the anchor, across wraps and passes
  std::optional<int64_t> last_tod_ms_;
  int64_t epochs_released_ = 0;
  int64_t passes_ = 0;
};

}  // namespace waybill::hal
