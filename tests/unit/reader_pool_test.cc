// Pooled read connections: a kept connection must read like a fresh one (every commit made since
// it was opened), and a connection given back mid-read must not be kept with its old snapshot.
#include <catch2/catch.hpp>

#include "common/clock.h"
#include "server/store/audit_log.h"
#include "server/store/index.h"
#include "server/store/sqlite.h"
#include "server/store/task_store.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

int64_t AuditRows(Database& db) {
  Statement q(db.handle(), "SELECT COUNT(*) FROM audit_log");
  Result<bool> row = q.Step();
  REQUIRE(row.ok());
  REQUIRE(row.value());
  return q.Int(0);
}

// An index with two audit rows, and a pool of readers on it.
struct TwoRows {
  test::ScratchDir dir;
  std::unique_ptr<Index> index = Open(dir.path() / "index.sqlite");
  AuditLog audit{*index, [] { return int64_t{1000}; }};
  std::shared_ptr<ReaderPool> pool;

  TwoRows() {
    REQUIRE(audit.Append({"wang.li", "view", "1.2.3", ""}).ok());
    REQUIRE(audit.Append({"wang.li", "view", "1.2.4", ""}).ok());
    pool = ReaderPool::Create(dir.path() / "index.sqlite", 4);
  }
  static std::unique_ptr<Index> Open(const std::filesystem::path& path) {
    auto opened = Index::Open(path);
    REQUIRE(opened.ok());
    return std::move(opened.value());
  }
};

}  // namespace

TEST_CASE("a pooled reader sees commits made after it was opened", "[store]") {
  test::ScratchDir dir;
  auto index = Index::Open(dir.path() / "index.sqlite");
  REQUIRE(index.ok());
  AuditLog audit(*index.value(), [] { return int64_t{1000}; });

  const Database* first = nullptr;
  {
    Result<PooledReader> reader = index.value()->OpenReader();
    REQUIRE(reader.ok());
    first = reader.value().get();
    CHECK(AuditRows(*reader.value()) == 0);
  }
  REQUIRE(audit.Append({"wang.li", "view", "1.2.3", ""}).ok());
  {
    Result<PooledReader> reader = index.value()->OpenReader();
    REQUIRE(reader.ok());
    CHECK(reader.value().get() == first);  // the same connection, kept
    CHECK(AuditRows(*reader.value()) == 1);
    // Held across a commit: its next read still starts a new snapshot.
    REQUIRE(audit.Append({"wang.li", "view", "1.2.4", ""}).ok());
    CHECK(AuditRows(*reader.value()) == 2);
  }
}

TEST_CASE("a reader given back in the middle of a read is closed, not kept", "[store]") {
  TwoRows t;
  auto& pool = t.pool;
  std::unique_ptr<Statement> left_open;
  {
    Result<PooledReader> reader = pool->Take();
    REQUIRE(reader.ok());
    left_open = std::make_unique<Statement>(reader.value()->handle(), "SELECT id FROM audit_log ORDER BY id");
    Result<bool> row = left_open->Step();  // one row read, the snapshot still held
    REQUIRE(row.ok());
    REQUIRE(row.value());
  }
  // The statement outlived the lease: the pool must not have kept this connection.
  CHECK(pool->idle() == 0);
  left_open.reset();  // the closed connection goes once its last statement does (sqlite3_close_v2)
  {
    Result<PooledReader> reader = pool->Take();
    REQUIRE(reader.ok());
    CHECK(AuditRows(*reader.value()) == 2);
  }
  CHECK(pool->idle() == 1);
}

TEST_CASE("a statement kept by a pooled reader is prepared once, holds no snapshot and reads later commits",
          "[store]") {
  TwoRows t;
  AuditLog& audit = t.audit;
  auto& pool = t.pool;
  const std::string sql = "SELECT id FROM audit_log ORDER BY id";
  auto first_id = [&](Database& db) {
    CachedStatement q(db, sql);
    Result<bool> row = q->Step();  // one row of two: left stepping until q goes
    REQUIRE(row.ok());
    REQUIRE(row.value());
    return &*q;
  };
  const Statement* kept = nullptr;
  {
    Result<PooledReader> reader = pool->Take();
    REQUIRE(reader.ok());
    kept = first_id(*reader.value());
    CHECK(first_id(*reader.value()) == kept);  // the same statement, not prepared again
    CHECK(reader.value()->Idle());
  }
  CHECK(pool->idle() == 1);  // reset when done: the connection is kept
  REQUIRE(audit.Append({"wang.li", "view", "1.2.5", ""}).ok());
  Result<PooledReader> reader = pool->Take();
  REQUIRE(reader.ok());
  {
    CachedStatement q(*reader.value(), "SELECT COUNT(*) FROM audit_log");
    REQUIRE(q->Step().ok());
    CHECK(q->Int(0) == 3);
  }
  // Two at once with one SQL: the second is its own.
  CachedStatement a(*reader.value(), sql), b(*reader.value(), sql);
  CHECK(&*a != &*b);
}

TEST_CASE("a connection keeps at most its bound of statements, the least recently used going first", "[store]") {
  test::ScratchDir dir;
  auto db = Database::Open(dir.path() / "kept.sqlite", false);
  REQUIRE(db.ok());
  REQUIRE(db.value()->Exec("CREATE TABLE t (n INTEGER)").ok());
  const std::string fixed = "SELECT COUNT(*) FROM t";
  auto run = [&](const std::string& sql) {
    CachedStatement q(*db.value(), sql);
    REQUIRE(q->Step().ok());
  };
  // One-off SQL (a LIMIT written in) fills the cache before the fixed query is first used.
  for (int i = 0; i < 200; ++i) run("SELECT n FROM t LIMIT " + std::to_string(i));
  CHECK(db.value()->kept_statements() <= Database::kKeptStatements);
  run(fixed);
  CHECK(db.value()->keeps(fixed));
  for (int i = 200; i < 400; ++i) {
    run("SELECT n FROM t LIMIT " + std::to_string(i));
    if (i % 10 == 0) run(fixed);
  }
  CHECK(db.value()->kept_statements() <= Database::kKeptStatements);
  CHECK(db.value()->keeps(fixed));
  CHECK_FALSE(db.value()->keeps("SELECT n FROM t LIMIT 200"));
  // One in use is never the one evicted.
  CachedStatement held(*db.value(), fixed);
  for (int i = 400; i < 600; ++i) run("SELECT n FROM t LIMIT " + std::to_string(i));
  CHECK(db.value()->keeps(fixed));
}

TEST_CASE("paging through the worklist prepares one statement, whatever the offset", "[store]") {
  test::ScratchDir dir;
  auto index = Index::Open(dir.path() / "index.sqlite");
  REQUIRE(index.ok());
  TaskStore tasks(*index.value());
  REQUIRE(tasks.Task("1.2.3", 1000).status().code() == Status::Code::kNotFound);
  for (int offset = 0; offset < 200; ++offset) {
    WorklistFilter f;
    f.limit = 10;
    f.offset = offset;
    REQUIRE(tasks.List(f, 1000).ok());
  }
  Result<PooledReader> reader = index.value()->OpenReader();  // the one the reads above used
  REQUIRE(reader.ok());
  CHECK(reader.value()->kept_statements() <= 4);  // the page and the task, not one per offset
  CHECK(reader.value()->kept_statements() >= 2);
}

TEST_CASE("a statement stepped to its end but not reset leaves the connection idle and one mid-read does not",
          "[store]") {
  TwoRows t;
  auto reader = Database::Open(t.dir.path() / "index.sqlite", true);
  REQUIRE(reader.ok());
  Database& db = *reader.value();
  Statement q(db.handle(), "SELECT id FROM audit_log ORDER BY id");
  REQUIRE(q.Step().value());
  REQUIRE(q.Step().value());  // the last row, but not yet told there is no more
  REQUIRE(t.audit.Append({"wang.li", "view", "1.2.6", ""}).ok());
  CHECK_FALSE(db.Idle());
  CHECK(AuditRows(db) == 2);    // the snapshot is held: the commit is not seen
  Result<bool> end = q.Step();  // SQLITE_DONE: finished, neither reset nor finalized
  REQUIRE(end.ok());
  REQUIRE_FALSE(end.value());
  CHECK(db.Idle());
  CHECK(AuditRows(db) == 3);  // really no snapshot held: the next read sees the latest commit
}

TEST_CASE("readers opened before the statistics changed are closed, not used again with the old ones", "[store]") {
  TwoRows t;
  auto statistics = std::make_shared<std::atomic<uint64_t>>(0);
  auto pool = ReaderPool::Create(t.dir.path() / "index.sqlite", 4, statistics);
  // A connection used before keeps the statement it ran; a new one keeps none.
  auto used = [](Database& db) {
    CachedStatement q(db, "SELECT COUNT(*) FROM audit_log");
    REQUIRE(q->Step().ok());
  };
  // What the connection Take gives kept before, then used.
  auto kept = [&] {
    Result<PooledReader> reader = pool->Take();
    REQUIRE(reader.ok());
    const size_t before = reader.value()->kept_statements();
    used(*reader.value());
    return before;
  };
  CHECK(kept() == 0);
  CHECK(kept() == 1);  // the same connection, used again
  statistics->fetch_add(1);
  CHECK(kept() == 0);  // the idle one was closed: a new connection
  CHECK(pool->idle() == 1);
  // Held across a change and given back after it: closed, not kept.
  Result<PooledReader> held = pool->Take();
  REQUIRE(held.ok());
  statistics->fetch_add(1);
  CHECK(kept() == 0);
  held.value().reset();
  CHECK(pool->idle() == 1);
  CHECK(kept() == 1);
  // Given back after a change before any other Take: closed too.
  Result<PooledReader> before = pool->Take();
  REQUIRE(before.ok());
  statistics->fetch_add(1);
  before.value().reset();
  CHECK(pool->idle() == 0);
}
