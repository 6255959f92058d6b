// Database::ExecKept: the writer's BEGIN, SAVEPOINT, RELEASE and COMMIT, prepared once per
// connection, must behave as sqlite3_exec did: commit what they commit, report a failure, leave
// no transaction open after one, and refuse SQL with a second statement (which sqlite3_exec ran).
#include <catch2/catch.hpp>

#include "server/store/sqlite.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

std::unique_ptr<Database> OpenDb(const std::filesystem::path& path, bool read_only) {
  auto db = Database::Open(path, read_only);
  REQUIRE(db.ok());
  return std::move(db.value());
}

int64_t Rows(Database& db) {
  Statement q(db.handle(), "SELECT COUNT(*) FROM t");
  Result<bool> row = q.Step();
  REQUIRE(row.ok());
  REQUIRE(row.value());
  return q.Int(0);
}

}  // namespace

TEST_CASE("kept transaction statements commit, roll a savepoint back and are prepared once", "[store]") {
  test::ScratchDir dir;
  auto writer = OpenDb(dir.path() / "t.sqlite", false);
  REQUIRE(writer->Exec("CREATE TABLE t (v INTEGER)").ok());
  auto reader = OpenDb(dir.path() / "t.sqlite", true);

  size_t kept_after_first = 0;
  for (int round = 0; round < 3; ++round) {
    Transaction tx(*writer);
    REQUIRE(tx.status().ok());
    REQUIRE(writer->ExecKept("SAVEPOINT request").ok());
    REQUIRE(writer->Exec("INSERT INTO t VALUES (1)").ok());
    REQUIRE(writer->ExecKept("RELEASE request").ok());
    // A refused request: its savepoint undone, the transaction carries on.
    REQUIRE(writer->ExecKept("SAVEPOINT request").ok());
    REQUIRE(writer->Exec("INSERT INTO t VALUES (2)").ok());
    REQUIRE(writer->ExecKept("ROLLBACK TO request").ok());
    REQUIRE(writer->ExecKept("RELEASE request").ok());
    REQUIRE(tx.Commit().ok());
    CHECK(sqlite3_get_autocommit(writer->handle()));
    // Committed: another connection sees it at once.
    CHECK(Rows(*reader) == round + 1);
    if (round == 0) kept_after_first = writer->kept_statements();
  }
  CHECK(writer->keeps("BEGIN IMMEDIATE"));
  CHECK(writer->keeps("COMMIT"));
  CHECK(writer->keeps("SAVEPOINT request"));
  CHECK(writer->kept_statements() == kept_after_first);
}

TEST_CASE("a kept statement that fails reports it and leaves the connection usable", "[store]") {
  test::ScratchDir dir;
  auto writer = OpenDb(dir.path() / "t.sqlite", false);
  REQUIRE(writer->Exec("CREATE TABLE t (v INTEGER)").ok());

  Status s = writer->ExecKept("RELEASE no_such_savepoint");
  CHECK_FALSE(s.ok());
  CHECK_THAT(s.message(), Catch::Contains("no such savepoint"));
  CHECK(sqlite3_get_autocommit(writer->handle()));
  // The same failure again (the kept statement was reset, not left in error), then a good one.
  CHECK_FALSE(writer->ExecKept("RELEASE no_such_savepoint").ok());
  {
    Transaction tx(*writer);
    REQUIRE(tx.status().ok());
    REQUIRE(writer->Exec("INSERT INTO t VALUES (1)").ok());
    REQUIRE(tx.Commit().ok());
  }
  CHECK(Rows(*writer) == 1);

  // Another connection holds the write lock: BEGIN IMMEDIATE fails, nothing is left open.
  auto other = OpenDb(dir.path() / "t.sqlite", false);
  sqlite3_busy_timeout(other->handle(), 0);
  sqlite3_busy_timeout(writer->handle(), 0);
  REQUIRE(other->Exec("BEGIN IMMEDIATE").ok());
  {
    Transaction tx(*writer);
    CHECK_FALSE(tx.status().ok());
    CHECK_FALSE(tx.Commit().ok());
  }
  CHECK(sqlite3_get_autocommit(writer->handle()));
  REQUIRE(other->Exec("ROLLBACK").ok());
  Transaction tx(*writer);
  CHECK(tx.status().ok());
}

TEST_CASE("a kept statement refuses SQL with a second statement and runs none of it", "[store]") {
  test::ScratchDir dir;
  auto writer = OpenDb(dir.path() / "t.sqlite", false);
  REQUIRE(writer->Exec("CREATE TABLE t (v INTEGER)").ok());

  // sqlite3_exec ran both; a prepared statement would run the first alone and drop the ROLLBACK.
  for (int i = 0; i < 2; ++i) {  // refused again when kept
    Status s = writer->ExecKept("BEGIN IMMEDIATE; ROLLBACK");
    CHECK(s.code() == Status::Code::kInvalidArgument);
    CHECK(sqlite3_get_autocommit(writer->handle()));
  }
  // Whitespace after the statement (or its semicolon) is no second statement.
  REQUIRE(writer->ExecKept("BEGIN IMMEDIATE;\n  ").ok());
  REQUIRE(writer->Exec("INSERT INTO t VALUES (1)").ok());
  REQUIRE(writer->ExecKept(" COMMIT ").ok());
  CHECK(Rows(*writer) == 1);
}
