// waybillctl status: the running waybilld's own view, read from its local API, with a verdict per
// part a tech checks after flashing or on a service visit.
//
//   waybillctl status [--api http://127.0.0.1:8080] [--json]
//
// Exit codes: 0 all parts healthy, 3 some part needs attention (each such line says why and what
// to look at), 1 the daemon did not answer (not running, another port, the API bound elsewhere).
#include <httplib.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"

namespace waybill::ctl {

namespace {

using nlohmann::json;

struct StatusArgs {
  std::string api = "http://127.0.0.1:8080";
  bool json = false;
  int timeout_s = 5;
};

struct Line {
  std::string part;
  std::string text;
  bool attention = false;
};

template <typename T>
T Value(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

// What a tech reads, part by part, from the status the daemon answers (docs/FLASHING.md lists
// the fields). Pure, so that the verdicts are testable without a daemon.
std::vector<Line> Verdicts(const json& st) {
  std::vector<Line> lines;
  lines.push_back({"device", Value<std::string>(st, "device_id", "?") + " on board " +
                                 Value<std::string>(st, "board", "?") + ", waybilld " +
                                 Value<std::string>(st, "version", "?") + ", up " +
                                 std::to_string(Value<int64_t>(st, "uptime_s", 0)) + " s"});

  const json g = st.value("gnss", json::object());
  int mode = Value<int>(g, "mode", 1);
  uint64_t sentences = Value<uint64_t>(g, "sentences", 0);
  std::string gnss = std::string(mode >= 3   ? "3D fix"
                                 : mode == 2 ? "2D fix"
                                             : "no fix") +
                     ", " + std::to_string(Value<uint64_t>(g, "sats", 0)) + " satellites, " +
                     std::to_string(sentences) + " sentences from " +
                     Value<std::string>(g, "source", "?") + ", time from " +
                     Value<std::string>(g, "time_source", "?");
  if (sentences == 0) {
    lines.push_back(
        {"gnss", gnss + ": the receiver says nothing (wrong port, baud or wiring?)", true});
  } else if (mode < 2) {
    lines.push_back({"gnss", gnss + ": no fix yet (indoors, or the antenna?)", true});
  } else {
    lines.push_back({"gnss", gnss});
  }

  const json o = st.value("outbox", json::object());
  std::string outbox = std::to_string(Value<uint64_t>(o, "events", 0)) + " events waiting (" +
                       std::to_string(Value<uint64_t>(o, "deliveries", 0)) + " deliveries, " +
                       std::to_string(Value<uint64_t>(o, "proofs", 0)) +
                       " proofs), next sequence " +
                       std::to_string(Value<uint64_t>(o, "next_seq", 0));
  json alarms = o.value("alarms", json::array());
  uint64_t refused = Value<uint64_t>(o, "refused", 0);
  if (alarms.is_array() && !alarms.empty()) {
    lines.push_back({"outbox", outbox + "; alarm: " + alarms[0].get<std::string>(), true});
  } else if (refused > 0) {
    lines.push_back({"outbox",
                     outbox + "; " + std::to_string(refused) +
                         " events refused for lack of room (quota or disk full)",
                     true});
  } else {
    lines.push_back({"outbox", outbox});
  }

  const json s = st.value("storage", json::object());
  if (s.contains("error")) {
    lines.push_back({"storage", Value<std::string>(s, "error", "?"), true});
  } else {
    std::string storage = Value<std::string>(s, "data_dir", "?") + ", " +
                          std::to_string(Value<uint64_t>(s, "free_bytes", 0) >> 20) + " MiB free";
    bool read_only = Value<bool>(s, "read_only", false);
    lines.push_back({"storage",
                     read_only ? storage + ", READ-ONLY: nothing new can be stored" : storage,
                     read_only});
  }

  const json u = st.value("uplink", json::object());
  if (u.value("broker", json()).is_null()) {
    lines.push_back(
        {"uplink", "none configured: the unit records and does not send ([uplink] broker)", true});
  } else {
    std::string broker = Value<std::string>(u, "broker", "?");
    std::string acked = std::to_string(Value<uint64_t>(u, "events_acked", 0)) + " events acked";
    std::string last_ack = Value<std::string>(u, "last_ack", "never");
    if (Value<bool>(u, "connected", false)) {
      lines.push_back(
          {"uplink", "connected to " + broker + ", " + acked + ", last ack " + last_ack});
    } else {
      std::string why = Value<std::string>(u, "last_connect_error", "");
      lines.push_back({"uplink",
                       "NOT connected to " + broker + (why.empty() ? "" : ": " + why) + "; " +
                           acked + ", last ack " + last_ack,
                       true});
    }
  }
  return lines;
}

void RunStatus(const StatusArgs& a) {
  httplib::Client client(a.api);
  client.set_connection_timeout(a.timeout_s);
  client.set_read_timeout(a.timeout_s);
  auto res = client.Get("/v1/status");
  if (!res) {
    std::fprintf(stderr,
                 "waybillctl status: no answer from %s (%s): is waybilld running, and is this its "
                 "[api] host and port?\n",
                 a.api.c_str(), httplib::to_string(res.error()).c_str());
    return SetExitCode(1);
  }
  json st = json::parse(res->body, nullptr, false);
  if (res->status != 200 || !st.is_object()) {
    std::fprintf(stderr, "waybillctl status: %s answered %d, not a status: %.200s\n", a.api.c_str(),
                 res->status, res->body.c_str());
    return SetExitCode(1);
  }
  std::vector<Line> lines = Verdicts(st);
  bool attention = false;
  for (const Line& l : lines) attention = attention || l.attention;
  if (a.json) {
    json out = json::array();
    for (const Line& l : lines) {
      out.push_back({{"part", l.part}, {"text", l.text}, {"attention", l.attention}});
    }
    std::printf("%s\n",
                json{{"healthy", !attention}, {"parts", out}, {"status", st}}.dump(2).c_str());
  } else {
    for (const Line& l : lines) {
      std::printf("%-2s %-8s %s\n", l.attention ? "!!" : "ok", l.part.c_str(), l.text.c_str());
    }
  }
  SetExitCode(attention ? 3 : 0);
}

}  // namespace

void RegisterStatus(CLI::App& app) {
  auto args = std::make_shared<StatusArgs>();
  CLI::App* s = app.add_subcommand(
      "status",
      "The running waybilld's view (GNSS, outbox, storage, uplink) with a verdict per part.\n"
      "Exit 0: healthy; 3: a part needs attention (marked !!); 1: waybilld did not answer.");
  s->add_option("--api", args->api, "waybilld's local API (default http://127.0.0.1:8080)");
  s->add_flag("--json", args->json, "The verdicts and the whole status as JSON");
  s->add_option("--timeout", args->timeout_s, "Seconds to wait for an answer (default 5)")
      ->check(CLI::Range(1, 300));
  s->callback([args] { RunStatus(*args); });
}

}  // namespace waybill::ctl
