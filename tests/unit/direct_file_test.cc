#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <random>
#include <vector>

#include "server/store/direct_file.h"
#include "tests/support/process.h"
#include "tests/support/skip.h"

using namespace teleread;

namespace {

std::string Pattern(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  if (n > 0) s[n - 1] = '\x7f';  // a last byte that is not padding's zero
  return s;
}

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

}  // namespace

TEST_CASE("a direct file holds exactly the bytes appended, whatever their sizes", "[store][direct]") {
  test::ScratchDir dir;
  const size_t chunk = DirectFile::kChunk, align = DirectFile::kAlign;
  unsigned seed = 1;
  for (bool direct : {true, false}) {
    for (size_t size : {size_t{0}, size_t{1}, align - 1, align, align + 1, chunk - 1, chunk, chunk + 1,
                        3 * chunk + 17}) {
      INFO("direct " << direct << ", " << size << " bytes");
      const std::string bytes = Pattern(size, seed++);
      const std::filesystem::path path = dir.path() / ("f" + std::to_string(seed));
      DirectFile file;
      REQUIRE(file.Create(path, direct) == 0);
      // Pieces of changing sizes, as DCMTK hands them over (a PDV at a time, a header element).
      std::mt19937 rng(seed);
      for (size_t at = 0; at < size;) {
        const size_t n = std::min<size_t>(size - at, 1 + rng() % (align * 40));
        REQUIRE(file.Append(bytes.data() + at, n) == 0);
        at += n;
      }
      CHECK(file.size() == size);
      REQUIRE(file.Finish() == 0);
      CHECK(std::filesystem::file_size(path) == size);
      CHECK(test::ReadFile(path) == bytes);
    }
  }
}

TEST_CASE("a direct file's bytes do not pass through the page cache", "[store][direct]") {
  test::ScratchDir dir;
  const std::filesystem::path path = dir.path() / "object";
  DirectFile file;
  REQUIRE(file.Create(path) == 0);
  const std::string bytes = Pattern(3 * DirectFile::kChunk + 17, 7);
  REQUIRE(file.Append(bytes.data(), bytes.size()) == 0);
  if (!file.direct()) TELEREAD_SKIP("the scratch directory's file system refuses O_DIRECT");
  REQUIRE(file.Finish() == 0);
  // The head (written the ordinary way for the parse that reads it next), and at most the last,
  // partial page: cutting the padding reads it in to zero its tail.
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t resident = ResidentPages(path);
  CHECK(resident >= DirectFile::kHead / page);
  CHECK(resident <= DirectFile::kHead / page + 1);
  CHECK(test::ReadFile(path) == bytes);
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
