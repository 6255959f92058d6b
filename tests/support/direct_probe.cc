#include "tests/support/direct_probe.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace teleread::test {

bool TakesDirect(const std::filesystem::path& dir) {
  const std::filesystem::path probe = dir / "probe";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
  if (fd >= 0) ::close(fd);
  std::filesystem::remove(probe);
  return fd >= 0;
}

std::string Pattern(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  if (n > 0) s[n - 1] = '\x7f';
  return s;
}

bool DirectWritesSkipCache(const std::filesystem::path& dir) {
  constexpr size_t kBytes = 16 * 4096;
  const std::filesystem::path probe = dir / "direct-probe";
  const int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  void* buf = std::aligned_alloc(4096, kBytes);
  bool skips = false;
  if (buf) {
    std::memset(buf, 0x5a, kBytes);
    if (::write(fd, buf, kBytes) == static_cast<ssize_t>(kBytes)) {
      void* map = ::mmap(nullptr, kBytes, PROT_READ, MAP_SHARED, fd, 0);
      if (map != MAP_FAILED) {
        std::vector<unsigned char> in(kBytes / static_cast<size_t>(::sysconf(_SC_PAGESIZE)));
        skips = ::mincore(map, kBytes, in.data()) == 0;
        for (unsigned char c : in) skips = skips && (c & 1) == 0;
        ::munmap(map, kBytes);
      }
    }
    std::free(buf);
  }
  ::close(fd);
  std::filesystem::remove(probe);
  return skips;
}

std::pair<size_t, size_t> Residency(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  const auto size = static_cast<size_t>(::lseek(fd, 0, SEEK_END));
  if (size == 0) {
    ::close(fd);
    return {0, 0};
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  REQUIRE(map != MAP_FAILED);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in((size + page - 1) / page);
  REQUIRE(::mincore(map, size, in.data()) == 0);
  ::munmap(map, size);
  size_t resident = 0;
  for (unsigned char c : in) resident += c & 1;
  return {resident, in.size()};
}

}  // namespace teleread::test
