#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "server/store/direct_file.h"
#include "tests/support/asan.h"
#include "tests/support/direct_probe.h"
#include "tests/support/process.h"
#include "tests/support/skip.h"

using namespace teleread;
using test::Pattern;
using test::TakesDirect;

namespace {

// Pages of `path` in the page cache (mincore).
size_t ResidentPages(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size == 0) {
    ::close(fd);
    return 0;
  }
  void* map = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  REQUIRE(map != MAP_FAILED);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in((static_cast<size_t>(size) + page - 1) / page);
  REQUIRE(::mincore(map, static_cast<size_t>(size), in.data()) == 0);
  ::munmap(map, static_cast<size_t>(size));
  size_t resident = 0;
  for (unsigned char c : in) resident += c & 1;
  return resident;
}

// read_bytes of /proc/self/io: bytes this process made the kernel read from the device.
uint64_t DeviceReadBytes() {
  std::ifstream io("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == "read_bytes:") return value;
  }
  return UINT64_MAX;
}

// A write(2) that fails on cue: the `fail_at`-th call (1-based) behaves as `fault` says.
enum class Fault { kEinval, kShort, kZero, kEnospc };
Fault g_fault = Fault::kEinval;
int g_fail_at = 0, g_calls = 0;
ssize_t FaultyWrite(int fd, const void* data, size_t n, off_t offset) {
  if (++g_calls != g_fail_at) return ::pwrite(fd, data, n, offset);
  switch (g_fault) {
    case Fault::kEinval:
      errno = EINVAL;
      return -1;
    case Fault::kZero:
      return 0;
    case Fault::kEnospc:
      errno = ENOSPC;
      return -1;
    case Fault::kShort: {  // 1.5 blocks written: an unaligned cut, as a device could leave it
      const int flags = ::fcntl(fd, F_GETFL);
      REQUIRE(::fcntl(fd, F_SETFL, flags & ~O_DIRECT) == 0);
      const ssize_t done = ::pwrite(fd, data, std::min<size_t>(n, 6144), offset);
      REQUIRE(::fcntl(fd, F_SETFL, flags) == 0);
      return done;
    }
  }
  return -1;
}

}  // namespace

TEST_CASE("a direct file holds exactly the bytes appended, whatever their sizes", "[store][direct]") {
  test::ScratchDir dir;
  if (!TakesDirect(dir.path())) TELEREAD_SKIP("the scratch directory's file system refuses O_DIRECT");
  const size_t chunk = DirectFile::kChunk, align = DirectFile::kAlign;
  unsigned seed = 1;
  for (size_t head : {DirectFile::kHead, size_t{0}}) {
    for (bool direct : {true, false}) {
      for (size_t size :
           {size_t{0}, size_t{1}, align - 1, align, align + 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 17}) {
        INFO("head " << head << ", direct " << direct << ", " << size << " bytes");
        const std::string bytes = Pattern(size, seed++);
        const std::filesystem::path path = dir.path() / ("f" + std::to_string(seed));
        DirectFile file;
        REQUIRE(file.Create(path, direct, head) == 0);
        // Pieces of changing sizes, as DCMTK hands them over (a PDV at a time, a header element).
        std::mt19937 rng(seed);
        for (size_t at = 0; at < size;) {
          const size_t n = std::min<size_t>(size - at, 1 + rng() % (align * 40));
          REQUIRE(file.Append(bytes.data() + at, n) == 0);
          at += n;
        }
        CHECK(file.size() == size);
        // Which way the bytes went: past the head, every whole block direct.
        CHECK(file.direct() == (direct && size >= head));
        const uint64_t blocks = direct && size > head ? (size - head) / align * align : 0;
        REQUIRE(file.Finish() == 0);
        CHECK(file.direct_bytes() == blocks);
        CHECK(std::filesystem::file_size(path) == size);
        CHECK(test::ReadFile(path) == bytes);
      }
    }
  }
}

TEST_CASE("a direct file's bytes do not pass through the page cache", "[store][direct]") {
  test::ScratchDir dir;
  if (!test::DirectWritesSkipCache(dir.path())) {
    TELEREAD_SKIP("the scratch directory's file system does not keep O_DIRECT writes out of the page cache");
  }
  const std::filesystem::path path = dir.path() / "object";
  DirectFile file;
  REQUIRE(file.Create(path) == 0);
  const std::string bytes = Pattern(3 * DirectFile::kChunk + 17, 7);
  REQUIRE(file.Append(bytes.data(), bytes.size()) == 0);
  if (!file.direct()) TELEREAD_SKIP("the scratch directory's file system refuses O_DIRECT");
  const uint64_t read_before = DeviceReadBytes();
  REQUIRE(file.Finish() == 0);
  // The last partial block lies past the end of the file: nothing read back from the device.
  if (read_before != UINT64_MAX) CHECK(DeviceReadBytes() == read_before);
  // The head (written the ordinary way for the parse that reads it next), and the last, partial page.
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t resident = ResidentPages(path);
  CHECK(resident >= DirectFile::kHead / page);
  CHECK(resident <= DirectFile::kHead / page + 1);
  CHECK(test::ReadFile(path) == bytes);

  // Without a head (its writer keeps it in memory for the parse): only the last, partial page.
  const std::filesystem::path headless = dir.path() / "headless";
  DirectFile second;
  REQUIRE(second.Create(headless, true, 0) == 0);
  REQUIRE(second.Append(bytes.data(), bytes.size()) == 0);
  REQUIRE(second.direct());
  REQUIRE(second.Finish() == 0);
  CHECK(second.direct_bytes() == bytes.size() / DirectFile::kAlign * DirectFile::kAlign);
  CHECK(ResidentPages(headless) <= 1);
  CHECK(test::ReadFile(headless) == bytes);
}

TEST_CASE("a direct file reports a failed disk write from the Append that made it", "[store][direct]") {
  test::ScratchDir dir;
  // RLIMIT_FSIZE refuses writes past it (EFBIG), on any file system; SIGXFSZ ignored meanwhile.
  struct rlimit old {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  void (*old_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old;
  limit.rlim_cur = DirectFile::kHead + DirectFile::kChunk + DirectFile::kAlign;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  const std::string bytes = Pattern(4 * DirectFile::kChunk, 9);
  int append_err = 0, finish_err = 0;
  {
    DirectFile file;
    REQUIRE(file.Create(dir.path() / "object") == 0);
    for (size_t at = 0; at < bytes.size() && append_err == 0; at += 1000) {
      append_err = file.Append(bytes.data() + at, std::min<size_t>(1000, bytes.size() - at));
    }
    finish_err = file.Finish();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  // Told while the object arrives (the receiver then discards the rest), not only at the end.
  CHECK(append_err == EFBIG);
  CHECK(finish_err != 0);
}

TEST_CASE("a direct write refused, cut short or writing nothing goes on the ordinary way, and ENOSPC is final",
          "[store][direct]") {
  test::ScratchDir dir;
  if (!TakesDirect(dir.path())) TELEREAD_SKIP("the scratch directory's file system refuses O_DIRECT");
  const size_t size = DirectFile::kHead + 3 * DirectFile::kChunk + 17;
  const std::string bytes = Pattern(size, 11);
  int n = 0;
  for (Fault fault : {Fault::kEinval, Fault::kShort, Fault::kZero, Fault::kEnospc}) {
    for (int fail_at : {1, 3}) {  // the first direct write, the last whole-chunk one
      INFO("fault " << static_cast<int>(fault) << " at direct write " << fail_at);
      g_fault = fault;
      g_fail_at = fail_at;
      g_calls = 0;
      const std::filesystem::path path = dir.path() / ("f" + std::to_string(++n));
      DirectFile file;
      file.set_write_for_test(&FaultyWrite);
      REQUIRE(file.Create(path) == 0);
      int err = 0;
      for (size_t at = 0; at < size && err == 0; at += 10000) {
        err = file.Append(bytes.data() + at, std::min<size_t>(10000, size - at));
      }
      if (fault == Fault::kEnospc) {
        CHECK(err == ENOSPC);
        CHECK(file.Append("x", 1) == ENOSPC);  // final: no loop, no write
        CHECK(file.Finish() == ENOSPC);
        continue;
      }
      REQUIRE(err == 0);
      CHECK_FALSE(file.direct());  // the rest went the ordinary way
      REQUIRE(file.Finish() == 0);
      // Direct: the chunks before the failed write, and the 1.5 blocks a cut wrote.
      const uint64_t before = static_cast<uint64_t>(fail_at - 1) * DirectFile::kChunk;
      CHECK(file.direct_bytes() == before + (fault == Fault::kShort ? 6144 : 0));
      CHECK(std::filesystem::file_size(path) == size);
      CHECK(test::ReadFile(path) == bytes);
    }
  }
}

TEST_CASE("a direct file whose buffer cannot be allocated leaves no file behind", "[store][direct]") {
#if TELEREAD_ASAN
  // AddressSanitizer maps its shadow memory as it goes: under a capped address space it aborts.
  TELEREAD_SKIP("an address-space limit cannot be set under AddressSanitizer");
#endif
  test::ScratchDir dir;
  const std::filesystem::path path = dir.path() / "object";
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The address space capped just above its size: the 256 KiB buffer cannot be mapped.
    std::ifstream statm("/proc/self/statm");
    size_t pages = 0;
    statm >> pages;
    struct rlimit limit {};
    limit.rlim_cur = limit.rlim_max = pages * static_cast<size_t>(::sysconf(_SC_PAGESIZE)) + 16 * 1024;
    if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(2);
    DirectFile::ReleaseCachedBuffer();  // kept by an earlier test on this thread
    // Free chunks that earlier tests in this process left in the heap would still serve it: taken first.
    static void* volatile held = nullptr;  // kept observable: an unused allocation may be elided
    for (int i = 0; i < 100'000; ++i) {
      held = std::aligned_alloc(DirectFile::kAlign, DirectFile::kChunk);
      if (held == nullptr) break;
    }
    DirectFile file;
    const int err = file.Create(path);
    ::_exit(err == ENOMEM ? 0 : err == 0 ? 3 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  INFO("child exit " << WEXITSTATUS(status) << " (3: the allocator still had room)");
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("a thread reuses its direct buffers file after file and keeps at most two until told to free them",
          "[store][direct]") {
  test::ScratchDir dir;
  if (!TakesDirect(dir.path())) TELEREAD_SKIP("the scratch directory's file system refuses O_DIRECT");
  DirectFile::ReleaseCachedBuffer();
  REQUIRE(DirectFile::CachedBytes() == 0);
  // A large file, then a smaller one in the same buffer: the second holds its own bytes only.
  const std::string first = Pattern(DirectFile::kHead + 2 * DirectFile::kChunk + 100, 21);
  const std::string second = Pattern(DirectFile::kHead + DirectFile::kAlign + 3, 22);
  const void* used = nullptr;
  for (const std::string* bytes : {&first, &second}) {
    const std::filesystem::path path = dir.path() / (bytes == &first ? "a" : "b");
    DirectFile file;
    REQUIRE(file.Create(path) == 0);
    if (used != nullptr) CHECK(file.buffer_for_test() == used);
    used = file.buffer_for_test();
    REQUIRE(used != nullptr);
    CHECK(DirectFile::CachedBytes() == 0);  // taken, not shared
    REQUIRE(file.Append(bytes->data(), bytes->size()) == 0);
    REQUIRE(file.Finish() == 0);
    CHECK(test::ReadFile(path) == *bytes);
  }
  CHECK(DirectFile::CachedBytes() == DirectFile::kChunk);
  {
    // Three files open at once on one thread: three buffers, two kept afterwards (an
    // asynchronous file fills one while the other is written).
    DirectFile a, b, c;
    REQUIRE(a.Create(dir.path() / "c") == 0);
    REQUIRE(b.Create(dir.path() / "d") == 0);
    REQUIRE(c.Create(dir.path() / "d2") == 0);
    CHECK(a.buffer_for_test() != b.buffer_for_test());
    CHECK(b.buffer_for_test() != c.buffer_for_test());
  }
  CHECK(DirectFile::CachedBytes() == 2 * DirectFile::kChunk);
  // Another thread's files neither take this thread's buffer nor leave theirs here.
  const void* kept = nullptr;
  {
    DirectFile file;
    REQUIRE(file.Create(dir.path() / "e") == 0);
    kept = file.buffer_for_test();
    REQUIRE(file.Finish() == 0);
  }
  REQUIRE(kept != nullptr);
  const size_t live = DirectFile::LiveBuffers();
  const void* other = nullptr;
  size_t other_cached = 0;
  size_t live_in_other = 0;
  std::thread([&] {
    DirectFile file;
    if (file.Create(dir.path() / "f") == 0) other = file.buffer_for_test();
    file.Finish();
    other_cached = DirectFile::CachedBytes();
    live_in_other = DirectFile::LiveBuffers();
    DirectFile::ReleaseCachedBuffer();
  }).join();
  CHECK(other != nullptr);
  CHECK(other != kept);
  CHECK(other_cached == DirectFile::kChunk);
  CHECK(live_in_other == live + 1);          // its own, kept on its thread
  CHECK(DirectFile::LiveBuffers() == live);  // and freed there
  CHECK(DirectFile::CachedBytes() == 2 * DirectFile::kChunk);
  {
    DirectFile file;
    REQUIRE(file.Create(dir.path() / "g") == 0);
    CHECK(file.buffer_for_test() == kept);
    REQUIRE(file.Finish() == 0);
  }
  CHECK(DirectFile::LiveBuffers() == live);
  DirectFile::ReleaseCachedBuffer();
  CHECK(DirectFile::CachedBytes() == 0);
  CHECK(DirectFile::LiveBuffers() == live - 2);
}

TEST_CASE(
    "objects written into a shared file from aligned offsets: bytes in place, the last block padded, the file left "
    "open",
    "[store][direct][segment]") {
  test::ScratchDir dir;
  const std::filesystem::path path = dir.path() / "segment";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  REQUIRE(fd >= 0);
  const bool direct = TakesDirect(dir.path());
  std::string expected;
  uint64_t offset = 0;
  // Sizes around the chunk and block edges, in pieces of several lengths.
  for (size_t size : {DirectFile::kChunk + 100, size_t{4096}, 3 * DirectFile::kChunk + 4095, size_t{131073}}) {
    INFO("object of " << size << " bytes at " << offset);
    const std::string bytes = Pattern(size, static_cast<unsigned>(size));
    DirectFile file;
    REQUIRE(file.Begin(fd, offset, 64 * DirectFile::kChunk, direct, 0) == 0);
    for (size_t at = 0; at < size; at += 70000) {
      REQUIRE(file.Fits(std::min<size_t>(70000, size - at)));
      REQUIRE(file.Append(bytes.data() + at, std::min<size_t>(70000, size - at)) == 0);
    }
    CHECK(file.size() == size);
    REQUIRE(file.Finish() == 0);
    CHECK(::fcntl(fd, F_GETFD) >= 0);  // still open
    if (direct) CHECK(file.direct_bytes() == (size + 4095) / 4096 * 4096);
    expected.resize(offset, '\0');
    expected += bytes;
    offset = (offset + size + 4095) / 4096 * 4096;
  }
  expected.resize(offset, '\0');  // the padding: zeros
  ::close(fd);
  const std::string got = test::ReadFile(path);
  if (direct) {
    CHECK(got == expected);  // every last block written, padded with zeros
  } else {
    // Through the page cache the last block is not padded: the file ends with the last object.
    CHECK(got.size() == offset - 4096 + 131073 % 4096);
    CHECK(got == expected.substr(0, got.size()));
  }

  DirectFile small;
  const int fd2 = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(small.Begin(fd2, 0, 8192, direct, 0) == 0);
  CHECK(small.Fits(8192));
  CHECK_FALSE(small.Fits(8193));
  REQUIRE(small.Append("x", 1) == 0);
  CHECK_FALSE(small.Fits(8192));
  REQUIRE(small.Finish() == 0);
  ::close(fd2);
}
