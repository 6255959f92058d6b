// Each object in a segment ends its slot with a trailer (store/segment_trailer.h): a segment read
// without the index gives back exactly the objects that were written whole, and no other.
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "server/store/direct_file.h"
#include "server/store/segment_trailer.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

const std::string kKey(32, 'k');

std::string Random(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

uint64_t Hash(const std::string& bytes) {
  ObjectHasher h;
  h.Update(bytes.data(), bytes.size() / 3);  // in pieces, as received
  h.Update(bytes.data() + bytes.size() / 3, bytes.size() - bytes.size() / 3);
  return h.Digest();
}

// Writes `bytes` at `offset` as the receiver does; with `trailer` false, as an object cut short.
// Returns where the next object starts.
uint64_t WriteObject(int fd, uint64_t offset, const std::string& bytes, bool direct, bool trailer = true) {
  DirectFile file;
  REQUIRE(file.Begin(fd, offset, (1u << 24) - kSegmentTrailerBytes, direct, 0) == 0);
  REQUIRE(file.Append(bytes.data(), bytes.size()) == 0);
  const std::string t = trailer ? EncodeSegmentTrailer({offset, bytes.size(), Hash(bytes)}, kKey) : std::string();
  REQUIRE(file.Finish(t) == 0);
  CHECK(file.size() == bytes.size());
  return trailer ? SegmentSlotEnd(offset, bytes.size(), 4096) : (offset + bytes.size() + 4095) / 4096 * 4096;
}

// Flips every bit of the byte at `at`: damage that cannot leave it as it was.
void Damage(const std::filesystem::path& path, uint64_t at) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  char c = 0;
  REQUIRE(::pread(fd, &c, 1, static_cast<off_t>(at)) == 1);
  c = static_cast<char>(~c);
  REQUIRE(::pwrite(fd, &c, 1, static_cast<off_t>(at)) == 1);
  ::close(fd);
}

std::vector<uint64_t> Offsets(const SegmentScan& scan) {
  std::vector<uint64_t> out;
  for (const SegmentTrailer& t : scan.objects) out.push_back(t.offset);
  return out;
}

}  // namespace

TEST_CASE("a trailer decodes only from its own bytes under its own key", "[store][segment]") {
  const std::string t = EncodeSegmentTrailer({8192, 12345, 0x0123456789abcdefULL}, kKey);
  REQUIRE(t.size() == kSegmentTrailerBytes);
  CHECK_FALSE(DecodeSegmentTrailer(t, std::string(32, 'j')));  // sealed under another installation's key
  std::optional<SegmentTrailer> back = DecodeSegmentTrailer(t, kKey);
  REQUIRE(back);
  CHECK(back->offset == 8192);
  CHECK(back->length == 12345);
  CHECK(back->hash == 0x0123456789abcdefULL);
  for (size_t i : {size_t{0}, size_t{9}, size_t{20}, size_t{30}, size_t{40}, size_t{63}}) {
    std::string bad = t;
    bad[i] ^= 1;
    CHECK_FALSE(DecodeSegmentTrailer(bad, kKey));
  }
  CHECK_FALSE(DecodeSegmentTrailer(std::string(kSegmentTrailerBytes, '\0'), kKey));
  CHECK_FALSE(DecodeSegmentTrailer(t.substr(1), kKey));
  // The seal is HMAC-SHA256's first 8 bytes, as segments written before kept it; a thread
  // sealing under another key and back seals the same.
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  REQUIRE(HMAC(EVP_sha256(), kKey.data(), static_cast<int>(kKey.size()),
               reinterpret_cast<const unsigned char*>(t.data()), kSegmentTrailerBytes - 8, mac, &n) != nullptr);
  CHECK(t.substr(kSegmentTrailerBytes - 8) == std::string(reinterpret_cast<const char*>(mac), 8));
  CHECK(EncodeSegmentTrailer({8192, 12345, 0x0123456789abcdefULL}, std::string(32, 'j')) != t);
  CHECK(EncodeSegmentTrailer({8192, 12345, 0x0123456789abcdefULL}, kKey) == t);
  CHECK(EncodeSegmentTrailer({8192, 12345, 0x0123456789abcdefULL}, kKey) == t);  // the context used again
  // The slot: the object, then at least the trailer, to the next block.
  CHECK(SegmentSlotEnd(0, 4096 - 64, 4096) == 4096);
  CHECK(SegmentSlotEnd(0, 4096 - 63, 4096) == 8192);
  CHECK(SegmentSlotEnd(8192, 1, 4096) == 12288);
}

TEST_CASE("a segment read by its trailers gives the objects written whole, past a given offset", "[store][segment]") {
  test::ScratchDir dir;
  const std::filesystem::path path = dir.path() / "s.seg";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  REQUIRE(fd >= 0);
  const bool direct = GENERATE(false, true);  // where O_DIRECT is refused, both go the ordinary way
  INFO("direct " << direct);
  // Sizes at the block's edge (the trailer just fits, or takes another block), across chunks.
  const std::vector<std::string> objects = {Random(5000, 1), Random(4096 - 64, 2), Random(4096 - 63, 3),
                                            Random(DirectFile::kChunk + 777, 4), Random(10, 5)};
  std::vector<uint64_t> at;
  uint64_t next = 0;
  for (size_t i = 0; i < objects.size(); ++i) {
    if (i == 1) next = WriteObject(fd, next, Random(3000, 9), direct, false);  // cut short: no trailer
    at.push_back(next);
    next = WriteObject(fd, next, objects[i], direct);
  }
  ::close(fd);
  const std::string segment = test::ReadFile(path);
  REQUIRE(segment.size() == next);
  for (size_t i = 0; i < objects.size(); ++i) {
    INFO("object " << i);
    CHECK(segment.substr(at[i], objects[i].size()) == objects[i]);
    const uint64_t end = SegmentSlotEnd(at[i], objects[i].size(), 4096);
    // Zeros between the object and its trailer, which ends the slot.
    const uint64_t pad = end - kSegmentTrailerBytes - at[i] - objects[i].size();
    CHECK(segment.substr(at[i] + objects[i].size(), pad) == std::string(pad, '\0'));
    std::optional<SegmentTrailer> t = DecodeSegmentTrailer(segment.substr(end - kSegmentTrailerBytes, 64), kKey);
    REQUIRE(t);
    CHECK(t->offset == at[i]);
    CHECK(t->length == objects[i].size());
  }

  Result<SegmentScan> all = FindSegmentObjects(path, 0, 4096, kKey);
  REQUIRE(all.ok());
  CHECK(Offsets(all.value()) == at);
  CHECK(all->damaged == 0);
  Result<SegmentScan> tail = FindSegmentObjects(path, at[2], 4096, kKey);
  REQUIRE(tail.ok());
  CHECK(Offsets(tail.value()) == std::vector<uint64_t>(at.begin() + 2, at.end()));

  SECTION("a damaged object is counted and left out; a voided one is not seen") {
    Damage(path, at[3] + 70000);
    REQUIRE(VoidSegmentTrailer(path, at[1], objects[1].size(), 4096).ok());
    Result<SegmentScan> left = FindSegmentObjects(path, 0, 4096, kKey);
    REQUIRE(left.ok());
    CHECK(Offsets(left.value()) == std::vector<uint64_t>{at[0], at[2], at[4]});
    CHECK(left->damaged == 1);
  }
  SECTION("the scan's start must be aligned; a missing segment is an error") {
    CHECK_FALSE(FindSegmentObjects(path, 100, 4096, kKey).ok());
    CHECK_FALSE(FindSegmentObjects(dir.path() / "none.seg", 0, 4096, kKey).ok());
  }
  SECTION("under another key nothing is found") {
    Result<SegmentScan> other = FindSegmentObjects(path, 0, 4096, std::string(32, 'j'));
    REQUIRE(other.ok());
    CHECK(other->objects.empty());
    CHECK(std::filesystem::file_size(path) == next);  // and nothing cut
  }
  SECTION("a tail of zeros past the last object (allocated, never used) is cut; data there is kept") {
    std::filesystem::resize_file(path, next + 3 * 4096);
    REQUIRE(FindSegmentObjects(path, 0, 4096, kKey).ok());
    CHECK(std::filesystem::file_size(path) == next);
    {
      const int w = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      REQUIRE(w >= 0);
      REQUIRE(::pwrite(w, "x", 1, static_cast<off_t>(next + 5000)) == 1);  // an object cut short
      ::close(w);
    }
    std::filesystem::resize_file(path, next + 3 * 4096);
    Result<SegmentScan> again = FindSegmentObjects(path, 0, 4096, kKey);
    REQUIRE(again.ok());
    CHECK(Offsets(again.value()) == at);
    CHECK(std::filesystem::file_size(path) == next + 2 * 4096);  // to the end of its block
  }
}

TEST_CASE("a scan from the block past an object's bytes knows the slot its trailer ends", "[store][segment]") {
  test::ScratchDir dir;
  const std::filesystem::path path = dir.path() / "s.seg";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  REQUIRE(fd >= 0);
  // 4033 bytes: the trailer takes the next block, where a scan past the object's bytes starts.
  const uint64_t end = WriteObject(fd, 0, Random(4096 - 63, 7), false);
  ::close(fd);
  REQUIRE(end == 8192);
  std::filesystem::resize_file(path, end + 5 * 4096);  // a pre-written tail a crash left
  Result<SegmentScan> scan = FindSegmentObjects(path, 4096, 4096, kKey);
  REQUIRE(scan.ok());
  CHECK(scan->objects.empty());  // that object is named already
  CHECK(std::filesystem::file_size(path) == end);
}

TEST_CASE("an indexed object checked against its trailer is whole, damaged or without one", "[store][segment]") {
  test::ScratchDir dir;
  const std::filesystem::path path = dir.path() / "s.seg";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  REQUIRE(fd >= 0);
  const std::string sealed = Random(9000, 11), bare = Random(7000, 12);
  const uint64_t second = WriteObject(fd, 0, sealed, false);
  WriteObject(fd, second, bare, false, false);  // stored before trailers
  ::close(fd);
  auto check = [&](uint64_t offset, uint64_t length, const std::string& key) {
    Result<TrailerCheck> c = CheckSegmentObject(path, offset, length, 4096, key);
    REQUIRE(c.ok());
    return c.value();
  };
  CHECK(check(0, sealed.size(), kKey) == TrailerCheck::kWhole);
  CHECK(check(0, sealed.size() - 1, kKey) == TrailerCheck::kNoTrailer);  // another range than it names
  CHECK(check(0, sealed.size(), std::string(32, 'j')) == TrailerCheck::kNoTrailer);
  CHECK(check(second, bare.size(), kKey) == TrailerCheck::kNoTrailer);
  Damage(path, 4000);
  CHECK(check(0, sealed.size(), kKey) == TrailerCheck::kDamaged);
  CHECK_FALSE(CheckSegmentObject(dir.path() / "none.seg", 0, 10, 4096, kKey).ok());
}

TEST_CASE("the trailer key is made once, kept private, and read back", "[store][segment]") {
  test::ScratchDir dir;
  CHECK(SegmentTrailerKey(dir.path(), false).status().code() == Status::Code::kNotFound);
  Result<std::string> made = SegmentTrailerKey(dir.path(), true);
  REQUIRE(made.ok());
  CHECK(made->size() == 32);
  CHECK((std::filesystem::status(dir.path() / "trailer.key").permissions() &
         (std::filesystem::perms::group_all | std::filesystem::perms::others_all)) == std::filesystem::perms::none);
  Result<std::string> again = SegmentTrailerKey(dir.path(), true);
  REQUIRE(again.ok());
  CHECK(again.value() == made.value());
  CHECK_FALSE(std::filesystem::exists(dir.path() / "trailer.key.prep"));
  test::WriteFile(dir.path() / "trailer.key", "short");
  CHECK(SegmentTrailerKey(dir.path(), false).status().code() == Status::Code::kCorruption);
}
