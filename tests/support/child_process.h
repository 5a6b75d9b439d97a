// Test support: a program of the build as a child process, its output in a log file.
//
// The destructor kills (SIGKILL) and reaps a child still running, so a failed assertion never
// leaves a process behind; set_die_with_parent() also covers a test process that is itself killed
// (by CTest's timeout), for children that would otherwise run on (an emulated board). Children read
// /dev/null. Not thread-safe: one test thread drives it.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace waybill::testing {

inline std::string ReadWholeFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // The child gets SIGKILL when the thread that spawned it exits (PR_SET_PDEATHSIG, kept across
  // exec): spawn such children from the test's main thread.
  void set_die_with_parent(bool on) { die_with_parent_ = on; }

  // Starts `argv[0]` with `argv`, stdout and stderr written to `log` (truncated). Returns false
  // if a child is still running or fork fails; a program that cannot be executed exits 127.
  bool Spawn(const std::vector<std::string>& argv, const std::filesystem::path& log) {
    if (pid_ > 0 || argv.empty()) return false;
    const pid_t parent = getpid();
    // What the test printed but stdio still buffers would otherwise be written again by the
    // child (freopen flushes the inherited buffer).
    std::fflush(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      if (die_with_parent_) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);  // the parent died before prctl
      }
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) dup2(devnull, STDIN_FILENO);
      FILE* out = freopen(log.c_str(), "w", stdout);
      FILE* err = freopen(log.c_str(), "a", stderr);
      (void)out;
      (void)err;
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    return pid_ > 0;
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  // Reaps the child if it has exited: returns its waitpid status, or nullopt if it still runs
  // (or was never started).
  std::optional<int> Poll() {
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    return std::nullopt;
  }

  // Sends `sig` and waits at most `timeout_ms`; returns the waitpid status, or nullopt if it
  // still runs.
  std::optional<int> Stop(int sig, int timeout_ms = 10'000) {
    if (pid_ <= 0) return std::nullopt;
    kill(pid_, sig);
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
      if (std::optional<int> status = Poll()) return status;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
  }

 private:
  pid_t pid_ = -1;
  bool die_with_parent_ = false;
};

}  // namespace waybill::testing
