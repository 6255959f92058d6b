// WalCheckpointer: the writer's commits that fill the WAL past its size do not checkpoint
// (nothing is copied into the database file while the checkpointer's thread is held), and the
// thread's own checkpoint then copies the pages.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>

#include "server/store/sqlite.h"
#include "server/store/wal_checkpointer.h"
#include "tests/support/process.h"

using namespace teleread;

TEST_CASE("the WAL is checkpointed on the checkpointer's thread, never in a writer's commit", "[store]") {
  test::ScratchDir dir;
  const std::filesystem::path path = dir.path() / "t.sqlite";
  auto opened = Database::Open(path, false);
  REQUIRE(opened.ok());
  Database& writer = *opened.value();
  REQUIRE(writer.Exec("CREATE TABLE t (v BLOB)").ok());
  REQUIRE(writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());  // the table in the file, the WAL empty
  const auto file_before = std::filesystem::file_size(path);

  std::atomic<bool> held{false}, release{false};
  {
    WalCheckpointer checkpointer(path, writer.handle(), 10, [&] {
      held = true;
      while (!release) std::this_thread::yield();
    });
    REQUIRE(checkpointer.running());
    const std::string blob(4096, 'x');
    for (int i = 0; i < 40; ++i) {  // each its own commit, one page or more each
      Statement insert(writer.handle(), "INSERT INTO t VALUES (?1)");
      REQUIRE(insert.Bind(1, std::string_view(blob)).Run().ok());
    }
    REQUIRE(test::WaitFor([&] { return held.load(); }));  // due, and held before its checkpoint
    CHECK(std::filesystem::file_size(path) == file_before);  // no commit copied a page
    CHECK(std::filesystem::file_size(dir.path() / "t.sqlite-wal") > 40 * 4096);
    release = true;
    REQUIRE(test::WaitFor([&] { return checkpointer.checkpoints() >= 1; }));
    CHECK(std::filesystem::file_size(path) > file_before + 40 * 4096);  // copied by the thread
  }
  // Unhooked: the writer's own auto-checkpoint again, no callback into a destroyed checkpointer.
  REQUIRE(writer.Exec("INSERT INTO t VALUES (1)").ok());
}
