#include "tests/support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace teleread::test {
namespace {

pid_t Spawn(const std::vector<std::string>& argv, int out_fd) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t runner = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // A runner that dies (a sanitizer's abort) takes what it started with it: 60 orphaned ASan
    // servers once filled the machine's memory.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != runner) ::_exit(127);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(out_fd, STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, STDIN_FILENO);
    // Nothing else of the runner's: a server left behind by a failed test must not hold its
    // files or locks (a benchmark lock held by an orphan stalled every other run).
    ::close_range(3, ~0U, 0);
    // A fresh signal mask: the test runner's blocked signals must not leak into the child.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::setenv("TCP_NODELAY", "1", 0);  // DCMTK tools: Nagle off, as a tuned PACS runs
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

// Waits up to `timeout` for pid; true and *status set when it exited.
bool WaitFor(pid_t pid, std::chrono::milliseconds timeout, int* status) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    pid_t r = ::waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int ExitCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  char path[] = "/tmp/teleread-cmd-XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  pid_t pid = Spawn(argv, fd);
  ::close(fd);
  int status = 0;
  CommandResult result;
  if (!WaitFor(pid, timeout, &status)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    result.exit_code = -1;
  } else {
    result.exit_code = ExitCode(status);
  }
  result.output = ReadFile(path);
  ::unlink(path);
  return result;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) Stop(SIGKILL);
}

void ChildProcess::Start(const std::vector<std::string>& argv, const std::filesystem::path& output_file) {
  int fd = ::open(output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + output_file.string());
  pid_ = Spawn(argv, fd);
  ::close(fd);
}

bool ChildProcess::running() {
  if (pid_ <= 0) return false;
  if (::waitpid(pid_, &status_, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int ChildProcess::Stop(int sig, std::chrono::seconds timeout) {
  if (pid_ <= 0) return ExitCode(status_);
  ::kill(pid_, sig);
  if (!WaitFor(pid_, timeout, &status_)) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
  }
  pid_ = -1;
  return ExitCode(status_);
}

ScratchDir::ScratchDir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

namespace {
std::mutex reserved_mu;
std::map<uint16_t, int> reserved;  // port -> its bound socket, until released
}  // namespace

uint16_t FreePort() {
  // Bound, not listening: connections to it are refused, as to a free port; CLOEXEC so that no
  // child holds it.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("cannot find a free port");
  }
  const uint16_t port = ntohs(addr.sin_port);
  std::lock_guard<std::mutex> lock(reserved_mu);
  reserved[port] = fd;
  return port;
}

void ReleasePort(uint16_t port) {
  std::lock_guard<std::mutex> lock(reserved_mu);
  auto it = reserved.find(port);
  if (it == reserved.end()) return;
  ::close(it->second);
  reserved.erase(it);
}

size_t CountFiles(const std::filesystem::path& dir, bool recursive) {
  std::error_code ec;
  size_t n = 0;
  if (recursive) {
    for (std::filesystem::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      n += it->is_regular_file(ec) ? 1 : 0;
    }
  } else {
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      n += it->is_regular_file(ec) ? 1 : 0;
    }
  }
  return n;
}

size_t CountEntries(const std::filesystem::path& dir) {
  std::error_code ec;
  size_t n = 0;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n;
}

std::multiset<std::string> OpenFiles(int pid) {
  std::multiset<std::string> targets;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code link_ec;
    targets.insert(std::filesystem::read_symlink(it->path(), link_ec).string());
  }
  return targets;
}

size_t ThreadCount(int pid) { return CountEntries("/proc/" + std::to_string(pid) + "/task"); }

int ConnectTcp(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port));
  }
  return fd;
}

bool PeerClosed(int fd, int seconds) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, seconds * 1000) != 1) return false;
  char byte = 0;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

int CountOccurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t p = text.find(needle); !needle.empty() && p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

bool WaitFor(const std::function<bool()>& done, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

}  // namespace teleread::test
