// The index's group commit when SQLite rolls a whole transaction back under one request (as it
// may on a full disk or an I/O error while spilling pages): every request of that batch is told
// it failed and none of them is in the index; none commits on its own behind the failed COMMIT.
#include <catch2/catch.hpp>

#include <future>
#include <memory>

#include "server/store/index.h"
#include "server/store/sqlite.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

Index::WriteFn Insert(int x) {
  return [x](Database& db) { return db.Exec("INSERT INTO batch_probe VALUES (" + std::to_string(x) + ")"); };
}

bool Has(const std::filesystem::path& path, int x) {
  auto db = Database::Open(path, true);
  REQUIRE(db.ok());
  Statement q(db.value()->handle(), "SELECT 1 FROM batch_probe WHERE x = ?1");
  q.Bind(1, x);
  Result<bool> row = q.Step();
  REQUIRE(row.ok());
  return row.value();
}

// An index with the table the requests here write to.
std::unique_ptr<Index> ProbeIndex(const std::filesystem::path& path) {
  auto opened = Index::Open(path);
  REQUIRE(opened.ok());
  REQUIRE(opened.value()->Write([](Database& db) { return db.Exec("CREATE TABLE batch_probe (x INTEGER)"); }).ok());
  return std::move(opened.value());
}

}  // namespace

TEST_CASE("a batch whose transaction SQLite rolled back fails every request in it and commits none", "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  const std::unique_ptr<Index> opened = ProbeIndex(path);
  Index& index = *opened;

  // The writer is held inside a write of its own while the next batch queues up behind it.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> holding;
  auto hold = std::async(std::launch::async, [&] {
    return index.Write([&](Database&) {
      holding.set_value();
      released.wait();
      return Status::Ok();
    });
  });
  holding.get_future().wait();
  // First in the queue: the request under which SQLite gives up the transaction.
  auto rolled_back = std::async(std::launch::async, [&] {
    return index.Write([](Database& db) {
      if (Status s = Insert(2)(db); !s.ok()) return s;
      (void)db.Exec("ROLLBACK");  // what SQLite does itself on SQLITE_FULL while spilling
      return Status::NoSpace("database or disk is full");
    });
  });
  REQUIRE(test::WaitFor([&] { return index.QueuedWrites() == 1; }));  // first in the queue, before these two
  auto after1 = std::async(std::launch::async, [&] { return index.Write(Insert(3)); });
  auto after2 = std::async(std::launch::async, [&] { return index.Write(Insert(4)); });
  REQUIRE(test::WaitFor([&] { return index.QueuedWrites() == 3; }));  // all three in the next batch
  release.set_value();
  REQUIRE(hold.get().ok());

  const Status s2 = rolled_back.get(), s3 = after1.get(), s4 = after2.get();
  INFO(s2.ToString() << " / " << s3.ToString() << " / " << s4.ToString());
  // Told the truth: a request is reported stored exactly when its row is there.
  CHECK(s3.ok() == Has(path, 3));
  CHECK(s4.ok() == Has(path, 4));
  CHECK_FALSE(s2.ok());
  CHECK_FALSE(Has(path, 2));
  CHECK_FALSE(s3.ok());  // they shared the lost transaction
  CHECK_FALSE(s4.ok());
  // The request under which it happened is told its own failure; the others why they failed.
  CHECK(s2.code() == Status::Code::kNoSpace);
  for (const Status& s : {s3, s4}) {
    CHECK(s.code() == Status::Code::kIOError);
    CHECK_THAT(s.message(), Catch::Contains("the transaction was rolled back"));
  }

  // The writer carries on: the next write commits as usual.
  REQUIRE(index.Write(Insert(5)).ok());
  CHECK(Has(path, 5));
}

TEST_CASE("a refused request whose savepoint cannot be rolled back to commits nothing", "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  const std::unique_ptr<Index> opened = ProbeIndex(path);
  Index& index = *opened;

  // The request's savepoint is gone when it fails (released here), so ROLLBACK TO fails too and
  // its row would stay in the transaction.
  const Status s = index.Write([](Database& db) {
    if (Status st = Insert(6)(db); !st.ok()) return st;
    (void)db.Exec("RELEASE request");
    return Status::IOError("refused after its row was written");
  });
  CHECK_FALSE(s.ok());
  CHECK_FALSE(Has(path, 6));
  REQUIRE(index.Write(Insert(7)).ok());
  CHECK(Has(path, 7));
  CHECK_FALSE(Has(path, 6));
}
