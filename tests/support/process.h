#pragma once
// Running real programs from tests: one-shot commands with captured output, and long-running
// children (the server) that are always stopped when the test ends.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace teleread::test {

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or by the timeout
  std::string output;  // stdout and stderr interleaved
};

// Runs argv[0] with arguments; kills it after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(60));

// A child process whose stdout and stderr go to a file. The destructor kills it.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  void Start(const std::vector<std::string>& argv, const std::filesystem::path& output_file);
  bool running();
  // Sends `sig` and waits for the exit; returns the exit code (-1 when killed by a signal).
  int Stop(int sig, std::chrono::seconds timeout = std::chrono::seconds(30));
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
};

// A fresh directory under $TMPDIR, removed with its contents by the destructor.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix = "teleread-test");
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A TCP port on 127.0.0.1 for a peer that needs a fixed port (storescp, Orthanc, movescu's +P).
// The allocator keeps the port's socket bound, so no other test (in this process or in a parallel
// ctest process) can be given it, until ReleasePort hands it over right before the peer binds it.
uint16_t FreePort();
// Closes the reserved socket of `port` (no-op when not reserved); call just before starting the
// peer that listens on it. The server under test needs none of this: it binds port 0 itself.
void ReleasePort(uint16_t port);

std::string ReadFile(const std::filesystem::path& path);
// Regular files in `dir` (and below, when `recursive`); 0 when it does not exist.
size_t CountFiles(const std::filesystem::path& dir, bool recursive = false);
// Entries of any kind in `dir` (e.g. /proc/PID/fd); 0 when it cannot be read.
size_t CountEntries(const std::filesystem::path& dir);
// Leak probes for a running process: what its descriptors point to, and its thread count.
std::multiset<std::string> OpenFiles(int pid);
size_t ThreadCount(int pid);
// A plain TCP connection to 127.0.0.1:port (for peers that send nothing, or bytes of our own);
// fails the test when it cannot connect. The caller closes it.
int ConnectTcp(uint16_t port);
// Whether the peer of `fd` closed or reset the connection within `seconds`, without sending
// anything first.
bool PeerClosed(int fd, int seconds);
// How often `needle` occurs in `text` (log lines, tool output).
int CountOccurrences(const std::string& text, const std::string& needle);
// Polls `done` every 100 ms until it holds or `seconds` have passed; whether it held.
bool WaitFor(const std::function<bool()>& done, int seconds = 20);
void WriteFile(const std::filesystem::path& path, const std::string& text);

}  // namespace teleread::test
