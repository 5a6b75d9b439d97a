// The wire codec: Batch, Ack, Command, CommandResult (schema in sync/proto/wire.proto).
//
// How a batch of fixes becomes a few bytes per fix. The fixes are sorted by seq and turned into
// columns, one per field. Each column becomes small integers by the transform that suits the way
// the field moves between two receiver epochs:
//   * seq: consecutive, so the first seq then (gap - 1): a run of zeros.
//   * ts_ms: a steady epoch rate, so the first time, the first step, then the change of the step
//     (delta of delta): zeros again.
//   * lat/lon: a moving truck keeps its velocity from one epoch to the next, so the second
//     difference is what the driver changed: small.
//   * alt, speed, course, hdop, sats, mode, quality, ts_src: first differences (course wrapped
//     around the circle, so north costs nothing extra).
//   * presence (which optional fields a fix has): XOR with the previous fix's mask.
// Receivers report in their own units (minutes with four decimals, tenths of a knot, tenths of a
// degree), which Waybill's units (1e-7 degree, cm/s, 1/100 degree) magnify by a fixed ratio. A
// column may carry such a ratio (a "scale" num/den): the column then holds integers k with
// value = round(k * num / den) (half away from zero). The encoder only uses a scale after
// checking that every value of the column comes back exactly, so the transform is lossless
// whatever the receiver did; it tries a few ratios and keeps what writes fewest bytes.
// Finally each column is written in the cheapest of three forms: zigzag varints in a packed
// protobuf field; the same with each run of zeros written as a 0 and the run's length - 1 (the
// zeros that end the column left out); or its first values as varints and the rest bit-packed at
// one width (a column of small steps then costs a few bits per fix instead of a byte). A presence
// column is only written when the set of optional fields changes within the batch. So a fix
// from a truck driving straight costs about one byte per coordinate and per moving field, and
// nothing for what did not change: 7.6 bytes per fix, MQTT header included, at 60 fixes per batch
// on the recorded drives (docs/PROTOCOL.md).
//
// The decoder trusts nothing: sizes and counts are bounded before anything is allocated,
// arithmetic on untrusted integers wraps in unsigned types or uses 128 bits, and every value is
// range-checked against the type of its field before it becomes a fix.
#include "waybill/sync/wire.h"

#include <pb_decode.h>
#include <pb_encode.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>

#include "waybill.pb.h"
#include "wire.pb.h"

namespace waybill::sync {

namespace {

// Column ids are the FixColumns field numbers minus 2 (also their bits in zero_run_columns and
// bit_packed_columns).
enum Column : int {
  kSeq = 0,
  kTs,
  kTsSrc,
  kPresence,
  kLat,
  kLon,
  kAlt,
  kSpeed,
  kCourse,
  kHdop,
  kSats,
  kMode,
  kQuality,
  kColumnCount,
};
constexpr const char* kColumnNames[kColumnCount] = {"seq",  "ts_ms", "ts_src", "presence", "lat",
                                                    "lon",  "alt",   "speed",  "course",   "hdop",
                                                    "sats", "mode",  "quality"};

// Presence bits of the optional fix fields, in the order of their columns from kAlt.
constexpr int kFirstOptional = kAlt;
constexpr int kOptionalCount = kColumnCount - kFirstOptional;
constexpr uint32_t kPresenceMask = (1u << kOptionalCount) - 1;

// Scales are bounded so that k * num cannot overflow 128 bits and a forged scale is cheap.
constexpr uint32_t kMaxScaleTerm = 1u << 20;

constexpr int64_t kCourseCircle = 36000;  // course_cdeg

// ---- small integer helpers (wrapping: the decoder feeds them untrusted values) ----

int64_t WrapAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
int64_t WrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}

size_t VarintBytes(uint64_t v) { return v < 128 ? 1 : 1 + VarintBytes(v >> 7); }
uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}

// round(k * num / den), half away from zero; nullopt when it does not fit 64 bits (k comes from
// the wire). Checked 64-bit arithmetic: 32-bit ARM has no 128-bit integers.
std::optional<int64_t> ApplyScale(int64_t k, uint32_t num, uint32_t den) {
  if (den == 0) return std::nullopt;
  uint64_t mag = k < 0 ? uint64_t{0} - static_cast<uint64_t>(k) : static_cast<uint64_t>(k);
  uint64_t twice = 0, scaled = 0, rounded = 0;
  if (__builtin_mul_overflow(mag, uint64_t{2} * num, &twice)) return std::nullopt;
  if (__builtin_add_overflow(twice, uint64_t{den}, &scaled)) return std::nullopt;
  rounded = scaled / (uint64_t{2} * den);
  if (rounded > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  auto r = static_cast<int64_t>(rounded);
  return k < 0 ? -r : r;
}

struct Scale {
  uint32_t num = 1;
  uint32_t den = 1;
  bool identity() const { return num == 1 && den == 1; }
};

// ---- the raw fix, exactly the protobuf fields of a stored fix body ----

struct RawFix {
  uint64_t seq = 0;
  int64_t ts_ms = 0;
  uint32_t ts_src = 0;
  waybill_v1_Fix fix = waybill_v1_Fix_init_zero;
};

uint32_t PresenceOf(const waybill_v1_Fix& f) {
  uint32_t m = 0;
  if (f.has_alt_cm) m |= 1u << (kAlt - kFirstOptional);
  if (f.has_speed_cmps) m |= 1u << (kSpeed - kFirstOptional);
  if (f.has_course_cdeg) m |= 1u << (kCourse - kFirstOptional);
  if (f.has_hdop_c) m |= 1u << (kHdop - kFirstOptional);
  if (f.has_sats) m |= 1u << (kSats - kFirstOptional);
  if (f.has_mode) m |= 1u << (kMode - kFirstOptional);
  if (f.has_quality) m |= 1u << (kQuality - kFirstOptional);
  return m;
}

bool InGlobe(int64_t lat_e7, int64_t lon_e7) {
  return lat_e7 >= -900000000 && lat_e7 <= 900000000 && lon_e7 >= -1800000000 &&
         lon_e7 <= 1800000000;
}

// ---- nanopb glue ----

template <typename Msg>
Result<std::string> EncodeMessage(const pb_msgdesc_t* fields, const Msg& msg, const char* what) {
  size_t size = 0;
  if (!pb_get_encoded_size(&size, fields, &msg)) {
    return Status::InvalidArgument(std::string(what) + ": cannot size the message");
  }
  std::string out(size, '\0');
  pb_ostream_t stream = pb_ostream_from_buffer(reinterpret_cast<pb_byte_t*>(out.data()), size);
  if (!pb_encode(&stream, fields, &msg)) {
    return Status::InvalidArgument(std::string(what) +
                                   ": encoding failed: " + PB_GET_ERROR(&stream));
  }
  out.resize(stream.bytes_written);
  return out;
}

pb_istream_t InputStream(std::string_view bytes) {
  return pb_istream_from_buffer(reinterpret_cast<const pb_byte_t*>(bytes.data()), bytes.size());
}

bool WriteString(pb_ostream_t* stream, const pb_field_iter_t* field, void* const* arg) {
  const auto* s = static_cast<const std::string*>(*arg);
  return pb_encode_tag_for_field(stream, field) &&
         pb_encode_string(stream, reinterpret_cast<const pb_byte_t*>(s->data()), s->size());
}

// A packed repeated sint64 field from a vector; nothing when the vector is empty.
bool WritePackedSigned(pb_ostream_t* stream, const pb_field_iter_t* field, void* const* arg) {
  const auto* values = static_cast<const std::vector<int64_t>*>(*arg);
  if (values->empty()) return true;
  size_t size = 0;
  for (int64_t v : *values) size += VarintBytes(ZigZag(v));
  if (!pb_encode_tag(stream, PB_WT_STRING, field->tag) || !pb_encode_varint(stream, size)) {
    return false;
  }
  for (int64_t v : *values) {
    if (!pb_encode_svarint(stream, v)) return false;
  }
  return true;
}

bool WritePackedUnsigned(pb_ostream_t* stream, const pb_field_iter_t* field, void* const* arg) {
  const auto* values = static_cast<const std::vector<uint32_t>*>(*arg);
  if (values->empty()) return true;
  size_t size = 0;
  for (uint32_t v : *values) size += VarintBytes(v);
  if (!pb_encode_tag(stream, PB_WT_STRING, field->tag) || !pb_encode_varint(stream, size)) {
    return false;
  }
  for (uint32_t v : *values) {
    if (!pb_encode_varint(stream, v)) return false;
  }
  return true;
}

// Where a packed column lands while decoding, with its bound.
template <typename T>
struct Sink {
  std::vector<T> values;
  size_t max_values = 0;
  bool overflow = false;
};

// Packed or not (protobuf allows both for a repeated scalar), appends every value in the field.
bool ReadSigned(pb_istream_t* stream, const pb_field_iter_t*, void** arg) {
  auto* sink = static_cast<Sink<int64_t>*>(*arg);
  while (stream->bytes_left > 0) {
    int64_t v = 0;
    if (!pb_decode_svarint(stream, &v)) return false;
    if (sink->values.size() >= sink->max_values) {
      sink->overflow = true;
      PB_RETURN_ERROR(stream, "column too long");
    }
    sink->values.push_back(v);
  }
  return true;
}

bool ReadUnsigned(pb_istream_t* stream, const pb_field_iter_t*, void** arg) {
  auto* sink = static_cast<Sink<uint32_t>*>(*arg);
  while (stream->bytes_left > 0) {
    uint32_t v = 0;
    if (!pb_decode_varint32(stream, &v)) return false;
    if (sink->values.size() >= sink->max_values) {
      sink->overflow = true;
      PB_RETURN_ERROR(stream, "scales too long");
    }
    sink->values.push_back(v);
  }
  return true;
}

struct BytesSink {
  std::string value;
  bool seen = false;
};

bool ReadBytes(pb_istream_t* stream, const pb_field_iter_t*, void** arg) {
  auto* sink = static_cast<BytesSink*>(*arg);
  sink->seen = true;
  sink->value.resize(stream->bytes_left);
  return pb_read(stream, reinterpret_cast<pb_byte_t*>(sink->value.data()), stream->bytes_left);
}

// Copies a string that was checked against the bound of dst.
template <size_t N>
void CopyString(char (&dst)[N], std::string_view src) {
  size_t n = std::min(src.size(), N - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

Status CheckString(std::string_view what, std::string_view value, size_t max_bytes, bool required) {
  if (required && value.empty()) return Status::InvalidArgument(std::string(what) + ": required");
  if (value.size() > max_bytes) {
    return Status::InvalidArgument(std::string(what) + ": " + std::to_string(value.size()) +
                                   " bytes, at most " + std::to_string(max_bytes));
  }
  if (value.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument(std::string(what) + ": contains a NUL byte");
  }
  return Status::Ok();
}

// ---- column transforms ----

// Zero runs: each run of zeros becomes 0, (run length - 1); the zeros that end the column are
// left out (the decoder knows the column's length).
std::vector<int64_t> ZeroRunEncode(const std::vector<int64_t>& v) {
  std::vector<int64_t> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size();) {
    if (v[i] != 0) {
      out.push_back(v[i++]);
      continue;
    }
    size_t j = i;
    while (j < v.size() && v[j] == 0) ++j;
    if (j == v.size()) break;
    out.push_back(0);
    out.push_back(static_cast<int64_t>(j - i - 1));
    i = j;
  }
  return out;
}

// Expands zero runs, refusing to produce more than `max_values` values. The caller pads the
// column with zeros to its length.
Status ZeroRunDecode(const std::vector<int64_t>& in, size_t max_values, const char* name,
                     std::vector<int64_t>* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    const int64_t v = in[i];
    size_t n = 1;
    if (v == 0) {
      if (i + 1 >= in.size()) {
        return Status::Corruption(std::string("batch: column ") + name +
                                  " ends inside a run of zeros");
      }
      const int64_t extra = in[++i];
      if (extra < 0 || static_cast<uint64_t>(extra) >= max_values) {
        return Status::Corruption(std::string("batch: column ") + name + " has a run of " +
                                  std::to_string(extra) + " + 1 zeros");
      }
      n = static_cast<size_t>(extra) + 1;
    }
    if (n > max_values - out->size()) {
      return Status::Corruption(std::string("batch: column ") + name + " has more than " +
                                std::to_string(max_values) + " values");
    }
    out->insert(out->end(), n, v);
  }
  return Status::Ok();
}

// Differences of the given order: order 1 keeps the first value then the steps; order 2 keeps the
// first value, the first step, then the change of step.
std::vector<int64_t> Difference(const std::vector<int64_t>& v, int order) {
  std::vector<int64_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (i == 0) {
      out[i] = v[0];
    } else if (i == 1 || order == 1) {
      out[i] = WrapSub(v[i], v[i - 1]);
    } else {
      out[i] = WrapSub(WrapSub(v[i], v[i - 1]), WrapSub(v[i - 1], v[i - 2]));
    }
  }
  return out;
}

std::vector<int64_t> Integrate(const std::vector<int64_t>& d, int order) {
  std::vector<int64_t> out(d.size());
  int64_t step = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i == 0) {
      out[i] = d[0];
    } else if (i == 1 || order == 1) {
      step = d[i];
      out[i] = WrapAdd(out[i - 1], step);
    } else {
      step = WrapAdd(step, d[i]);
      out[i] = WrapAdd(out[i - 1], step);
    }
  }
  return out;
}

int64_t FloorMod(int64_t a, int64_t m) {
  int64_t r = a % m;
  return r < 0 ? r + m : r;
}

// Course: first differences taken around the circle of `period` values, each in
// [-period/2, period/2).
std::vector<int64_t> CircularDifference(const std::vector<int64_t>& v, int64_t period) {
  std::vector<int64_t> out(v.size());
  int64_t prev = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t d = FloorMod(v[i] - prev + period / 2, period) - period / 2;
    out[i] = d;
    prev = v[i];
  }
  return out;
}

std::vector<int64_t> CircularIntegrate(const std::vector<int64_t>& d, int64_t period) {
  std::vector<int64_t> out(d.size());
  int64_t prev = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    prev = FloorMod(prev + FloorMod(d[i], period), period);
    out[i] = prev;
  }
  return out;
}

size_t PackedBytes(const std::vector<int64_t>& v) {
  if (v.empty()) return 0;
  size_t n = 0;
  for (int64_t x : v) n += VarintBytes(ZigZag(x));
  return 1 + VarintBytes(n) + n;
}

// Ratios a receiver's units make in waybill's, per column (docs/PROTOCOL.md lists them).
std::vector<Scale> CandidateScales(int column) {
  switch (column) {
    case kLat:
    case kLon:
      // minutes with 4 or 5 decimals: 1e7 / 60e4 and 1e7 / 60e5 of 1e-7 degree.
      return {{50, 3}, {5, 3}};
    case kSpeed:
      // knots with 0 or 1 decimal (1852 m / 3600 s), km/h with 0 or 1 decimal.
      return {{463, 9}, {463, 90}, {250, 9}, {25, 9}};
    default:
      return {};
  }
}

int64_t Gcd(int64_t a, int64_t b) {
  a = a < 0 ? -a : a;
  b = b < 0 ? -b : b;
  while (b != 0) {
    int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// The integers k of a column under `scale`, or false when some value does not come back exactly.
bool Unscale(const std::vector<int64_t>& values, Scale scale, std::vector<int64_t>* k) {
  k->resize(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    int64_t target = 0;
    if (__builtin_mul_overflow(values[i], static_cast<int64_t>(scale.den), &target)) return false;
    int64_t q = target / scale.num;
    int64_t r = target % scale.num;
    if (2 * (r < 0 ? -r : r) >= static_cast<int64_t>(scale.num)) q += target < 0 ? -1 : 1;
    int64_t candidate = q;
    if (ApplyScale(candidate, scale.num, scale.den) != values[i]) return false;
    (*k)[i] = candidate;
  }
  return true;
}

// Bit packing: the zigzag values at one width, least significant bit first, after a byte that
// gives the width. Pays off for columns of small values (sats, mode, hdop steps), where a varint
// would spend a whole byte on a few bits.
std::string BitPack(std::span<const int64_t> values) {
  uint64_t widest = 0;
  for (int64_t v : values) widest |= ZigZag(v);
  const int width = 64 - std::countl_zero(widest);
  std::string out(1 + (static_cast<size_t>(width) * values.size() + 7) / 8, '\0');
  out[0] = static_cast<char>(width);
  size_t bit = 8;
  for (int64_t v : values) {
    uint64_t z = ZigZag(v);
    for (int b = 0; b < width; ++b, ++bit) {
      if ((z >> b) & 1) out[bit / 8] = static_cast<char>(out[bit / 8] | (1 << (bit % 8)));
    }
  }
  return out;
}

// Reads n values of one bit-packed column at *offset in the blob and moves the offset past them.
Status BitUnpack(std::string_view blob, size_t* offset, size_t n, const char* name,
                 std::vector<int64_t>* out) {
  std::string_view bits = blob.substr(std::min(*offset, blob.size()));
  const unsigned width = bits.empty() ? 255u : static_cast<uint8_t>(bits[0]);
  const size_t size = 1 + (width * n + 7) / 8;
  if (width > 64 || bits.size() < size) {
    return Status::Corruption(std::string("batch: column ") + name + ": " +
                              std::to_string(bits.size()) + " bit-packed bytes left, too few for " +
                              std::to_string(n) + " values" +
                              (width <= 64 ? " of width " + std::to_string(width) : ""));
  }
  size_t bit = 8;
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = 0;
    for (unsigned b = 0; b < width; ++b, ++bit) {
      z |= static_cast<uint64_t>((static_cast<uint8_t>(bits[bit / 8]) >> (bit % 8)) & 1) << b;
    }
    out->push_back(static_cast<int64_t>(z >> 1) ^ -static_cast<int64_t>(z & 1));
  }
  *offset += size;
  return Status::Ok();
}

enum class Form : uint8_t { kPlain, kZeroRun, kBitPacked };

struct EncodedColumn {
  std::vector<int64_t> entries;  // all values (plain), the runs, or the head (bit-packed)
  Form form = Form::kPlain;
  std::string bits;  // kBitPacked: the values after the head
  Scale scale;
};

// The cheapest form of a transformed column. The first `head` values (the absolute start, and
// the first step of a second-order column) stay varints when the rest is bit-packed.
EncodedColumn ChooseForm(std::vector<int64_t> values, size_t head, Scale scale) {
  EncodedColumn best{values, Form::kPlain, {}, scale};
  size_t best_bytes = PackedBytes(values);
  std::vector<int64_t> runs = ZeroRunEncode(values);
  if (size_t b = PackedBytes(runs); b < best_bytes) {
    best = {std::move(runs), Form::kZeroRun, {}, scale};
    best_bytes = b;
  }
  if (values.size() > head) {
    std::vector<int64_t> first(values.begin(), values.begin() + static_cast<ptrdiff_t>(head));
    std::string bits = BitPack(std::span<const int64_t>(values).subspan(head));
    if (size_t b = PackedBytes(first) + bits.size(); b < best_bytes) {
      best = {std::move(first), Form::kBitPacked, std::move(bits), scale};
    }
  }
  return best;
}

size_t EncodedBytes(const EncodedColumn& c) {
  size_t n = PackedBytes(c.entries);
  if (c.form == Form::kBitPacked) n += c.bits.size();
  if (!c.scale.identity()) n += 2;  // about a scale triple shared by two columns
  return n;
}

// How a column's values become integers to write (by column).
std::vector<int64_t> Transform(int column, const std::vector<int64_t>& k, Scale scale) {
  switch (column) {
    case kLat:
    case kLon:
    case kTs:
      return Difference(k, 2);
    case kCourse:
      return CircularDifference(k, kCourseCircle / scale.num);
    default:
      return Difference(k, 1);
  }
}

EncodedColumn ChooseEncoding(int column, const std::vector<int64_t>& values) {
  std::vector<Scale> scales = {Scale{}};
  if (column >= kLat && column <= kHdop && !values.empty()) {
    int64_t g = 0;
    for (int64_t v : values) g = Gcd(g, v);
    if (column == kCourse) g = Gcd(g, kCourseCircle);  // keeps the circle whole
    if (g > 1 && g <= kMaxScaleTerm) scales.push_back({static_cast<uint32_t>(g), 1});
    for (Scale s : CandidateScales(column)) scales.push_back(s);
  }
  const size_t head = column == kLat || column == kLon || column == kTs ? 2 : 1;
  EncodedColumn best;
  size_t best_bytes = SIZE_MAX;
  std::vector<int64_t> k;
  for (Scale s : scales) {
    if (!Unscale(values, s, &k)) continue;
    EncodedColumn c = ChooseForm(Transform(column, k, s), head, s);
    if (size_t b = EncodedBytes(c); b < best_bytes) {
      best = std::move(c);
      best_bytes = b;
    }
  }
  return best;
}

// ---- fix bodies ----

Status ParseFixBody(const StoredEvent& event, RawFix* out) {
  out->seq = event.seq;
  out->ts_ms = event.ts_ms;
  out->ts_src = static_cast<uint32_t>(event.ts_src);
  out->fix = waybill_v1_Fix_init_zero;
  pb_istream_t stream = InputStream(event.body);
  if (!pb_decode(&stream, waybill_v1_Fix_fields, &out->fix)) {
    return Status::InvalidArgument("fix seq " + std::to_string(event.seq) +
                                   ": body does not decode: " + PB_GET_ERROR(&stream));
  }
  const waybill_v1_Fix& f = out->fix;
  if (!f.has_lat_e7 || !f.has_lon_e7 || !InGlobe(f.lat_e7, f.lon_e7)) {
    return Status::InvalidArgument("fix seq " + std::to_string(event.seq) +
                                   ": body without a position on the globe");
  }
  if (f.has_course_cdeg && f.course_cdeg >= kCourseCircle) {
    return Status::InvalidArgument("fix seq " + std::to_string(event.seq) + ": course " +
                                   std::to_string(f.course_cdeg) + " cdeg is not below 36000");
  }
  return Status::Ok();
}

std::string FixBody(const waybill_v1_Fix& fix) {
  // A fix of bounded scalars always fits its schema.
  return std::move(EncodeMessage(waybill_v1_Fix_fields, fix, "fix")).value();
}

bool ValidEventClass(uint32_t cls) { return cls >= 1 && cls <= 4; }
bool ValidTimeSource(int64_t src) { return src >= 0 && src <= 5; }

bool WriteEnvelopes(pb_ostream_t* stream, const pb_field_iter_t* field, void* const* arg) {
  const auto* events = static_cast<const std::vector<const StoredEvent*>*>(*arg);
  for (const StoredEvent* e : *events) {
    waybill_v1_Envelope env = waybill_v1_Envelope_init_zero;
    env.has_seq = env.has_ts_ms = env.has_ts_src = env.has_cls = true;
    env.seq = e->seq;
    env.ts_ms = e->ts_ms;
    env.ts_src = static_cast<uint32_t>(e->ts_src);
    env.cls = static_cast<uint32_t>(e->cls);
    env.body.funcs.encode = WriteString;
    env.body.arg = const_cast<std::string*>(&e->body);
    if (!pb_encode_tag_for_field(stream, field) ||
        !pb_encode_submessage(stream, waybill_v1_Envelope_fields, &env)) {
      return false;
    }
  }
  return true;
}

struct EnvelopeSink {
  std::vector<StoredEvent> events;
  size_t max_events = 0;
  std::string error;
};

bool ReadEnvelope(pb_istream_t* stream, const pb_field_iter_t*, void** arg) {
  auto* sink = static_cast<EnvelopeSink*>(*arg);
  if (sink->events.size() >= sink->max_events) {
    sink->error = "more than " + std::to_string(kMaxBatchEvents) + " events";
    PB_RETURN_ERROR(stream, "too many envelopes");
  }
  waybill_v1_Envelope env = waybill_v1_Envelope_init_zero;
  BytesSink body;
  env.body.funcs.decode = ReadBytes;
  env.body.arg = &body;
  if (!pb_decode(stream, waybill_v1_Envelope_fields, &env)) return false;
  std::string where = "batch: envelope seq " + std::to_string(env.seq);
  if (!env.has_seq) {
    sink->error = "batch: an envelope without a seq";
  } else if (env.cls == static_cast<uint32_t>(EventClass::kFix)) {
    sink->error = where + ": a fix in an envelope (fixes travel in the columns)";
  } else if (!env.has_cls || !ValidEventClass(env.cls)) {
    sink->error = where + ": unknown event class " + std::to_string(env.cls);
  } else if (!ValidTimeSource(env.ts_src)) {
    sink->error = where + ": unknown time source " + std::to_string(env.ts_src);
  } else if (!body.seen) {
    sink->error = where + ": no body";
  }
  if (!sink->error.empty()) PB_RETURN_ERROR(stream, "bad envelope");
  StoredEvent e;
  e.seq = env.seq;
  e.cls = static_cast<EventClass>(env.cls);
  e.ts_ms = env.ts_ms;
  e.ts_src = static_cast<hal::TimeSource>(env.ts_src);
  e.body = std::move(body.value);
  sink->events.push_back(std::move(e));
  return true;
}

Status CheckValue(const char* name, uint64_t seq, std::optional<int64_t> v, int64_t lo,
                  int64_t hi) {
  if (!v || *v < lo || *v > hi) {
    return Status::Corruption(std::string("batch: fix seq ") + std::to_string(seq) + ": " + name +
                              " " + (v ? std::to_string(*v) : std::string("beyond 64 bits")) +
                              " out of range [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "]");
  }
  return Status::Ok();
}

// How each column was written, as the decoder found it.
struct ColumnForms {
  uint32_t zero_run = 0;    // bit per column
  uint32_t bit_packed = 0;  // bit per column
  std::string_view bits;    // the bit-packed values of those columns, in column order
  size_t bits_offset = 0;   // how far the columns fitted so far have read `bits`
  bool Sent(int c, const std::vector<int64_t>& values) const {
    return !values.empty() || ((zero_run | bit_packed) >> c) & 1;
  }
};

// A column's values once its length is known: a zero-run column is padded with the zeros that
// ended it, a bit-packed one gets its packed values after its head; any other column must have
// exactly `expected` values.
Status FitColumn(int c, ColumnForms& forms, size_t expected, std::vector<int64_t>* values) {
  if (values->size() > expected) {
    return Status::Corruption(std::string("batch: column ") + kColumnNames[c] + " has " +
                              std::to_string(values->size()) + " values for " +
                              std::to_string(expected) +
                              (c >= kFirstOptional ? " fixes that have the field" : " fixes"));
  }
  if ((forms.zero_run >> c) & 1) {
    values->resize(expected, 0);
  } else if ((forms.bit_packed >> c) & 1) {
    if (Status s = BitUnpack(forms.bits, &forms.bits_offset, expected - values->size(),
                             kColumnNames[c], values);
        !s.ok()) {
      return s;
    }
  }
  if (values->size() != expected) {
    return Status::Corruption(std::string("batch: column ") + kColumnNames[c] + " has " +
                              std::to_string(values->size()) + " values for " +
                              std::to_string(expected) +
                              (c >= kFirstOptional ? " fixes that have the field" : " fixes"));
  }
  return Status::Ok();
}

// Rebuilds the fixes from decoded columns (zero runs expanded, not yet padded) and their scales.
Status RebuildFixes(uint32_t count, std::vector<int64_t> (&cols)[kColumnCount], ColumnForms& forms,
                    const Scale (&scales)[kColumnCount], std::vector<StoredEvent>* out) {
  auto fit = [&](int c, size_t expected) { return FitColumn(c, forms, expected, &cols[c]); };
  // In column order: the bit-packed values are read in that order.
  for (int c : {kSeq, kTs, kTsSrc}) {
    if (Status s = fit(c, count); !s.ok()) return s;
  }
  // Without a presence column, every fix has the optional fields whose columns are there.
  if (forms.Sent(kPresence, cols[kPresence])) {
    if (Status s = fit(kPresence, count); !s.ok()) return s;
  } else {
    int64_t mask = 0;
    for (int c = kFirstOptional; c < kColumnCount; ++c) {
      if (forms.Sent(c, cols[c])) mask |= int64_t{1} << (c - kFirstOptional);
    }
    cols[kPresence].assign(count, 0);
    if (count > 0) cols[kPresence][0] = mask;
  }
  for (int c : {kLat, kLon}) {
    if (Status s = fit(c, count); !s.ok()) return s;
  }
  std::vector<uint64_t> seqs(count);
  for (uint32_t i = 0; i < count; ++i) {
    auto step = static_cast<uint64_t>(cols[kSeq][i]);
    if (i == 0) {
      seqs[i] = step;
    } else if (cols[kSeq][i] < 0) {
      return Status::Corruption("batch: fix seqs not strictly increasing after " +
                                std::to_string(seqs[i - 1]));
    } else if (step >= UINT64_MAX - seqs[i - 1]) {
      return Status::Corruption("batch: fix seqs overflow after " + std::to_string(seqs[i - 1]));
    } else {
      seqs[i] = seqs[i - 1] + step + 1;
    }
  }
  std::vector<int64_t> ts = Integrate(cols[kTs], 2);
  std::vector<int64_t> ts_src = Integrate(cols[kTsSrc], 1);
  std::vector<int64_t> lat = Integrate(cols[kLat], 2);
  std::vector<int64_t> lon = Integrate(cols[kLon], 2);
  std::vector<int64_t> presence(count);
  int64_t mask = 0;
  for (uint32_t i = 0; i < count; ++i) {
    mask ^= cols[kPresence][i];
    if (mask < 0 || static_cast<uint64_t>(mask) > kPresenceMask) {
      return Status::Corruption("batch: fix seq " + std::to_string(seqs[i]) +
                                ": unknown presence bits " + std::to_string(mask));
    }
    presence[i] = mask;
  }
  // Optional columns: one value per fix that has the field.
  std::vector<int64_t> opt[kColumnCount];
  for (int c = kFirstOptional; c < kColumnCount; ++c) {
    size_t expected = 0;
    for (int64_t m : presence) expected += (m >> (c - kFirstOptional)) & 1;
    if (Status s = fit(c, expected); !s.ok()) return s;
    opt[c] = c == kCourse ? CircularIntegrate(cols[c], kCourseCircle / scales[c].num)
                          : Integrate(cols[c], 1);
  }
  size_t next[kColumnCount] = {};
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t seq = seqs[i];
    if (!ValidTimeSource(ts_src[i])) {
      return Status::Corruption("batch: fix seq " + std::to_string(seq) + ": unknown time source " +
                                std::to_string(ts_src[i]));
    }
    waybill_v1_Fix f = waybill_v1_Fix_init_zero;
    std::optional<int64_t> lat_e7 = ApplyScale(lat[i], scales[kLat].num, scales[kLat].den);
    std::optional<int64_t> lon_e7 = ApplyScale(lon[i], scales[kLon].num, scales[kLon].den);
    if (Status s = CheckValue("lat_e7", seq, lat_e7, -900000000, 900000000); !s.ok()) return s;
    if (Status s = CheckValue("lon_e7", seq, lon_e7, -1800000000, 1800000000); !s.ok()) return s;
    f.has_lat_e7 = f.has_lon_e7 = true;
    f.lat_e7 = static_cast<int32_t>(*lat_e7);
    f.lon_e7 = static_cast<int32_t>(*lon_e7);
    for (int c = kFirstOptional; c < kColumnCount; ++c) {
      if (((presence[i] >> (c - kFirstOptional)) & 1) == 0) continue;
      std::optional<int64_t> scaled = ApplyScale(opt[c][next[c]++], scales[c].num, scales[c].den);
      const int64_t hi = c == kCourse ? kCourseCircle - 1 : (c == kAlt ? INT32_MAX : UINT32_MAX);
      const int64_t lo = c == kAlt ? INT32_MIN : 0;
      if (Status s = CheckValue(kColumnNames[c], seq, scaled, lo, hi); !s.ok()) return s;
      const int64_t v = *scaled;
      switch (c) {
        case kAlt:
          f.has_alt_cm = true, f.alt_cm = static_cast<int32_t>(v);
          break;
        case kSpeed:
          f.has_speed_cmps = true, f.speed_cmps = static_cast<uint32_t>(v);
          break;
        case kCourse:
          f.has_course_cdeg = true, f.course_cdeg = static_cast<uint32_t>(v);
          break;
        case kHdop:
          f.has_hdop_c = true, f.hdop_c = static_cast<uint32_t>(v);
          break;
        case kSats:
          f.has_sats = true, f.sats = static_cast<uint32_t>(v);
          break;
        case kMode:
          f.has_mode = true, f.mode = static_cast<uint32_t>(v);
          break;
        case kQuality:
          f.has_quality = true, f.quality = static_cast<uint32_t>(v);
          break;
      }
    }
    StoredEvent e;
    e.seq = seq;
    e.cls = EventClass::kFix;
    e.ts_ms = ts[i];
    e.ts_src = static_cast<hal::TimeSource>(ts_src[i]);
    e.body = FixBody(f);
    out->push_back(std::move(e));
  }
  return Status::Ok();
}

Status CheckDistinctSeqs(std::vector<uint64_t> seqs, const char* what) {
  std::sort(seqs.begin(), seqs.end());
  auto dup = std::adjacent_find(seqs.begin(), seqs.end());
  if (dup != seqs.end()) {
    return Status::InvalidArgument(std::string(what) + ": seq " + std::to_string(*dup) +
                                   " appears twice");
  }
  return Status::Ok();
}

// ---- commands ----

void ToProto(const ManifestStop& stop, waybill_v1_ManifestStop* ps) {
  *ps = waybill_v1_ManifestStop_init_zero;
  ps->has_stop_id = true;
  CopyString(ps->stop_id, stop.stop_id);
  ps->has_order_id = !stop.order_id.empty();
  CopyString(ps->order_id, stop.order_id);
  ps->has_address = !stop.address.empty();
  CopyString(ps->address, stop.address);
  ps->has_window_start_ms = stop.window_start_ms != 0;
  ps->window_start_ms = stop.window_start_ms;
  ps->has_window_end_ms = stop.window_end_ms != 0;
  ps->window_end_ms = stop.window_end_ms;
  ps->has_sequence = stop.sequence != 0;
  ps->sequence = stop.sequence;
}

bool WriteStops(pb_ostream_t* stream, const pb_field_iter_t* field, void* const* arg) {
  const auto* stops = static_cast<const std::vector<ManifestStop>*>(*arg);
  for (const ManifestStop& stop : *stops) {
    waybill_v1_ManifestStop ps;
    ToProto(stop, &ps);
    if (!pb_encode_tag_for_field(stream, field) ||
        !pb_encode_submessage(stream, waybill_v1_ManifestStop_fields, &ps)) {
      return false;
    }
  }
  return true;
}

struct StopSink {
  std::vector<ManifestStop> stops;
  bool overflow = false;
};

bool ReadStop(pb_istream_t* stream, const pb_field_iter_t*, void** arg) {
  auto* sink = static_cast<StopSink*>(*arg);
  if (sink->stops.size() >= kMaxManifestStops) {
    sink->overflow = true;
    PB_RETURN_ERROR(stream, "too many stops");
  }
  waybill_v1_ManifestStop ps = waybill_v1_ManifestStop_init_zero;
  if (!pb_decode(stream, waybill_v1_ManifestStop_fields, &ps)) return false;
  ManifestStop stop;
  stop.stop_id = ps.stop_id;
  stop.order_id = ps.order_id;
  stop.address = ps.address;
  stop.window_start_ms = ps.window_start_ms;
  stop.window_end_ms = ps.window_end_ms;
  stop.sequence = ps.sequence;
  sink->stops.push_back(std::move(stop));
  return true;
}

// Called by nanopb before a oneof submessage of Command is decoded: the manifest's stops need
// their callback set inside the union.
bool PrepareCommandBody(pb_istream_t*, const pb_field_iter_t* field, void** arg) {
  if (field->tag == waybill_v1_Command_manifest_tag) {
    auto* manifest = static_cast<waybill_v1_Manifest*>(field->pData);
    manifest->stops.funcs.decode = ReadStop;
    manifest->stops.arg = *arg;
  }
  return true;
}

bool ValidDate(std::string_view d) {
  if (d.size() != 10 || d[4] != '-' || d[7] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (d[i] < '0' || d[i] > '9') return false;
  }
  int month = (d[5] - '0') * 10 + (d[6] - '0');
  int day = (d[8] - '0') * 10 + (d[9] - '0');
  return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

Status Validate(const Command& command) {
  if (Status s = CheckString("command_id", command.command_id, kMaxIdBytes, true); !s.ok()) {
    return s;
  }
  if (const auto* m = std::get_if<Manifest>(&command.body)) {
    if (Status s = CheckString("manifest_id", m->manifest_id, kMaxIdBytes, true); !s.ok()) {
      return s;
    }
    if (!ValidDate(m->date)) {
      return Status::InvalidArgument("date: \"" + m->date.substr(0, 16) +
                                     "\" is not a date YYYY-MM-DD");
    }
    if (m->stops.size() > kMaxManifestStops) {
      return Status::InvalidArgument("stops: " + std::to_string(m->stops.size()) + ", at most " +
                                     std::to_string(kMaxManifestStops));
    }
    for (size_t i = 0; i < m->stops.size(); ++i) {
      const ManifestStop& stop = m->stops[i];
      std::string at = "stops[" + std::to_string(i) + "].";
      if (Status s = CheckString(at + "stop_id", stop.stop_id, kMaxIdBytes, true); !s.ok()) {
        return s;
      }
      if (Status s = CheckString(at + "order_id", stop.order_id, kMaxIdBytes, false); !s.ok()) {
        return s;
      }
      if (Status s = CheckString(at + "address", stop.address, kMaxAddressBytes, false); !s.ok()) {
        return s;
      }
      if (stop.window_start_ms < 0 || stop.window_end_ms < 0) {
        return Status::InvalidArgument(at + "window: negative time");
      }
      if (stop.window_start_ms != 0 && stop.window_end_ms != 0 &&
          stop.window_end_ms < stop.window_start_ms) {
        return Status::InvalidArgument(
            at + "window: ends at " + std::to_string(stop.window_end_ms) +
            " ms, before it starts at " + std::to_string(stop.window_start_ms) + " ms");
      }
    }
  }
  return Status::Ok();
}

Status Validate(const CommandResult& result) {
  if (Status s = CheckString("command_id", result.command_id, kMaxIdBytes, false); !s.ok()) {
    return s;
  }
  if (Status s = CheckString("message", result.message, kMaxResultMessageBytes, false); !s.ok()) {
    return s;
  }
  return CheckString("status_json", result.status_json, kMaxStatusJsonBytes, false);
}

std::string Topic(std::string_view device, std::string_view leaf) {
  std::string t = "fleet/";
  t.append(device);
  t.push_back('/');
  t.append(leaf);
  return t;
}

}  // namespace

bool IsValidDeviceId(std::string_view device_id) {
  if (device_id.empty() || device_id.size() > kMaxDeviceIdBytes) return false;
  return std::all_of(device_id.begin(), device_id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

std::string TopicUp(std::string_view device) { return Topic(device, "up"); }
std::string TopicAck(std::string_view device) { return Topic(device, "ack"); }
std::string TopicCmd(std::string_view device) { return Topic(device, "cmd"); }
std::string TopicCmdResult(std::string_view device) { return Topic(device, "cmd/result"); }
std::string TopicStatus(std::string_view device) { return Topic(device, "status"); }

std::optional<std::string> DeviceFromTopic(std::string_view topic) {
  constexpr std::string_view kPrefix = "fleet/";
  if (!topic.starts_with(kPrefix)) return std::nullopt;
  topic.remove_prefix(kPrefix.size());
  size_t slash = topic.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view device = topic.substr(0, slash);
  std::string_view leaf = topic.substr(slash + 1);
  if (leaf != "up" && leaf != "ack" && leaf != "cmd" && leaf != "cmd/result" && leaf != "status") {
    return std::nullopt;
  }
  if (!IsValidDeviceId(device)) return std::nullopt;
  return std::string(device);
}

std::string StatusPayload(bool online, std::string_view firmware_version) {
  std::string out =
      online ? R"({"state":"online","firmware":")" : R"({"state":"offline","firmware":")";
  for (char c : firmware_version) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    } else {
      out.push_back(c);
    }
  }
  out += "\"}";
  return out;
}

Result<std::string> EncodeBatch(std::string_view device_id, bool historical,
                                std::span<const StoredEvent> events) {
  if (!IsValidDeviceId(device_id)) {
    return Status::InvalidArgument("batch: device id \"" + std::string(device_id.substr(0, 80)) +
                                   "\" is not 1-64 of [A-Za-z0-9_-]");
  }
  if (events.size() > kMaxBatchEvents) {
    return Status::InvalidArgument("batch: " + std::to_string(events.size()) + " events, at most " +
                                   std::to_string(kMaxBatchEvents));
  }
  std::vector<RawFix> fixes;
  std::vector<const StoredEvent*> others;
  std::vector<uint64_t> seqs;
  seqs.reserve(events.size());
  for (const StoredEvent& e : events) {
    seqs.push_back(e.seq);
    if (!ValidTimeSource(static_cast<int64_t>(e.ts_src))) {
      return Status::InvalidArgument("batch: event seq " + std::to_string(e.seq) +
                                     ": unknown time source");
    }
    if (e.cls == EventClass::kFix) {
      RawFix raw;
      if (Status s = ParseFixBody(e, &raw); !s.ok()) return s;
      fixes.push_back(raw);
    } else if (ValidEventClass(static_cast<uint32_t>(e.cls))) {
      others.push_back(&e);
    } else {
      return Status::InvalidArgument("batch: event seq " + std::to_string(e.seq) +
                                     ": unknown class " + std::to_string(static_cast<int>(e.cls)));
    }
  }
  if (Status s = CheckDistinctSeqs(std::move(seqs), "batch"); !s.ok()) return s;
  std::sort(fixes.begin(), fixes.end(),
            [](const RawFix& a, const RawFix& b) { return a.seq < b.seq; });

  // Column values, before transforms.
  std::vector<int64_t> values[kColumnCount];
  for (const RawFix& r : fixes) {
    const waybill_v1_Fix& f = r.fix;
    values[kSeq].push_back(static_cast<int64_t>(r.seq));
    values[kTs].push_back(r.ts_ms);
    values[kTsSrc].push_back(r.ts_src);
    values[kPresence].push_back(PresenceOf(f));
    values[kLat].push_back(f.lat_e7);
    values[kLon].push_back(f.lon_e7);
    if (f.has_alt_cm) values[kAlt].push_back(f.alt_cm);
    if (f.has_speed_cmps) values[kSpeed].push_back(f.speed_cmps);
    if (f.has_course_cdeg) values[kCourse].push_back(f.course_cdeg);
    if (f.has_hdop_c) values[kHdop].push_back(f.hdop_c);
    if (f.has_sats) values[kSats].push_back(f.sats);
    if (f.has_mode) values[kMode].push_back(f.mode);
    if (f.has_quality) values[kQuality].push_back(f.quality);
  }
  EncodedColumn cols[kColumnCount];
  uint32_t zero_runs = 0, bit_packed = 0;
  std::string bits;
  std::vector<uint32_t> scales;
  for (int c = 0; c < kColumnCount; ++c) {
    if (c == kSeq) {
      // Strictly increasing: the first seq, then the gaps minus one.
      std::vector<int64_t> gaps(values[kSeq].size());
      for (size_t i = 0; i < gaps.size(); ++i) {
        gaps[i] =
            i == 0 ? values[kSeq][0] : WrapSub(WrapSub(values[kSeq][i], values[kSeq][i - 1]), 1);
      }
      cols[c] = ChooseForm(std::move(gaps), 1, {});
    } else if (c == kPresence) {
      // The same optional fields in every fix: no column (the decoder infers the mask).
      const auto& m = values[c];
      if (std::all_of(m.begin(), m.end(), [&](int64_t v) { return v == m.front(); })) continue;
      std::vector<int64_t> x(values[c].size());
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = i == 0 ? values[c][0] : values[c][i] ^ values[c][i - 1];
      }
      cols[c] = ChooseForm(std::move(x), 1, {});
    } else {
      cols[c] = ChooseEncoding(c, values[c]);
    }
    if (cols[c].form == Form::kZeroRun) zero_runs |= 1u << c;
    if (cols[c].form == Form::kBitPacked) {
      bit_packed |= 1u << c;
      bits += cols[c].bits;
    }
    if (!cols[c].scale.identity()) {
      // Columns sharing a ratio share one triple (lat and lon nearly always do).
      Scale sc = cols[c].scale;
      bool shared = false;
      for (size_t i = 0; i < scales.size(); i += 3) {
        if (scales[i + 1] == sc.num && scales[i + 2] == sc.den) {
          scales[i] |= 1u << c;
          shared = true;
        }
      }
      if (!shared) scales.insert(scales.end(), {1u << c, sc.num, sc.den});
    }
  }

  waybill_v1_Batch batch = waybill_v1_Batch_init_zero;
  batch.has_schema_version = true;
  batch.schema_version = kSchemaVersion;
  batch.has_device_id = true;
  CopyString(batch.device_id, device_id);
  batch.has_historical = historical;
  batch.historical = historical;
  if (!fixes.empty()) {
    batch.has_fixes = true;
    waybill_v1_FixColumns& fc = batch.fixes;
    fc.has_count = true;
    fc.count = static_cast<uint32_t>(fixes.size());
    pb_callback_t* fields[kColumnCount] = {&fc.seq,  &fc.ts_ms, &fc.ts_src, &fc.presence, &fc.lat,
                                           &fc.lon,  &fc.alt,   &fc.speed,  &fc.course,   &fc.hdop,
                                           &fc.sats, &fc.mode,  &fc.quality};
    for (int c = 0; c < kColumnCount; ++c) {
      fields[c]->funcs.encode = WritePackedSigned;
      fields[c]->arg = &cols[c].entries;
    }
    fc.has_zero_run_columns = zero_runs != 0;
    fc.zero_run_columns = zero_runs;
    fc.has_bit_packed_columns = bit_packed != 0;
    fc.bit_packed_columns = bit_packed;
    if (!bits.empty()) {
      fc.bits.funcs.encode = WriteString;
      fc.bits.arg = &bits;
    }
    fc.scales.funcs.encode = WritePackedUnsigned;
    fc.scales.arg = &scales;
  }
  batch.events.funcs.encode = WriteEnvelopes;
  batch.events.arg = &others;
  Result<std::string> out = EncodeMessage(waybill_v1_Batch_fields, batch, "batch");
  if (out.ok() && out->size() > kMaxBatchBytes) {
    return Status::InvalidArgument("batch: " + std::to_string(out->size()) + " bytes for " +
                                   std::to_string(events.size()) + " events, at most " +
                                   std::to_string(kMaxBatchBytes) + ": send fewer per batch");
  }
  return out;
}

Result<DecodedBatch> DecodeBatch(std::string_view bytes) {
  if (bytes.size() > kMaxBatchBytes) {
    return Status::InvalidArgument("batch: " + std::to_string(bytes.size()) + " bytes, at most " +
                                   std::to_string(kMaxBatchBytes));
  }
  waybill_v1_Batch batch = waybill_v1_Batch_init_zero;
  Sink<int64_t> cols[kColumnCount];
  waybill_v1_FixColumns& fc = batch.fixes;
  pb_callback_t* fields[kColumnCount] = {&fc.seq,  &fc.ts_ms, &fc.ts_src, &fc.presence, &fc.lat,
                                         &fc.lon,  &fc.alt,   &fc.speed,  &fc.course,   &fc.hdop,
                                         &fc.sats, &fc.mode,  &fc.quality};
  for (int c = 0; c < kColumnCount; ++c) {
    cols[c].max_values = 2 * kMaxBatchEvents;
    fields[c]->funcs.decode = ReadSigned;
    fields[c]->arg = &cols[c];
  }
  BytesSink bit_sink;
  fc.bits.funcs.decode = ReadBytes;
  fc.bits.arg = &bit_sink;
  Sink<uint32_t> scale_sink;
  scale_sink.max_values = 3 * kColumnCount;
  fc.scales.funcs.decode = ReadUnsigned;
  fc.scales.arg = &scale_sink;
  EnvelopeSink envelopes;
  envelopes.max_events = kMaxBatchEvents;
  batch.events.funcs.decode = ReadEnvelope;
  batch.events.arg = &envelopes;

  pb_istream_t stream = InputStream(bytes);
  if (!pb_decode(&stream, waybill_v1_Batch_fields, &batch)) {
    if (!envelopes.error.empty()) return Status::Corruption(envelopes.error);
    for (int c = 0; c < kColumnCount; ++c) {
      if (cols[c].overflow) {
        return Status::Corruption(std::string("batch: column ") + kColumnNames[c] +
                                  " holds more than " + std::to_string(2 * kMaxBatchEvents) +
                                  " values");
      }
    }
    return Status::Corruption("batch of " + std::to_string(bytes.size()) +
                              " bytes does not decode: " + PB_GET_ERROR(&stream));
  }
  DecodedBatch out;
  if (!batch.has_schema_version || batch.schema_version == 0) {
    return Status::Corruption("batch: no schema_version");
  }
  if (batch.schema_version > kSchemaVersion) {
    return Status::InvalidArgument("batch: schema_version " + std::to_string(batch.schema_version) +
                                   " is newer than this decoder's " +
                                   std::to_string(kSchemaVersion));
  }
  out.schema_version = batch.schema_version;
  out.device_id = batch.device_id;
  if (!IsValidDeviceId(out.device_id)) {
    return Status::InvalidArgument("batch: device id \"" + out.device_id +
                                   "\" is not 1-64 of [A-Za-z0-9_-]");
  }
  out.historical = batch.historical;

  const uint32_t count = batch.has_fixes ? fc.count : 0;
  if (count + envelopes.events.size() > kMaxBatchEvents) {
    return Status::Corruption("batch: " + std::to_string(count) + " fixes and " +
                              std::to_string(envelopes.events.size()) + " other events, at most " +
                              std::to_string(kMaxBatchEvents) + " in all");
  }
  Scale scales[kColumnCount];
  if (scale_sink.values.size() % 3 != 0) {
    return Status::Corruption("batch: scales hold " + std::to_string(scale_sink.values.size()) +
                              " values, not triples");
  }
  constexpr uint32_t kScalable = ((1u << (kHdop + 1)) - 1) & ~((1u << kLat) - 1);
  for (size_t i = 0; i < scale_sink.values.size(); i += 3) {
    const uint32_t columns = scale_sink.values[i], num = scale_sink.values[i + 1],
                   den = scale_sink.values[i + 2];
    if (columns == 0 || (columns & ~kScalable) != 0) {
      return Status::Corruption("batch: a scale for columns " + std::to_string(columns) +
                                ", which are not all lat, lon, alt, speed, course or hdop");
    }
    if (num == 0 || den == 0 || num > kMaxScaleTerm || den > kMaxScaleTerm || num < den) {
      return Status::Corruption("batch: scale " + std::to_string(num) + "/" + std::to_string(den) +
                                " is out of range");
    }
    if (((columns >> kCourse) & 1) && (den != 1 || kCourseCircle % num != 0)) {
      return Status::Corruption("batch: scale " + std::to_string(num) + "/" + std::to_string(den) +
                                " of column course does not divide 36000");
    }
    for (int c = kLat; c <= kHdop; ++c) {
      if (((columns >> c) & 1) == 0) continue;
      if (!scales[c].identity()) {
        return Status::Corruption(std::string("batch: two scales for column ") + kColumnNames[c]);
      }
      scales[c] = {num, den};
    }
  }
  ColumnForms forms;
  forms.zero_run = fc.zero_run_columns;
  forms.bit_packed = fc.bit_packed_columns;
  if ((forms.zero_run | forms.bit_packed) >> kColumnCount) {
    return Status::Corruption("batch: zero_run_columns or bit_packed_columns name unknown columns");
  }
  if (forms.zero_run & forms.bit_packed) {
    return Status::Corruption("batch: a column is both zero-run and bit-packed");
  }
  forms.bits = bit_sink.value;
  // Expand zero runs; the lengths are checked while rebuilding.
  std::vector<int64_t> expanded[kColumnCount];
  for (int c = 0; c < kColumnCount; ++c) {
    if ((forms.zero_run >> c) & 1) {
      if (Status s = ZeroRunDecode(cols[c].values, count, kColumnNames[c], &expanded[c]); !s.ok()) {
        return s;
      }
    } else {
      expanded[c] = std::move(cols[c].values);
    }
  }
  std::vector<StoredEvent> events = std::move(envelopes.events);
  if (Status s = RebuildFixes(count, expanded, forms, scales, &events); !s.ok()) {
    return s;
  }
  if (forms.bits_offset != forms.bits.size()) {
    return Status::Corruption("batch: " + std::to_string(forms.bits.size() - forms.bits_offset) +
                              " bit-packed bytes left over");
  }
  std::sort(events.begin(), events.end(),
            [](const StoredEvent& a, const StoredEvent& b) { return a.seq < b.seq; });
  for (size_t i = 1; i < events.size(); ++i) {
    if (events[i].seq == events[i - 1].seq) {
      return Status::Corruption("batch: seq " + std::to_string(events[i].seq) + " appears twice");
    }
  }
  out.events = std::move(events);
  return out;
}

std::string EncodeAck(std::string_view device_id, std::span<const uint64_t> seqs) {
  std::vector<uint64_t> sorted(seqs.begin(), seqs.end());
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  if (sorted.size() > kMaxAckSeqs) sorted.resize(kMaxAckSeqs);
  auto msg = std::make_unique<waybill_v1_Ack>();
  *msg = waybill_v1_Ack_init_zero;
  msg->has_device_id = !device_id.empty();
  CopyString(msg->device_id, device_id.substr(0, kMaxDeviceIdBytes));
  uint64_t end = 0;  // one past the previous range
  for (size_t i = 0; i < sorted.size() && msg->ranges_count < 2 * kMaxAckRanges;) {
    size_t j = i + 1;
    while (j < sorted.size() && sorted[j] == sorted[j - 1] + 1) ++j;
    msg->ranges[msg->ranges_count++] = sorted[i] - end;
    msg->ranges[msg->ranges_count++] = j - i - 1;
    end = sorted[j - 1] + 1;
    i = j;
  }
  // Bounded by construction: 2048 varints of at most 10 bytes and a short string.
  return std::move(EncodeMessage(waybill_v1_Ack_fields, *msg, "ack")).value();
}

Result<std::vector<uint64_t>> DecodeAck(std::string_view bytes, std::string* device_id_out) {
  if (bytes.size() > kMaxAckBytes) {
    return Status::InvalidArgument("ack: " + std::to_string(bytes.size()) + " bytes, at most " +
                                   std::to_string(kMaxAckBytes));
  }
  auto msg = std::make_unique<waybill_v1_Ack>();
  *msg = waybill_v1_Ack_init_zero;
  pb_istream_t stream = InputStream(bytes);
  if (!pb_decode(&stream, waybill_v1_Ack_fields, msg.get())) {
    return Status::Corruption("ack of " + std::to_string(bytes.size()) +
                              " bytes does not decode: " + PB_GET_ERROR(&stream));
  }
  if (!IsValidDeviceId(msg->device_id)) {
    return Status::InvalidArgument(std::string("ack: device id \"") + msg->device_id +
                                   "\" is not 1-64 of [A-Za-z0-9_-]");
  }
  if (msg->ranges_count % 2 != 0) {
    return Status::Corruption("ack: ranges hold " + std::to_string(msg->ranges_count) +
                              " values, not pairs");
  }
  uint64_t total = 0;
  for (pb_size_t i = 1; i < msg->ranges_count; i += 2) {
    if (msg->ranges[i] >= kMaxAckSeqs || (total += msg->ranges[i] + 1) > kMaxAckSeqs) {
      return Status::Corruption("ack: names more than " + std::to_string(kMaxAckSeqs) +
                                " sequences");
    }
  }
  std::vector<uint64_t> seqs;
  seqs.reserve(total);
  uint64_t end = 0;  // one past the previous range
  for (pb_size_t i = 0; i < msg->ranges_count; i += 2) {
    uint64_t first = 0, last = 0;
    if ((i > 0 && end == 0) || __builtin_add_overflow(end, msg->ranges[i], &first) ||
        __builtin_add_overflow(first, msg->ranges[i + 1], &last)) {
      return Status::Corruption("ack: range " + std::to_string(i / 2) + " runs past 2^64");
    }
    for (uint64_t k = 0; k <= msg->ranges[i + 1]; ++k) seqs.push_back(first + k);
    end = last + 1;  // 0 after a range ending at 2^64 - 1: nothing may follow it
  }
  if (device_id_out != nullptr) *device_id_out = msg->device_id;
  return seqs;
}

Result<std::string> EncodeCommand(const Command& command) {
  if (Status s = Validate(command); !s.ok()) return s;
  auto msg = std::make_unique<waybill_v1_Command>();
  *msg = waybill_v1_Command_init_zero;
  msg->has_schema_version = true;
  msg->schema_version = kSchemaVersion;
  msg->has_command_id = true;
  CopyString(msg->command_id, command.command_id);
  if (const auto* m = std::get_if<Manifest>(&command.body)) {
    msg->which_body = waybill_v1_Command_manifest_tag;
    waybill_v1_Manifest& pm = msg->body.manifest;
    pm.has_manifest_id = pm.has_date = true;
    CopyString(pm.manifest_id, m->manifest_id);
    CopyString(pm.date, m->date);
    pm.stops.funcs.encode = WriteStops;
    pm.stops.arg = const_cast<std::vector<ManifestStop>*>(&m->stops);
  } else if (const auto* c = std::get_if<ConfigUpdate>(&command.body)) {
    msg->which_body = waybill_v1_Command_config_tag;
    waybill_v1_ConfigUpdate& pc = msg->body.config;
    auto set = [](const std::optional<uint32_t>& v, bool& has, uint32_t& field) {
      has = v.has_value();
      field = v.value_or(0);
    };
    set(c->min_period_ms, pc.has_min_period_ms, pc.min_period_ms);
    set(c->max_period_ms, pc.has_max_period_ms, pc.max_period_ms);
    set(c->min_distance_m, pc.has_min_distance_m, pc.min_distance_m);
    set(c->heading_change_deg, pc.has_heading_change_deg, pc.heading_change_deg);
    set(c->speed_change_kmh, pc.has_speed_change_kmh, pc.speed_change_kmh);
    set(c->stop_after_ms, pc.has_stop_after_ms, pc.stop_after_ms);
    set(c->parked_period_ms, pc.has_parked_period_ms, pc.parked_period_ms);
    set(c->quota_mb, pc.has_quota_mb, pc.quota_mb);
    set(c->health_period_s, pc.has_health_period_s, pc.health_period_s);
    set(c->keepalive_s, pc.has_keepalive_s, pc.keepalive_s);
  } else {
    msg->which_body = waybill_v1_Command_request_status_tag;
  }
  return EncodeMessage(waybill_v1_Command_fields, *msg, "command");
}

std::string PeekCommandId(std::string_view bytes) {
  if (bytes.size() > kMaxCommandBytes) return "";
  waybill_v1_CommandHeader header = waybill_v1_CommandHeader_init_zero;
  pb_istream_t stream = InputStream(bytes);
  // A failed decode may still have read the id, which comes before the body.
  (void)pb_decode(&stream, waybill_v1_CommandHeader_fields, &header);
  if (!header.has_command_id) return "";
  std::string_view id(header.command_id);
  if (id.empty() || id.size() > kMaxIdBytes) return "";
  for (char c : id) {
    if (c < 0x20 || c > 0x7e) return "";
  }
  return std::string(id);
}

Result<Command> DecodeCommand(std::string_view bytes) {
  if (bytes.size() > kMaxCommandBytes) {
    return Status::InvalidArgument("command: " + std::to_string(bytes.size()) + " bytes, at most " +
                                   std::to_string(kMaxCommandBytes));
  }
  auto msg = std::make_unique<waybill_v1_Command>();
  *msg = waybill_v1_Command_init_zero;
  StopSink stops;
  msg->cb_body.funcs.decode = PrepareCommandBody;
  msg->cb_body.arg = &stops;
  pb_istream_t stream = InputStream(bytes);
  if (!pb_decode(&stream, waybill_v1_Command_fields, msg.get())) {
    if (stops.overflow) {
      return Status::InvalidArgument("command: manifest with more than " +
                                     std::to_string(kMaxManifestStops) + " stops");
    }
    return Status::Corruption("command of " + std::to_string(bytes.size()) +
                              " bytes does not decode: " + PB_GET_ERROR(&stream));
  }
  if (!msg->has_schema_version || msg->schema_version == 0) {
    return Status::Corruption("command: no schema_version");
  }
  if (msg->schema_version > kSchemaVersion) {
    return Status::FailedPrecondition("command " + std::string(msg->command_id) +
                                      ": schema_version " + std::to_string(msg->schema_version) +
                                      " is newer than this device's " +
                                      std::to_string(kSchemaVersion) + ": refused");
  }
  Command command;
  command.command_id = msg->command_id;
  switch (msg->which_body) {
    case waybill_v1_Command_manifest_tag: {
      const waybill_v1_Manifest& pm = msg->body.manifest;
      Manifest m;
      m.manifest_id = pm.manifest_id;
      m.date = pm.date;
      m.stops = std::move(stops.stops);
      command.body = std::move(m);
      break;
    }
    case waybill_v1_Command_config_tag: {
      const waybill_v1_ConfigUpdate& pc = msg->body.config;
      ConfigUpdate c;
      auto get = [](bool has, uint32_t v) {
        return has ? std::optional<uint32_t>(v) : std::nullopt;
      };
      c.min_period_ms = get(pc.has_min_period_ms, pc.min_period_ms);
      c.max_period_ms = get(pc.has_max_period_ms, pc.max_period_ms);
      c.min_distance_m = get(pc.has_min_distance_m, pc.min_distance_m);
      c.heading_change_deg = get(pc.has_heading_change_deg, pc.heading_change_deg);
      c.speed_change_kmh = get(pc.has_speed_change_kmh, pc.speed_change_kmh);
      c.stop_after_ms = get(pc.has_stop_after_ms, pc.stop_after_ms);
      c.parked_period_ms = get(pc.has_parked_period_ms, pc.parked_period_ms);
      c.quota_mb = get(pc.has_quota_mb, pc.quota_mb);
      c.health_period_s = get(pc.has_health_period_s, pc.health_period_s);
      c.keepalive_s = get(pc.has_keepalive_s, pc.keepalive_s);
      command.body = c;
      break;
    }
    case waybill_v1_Command_request_status_tag:
      command.body = RequestStatus{};
      break;
    default:
      return Status::InvalidArgument("command " + command.command_id +
                                     ": no body this device knows (a newer command type?)");
  }
  if (Status s = Validate(command); !s.ok()) {
    return Status::Corruption("command is inconsistent: " + s.message());
  }
  return command;
}

Result<std::string> EncodeCommandResult(const CommandResult& result) {
  if (Status s = Validate(result); !s.ok()) return s;
  auto msg = std::make_unique<waybill_v1_CommandResult>();
  *msg = waybill_v1_CommandResult_init_zero;
  msg->has_command_id = !result.command_id.empty();
  CopyString(msg->command_id, result.command_id);
  msg->has_ok = true;
  msg->ok = result.ok;
  msg->has_message = !result.message.empty();
  CopyString(msg->message, result.message);
  msg->has_status_json = !result.status_json.empty();
  CopyString(msg->status_json, result.status_json);
  return EncodeMessage(waybill_v1_CommandResult_fields, *msg, "command result");
}

Result<CommandResult> DecodeCommandResult(std::string_view bytes) {
  auto msg = std::make_unique<waybill_v1_CommandResult>();
  *msg = waybill_v1_CommandResult_init_zero;
  pb_istream_t stream = InputStream(bytes);
  if (!pb_decode(&stream, waybill_v1_CommandResult_fields, msg.get())) {
    return Status::Corruption("command result of " + std::to_string(bytes.size()) +
                              " bytes does not decode: " + PB_GET_ERROR(&stream));
  }
  CommandResult result;
  result.command_id = msg->command_id;
  result.ok = msg->ok;
  result.message = msg->message;
  result.status_json = msg->status_json;
  return result;
}

}  // namespace waybill::sync
