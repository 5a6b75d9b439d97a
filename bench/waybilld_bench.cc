// waybilld's footprint while it replays a real drive at 1 Hz, as on a truck: peak resident memory
// and CPU share of one core, read from /proc. The daemon does real work meanwhile: NMEA parsing,
// sampling, durable outbox appends, health events.
//
// WAYBILL_BENCH_SECONDS shortens the 60 s run. Figures:
//   waybilld.rss_kib     peak VmRSS           (target: at most 16 MiB)
//   waybilld.cpu_pct     CPU time / wall time (target: at most 1 % of a core)
//   waybilld.fixes_recorded, waybilld.sentences  what it did meanwhile (from GET /v1/status)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace {

long ReadRssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// utime + stime in clock ticks.
long ReadCpuTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

std::string Capture(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

}  // namespace

int main() {
  const char* secs_env = std::getenv("WAYBILL_BENCH_SECONDS");
  int seconds = secs_env ? std::atoi(secs_env) : 60;
  const char* dir_env = std::getenv("WAYBILL_BENCH_DIR");
  std::string dir = std::string(dir_env ? dir_env : "/var/tmp") + "/waybilld-bench";
  std::string src = WAYBILL_SOURCE_DIR;
  std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str());
  int port = 20000 + getpid() % 20000;
  {
    std::ofstream cfg(dir + "/waybill.toml");
    cfg << "[device]\nid = \"bench-truck\"\n[storage]\ndata_dir = \"" << dir
        << "/data\"\n[api]\nport = " << port << "\n[health]\nperiod_s = 60\n";
  }

  pid_t pid = fork();
  if (pid == 0) {
    std::string board = src + "/boards/host-sim/board.toml";
    std::string config = dir + "/waybill.toml";
    std::string log = dir + "/waybilld.log";
    freopen(log.c_str(), "w", stdout);
    freopen(log.c_str(), "a", stderr);
    execl(WAYBILLD_PATH, "waybilld", "--board", board.c_str(), "--config", config.c_str(),
          "--replay-speed", "1", static_cast<char*>(nullptr));
    _exit(127);
  }

  // Let it open the outbox and reach its steady state before measuring.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  long ticks0 = ReadCpuTicks(pid);
  auto t0 = std::chrono::steady_clock::now();
  long peak_rss = ReadRssKib(pid);
  for (int i = 0; i < seconds; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    peak_rss = std::max(peak_rss, ReadRssKib(pid));
  }
  long ticks1 = ReadCpuTicks(pid);
  double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string status =
      Capture("curl -fsS http://127.0.0.1:" + std::to_string(port) + "/v1/status");
  kill(pid, SIGTERM);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  if (ticks0 < 0 || ticks1 < 0 || peak_rss < 0) {
    std::fprintf(stderr, "waybilld bench: waybilld did not run; see %s/waybilld.log\n",
                 dir.c_str());
    return 1;
  }
  double cpu_s = static_cast<double>(ticks1 - ticks0) / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::printf("figure waybilld.rss_kib %ld KiB\n", peak_rss);
  std::printf("figure waybilld.cpu_pct %.2f %%\n", 100.0 * cpu_s / wall_s);
  auto number_after = [&](const std::string& key) -> long {
    size_t at = status.find("\"" + key + "\":");
    return at == std::string::npos ? -1 : std::atol(status.c_str() + at + key.size() + 3);
  };
  std::printf("figure waybilld.fixes_received %ld fixes\n", number_after("received"));
  std::printf("figure waybilld.fixes_kept %ld fixes\n", number_after("kept"));
  std::printf("figure waybilld.exit_code %d code\n",
              WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus));
  return 0;
}
