// SegmentPool on ext4 and XFS: segments allocated whole, their unused room counted as free
// space (the file system counts it used) until what no object took is cut off.
#include <sys/statfs.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <thread>

#include "server/store/segments.h"
#include "tests/support/process.h"
#include "tests/support/skip.h"

using namespace teleread;

namespace {

constexpr uint64_t kCapacity = 4 << 20;

bool AllocatesWhole(const std::filesystem::path& dir) {
  struct statfs fs {};
  return ::statfs(dir.c_str(), &fs) == 0 && (fs.f_type == 0xEF53 || fs.f_type == 0x58465342);
}

// The preparer keeps one segment ready ahead of the takers: waits until it has made it.
bool Settles(const SegmentPool& pool, uint64_t unused) {
  for (int i = 0; i < 500 && pool.UnusedAllocatedBytes() != unused; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pool.UnusedAllocatedBytes() == unused;
}

}  // namespace

TEST_CASE("segments are allocated whole, and their unused room counts as free until it is cut off",
          "[store][segment]") {
  test::ScratchDir dir;
  if (!AllocatesWhole(dir.path())) TELEREAD_SKIP("the scratch directory is neither ext4 nor XFS");
  const std::filesystem::path segments = dir.path() / "segments";
  SegmentPool pool(segments, kCapacity, false, 0);
  REQUIRE(pool.Start().ok());
  CHECK(pool.UnusedAllocatedBytes() == 0);  // none made before the first taker

  std::unique_ptr<Segment> first = pool.Take(std::chrono::seconds(5));
  REQUIRE(first);
  CHECK(first->in_place);
  CHECK(std::filesystem::file_size(segments / first->name) == kCapacity);
  REQUIRE(Settles(pool, 2 * kCapacity));  // the leased one and the one ready ahead

  first->next = 1 << 20;  // objects written into it
  CHECK(pool.UnusedAllocatedBytes() == 2 * kCapacity - (1 << 20));
  const std::string name = first->name;
  pool.Give(std::move(first));  // room left: kept for the next taker, still allocated
  CHECK(pool.UnusedAllocatedBytes() == 2 * kCapacity - (1 << 20));
  CHECK(std::filesystem::file_size(segments / name) == kCapacity);

  std::unique_ptr<Segment> again = pool.Take(std::chrono::seconds(5));
  REQUIRE(again);
  CHECK(again->name == name);
  again->next = kCapacity - 8192;  // too little room to keep: cut where the objects end
  pool.Give(std::move(again));
  CHECK(std::filesystem::file_size(segments / name) == kCapacity - 8192);
  CHECK(pool.UnusedAllocatedBytes() == kCapacity);

  std::unique_ptr<Segment> ready = pool.Take(std::chrono::seconds(5));
  REQUIRE(ready);
  const std::string retired = ready->name;
  ready->next = 3 * 4096;
  REQUIRE(Settles(pool, 2 * kCapacity - 3 * 4096));
  pool.Retire(std::move(ready));  // an object outgrew it: cut, and written no more
  CHECK(std::filesystem::file_size(segments / retired) == 3 * 4096);
  CHECK(pool.UnusedAllocatedBytes() == kCapacity);
}
