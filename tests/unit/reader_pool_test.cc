// Pooled read connections: a kept connection must read like a fresh one (every commit made since
// it was opened), and a connection given back mid-read must not be kept with its old snapshot.
#include <catch2/catch.hpp>

#include "common/clock.h"
#include "server/store/audit_log.h"
#include "server/store/index.h"
#include "server/store/sqlite.h"
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
  test::ScratchDir dir;
  auto index = Index::Open(dir.path() / "index.sqlite");
  REQUIRE(index.ok());
  AuditLog audit(*index.value(), [] { return int64_t{1000}; });
  REQUIRE(audit.Append({"wang.li", "view", "1.2.3", ""}).ok());
  REQUIRE(audit.Append({"wang.li", "view", "1.2.4", ""}).ok());

  auto pool = ReaderPool::Create(dir.path() / "index.sqlite", 4);
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
  test::ScratchDir dir;
  auto index = Index::Open(dir.path() / "index.sqlite");
  REQUIRE(index.ok());
  AuditLog audit(*index.value(), [] { return int64_t{1000}; });
  REQUIRE(audit.Append({"wang.li", "view", "1.2.3", ""}).ok());
  REQUIRE(audit.Append({"wang.li", "view", "1.2.4", ""}).ok());

  auto pool = ReaderPool::Create(dir.path() / "index.sqlite", 4);
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
