#pragma once
// Running real programs from tests: one-shot commands with captured output, and long-running
// children (the server) that are always stopped when the test ends.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace teleread::test {

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or by the timeout
  std::string output;  // stdout and stderr interleaved
};

// Runs argv[0] with arguments; kills it after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         std::chrono::seconds timeout = std::chrono::seconds(60));

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

// A TCP port on 127.0.0.1 that was free a moment ago (for peers that need a fixed port).
uint16_t FreePort();

std::string ReadFile(const std::filesystem::path& path);
// Polls `done` every 100 ms until it holds or `seconds` have passed; whether it held.
bool WaitFor(const std::function<bool()>& done, int seconds = 20);
void WriteFile(const std::filesystem::path& path, const std::string& text);

}  // namespace teleread::test
