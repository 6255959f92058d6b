#include <catch2/catch.hpp>
#include <set>

#include "server/store/object_store.h"
#include "server/store/sqlite.h"
#include "tests/support/process.h"

using namespace teleread;

TEST_CASE("objects reach their final name whole and are never replaced", "[store]") {
  test::ScratchDir dir;
  ObjectStore store(dir.path());
  REQUIRE(store.Prepare().ok());

  std::string rel = ObjectStore::RelativePathFor("1.2.3.4");
  CHECK(rel.size() == std::string("objects/ab/").size() + 64 + 4);
  CHECK(rel.rfind("objects/", 0) == 0);
  CHECK(ObjectStore::RelativePathFor("1.2.3.4") == rel);
  CHECK(ObjectStore::RelativePathFor("1.2.3.5") != rel);

  std::filesystem::path first = store.NewTempPath();
  std::filesystem::path second = store.NewTempPath();
  CHECK(first != second);
  test::WriteFile(first, "first");
  auto placed = store.Place(first, rel);
  REQUIRE(placed.ok());
  CHECK(placed.value() == ObjectStore::Placed::kNew);
  CHECK_FALSE(std::filesystem::exists(first));
  CHECK(test::ReadFile(store.Absolute(rel)) == "first");

  test::WriteFile(second, "second");
  placed = store.Place(second, rel);
  REQUIRE(placed.ok());
  CHECK(placed.value() == ObjectStore::Placed::kExisting);
  CHECK(test::ReadFile(store.Absolute(rel)) == "first");
  CHECK(std::filesystem::exists(second));  // left for the caller to compare

  CHECK(store.RemoveTempFiles().removed == 1);
  CHECK_FALSE(std::filesystem::exists(second));

  std::set<std::string> seen;
  REQUIRE(store.ForEachObject([&](const std::string& p) { seen.insert(p); }).ok());
  CHECK(seen == std::set<std::string>{rel});

  auto free = store.FreeBytes();
  REQUIRE(free.ok());
  CHECK(free.value() > 0);
}

TEST_CASE("the index's WAL is truncated to 64 MiB after a checkpoint, not kept at its high-water mark",
          "[store][index]") {
  test::ScratchDir dir;
  Result<std::unique_ptr<Database>> db = Database::Open(dir.path() / "index.sqlite", false);
  REQUIRE(db.ok());
  Statement q(db.value()->handle(), "PRAGMA journal_size_limit");
  Result<bool> row = q.Step();
  REQUIRE(row.ok());
  REQUIRE(row.value());
  CHECK(q.Int(0) == int64_t{64} << 20);
}

TEST_CASE("a temp name of a placed object is kept while the object's link count says one name", "[store][recovery]") {
  struct stat temp {};
  temp.st_dev = 7;
  temp.st_ino = 42;
  temp.st_nlink = 1;
  struct stat placed = temp;
  // Two names, one counted (a lost unlink on ext4 without a journal): removing either frees the object.
  CHECK(TempNameHoldsPlacedObject(temp, &placed));
  temp.st_nlink = placed.st_nlink = 2;  // counted right: the temp name may go
  CHECK_FALSE(TempNameHoldsPlacedObject(temp, &placed));
  temp.st_nlink = 1;
  placed.st_ino = 43;  // another inode: the temp file is not the placed object
  CHECK_FALSE(TempNameHoldsPlacedObject(temp, &placed));
  placed.st_ino = 42;
  placed.st_dev = 8;
  CHECK_FALSE(TempNameHoldsPlacedObject(temp, &placed));
  CHECK_FALSE(TempNameHoldsPlacedObject(temp, nullptr));  // nothing placed under its UID
}

TEST_CASE("an object's name is the SHA-256 of its SOP Instance UID, in lower-case hex, in either tier", "[store]") {
  const std::string hex = "8fd344497bd39c1d6568562d6ff51e63f1339e971d7fca4b80ccfd15f003a680";  // sha256sum
  for (int i = 0; i < 2; ++i) {  // the digest is fetched once and reused
    CHECK(ObjectStore::InIndexPathFor("1.2.840.113619.2.55.3.4") == "index:" + hex);
    CHECK(ObjectStore::RelativePathFor("1.2.840.113619.2.55.3.4") == "objects/8f/" + hex + ".dcm");
  }
}

TEST_CASE("a segment path opens as its byte range, and a malformed or short one is refused", "[store][segment]") {
  test::ScratchDir dir;
  ObjectStore store(dir.path());
  std::filesystem::create_directories(dir.path() / "segments");
  test::WriteFile(dir.path() / "segments" / "00000007.seg", std::string(1000, 'x'));
  const std::string at = ObjectStore::InSegmentPathFor("00000007.seg", 100, 900);
  CHECK(at == "segments/00000007.seg@100+900");
  CHECK(ObjectStore::InSegment(at));
  CHECK_FALSE(ObjectStore::InSegment("objects/ab/cd.dcm"));
  CHECK_FALSE(ObjectStore::InSegment(ObjectStore::InIndexPathFor("1.2.3")));
  Result<ObjectHandle> h = store.Open(at);
  REQUIRE(h.ok());
  CHECK(h->ranged());
  CHECK(h->path() == dir.path() / "segments" / "00000007.seg");
  CHECK(h->offset() == 100);
  CHECK(h->length() == 900);
  CHECK_FALSE(store.Open(ObjectStore::InIndexPathFor("1.2.3")).ok());  // no index: not a range either

  CHECK(store.Open("segments/00000007.seg@101+900").status().code() == Status::Code::kIOError);  // past the end
  CHECK(store.Open("segments/00000008.seg@0+1").status().code() == Status::Code::kNotFound);
  for (const std::string bad : {"segments/00000007.seg@x+1", "segments/00000007.seg@1+", "segments/00000007.seg@+1",
                                "segments/../index.sqlite@0+1", "segments/a/b@0+1", "segments/@0+1",
                                "segments/00000007.seg@1+2+3", "segments/00000007.seg@-1+2"}) {
    INFO(bad);
    CHECK(store.Open(bad).status().code() == Status::Code::kCorruption);
  }
}
