// A gzip answer spliced from a shared deflated part and per-caller text (server/http/gzip_splice.h):
// what any gzip reader inflates is exactly prefix + part + suffix, whatever their sizes.
#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "common/gunzip.h"
#include "server/http/gzip_splice.h"

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

}  // namespace

TEST_CASE("a spliced gzip answer inflates to the caller's prefix, the shared part and the suffix", "[api][gzip]") {
  const std::string items = Text(35'000, 1);
  const DeflatedPart part = DeflatePart(items);
  CHECK(part.size == items.size());
  CHECK(part.blocks.size() < items.size() / 3);  // compressed, not stored
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
  CHECK_FALSE(Gunzip(gzip + "x", size_t{1} << 24).ok());                         // trailing bytes
  CHECK_FALSE(Gunzip(gzip, 100).ok());                                           // over the limit
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
}
