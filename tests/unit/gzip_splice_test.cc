// A gzip answer spliced from a shared deflated part and per-caller text (server/http/gzip_splice.h):
// what any gzip reader inflates is exactly prefix + part + suffix, whatever their sizes.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <clocale>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>

#include "common/gunzip.h"
#include "server/http/gzip_splice.h"
#include "tests/support/asan.h"

using namespace teleread;

namespace {

std::string Inflated(const std::string& gzip) {
  Result<std::string> text = Gunzip(gzip, size_t{1} << 24);
  INFO(text.status().message());
  REQUIRE(text.ok());
  return text.value();
}

std::string Text(size_t n, unsigned seed) {
  std::mt19937 random(seed);
  std::string s;
  while (s.size() < n) s += "{\"patient_name\":\"Test^P" + std::to_string(random() % 1000) + "\"},";
  s.resize(n);
  return s;
}

// A gzip member of `mib` MiB of zeros, ~1 KB a MiB: one MiB deflated once (level 9, raw, sync
// flushed) and its blocks repeated (a fresh stream's first blocks refer back only within themselves).
std::string Bomb(size_t mib) {
  const std::string zeros(size_t{1} << 20, '\0');
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  DeflatedPart mb;
  mb.size = zeros.size();
  mb.crc =
      static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(zeros.data()), static_cast<uInt>(zeros.size())));
  mb.blocks.resize(deflateBound(&z, static_cast<uLong>(zeros.size())) + 16);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(zeros.data()));
  z.avail_in = static_cast<uInt>(zeros.size());
  z.next_out = reinterpret_cast<Bytef*>(mb.blocks.data());
  z.avail_out = static_cast<uInt>(mb.blocks.size());
  REQUIRE(deflate(&z, Z_SYNC_FLUSH) == Z_OK);
  REQUIRE(z.avail_in == 0);
  mb.blocks.resize(mb.blocks.size() - z.avail_out);
  deflateEnd(&z);
  std::string out("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10);
  uint32_t crc = 0;
  for (size_t i = 0; i < mib; ++i) {
    out += mb.blocks;
    crc = static_cast<uint32_t>(crc32_combine(crc, mb.crc, static_cast<z_off_t>(mb.size)));
  }
  out.append("\x01\x00\x00\xff\xff", 5);  // a final empty stored block
  for (uint32_t v : {crc, static_cast<uint32_t>(mib << 20)}) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  return out;
}

// This process's address space now, in bytes (/proc/self/statm: pages).
[[maybe_unused]] size_t AddressSpace() {  // unused under ASan
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0;
  statm >> pages;
  return pages * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

TEST_CASE("a spliced gzip answer inflates to the caller's prefix, the shared part and the suffix", "[api][gzip]") {
  const std::string items = Text(35'000, 1);
  const DeflatedPart part = DeflatePart(items);
  CHECK(part.size == items.size());
  CHECK(part.blocks.size() < items.size() / 3);  // compressed, not stored
  // Held at its size: a kept page's memory is what the cache counts, not deflate's bound.
  CHECK(part.blocks.capacity() < part.blocks.size() + 64);
  CHECK(part.blocks.size() <= DeflatedBound(items.size()));
  // Back-references inside the part reach only the part: any prefix leaves it decoding alike.
  for (const std::string& prefix : {std::string(), std::string("{\"items\":"), Text(70'000, 2)}) {
    for (const std::string& suffix : {std::string(), std::string(",\"limit\":50}"), Text(66'000, 3)}) {
      INFO(prefix.size() << " + " << suffix.size());
      CHECK(Inflated(GzipAround(prefix, part, suffix)) == prefix + items + suffix);
    }
  }
  CHECK(Inflated(GzipAround("{", DeflatePart(""), "}")) == "{}");
}

TEST_CASE("a spliced gzip answer with a wrong byte is refused, never inflated to other text", "[api][gzip]") {
  const std::string items = Text(5'000, 4);
  std::string gzip = GzipAround("[", DeflatePart(items), "]");
  REQUIRE(Inflated(gzip) == "[" + items + "]");
  std::string bad_crc = gzip;
  bad_crc[bad_crc.size() - 6] ^= 1;  // in the CRC-32
  CHECK_FALSE(Gunzip(bad_crc, size_t{1} << 24).ok());
  CHECK_FALSE(Gunzip(gzip.substr(0, gzip.size() - 1), size_t{1} << 24).ok());  // short
  CHECK_FALSE(Gunzip(gzip + "x", size_t{1} << 24).ok());                       // trailing bytes
  CHECK_FALSE(Gunzip(gzip, 100).ok());                                         // over the limit
}

TEST_CASE("only an Accept-Encoding that lists gzip with a q above 0 gets gzip", "[api][gzip]") {
  CHECK(AcceptsGzip("gzip"));
  CHECK(AcceptsGzip("deflate, GZip"));
  CHECK(AcceptsGzip("br;q=1.0, gzip;q=0.5, *;q=0"));
  CHECK(AcceptsGzip(" x-gzip "));
  CHECK_FALSE(AcceptsGzip(""));
  CHECK_FALSE(AcceptsGzip("identity"));
  CHECK_FALSE(AcceptsGzip("*"));
  CHECK_FALSE(AcceptsGzip("gzip;q=0"));
  CHECK_FALSE(AcceptsGzip("gzip; q=0.000"));
  CHECK_FALSE(AcceptsGzip("gzipped"));
  // A refused item does not end the list: a later one may admit gzip.
  CHECK(AcceptsGzip("gzip;q=0, x-gzip"));
  CHECK(AcceptsGzip("x-gzip;q=0,gzip;q=0.2"));
  CHECK_FALSE(AcceptsGzip("gzip;q=0, x-gzip;q=0.0"));
  CHECK_FALSE(AcceptsGzip("gzip;q=zero"));
}

TEST_CASE("Accept-Encoding's q is read the same in a locale whose decimal mark is a comma", "[api][gzip]") {
  const char* before = std::setlocale(LC_NUMERIC, nullptr);
  const std::string saved = before ? before : "C";
  bool set = false;
  for (const char* name : {"de_DE.UTF-8", "fr_FR.UTF-8", "de_DE", "fr_FR"}) {
    if (std::setlocale(LC_NUMERIC, name)) {
      set = true;
      break;
    }
  }
  // strtod there reads "0.5" as 0 (it stops at the '.'); from_chars does not look at the locale.
  const bool half = AcceptsGzip("gzip;q=0.5");
  std::setlocale(LC_NUMERIC, saved.c_str());
  if (!set) WARN("no comma-decimal locale installed: checked in the C locale only");
  CHECK(half);
}

TEST_CASE("a gzip bomb is refused at the API answers' limit, with no allocation near what it unpacks to",
          "[api][gzip]") {
  const std::string bomb = Bomb(1024);  // 1 GiB of text in ~1 MB
  REQUIRE(bomb.size() < (size_t{2} << 20));
  REQUIRE(Inflated(Bomb(3)) == std::string(size_t{3} << 20, '\0'));  // a whole, valid member
  Result<std::string> refused = Gunzip(bomb, kMaxApiAnswerText);
  CHECK_FALSE(refused.ok());
  CHECK(refused.status().message().find("over") != std::string::npos);
#if TELEREAD_ASAN
  SUCCEED("under ASan the address space is the shadow's: the allocation bound is not checked");
#else
  // In a child whose address space has 256 MiB left: the bomb is refused there too, not a bad_alloc.
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const rlim_t room = AddressSpace() + (size_t{256} << 20);
    const rlimit limit{room, room};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(3);
    try {
      _exit(Gunzip(bomb, kMaxApiAnswerText).ok() ? 1 : 0);
    } catch (...) {
      _exit(2);  // std::bad_alloc: it tried to hold far more than an API answer
    }
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
#endif
}

TEST_CASE("a gunzip limit so large that limit + 1 wraps is refused, not looped on", "[api][gzip]") {
  const std::string gzip = GzipAround("[", DeflatePart("1,2,3"), "]");
  CHECK(Gunzip(gzip, kMaxGunzipLimit).ok());
  CHECK_FALSE(Gunzip(gzip, kMaxGunzipLimit + 1).ok());
  CHECK_FALSE(Gunzip(gzip, SIZE_MAX).ok());
}
