#include "waybill/firmware/local_api.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "kiosk_files.h"

namespace waybill::firmware {

namespace {

using nlohmann::json;

// A request field that is missing, of the wrong type or out of bounds. Thrown and caught inside
// this file only, turned into a 400 that names the field.
struct FieldError {
  std::string field;
  std::string message;
};

std::string TypeName(const json& v) { return v.type_name(); }

std::optional<std::string> OptString(const json& body, const char* field) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    throw FieldError{field, std::string("expected a string, got ") + TypeName(*it)};
  }
  return it->get<std::string>();
}

std::optional<uint32_t> OptUint(const json& body, const char* field, uint32_t max) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > max) {
    throw FieldError{field, "expected a whole number from 0 to " + std::to_string(max)};
  }
  return it->get<uint32_t>();
}

json ParseBody(const httplib::Request& req) {
  if (req.body.empty()) throw FieldError{"", "empty body: expected a JSON object"};
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::parse_error& e) {
    throw FieldError{"", "body is not valid JSON: error at byte " + std::to_string(e.byte)};
  }
  if (!body.is_object()) throw FieldError{"", "expected a JSON object, got " + TypeName(body)};
  return body;
}

// A refusal's message for the log: whatever it quotes of the request ("\"Zdenka\" is not one of
// ...") is replaced, since a driver can type a recipient's name into any field. The client's
// answer keeps the quote: the kiosk sees its own input.
std::string RedactQuoted(const std::string& message) {
  std::string out;
  bool quoted = false;
  for (char c : message) {
    if (c == '"') {
      if (!quoted) out += "\"<redacted>\"";
      quoted = !quoted;
    } else if (!quoted) {
      out.push_back(c);
    }
  }
  return out;
}

// Status messages from sync::Validate start with the field name: "order_id: 80 bytes, ...".
std::string FieldOf(const Status& s) {
  auto colon = s.message().find(':');
  return colon == std::string::npos ? "" : s.message().substr(0, colon);
}

void Reply(httplib::Response& res, int code, const json& body) {
  res.status = code;
  res.set_content(body.dump(), "application/json");
}

void ReplyError(httplib::Response& res, int code, const std::string& field,
                const std::string& message) {
  json body = {{"error", field.empty() || message.rfind(field + ":", 0) == 0
                             ? message
                             : field + ": " + message}};
  if (!field.empty()) body["field"] = field;
  Reply(res, code, body);
}

// Storage failures: the event was not stored; the app keeps it and retries.
void ReplyStoreFailure(httplib::Response& res, const Status& s) {
  int code = s.IsNoSpace() ? 507 : s.IsInvalidArgument() ? 400 : 503;
  ReplyError(res, code, s.IsInvalidArgument() ? FieldOf(s) : "",
             s.IsInvalidArgument() ? s.message() : "not stored: " + s.ToString());
}

// The kiosk page loads nothing from anywhere but the unit itself; photos are shown from blob: URLs
// and the signature review from a canvas.
constexpr const char* kKioskCsp =
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

void ServeFile(const EmbeddedFile& file, httplib::Response& res) {
  res.status = 200;
  // A firmware update changes the page: the browser asks again every time (loopback is cheap).
  res.set_header("Cache-Control", "no-cache");
  res.set_header("Content-Security-Policy", kKioskCsp);
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_content(file.body.data(), file.body.size(), std::string(file.content_type));
}

const EmbeddedFile* FindKioskFile(std::string_view name) {
  for (const EmbeddedFile& f : KioskFiles()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

json Stored(const Recorded& r) {
  return {{"stored", true},
          {"seq", r.seq},
          {"ts_ms", r.stamp.ts_ms},
          {"time_source", std::string(hal::ToString(r.stamp.src))}};
}

sync::DeliveryEvent ParseDelivery(const json& body) {
  sync::DeliveryEvent ev;
  ev.stop_id = OptString(body, "stop_id").value_or("");
  ev.order_id = OptString(body, "order_id").value_or("");
  std::optional<std::string> kind = OptString(body, "kind");
  if (!kind) {
    throw FieldError{"kind", "required: one of arrived, delivered, partial, failed, picked_up"};
  }
  std::optional<sync::DeliveryKind> k = sync::ParseDeliveryKind(*kind);
  if (!k) {
    throw FieldError{
        "kind", "\"" + *kind + "\" is not one of arrived, delivered, partial, failed, picked_up"};
  }
  ev.kind = *k;
  if (std::optional<std::string> reason = OptString(body, "reason")) {
    std::optional<sync::FailReason> r = sync::ParseFailReason(*reason);
    if (!r) {
      throw FieldError{"reason", "\"" + *reason +
                                     "\" is not one of recipient_absent, refused, "
                                     "address_not_found, access_blocked, damaged, other"};
    }
    ev.reason = *r;
  }
  ev.note = OptString(body, "note").value_or("");
  ev.items = OptUint(body, "items", 1000000);
  return ev;
}

sync::ProofOfDelivery ParseProof(const json& body, PhotoStore& photos) {
  sync::ProofOfDelivery proof;
  proof.stop_id = OptString(body, "stop_id").value_or("");
  proof.order_id = OptString(body, "order_id").value_or("");
  proof.recipient_name = OptString(body, "recipient_name").value_or("");
  auto sig = body.find("signature");
  if (sig != body.end() && !sig->is_null()) {
    if (!sig->is_object()) throw FieldError{"signature", "expected an object with strokes"};
    proof.signature_width = OptUint(*sig, "width", 10000).value_or(0);
    proof.signature_height = OptUint(*sig, "height", 10000).value_or(0);
    auto strokes = sig->find("strokes");
    if (strokes == sig->end() || !strokes->is_array()) {
      throw FieldError{"signature.strokes", "expected an array of strokes"};
    }
    for (size_t i = 0; i < strokes->size(); ++i) {
      const json& stroke = (*strokes)[i];
      std::string where = "signature.strokes[" + std::to_string(i) + "]";
      if (!stroke.is_array()) throw FieldError{where, "expected an array of [x, y] points"};
      sync::SignatureStroke points;
      for (const json& p : stroke) {
        if (!p.is_array() || p.size() != 2 || !p[0].is_number() || !p[1].is_number()) {
          throw FieldError{where, "expected points as [x, y] number pairs"};
        }
        points.push_back(
            {static_cast<int32_t>(p[0].get<double>()), static_cast<int32_t>(p[1].get<double>())});
      }
      proof.signature.push_back(std::move(points));
    }
  }
  if (std::optional<std::string> hex = OptString(body, "photo_sha256")) {
    std::optional<std::array<uint8_t, 32>> sha = ParseSha256Hex(*hex);
    if (!sha) throw FieldError{"photo_sha256", "expected 64 hex digits"};
    Result<PhotoRef> ref = photos.Find(*sha);
    if (!ref.ok()) {
      throw FieldError{"photo_sha256", ref.status().message() + "; POST it to /v1/photos first"};
    }
    proof.photo_sha256 = *sha;
    proof.photo_bytes = ref->bytes;
    proof.photo_mime = ref->mime;
  }
  return proof;
}

}  // namespace

LocalApi::LocalApi(Recorder& recorder, PhotoStore& photos, LocalApiHooks hooks)
    : recorder_(recorder),
      photos_(photos),
      hooks_(std::move(hooks)),
      server_(std::make_unique<httplib::Server>()) {
  Routes();
}

LocalApi::~LocalApi() { Stop(); }

void LocalApi::Routes() {
  httplib::Server& s = *server_;
  s.set_payload_max_length(PhotoStore::kMaxPhotoBytes + 4096);
  s.set_read_timeout(10, 0);
  s.set_write_timeout(10, 0);

  // Every JSON handler runs through this: count, parse, turn FieldErrors into 400s.
  auto json_handler = [this](auto handle) {
    return [this, handle](const httplib::Request& req, httplib::Response& res) {
      ++requests_;
      try {
        handle(req, res);
      } catch (const FieldError& e) {
        spdlog::warn("local API: rejected {} {}: {}{}{}", req.method, req.path, e.field,
                     e.field.empty() ? "" : ": ", RedactQuoted(e.message));
        ReplyError(res, 400, e.field, e.message);
      }
      if (res.status >= 400 && res.status < 500) ++rejected_;
    };
  };

  s.Post("/v1/deliveries",
         json_handler([this](const httplib::Request& req, httplib::Response& res) {
           sync::DeliveryEvent ev = ParseDelivery(ParseBody(req));
           if (hooks_.last_fix) {
             if (std::optional<hal::GnssFix> fix = hooks_.last_fix()) {
               ev.lat_e7 = fix->lat_e7;
               ev.lon_e7 = fix->lon_e7;
             }
           }
           Result<Recorded> r = recorder_.RecordDelivery(ev);
           if (!r.ok()) {
             return ReplyStoreFailure(res, r.status());
           }
           json body = Stored(*r);
           RecordAtStop({ev.stop_id, r->seq, r->stamp.ts_ms, ev.kind, ev.reason, ev.items}, body);
           Reply(res, 201, body);
         }));

  s.Post("/v1/proofs", json_handler([this](const httplib::Request& req, httplib::Response& res) {
           sync::ProofOfDelivery proof = ParseProof(ParseBody(req), photos_);
           if (proof.photo_sha256 && hooks_.photo_referenced) {
             if (Status marked = hooks_.photo_referenced(*proof.photo_sha256); !marked.ok()) {
               return ReplyStoreFailure(res, marked);
             }
           }
           Result<Recorded> r = recorder_.RecordProof(proof);
           if (!r.ok()) {
             return ReplyStoreFailure(res, r.status());
           }
           json body = Stored(*r);
           RecordAtStop({proof.stop_id, r->seq, r->stamp.ts_ms, std::nullopt,
                         sync::FailReason::kNone, std::nullopt},
                        body);
           Reply(res, 201, body);
         }));

  s.Post("/v1/photos", json_handler([this](const httplib::Request& req, httplib::Response& res) {
           Result<PhotoRef> ref = photos_.Put(req.body);
           if (!ref.ok()) {
             return ReplyStoreFailure(res, ref.status());
           }
           Reply(res, 201,
                 {{"stored", true},
                  {"sha256", ToHex(ref->sha256)},
                  {"bytes", ref->bytes},
                  {"mime", ref->mime}});
         }));

  s.Get("/v1/status", [this](const httplib::Request&, httplib::Response& res) {
    ++requests_;
    json body = hooks_.status ? hooks_.status() : json::object();
    body["api"] = {{"requests", requests_.load()}, {"rejected", rejected_.load()}};
    Reply(res, 200, body);
  });

  s.Get("/v1/manifest", [this](const httplib::Request&, httplib::Response& res) {
    ++requests_;
    std::optional<json> manifest = hooks_.manifest ? hooks_.manifest() : std::nullopt;
    if (!manifest) {
      return ReplyError(res, 404, "",
                        "no manifest received yet: the backend sends the day's stops");
    }
    Reply(res, 200, *manifest);
  });

  s.Get("/", [this](const httplib::Request&, httplib::Response& res) {
    ++requests_;
    ServeFile(*FindKioskFile("index.html"), res);
  });
  s.Get(R"(/kiosk/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    ++requests_;
    const EmbeddedFile* file = FindKioskFile(req.matches[1].str());
    if (!file) {
      ++rejected_;
      return ReplyError(res, 404, "", "no such kiosk file: " + req.matches[1].str());
    }
    ServeFile(*file, res);
  });

  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      ReplyError(res, 404, "", "no such endpoint: " + req.method + " " + req.path);
    } else if (res.status == 413) {
      ReplyError(
          res, 413, "",
          "body too large: at most " + std::to_string(PhotoStore::kMaxPhotoBytes) + " bytes");
    }
  });
}

void LocalApi::RecordAtStop(const StopUpdate& update, json& reply) {
  if (update.stop_id.empty() || !hooks_.stop_update) return;
  Status s = hooks_.stop_update(update);
  reply["stop_recorded"] = s.ok();
  if (!s.ok() && !s.IsNotFound()) {
    spdlog::warn("local API: event #{} is stored, but the status of stop {} is not: {}", update.seq,
                 update.stop_id, s.ToString());
  }
}

Status LocalApi::Start(const std::string& host, int port) {
  if (port == 0) {
    port_ = server_->bind_to_any_port(host);
  } else {
    port_ = server_->bind_to_port(host, port) ? port : -1;
  }
  if (port_ <= 0) {
    return Status::Unavailable("local API: cannot listen on " + host + ":" + std::to_string(port) +
                               " (address in use?)");
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return Status::Ok();
}

void LocalApi::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace waybill::firmware
