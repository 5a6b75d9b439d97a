#include "waybill/bridge/json_body.h"

#include <charconv>
#include <ctime>

#include "waybill/hal/files.h"
#include "waybill/sync/events.h"

namespace waybill::bridge {

namespace {

// A JSON writer for the fixed shape of the bodies: far cheaper than building a DOM per event,
// which the forwarder would otherwise do for every event it sends. Numbers with a unit are
// written from their integer form (lat_e7, speed_cmps...) in decimal, exactly.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(*out) {}

  Writer& Key(std::string_view key) {
    Comma();
    out_ += '"';
    out_ += key;  // keys are ours: plain ASCII
    out_ += "\":";
    fresh_ = true;
    return *this;
  }
  Writer& Open(char c) {
    Comma();
    out_ += c;
    fresh_ = true;
    return *this;
  }
  Writer& Close(char c) {
    out_ += c;
    fresh_ = false;
    return *this;
  }
  Writer& Str(std::string_view s) {
    Comma();
    out_ += '"';
    Escape(s);
    out_ += '"';
    return *this;
  }
  Writer& Int(int64_t v) {
    Comma();
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, end);
    return *this;
  }
  Writer& Bool(bool v) {
    Comma();
    out_ += v ? "true" : "false";
    return *this;
  }
  // value / 10^decimals, exactly, without trailing zeros: Fixed(481371000, 7) = 48.1371.
  Writer& Fixed(int64_t value, int decimals) {
    Comma();
    uint64_t magnitude = value < 0 ? 0 - static_cast<uint64_t>(value) : value;
    uint64_t scale = 1;
    for (int i = 0; i < decimals; ++i) scale *= 10;
    if (value < 0) out_ += '-';
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, magnitude / scale);
    out_.append(buf, end);
    uint64_t fraction = magnitude % scale;
    if (fraction != 0) {
      char digits[20];
      for (int i = decimals - 1; i >= 0; --i) {
        digits[i] = static_cast<char>('0' + fraction % 10);
        fraction /= 10;
      }
      int n = decimals;
      while (n > 0 && digits[n - 1] == '0') --n;
      out_ += '.';
      out_.append(digits, n);
    }
    return *this;
  }

 private:
  void Comma() {
    if (!fresh_ && !out_.empty()) {
      char last = out_.back();
      if (last != '{' && last != '[' && last != ':') out_ += ',';
    }
    fresh_ = false;
  }

  // JSON string escaping; bytes that are not valid UTF-8 become U+FFFD: text comes from trucks.
  void Escape(std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (size_t i = 0; i < s.size();) {
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) {
        if (c == '"' || c == '\\') {
          out_ += '\\';
          out_ += static_cast<char>(c);
        } else if (c < 0x20) {
          out_ += "\\u00";
          out_ += kHex[c >> 4];
          out_ += kHex[c & 15];
        } else {
          out_ += static_cast<char>(c);
        }
        ++i;
        continue;
      }
      size_t n = c >= 0xf0 ? (c <= 0xf4 ? 4 : 0) : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
      bool valid = n > 0 && i + n <= s.size();
      uint32_t cp = n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
      for (size_t k = 1; valid && k < n; ++k) {
        unsigned char cc = static_cast<unsigned char>(s[i + k]);
        valid = (cc & 0xc0) == 0x80;
        cp = (cp << 6) | (cc & 0x3f);
      }
      if (valid) {
        // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
        valid = (n == 2 && cp >= 0x80) || (n == 3 && cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff)) ||
                (n == 4 && cp >= 0x10000 && cp <= 0x10ffff);
      }
      if (valid) {
        out_.append(s.data() + i, n);
        i += n;
      } else {
        out_ += "\xef\xbf\xbd";  // U+FFFD
        ++i;
      }
    }
  }

  std::string& out_;
  bool fresh_ = true;
};

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size())
      n |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

void Position(Writer& w, const hal::GnssFix& f) {
  w.Key("position").Open('{');
  w.Key("lat").Fixed(f.lat_e7, 7).Key("lon").Fixed(f.lon_e7, 7);
  w.Key("mode").Int(static_cast<int>(f.mode));
  if (f.alt_cm) w.Key("alt_m").Fixed(*f.alt_cm, 2);
  if (f.speed_cmps) w.Key("speed_kmh").Fixed(static_cast<int64_t>(*f.speed_cmps) * 36, 3);
  if (f.course_cdeg) w.Key("course_deg").Fixed(*f.course_cdeg, 2);
  if (f.hdop_c) w.Key("hdop").Fixed(*f.hdop_c, 2);
  if (f.sats) w.Key("sats").Int(*f.sats);
  if (f.quality != 0) w.Key("quality").Int(f.quality);
  w.Close('}');
}

void Delivery(Writer& w, const sync::DeliveryEvent& d) {
  w.Key("delivery").Open('{');
  w.Key("stop_id").Str(d.stop_id).Key("order_id").Str(d.order_id);
  w.Key("kind").Str(sync::ToString(d.kind));
  if (d.reason != sync::FailReason::kNone) w.Key("reason").Str(sync::ToString(d.reason));
  if (!d.note.empty()) w.Key("note").Str(d.note);
  if (d.lat_e7 && d.lon_e7) w.Key("lat").Fixed(*d.lat_e7, 7).Key("lon").Fixed(*d.lon_e7, 7);
  if (d.items) w.Key("items").Int(*d.items);
  w.Close('}');
}

// The device signature travels with the proof (base64 of its DER) so that the backend keeps the
// evidence and can check it again itself (docs/PROOFS.md); "signature_verified" says whether this
// bridge checked it against the device's certificate before forwarding.
void Proof(Writer& w, const sync::ProofOfDelivery& p, bool signature_verified) {
  w.Key("proof").Open('{');
  w.Key("stop_id").Str(p.stop_id).Key("order_id").Str(p.order_id);
  w.Key("recipient_name").Str(p.recipient_name);
  w.Key("signature").Open('{');
  w.Key("width").Int(p.signature_width).Key("height").Int(p.signature_height);
  w.Key("strokes").Open('[');
  for (const sync::SignatureStroke& stroke : p.signature) {
    w.Open('[');
    for (const sync::SignaturePoint& pt : stroke) w.Open('[').Int(pt.x).Int(pt.y).Close(']');
    w.Close(']');
  }
  w.Close(']').Close('}');
  if (p.photo_sha256) {
    w.Key("photo").Open('{');
    w.Key("sha256").Str(hal::ToHex(*p.photo_sha256));
    w.Key("bytes").Int(static_cast<int64_t>(p.photo_bytes)).Key("mime").Str(p.photo_mime);
    w.Close('}');
  }
  if (!p.device_signature.empty()) w.Key("device_signature").Str(Base64(p.device_signature));
  w.Key("signature_verified").Bool(signature_verified);
  w.Close('}');
}

void Health(Writer& w, const sync::Health& h) {
  w.Key("health").Open('{');
  w.Key("uptime_s").Int(static_cast<int64_t>(h.uptime_s));
  w.Key("outbox_events").Int(static_cast<int64_t>(h.outbox_events));
  w.Key("outbox_bytes").Int(static_cast<int64_t>(h.outbox_bytes));
  w.Key("free_bytes").Int(static_cast<int64_t>(h.free_bytes));
  w.Key("gnss_mode").Int(h.gnss_mode);
  w.Key("nmea_rejected").Int(static_cast<int64_t>(h.nmea_rejected));
  w.Key("ignition_on").Bool(h.ignition_on);
  w.Key("storage_read_only").Bool(h.storage_read_only);
  w.Close('}');
}

void Event(Writer& w, const InboxEvent& e) {
  w.Open('{');
  w.Key("id").Str(e.device + ":" + std::to_string(e.event.seq));
  w.Key("device").Str(e.device);
  w.Key("seq").Int(static_cast<int64_t>(e.event.seq));
  w.Key("class").Str(sync::ToString(e.event.cls));
  w.Key("time").Str(Iso8601Ms(e.event.ts_ms));
  w.Key("time_ms").Int(e.event.ts_ms);
  w.Key("time_source").Str(hal::ToString(e.event.ts_src));
  w.Key("historical").Bool(e.historical);
  w.Key("received_at").Str(Iso8601Ms(e.received_ms));
  auto fail = [&](const Status& s) { w.Key("error").Str(s.message()); };
  switch (e.event.cls) {
    case sync::EventClass::kFix: {
      auto f = sync::DecodeFix(e.event.body);
      f.ok() ? Position(w, *f) : fail(f.status());
      break;
    }
    case sync::EventClass::kDelivery: {
      auto d = sync::DecodeDelivery(e.event.body);
      d.ok() ? Delivery(w, *d) : fail(d.status());
      break;
    }
    case sync::EventClass::kProofOfDelivery: {
      auto p = sync::DecodeProof(e.event.body);
      p.ok() ? Proof(w, *p, e.signature_verified) : fail(p.status());
      break;
    }
    case sync::EventClass::kHealth: {
      auto h = sync::DecodeHealth(e.event.body);
      h.ok() ? Health(w, *h) : fail(h.status());
      break;
    }
  }
  w.Close('}');
}

}  // namespace

std::string Iso8601Ms(int64_t unix_ms) {
  int64_t secs = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
  int ms = static_cast<int>(unix_ms - secs * 1000);
  time_t t = static_cast<time_t>(secs);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

std::string RequestBody(const ForwardBatch& batch) {
  std::string out;
  out.reserve(64 + batch.events.size() * 330);
  Writer w(&out);
  w.Open('{');
  w.Key("route").Str(ToString(batch.route));
  w.Key("batch").Str(batch.idempotency_key);
  w.Key("events").Open('[');
  for (const InboxEvent& e : batch.events) Event(w, e);
  w.Close(']').Close('}');
  return out;
}

}  // namespace waybill::bridge
