#include <catch2/catch.hpp>
#include <set>

#include "server/store/object_store.h"
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

  CHECK(store.RemoveTempFiles() == 1);
  CHECK_FALSE(std::filesystem::exists(second));

  std::set<std::string> seen;
  REQUIRE(store.ForEachObject([&](const std::string& p) { seen.insert(p); }).ok());
  CHECK(seen == std::set<std::string>{rel});

  auto free = store.FreeBytes();
  REQUIRE(free.ok());
  CHECK(free.value() > 0);
}

TEST_CASE("temp files come from the pool empty and distinct, and the unused ones go with the store", "[store][pool]") {
  test::ScratchDir dir;
  auto tmp_files = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path() / "tmp")) n += e.is_regular_file();
    return n;
  };
  std::set<std::filesystem::path> taken;
  {
    ObjectStore store(dir.path());
    REQUIRE(store.Prepare().ok());
    for (int i = 0; i < 40; ++i) {  // more than the pool holds: it refills, or the caller makes one
      std::filesystem::path p = store.TakeTempFile();
      REQUIRE_FALSE(p.empty());
      CHECK(p.parent_path() == dir.path() / "tmp");
      CHECK(std::filesystem::is_regular_file(p));
      CHECK(std::filesystem::file_size(p) == 0);
      CHECK(taken.insert(p).second);
    }
  }
  // The 40 taken are the caller's to use or remove; nothing else is left behind.
  CHECK(tmp_files() == 40);
}
