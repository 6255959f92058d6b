// The disk's floor for one durable write: N 4 KiB pages written into a preallocated, already
// written file (no block allocation, as a reused WAL or segment) and then fdatasync; and one
// O_DIRECT|O_DSYNC write. ingest.sh prints it next to the network floor (storescp --ignore), so the
// best ratio a receiver that syncs once per object can reach at one association is measured, not
// argued. With obj=BYTES: one object of that size written with O_DIRECT into the same kind of file
// and then fdatasync (for reference: a receiver overlaps its writes with the reception), and the
// disk's durable streaming rate from one writer (1 MiB O_DIRECT writes, one fdatasync at the end).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr size_t kPage = 4096;
constexpr int kRounds = 400;

double Millis(std::chrono::steady_clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

bool Fill(int fd, size_t bytes) {
  std::vector<char> zeros(1 << 20, 0);
  for (size_t done = 0; done < bytes; done += zeros.size()) {
    if (::write(fd, zeros.data(), zeros.size()) != static_cast<ssize_t>(zeros.size())) return false;
  }
  return ::fsync(fd) == 0;
}

// Objects of `object` bytes, each written with O_DIRECT and then fdatasync'd; then the whole span
// in 1 MiB O_DIRECT writes with one fdatasync.
bool LargeWrites(const std::string& path, size_t object, size_t span) {
  const int fd = ::open(path.c_str(), O_RDWR | O_DIRECT);
  if (fd < 0) {
    std::perror("teleread-disk-floor: O_DIRECT open (no object or streaming figure)");
    return true;
  }
  void* raw = nullptr;
  const size_t chunk = std::max<size_t>(object, 1 << 20);
  if (::posix_memalign(&raw, kPage, chunk) != 0) {
    ::close(fd);
    return false;
  }
  std::memset(raw, 9, chunk);
  bool ok = true;
  off_t off = 0;
  const int rounds = static_cast<int>(std::min<size_t>(200, span / object));
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < rounds && ok; ++r, off += static_cast<off_t>(object)) {
    ok = ::pwrite(fd, raw, object, off) == static_cast<ssize_t>(object) && ::fdatasync(fd) == 0;
  }
  if (ok) std::printf("object_%zu\t%.3f\n", object, Millis(std::chrono::steady_clock::now() - t0) / rounds);
  t0 = std::chrono::steady_clock::now();
  for (off = 0; ok && static_cast<size_t>(off) + (1 << 20) <= span; off += 1 << 20) {
    ok = ::pwrite(fd, raw, 1 << 20, off) == (1 << 20);
  }
  ok = ok && ::fdatasync(fd) == 0;
  const double ms = Millis(std::chrono::steady_clock::now() - t0);
  // One writer at queue depth 1: a lower estimate of what the disk can make durable.
  if (ok) std::printf("stream_MB_per_s\t%.0f\n", static_cast<double>(span) / 1e3 / ms);
  if (!ok) std::perror("teleread-disk-floor: large writes");
  ::close(fd);
  std::free(raw);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: teleread-disk-floor DIR [PAGES...] [obj=BYTES]\n");
    return 2;
  }
  const std::string path = std::string(argv[1]) + "/disk-floor.tmp";
  std::vector<int> pages;
  size_t object = 0;
  for (int i = 2; i < argc; ++i) {
    if (std::strncmp(argv[i], "obj=", 4) == 0) {
      object = (std::strtoull(argv[i] + 4, nullptr, 10) + kPage - 1) / kPage * kPage;
    } else {
      pages.push_back(std::atoi(argv[i]));
    }
  }
  if (pages.empty()) pages = {1, 3, 10, 27};

  const size_t span = 256u << 20;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || !Fill(fd, span)) {
    std::perror(path.c_str());
    return 1;
  }
  void* raw = nullptr;
  if (::posix_memalign(&raw, kPage, 3 * kPage) != 0) return 1;
  std::memset(raw, 7, 3 * kPage);
  const char* buf = static_cast<const char*>(raw);

  std::printf("pages\tms_per_durable_write\n");
  for (int n : pages) {
    off_t off = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < kRounds; ++r) {
      for (int p = 0; p < n; ++p) {
        if (static_cast<size_t>(off) + kPage > span) off = 0;
        if (::pwrite(fd, buf, kPage, off) != static_cast<ssize_t>(kPage)) return 1;
        off += kPage;
      }
      if (::fdatasync(fd) != 0) return 1;
    }
    std::printf("%d\t%.3f\n", n, Millis(std::chrono::steady_clock::now() - t0) / kRounds);
  }
  ::close(fd);

  fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_DSYNC);
  if (fd >= 0) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < kRounds; ++r) {
      if (::pwrite(fd, buf, 3 * kPage, static_cast<off_t>(r) * 3 * kPage) != static_cast<ssize_t>(3 * kPage)) return 1;
    }
    std::printf("o_direct_dsync_12k\t%.3f\n", Millis(std::chrono::steady_clock::now() - t0) / kRounds);
    ::close(fd);
  }
  if (object > span) std::fprintf(stderr, "teleread-disk-floor: obj= larger than the %zu-byte span: skipped\n", span);
  const bool large_ok = object == 0 || object > span || LargeWrites(path, object, span);
  ::unlink(path.c_str());
  if (!large_ok) return 1;
  std::free(raw);
  return 0;
}
